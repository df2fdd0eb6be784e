//! The stability model file: what the trainer writes and the agent scores, with no ML dependency.
//!
//! A [`ModelFile`] is JSON (see `models/README.md` for a worked example). It carries:
//! - `format_version` ([`FORMAT_VERSION`]; [`ModelFile::load`] rejects any other),
//! - `feature_schema`: feature names, order and window ([`FeatureSchema`]),
//! - `label`: what "unstable" meant in training ([`LabelDefinition`]),
//! - `algorithm`: the learned parameters of one of four classifiers ([`Algorithm`]),
//! - `threshold`: the decision threshold on the score, chosen on out-of-sample scores,
//! - `candidate_threshold` (optional): a second threshold for hosts whose utilisation now is
//!   below a level (the hosts a migration would target); [`ModelFile::is_unstable_at`] uses it,
//! - `provenance`: training files with SHA-256 hashes, and the placement used for VM-only data,
//! - `metrics`: the trainer's held-out evaluation.
//!
//! [`ModelFile::score`] extracts features from a [`HostWindow`] and returns a probability-like
//! score in `0..=1` that the host is unstable; a host is flagged when `score >= threshold`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::features::{extract, Dimension, FeatureSchema, HostWindow};

/// Version of the model file format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Result alias for this module.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Errors loading, checking or scoring a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a model file.
    #[error("{path}: not a keel model file: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The file has another format version.
    #[error(
        "{path}: model format version {found} is not supported (this build reads {FORMAT_VERSION})"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
    },
    /// The model's content is inconsistent.
    #[error("invalid model: {0}")]
    Invalid(String),
    /// The window lacks a dimension the model needs.
    #[error("the model needs {0:?} utilisation, which the window does not have")]
    MissingDimension(Dimension),
}

/// What "unstable" meant for the training labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelDefinition {
    /// Look-ahead horizon, seconds (the current step excluded).
    pub horizon_s: f64,
    /// Width of the rolling mean that must reach `util_threshold`, seconds.
    pub mean_window_s: f64,
    /// Utilisation the rolling mean must reach.
    pub util_threshold: f64,
    /// Quantile of the training set's future coefficient of variation above which a host is also
    /// unstable (`None`: the CV rule is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_quantile: Option<f64>,
    /// The CV threshold that quantile gave on the training set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_threshold: Option<f64>,
    /// A labels file that replaced the rule, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_file: Option<String>,
}

impl Default for LabelDefinition {
    /// The trainer's default rule: unstable if the 10-minute mean reaches 90 % within 30 minutes;
    /// no CV rule, no labels file.
    fn default() -> Self {
        Self {
            horizon_s: 1800.0,
            mean_window_s: 600.0,
            util_threshold: 0.9,
            cv_quantile: None,
            cv_threshold: None,
            labels_file: None,
        }
    }
}

/// One training input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path as given to the trainer.
    pub path: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Rows read.
    pub rows: u64,
}

/// How VM-only data was placed on hosts (so evaluation can rebuild the same host series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// `cpu` or `cpu-mem`: the resources packing respects.
    pub pack: String,
    /// Target utilisation of each packed resource.
    pub target: f64,
    /// Span, seconds from each VM's first sample, over which its mean demand is taken for packing.
    #[serde(default = "default_placement_window_s")]
    pub window_s: f64,
}

fn default_placement_window_s() -> f64 {
    3600.0
}

/// Where the model came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Provenance {
    /// Training files.
    pub files: Vec<SourceFile>,
    /// Placement applied to VM-only files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Trainer name and version.
    pub trainer: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Labelled rows used for fitting and of them positive.
    pub rows: u64,
    /// Positive (unstable) rows.
    pub positives: u64,
    /// Hyperparameters, free form.
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
}

