//! keel-core's dependency-free scoring reproduces linfa's predictions on every row, for every
//! algorithm the trainer exports.

use keel_trainer::fit::{Algo, ClassifierParams, Fitted};
use linfa::prelude::Predict;
use ndarray::Array2;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A noisy, partly learnable problem: 16 features, label from a hidden linear rule plus noise.
fn problem(seed: u64, n: usize) -> (Array2<f64>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, 16), |_| rng.gen_range(0.0..1.0));
    let y = x
        .rows()
        .into_iter()
        .map(|r| r[0] + 0.5 * r[3] - 0.3 * r[7] + rng.gen_range(-0.3..0.3) > 0.7)
        .collect();
    (x, y)
}

fn check(algo: Algo, seed: u64) -> Result<(), TestCaseError> {
    let (x, y) = problem(seed, 120);
    prop_assume!(y.iter().filter(|v| **v).count() >= 3 && y.iter().filter(|v| !**v).count() >= 3);
    let params = ClassifierParams::new(algo)
        .trees(7)
        .max_depth(5)
        .min_weight_leaf(2.0)
        .seed(seed)
        .check()
        .unwrap();
    let (alg, fitted) = params.fit_linfa(x.view(), &y).unwrap();
    for (i, row) in x.rows().into_iter().enumerate() {
        let r = row.to_vec();
        let ours = alg.predict(&r);
        prop_assert!((0.0..=1.0).contains(&ours));
        match &fitted {
            Fitted::Logistic(m) => {
                let (mean, scale) = match &alg {
                    keel_core::model::Algorithm::Logistic { mean, scale, .. } => (mean, scale),
                    _ => unreachable!(),
                };
                let xs: Vec<f64> = r
                    .iter()
                    .zip(mean)
                    .zip(scale)
                    .map(|((v, m), s)| (v - m) / s)
                    .collect();
                let xs = Array2::from_shape_vec((1, 16), xs).unwrap();
                let p = m.predict_probabilities(&xs)[0];
                let p1 = if m.labels().pos.class == 1 {
                    p
                } else {
                    1.0 - p
                };
                prop_assert!((ours - p1).abs() < 1e-9, "row {i}: {ours} vs linfa {p1}");
            }
            Fitted::Tree(m) => {
                let c: ndarray::Array1<usize> = m.predict(&x.select(ndarray::Axis(0), &[i]));
                prop_assert_eq!(alg.predict_class(&r), c[0] == 1, "row {}", i);
            }
            Fitted::Forest(m) => {
                let c: ndarray::Array1<usize> = m.predict(&x.select(ndarray::Axis(0), &[i]));
                prop_assert_eq!(alg.predict_class(&r), c[0] == 1, "row {}", i);
            }
            Fitted::NaiveBayes(m) => {
                let c: ndarray::Array1<usize> = m.predict(&x.select(ndarray::Axis(0), &[i]));
                prop_assert_eq!(
                    alg.predict_class(&r),
                    c[0] == 1,
                    "row {}: score {}",
                    i,
                    ours
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn logistic_matches_linfa(seed in 0u64..10_000) { check(Algo::Logistic, seed)?; }

    #[test]
    fn tree_matches_linfa(seed in 0u64..10_000) { check(Algo::Tree, seed)?; }

    #[test]
    fn forest_matches_linfa(seed in 0u64..10_000) { check(Algo::RandomForest, seed)?; }

    #[test]
    fn naive_bayes_matches_linfa(seed in 0u64..10_000) { check(Algo::NaiveBayes, seed)?; }
}

/// Classes tied at a leaf: the tree's vote is the smaller class every time. linfa-trees 0.8.1
/// broke the tie by `HashMap` order, which differs between maps even within one process, so 32
/// fits would have given both votes (the vendored patch fixes it).
#[test]
fn tied_leaf_votes_the_same_class_every_fit() {
    // One constant feature: no split is possible, the root is a leaf with 20 rows of each class.
    let x = Array2::<f64>::from_elem((40, 1), 0.5);
    let y: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
    let params = ClassifierParams::new(Algo::Tree).check().unwrap();
    for k in 0..32 {
        let (alg, fitted) = params.fit_linfa(x.view(), &y).unwrap();
        assert!(!alg.predict_class(&[0.5]), "fit {k}: tie voted unstable");
        let Fitted::Tree(m) = fitted else {
            unreachable!()
        };
        let c: ndarray::Array1<usize> = m.predict(&x);
        assert!(c.iter().all(|v| *v == 0), "fit {k}: linfa voted {c}");
    }
}
