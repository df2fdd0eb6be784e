//! Import throughput (input rows/s) of `keel-trainer import` on real trace files.
//!
//! Inputs are built in a temporary folder from the real fixtures in `datasets/fixtures/`: the
//! three PlanetLab files copied to 300 VM files (one day, 86,400 rows) and the three Bitbrains
//! files copied to 100 VM files. Set `KEEL_BENCH_PLANETLAB_DAY=/path/to/20110303` and/or
//! `KEEL_BENCH_BITBRAINS_MONTH=/path/to/rnd/2013-7` to also measure a whole real day or month.
//! Each iteration parses every file and writes the zstd Parquet output (level 19, as shipped).
//!
//! Run: `cargo bench -p keel-trainer --bench import`.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_trainer::import::{bitbrains, planetlab, DEFAULT_ZSTD_LEVEL};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/fixtures")
}

/// Copies every file of `src` into `dst` `copies` times, renaming with `name(i, file_name)`.
fn replicate(src: &Path, dst: &Path, copies: usize, name: impl Fn(usize, &str) -> String) {
    std::fs::create_dir_all(dst).expect("create bench input folder");
    let mut files: Vec<_> = std::fs::read_dir(src)
        .expect("fixtures folder")
        .map(|e| e.expect("fixture entry").path())
        .collect();
    files.sort();
    let mut k = 0;
    for _ in 0..copies {
        for f in &files {
            let file_name = f.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
            std::fs::copy(f, dst.join(name(k, file_name))).expect("copy fixture");
            k += 1;
        }
    }
}

fn bench_planetlab(c: &mut Criterion, label: &str, day: &Path) {
    let out = tempfile::tempdir().expect("tempdir");
    let dest = out.path().join("out.parquet");
    let rows = planetlab::read_day(day, None)
        .expect("bench input parses")
        .len();
    let mut g = c.benchmark_group("import-planetlab");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function(label, |b| {
        b.iter(|| planetlab::import(day, &dest, None, DEFAULT_ZSTD_LEVEL).expect("import"));
    });
    g.finish();
}

fn bench_bitbrains(c: &mut Criterion, label: &str, month: &Path) {
    let out = tempfile::tempdir().expect("tempdir");
    let dest = out.path().join("out.parquet");
    // Throughput counts input rows (data lines), not grid rows: gaps would inflate the latter.
    let rows: usize = bitbrains::month_files(month)
        .expect("bench input folder")
        .iter()
        .map(|(_, p)| std::fs::read_to_string(p).expect("read").lines().count() - 1)
        .sum();
    let mut g = c.benchmark_group("import-bitbrains");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function(label, |b| {
        b.iter(|| {
            bitbrains::import(month, &dest, None, None, None, DEFAULT_ZSTD_LEVEL).expect("import")
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let day = tmp.path().join("20110303");
    replicate(&fixtures().join("planetlab/20110303"), &day, 100, |k, n| {
        format!("{n}-{k:03}")
    });
    bench_planetlab(c, "fixtures-x100 (300 VMs)", &day);
    let month = tmp.path().join("2013-7");
    replicate(&fixtures().join("bitbrains/2013-7"), &month, 34, |k, _| {
        format!("{}.csv", k + 1)
    });
    bench_bitbrains(c, "fixtures-x34 (102 VMs)", &month);
    if let Ok(d) = std::env::var("KEEL_BENCH_PLANETLAB_DAY") {
        bench_planetlab(c, "real-day", Path::new(&d));
    }
    if let Ok(m) = std::env::var("KEEL_BENCH_BITBRAINS_MONTH") {
        bench_bitbrains(c, "real-month", Path::new(&m));
    }
}

criterion_group!(import, benches);
criterion_main!(import);
