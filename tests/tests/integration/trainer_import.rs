//! The fleet data path end to end: two real collectors (two hosts, one of them with VMs found in
//! a cgroup tree and restarted with a different VM set) write to a real VictoriaMetrics through
//! its InfluxDB 2 write API; `keel-trainer import victoriametrics` reads the span back, and the
//! result is exactly the rows the collectors wrote to their own Parquet files, each once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use keel_core::parquet_io::read_samples;
use keel_core::schema::{Sample, METRIC_COLUMNS};
use keel_tests::victoria::VictoriaMetrics;
use keel_tests::{bins, free_port, http, poll_until};

fn collector(dir: &Path, host: &str, args: &[&str], url: &str) -> Command {
    let mut c = Command::new(bins::bin("keel-collector"));
    c.args(["--no-config", "--host-id", host])
        .arg("--parquet-dir")
        .arg(dir.join("pq"))
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .args(args)
        .args([
            "--influx-url",
            url,
            "--influx-org",
            "keel",
            "--influx-bucket",
            "fleet",
            "--influx-token",
            "t0ken",
        ])
        .env("LOG_FILTER", "info")
        .env_remove("KEEL_CONFIG")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("collector.log"))
                .expect("collector log"),
        );
    c
}

fn rows_of(dir: &Path) -> Vec<Sample> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("pq"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
    files
        .iter()
        .flat_map(|p| read_samples(p, None).expect("collector Parquet").samples)
        .collect()
}

/// A cgroup v2 tree with one libvirt scope per VM (no processes, so the VM name is its id).
fn cgroup_tree(root: &Path, vms: &[(&str, u64)]) {
    _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root.join("machine.slice")).unwrap();
    std::fs::write(root.join("cgroup.controllers"), "cpu io memory\n").unwrap();
    for (i, (name, mem_mib)) in vms.iter().enumerate() {
        let d = root
            .join("machine.slice")
            .join(format!("machine-qemu\\x2d{}\\x2d{name}.scope", i + 1));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cpu.stat"), "usage_usec 1000\n").unwrap();
        std::fs::write(d.join("memory.current"), format!("{}\n", mem_mib << 20)).unwrap();
        std::fs::write(
            d.join("cpu.pressure"),
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=0\n",
        )
        .unwrap();
    }
}

fn run_ok(mut c: Command, dir: &Path) {
    let st = c.status().expect("spawn keel-collector");
    assert!(
        st.success(),
        "collector failed: {}",
        std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default()
    );
}

type Key = (i64, Option<String>, Option<String>);

/// Rows keyed by (ts, host, vm); rows without any value are not written to a database.
fn keyed(rows: &[Sample]) -> BTreeMap<Key, Sample> {
    let mut out = BTreeMap::new();
    for s in rows {
        if (0..METRIC_COLUMNS.len()).all(|i| s.metrics.get(i).is_none()) {
            continue;
        }
        let k = (s.ts_ms, s.host_id.clone(), s.vm_id.clone());
        assert!(
            out.insert(k.clone(), s.clone()).is_none(),
            "row twice: {k:?}"
        );
    }
    out
}

fn import(vm: &VictoriaMetrics, start: i64, stop: i64, out: &Path, extra: &[&str]) -> Output {
    Command::new(bins::bin("keel-trainer"))
        .args(["import", "victoriametrics", "--url", &vm.url()])
        .args(["--start", &start.to_string(), "--stop", &stop.to_string()])
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .expect("run keel-trainer")
}

