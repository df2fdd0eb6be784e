//! Parquet written by keel-core (arrow-rs) reads identically in polars, and Parquet written by
//! polars reads identically through keel-core.

use keel_core::inventory::Inventory;
use keel_core::parquet_io::{read_samples, write_samples, WriteOptions};
use keel_core::schema::{Metrics, Sample, METRIC_COLUMNS};
use keel_trainer::load::load;
use polars::prelude::{
    Column, DataFrame, DataType, NamedFrom, ParquetWriter, Series, TimeUnit, TimeZone,
};

fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    for e in 0..5 {
        for t in 0..7i64 {
            let mut m = Metrics::default();
            for c in 0..METRIC_COLUMNS.len() {
                // Some nulls, some values, distinct per cell.
                if (e + t as usize + c) % 4 != 0 {
                    m.set(c, Some(e as f64 * 1000.0 + t as f64 + c as f64 / 100.0));
                }
            }
            m.cpu_util = Some(0.1 * e as f64 + 0.01 * t as f64);
            let vm = e < 3;
            out.push(Sample {
                ts_ms: 1_300_000_000_000 + t * 300_000,
                host_id: if vm { None } else { Some(format!("h{e}")) },
                vm_id: vm.then(|| format!("vm-{e}")),
                metrics: m,
            });
        }
    }
    out
}

fn check_table(path: &std::path::Path, rows: &[Sample]) {
    let t = load(path).unwrap();
    assert_eq!(t.rows, rows.len());
    for s in rows {
        let e = t
            .entities
            .iter()
            .find(|e| e.vm_id == s.vm_id && (s.vm_id.is_some() || e.host_id == s.host_id))
            .unwrap();
        let i = e.ts_ms.iter().position(|x| *x == s.ts_ms).unwrap();
        let same = |a: f64, b: Option<f64>| match b {
            Some(b) => a == b,
            None => a.is_nan(),
        };
        assert!(same(e.cpu_util[i], s.metrics.cpu_util));
        assert!(same(e.cpu_demand[i], s.metrics.cpu_demand));
        assert!(same(e.mem_used_mib[i], s.metrics.mem_used_mib));
    }
}

#[test]
fn keel_core_file_reads_in_polars() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("core.parquet");
    let rows = samples();
    write_samples(&p, &rows, &Inventory::default(), WriteOptions::default()).unwrap();
    check_table(&p, &rows);
    // And every metric column, cell by cell, through a plain polars read.
    let df = polars::prelude::LazyFrame::scan_parquet(
        polars::prelude::PlRefPath::new(p.to_str().unwrap()),
        Default::default(),
    )
    .unwrap()
    .collect()
    .unwrap();
    assert_eq!(df.height(), rows.len());
    for (c, name) in METRIC_COLUMNS.iter().enumerate() {
        let col = df.column(name).unwrap().f64().unwrap();
        for (i, s) in rows.iter().enumerate() {
            assert_eq!(col.get(i), s.metrics.get(c), "{name} row {i}");
        }
    }
}

#[test]
fn polars_file_reads_in_keel_core() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("polars.parquet");
    let rows = samples();
    let ts: Vec<i64> = rows.iter().map(|s| s.ts_ms).collect();
    let mut cols: Vec<Column> = vec![
        Series::new("ts".into(), ts)
            .cast(&DataType::Datetime(
                TimeUnit::Milliseconds,
                Some(TimeZone::UTC),
            ))
            .unwrap()
            .into(),
        Series::new(
            "host_id".into(),
            rows.iter().map(|s| s.host_id.clone()).collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "vm_id".into(),
            rows.iter().map(|s| s.vm_id.clone()).collect::<Vec<_>>(),
        )
        .into(),
    ];
    for (c, name) in METRIC_COLUMNS.iter().enumerate() {
        let v: Vec<Option<f64>> = rows.iter().map(|s| s.metrics.get(c)).collect();
        cols.push(Series::new((*name).into(), v).into());
    }
    let mut df = DataFrame::new(rows.len(), cols).unwrap();
    let mut f = std::fs::File::create(&p).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
    drop(f);
    let back = read_samples(&p, None).unwrap();
    assert_eq!(back.samples, rows);
    check_table(&p, &rows);
}
