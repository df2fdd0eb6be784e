//! `keel-trainer train`: files → host series → features and labels → a linfa classifier →
//! a model file.
//!
//! The rows are split by time with a gap of W + H and by host (see [`crate::dataset`]).
//!
//! The decision threshold is chosen on whole held-out training days (`--threshold-by days`, the
//! default): the training side's rows are grouped by calendar day (UTC), across files, so that
//! files covering the same days (per-host files, exports of several policies over one trace) are
//! held out together; for each day a model fitted on the other days (less the rows within W + H
//! of that day, so no label window overlaps a scored feature window) scores that day's rows.
//! The pooled out-of-day scores give the threshold that maximises F1, and, on the rows whose host
//! is below 0.8 now (`--candidates-below`), the model file's `candidate_threshold`. With more
//! days than `--threshold-folds`, days are dealt round-robin into that many folds (each fold still
//! holds whole days). With a single day, or with `--threshold-by inner`, the training side is split
//! by time instead (75 % / 25 %, same gap) and the threshold is chosen on the last quarter.
//!
//! The model is then fitted on the whole training side and evaluated on the held-out test side;
//! those metrics go into the model file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use keel_core::features::{Dimension, FeatureSchema, DEFAULT_WINDOW_S};
use keel_core::model::{
    CandidateThreshold, LabelDefinition, ModelFile, Placement, Provenance, FORMAT_VERSION,
};
use ndarray::Array2;

use crate::dataset::{Rows, Side, Split};
use crate::evaluate::{best_f1_threshold, linfa_roc_auc, metrics};
use crate::fit::{Algo, ClassifierParams, ValidClassifierParams};
use crate::label::{quantile, read_labels, LabelParams};
use crate::pipeline::{labels, rows_of};

/// Arguments of `keel-trainer train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Canonical Parquet files (VM-only or host-level).
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// Output model file (JSON).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Classifier.
    #[arg(long, value_enum, default_value = "logistic")]
    pub algo: Algo,
    /// Dimensions to use, comma separated (cpu, mem, net).
    #[arg(long, default_value = "cpu", value_delimiter = ',')]
    pub dims: Vec<String>,
    /// History window W, seconds.
    #[arg(long, default_value_t = DEFAULT_WINDOW_S)]
    pub window_s: f64,
    /// Label horizon H, seconds.
    #[arg(long, default_value_t = 1800.0)]
    pub horizon_s: f64,
    /// Label rolling-mean width, seconds.
    #[arg(long, default_value_t = 600.0)]
    pub mean_window_s: f64,
    /// Utilisation the rolling mean must reach.
    #[arg(long, default_value_t = 0.9)]
    pub util_threshold: f64,
    /// Quantile of the training set's horizon CV above which a host is unstable (1 = off).
    #[arg(long, default_value_t = 0.9)]
    pub cv_quantile: f64,
    /// Labels file (CSV host_id,ts_ms,unstable) overriding the rule.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Packing for VM-only data (cpu or cpu-mem).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cpu-mem"])]
    pub pack: String,
    /// Packing target.
    #[arg(long, default_value_t = 0.7)]
    pub target: f64,
    /// Span of each VM's mean demand that packing uses, seconds.
    #[arg(long, default_value_t = 3600.0)]
    pub placement_window_s: f64,
    /// Share of each file's time span used for training (the rest, after the gap, tests).
    #[arg(long, default_value_t = 0.6)]
    pub train_share: f64,
    /// Share of hosts held out for testing.
    #[arg(long, default_value_t = 0.3)]
    pub holdout_hosts: f64,
    /// Trees in a random forest (odd).
    #[arg(long, default_value_t = 31)]
    pub trees: usize,
    /// Depth limit of trees.
    #[arg(long, default_value_t = 8)]
    pub max_depth: usize,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the (balanced) training matrix as CSV, for comparison runs.
    #[arg(long)]
    pub export_matrix: Option<PathBuf>,
    /// How the decision threshold is chosen: `days` (leave whole training days out) or `inner`
    /// (the last quarter of the training side by time).
    #[arg(long, value_enum, default_value = "days")]
    pub threshold_by: ThresholdBy,
    /// At most this many folds of whole days when choosing the threshold.
    #[arg(long, default_value_t = 8)]
    pub threshold_folds: usize,
    /// Also choose a threshold for rows whose host is below this utilisation now (the hosts a
    /// migration would target); 0 turns it off.
    #[arg(long, default_value_t = 0.8)]
    pub candidates_below: f64,
}

/// How the decision threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThresholdBy {
    /// Leave whole training days out (see the module docs).
    Days,
    /// The last 25 % (by time, after the gap) of the training side, fitted on the first 75 %.
    Inner,
}

