//! Stability features: pure functions from a host's recent utilisation history to a feature vector.
//!
//! A [`HostWindow`] holds a host's utilisation series (fractions of capacity, oldest first) per
//! dimension: CPU always, memory, network and disk where the source measures them. [`extract`]
//! reduces the last `window_s` seconds of each dimension named by a [`FeatureSchema`] to
//! [`PER_DIMENSION`] numbers, in the schema's order:
//!
//! | name | meaning |
//! |---|---|
//! | `mean`, `last` | level: mean over the window, most recent value |
//! | `std`, `cv` | spread: population standard deviation, coefficient of variation (std / mean) |
//! | `min`, `max`, `p90`, `p95` | extremes and high percentiles (linear interpolation) |
//! | `slope` | least-squares trend, utilisation per hour |
//! | `acf1` | lag-1 autocorrelation |
//! | `above_0_8`, `above_0_9` | share of the window above 0.8 and 0.9 |
//! | `thr_margin` | static threshold detector: 0.8 − last |
//! | `iqr_margin` | IQR detector (s = 1.5): (1 − s·IQR) − last |
//! | `mad_margin` | MAD detector (s = 2.5): (1 − s·MAD) − last |
//! | `lr_margin` | local regression detector (s = 1.2): 1 − s·(one-step-ahead prediction) |
//!
//! The detectors are those of Beloglazov & Buyya (CCPE 2012): each declares a host overloaded when
//! its margin is ≤ 0, so a margin is also a baseline score (lower = more likely to overload).
//! The local regression fits a tricube-weighted least-squares line to the last 10 values (recent
//! values weigh most) and predicts the next step.
//!
//! Feature names are `<dimension>_<feature>` (e.g. `cpu_p95`); the names, their order and
//! [`FEATURE_VERSION`] are part of every model file. Extraction is total: non-finite inputs are
//! dropped, values are clamped to `0..=10`, and an empty series gives zeros; the result never
//! contains NaN or infinity.

use serde::{Deserialize, Serialize};

/// Version of the feature definitions. Bumped when any feature's meaning changes.
pub const FEATURE_VERSION: u32 = 1;

/// Default history window, seconds (1 hour).
pub const DEFAULT_WINDOW_S: f64 = 3600.0;

/// The features computed per dimension, in order.
pub const PER_DIMENSION: [&str; 16] = [
    "mean",
    "last",
    "std",
    "cv",
    "min",
    "max",
    "p90",
    "p95",
    "slope",
    "acf1",
    "above_0_8",
    "above_0_9",
    "thr_margin",
    "iqr_margin",
    "mad_margin",
    "lr_margin",
];

/// Index of `last` in [`PER_DIMENSION`].
pub const LAST: usize = 1;
/// Index of `thr_margin` in [`PER_DIMENSION`] (the first detector margin).
pub const THR_MARGIN: usize = 12;

/// Static threshold of the THR detector.
pub const THR_THRESHOLD: f64 = 0.8;
/// Safety parameter of the IQR detector.
pub const IQR_SAFETY: f64 = 1.5;
/// Safety parameter of the MAD detector.
pub const MAD_SAFETY: f64 = 2.5;
/// Safety parameter of the local regression detector.
pub const LR_SAFETY: f64 = 1.2;
/// Points the local regression detector fits.
pub const LR_POINTS: usize = 10;

/// Largest utilisation kept (10× overcommit); larger values are clamped.
const MAX_UTIL: f64 = 10.0;

/// A utilisation dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// CPU utilisation.
    Cpu,
    /// Memory utilisation.
    Mem,
    /// Network utilisation (of bandwidth).
    Net,
    /// Disk utilisation.
    Disk,
}

impl Dimension {
    /// All dimensions, in feature order.
    pub const ALL: [Self; 4] = [Self::Cpu, Self::Mem, Self::Net, Self::Disk];

    /// Lower-case name used as feature-name prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Mem => "mem",
            Self::Net => "net",
            Self::Disk => "disk",
        }
    }
}

/// A host's recent history: utilisation fractions per dimension, oldest first, one value per
/// `step_s` seconds. Only the last `window_s` of the schema are used; longer slices are fine.
#[derive(Debug, Clone, Copy)]
pub struct HostWindow<'a> {
    /// Seconds between consecutive values.
    pub step_s: f64,
    /// CPU utilisation.
    pub cpu: &'a [f64],
    /// Memory utilisation, where measured.
    pub mem: Option<&'a [f64]>,
    /// Network utilisation, where measured.
    pub net: Option<&'a [f64]>,
    /// Disk utilisation, where measured.
    pub disk: Option<&'a [f64]>,
}

