//! The `keel-trainer` binary end to end on small generated datasets: train, eval (`--json`,
//! `--report`), hosts, summary, and clear errors on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_core::catalog::cloudsim_vm_type_for;
use keel_core::inventory::Inventory;
use keel_core::parquet_io::{write_samples, WriteOptions};
use keel_core::schema::{Metrics, Sample};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel-trainer"))
}

/// `n` VMs over `steps` 5-minute steps from 2011-03-03 00:00 UTC: a daily wave plus random
/// bursts, CloudSim VM types.
fn vm_file(dir: &Path, name: &str, n: usize, steps: i64, seed: u64) -> PathBuf {
    vm_file_on(dir, name, n, steps, seed, 0)
}

/// As [`vm_file`], starting `day` days later.
fn vm_file_on(dir: &Path, name: &str, n: usize, steps: i64, seed: u64, day: i64) -> PathBuf {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut inv = Inventory::default();
    let mut rows = Vec::new();
    for v in 0..n {
        let id = format!("vm{v:03}");
        inv.vms.push(cloudsim_vm_type_for(v, n).spec(id.clone()));
        let base: f64 = rng.gen_range(0.05..0.4);
        let mut burst = 0.0f64;
        for t in 0..steps {
            if rng.gen_bool(0.03) {
                burst = rng.gen_range(0.3..0.6);
            }
            burst *= 0.8;
            let wave = 0.15 * ((t as f64) / 288.0 * std::f64::consts::TAU).sin();
            let u = (base + wave + burst + rng.gen_range(-0.05..0.05)).clamp(0.0, 1.0);
            rows.push(Sample {
                ts_ms: 1_299_110_400_000 + day * 86_400_000 + t * 300_000,
                host_id: None,
                vm_id: Some(id.clone()),
                metrics: Metrics {
                    cpu_util: Some(u),
                    ..Default::default()
                },
            });
        }
    }
    let p = dir.join(name);
    write_samples(&p, &rows, &inv, WriteOptions::default()).unwrap();
    p
}

