//! keel-collector end to end: the real binary against a real VictoriaMetrics (InfluxDB 2 write
//! API), outages, restarts with a spool, SIGKILL during Parquet writing, and the InfluxDB status
//! policy and Flux read path against a scripted server that answers like InfluxDB 2
//! (VictoriaMetrics accepts anything with 204 and has no Flux, so it cannot show those).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_collector::config::Secret;
use keel_collector::internal_events::Stats;
use keel_collector::sinks::influx::config::InfluxSettings;
use keel_collector::sinks::influx::InfluxSink;
use keel_core::parquet_io::read_samples;
use keel_core::schema::Sample;
use keel_tests::fake_influx::{FakeInflux, Response};
use keel_tests::victoria::VictoriaMetrics;
use keel_tests::{bins, free_port, poll_until};

fn collector(dir: &Path, host: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bins::bin("keel-collector"));
    c.args(["--no-config", "--host-id", host])
        .arg("--parquet-dir")
        .arg(dir.join("pq"))
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .args(args)
        .env("LOG_FILTER", "info")
        .env_remove("KEEL_CONFIG")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("collector.log"))
                .expect("collector log"),
        );
    c
}

fn influx_args(url: &str) -> Vec<String> {
    [
        "--influx-url",
        url,
        "--influx-org",
        "keel",
        "--influx-bucket",
        "test",
        "--influx-token",
        "t0ken",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn run_to_end(mut c: Command, dir: &Path) -> ExitStatus {
    let status = c.status().expect("spawn keel-collector");
    assert!(status.success(), "collector failed: {}", log(dir));
    status
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default()
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
    v.sort();
    v
}

fn all_rows(dir: &Path) -> Vec<Sample> {
    parquet_files(&dir.join("pq"))
        .iter()
        .flat_map(|p| {
            read_samples(p, None)
                .expect("collector Parquet reads")
                .samples
        })
        .collect()
}

/// Timestamps of host rows that have a CPU utilisation (every round after the first).
fn host_cpu_ts(rows: &[Sample], host: &str) -> BTreeSet<i64> {
    rows.iter()
        .filter(|s| s.vm_id.is_none() && s.host_id.as_deref() == Some(host))
        .filter(|s| s.metrics.cpu_util.is_some())
        .map(|s| s.ts_ms)
        .collect()
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("spool"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "lp"))
                .count()
        })
        .unwrap_or(0)
}

fn start_vm(port: u16, data: &Path) -> VictoriaMetrics {
    VictoriaMetrics::start(port, data).unwrap_or_else(|e| panic!("{e}"))
}

/// A server that keeps one sample per series and millisecond (`-dedup.minScrapeInterval=1ms`):
/// how a fleet runs it under the collector's at-least-once delivery, where a kill between the
/// server's answer and the removal of the batch sends the batch again.
fn start_vm_dedup(port: u16, data: &Path) -> VictoriaMetrics {
    VictoriaMetrics::start_with(port, data, &["-dedup.minScrapeInterval=1ms"])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until VictoriaMetrics holds exactly `want` as the timestamps of `host_cpu_util`.
fn assert_arrives(vm: &VictoriaMetrics, host: &str, want: &BTreeSet<i64>) {
    let sel = format!("{{__name__=\"host_cpu_util\",host=\"{host}\"}}");
    let mut last = Vec::new();
    let ok = poll_until(Duration::from_secs(20), || {
        last = vm.timestamps(&sel).unwrap_or_default();
        (last.iter().copied().collect::<BTreeSet<_>>() == *want).then_some(())
    });
    assert!(
        ok.is_some(),
        "VictoriaMetrics has {} points, Parquet {}: missing {:?}, extra {:?}",
        last.len(),
        want.len(),
        want.iter()
            .filter(|t| !last.contains(t))
            .collect::<Vec<_>>(),
        last.iter()
            .filter(|t| !want.contains(t))
            .collect::<Vec<_>>()
    );
    // Every point once, not duplicated.
    let dedup: BTreeSet<i64> = last.iter().copied().collect();
    assert_eq!(dedup.len(), last.len(), "duplicated points: {last:?}");
}

fn sigterm(child: &mut Child) -> ExitStatus {
    _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    poll_until(Duration::from_secs(30), || child.try_wait().ok().flatten())
        .expect("collector stops within 30 s of SIGTERM")
}

#[test]
fn collector_once_reaches_victoria_metrics_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vm-data");
    let vm = start_vm(free_port(), &data);
    let mut c = collector(dir.path(), "it-once", &["--once"]);
    c.args(influx_args(&vm.url()));
    run_to_end(c, dir.path());
    let rows = all_rows(dir.path());
    assert_eq!(rows.len(), 1, "one host row");
    let m = rows[0].metrics;
    assert!(
        m.cpu_util.is_some_and(|u| (0.0..=1.0).contains(&u)),
        "{m:?}"
    );
    assert!(m.mem_used_mib.is_some_and(|v| v > 0.0), "{m:?}");
    assert_arrives(&vm, "it-once", &host_cpu_ts(&rows, "it-once"));
    // Breakdowns and self-metrics arrive too.
    let rounds = vm
        .export("{__name__=\"keel_collector_rounds\",host=\"it-once\"}")
        .unwrap();
    assert_eq!(rounds.len(), 1, "{rounds:?}");
    assert_eq!(spool_files(dir.path()), 0);
}

