//! `keel-trainer import influx` against a real HTTP server on 127.0.0.1 that answers
//! `POST /api/v2/query` like InfluxDB 2: annotated CSV answers from `tests/fixtures/influx/`
//! (one file per queried window, pivoted tables as InfluxDB 2.7 returns them for the import's
//! Flux), `401` for a wrong token, and scripted `503`s and slow answers. No InfluxDB 2 server can
//! be installed here (Debian packages none), so these answers stand in for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use keel_core::parquet_io::read_samples;
use keel_core::schema::{Metrics, Sample};

const TOKEN: &str = "s3cret-read-token";

/// How the server misbehaves.
#[derive(Debug, Clone, Copy)]
enum Script {
    /// Answers every query from the fixtures.
    Normal,
    /// Answers the first `n` queries with 503, then from the fixtures.
    Fail(usize),
    /// Waits this long before every answer.
    Slow(Duration),
    /// Answers with an error table (HTTP 200, as InfluxDB does for some Flux errors).
    ErrorTable,
}

#[derive(Debug)]
struct Server {
    script: Script,
    requests: AtomicUsize,
    bodies: std::sync::Mutex<Vec<String>>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/influx")
}

async fn query(
    State(st): State<Arc<Server>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = st.requests.fetch_add(1, Ordering::SeqCst);
    st.bodies.lock().unwrap().push(body.clone());
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Token {TOKEN}")) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"code":"unauthorized","message":"unauthorized access"}"#,
        )
            .into_response();
    }
    if uri.query() != Some("org=keel") {
        return (
            StatusCode::NOT_FOUND,
            r#"{"code":"not found","message":"organization name \"other\" not found"}"#,
        )
            .into_response();
    }
    match st.script {
        Script::Fail(k) if n < k => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"code":"unavailable","message":"service unavailable"}"#,
            )
                .into_response()
        }
        Script::Slow(d) => tokio::time::sleep(d).await,
        Script::ErrorTable => {
            let t = std::fs::read_to_string(fixtures().join("error.csv")).unwrap();
            return csv(t);
        }
        _ => {}
    }
    // The window's start, from `range(start: 2026-11-27T10:00:00.000Z, …`.
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let flux = v["query"].as_str().unwrap();
    let start = flux
        .split("range(start: ")
        .nth(1)
        .and_then(|r| r.get(..19))
        .unwrap()
        .replace(':', "-");
    let text = std::fs::read_to_string(fixtures().join(format!("{start}.csv")))
        // InfluxDB answers a window without data with an empty body (a bare line break).
        .unwrap_or_else(|_| "\r\n".into());
    csv(text)
}

fn csv(text: String) -> Response {
    ([("content-type", "text/csv; charset=utf-8")], text).into_response()
}

