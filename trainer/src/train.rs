//! `keel-trainer train`: files → host series → features and labels → a linfa classifier →
//! a model file.
//!
//! The rows are split by time with a gap of W + H and by host (see [`crate::dataset`]). The
//! training side is split once more by time (75 % / 25 %, same gap): a model fitted on the first
//! part scores the second, and the decision threshold is the one that maximises F1 on those
//! out-of-sample scores. The model is then fitted on the whole training side and evaluated on the
//! held-out test side; those metrics go into the model file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use keel_core::features::{Dimension, FeatureSchema, DEFAULT_WINDOW_S};
use keel_core::model::{LabelDefinition, ModelFile, Placement, Provenance, FORMAT_VERSION};
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

    // Threshold from out-of-sample scores inside the training side.
    let (inner_fit, inner_val) = inner_split(&rows, &train_idx, 0.75, split.gap_ms);
    let (_, val_scores) = fit_scores(&params, &rows, &y, &inner_fit, &inner_val)
        .context("fitting on the inner training part")?;
    let val_y: Vec<bool> = inner_val.iter().map(|i| y[*i]).collect();
    let threshold = best_f1_threshold(&val_scores, &val_y);

    let fit_started = Instant::now();
    let pb = crate::pipeline::progress(1, "fitting");
    let (algorithm, test_scores) = fit_scores(&params, &rows, &y, &train_idx, &test_idx)?;
    pb.finish_and_clear();
    let fit_s = fit_started.elapsed().as_secs_f64();
    let test_y: Vec<bool> = test_idx.iter().map(|i| y[*i]).collect();
    let m = metrics(&test_scores, &test_y, threshold, true);

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
        ("fit_seconds", fit_s),
    ] {
        if v.is_finite() {
            metrics_map.insert(k.to_owned(), v);
        }
    }
    if let Some(a) = linfa_roc_auc(&test_scores, &test_y) {
        metrics_map.insert("roc_auc_linfa".into(), a);
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
            "threshold": "max F1 on the last 25% (by time, after the gap) of the training side, fitted on the first 75%",
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
    model.validate()?;
    model
        .save(&args.out)
        .with_context(|| format!("writing model {}", args.out.display()))?;
    println!(
        "{}: {} on {} rows ({} unstable), threshold {:.3}; held-out {} rows: ROC-AUC {:.3}, PR-AUC {:.3}, F1 {:.3}, Brier {:.3} ({:.1} s, fit {:.2} s)",
        args.out.display(),
        model.algorithm.name(),
        train_idx.len(),
        positives,
        threshold,
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

/// Current UTC time, RFC 3339.
fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