/// Values in VictoriaMetrics of all series matching `sel`.
fn count(vm: &VictoriaMetrics, sel: &str) -> usize {
    vm.export(sel)
        .unwrap_or_default()
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn victoriametrics_import_equals_the_collectors_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let vm = VictoriaMetrics::start(free_port(), &dir.path().join("vm-data"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // Host A: host rows only, for the whole span.
    let mut ca = collector(
        &a,
        "imp-a",
        &["--interval", "250ms", "--duration", "4s"],
        &vm.url(),
    )
    .spawn()
    .expect("spawn collector a");
    // Host B starts late with VMs vm-a and vm-b, is stopped, and comes back with vm-b and vm-c.
    std::thread::sleep(Duration::from_millis(700));
    let cg = b.join("cgroup");
    cgroup_tree(&cg, &[("vm-a", 512), ("vm-b", 1024)]);
    let cg_arg = cg.to_string_lossy().into_owned();
    let b_args = [
        "--interval",
        "250ms",
        "--duration",
        "1200ms",
        "--cgroup-root",
        &cg_arg,
    ];
    run_ok(collector(&b, "imp-b", &b_args, &vm.url()), &b);
    std::thread::sleep(Duration::from_millis(500));
    cgroup_tree(&cg, &[("vm-b", 1024), ("vm-c", 2048)]);
    run_ok(collector(&b, "imp-b", &b_args, &vm.url()), &b);
    assert!(ca.wait().expect("collector a").success());

    let rows_a = rows_of(&a);
    let rows_b = rows_of(&b);
    let mut all = rows_a.clone();
    all.extend(rows_b.iter().cloned());
    let want = keyed(&all);
    let vms: std::collections::BTreeSet<&str> =
        rows_b.iter().filter_map(|s| s.vm_id.as_deref()).collect();
    assert_eq!(
        vms.into_iter().collect::<Vec<_>>(),
        ["vm-a", "vm-b", "vm-c"]
    );
    assert!(rows_a.len() >= 10, "{} rows from a", rows_a.len());

    // A point written twice (as a replayed spool would): VictoriaMetrics keeps both copies.
    let dup = rows_a
        .iter()
        .find(|s| s.metrics.mem_used_mib.is_some())
        .unwrap();
    let line = format!(
        "host,host=imp-a mem_used_mib={:?} {}\n",
        dup.metrics.mem_used_mib.unwrap(),
        dup.ts_ms
    );
    let (st, body) = http::post(
        vm.port(),
        "/api/v2/write?org=keel&bucket=fleet&precision=ms",
        &line,
    )
    .unwrap();
    assert_eq!(st, 204, "{body}");

    // Wait until the database holds every value the collectors wrote (plus the duplicate).
    let mem_values = want
        .values()
        .filter(|s| s.metrics.mem_used_mib.is_some())
        .count();
    let sel = "{__name__=~\"(host|vm)_mem_used_mib\",host=~\"imp-.*\"}";
    let mut last = 0;
    let arrived = poll_until(Duration::from_secs(30), || {
        last = count(&vm, sel);
        (last == mem_values + 1).then_some(())
    });
    assert!(
        arrived.is_some(),
        "{last} of {} values arrived",
        mem_values + 1
    );

    let start = want.keys().next().unwrap().0;
    let stop = want.keys().last().unwrap().0 + 1;
    let out = dir.path().join("fleet.parquet");
    // Windows of 700 ms: the span is read in several pages.
    let o = import(&vm, start, stop, &out, &["--window", "700ms"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The written-twice point, and (until the collector renames its breakdowns) the
    // `host_cpu` breakdown's `steal`/`iowait`, which share their names with the host row's.
    let dups: u64 = stdout
        .split(" duplicates")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dups >= 1, "{stdout}");
    assert!(stdout.contains(" 0 conflicting"), "{stdout}");
    let got = read_samples(&out, None).unwrap();
    assert!(got
        .inventory
        .source
        .as_deref()
        .is_some_and(|s| s.contains("VictoriaMetrics")));
    let got_keyed = keyed(&got.samples);
    assert_eq!(got.samples.len(), got_keyed.len(), "every row once");
    assert_eq!(
        got_keyed.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        let g = &got_keyed[k];
        for (i, name) in METRIC_COLUMNS.iter().enumerate() {
            match (w.metrics.get(i), g.metrics.get(i)) {
                (None, None) => {}
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                    "{k:?} {name}: Parquet {x}, import {y}"
                ),
                (x, y) => panic!("{k:?} {name}: Parquet {x:?}, import {y:?}"),
            }
        }
    }

    // One host only.
    let out_b = dir.path().join("b.parquet");
    let o = import(&vm, start, stop, &out_b, &["--hosts", "imp-b"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got_b = read_samples(&out_b, None).unwrap().samples;
    assert_eq!(
        keyed(&got_b).keys().collect::<Vec<_>>(),
        keyed(&rows_b).keys().collect::<Vec<_>>()
    );

    // A span with nothing in it: a clear error and no file.
    let out_empty = dir.path().join("empty.parquet");
    let o = import(&vm, 1_000, 2_000, &out_empty, &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no host or VM rows"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out_empty.exists());
}

#[test]
fn victoriametrics_import_retries_then_names_the_query() {
    // Nothing listens on the port: every attempt fails to connect, and no file is left.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("x.parquet");
    let o = Command::new(bins::bin("keel-trainer"))
        .args(["import", "victoriametrics", "--url"])
        .arg(format!("http://127.0.0.1:{port}"))
        .args([
            "--start",
            "2026-01-01T00:00:00Z",
            "--stop",
            "2026-01-01T01:00:00Z",
        ])
        .args(["--retries", "2", "--backoff", "10ms"])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("failed after 3 attempts") && err.contains("/api/v1/export?match[]="),
        "{err}"
    );
    assert!(err.contains("2026-01-01T00:00:00.000Z"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