const DAY_MS: i64 = 86_400_000;

/// Folds of whole days of the training rows `idx`: calendar days (UTC), across files, dealt
/// round-robin into at most `max_folds` folds. Empty when there is one day only. A day is held
/// out in every file at once: files of the same days (a collector's per-host files, or replay
/// exports of several policies over the same trace) would otherwise leak the held-out day's
/// load into the fit.
pub fn day_folds(rows: &Rows, idx: &[usize], max_folds: usize) -> Vec<Vec<i64>> {
    let days: std::collections::BTreeSet<i64> = idx.iter().map(|i| day_of(rows, *i)).collect();
    if days.len() < 2 {
        return Vec::new();
    }
    let k = max_folds.clamp(2, days.len());
    let mut folds = vec![Vec::new(); k];
    for (j, d) in days.into_iter().enumerate() {
        folds[j % k].push(d);
    }
    folds
}

/// The calendar day (UTC, days since 1970-01-01) of row `i`.
fn day_of(rows: &Rows, i: usize) -> i64 {
    rows.t_ms[i].div_euclid(DAY_MS)
}

/// Splits `idx` for one fold: rows of the fold's days are scored; rows of other days fit, except
/// those within `gap_ms` of a fold day (in any file).
fn fold_split(rows: &Rows, idx: &[usize], fold: &[i64], gap_ms: i64) -> (Vec<usize>, Vec<usize>) {
    let held: std::collections::BTreeSet<i64> = fold.iter().copied().collect();
    let (mut fit, mut score) = (Vec::new(), Vec::new());
    for &i in idx {
        if held.contains(&day_of(rows, i)) {
            score.push(i);
            continue;
        }
        let t = rows.t_ms[i];
        let near = held.iter().any(|hd| {
            let lo = hd * DAY_MS;
            let hi = lo + DAY_MS;
            t > lo - gap_ms && t < hi + gap_ms
        });
        if !near {
            fit.push(i);
        }
    }
    (fit, score)
}

/// Out-of-sample scores of training rows, from which the thresholds are chosen.
#[derive(Debug, Clone, Default)]
pub struct OutOfSample {
    /// Rows scored.
    pub idx: Vec<usize>,
    /// Their scores.
    pub scores: Vec<f64>,
    /// How they were obtained (for the provenance).
    pub how: String,
}

fn out_of_sample(
    p: &ValidClassifierParams,
    rows: &Rows,
    y: &[bool],
    train_idx: &[usize],
    by: ThresholdBy,
    max_folds: usize,
    gap_ms: i64,
) -> anyhow::Result<OutOfSample> {
    let folds = match by {
        ThresholdBy::Days => day_folds(rows, train_idx, max_folds),
        ThresholdBy::Inner => Vec::new(),
    };
    let mut oos = OutOfSample::default();
    let mut skipped = 0;
    for fold in &folds {
        let (fit, score) = fold_split(rows, train_idx, fold, gap_ms);
        let pos = fit.iter().filter(|i| y[**i]).count();
        if fit.len() < 20 || pos == 0 || pos == fit.len() || score.is_empty() {
            skipped += 1;
            continue;
        }
        let (_, s) = fit_scores(p, rows, y, &fit, &score)
            .with_context(|| format!("fitting without training days {fold:?}"))?;
        oos.idx.extend(score);
        oos.scores.extend(s);
    }
    if !oos.idx.is_empty() {
        let days: usize = folds.iter().map(Vec::len).sum();
        oos.how = format!(
            "max F1 on whole held-out training days: {days} calendar days (UTC, every file at once) in {} folds ({skipped} skipped: one class or too few rows to fit), each scored by a model fitted on the other days less the rows within W + H of it",
            folds.len()
        );
        return Ok(oos);
    }
    let (inner_fit, inner_val) = inner_split(rows, train_idx, 0.75, gap_ms);
    let (_, s) = fit_scores(p, rows, y, &inner_fit, &inner_val)
        .context("fitting on the inner training part")?;
    oos.idx = inner_val;
    oos.scores = s;
    oos.how = format!(
        "max F1 on the last 25% (by time, after the gap) of the training side, fitted on the first 75%{}",
        if by == ThresholdBy::Days {
            " (one training day only: no day to leave out)"
        } else {
            ""
        }
    );
    Ok(oos)
}