/// Host-level rows (`vm_id` null): `n` hosts over `steps` 5-minute steps with bursts up to full
/// load, but only before `calm_from` (a step); afterwards every host idles at 0.2.
fn host_file(dir: &Path, name: &str, n: usize, steps: i64, calm_from: i64) -> PathBuf {
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let mut rows = Vec::new();
    for h in 0..n {
        let mut burst = 0.0f64;
        for t in 0..steps {
            let u = if t < calm_from {
                if rng.gen_bool(0.08) {
                    burst = rng.gen_range(0.4..0.7);
                }
                burst *= 0.85;
                (0.3 + burst + rng.gen_range(-0.05..0.05)).clamp(0.0, 1.0)
            } else {
                0.2
            };
            rows.push(Sample {
                ts_ms: 1_299_110_400_000 + t * 300_000,
                host_id: Some(format!("h{h:03}")),
                vm_id: None,
                metrics: Metrics {
                    cpu_util: Some(u),
                    ..Default::default()
                },
            });
        }
    }
    let p = dir.join(name);
    write_samples(&p, &rows, &Inventory::default(), WriteOptions::default()).unwrap();
    p
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn train_eval_report_and_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = vm_file(d, "a.parquet", 120, 288, 1);
    let b = vm_file(d, "b.parquet", 100, 288, 2);
    let model = d.join("m.json");

    let (ok, out, err) = run(bin()
        .args(["train", "--algo", "logistic", "--data"])
        .arg(&a)
        .arg("-o")
        .arg(&model));
    assert!(ok, "{out}\n{err}");
    let m = keel_core::model::ModelFile::load(&model).unwrap();
    assert_eq!(m.provenance.files.len(), 1);
    assert_eq!(m.provenance.files[0].sha256.len(), 64);
    assert!(m.metrics.contains_key("roc_auc"));

    // Eval on an unseen file: JSON with the contract's keys.
    let report = d.join("report");
    let (ok, out, err) = run(bin()
        .args(["eval", "--json", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&b)
        .arg("--report")
        .arg(&report));
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in ["roc_auc", "pr_auc", "f1", "brier"] {
        assert!(v[k].is_number(), "{k} in {out}");
    }
    assert_eq!(v["held_out_only"], false);
    for k in ["thr", "iqr", "mad", "lr", "last"] {
        assert!(v["baselines"][k]["roc_auc"].is_number(), "{k}");
    }
    // Our ROC-AUC agrees with linfa's to float precision.
    let ours = v["roc_auc"].as_f64().unwrap();
    let linfa = v["roc_auc_linfa"].as_f64().unwrap();
    assert!((ours - linfa).abs() < 1e-3, "{ours} vs linfa {linfa}");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("ROC"));

    // Eval on the training file scores the held-out rows only.
    let (ok, out, _) = run(bin()
        .args(["eval", "--json", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&a));
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["held_out_only"], true);

    // Host series written by `hosts` are accepted as host-level data.
    let hosts = d.join("hosts.parquet");
    let (ok, out, err) = run(bin()
        .args(["hosts", "--pack", "cpu", "--data"])
        .arg(&b)
        .arg("-o")
        .arg(&hosts));
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = run(bin()
        .args(["eval", "--json", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&hosts));
    assert!(ok, "{out}\n{err}");
    let (ok, out, _) = run(bin().args(["summary", "--json"]).arg(&hosts));
    assert!(ok);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["vms"], 0);
    assert_eq!(s["step_s"], 300.0);

    // A model file of another format version.
    let mut text: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    text["format_version"] = 99.into();
    let v99 = d.join("v99.json");
    std::fs::write(&v99, text.to_string()).unwrap();
    let (ok, _, err) = run(bin()
        .args(["eval", "--model"])
        .arg(&v99)
        .arg("--data")
        .arg(&b));
    assert!(!ok);
    assert!(
        err.contains("model format version 99 is not supported"),
        "{err}"
    );

    // Too few samples: 10 steps cannot hold a 1-hour window and a 30-minute horizon.
    let short = vm_file(d, "short.parquet", 20, 10, 3);
    let (ok, _, err) = run(bin()
        .args(["train", "--data"])
        .arg(&short)
        .arg("-o")
        .arg(d.join("x.json")));
    assert!(!ok);
    assert!(err.contains("too few samples"), "{err}");
    assert!(!d.join("x.json").exists());

    // Missing columns.
    let bad = d.join("bad.parquet");
    {
        use polars::prelude::{df, ParquetWriter};
        let mut df = df!("ts" => [1i64, 2], "host_id" => ["a", "a"]).unwrap();
        let mut f = std::fs::File::create(&bad).unwrap();
        ParquetWriter::new(&mut f).finish(&mut df).unwrap();
    }
    let (ok, _, err) = run(bin()
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&bad));
    assert!(!ok);
    assert!(
        err.contains("missing column") && err.contains("bad.parquet"),
        "{err}"
    );

    // NaN-only CPU: nothing usable, said so.
    let nan = d.join("nan.parquet");
    let rows: Vec<Sample> = (0..40)
        .map(|t| Sample {
            ts_ms: t * 300_000,
            host_id: None,
            vm_id: Some("ghost".into()),
            metrics: Metrics {
                cpu_util: Some(f64::NAN),
                ..Default::default()
            },
        })
        .collect();
    write_samples(&nan, &rows, &Inventory::default(), WriteOptions::default()).unwrap();
    let (ok, _, err) = run(bin()
        .args(["train", "--data"])
        .arg(&nan)
        .arg("-o")
        .arg(d.join("y.json")));
    assert!(!ok);
    assert!(err.contains("no VM has a usable CPU demand"), "{err}");
}

/// A file with one row (as the collector's `--once` writes) or none is summarised, not a panic.
#[test]
fn summary_of_one_row_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let one = vm_file(dir.path(), "one.parquet", 1, 1, 7);
    let (ok, out, err) = run(bin().args(["summary", "--json"]).arg(&one));
    assert!(ok, "summary of a one-row file failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rows"], 1, "{out}");
    let empty = vm_file(dir.path(), "empty.parquet", 1, 0, 7);
    let (ok, out, err) = run(bin().args(["summary", "--json"]).arg(&empty));
    assert!(ok, "summary of an empty file failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rows"], 0, "{out}");
}