#[test]
fn trainer_reads_the_collectors_parquet_directly() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--interval", "200ms", "--duration", "1500ms"];
    run_to_end(collector(dir.path(), "it-trainer", &args), dir.path());
    let files = parquet_files(&dir.path().join("pq"));
    assert_eq!(files.len(), 1);
    let rows = read_samples(&files[0], None).unwrap().samples.len() as u64;
    assert!(rows >= 2, "{rows}");
    // The trainer's polars reader, through its CLI.
    let out = Command::new(bins::bin("keel-trainer"))
        .args(["summary", "--json"])
        .arg(&files[0])
        .output()
        .expect("run keel-trainer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    assert_eq!(
        (v["rows"].as_u64(), v["hosts"].as_u64()),
        (Some(rows), Some(1)),
        "{v}"
    );
    let cpu = v["columns"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "cpu_util"))
        .expect("cpu_util column");
    assert_eq!(cpu["null_share"].as_f64(), Some(0.0), "{cpu}");
}

#[test]
fn outage_of_the_database_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vm-data");
    let port = free_port();
    let vm = start_vm(port, &data);
    let mut c = collector(dir.path(), "it-outage", &["--interval", "1s"]);
    c.args(influx_args(&vm.url()));
    let mut child = c.spawn().expect("spawn collector");
    std::thread::sleep(Duration::from_secs(3));
    vm.stop();
    // Rounds during the outage go to the spool.
    let spooled = poll_until(Duration::from_secs(10), || {
        (spool_files(dir.path()) >= 3).then_some(())
    });
    assert!(spooled.is_some(), "nothing spooled: {}", log(dir.path()));
    let vm = start_vm(port, &data);
    let drained = poll_until(Duration::from_secs(40), || {
        (spool_files(dir.path()) == 0).then_some(())
    });
    assert!(drained.is_some(), "spool not replayed: {}", log(dir.path()));
    std::thread::sleep(Duration::from_secs(1));
    let status = sigterm(&mut child);
    assert!(status.success(), "{status:?}: {}", log(dir.path()));
    let want = host_cpu_ts(&all_rows(dir.path()), "it-outage");
    assert!(want.len() >= 6, "only {} rounds", want.len());
    assert_arrives(&vm, "it-outage", &want);
}

