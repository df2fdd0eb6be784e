//! Evaluation metrics, computed directly, and the classic detectors as baselines.
//!
//! ROC-AUC is the Mann–Whitney statistic (ties count one half), PR-AUC is average precision
//! (scikit-learn's step-wise definition), Brier is the mean squared error of the score. linfa's
//! ROC-AUC is reported next to ours (`roc_auc_linfa`) because a linfa issue reports differences
//! from scikit-learn; `tests/evaluate.rs` checks ours against hand-computed cases.

use std::collections::BTreeMap;

use keel_core::features::{FeatureSchema, LAST, PER_DIMENSION, THR_MARGIN};
use linfa::prelude::BinaryClassification;
use serde::Serialize;

/// Metrics of one scorer on one set of rows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    /// Rows.
    pub n: usize,
    /// Unstable rows.
    pub positives: usize,
    /// Area under the ROC curve.
    pub roc_auc: f64,
    /// Average precision.
    pub pr_auc: f64,
    /// F1 at the threshold.
    pub f1: f64,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
    /// Mean squared error of scores in 0..=1 (`None` for unbounded scores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brier: Option<f64>,
    /// Decision threshold used.
    pub threshold: f64,
    /// Confusion matrix.
    pub confusion: Confusion,
}

/// Confusion matrix at a threshold.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct Confusion {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    pub fn_: usize,
}

/// ROC-AUC by ranks (ties count ½); NaN when a class is absent.
pub fn roc_auc(scores: &[f64], y: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += idx[i..=j].iter().filter(|k| y[**k]).count() as f64 * avg;
        i = j + 1;
    }
    let p = y.iter().filter(|v| **v).count() as f64;
    let n = y.len() as f64 - p;
    if p == 0.0 || n == 0.0 {
        return f64::NAN;
    }
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

/// Average precision (Σ (R_k − R_{k−1}) P_k over distinct thresholds, descending).
pub fn average_precision(scores: &[f64], y: &[bool]) -> f64 {
    let total = y.iter().filter(|v| **v).count() as f64;
    if total == 0.0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let (mut tp, mut fp, mut prev_r, mut ap, mut i) = (0.0, 0.0, 0.0, 0.0, 0);
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if y[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let r = tp / total;
        ap += (r - prev_r) * tp / (tp + fp);
        prev_r = r;
    }
    ap
}

/// Confusion matrix of `score >= threshold`.
pub fn confusion(scores: &[f64], y: &[bool], threshold: f64) -> Confusion {
    let mut c = Confusion::default();
    for (s, t) in scores.iter().zip(y) {
        match (*s >= threshold, *t) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, false) => c.tn += 1,
            (false, true) => c.fn_ += 1,
        }
    }
    c
}

fn prf(c: Confusion) -> (f64, f64, f64) {
    let p = if c.tp + c.fp > 0 {
        c.tp as f64 / (c.tp + c.fp) as f64
    } else {
        0.0
    };
    let r = if c.tp + c.fn_ > 0 {
        c.tp as f64 / (c.tp + c.fn_) as f64
    } else {
        0.0
    };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f)
}

/// All metrics of a scorer at a threshold.
pub fn metrics(scores: &[f64], y: &[bool], threshold: f64, probabilistic: bool) -> Metrics {
    let c = confusion(scores, y, threshold);
    let (precision, recall, f1) = prf(c);
    let brier = probabilistic.then(|| {
        scores
            .iter()
            .zip(y)
            .map(|(s, t)| (s - f64::from(u8::from(*t))).powi(2))
            .sum::<f64>()
            / scores.len().max(1) as f64
    });
    Metrics {
        n: y.len(),
        positives: y.iter().filter(|v| **v).count(),
        roc_auc: roc_auc(scores, y),
        pr_auc: average_precision(scores, y),
        f1,
        precision,
        recall,
        brier,
        threshold,
        confusion: c,
    }
}

/// linfa's ROC-AUC of probability scores (for the cross-check).
pub fn linfa_roc_auc(scores: &[f64], y: &[bool]) -> Option<f64> {
    let pr: Vec<linfa::dataset::Pr> = scores
        .iter()
        .map(|s| {
            linfa::dataset::Pr::try_from(s.clamp(0.0, 1.0) as f32)
                .unwrap_or(linfa::dataset::Pr::even())
        })
        .collect();
    pr.as_slice()
        .roc(y)
        .ok()
        .map(|r| f64::from(r.area_under_curve()))
        // With one class linfa's curve has no area (NaN); there is no ROC-AUC to cross-check.
        .filter(|a| a.is_finite())
}