/// A held-out side with one class (no host overloads after the split) still gives a model file
/// that loads: no metric is written as `null`.
#[test]
fn one_class_held_out_side_writes_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 288 steps (one day); the split is at 60 % (step ~172); calm from step 160.
    let data = host_file(d, "hosts.parquet", 40, 288, 160);
    let model = d.join("m.json");
    let (ok, out, err) = run(bin()
        .args(["train", "--data"])
        .arg(&data)
        .args(["--util-threshold", "0.8", "--cv-quantile", "1", "-o"])
        .arg(&model));
    assert!(ok, "{out}\n{err}");
    let text = std::fs::read_to_string(&model).unwrap();
    assert!(!text.contains("null"), "{text}");
    let m = keel_core::model::ModelFile::load(&model).unwrap();
    assert_eq!(m.metrics["test_positives"], 0.0);
    assert!(!m.metrics.contains_key("roc_auc_linfa"));
    assert!(!m.metrics.contains_key("roc_auc"));
}

/// The same data and seed give the same model file byte for byte, for trees and forests.
#[test]
fn tree_and_forest_training_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = vm_file(d, "a.parquet", 60, 288, 3);
    for algo in ["tree", "random-forest"] {
        let texts: Vec<String> = (0..3)
            .map(|k| {
                let out = d.join(format!("{algo}-{k}.json"));
                let (ok, o, e) = run(bin()
                    .env("SOURCE_DATE_EPOCH", "1700000000")
                    .args(["train", "--algo", algo, "--trees", "5", "--data"])
                    .arg(&a)
                    .arg("-o")
                    .arg(&out));
                assert!(ok, "{o}\n{e}");
                std::fs::read_to_string(&out).unwrap()
            })
            .collect();
        assert!(texts.iter().all(|t| *t == texts[0]), "{algo}: runs differ");
        assert!(texts[0].contains("2023-11-14T22:13:20Z"));
    }
}

/// With two training days the threshold is chosen on whole held-out days, and a second threshold
/// for hosts below 0.8 now is written when those rows have both classes.
#[test]
fn threshold_is_chosen_on_held_out_days() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = vm_file(d, "a.parquet", 120, 288, 11);
    let b = vm_file_on(d, "b.parquet", 120, 288, 12, 1);
    let model = d.join("m.json");
    // Trains on `files` (with `extra` arguments); the model and how its threshold was chosen.
    let train = |extra: &[&str], files: &[&PathBuf]| {
        let mut c = bin();
        c.arg("train").args(extra).arg("--data");
        for f in files {
            c.arg(f);
        }
        let (ok, out, err) = run(c.arg("-o").arg(&model));
        assert!(ok, "{out}\n{err}");
        let m = keel_core::model::ModelFile::load(&model).unwrap();
        let how = m.provenance.hyperparameters["split"]["threshold"]
            .as_str()
            .unwrap()
            .to_owned();
        (m, how)
    };
    let (m, how) = train(&[], &[&a, &b]);
    assert!(how.contains("2 calendar days"), "{how}");
    assert!(how.contains("in 2 folds"), "{how}");
    let c = m.candidate_threshold.expect("a candidate threshold");
    assert_eq!(c.below_util, 0.8);
    assert!(m.metrics.contains_key("candidates_f1"), "{:?}", m.metrics);
    // --threshold-by inner is the previous rule.
    let (_, how) = train(&["--threshold-by", "inner"], &[&a, &b]);
    assert!(how.starts_with("max F1 on the last 25%"), "{how}");
    // Two files of the same day (two hosts, or two policies' exports of one trace) are one day:
    // holding out one file's day while fitting on the other's would leak it, so the training
    // side is split by time instead.
    let b0 = vm_file(d, "b0.parquet", 120, 288, 12);
    let (_, how) = train(&[], &[&a, &b0]);
    assert!(how.starts_with("max F1 on the last 25%"), "{how}");
}