#[test]
fn restart_with_a_full_spool_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // Nothing listens yet: every round is spooled, and the spool survives the exit.
    let mut c = collector(
        dir.path(),
        "it-restart",
        &["--interval", "1s", "--duration", "4s"],
    );
    c.args(influx_args(&url));
    run_to_end(c, dir.path());
    let before = spool_files(dir.path());
    assert!(
        before >= 2,
        "spool has {before} batches: {}",
        log(dir.path())
    );
    let vm = start_vm(port, &dir.path().join("vm-data"));
    let mut c = collector(dir.path(), "it-restart", &["--once"]);
    c.args(influx_args(&url));
    run_to_end(c, dir.path());
    assert_eq!(spool_files(dir.path()), 0, "{}", log(dir.path()));
    let want = host_cpu_ts(&all_rows(dir.path()), "it-restart");
    assert!(want.len() > before, "{want:?}");
    assert_arrives(&vm, "it-restart", &want);
}

/// The collector's log without ANSI colour codes.
fn plain_log(dir: &Path) -> String {
    let raw = log(dir);
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn spool_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("spool"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn spool_cap_drops_the_oldest_batches_counts_them_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let cap = 4000;
    let mut c = collector(
        dir.path(),
        "it-cap",
        &[
            "--interval",
            "200ms",
            "--duration",
            "4s",
            "--spool-max-bytes",
            "4000",
        ],
    );
    c.args(influx_args(&url));
    run_to_end(c, dir.path());
    let text = plain_log(dir.path());
    assert!(spool_bytes(dir.path()) <= cap, "spool exceeds its cap");
    assert!(text.contains("Dropped the oldest spooled batch"), "{text}");
    let dropped: u64 = text
        .lines()
        .filter(|l| l.contains("counters (shutdown)"))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("dropped_spool="))
                .and_then(|v| v.parse().ok())
        })
        .expect("shutdown counters logged");
    assert!(dropped > 0, "{text}");
    // What is left is the newest rounds: after replay the database holds a suffix of them.
    let vm = start_vm(port, &dir.path().join("vm-data"));
    let mut c = collector(dir.path(), "it-cap", &["--once"]);
    c.args(influx_args(&url));
    run_to_end(c, dir.path());
    let all: Vec<i64> = host_cpu_ts(&all_rows(dir.path()), "it-cap")
        .into_iter()
        .collect();
    let sel = "{__name__=\"host_cpu_util\",host=\"it-cap\"}";
    let got = poll_until(Duration::from_secs(20), || {
        let ts = vm.timestamps(sel).ok()?;
        (ts.last() == all.last()).then_some(ts)
    })
    .expect("the newest round arrives");
    assert!(
        got.len() < all.len(),
        "something was dropped: {} of {}",
        got.len(),
        all.len()
    );
    assert_eq!(
        got[..],
        all[all.len() - got.len()..],
        "a suffix: the oldest were dropped"
    );
}

#[test]
fn sigkill_during_parquet_writing_leaves_only_complete_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = collector(
        dir.path(),
        "it-kill",
        &["--interval", "100ms", "--parquet-rotate", "300ms"],
    );
    let mut child = c.spawn().expect("spawn collector");
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().expect("SIGKILL");
    _ = child.wait();
    let pq = dir.path().join("pq");
    let complete = parquet_files(&pq);
    assert!(complete.len() >= 3, "{complete:?}: {}", log(dir.path()));
    for f in &complete {
        let d = read_samples(f, None).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!d.samples.is_empty(), "{}", f.display());
        assert!(d
            .samples
            .iter()
            .all(|s| s.host_id.as_deref() == Some("it-kill")));
    }
    // Whatever was open at the kill is a hidden temporary that does not read as Parquet.
    let partial: Vec<PathBuf> = std::fs::read_dir(&pq)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect();
    for p in &partial {
        assert!(
            read_samples(p, None).is_err(),
            "{} reads as valid",
            p.display()
        );
    }
    // Its rows are in its write-ahead log: the next start removes the temporary, folds the log
    // into a complete file, and writes its own.
    let logs = std::fs::read_dir(&pq)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|e| e == "wal"))
        .count();
    assert!(logs <= 1, "one open file at a time");
    let rounds_before = parquet_round_list(&pq, "it-kill").len();
    run_to_end(collector(dir.path(), "it-kill", &["--once"]), dir.path());
    assert!(partial.iter().all(|p| !p.exists()));
    let after = parquet_files(&pq).len();
    assert!(
        (complete.len() + 1..=complete.len() + 1 + logs).contains(&after),
        "{after} files after {} and {logs} logs",
        complete.len()
    );
    let rounds = parquet_round_list(&pq, "it-kill");
    let distinct: BTreeSet<i64> = rounds.iter().copied().collect();
    assert_eq!(distinct.len(), rounds.len(), "no round twice");
    assert!(rounds.len() > rounds_before);
}

