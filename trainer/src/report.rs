//! The HTML evaluation report: ROC and PR curves (model and detectors), calibration, feature
//! importance, and the metrics table; plots are SVG drawn with plotters, inlined in one
//! `index.html` (plus the JSON the numbers came from).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use keel_core::model::{Algorithm, Node};
use plotters::prelude::*;

use crate::eval::Scored;
use crate::evaluate::{calibration, pr_curve, roc_curve};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Curve = (String, Vec<(f64, f64)>);

fn line_plot(
    title: &str,
    xl: &str,
    yl: &str,
    curves: &[Curve],
    diagonal: bool,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (520, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart.configure_mesh().x_desc(xl).y_desc(yl).draw()?;
        if diagonal {
            chart.draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                &RGBColor(180, 180, 180),
            ))?;
        }
        for (i, (name, pts)) in curves.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

fn bar_plot(title: &str, bars: &[(String, f64)]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let h = 60 + 22 * bars.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (620, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = bars.iter().map(|b| b.1).fold(1e-9, f64::max);
        let n = bars.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..max * 1.05, (0..n).into_segmented())?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*v, SegmentValue::Exact(i + 1)),
                ],
                COLORS[0].filled(),
            )
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// Feature importance: |standardised weight| (logistic), split counts (trees), or the absolute
/// difference of class means in pooled standard deviations (naive Bayes).
pub fn importance(alg: &Algorithm, names: &[String]) -> Vec<(String, f64)> {
    let mut v = vec![0.0; names.len()];
    match alg {
        Algorithm::Logistic { weights, .. } => {
            for (a, w) in v.iter_mut().zip(weights) {
                *a = w.abs();
            }
        }
        Algorithm::DecisionTree { tree } => count_splits(std::slice::from_ref(tree), &mut v),
        Algorithm::RandomForest { trees } => count_splits(trees, &mut v),
        Algorithm::NaiveBayes { stable, unstable } => {
            for (i, a) in v.iter_mut().enumerate() {
                let sd = ((stable.var[i] + unstable.var[i]) / 2.0).sqrt();
                *a = (stable.mean[i] - unstable.mean[i]).abs() / sd;
            }
        }
    }
    let mut out: Vec<(String, f64)> = names.iter().cloned().zip(v).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

fn count_splits(trees: &[keel_core::model::Tree], v: &mut [f64]) {
    for t in trees {
        for n in &t.nodes {
            if let Node::Split { feature, .. } = n {
                let f = t.features.as_ref().map_or(*feature, |m| m[*feature]);
                v[f] += 1.0;
            }
        }
    }
}

/// Writes `index.html` and `evaluation.json` into `dir`.
///
/// # Errors
/// Drawing or I/O failures.
pub fn write(dir: &Path, s: &Scored) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut roc = vec![("model".to_owned(), roc_curve(&s.scores, &s.y))];
    let mut pr = vec![("model".to_owned(), pr_curve(&s.scores, &s.y))];
    for (n, b) in &s.baseline_scores {
        roc.push((n.clone(), roc_curve(b, &s.y)));
        pr.push((n.clone(), pr_curve(b, &s.y)));
    }
    let cal: Vec<(f64, f64)> = calibration(&s.scores, &s.y, 10)
        .into_iter()
        .map(|(a, b, _)| (a, b))
        .collect();
    let plots = [
        line_plot(
            "ROC",
            "false positive rate",
            "true positive rate",
            &roc,
            true,
        )?,
        line_plot("Precision-recall", "recall", "precision", &pr, false)?,
        line_plot(
            "Calibration",
            "mean score",
            "observed unstable share",
            &[("model".into(), cal)],
            true,
        )?,
        bar_plot(
            "Feature importance",
            &importance(&s.model.algorithm, &s.model.feature_schema.names),
        )?,
    ];
    let e = &s.eval;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Keel stability model evaluation</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}\
         .plots{display:flex;flex-wrap:wrap;gap:1em}</style></head><body>",
    );
    write!(
        html,
        "<h1>Stability model evaluation</h1><p>Model <code>{}</code> ({}), data {}{}; threshold {:.3}; label: 10-min mean ≥ {} within {} s{}.</p>",
        e.model,
        e.algorithm,
        e.data.join(", "),
        if e.held_out_only { " (held-out rows only)" } else { "" },
        e.metrics.threshold,
        s.model.label.util_threshold,
        s.model.label.horizon_s,
        s.model
            .label
            .cv_threshold
            .map(|c| format!(" or horizon CV > {c:.3}"))
            .unwrap_or_default()
    )?;
    html.push_str("<table><tr><th>scorer</th><th>rows</th><th>unstable</th><th>ROC-AUC</th><th>PR-AUC</th><th>F1</th><th>precision</th><th>recall</th><th>Brier</th></tr>");
    let mut row = |n: &str, m: &crate::evaluate::Metrics| -> std::fmt::Result {
        write!(
            html,
            "<tr><td>{n}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            m.n,
            m.positives,
            m.roc_auc,
            m.pr_auc,
            m.f1,
            m.precision,
            m.recall,
            m.brier.map(|b| format!("{b:.4}")).unwrap_or_else(|| "–".into())
        )
    };
    row("model", &e.metrics)?;
    for (n, m) in &e.baselines {
        row(n, m)?;
    }
    html.push_str("</table>");
    let c = e.metrics.confusion;
    write!(
        html,
        "<p>Confusion at the threshold: TP {} FP {} TN {} FN {}. linfa's ROC-AUC on the same scores: {}.</p><div class=\"plots\">",
        c.tp,
        c.fp,
        c.tn,
        c.fn_,
        e.roc_auc_linfa.map(|a| format!("{a:.4}")).unwrap_or_else(|| "–".into())
    )?;
    for p in &plots {
        write!(html, "<div>{p}</div>")?;
    }
    html.push_str("</div></body></html>\n");
    std::fs::write(dir.join("index.html"), html).context("writing index.html")?;
    std::fs::write(
        dir.join("evaluation.json"),
        serde_json::to_string_pretty(e)?,
    )
    .context("writing evaluation.json")?;
    Ok(())
}