/// Starts the server on its own thread and runtime; returns its URL and state.
fn start(script: Script) -> (String, Arc<Server>) {
    let st = Arc::new(Server {
        script,
        requests: AtomicUsize::new(0),
        bodies: std::sync::Mutex::new(Vec::new()),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/v2/query", axum::routing::post(query))
        .with_state(Arc::clone(&st));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (url, st)
}

fn import(url: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel-trainer"))
        .args([
            "import", "influx", "--url", url, "--org", "keel", "--bucket", "fleet",
        ])
        .args([
            "--start",
            "2026-11-27T10:00:00Z",
            "--stop",
            "2026-11-27T10:03:30Z",
        ])
        .args(["--window", "1m", "--backoff", "10ms"])
        .arg("-o")
        .arg(out)
        .args(extra)
        .env_remove("KEEL_INFLUX_TOKEN")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The rows the fixtures hold, merged by (time, host, VM), in output order.
fn expected() -> Vec<Sample> {
    let t0 = 1_795_773_600_000; // 2026-11-27T10:00:00Z
    let row = |s: i64, host: &str, vm: Option<&str>, f: &dyn Fn(&mut Metrics)| {
        let mut m = Metrics::default();
        f(&mut m);
        Sample {
            ts_ms: t0 + s * 1000,
            host_id: Some(host.into()),
            vm_id: vm.map(Into::into),
            metrics: m,
        }
    };
    let h = |u: f64, st: f64, mem: f64, psi: Option<f64>| {
        move |m: &mut Metrics| {
            m.cpu_util = Some(u);
            m.cpu_steal = Some(st);
            m.mem_used_mib = Some(mem);
            m.psi_cpu_some = psi;
        }
    };
    let v = |u: f64, mem: f64| {
        move |m: &mut Metrics| {
            m.cpu_util = Some(u);
            m.mem_used_mib = Some(mem);
        }
    };
    vec![
        row(10, "hv01", None, &h(0.25, 0.01, 2048.0, None)),
        row(10, "hv01", Some("5f0c-v1"), &v(0.5, 512.0)),
        // 10:00:20: a gap on every series.
        row(30, "hv01", None, &h(0.5, 0.02, 2050.0, None)),
        row(30, "hv01", Some("5f0c-v1"), &v(0.6, 512.0)),
        // hv02 starts late.
        row(30, "hv02", None, &h(0.1, 0.0, 1024.0, None)),
        // psi_cpu_some starts late.
        row(40, "hv01", None, &h(0.75, 0.0, 2051.0, Some(0.031))),
        row(40, "hv01", Some("5f0c-v1"), &v(0.7, 513.5)),
        row(40, "hv01", Some("5f0c-v2"), &v(0.9, 256.0)),
        row(40, "hv02", None, &h(0.2, 0.0, 1025.0, None)),
        // hv01's collector restarted with a new VM set; the 10:01:10 row comes twice.
        row(70, "hv01", None, &h(0.3, 0.01, 2060.0, Some(0.02))),
        row(80, "hv01", None, &h(0.35, 0.01, 2061.0, Some(0.02))),
        row(80, "hv01", Some("5f0c-v3"), &v(0.4, 4096.0)),
        // 10:02:00..10:03:00: nothing at all; then hv02 alone, cpu_steal absent.
        row(190, "hv02", None, &|m: &mut Metrics| {
            m.cpu_util = Some(0.15);
            m.mem_used_mib = Some(1030.0);
        }),
    ]
}

#[test]
fn influx_import_pivots_merges_and_writes_canonical_parquet() {
    let (url, st) = start(Script::Normal);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.parquet");
    let o = import(&url, &out, &["--token", TOKEN]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("13 rows, 2 hosts, 3 VMs")
            && stdout.contains("4 duplicates and 0 conflicting"),
        "{stdout}"
    );
    let got = read_samples(&out, None).unwrap();
    assert_eq!(got.samples, expected());
    assert!(got
        .inventory
        .source
        .as_deref()
        .is_some_and(|s| s.contains("InfluxDB 2") && s.contains("fleet")));
    // One query per window, each with the window's range and the canonical filter.
    let bodies = st.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 4);
    let q: serde_json::Value = serde_json::from_str(&bodies[3]).unwrap();
    let flux = q["query"].as_str().unwrap();
    assert!(
        flux.contains("range(start: 2026-11-27T10:03:00.000Z, stop: 2026-11-27T10:03:30.000Z)"),
        "{flux}"
    );
    assert!(flux.contains("pivot(rowKey: [\"_time\"]"), "{flux}");
    assert_eq!(q["dialect"]["annotations"][0], "datatype");

    // The rest of the trainer reads it unchanged.
    let s = Command::new(env!("CARGO_BIN_EXE_keel-trainer"))
        .args(["summary", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", stderr(&s));
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["rows"].as_u64(), Some(13), "{v}");
}

#[test]
fn influx_import_filters_hosts_and_reads_the_token_file() {
    let (url, st) = start(Script::Normal);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let out = dir.path().join("hv02.parquet");
    let o = import(
        &url,
        &out,
        &["--token-file", token.to_str().unwrap(), "--hosts", "hv02"],
    );
    // The fixtures ignore the filter; the Flux carries it.
    assert!(o.status.success(), "{}", stderr(&o));
    let bodies = st.bodies.lock().unwrap().clone();
    assert!(
        bodies[0].contains("r.host == \\\"hv02\\\""),
        "{}",
        bodies[0]
    );
}

#[test]
fn wrong_token_is_a_clear_error_and_writes_nothing() {
    let (url, st) = start(Script::Normal);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.parquet");
    let o = import(&url, &out, &["--token", "wrong", "--retries", "5"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("HTTP 401")
            && err.contains("check the token")
            && err.contains("Flux query on")
            && err.contains("2026-11-27T10:00:00.000Z"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the token is not printed: {err}");
    // Not retried, nothing left behind.
    assert_eq!(st.requests.load(Ordering::SeqCst), 1);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let (url, st) = start(Script::Fail(3));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.parquet");
    let o = import(&url, &out, &["--token", TOKEN, "--retries", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(st.requests.load(Ordering::SeqCst), 4 + 3);
    assert_eq!(read_samples(&out, None).unwrap().samples, expected());
}

#[test]
fn timeouts_give_up_naming_the_query_and_write_nothing() {
    let (url, st) = start(Script::Slow(Duration::from_secs(3)));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.parquet");
    let o = import(
        &url,
        &out,
        &["--token", TOKEN, "--retries", "1", "--timeout", "200ms"],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("failed after 2 attempts")
            && err.contains(
                "bucket \"fleet\" for 2026-11-27T10:00:00.000Z..2026-11-27T10:01:00.000Z"
            ),
        "{err}"
    );
    assert_eq!(st.requests.load(Ordering::SeqCst), 2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn error_tables_and_wrong_orgs_are_reported() {
    let (url, _) = start(Script::ErrorTable);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.parquet");
    let o = import(&url, &out, &["--token", TOKEN]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("response line 5") && err.contains("no streaming data"),
        "{err}"
    );
    let (url, _) = start(Script::Normal);
    let o = Command::new(env!("CARGO_BIN_EXE_keel-trainer"))
        .args([
            "import", "influx", "--url", &url, "--org", "other", "--bucket", "b",
        ])
        .args([
            "--start",
            "2026-11-27T10:00:00Z",
            "--stop",
            "2026-11-27T10:01:00Z",
        ])
        .args(["--token", TOKEN, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("HTTP 404"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