fn settings(url: &str, spool: &Path, gzip: bool) -> InfluxSettings {
    InfluxSettings {
        url: url.into(),
        org: "keel".into(),
        bucket: "b".into(),
        token: Secret::new("tok"),
        batch_lines: 1000,
        flush_interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        gzip,
        spool_dir: spool.into(),
        spool_max_bytes: 1 << 20,
        queue_lines: 1000,
    }
}

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("m,host=h v={i}.0 {}", 1000 + i))
        .collect()
}

/// Lines the server acknowledged (2xx answers), in arrival order.
fn delivered(
    server: &FakeInflux,
    ok: impl Fn(&keel_tests::fake_influx::Request) -> bool,
) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v2/write") && ok(r))
        .flat_map(keel_tests::fake_influx::Request::lines)
        .collect()
}

async fn push_and_step(sink: &mut InfluxSink, n: usize) {
    sink.writer().push(&lines(n));
    sink.step(true).await;
}

#[tokio::test]
async fn status_413_splits_the_batch_and_delivers_every_line_once_in_order() {
    let server =
        FakeInflux::start(|r| Response::status(if r.lines().len() > 2 { 413 } else { 204 }));
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Stats::default());
    let mut sink = InfluxSink::new(
        settings(&server.url(), dir.path(), false),
        Arc::clone(&stats),
    )
    .unwrap();
    push_and_step(&mut sink, 9).await;
    assert_eq!(delivered(&server, |r| r.lines().len() <= 2), lines(9));
    assert!(sink.spool().is_empty());
    let req = &server.requests()[0];
    assert!(
        req.path.contains("precision=ms") && req.path.contains("bucket=b"),
        "{}",
        req.path
    );
    assert_eq!(req.header("authorization"), Some("Token tok"));
}

#[tokio::test]
async fn status_400_and_422_drop_with_a_count_but_401_and_503_keep() {
    for (status, kept) in [
        (400, false),
        (422, false),
        (404, false),
        (401, true),
        (403, true),
        (429, true),
        (503, true),
    ] {
        let server = FakeInflux::start(move |_| Response::status(status));
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let mut sink = InfluxSink::new(
            settings(&server.url(), dir.path(), false),
            Arc::clone(&stats),
        )
        .unwrap();
        push_and_step(&mut sink, 3).await;
        let rejected = stats.dropped_rejected.load(Ordering::Relaxed);
        if kept {
            assert_eq!((sink.spool().len(), rejected), (1, 0), "{status}");
        } else {
            assert_eq!((sink.spool().len(), rejected), (0, 3), "{status}");
        }
    }
}

