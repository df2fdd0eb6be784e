//! Fitting linfa classifiers and converting them into keel-core's [`Algorithm`].
//!
//! Hyperparameters follow linfa: [`ClassifierParams`] is a consuming builder and
//! [`ClassifierParams::check`] turns it into [`ValidClassifierParams`]. Class imbalance is handled
//! by oversampling the minority class (whole-row replication, deterministic) before fitting, so
//! every algorithm sees balanced classes. The exported parameters reproduce linfa's predictions
//! exactly (see the property tests in `tests/fit.rs`).

use anyhow::{bail, Context};
use keel_core::model::{Algorithm, GaussianClass, Node, Tree};
use linfa::prelude::*;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The classifier family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algo {
    /// Logistic regression on standardised features.
    Logistic,
    /// One decision tree.
    Tree,
    /// A random forest (linfa-ensemble).
    RandomForest,
    /// Gaussian naive Bayes.
    NaiveBayes,
}

/// Unchecked hyperparameters (consuming builder).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierParams {
    algo: Algo,
    alpha: f64,
    max_iterations: u64,
    max_depth: usize,
    min_weight_leaf: f32,
    trees: usize,
    feature_share: f64,
    balance: bool,
    seed: u64,
}

/// Checked hyperparameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidClassifierParams(ClassifierParams);

impl ClassifierParams {
    /// Defaults for an algorithm: L2 α = 1e-3 and 200 iterations (logistic); depth 8, leaves of
    /// ≥ 20 rows (trees); 31 trees over half the features each (forest); balanced classes; seed 42.
    pub fn new(algo: Algo) -> Self {
        Self {
            algo,
            alpha: 1e-3,
            max_iterations: 200,
            max_depth: 8,
            min_weight_leaf: 20.0,
            trees: 31,
            feature_share: 0.5,
            balance: true,
            seed: 42,
        }
    }
    /// L2 penalty of logistic regression.
    pub fn alpha(mut self, a: f64) -> Self {
        self.alpha = a;
        self
    }
    /// Tree depth limit.
    pub fn max_depth(mut self, d: usize) -> Self {
        self.max_depth = d;
        self
    }
    /// Minimum rows in a leaf.
    pub fn min_weight_leaf(mut self, w: f32) -> Self {
        self.min_weight_leaf = w;
        self
    }
    /// Number of trees in a forest (odd, so votes never tie).
    pub fn trees(mut self, n: usize) -> Self {
        self.trees = n;
        self
    }
    /// Whether to oversample the minority class.
    pub fn balance(mut self, b: bool) -> Self {
        self.balance = b;
        self
    }
    /// RNG seed.
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }

    /// Validates.
    ///
    /// # Errors
    /// A message naming the bad hyperparameter.
    pub fn check(self) -> anyhow::Result<ValidClassifierParams> {
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            bail!("alpha must be ≥ 0");
        }
        if self.max_depth == 0 || self.max_depth > 64 {
            bail!("max_depth must be in 1..=64");
        }
        if self.trees == 0 || self.trees % 2 == 0 {
            bail!(
                "trees must be odd (so that votes cannot tie), got {}",
                self.trees
            );
        }
        if !(self.feature_share > 0.0 && self.feature_share <= 1.0) {
            bail!("feature share must be in (0, 1]");
        }
        Ok(ValidClassifierParams(self))
    }
}

impl ValidClassifierParams {
    /// The algorithm.
    pub fn algo(&self) -> Algo {
        self.0.algo
    }