/// Indices (into `idx`) of rows whose host is below `below` now (by the `cpu_last` feature).
fn candidate_rows(rows: &Rows, schema: &FeatureSchema, idx: &[usize], below: f64) -> Vec<usize> {
    let Some(c) = schema.index("cpu_last") else {
        return Vec::new();
    };
    (0..idx.len())
        .filter(|k| rows.row(idx[*k])[c] < below)
        .collect()
}

fn parse_dims(d: &[String]) -> anyhow::Result<Vec<Dimension>> {
    d.iter()
        .map(|s| match s.trim() {
            "cpu" => Ok(Dimension::Cpu),
            "mem" => Ok(Dimension::Mem),
            "net" => Ok(Dimension::Net),
            "disk" => Ok(Dimension::Disk),
            o => bail!("unknown dimension {o:?} (cpu, mem, net, disk)"),
        })
        .collect()
}

/// Rows of `idx` as a matrix.
pub fn matrix(rows: &Rows, idx: &[usize]) -> Array2<f64> {
    let mut x = Array2::zeros((idx.len(), rows.width));
    for (r, i) in idx.iter().enumerate() {
        x.row_mut(r)
            .iter_mut()
            .zip(rows.row(*i))
            .for_each(|(a, b)| *a = *b);
    }
    x
}