impl<'a> HostWindow<'a> {
    /// A CPU-only window.
    pub fn cpu(step_s: f64, cpu: &'a [f64]) -> Self {
        Self {
            step_s,
            cpu,
            mem: None,
            net: None,
            disk: None,
        }
    }

    /// The series of one dimension, if present.
    pub fn series(&self, dim: Dimension) -> Option<&'a [f64]> {
        match dim {
            Dimension::Cpu => Some(self.cpu),
            Dimension::Mem => self.mem,
            Dimension::Net => self.net,
            Dimension::Disk => self.disk,
        }
    }
}

/// Which features a model uses: the dimensions, the window, and the resulting names in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSchema {
    /// [`FEATURE_VERSION`] the names were produced by.
    pub version: u32,
    /// History window, seconds.
    pub window_s: f64,
    /// Dimensions, in feature order.
    pub dimensions: Vec<Dimension>,
    /// Feature names, in vector order (`<dimension>_<feature>`).
    pub names: Vec<String>,
}

impl FeatureSchema {
    /// The schema of the current version for these dimensions and window.
    pub fn new(dimensions: Vec<Dimension>, window_s: f64) -> Self {
        let names = Self::names_for(&dimensions);
        Self {
            version: FEATURE_VERSION,
            window_s,
            dimensions,
            names,
        }
    }

    /// The CPU-only schema over the default window.
    pub fn cpu_default() -> Self {
        Self::new(vec![Dimension::Cpu], DEFAULT_WINDOW_S)
    }

    fn names_for(dimensions: &[Dimension]) -> Vec<String> {
        dimensions
            .iter()
            .flat_map(|d| {
                PER_DIMENSION
                    .iter()
                    .map(move |f| format!("{}_{f}", d.name()))
            })
            .collect()
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.dimensions.len() * PER_DIMENSION.len()
    }

    /// Whether the schema has no features.
    pub fn is_empty(&self) -> bool {
        self.dimensions.is_empty()
    }

    /// Index of a feature by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Checks version, window and that the names are what this build computes.
    ///
    /// # Errors
    /// A message naming the first mismatch.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != FEATURE_VERSION {
            return Err(format!(
                "feature version {} is not supported (this build computes {FEATURE_VERSION})",
                self.version
            ));
        }
        if !(self.window_s > 0.0 && self.window_s.is_finite()) {
            return Err(format!("window_s must be positive, got {}", self.window_s));
        }
        if self.dimensions.is_empty() {
            return Err("no dimensions".into());
        }
        let expected = Self::names_for(&self.dimensions);
        if let Some((i, (e, g))) = expected
            .iter()
            .zip(&self.names)
            .enumerate()
            .find(|(_, (e, g))| e != g)
        {
            return Err(format!("feature {i} is named {g:?}, expected {e:?}"));
        }
        if expected.len() != self.names.len() {
            return Err(format!(
                "{} feature names, expected {}",
                self.names.len(),
                expected.len()
            ));
        }
        Ok(())
    }
}

/// Extracts the schema's features from a window, in the schema's order.
///
/// Total: a dimension the window lacks gives zeros (callers that must not guess check
/// [`HostWindow::series`] first, as [`crate::model::ModelFile::score`] does).
pub fn extract(window: &HostWindow<'_>, schema: &FeatureSchema) -> Vec<f64> {
    let mut out = Vec::with_capacity(schema.len());
    let mut buf = Vec::new();
    for &dim in &schema.dimensions {
        let mut f = [0.0; PER_DIMENSION.len()];
        if let Some(series) = window.series(dim) {
            let n = points_in_window(series.len(), window.step_s, schema.window_s);
            buf.clear();
            buf.extend(
                series[series.len() - n..]
                    .iter()
                    .filter(|v| v.is_finite())
                    .map(|v| v.clamp(0.0, MAX_UTIL)),
            );
            dimension_features(&buf, window.step_s, &mut f);
        }
        out.extend_from_slice(&f);
    }
    out
}

/// How many of the last `len` values fall in `window_s` at `step_s` (all when the step is unusable).
fn points_in_window(len: usize, step_s: f64, window_s: f64) -> usize {
    if !(step_s > 0.0 && step_s.is_finite() && window_s.is_finite()) {
        return len;
    }
    let n = (window_s / step_s).round().max(1.0);
    // `n` is a positive finite float; the `min` keeps it an index into the slice.
    (n.min(len as f64)) as usize
}