    /// Hyperparameters as JSON (for provenance).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let p = &self.0;
        let mut m = serde_json::Map::new();
        m.insert("algo".into(), format!("{:?}", p.algo).into());
        match p.algo {
            Algo::Logistic => {
                m.insert("alpha".into(), p.alpha.into());
                m.insert("max_iterations".into(), p.max_iterations.into());
            }
            Algo::Tree | Algo::RandomForest => {
                m.insert("max_depth".into(), p.max_depth.into());
                m.insert(
                    "min_weight_leaf".into(),
                    f64::from(p.min_weight_leaf).into(),
                );
                if p.algo == Algo::RandomForest {
                    m.insert("trees".into(), p.trees.into());
                    m.insert("feature_share".into(), p.feature_share.into());
                }
            }
            Algo::NaiveBayes => {}
        }
        m.insert("balance".into(), p.balance.into());
        m.insert("seed".into(), p.seed.into());
        m
    }

    /// Fits on `x` (rows × features) and labels `y`, returning keel-core parameters.
    ///
    /// # Errors
    /// Too few rows, a single class, or a linfa failure.
    pub fn fit(&self, x: ArrayView2<'_, f64>, y: &[bool]) -> anyhow::Result<Algorithm> {
        Ok(self.fit_linfa(x, y)?.0)
    }

    /// Fits and also returns the linfa model (for tests that compare predictions).
    ///
    /// # Errors
    /// As [`Self::fit`].
    pub fn fit_linfa(
        &self,
        x: ArrayView2<'_, f64>,
        y: &[bool],
    ) -> anyhow::Result<(Algorithm, Fitted)> {
        let p = &self.0;
        let pos = y.iter().filter(|v| **v).count();
        if x.nrows() != y.len() {
            bail!("{} rows but {} labels", x.nrows(), y.len());
        }
        if x.nrows() < 20 {
            bail!("too few samples to fit: {} rows (need ≥ 20)", x.nrows());
        }
        if pos == 0 || pos == y.len() {
            bail!(
                "only one class in {} training rows ({} unstable): nothing to learn",
                y.len(),
                pos
            );
        }
        if x.iter().any(|v| !v.is_finite()) {
            bail!("features contain NaN or infinity");
        }
        let (xb, yb) = if p.balance {
            balance(x, y)
        } else {
            (x.to_owned(), y.to_vec())
        };
        let targets: Array1<usize> = yb.iter().map(|b| usize::from(*b)).collect();
        match p.algo {
            Algo::Logistic => {
                let (mean, scale) = standardiser(xb.view());
                let xs = (&xb - &mean) / &scale;
                let ds = Dataset::new(xs, targets);
                let m = linfa_logistic::LogisticRegression::default()
                    .alpha(p.alpha)
                    .max_iterations(p.max_iterations)
                    .fit(&ds)
                    .context("fitting logistic regression")?;
                // linfa maps one class to its positive label; make the score P(unstable).
                let sign = if m.labels().pos.class == 1 { 1.0 } else { -1.0 };
                let alg = Algorithm::Logistic {
                    mean: mean.to_vec(),
                    scale: scale.to_vec(),
                    weights: m.params().iter().map(|w| sign * w).collect(),
                    intercept: sign * m.intercept(),
                };
                Ok((alg, Fitted::Logistic(m)))
            }
            Algo::Tree => {
                let ds = Dataset::new(xb.clone(), targets);
                let m = DecisionTree::params()
                    .max_depth(Some(p.max_depth))
                    .min_weight_leaf(p.min_weight_leaf)
                    .fit(&ds)
                    .context("fitting decision tree")?;
                let mut tree = export_tree(&m, None);
                leaf_shares(&mut tree, xb.view(), &yb);
                Ok((Algorithm::DecisionTree { tree }, Fitted::Tree(m)))
            }
            Algo::RandomForest => {
                let ds = Dataset::new(xb.clone(), targets);
                let rng = ChaCha8Rng::seed_from_u64(p.seed);
                let tree = DecisionTree::params()
                    .max_depth(Some(p.max_depth))
                    .min_weight_leaf(p.min_weight_leaf);
                let m = linfa_ensemble::EnsembleLearnerParams::new_fixed_rng(tree, rng)
                    .ensemble_size(p.trees)
                    .bootstrap_proportion(1.0)
                    .feature_proportion(p.feature_share)
                    .fit(&ds)
                    .context("fitting random forest")?;
                let trees = m
                    .models
                    .iter()
                    .zip(&m.model_features)
                    .map(|(t, f)| {
                        let mut tree = export_tree(t, Some(f.clone()));
                        leaf_shares(&mut tree, xb.view(), &yb);
                        tree
                    })
                    .collect();
                Ok((Algorithm::RandomForest { trees }, Fitted::Forest(m)))
            }
            Algo::NaiveBayes => {
                let ds = Dataset::new(xb.clone(), targets);
                let m = linfa_bayes::GaussianNb::params()
                    .fit(&ds)
                    .context("fitting naive Bayes")?;
                let alg = export_nb(&m)?;
                Ok((alg, Fitted::NaiveBayes(m)))
            }
        }
    }
}