/// The threshold that maximises F1 on (out-of-sample) scores.
pub fn best_f1_threshold(scores: &[f64], y: &[bool]) -> f64 {
    let mut cand: Vec<f64> = scores.to_vec();
    cand.sort_by(f64::total_cmp);
    cand.dedup();
    // At most ~400 candidate thresholds (quantiles) keep this linear-ish on large sets.
    let stride = (cand.len() / 400).max(1);
    let mut best = (f64::NEG_INFINITY, 0.5);
    for t in cand.iter().step_by(stride) {
        let (_, _, f) = prf(confusion(scores, y, *t));
        if f > best.0 {
            best = (f, *t);
        }
    }
    best.1.clamp(0.0, 1.0)
}

/// ROC curve points (fpr, tpr), descending thresholds.
pub fn roc_curve(scores: &[f64], y: &[bool]) -> Vec<(f64, f64)> {
    let p = y.iter().filter(|v| **v).count().max(1) as f64;
    let n = (y.len() as f64 - p).max(1.0);
    sweep(scores, y)
        .into_iter()
        .map(|(tp, fp)| (fp / n, tp / p))
        .collect()
}

/// Precision–recall curve points (recall, precision).
pub fn pr_curve(scores: &[f64], y: &[bool]) -> Vec<(f64, f64)> {
    let p = y.iter().filter(|v| **v).count().max(1) as f64;
    sweep(scores, y)
        .into_iter()
        .filter(|(tp, fp)| tp + fp > 0.0)
        .map(|(tp, fp)| (tp / p, tp / (tp + fp)))
        .collect()
}

fn sweep(scores: &[f64], y: &[bool]) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let mut out = vec![(0.0, 0.0)];
    let (mut tp, mut fp, mut i) = (0.0, 0.0, 0);
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if y[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        out.push((tp, fp));
    }
    out
}

/// The classic detectors on CPU, as scores (higher = more likely unstable) read from the feature
/// rows: `thr` (0.8), `iqr` (1.5), `mad` (2.5), `lr` (1.2) as −margin, each flagging at score ≥ 0
/// as the detector itself would; and `last` (current utilisation, flagging at ≥ 0.8).
pub fn baseline_scores(
    schema: &FeatureSchema,
    row: impl Fn(usize) -> Vec<f64>,
    n: usize,
) -> BTreeMap<&'static str, (Vec<f64>, f64)> {
    // CPU is always the schema's first dimension.
    let base = schema
        .dimensions
        .iter()
        .position(|d| *d == keel_core::features::Dimension::Cpu)
        .unwrap_or(0)
        * PER_DIMENSION.len();
    let mut out = BTreeMap::new();
    let rows: Vec<Vec<f64>> = (0..n).map(row).collect();
    for (k, name) in ["thr", "iqr", "mad", "lr"].iter().enumerate() {
        let s = rows.iter().map(|r| -r[base + THR_MARGIN + k]).collect();
        out.insert(*name, (s, 0.0));
    }
    out.insert("last", (rows.iter().map(|r| r[base + LAST]).collect(), 0.8));
    out
}

/// Calibration: per score decile bin, (mean score, observed share, count).
pub fn calibration(scores: &[f64], y: &[bool], bins: usize) -> Vec<(f64, f64, usize)> {
    let mut acc = vec![(0.0, 0.0, 0usize); bins];
    for (s, t) in scores.iter().zip(y) {
        let b = ((s.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        acc[b].0 += s;
        acc[b].1 += f64::from(u8::from(*t));
        acc[b].2 += 1;
    }
    acc.into_iter()
        .filter(|a| a.2 > 0)
        .map(|(s, p, c)| (s / c as f64, p / c as f64, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn auc_by_hand() {
        // Positives at 0.8, 0.4; negatives at 0.6, 0.2: 3 of 4 pairs ordered right.
        let s = [0.8, 0.6, 0.4, 0.2];
        let y = [true, false, true, false];
        assert_relative_eq!(roc_auc(&s, &y), 0.75);
        // AP: ranks 1 (P=1, R=.5), 3 (P=2/3, R=1) → .5·1 + .5·2/3.
        assert_relative_eq!(average_precision(&s, &y), 0.5 + 1.0 / 3.0);
        // Ties count one half.
        assert_relative_eq!(roc_auc(&[0.5, 0.5], &[true, false]), 0.5);
        assert!(roc_auc(&[0.1], &[true]).is_nan());
    }

    #[test]
    fn confusion_and_f1() {
        let m = metrics(
            &[0.9, 0.7, 0.3, 0.1],
            &[true, false, true, false],
            0.5,
            true,
        );
        assert_eq!(
            m.confusion,
            Confusion {
                tp: 1,
                fp: 1,
                tn: 1,
                fn_: 1
            }
        );
        assert_relative_eq!(m.f1, 0.5);
        assert_relative_eq!(m.brier.unwrap(), (0.01 + 0.49 + 0.49 + 0.01) / 4.0);
    }

    #[test]
    fn best_threshold_separates() {
        let s = [0.1, 0.2, 0.3, 0.7, 0.8];
        let y = [false, false, false, true, true];
        let t = best_f1_threshold(&s, &y);
        assert!(t > 0.3 && t <= 0.7, "{t}");
    }
}