/// The [`PER_DIMENSION`] features of one cleaned series (finite, clamped).
fn dimension_features(x: &[f64], step_s: f64, f: &mut [f64; PER_DIMENSION.len()]) {
    let n = x.len();
    if n == 0 {
        // Nothing measured: zero level, and detector margins as for an idle host.
        f[12] = THR_THRESHOLD;
        f[13] = 1.0;
        f[14] = 1.0;
        f[15] = 1.0;
        return;
    }
    let nf = n as f64;
    let mean = x.iter().sum::<f64>() / nf;
    let last = x[n - 1];
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / nf;
    let std = var.sqrt();
    let cv = if mean > 1e-9 { std / mean } else { 0.0 };
    let mut sorted = x.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let q = |p: f64| quantile_sorted(&sorted, p);
    let median = q(0.5);
    let iqr = q(0.75) - q(0.25);
    let mut dev: Vec<f64> = x.iter().map(|v| (v - median).abs()).collect();
    let mad = median_select(&mut dev);
    let per_hour = if step_s > 0.0 && step_s.is_finite() {
        3600.0 / step_s
    } else {
        1.0
    };
    let slope = ls_slope(x) * per_hour;
    let acf1 = if n >= 3 && var > 1e-12 {
        x.windows(2)
            .map(|w| (w[0] - mean) * (w[1] - mean))
            .sum::<f64>()
            / (var * nf)
    } else {
        0.0
    };
    let above = |t: f64| x.iter().filter(|v| **v > t).count() as f64 / nf;
    *f = [
        mean,
        last,
        std,
        cv,
        sorted[0],
        sorted[n - 1],
        q(0.90),
        q(0.95),
        slope,
        acf1,
        above(0.8),
        above(0.9),
        THR_THRESHOLD - last,
        (1.0 - IQR_SAFETY * iqr) - last,
        (1.0 - MAD_SAFETY * mad) - last,
        1.0 - LR_SAFETY * lr_predict(x),
    ];
    for v in f.iter_mut() {
        if !v.is_finite() {
            *v = 0.0;
        }
    }
}