/// A fitted linfa model.
#[allow(missing_docs, missing_debug_implementations)] // linfa's ensemble has no Debug
pub enum Fitted {
    Logistic(linfa_logistic::FittedLogisticRegression<f64, usize>),
    Tree(DecisionTree<f64, usize>),
    Forest(linfa_ensemble::EnsembleLearner<DecisionTree<f64, usize>>),
    NaiveBayes(linfa_bayes::GaussianNb<f64, usize>),
}

/// Column means and standard deviations (1 where a column is constant).
pub fn standardiser(x: ArrayView2<'_, f64>) -> (Array1<f64>, Array1<f64>) {
    let mean = x
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(x.ncols()));
    let scale = x
        .std_axis(Axis(0), 0.0)
        .mapv(|s| if s > 1e-12 && s.is_finite() { s } else { 1.0 });
    (mean, scale)
}

/// Oversamples the minority class by whole-row replication to (about) balance the classes.
pub fn balance(x: ArrayView2<'_, f64>, y: &[bool]) -> (Array2<f64>, Vec<bool>) {
    let pos = y.iter().filter(|v| **v).count();
    let neg = y.len() - pos;
    let minority = pos < neg;
    let (few, many) = if minority { (pos, neg) } else { (neg, pos) };
    let k = (many as f64 / few.max(1) as f64).round().max(1.0) as usize;
    let mut idx: Vec<usize> = Vec::with_capacity(many + few * k);
    for (i, v) in y.iter().enumerate() {
        let reps = if *v == minority { k } else { 1 };
        idx.extend(std::iter::repeat_n(i, reps));
    }
    let xb = x.select(Axis(0), &idx);
    let yb = idx.iter().map(|i| y[*i]).collect();
    (xb, yb)
}

fn export_tree(m: &DecisionTree<f64, usize>, features: Option<Vec<usize>>) -> Tree {
    fn walk(n: &TreeNode<f64, usize>, out: &mut Vec<Node>) -> usize {
        let i = out.len();
        if let Some(class) = n.prediction() {
            out.push(Node::Leaf {
                class: class == 1,
                p: if class == 1 { 1.0 } else { 0.0 },
            });
            return i;
        }
        out.push(Node::Leaf {
            class: false,
            p: 0.0,
        });
        let (feature, threshold, _) = n.split();
        let ch = n.children();
        let (Some(l), Some(r)) = (ch[0].as_deref(), ch[1].as_deref()) else {
            // An internal node without both children cannot occur in linfa's trees; keep the
            // placeholder leaf rather than panic.
            return i;
        };
        let left = walk(l, out);
        let right = walk(r, out);
        out[i] = Node::Split {
            feature,
            threshold,
            left,
            right,
        };
        i
    }
    let mut nodes = Vec::new();
    walk(m.root_node(), &mut nodes);
    Tree { features, nodes }
}

/// The leaf index row `x` reaches.
pub fn leaf_index(t: &Tree, x: &[f64]) -> usize {
    let mut i = 0;
    loop {
        match &t.nodes[i] {
            Node::Leaf { .. } => return i,
            Node::Split {
                feature,
                threshold,
                left,
                right,
            } => {
                let f = t.features.as_ref().map_or(*feature, |m| m[*feature]);
                i = if x[f] < *threshold { *left } else { *right };
            }
        }
    }
}