#[tokio::test]
async fn server_errors_spool_then_replay_in_order_when_it_recovers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let server = FakeInflux::start(move |_| {
        Response::status(if c.fetch_add(1, Ordering::SeqCst) < 2 {
            503
        } else {
            204
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Stats::default());
    let mut sink = InfluxSink::new(
        settings(&server.url(), dir.path(), false),
        Arc::clone(&stats),
    )
    .unwrap();
    let w = sink.writer();
    let all = lines(6);
    w.push(&all[..3]);
    sink.step(true).await; // 503: kept in the spool, back-off 1 s
    w.push(&all[3..]);
    sink.step(true).await; // backing off: sealed behind the first batch
    assert_eq!(sink.spool().len(), 2);
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        sink.step(true).await;
        if sink.spool().is_empty() {
            break;
        }
    }
    assert!(sink.spool().is_empty());
    // The 204 answers carried every line exactly once, oldest first.
    let reqs = server.requests();
    let ok: Vec<String> = reqs
        .iter()
        .skip(2)
        .flat_map(keel_tests::fake_influx::Request::lines)
        .collect();
    assert_eq!(ok, all);
    assert_eq!(stats.influx_lines_sent.load(Ordering::Relaxed), 6);
}

#[tokio::test]
async fn retry_after_from_429_and_503_holds_the_next_write_back() {
    for status in [429, 503] {
        // The first answer asks for 2 s (longer than the sink's own first back-off of 1 s).
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let server = FakeInflux::start(move |_| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut r = Response::status(status);
                r.headers.push(("Retry-After".into(), "2".into()));
                r
            } else {
                Response::status(204)
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let mut sink = InfluxSink::new(
            settings(&server.url(), dir.path(), false),
            Arc::clone(&stats),
        )
        .unwrap();
        let t0 = tokio::time::Instant::now();
        push_and_step(&mut sink, 3).await;
        assert_eq!(sink.spool().len(), 1, "{status}: kept");
        let wait = sink.retry_at().expect("backing off") - t0;
        assert!(
            (Duration::from_millis(1900)..Duration::from_millis(2500)).contains(&wait),
            "{status}: waits {wait:?}, not the 1 s back-off"
        );
        // Past our own 1 s back-off, the server's 2 s still hold the spool back.
        while t0.elapsed() < Duration::from_millis(1500) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sink.step(true).await;
        }
        assert_eq!(
            server.requests().len(),
            1,
            "{status}: no request before Retry-After"
        );
        while !sink.spool().is_empty() && t0.elapsed() < Duration::from_secs(6) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sink.step(true).await;
        }
        assert!(sink.spool().is_empty(), "{status}: replayed after the wait");
        assert!(t0.elapsed() >= Duration::from_secs(2));
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2, "{status}");
        assert_eq!(reqs[1].lines(), lines(3), "{status}: the kept batch, once");
        assert_eq!(stats.influx_lines_sent.load(Ordering::Relaxed), 3);
    }
}

#[tokio::test]
async fn gzip_bodies_carry_the_gzip_header() {
    let server = FakeInflux::start(|_| Response::status(204));
    let dir = tempfile::tempdir().unwrap();
    let mut sink = InfluxSink::new(
        settings(&server.url(), dir.path(), true),
        Arc::new(Stats::default()),
    )
    .unwrap();
    push_and_step(&mut sink, 2).await;
    let r = &server.requests()[0];
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "gzip magic");
}

