//! `keel-trainer eval`: scores a model and the classic detectors on the same rows of a dataset.
//!
//! The dataset is prepared exactly as in training: VM-only files are placed on hosts with the
//! placement recorded in the model; labels use the model's label definition (including the CV
//! threshold learnt on its training set). If the file is one the model was trained on (same
//! SHA-256), only the rows of the model's held-out test side are scored, so evaluating a model
//! on its own training file still cannot leak; `--all-rows` overrides that.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use keel_core::model::{ModelFile, Placement};
use serde::Serialize;

use crate::dataset::{Side, Split};
use crate::evaluate::{baseline_scores, linfa_roc_auc, metrics, Metrics};
use crate::label::LabelParams;
use crate::pipeline::{labels, rows_of};

/// Arguments of `keel-trainer eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Canonical Parquet file(s) to evaluate on.
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write an HTML report with plots into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Score every row, even of files the model was trained on.
    #[arg(long)]
    pub all_rows: bool,
    /// Also report metrics on rows whose host is below this utilisation now (migration targets).
    #[arg(long, default_value_t = 0.8)]
    pub candidates_below: f64,
}

/// The evaluation result (`--json` prints it).
#[derive(Debug, Serialize)]
pub struct Evaluation {
    /// Model file.
    pub model: String,
    /// Algorithm.
    pub algorithm: String,
    /// Data files.
    pub data: Vec<String>,
    /// Whether rows were restricted to the model's held-out side.
    pub held_out_only: bool,
    /// The model's metrics.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// linfa's ROC-AUC on the same scores (cross-check).
    pub roc_auc_linfa: Option<f64>,
    /// The classic detectors on the same rows.
    pub baselines: BTreeMap<String, Metrics>,
    /// The model on rows where the host is below `candidates_below` now (by its candidate
    /// threshold when it has one).
    pub candidates: Option<Metrics>,
    /// The best baseline on those rows.
    pub candidates_best_baseline: Option<(String, Metrics)>,
}

/// Scores, labels and everything the report needs.
#[derive(Debug)]
pub struct Scored {
    /// The evaluation.
    pub eval: Evaluation,
    /// Model scores.
    pub scores: Vec<f64>,
    /// Labels.
    pub y: Vec<bool>,
    /// Baseline scores.
    pub baseline_scores: BTreeMap<String, Vec<f64>>,
    /// The model.
    pub model: ModelFile,
}