/// Sets each leaf's `p` to its share of unstable training rows (the leaf's class when empty).
fn leaf_shares(t: &mut Tree, x: ArrayView2<'_, f64>, y: &[bool]) {
    let mut counts = vec![(0usize, 0usize); t.nodes.len()];
    for (row, yi) in x.rows().into_iter().zip(y) {
        let r = row.as_slice().map_or_else(|| row.to_vec(), <[f64]>::to_vec);
        let l = leaf_index(t, &r);
        counts[l].0 += usize::from(*yi);
        counts[l].1 += 1;
    }
    for (n, (p1, n1)) in t.nodes.iter_mut().zip(counts) {
        if let Node::Leaf { p, .. } = n {
            if n1 > 0 {
                *p = p1 as f64 / n1 as f64;
            }
        }
    }
}

/// Reads GaussianNb's per-class parameters through its serde form (linfa keeps them private).
fn export_nb(m: &linfa_bayes::GaussianNb<f64, usize>) -> anyhow::Result<Algorithm> {
    let v = serde_json::to_value(m).context("serialising naive Bayes")?;
    let info = v
        .get("class_info")
        .and_then(|c| c.as_object())
        .context("naive Bayes: no class_info")?;
    let class = |k: &str| -> anyhow::Result<GaussianClass> {
        let c = info
            .get(k)
            .with_context(|| format!("naive Bayes: no class {k}"))?;
        let arr = |name: &str| -> anyhow::Result<Vec<f64>> {
            let a = c
                .get(name)
                .and_then(|a| a.get("data"))
                .with_context(|| format!("naive Bayes: no {name}"))?;
            Ok(serde_json::from_value(a.clone())?)
        };
        Ok(GaussianClass {
            prior: c
                .get("prior")
                .and_then(serde_json::Value::as_f64)
                .context("naive Bayes: no prior")?,
            mean: arr("theta")?,
            var: arr("sigma")?,
        })
    };
    Ok(Algorithm::NaiveBayes {
        stable: class("0")?,
        unstable: class("1")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_reject_bad_hyperparameters() {
        assert!(ClassifierParams::new(Algo::RandomForest)
            .trees(10)
            .check()
            .is_err());
        assert!(ClassifierParams::new(Algo::Tree)
            .max_depth(0)
            .check()
            .is_err());
        assert!(ClassifierParams::new(Algo::Logistic)
            .alpha(-1.0)
            .check()
            .is_err());
    }

    #[test]
    fn too_few_samples_and_single_class_are_errors() {
        let p = ClassifierParams::new(Algo::Logistic).check().unwrap();
        let x = Array2::<f64>::zeros((5, 3));
        let e = p
            .fit(x.view(), &[true, false, true, false, true])
            .unwrap_err()
            .to_string();
        assert!(e.contains("too few samples"), "{e}");
        let x = Array2::<f64>::zeros((30, 3));
        let e = p.fit(x.view(), &[false; 30]).unwrap_err().to_string();
        assert!(e.contains("only one class"), "{e}");
        let mut x = Array2::<f64>::zeros((30, 3));
        x[[3, 1]] = f64::NAN;
        let y: Vec<bool> = (0..30).map(|i| i % 3 == 0).collect();
        let e = p.fit(x.view(), &y).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
    }

    #[test]
    fn balance_replicates_the_minority() {
        let x = Array2::from_shape_fn((10, 1), |(i, _)| i as f64);
        let y: Vec<bool> = (0..10).map(|i| i < 2).collect();
        let (xb, yb) = balance(x.view(), &y);
        assert_eq!(yb.iter().filter(|v| **v).count(), 8);
        assert_eq!(xb.nrows(), 16);
    }
}