/// Splits `idx` by time per file at `share` of their span, with `gap_ms` between.
fn inner_split(rows: &Rows, idx: &[usize], share: f64, gap_ms: i64) -> (Vec<usize>, Vec<usize>) {
    let mut span: BTreeMap<u16, (i64, i64)> = BTreeMap::new();
    for &i in idx {
        let s = span.entry(rows.file[i]).or_insert((i64::MAX, i64::MIN));
        s.0 = s.0.min(rows.t_ms[i]);
        s.1 = s.1.max(rows.t_ms[i]);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for &i in idx {
        let (lo, hi) = span[&rows.file[i]];
        let cut = lo + ((hi - lo) as f64 * share) as i64;
        if rows.t_ms[i] <= cut - gap_ms {
            a.push(i);
        } else if rows.t_ms[i] >= cut {
            b.push(i);
        }
    }
    (a, b)
}

fn fit_scores(
    p: &ValidClassifierParams,
    rows: &Rows,
    y: &[bool],
    fit_idx: &[usize],
    score_idx: &[usize],
) -> anyhow::Result<(keel_core::model::Algorithm, Vec<f64>)> {
    let x = matrix(rows, fit_idx);
    let yf: Vec<bool> = fit_idx.iter().map(|i| y[*i]).collect();
    let alg = p.fit(x.view(), &yf)?;
    let s = score_idx
        .iter()
        .map(|i| alg.predict(rows.row(*i)))
        .collect();
    Ok((alg, s))
}

/// Runs `keel-trainer train`.
///
/// # Errors
/// Any failure, with context.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let schema = FeatureSchema::new(parse_dims(&args.dims)?, args.window_s);
    schema.validate().map_err(anyhow::Error::msg)?;
    let label = LabelParams {
        horizon_s: args.horizon_s,
        mean_window_s: args.mean_window_s,
        util_threshold: args.util_threshold,
        cv_quantile: (args.cv_quantile < 1.0).then_some(args.cv_quantile),
    };
    label.check()?;
    let params = ClassifierParams::new(args.algo)
        .trees(args.trees)
        .max_depth(args.max_depth)
        .seed(args.seed)
        .check()?;
    let placement = Placement {
        pack: args.pack.clone(),
        target: args.target,
        window_s: args.placement_window_s,
    };
    let labels_file = args.labels.as_deref().map(read_labels).transpose()?;

    let (rows, files) = rows_of(&args.data, &schema, &label, &placement)?;
    let split = Split {
        train_share: args.train_share,
        holdout_hosts: args.holdout_hosts,
        gap_ms: ((args.window_s + args.horizon_s) * 1000.0) as i64,
    };
    let sides = split.sides(&rows);
    let train_idx: Vec<usize> = (0..rows.len())
        .filter(|i| sides[*i] == Side::Train)
        .collect();
    let cv_threshold = match (label.cv_quantile, &labels_file) {
        (Some(q), None) => quantile(train_idx.iter().map(|i| rows.cv[*i]), q),
        _ => None,
    };
    let y_opt = labels(&rows, &label, cv_threshold, labels_file.as_ref());
    let keep = |i: &usize| y_opt[*i].is_some();
    let y: Vec<bool> = y_opt.iter().map(|v| v.unwrap_or(false)).collect();
    let train_idx: Vec<usize> = train_idx.into_iter().filter(keep).collect();
    let test_idx: Vec<usize> = (0..rows.len())
        .filter(|i| sides[*i] == Side::Test)
        .filter(keep)
        .collect();
    if test_idx.is_empty() {
        bail!("too few samples: the split left no test rows (more hosts or a longer span needed)");
    }

    // Thresholds from out-of-sample scores inside the training side.
    let oos = out_of_sample(
        &params,
        &rows,
        &y,
        &train_idx,
        args.threshold_by,
        args.threshold_folds,
        split.gap_ms,
    )?;
    let val_y: Vec<bool> = oos.idx.iter().map(|i| y[*i]).collect();
    let threshold = best_f1_threshold(&oos.scores, &val_y);
    let candidate_threshold = if args.candidates_below > 0.0 {
        let cand = candidate_rows(&rows, &schema, &oos.idx, args.candidates_below);
        let cs: Vec<f64> = cand.iter().map(|k| oos.scores[*k]).collect();
        let cy: Vec<bool> = cand.iter().map(|k| val_y[*k]).collect();
        (cy.iter().any(|v| *v) && cy.iter().any(|v| !*v)).then(|| CandidateThreshold {
            below_util: args.candidates_below,
            threshold: best_f1_threshold(&cs, &cy),
        })
    } else {
        None
    };

    let fit_started = Instant::now();
    let pb = crate::pipeline::progress(1, "fitting");
    let (algorithm, test_scores) = fit_scores(&params, &rows, &y, &train_idx, &test_idx)?;
    pb.finish_and_clear();
    let fit_s = fit_started.elapsed().as_secs_f64();
    let test_y: Vec<bool> = test_idx.iter().map(|i| y[*i]).collect();
    let m = metrics(&test_scores, &test_y, threshold, true);
    // Flagging every row has F1 2p / (n + p): a threshold barely above that separates nothing.
    let positives = test_y.iter().filter(|v| **v).count();
    let f1_all = 2.0 * positives as f64 / (test_y.len() + positives).max(1) as f64;
    if positives > 0 && m.f1 < 1.25 * f1_all {
        tracing::warn!(
            threshold,
            f1 = m.f1,
            f1_flagging_every_row = f1_all,
            "at this threshold the held-out F1 is barely above flagging every row: the threshold \
             chosen out of sample does not carry over (too few or too unlike training days; more \
             days, or --threshold-by inner)"
        );
    }

    if let Some(path) = &args.export_matrix {
        let x = matrix(&rows, &train_idx);
        let yt: Vec<bool> = train_idx.iter().map(|i| y[*i]).collect();
        let (xb, yb) = crate::fit::balance(x.view(), &yt);
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        writeln!(w, "{},unstable", schema.names.join(","))?;
        for (r, yy) in xb.rows().into_iter().zip(&yb) {
            let line: Vec<String> = r.iter().map(|v| format!("{v}")).collect();
            writeln!(w, "{},{}", line.join(","), u8::from(*yy))?;
        }
        w.flush()?;
    }

    let mut metrics_map = BTreeMap::new();
    for (k, v) in [
        ("roc_auc", m.roc_auc),
        ("pr_auc", m.pr_auc),
        ("f1", m.f1),
        ("precision", m.precision),
        ("recall", m.recall),
        ("brier", m.brier.unwrap_or(f64::NAN)),
        ("test_rows", m.n as f64),
        ("test_positives", m.positives as f64),
    ] {
        if v.is_finite() {
            metrics_map.insert(k.to_owned(), v);
        }
    }
    if let Some(a) = linfa_roc_auc(&test_scores, &test_y) {
        metrics_map.insert("roc_auc_linfa".into(), a);
    }
    // Held-out rows whose host is below `candidates_below` now: F1 by the global threshold and
    // by the candidate threshold (what `ModelFile::is_unstable_at` uses).
    let cand = candidate_rows(&rows, &schema, &test_idx, args.candidates_below);
    let cs: Vec<f64> = cand.iter().map(|k| test_scores[*k]).collect();
    let cy: Vec<bool> = cand.iter().map(|k| test_y[*k]).collect();
    let cand_f1 = |t: f64| metrics(&cs, &cy, t, true).f1;
    let mut extra = vec![
        ("candidates_rows", cs.len() as f64),
        (
            "candidates_positives",
            cy.iter().filter(|v| **v).count() as f64,
        ),
        ("candidates_f1_global_threshold", cand_f1(threshold)),
    ];
    if let Some(c) = &candidate_threshold {
        extra.push(("candidates_f1", cand_f1(c.threshold)));
    }
    for (k, v) in extra {
        if v.is_finite() && !cs.is_empty() {
            metrics_map.insert(k.to_owned(), v);
        }
    }
    let mut hp = BTreeMap::new();
    for (k, v) in params.to_json() {
        hp.insert(k, v);
    }
    hp.insert(
        "split".into(),
        serde_json::json!({
            "train_share": split.train_share,
            "holdout_hosts": split.holdout_hosts,
            "gap_s": split.gap_ms as f64 / 1000.0,
            "threshold": oos.how,
            "threshold_rows": oos.idx.len(),
        }),
    );
    let positives = train_idx.iter().filter(|i| y[**i]).count() as u64;
    let model = ModelFile {
        format_version: FORMAT_VERSION,
        feature_schema: schema,
        label: LabelDefinition {
            horizon_s: label.horizon_s,
            mean_window_s: label.mean_window_s,
            util_threshold: label.util_threshold,
            cv_quantile: label.cv_quantile,
            cv_threshold,
            labels_file: args.labels.as_ref().map(|p| p.display().to_string()),
        },
        algorithm,
        threshold,
        candidate_threshold,
        provenance: Provenance {
            files,
            placement: Some(placement),
            trainer: format!("keel-trainer {}", env!("CARGO_PKG_VERSION")),
            created: chrono_now(),
            rows: train_idx.len() as u64,
            positives,
            hyperparameters: hp,
        },
        metrics: metrics_map,
    };
    model
        .save(&args.out)
        .with_context(|| format!("writing model {}", args.out.display()))?;
    println!(
        "{}: {} on {} rows ({} unstable), threshold {:.3}{}; held-out {} rows: ROC-AUC {:.3}, PR-AUC {:.3}, F1 {:.3}, Brier {:.3} ({:.1} s, fit {:.2} s)",
        args.out.display(),
        model.algorithm.name(),
        train_idx.len(),
        positives,
        threshold,
        candidate_threshold.map_or(String::new(), |c| format!(
            " ({:.3} below {} now: held-out F1 there {:.3}, {:.3} by the global threshold)",
            c.threshold,
            c.below_util,
            cand_f1(c.threshold),
            cand_f1(threshold)
        )),
        m.n,
        m.roc_auc,
        m.pr_auc,
        m.f1,
        m.brier.unwrap_or(f64::NAN),
        started.elapsed().as_secs_f64(),
        fit_s
    );
    Ok(())
}

