//! Cost of one collection round's pieces: polling the host source on fixture trees, encoding a
//! round as line protocol, and appending it to a Parquet file. Run: `cargo bench -p keel-collector`.
//! (The whole daemon's footprint beside node_exporter is `scripts/bench-collector.sh`.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keel_collector::internal_events::Stats;
use keel_collector::sinks::influx::encode;
use keel_collector::sinks::influx::spool::Spool;
use keel_collector::sinks::parquet::{ParquetSettings, ParquetSink};
use keel_collector::sources::host::{HostConfig, HostSource};
use keel_collector::sources::Round;

fn host(snapshot: &str) -> HostSource {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/host")
        .join(snapshot);
    HostSource::new(HostConfig {
        host_id: "bench".into(),
        proc_root: base.join("proc"),
        sys_root: base.join("sys"),
        net_exclude: vec!["lo".into()],
    })
}

fn round() -> Round {
    let mut s = host("t0");
    s.poll(&mut Round::default(), 0.0);
    let mut r = Round {
        ts_ms: 1_700_000_000_000,
        ..Round::default()
    };
    s.poll(&mut r, 1.0);
    r
}

fn benches(c: &mut Criterion) {
    c.bench_function("host_poll_fixture", |b| {
        let mut s = host("t0");
        b.iter(|| {
            let mut r = Round::default();
            s.poll(&mut r, 1.0);
            r
        });
    });
    let r = round();
    c.bench_function("encode_round", |b| b.iter(|| encode::round_lines(&r)));
    c.bench_function("parquet_append_round", |b| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sink = ParquetSink::new(
            ParquetSettings {
                dir: dir.path().into(),
                rotate: Duration::from_secs(3600),
                zstd_level: 3,
                host_id: "bench".into(),
            },
            Arc::new(Stats::default()),
        )
        .expect("sink");
        b.iter(|| sink.write(r.ts_ms, &r.samples).expect("write"));
        sink.flush().expect("flush");
    });
    // A round's lines appended to the spool's journal (what each round costs the InfluxDB sink
    // before anything is sent), sealed into a batch every 10 rounds as with a 10x flush interval.
    let lines = encode::round_lines(&r);
    c.bench_function("spool_append_round", |b| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool = Spool::open(dir.path(), 1 << 30).expect("spool");
        let mut n = 0u64;
        b.iter(|| {
            spool.append(&lines).expect("append");
            n += 1;
            if n % 10 == 0 {
                spool.seal().expect("seal");
                let seq = spool.oldest().expect("a batch");
                spool.remove(seq).expect("remove");
            }
        });
    });
}

criterion_group!(round_benches, benches);
criterion_main!(round_benches);