/// Evaluates a model on files.
///
/// # Errors
/// A model of another format version, unreadable data, missing columns, too few samples.
pub fn evaluate(args: &EvalArgs) -> anyhow::Result<Scored> {
    let model = ModelFile::load(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let label = LabelParams {
        horizon_s: model.label.horizon_s,
        mean_window_s: model.label.mean_window_s,
        util_threshold: model.label.util_threshold,
        cv_quantile: model.label.cv_quantile,
    };
    let placement = model.provenance.placement.clone().unwrap_or(Placement {
        pack: "cpu".into(),
        target: 0.7,
        window_s: 3600.0,
    });
    let (rows, files) = rows_of(&args.data, &model.feature_schema, &label, &placement)?;
    let y_all = labels(&rows, &label, model.label.cv_threshold, None);
    // Rows of files the model trained on: held-out side only.
    let trained: Vec<bool> = files
        .iter()
        .map(|f| model.provenance.files.iter().any(|t| t.sha256 == f.sha256))
        .collect();
    let split_json = model.provenance.hyperparameters.get("split");
    let get = |k: &str, d: f64| {
        split_json
            .and_then(|s| s.get(k))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(d)
    };
    let split = Split {
        train_share: get("train_share", 0.6),
        holdout_hosts: get("holdout_hosts", 0.3),
        gap_ms: (get("gap_s", model.window_s() + model.label.horizon_s) * 1000.0) as i64,
    };
    let held_out_only = !args.all_rows && trained.iter().any(|t| *t);
    let sides = if held_out_only {
        split.sides(&rows)
    } else {
        vec![Side::Test; rows.len()]
    };
    let idx: Vec<usize> = (0..rows.len())
        .filter(|i| y_all[*i].is_some())
        .filter(|i| !trained[rows.file[*i] as usize] || args.all_rows || sides[*i] == Side::Test)
        .collect();
    if idx.len() < 2 {
        anyhow::bail!("too few samples to evaluate: {} labelled rows", idx.len());
    }
    let y: Vec<bool> = idx.iter().map(|i| y_all[*i].unwrap_or(false)).collect();
    let scores: Vec<f64> = idx
        .iter()
        .map(|i| model.score_features(rows.row(*i)))
        .collect();
    let m = metrics(&scores, &y, model.threshold, true);
    let base = baseline_scores(
        &model.feature_schema,
        |k| rows.row(idx[k]).to_vec(),
        idx.len(),
    );
    let mut baselines = BTreeMap::new();
    let mut bscores = BTreeMap::new();
    for (name, (s, thr)) in base {
        baselines.insert(name.to_owned(), metrics(&s, &y, thr, false));
        bscores.insert(name.to_owned(), s);
    }
    // Candidates: the host is below `candidates_below` now (where a migration would go).
    let cpu_last = model
        .feature_schema
        .index("cpu_last")
        .context("model has no cpu_last feature")?;
    let cand: Vec<usize> = (0..idx.len())
        .filter(|k| rows.row(idx[*k])[cpu_last] < args.candidates_below)
        .collect();
    let pick = |v: &[f64]| cand.iter().map(|k| v[*k]).collect::<Vec<_>>();
    let cy: Vec<bool> = cand.iter().map(|k| y[*k]).collect();
    let has_both = cy.iter().any(|v| *v) && cy.iter().any(|v| !*v);
    // Those rows are judged by the model's candidate threshold when it has one for them.
    let cand_threshold = model
        .candidate_threshold
        .filter(|c| args.candidates_below <= c.below_util)
        .map_or(model.threshold, |c| c.threshold);
    let candidates = has_both.then(|| metrics(&pick(&scores), &cy, cand_threshold, true));
    let candidates_best_baseline = if has_both {
        bscores
            .iter()
            .map(|(n, s)| {
                let thr = baselines[n].threshold;
                (n.clone(), metrics(&pick(s), &cy, thr, false))
            })
            .max_by(|a, b| a.1.roc_auc.total_cmp(&b.1.roc_auc))
    } else {
        None
    };
    let eval = Evaluation {
        model: args.model.display().to_string(),
        algorithm: model.algorithm.name().to_owned(),
        data: files.iter().map(|f| f.path.clone()).collect(),
        held_out_only,
        roc_auc_linfa: linfa_roc_auc(&scores, &y),
        metrics: m,
        baselines,
        candidates,
        candidates_best_baseline,
    };
    Ok(Scored {
        eval,
        scores,
        y,
        baseline_scores: bscores,
        model,
    })
}

/// Runs `keel-trainer eval`.
///
/// # Errors
/// Any failure, with context.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let scored = evaluate(&args)?;
    if let Some(dir) = &args.report {
        crate::report::write(dir, &scored)
            .with_context(|| format!("writing report to {}", dir.display()))?;
    }
    let e = &scored.eval;
    if args.json {
        println!("{}", serde_json::to_string_pretty(e)?);
        return Ok(());
    }
    println!(
        "{} ({}) on {}{}",
        e.model,
        e.algorithm,
        e.data.join(", "),
        if e.held_out_only {
            " (held-out rows only)"
        } else {
            ""
        }
    );
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "scorer", "rows", "pos", "roc_auc", "pr_auc", "f1", "prec", "recall"
    );
    let line = |name: &str, m: &Metrics| {
        println!(
            "{:<12} {:>8} {:>8} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            name, m.n, m.positives, m.roc_auc, m.pr_auc, m.f1, m.precision, m.recall
        );
    };
    line("model", &e.metrics);
    for (n, m) in &e.baselines {
        line(n, m);
    }
    if let Some(c) = &e.candidates {
        line("model<0.8", c);
    }
    if let Some((n, c)) = &e.candidates_best_baseline {
        line(&format!("{n}<0.8"), c);
    }
    println!(
        "brier {:.4}, threshold {:.3}, linfa roc_auc {:?}, confusion {:?}",
        e.metrics.brier.unwrap_or(f64::NAN),
        e.metrics.threshold,
        e.roc_auc_linfa,
        e.metrics.confusion
    );
    Ok(())
}