/// Current UTC time, RFC 3339; `SOURCE_DATE_EPOCH` (seconds), when set, replaces the clock so
/// that the same inputs give the same file byte for byte.
fn chrono_now() -> String {
    let t = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows every hour from 1970-01-01 00:00:01 UTC: file 0 over three days, file 1 over the
    /// first of them (another host, or another policy's export of the same trace).
    fn rows() -> Rows {
        let mut r = Rows {
            width: 1,
            ..Rows::default()
        };
        r.host_ids.push("0:h".into());
        for (file, hours) in [(0u16, 72), (1, 24)] {
            for h in 0..hours {
                r.x.push(0.0);
                r.file.push(file);
                r.host.push(0);
                r.t_ms.push(1_000 + h * 3_600_000);
                r.max_mean.push(0.0);
                r.cv.push(0.0);
            }
        }
        r
    }

    #[test]
    fn calendar_days_are_left_out_whole_in_every_file_with_a_gap() {
        let r = rows();
        let idx: Vec<usize> = (0..r.len()).collect();
        let folds = day_folds(&r, &idx, 8);
        assert_eq!(folds, vec![vec![0], vec![1], vec![2]]);
        // Day 0 held out: file 0's first day and all of file 1 score together; gap 2 h: file 0
        // fits from 02:00 on day 1.
        let (fit, score) = fold_split(&r, &idx, &folds[0], 2 * 3_600_000);
        assert_eq!(
            score,
            [(0..24).collect::<Vec<_>>(), (72..96).collect()].concat()
        );
        assert_eq!(fit, (26..72).collect::<Vec<_>>());
        // Day 1 held out: rows less than 2 h from it neither fit nor score, in either file.
        let (fit, score) = fold_split(&r, &idx, &folds[1], 2 * 3_600_000);
        assert_eq!(score, (24..48).collect::<Vec<_>>());
        assert_eq!(
            fit,
            [
                (0..22).collect::<Vec<_>>(),
                (50..72).collect(),
                (72..94).collect()
            ]
            .concat()
        );
        // Fewer folds than days: whole days dealt round-robin.
        assert_eq!(day_folds(&r, &idx, 2), vec![vec![0, 2], vec![1]]);
        // One day only, even over two files: no folds (the caller splits by time instead).
        let one: Vec<usize> = (0..24).chain(72..96).collect();
        assert!(day_folds(&r, &one, 8).is_empty());
    }
}