/// Quantile of a sorted, non-empty slice, linear interpolation between closest ranks.
fn quantile_sorted(s: &[f64], p: f64) -> f64 {
    let pos = p * (s.len() - 1) as f64;
    // `pos` is within 0..=len-1, so floor and ceil are valid indices.
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Median of a non-empty slice (mean of the two middle values for an even length), by selection
/// rather than a full sort; reorders the slice.
fn median_select(v: &mut [f64]) -> f64 {
    let n = v.len();
    let (left, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *mid;
    if n % 2 == 1 {
        return hi;
    }
    let lo = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

/// Least-squares slope per step of a series against its index (0 for fewer than 2 points).
fn ls_slope(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 {
        return 0.0;
    }
    let nf = n as f64;
    let tm = (nf - 1.0) / 2.0;
    let ym = x.iter().sum::<f64>() / nf;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in x.iter().enumerate() {
        let t = i as f64 - tm;
        sxy += t * (y - ym);
        sxx += t * t;
    }
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

/// One-step-ahead prediction of a tricube-weighted least-squares line through the last
/// [`LR_POINTS`] values (the most recent weighs most); the last value for fewer than 3 points.
fn lr_predict(x: &[f64]) -> f64 {
    let n = x.len().min(LR_POINTS);
    let tail = &x[x.len() - n..];
    let last = tail[n - 1];
    if n < 3 {
        return last;
    }
    let nf = n as f64;
    let (mut sw, mut swt, mut swy) = (0.0, 0.0, 0.0);
    let w = |i: usize| {
        // Distance from the newest point, scaled to just under 1 at the oldest.
        let d = (n - 1 - i) as f64 / nf;
        let k = 1.0 - d * d * d;
        k * k * k
    };
    for (i, y) in tail.iter().enumerate() {
        let wi = w(i);
        sw += wi;
        swt += wi * i as f64;
        swy += wi * y;
    }
    let tm = swt / sw;
    let ym = swy / sw;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in tail.iter().enumerate() {
        let wi = w(i);
        let t = i as f64 - tm;
        sxy += wi * t * (y - ym);
        sxx += wi * t * t;
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    ym + b * (nf - tm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    fn feat(x: &[f64]) -> Vec<f64> {
        extract(&HostWindow::cpu(300.0, x), &FeatureSchema::cpu_default())
    }

    #[test]
    fn names_follow_dimensions_and_validate() {
        let s = FeatureSchema::new(vec![Dimension::Cpu, Dimension::Mem], 3600.0);
        assert_eq!(s.len(), 32);
        assert_eq!(s.names[0], "cpu_mean");
        assert_eq!(s.names[16], "mem_mean");
        assert_eq!(s.index("cpu_lr_margin"), Some(15));
        s.validate().unwrap();
        let mut bad = s.clone();
        bad.names.swap(0, 1);
        assert!(bad.validate().unwrap_err().contains("cpu_last"));
        let mut old = s;
        old.version = 0;
        assert!(old.validate().unwrap_err().contains("feature version 0"));
    }

    #[test]
    fn known_values() {
        let x = [0.1, 0.2, 0.3, 0.4, 0.5];
        let f = feat(&x);
        assert_relative_eq!(f[0], 0.3, epsilon = 1e-12);
        assert_relative_eq!(f[1], 0.5);
        assert_relative_eq!(f[2], 0.02f64.sqrt(), epsilon = 1e-12);
        assert_relative_eq!(f[4], 0.1);
        assert_relative_eq!(f[5], 0.5);
        assert_relative_eq!(f[6], 0.46, epsilon = 1e-12);
        // 0.1 per 5-minute step = 1.2 per hour.
        assert_relative_eq!(f[8], 1.2, epsilon = 1e-12);
        assert_relative_eq!(f[12], 0.3, epsilon = 1e-12);
        // A perfect line: local regression predicts 0.6 next.
        assert_relative_eq!(f[15], 1.0 - 1.2 * 0.6, epsilon = 1e-9);
        // IQR = 0.4 - 0.2.
        assert_relative_eq!(f[13], 1.0 - 1.5 * 0.2 - 0.5, epsilon = 1e-12);
        // MAD = median(|x - 0.3|) = 0.1.
        assert_relative_eq!(f[14], 1.0 - 2.5 * 0.1 - 0.5, epsilon = 1e-12);
    }

    #[test]
    fn window_keeps_only_the_tail() {
        let mut x = vec![1.0; 100];
        x.extend(std::iter::repeat_n(0.5, 12));
        let f = feat(&x);
        assert_relative_eq!(f[0], 0.5);
        assert_relative_eq!(f[5], 0.5);
    }

    #[test]
    fn median_by_selection_matches_sorting() {
        for n in 1..30usize {
            let mut v: Vec<f64> = (0..n).map(|i| ((i * 7919) % 31) as f64 / 7.0).collect();
            let mut s = v.clone();
            s.sort_by(f64::total_cmp);
            assert_relative_eq!(median_select(&mut v), quantile_sorted(&s, 0.5));
        }
    }

    #[test]
    fn shares_above() {
        let f = feat(&[0.85, 0.95, 0.5, 0.1]);
        assert_relative_eq!(f[10], 0.5);
        assert_relative_eq!(f[11], 0.25);
    }

    #[test]
    fn missing_dimension_gives_zeros_and_empty_is_idle() {
        let s = FeatureSchema::new(vec![Dimension::Cpu, Dimension::Net], 3600.0);
        let f = extract(&HostWindow::cpu(300.0, &[]), &s);
        assert_eq!(f.len(), 32);
        assert_relative_eq!(f[12], 0.8);
        assert!(f[16..].iter().all(|v| *v == 0.0));
    }

    proptest! {
        #[test]
        fn extraction_is_total_and_finite(
            x in proptest::collection::vec(prop_oneof![
                any::<f64>(), -1.0f64..2.0, Just(f64::NAN), Just(f64::INFINITY)
            ], 0..200),
            step in prop_oneof![any::<f64>(), 1.0f64..600.0],
            window in prop_oneof![any::<f64>(), 60.0f64..7200.0],
        ) {
            let schema = FeatureSchema::new(Dimension::ALL.to_vec(), window);
            let w = HostWindow { step_s: step, cpu: &x, mem: Some(&x), net: None, disk: Some(&x[..x.len() / 2]) };
            let f = extract(&w, &schema);
            prop_assert_eq!(f.len(), schema.len());
            prop_assert!(f.iter().all(|v| v.is_finite()), "{:?}", f);
        }

        #[test]
        fn order_free_features_ignore_permutation(mut x in proptest::collection::vec(0.0f64..1.5, 1..12), seed in any::<u64>()) {
            let a = feat(&x);
            // Rotate all but the last value: level, spread and extremes must not change.
            let n = x.len();
            if n > 2 { let k = (seed as usize) % (n - 1); x[..n - 1].rotate_left(k); }
            let b = feat(&x);
            for i in [0usize, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14] {
                prop_assert!((a[i] - b[i]).abs() < 1e-9, "feature {} {} vs {}", PER_DIMENSION[i], a[i], b[i]);
            }
        }
    }
}