/// A node of a binary decision tree; the root is `nodes[0]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// Go `left` when `x[feature] < threshold`, else `right` (indices into the node list).
    Split {
        /// Feature index (into the tree's `features` when set, else the full vector).
        feature: usize,
        /// Split value.
        threshold: f64,
        /// Left child.
        left: usize,
        /// Right child.
        right: usize,
    },
    /// A leaf.
    Leaf {
        /// The tree's class vote (true = unstable).
        class: bool,
        /// Share of (resampled) training rows in this leaf that were unstable.
        p: f64,
    },
}

/// A decision tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The feature subset this tree sees (random forests), mapping its indices to the full vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<usize>>,
    /// Nodes; `nodes[0]` is the root.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The leaf `x` falls in: (class, p).
    fn leaf(&self, x: &[f64]) -> (bool, f64) {
        let mut i = 0;
        // Bounded: `validate` checks children point forward, so each step moves deeper.
        for _ in 0..self.nodes.len() {
            match &self.nodes[i] {
                Node::Leaf { class, p } => return (*class, *p),
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    let f = self.features.as_ref().map_or(*feature, |m| m[*feature]);
                    i = if x[f] < *threshold { *left } else { *right };
                }
            }
        }
        (false, 0.0)
    }

    fn validate(&self, n_features: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("empty tree".into());
        }
        if let Some(m) = &self.features {
            if let Some(bad) = m.iter().find(|f| **f >= n_features) {
                return Err(format!("tree feature {bad} out of range"));
            }
        }
        let width = self.features.as_ref().map_or(n_features, Vec::len);
        for (i, n) in self.nodes.iter().enumerate() {
            match n {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    if *feature >= width || threshold.is_nan() {
                        return Err(format!("node {i}: bad split"));
                    }
                    if *left <= i
                        || *right <= i
                        || *left >= self.nodes.len()
                        || *right >= self.nodes.len()
                    {
                        return Err(format!("node {i}: children must point forward"));
                    }
                }
                Node::Leaf { p, .. } => {
                    if !(0.0..=1.0).contains(p) {
                        return Err(format!("node {i}: leaf p {p} outside 0..=1"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Per-class Gaussian parameters of naive Bayes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianClass {
    /// Prior probability.
    pub prior: f64,
    /// Feature means.
    pub mean: Vec<f64>,
    /// Feature variances (smoothed, > 0).
    pub var: Vec<f64>,
}

impl GaussianClass {
    fn joint_log_likelihood(&self, x: &[f64]) -> f64 {
        let mut ll = self.prior.ln();
        for ((xi, m), v) in x.iter().zip(&self.mean).zip(&self.var) {
            ll -= 0.5 * ((2.0 * std::f64::consts::PI * v).ln() + (xi - m) * (xi - m) / v);
        }
        ll
    }
}

/// A classifier's learned parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Algorithm {
    /// Logistic regression on standardised features: `σ(w · (x − mean) / scale + b)`.
    Logistic {
        /// Feature means used for standardisation.
        mean: Vec<f64>,
        /// Feature scales (standard deviations, > 0).
        scale: Vec<f64>,
        /// Coefficients.
        weights: Vec<f64>,
        /// Intercept.
        intercept: f64,
    },
    /// One decision tree; the score is the leaf's share of unstable rows.
    DecisionTree {
        /// The tree.
        tree: Tree,
    },
    /// A random forest; the score is the mean leaf share over trees.
    RandomForest {
        /// The trees.
        trees: Vec<Tree>,
    },
    /// Gaussian naive Bayes; the score is the posterior of the unstable class.
    NaiveBayes {
        /// The stable class.
        stable: GaussianClass,
        /// The unstable class.
        unstable: GaussianClass,
    },
}

impl Algorithm {
    /// Short name (`logistic`, `decision-tree`, `random-forest`, `naive-bayes`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Logistic { .. } => "logistic",
            Self::DecisionTree { .. } => "decision-tree",
            Self::RandomForest { .. } => "random-forest",
            Self::NaiveBayes { .. } => "naive-bayes",
        }
    }

    /// Probability-like score of a feature vector (of the model's schema length).
    ///
    /// # Panics
    /// If `x` is shorter than the model's feature count (checked by [`ModelFile::validate`]).
    pub fn predict(&self, x: &[f64]) -> f64 {
        match self {
            Self::Logistic {
                mean,
                scale,
                weights,
                intercept,
            } => {
                let z = x
                    .iter()
                    .zip(mean)
                    .zip(scale)
                    .zip(weights)
                    .fold(*intercept, |acc, (((xi, m), s), w)| acc + w * (xi - m) / s);
                1.0 / (1.0 + (-z).exp())
            }
            Self::DecisionTree { tree } => tree.leaf(x).1,
            Self::RandomForest { trees } => {
                trees.iter().map(|t| t.leaf(x).1).sum::<f64>() / trees.len().max(1) as f64
            }
            Self::NaiveBayes { stable, unstable } => {
                let a = stable.joint_log_likelihood(x);
                let b = unstable.joint_log_likelihood(x);
                // Posterior of `unstable`, computed stably: 1 / (1 + e^(a - b)).
                let p = 1.0 / (1.0 + (a - b).exp());
                if p.is_nan() {
                    0.5
                } else {
                    p
                }
            }
        }
    }

    /// The hard class vote: trees by majority of leaf classes (as linfa predicts), the others
    /// by `predict(x) >= 0.5`.
    ///
    /// # Panics
    /// As [`Self::predict`].
    pub fn predict_class(&self, x: &[f64]) -> bool {
        match self {
            Self::DecisionTree { tree } => tree.leaf(x).0,
            Self::RandomForest { trees } => {
                let votes = trees.iter().filter(|t| t.leaf(x).0).count();
                2 * votes > trees.len()
            }
            _ => self.predict(x) >= 0.5,
        }
    }

    fn validate(&self, n: usize) -> Result<(), String> {
        let finite = |v: &[f64], what: &str| {
            if v.len() != n {
                Err(format!("{what} has {} values, expected {n}", v.len()))
            } else if v.iter().any(|x| !x.is_finite()) {
                Err(format!("{what} has a non-finite value"))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Logistic {
                mean,
                scale,
                weights,
                intercept,
            } => {
                finite(mean, "mean")?;
                finite(scale, "scale")?;
                finite(weights, "weights")?;
                if scale.iter().any(|s| *s <= 0.0) || !intercept.is_finite() {
                    return Err("scale must be positive and intercept finite".into());
                }
            }
            Self::DecisionTree { tree } => tree.validate(n)?,
            Self::RandomForest { trees } => {
                if trees.is_empty() {
                    return Err("forest without trees".into());
                }
                for t in trees {
                    t.validate(n)?;
                }
            }
            Self::NaiveBayes { stable, unstable } => {
                for c in [stable, unstable] {
                    finite(&c.mean, "mean")?;
                    finite(&c.var, "var")?;
                    if c.var.iter().any(|v| *v <= 0.0) || !(c.prior > 0.0 && c.prior < 1.0) {
                        return Err("variances must be positive and priors in (0, 1)".into());
                    }
                }
            }
        }
        Ok(())
    }
}

/// A decision threshold for hosts whose CPU utilisation now is below `below_util` (the hosts a
/// migration would target), chosen on those hosts' out-of-sample scores alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CandidateThreshold {
    /// The threshold applies when the host's utilisation now is below this.
    pub below_util: f64,
    /// Decision threshold on [`ModelFile::score`] for those hosts.
    pub threshold: f64,
}

/// A stability model (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Features the model reads.
    pub feature_schema: FeatureSchema,
    /// What the model predicts.
    pub label: LabelDefinition,
    /// The classifier.
    pub algorithm: Algorithm,
    /// Decision threshold on [`ModelFile::score`].
    pub threshold: f64,
    /// Threshold for hosts below a utilisation now (absent in older files: `threshold` applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_threshold: Option<CandidateThreshold>,
    /// Training data and settings.
    pub provenance: Provenance,
    /// Held-out evaluation at training time (`roc_auc`, `pr_auc`, `f1`, `brier`, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

impl ModelFile {
    /// A logistic model over `schema` whose score depends on one feature alone:
    /// `sigmoid(weight * (x - centre) + intercept)`, with the default label and threshold 0.5.
    /// For examples, tests and benchmarks that need a model with a known behaviour.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] when `feature` is not in the schema.
    pub fn one_feature_logistic(
        schema: FeatureSchema,
        feature: &str,
        weight: f64,
        centre: f64,
        intercept: f64,
    ) -> Result<Self, ModelError> {
        let n = schema.len();
        let i = schema
            .names
            .iter()
            .position(|s| s == feature)
            .ok_or_else(|| ModelError::Invalid(format!("no feature {feature:?} in the schema")))?;
        let mut weights = vec![0.0; n];
        weights[i] = weight;
        Ok(Self {
            format_version: FORMAT_VERSION,
            feature_schema: schema,
            label: LabelDefinition::default(),
            algorithm: Algorithm::Logistic {
                mean: vec![centre; n],
                scale: vec![1.0; n],
                weights,
                intercept,
            },
            threshold: 0.5,
            candidate_threshold: None,
            provenance: Provenance::default(),
            metrics: BTreeMap::new(),
        })
    }

    /// Reads and checks a model file.
    ///
    /// # Errors
    /// [`ModelError::Io`], [`ModelError::Json`], [`ModelError::Version`] when the file has another
    /// format version, [`ModelError::Invalid`] when its content is inconsistent.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and checks a model from JSON text; `path` names it in errors.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let json_err = |source| ModelError::Json {
            path: path.to_owned(),
            source,
        };
        // Check the version before the shape, so an old or new file says so rather than
        // failing on a field it renamed.
        #[derive(Deserialize)]
        struct Version {
            format_version: Option<serde_json::Value>,
        }
        let v: Version = serde_json::from_str(text).map_err(json_err)?;
        let found = v
            .format_version
            .as_ref()
            .and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(FORMAT_VERSION)) {
            return Err(ModelError::Version {
                path: path.to_owned(),
                found: found.unwrap_or(0),
            });
        }
        let model: Self = serde_json::from_str(text).map_err(json_err)?;
        model.validate()?;
        Ok(model)
    }

    /// Writes the model as pretty JSON, atomically (temporary file, then rename). The text is
    /// parsed back with [`Self::from_json`] first, so a file this writes always loads (a
    /// non-finite metric, which JSON writes as `null`, is refused here rather than by the reader).
    ///
    /// # Errors
    /// [`ModelError::Io`]; [`ModelError::Json`] or [`ModelError::Invalid`] when the text would not
    /// load (nothing is written then).
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| ModelError::Io {
            path: path.to_owned(),
            source,
        };
        let text =
            serde_json::to_string_pretty(self).map_err(|e| ModelError::Invalid(e.to_string()))?;
        Self::from_json(&text, path)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Checks the schema, the parameters' shapes and the threshold.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the problem.
    pub fn validate(&self) -> Result<()> {
        self.feature_schema
            .validate()
            .map_err(|m| ModelError::Invalid(format!("feature_schema: {m}")))?;
        self.algorithm
            .validate(self.feature_schema.len())
            .map_err(|m| {
                ModelError::Invalid(format!("algorithm {}: {m}", self.algorithm.name()))
            })?;
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(ModelError::Invalid(format!(
                "threshold {} outside 0..=1",
                self.threshold
            )));
        }
        if let Some(c) = &self.candidate_threshold {
            if !(0.0..=1.0).contains(&c.threshold) || !(c.below_util.is_finite()) {
                return Err(ModelError::Invalid(format!(
                    "candidate_threshold: threshold {} outside 0..=1 or below_util {} not finite",
                    c.threshold, c.below_util
                )));
            }
        }
        Ok(())
    }

    /// History the model needs, seconds.
    pub fn window_s(&self) -> f64 {
        self.feature_schema.window_s
    }

    /// Samples of a series `step_s` apart that cover the window (at least one), as the trainer
    /// counts them.
    pub fn window_samples(&self, step_s: f64) -> usize {
        ((self.window_s() / step_s).round() as usize).max(1)
    }

    /// Probability-like score (0..=1) that the host is unstable.
    ///
    /// # Errors
    /// [`ModelError::MissingDimension`] when the window lacks a dimension the model reads.
    pub fn score(&self, window: &HostWindow<'_>) -> Result<f64> {
        if let Some(d) = self
            .feature_schema
            .dimensions
            .iter()
            .find(|d| window.series(**d).is_none())
        {
            return Err(ModelError::MissingDimension(*d));
        }
        Ok(self.score_features(&extract(window, &self.feature_schema)))
    }

    /// Score of an already extracted feature vector.
    ///
    /// # Panics
    /// If `x` is shorter than the schema.
    pub fn score_features(&self, x: &[f64]) -> f64 {
        self.algorithm.predict(x)
    }

    /// Whether a score flags the host as unstable (by `threshold`, whatever the host's load).
    pub fn is_unstable(&self, score: f64) -> bool {
        score >= self.threshold
    }

    /// Whether a score flags a host whose CPU utilisation now is `util_now` as unstable: by
    /// `candidate_threshold` when the file has one and `util_now` is below its level, else by
    /// `threshold`.
    pub fn is_unstable_at(&self, score: f64, util_now: f64) -> bool {
        match &self.candidate_threshold {
            Some(c) if util_now < c.below_util => score >= c.threshold,
            _ => score >= self.threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    fn logistic_model() -> ModelFile {
        // 2 (cpu_last - 0.5) / 0.25 - 1, as a weight of 8 on (cpu_last - 0.5).
        ModelFile::one_feature_logistic(FeatureSchema::cpu_default(), "cpu_last", 8.0, 0.5, -1.0)
            .unwrap()
    }

    #[test]
    fn logistic_scores_by_hand() {
        let m = logistic_model();
        let s = m.score(&HostWindow::cpu(300.0, &[0.2, 0.9])).unwrap();
        // z = -1 + 2 * (0.9 - 0.5) / 0.25 = 2.2
        assert_relative_eq!(s, 1.0 / (1.0 + (-2.2f64).exp()), epsilon = 1e-12);
        assert!(m.is_unstable(s));
        assert_eq!(m.window_s(), 3600.0);
    }

    #[test]
    fn tree_and_forest_route_left_below_threshold() {
        let tree = Tree {
            features: Some(vec![1]),
            nodes: vec![
                Node::Split {
                    feature: 0,
                    threshold: 0.7,
                    left: 1,
                    right: 2,
                },
                Node::Leaf {
                    class: false,
                    p: 0.1,
                },
                Node::Leaf {
                    class: true,
                    p: 0.8,
                },
            ],
        };
        let mut m = logistic_model();
        m.algorithm = Algorithm::RandomForest {
            trees: vec![tree.clone(), tree],
        };
        m.validate().unwrap();
        let low = m.score(&HostWindow::cpu(300.0, &[0.69])).unwrap();
        let high = m.score(&HostWindow::cpu(300.0, &[0.7])).unwrap();
        assert_relative_eq!(low, 0.1);
        assert_relative_eq!(high, 0.8);
        assert!(m
            .algorithm
            .predict_class(&extract(&HostWindow::cpu(300.0, &[0.7]), &m.feature_schema)));
    }

    #[test]
    fn load_rejects_other_versions_and_bad_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let m = logistic_model();
        m.save(&p).unwrap();
        assert_eq!(ModelFile::load(&p).unwrap(), m);

        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v["format_version"] = 2.into();
        std::fs::write(&p, v.to_string()).unwrap();
        let e = ModelFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("model format version 2 is not supported"), "{e}");
        assert!(e.contains("m.json"), "{e}");

        v["format_version"] = 1.into();
        v["algorithm"]["weights"] = serde_json::json!([1.0]);
        std::fs::write(&p, v.to_string()).unwrap();
        let e = ModelFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("weights has 1 values"), "{e}");

        std::fs::write(&p, "not json").unwrap();
        assert!(matches!(ModelFile::load(&p), Err(ModelError::Json { .. })));
    }

    #[test]
    fn save_refuses_what_load_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let mut m = logistic_model();
        m.metrics.insert("roc_auc".into(), f64::NAN);
        let e = m.save(&p).unwrap_err().to_string();
        assert!(e.contains("m.json"), "{e}");
        assert!(!p.exists() && !p.with_extension("json.tmp").exists());
        m.metrics.insert("roc_auc".into(), 0.7);
        m.save(&p).unwrap();
        assert_eq!(ModelFile::load(&p).unwrap(), m);
    }

    #[test]
    fn candidate_threshold_applies_below_its_level_and_old_files_load() {
        let mut m = logistic_model();
        // Files written before the field existed still load, with `threshold` everywhere.
        let mut v = serde_json::to_value(&m).unwrap();
        assert!(v.get("candidate_threshold").is_none());
        v.as_object_mut().unwrap().remove("candidate_threshold");
        let old = ModelFile::from_json(&v.to_string(), Path::new("old.json")).unwrap();
        assert_eq!(old.candidate_threshold, None);
        assert!(old.is_unstable_at(0.6, 0.1) && !old.is_unstable_at(0.4, 0.9));

        m.candidate_threshold = Some(CandidateThreshold {
            below_util: 0.8,
            threshold: 0.3,
        });
        let back =
            ModelFile::from_json(&serde_json::to_string(&m).unwrap(), Path::new("m.json")).unwrap();
        assert_eq!(back, m);
        assert!(back.is_unstable_at(0.35, 0.5));
        assert!(!back.is_unstable_at(0.35, 0.8));
        assert!(back.is_unstable_at(0.5, 0.9));
        m.candidate_threshold = Some(CandidateThreshold {
            below_util: 0.8,
            threshold: 1.5,
        });
        assert!(m.validate().is_err());
    }

    #[test]
    fn missing_dimension_is_an_error() {
        let mut m = logistic_model();
        m.feature_schema = FeatureSchema::new(vec![Dimension::Cpu, Dimension::Mem], 3600.0);
        let e = m.score(&HostWindow::cpu(300.0, &[0.5])).unwrap_err();
        assert!(matches!(e, ModelError::MissingDimension(Dimension::Mem)));
    }

    #[test]
    fn naive_bayes_posterior() {
        let n = 16;
        let mut m = logistic_model();
        m.algorithm = Algorithm::NaiveBayes {
            stable: GaussianClass {
                prior: 0.5,
                mean: vec![0.0; n],
                var: vec![1.0; n],
            },
            unstable: GaussianClass {
                prior: 0.5,
                mean: vec![0.0; n],
                var: vec![1.0; n],
            },
        };
        m.validate().unwrap();
        assert_relative_eq!(m.score_features(&[0.3; 16]), 0.5);
    }

    #[test]
    fn shared_across_threads() {
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<ModelFile>();
    }

    proptest! {
        #[test]
        fn serde_round_trips_and_scores_are_probabilities(
            w in proptest::collection::vec(-5.0f64..5.0, 16),
            b in -5.0f64..5.0,
            x in proptest::collection::vec(0.0f64..1.2, 0..30),
        ) {
            let mut m = logistic_model();
            if let Algorithm::Logistic { weights, intercept, .. } = &mut m.algorithm {
                *weights = w;
                *intercept = b;
            }
            let text = serde_json::to_string(&m).unwrap();
            let back = ModelFile::from_json(&text, Path::new("x.json")).unwrap();
            prop_assert_eq!(&back, &m);
            let s = back.score(&HostWindow::cpu(300.0, &x)).unwrap();
            prop_assert!((0.0..=1.0).contains(&s));
        }
    }
}
