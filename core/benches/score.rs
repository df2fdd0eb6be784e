//! Scoring latency of the stability model: feature extraction plus prediction for one host
//! (target: ≤ 2 µs per host with a 1-hour window of 5-minute samples), and for one migration
//! candidate (host history plus the incoming VM's, 2-hour window; target ≤ 2 µs).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use keel_core::features::{extract, FeatureSchema, HostWindow};
use keel_core::model::{
    Algorithm, LabelDefinition, ModelFile, Node, Provenance, Tree, FORMAT_VERSION,
};

fn model(algorithm: Algorithm) -> ModelFile {
    ModelFile {
        format_version: FORMAT_VERSION,
        feature_schema: FeatureSchema::cpu_default(),
        label: LabelDefinition::default(),
        algorithm,
        threshold: 0.5,
        candidate_threshold: None,
        provenance: Provenance::default(),
        metrics: BTreeMap::new(),
    }
}

/// A complete binary tree of the given depth splitting on rotating features.
fn tree(depth: usize) -> Tree {
    let mut nodes = Vec::new();
    fn build(nodes: &mut Vec<Node>, d: usize, depth: usize) -> usize {
        let i = nodes.len();
        if d == depth {
            nodes.push(Node::Leaf {
                class: d % 2 == 0,
                p: 0.5,
            });
            return i;
        }
        nodes.push(Node::Leaf {
            class: false,
            p: 0.0,
        });
        let left = build(nodes, d + 1, depth);
        let right = build(nodes, d + 1, depth);
        nodes[i] = Node::Split {
            feature: (i * 7) % 16,
            threshold: 0.4,
            left,
            right,
        };
        i
    }
    build(&mut nodes, 0, depth);
    Tree {
        features: None,
        nodes,
    }
}

fn bench(c: &mut Criterion) {
    // One hour of 5-minute samples (PlanetLab's step) and of 10-second samples (the collector's).
    let hour_5min: Vec<f64> = (0..12).map(|i| 0.4 + 0.03 * f64::from(i % 5)).collect();
    let hour_10s: Vec<f64> = (0..360).map(|i| 0.4 + 0.001 * f64::from(i % 50)).collect();
    let n = FeatureSchema::cpu_default().len();
    let logistic = model(Algorithm::Logistic {
        mean: vec![0.3; n],
        scale: vec![0.2; n],
        weights: vec![0.1; n],
        intercept: -1.0,
    });
    let forest = model(Algorithm::RandomForest {
        trees: (0..51).map(|_| tree(8)).collect(),
    });

    c.bench_function("extract_cpu_12", |b| {
        let w = HostWindow::cpu(300.0, &hour_5min);
        let s = FeatureSchema::cpu_default();
        b.iter(|| extract(black_box(&w), &s));
    });
    c.bench_function("score_logistic_12", |b| {
        let w = HostWindow::cpu(300.0, &hour_5min);
        b.iter(|| logistic.score(black_box(&w)));
    });
    c.bench_function("score_logistic_360", |b| {
        let w = HostWindow::cpu(10.0, &hour_10s);
        b.iter(|| logistic.score(black_box(&w)));
    });
    // One migration candidate as the agent scores it: the target host's CPU utilisation history
    // plus the incoming VM's, rescaled to the host's capacity, over a 2-hour window of 5-minute
    // samples (the projected series is built into a reused buffer, then features + predict).
    let two_hours = FeatureSchema::new(vec![keel_core::features::Dimension::Cpu], 7200.0);
    let mut logistic_2h = logistic.clone();
    logistic_2h.feature_schema = two_hours;
    let host_2h: Vec<f64> = (0..24).map(|i| 0.4 + 0.03 * f64::from(i % 5)).collect();
    let vm_2h: Vec<f64> = (0..24).map(|i| 0.2 + 0.05 * f64::from(i % 3)).collect();
    let vm_share = 1000.0 / 2660.0; // VM capacity / host capacity (MIPS)
    c.bench_function("score_candidate_projected_logistic_24", |b| {
        let mut buf = Vec::with_capacity(24);
        b.iter(|| {
            buf.clear();
            buf.extend(
                black_box(&host_2h)
                    .iter()
                    .zip(black_box(&vm_2h))
                    .map(|(h, v)| h + v * vm_share),
            );
            let s = logistic_2h
                .score(&HostWindow::cpu(300.0, &buf))
                .unwrap_or(0.0);
            logistic_2h.is_unstable_at(s, black_box(host_2h[23]))
        });
    });
    c.bench_function("score_forest51_depth8_12", |b| {
        let w = HostWindow::cpu(300.0, &hour_5min);
        b.iter(|| forest.score(black_box(&w)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
