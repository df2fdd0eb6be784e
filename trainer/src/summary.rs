//! `keel-trainer summary <file.parquet>`: what a canonical file holds, computed in one lazy polars
//! query: rows, entities (hosts, VMs), time span, the typical step, and per metric column the
//! null share and percentiles.

use std::path::PathBuf;

use anyhow::Context;
use keel_core::schema::{HOST_ID, METRIC_COLUMNS, TS, VM_ID};
use polars::prelude::{col, len, lit, DataType, QuantileMethod, SortMultipleOptions};
use serde::Serialize;

use crate::load::{columns, scan};

/// Arguments of `keel-trainer summary`.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Canonical Parquet file.
    pub file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One metric column's statistics.
#[derive(Debug, Serialize, PartialEq)]
pub struct ColumnSummary {
    /// Column name.
    pub name: String,
    /// Share of rows that are null.
    pub null_share: f64,
    /// 5th, 50th, 95th percentiles and maximum (None when all null).
    pub p5: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

/// A file's summary.
#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    /// File.
    pub file: String,
    /// Rows.
    pub rows: u64,
    /// Distinct hosts.
    pub hosts: u64,
    /// Distinct VMs.
    pub vms: u64,
    /// First timestamp, ms.
    pub ts_min_ms: Option<i64>,
    /// Last timestamp, ms.
    pub ts_max_ms: Option<i64>,
    /// Most common step between distinct timestamps, seconds.
    pub step_s: Option<f64>,
    /// Metric columns.
    pub columns: Vec<ColumnSummary>,
}

/// Computes the summary of a file.
///
/// # Errors
/// Unreadable file or missing `ts`.
pub fn summarise(path: &std::path::Path) -> anyhow::Result<Summary> {
    let mut lf = scan(path)?;
    let cols = columns(&mut lf, path)?;
    if !cols.iter().any(|c| c == TS) {
        anyhow::bail!("{}: missing column {TS:?}", path.display());
    }
    let metrics: Vec<&str> = METRIC_COLUMNS
        .iter()
        .copied()
        .filter(|c| cols.iter().any(|x| x == c))
        .collect();
    let mut exprs = vec![
        len().cast(DataType::UInt64).alias("rows"),
        col(TS).cast(DataType::Int64).min().alias("ts_min"),
        col(TS).cast(DataType::Int64).max().alias("ts_max"),
    ];
    for (name, c) in [("hosts", HOST_ID), ("vms", VM_ID)] {
        if cols.iter().any(|x| x == c) {
            exprs.push(
                col(c)
                    .drop_nulls()
                    .n_unique()
                    .cast(DataType::UInt64)
                    .alias(name),
            );
        } else {
            exprs.push(lit(0u64).alias(name));
        }
    }
    for m in &metrics {
        let c = || col(*m).cast(DataType::Float64);
        exprs.push(
            c().null_count()
                .cast(DataType::UInt64)
                .alias(format!("{m}__nulls")),
        );
        for (q, tag) in [(0.05, "p5"), (0.5, "p50"), (0.95, "p95")] {
            exprs.push(
                c().quantile(lit(q), QuantileMethod::Linear)
                    .alias(format!("{m}__{tag}")),
            );
        }
        exprs.push(c().max().alias(format!("{m}__max")));
    }
    let df = lf
        .clone()
        .select(exprs)
        .collect()
        .with_context(|| format!("{}: summarising", path.display()))?;
    // Step: the most common difference between consecutive distinct timestamps.
    let steps = lf
        .select([col(TS)
            .cast(DataType::Int64)
            .unique()
            .sort(Default::default())
            .alias("t")])
        .select([(col("t") - col("t").shift(lit(1))).alias("d")])
        .group_by([col("d")])
        .agg([len().alias("n")])
        .sort(
            ["n"],
            SortMultipleOptions::default().with_order_descending(true),
        )
        .filter(col("d").is_not_null())
        .limit(1)
        .collect()
        .with_context(|| format!("{}: computing the step", path.display()))?;
    let step_s = steps
        .column("d")
        .ok()
        .and_then(|c| c.i64().ok().and_then(|c| c.iter().next().flatten()))
        .map(|d| d as f64 / 1000.0);
    let u =
        |name: &str| -> Option<u64> { df.column(name).ok()?.u64().ok()?.iter().next().flatten() };
    let i =
        |name: &str| -> Option<i64> { df.column(name).ok()?.i64().ok()?.iter().next().flatten() };
    let f = |name: &str| -> Option<f64> {
        df.column(name)
            .ok()?
            .cast(&DataType::Float64)
            .ok()?
            .f64()
            .ok()?
            .iter()
            .next()
            .flatten()
    };
    let rows = u("rows").unwrap_or(0);
    let columns = metrics
        .iter()
        .map(|m| ColumnSummary {
            name: (*m).to_owned(),
            null_share: if rows > 0 {
                u(&format!("{m}__nulls")).unwrap_or(0) as f64 / rows as f64
            } else {
                0.0
            },
            p5: f(&format!("{m}__p5")),
            p50: f(&format!("{m}__p50")),
            p95: f(&format!("{m}__p95")),
            max: f(&format!("{m}__max")),
        })
        .collect();
    Ok(Summary {
        file: path.display().to_string(),
        rows,
        hosts: u("hosts").unwrap_or(0),
        vms: u("vms").unwrap_or(0),
        ts_min_ms: i("ts_min"),
        ts_max_ms: i("ts_max"),
        step_s,
        columns,
    })
}

fn ts(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "-".into(), |d| d.to_rfc3339())
}

/// Runs `keel-trainer summary`.
///
/// # Errors
/// Any failure, with context.
pub fn run(args: SummaryArgs) -> anyhow::Result<()> {
    let s = summarise(&args.file)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("file     {}", s.file);
    println!("rows     {}", s.rows);
    println!("hosts    {}   vms {}", s.hosts, s.vms);
    println!("span     {} .. {}", ts(s.ts_min_ms), ts(s.ts_max_ms));
    println!(
        "step     {}",
        s.step_s.map_or_else(|| "-".into(), |v| format!("{v} s"))
    );
    println!(
        "{:<18} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "column", "null%", "p5", "p50", "p95", "max"
    );
    let o = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.4}"));
    for c in &s.columns {
        println!(
            "{:<18} {:>7.2} {:>12} {:>12} {:>12} {:>12}",
            c.name,
            100.0 * c.null_share,
            o(c.p5),
            o(c.p50),
            o(c.p95),
            o(c.max)
        );
    }
    Ok(())
}
