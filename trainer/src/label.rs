//! Labels from what happened next.
//!
//! A host is *unstable* at step `t` if, within the horizon `H` after `t` (the current step
//! excluded), a rolling mean of its CPU utilisation over `mean_window_s` reaches `util_threshold`,
//! or (when `cv_quantile` is set) the coefficient of variation of its utilisation over the horizon
//! exceeds that quantile of the training set's horizon CVs. Defaults: H = 30 min, 10-minute mean,
//! 0.9, 90th percentile. The rolling means lie wholly inside the horizon.
//!
//! A labels file (`--labels`, CSV `host_id,ts_ms,unstable` with 0/1) replaces the rule: rows it
//! does not name are dropped.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};

/// Label rule parameters (unchecked, linfa style); [`LabelParams::check`] validates them.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelParams {
    /// Look-ahead horizon, seconds.
    pub horizon_s: f64,
    /// Width of the rolling mean, seconds.
    pub mean_window_s: f64,
    /// Utilisation the rolling mean must reach.
    pub util_threshold: f64,
    /// Quantile of horizon CVs above which a host is unstable (`None`: rule off).
    pub cv_quantile: Option<f64>,
}

impl Default for LabelParams {
    fn default() -> Self {
        Self {
            horizon_s: 1800.0,
            mean_window_s: 600.0,
            util_threshold: 0.9,
            cv_quantile: Some(0.9),
        }
    }
}

/// Checked label parameters, in steps of a given series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steps {
    /// Horizon, steps.
    pub horizon: usize,
    /// Rolling mean width, steps.
    pub mean: usize,
}

impl LabelParams {
    /// Validates the parameters.
    ///
    /// # Errors
    /// A message naming the bad parameter.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(self.horizon_s > 0.0 && self.horizon_s.is_finite()) {
            bail!("label horizon must be positive, got {}", self.horizon_s);
        }
        if !(self.mean_window_s > 0.0 && self.mean_window_s <= self.horizon_s) {
            bail!(
                "label mean window must be in (0, horizon], got {}",
                self.mean_window_s
            );
        }
        if !(self.util_threshold > 0.0 && self.util_threshold.is_finite()) {
            bail!(
                "label threshold must be positive, got {}",
                self.util_threshold
            );
        }
        if let Some(q) = self.cv_quantile {
            if !(0.0..1.0).contains(&q) {
                bail!("label CV quantile must be in [0, 1), got {q}");
            }
        }
        Ok(())
    }

    /// The horizon and mean width in steps of `step_s`.
    pub fn steps(&self, step_s: f64) -> Steps {
        let horizon = ((self.horizon_s / step_s).round() as usize).max(1);
        let mean = ((self.mean_window_s / step_s).round() as usize).clamp(1, horizon);
        Steps { horizon, mean }
    }
}

/// What happened after `t`: the highest rolling mean and the CV over the horizon.
/// `None` when the horizon runs past the series or holds no finite value.
pub fn future(cpu: &[f64], t: usize, s: Steps) -> Option<(f64, f64)> {
    let end = t + s.horizon;
    if end >= cpu.len() {
        return None;
    }
    let h = &cpu[t + 1..=end];
    let mut best = f64::NEG_INFINITY;
    for w in h.windows(s.mean) {
        let (sum, n) = w
            .iter()
            .filter(|v| v.is_finite())
            .fold((0.0, 0usize), |(a, n), v| (a + v, n + 1));
        if n > 0 {
            best = best.max(sum / n as f64);
        }
    }
    if !best.is_finite() {
        return None;
    }
    let vals: Vec<f64> = h.iter().copied().filter(|v| v.is_finite()).collect();
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let sd = (vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    let cv = if mean > 1e-9 { sd / mean } else { 0.0 };
    Some((best, cv))
}

/// Quantile (linear interpolation) of finite values; `None` when there are none.
pub fn quantile(values: impl Iterator<Item = f64>, q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// The label of one row from its future statistics.
pub fn unstable(max_mean: f64, cv: f64, params: &LabelParams, cv_threshold: Option<f64>) -> bool {
    max_mean >= params.util_threshold || cv_threshold.is_some_and(|c| cv > c)
}

/// Labels read from a CSV file `host_id,ts_ms,unstable`.
pub type LabelsFile = HashMap<(String, i64), bool>;

/// Reads a labels file.
///
/// # Errors
/// A malformed line, naming the file and line.
pub fn read_labels(path: &Path) -> anyhow::Result<LabelsFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("host_id")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = || {
            format!(
                "{}:{}: expected host_id,ts_ms,unstable(0/1)",
                path.display(),
                i + 1
            )
        };
        if f.len() != 3 {
            bail!(bad());
        }
        let ts: i64 = f[1].parse().with_context(bad)?;
        let y = match f[2] {
            "0" | "false" => false,
            "1" | "true" => true,
            _ => bail!(bad()),
        };
        out.insert((f[0].to_owned(), ts), y);
    }
    if out.is_empty() {
        bail!("{}: no labels", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_step_is_excluded_and_means_stay_in_the_horizon() {
        let s = LabelParams::default().steps(300.0);
        assert_eq!(
            s,
            Steps {
                horizon: 6,
                mean: 2
            }
        );
        // A spike now does not count; a single future spike averages with its neighbour.
        let mut x = vec![0.5; 20];
        x[3] = 1.0;
        let (m, _) = future(&x, 3, s).unwrap();
        assert!((m - 0.5).abs() < 1e-12);
        x[5] = 1.0;
        x[6] = 0.8;
        let (m, _) = future(&x, 3, s).unwrap();
        assert!((m - 0.9).abs() < 1e-12);
        assert!(unstable(m, 0.0, &LabelParams::default(), None));
        // The horizon must fit in the series.
        assert!(future(&x, 14, s).is_none());
        assert!(future(&x, 13, s).is_some());
    }

    #[test]
    fn checks_and_labels_file() {
        assert!(LabelParams {
            horizon_s: 0.0,
            ..Default::default()
        }
        .check()
        .is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        std::fs::write(&p, "host_id,ts_ms,unstable\nh1,100,1\nh2,200,0\n").unwrap();
        let l = read_labels(&p).unwrap();
        assert_eq!(l.get(&("h1".into(), 100)), Some(&true));
        std::fs::write(&p, "h1,100,maybe\n").unwrap();
        let e = format!("{:#}", read_labels(&p).unwrap_err());
        assert!(e.contains("l.csv:1"), "{e}");
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(
            quantile([1.0, 2.0, 3.0, f64::NAN].into_iter(), 0.5),
            Some(2.0)
        );
        assert_eq!(quantile(std::iter::empty(), 0.5), None);
    }
}