#[tokio::test]
async fn flux_read_path_parses_annotated_csv() {
    const CSV: &str = "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string\r\n\
#group,false,false,true,true,false,false,true,true,true\r\n\
#default,_result,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement,host\r\n\
,,0,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T00:00:10Z,0.5,cpu_util,host,h1\r\n\
,,0,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T00:00:20Z,0.25,cpu_util,host,h1\r\n\
,,0,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T00:00:30Z,0.75,cpu_util,host,h1\r\n\r\n";
    let server = FakeInflux::start(|r| {
        if r.path.starts_with("/api/v2/query") {
            Response {
                status: 200,
                headers: vec![("Content-Type".into(), "text/csv; charset=utf-8".into())],
                body: CSV.into(),
            }
        } else {
            Response::status(404)
        }
    });
    let svc = keel_collector::sinks::influx::service::InfluxService::new(&settings(
        &server.url(),
        Path::new("/nonexistent"),
        false,
    ))
    .unwrap();
    let n = svc
        .query_count(
            "from(bucket: \"b\") |> range(start: -1h)",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    let q = &server.requests()[0];
    assert!(String::from_utf8_lossy(&q.body).contains("range(start: -1h)"));
}

/// PromQL instant query through VictoriaMetrics' `/api/v1/query`: `(labels, value)` per result.
fn instant(vm: &VictoriaMetrics, query: &str, at_ms: i64) -> Vec<(serde_json::Value, f64)> {
    let path = format!(
        "/api/v1/query?query={}&time={}.{:03}",
        keel_tests::http::encode(query),
        at_ms / 1000,
        at_ms % 1000
    );
    let (status, body) = keel_tests::http::get(vm.port(), &path).expect("query");
    assert_eq!(status, 200, "{query}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
    v["data"]["result"]
        .as_array()
        .expect("result array")
        .iter()
        .map(|r| {
            let val = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("a number");
            (r["metric"].clone(), val)
        })
        .collect()
}

#[test]
fn series_names_are_distinct_and_totals_are_not_double_counted_in_victoria_metrics() {
    use keel_collector::series::flat_names;
    let dir = tempfile::tempdir().unwrap();
    let vm = start_vm(free_port(), &dir.path().join("vm-data"));
    let mut c = collector(
        dir.path(),
        "it-names",
        &["--interval", "500ms", "--duration", "2600ms"],
    );
    c.args(influx_args(&vm.url()));
    run_to_end(c, dir.path());
    let rows = all_rows(dir.path());
    let rounds = host_cpu_ts(&rows, "it-names");
    assert!(rounds.len() >= 3, "{rounds:?}");
    assert_arrives(&vm, "it-names", &rounds);
    // Every series the collector wrote: a catalogue name, and one sample per round (a name two
    // fields flatten to would hold two samples per round).
    let known: BTreeSet<String> = flat_names().into_iter().map(|(n, _, _)| n).collect();
    let series = vm.export("{host=\"it-names\"}").unwrap();
    let mut names = BTreeSet::new();
    for s in &series {
        let name = s["metric"]["__name__"].as_str().unwrap().to_owned();
        assert!(known.contains(&name), "{name} is not in the catalogue");
        let ts = s["timestamps"].as_array().unwrap();
        let distinct: BTreeSet<i64> = ts.iter().filter_map(serde_json::Value::as_i64).collect();
        assert_eq!(
            distinct.len(),
            ts.len(),
            "{}: two samples at one time",
            s["metric"]
        );
        names.insert(name);
    }
    for n in [
        "host_cpu_steal",
        "host_cpu_mode_steal",
        "host_netdev_rx_kib_s",
    ] {
        assert!(names.contains(n), "{n} missing: {names:?}");
    }
    // Totals: the host's network and disk totals are one series each, and summing them gives
    // exactly the Parquet host row, whatever the number of interfaces and devices.
    let at = *rounds.iter().next_back().unwrap();
    let row = rows
        .iter()
        .find(|s| s.ts_ms == at && s.vm_id.is_none())
        .unwrap();
    let netdevs = instant(&vm, "count(host_netdev_rx_kib_s{host=\"it-names\"})", at);
    assert!(
        netdevs.first().is_some_and(|(_, n)| *n >= 1.0),
        "per-interface series: {netdevs:?}"
    );
    for (metric, want) in [
        ("host_net_rx_kib_s", row.metrics.net_rx_kib_s),
        ("host_net_tx_kib_s", row.metrics.net_tx_kib_s),
        ("host_disk_read_kib_s", row.metrics.disk_read_kib_s),
        ("host_disk_write_kib_s", row.metrics.disk_write_kib_s),
        ("host_cpu_steal", row.metrics.cpu_steal),
    ] {
        let Some(want) = want else { continue };
        let q = format!("sum({metric}{{host=\"it-names\"}})");
        // Just-written points can take a moment to reach the query path (export sees them
        // first), so wait for the value rather than sampling once.
        let mut got = Vec::new();
        let same = poll_until(Duration::from_secs(15), || {
            got = instant(&vm, &q, at);
            (got.len() == 1 && (got[0].1 - want).abs() <= 1e-9 * want.abs().max(1.0)).then_some(())
        });
        assert!(same.is_some(), "{q} = {got:?} but the host row says {want}");
        let n = instant(&vm, &format!("count({metric}{{host=\"it-names\"}})"), at);
        assert_eq!(n[0].1, 1.0, "{metric}: one series per host, not {n:?}");
    }
}

/// Host-row timestamps of every Parquet file in `pq` (each file must read), with duplicates.
fn parquet_round_list(pq: &Path, host: &str) -> Vec<i64> {
    let mut ts: Vec<i64> = parquet_files(pq)
        .iter()
        .flat_map(|p| {
            read_samples(p, None)
                .unwrap_or_else(|e| panic!("{} does not read: {e}", p.display()))
                .samples
        })
        .filter(|s| s.vm_id.is_none() && s.host_id.as_deref() == Some(host))
        .map(|s| s.ts_ms)
        .collect();
    ts.sort_unstable();
    ts
}

#[test]
fn repeated_sigkill_under_load_loses_at_most_the_round_in_progress_in_either_output() {
    let dir = tempfile::tempdir().unwrap();
    let (port, data) = (free_port(), dir.path().join("vm-data"));
    let url = format!("http://127.0.0.1:{port}");
    // Delivery is at least once (collector/README.md): a kill after the server stored a batch
    // but before the collector removed it sends the batch again, same points, same timestamps.
    // The server folds those (as a fleet runs it), so the database is read as a set; a batch
    // sent again under new timestamps would be rounds Parquet lacks, counted below.
    let mut vm = Some(start_vm_dedup(port, &data));
    let host = "it-sigkill";
    let args = ["--interval", "100ms", "--parquet-rotate", "1s"];
    // Kill times spread over the round (fixed, so a failure reproduces).
    let kills = [1230u64, 870, 1510, 960, 1105, 1333, 777, 1420];
    for (i, after) in kills.iter().enumerate() {
        // The database is down for runs 3 to 5: those kills hit the spool mid-outage, and
        // run 6 is killed during the replay.
        if i == 3 {
            vm.take().expect("running").stop();
        }
        if i == 6 {
            vm = Some(start_vm_dedup(port, &data));
        }
        let mut c = collector(dir.path(), host, &args);
        c.args(influx_args(&url));
        let mut child = c.spawn().expect("spawn collector");
        std::thread::sleep(Duration::from_millis(*after));
        child.kill().expect("SIGKILL");
        _ = child.wait();
    }
    let vm = vm.expect("running again");
    // A clean run folds the write-ahead logs in and replays the spool.
    let mut c = collector(
        dir.path(),
        host,
        &["--interval", "100ms", "--duration", "1s"],
    );
    c.args(influx_args(&url));
    run_to_end(c, dir.path());
    let pq = dir.path().join("pq");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&pq)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|e| e != "parquet"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let in_parquet = parquet_round_list(&pq, host);
    let parquet_set: BTreeSet<i64> = in_parquet.iter().copied().collect();
    assert_eq!(
        parquet_set.len(),
        in_parquet.len(),
        "a round twice in Parquet"
    );
    assert_eq!(spool_files(dir.path()), 0, "{}", log(dir.path()));
    let sel = format!("{{__name__=\"host_cpu_util\",host=\"{host}\"}}");
    // Wait until the database has every round it will get (the clean run's last included).
    let last = *in_parquet.last().unwrap();
    let in_db = poll_until(Duration::from_secs(20), || {
        let ts = vm.timestamps(&sel).ok()?;
        ts.contains(&last).then_some(ts)
    })
    .expect("the clean run's rounds arrive");
    let db_set: BTreeSet<i64> = in_db.iter().copied().collect();
    let all: BTreeSet<i64> = parquet_set.union(&db_set).copied().collect();
    let lost_parquet = all.difference(&parquet_set).count();
    let lost_db = all.difference(&db_set).count();
    assert!(
        lost_parquet <= kills.len() && lost_db <= kills.len(),
        "{} rounds; lost {lost_parquet} in Parquet, {lost_db} in the database, over {} kills",
        all.len(),
        kills.len()
    );
    // Rounds happened (about 8 per killed second), so the counts above mean something.
    assert!(all.len() >= 60, "only {} rounds", all.len());
    let text = plain_log(dir.path());
    assert!(
        text.contains("Recovered rows from a write-ahead log"),
        "{text}"
    );
}
