//! Throughput and peak memory of `keel-trainer import victoriametrics` for a range and a range
//! ten times longer: memory should not grow with the range (the import pages by `--window`).
//!
//! A real VictoriaMetrics (`/usr/bin/victoria-metrics`, Debian `victoria-metrics`) is started on a
//! free 127.0.0.1 port with a temporary data folder and loaded, through the InfluxDB 2 write API
//! and in the collector's line format (`vm,host=…,vm=… cpu_util=…,cpu_demand=… <ms>`), with the
//! real PlanetLab day in `datasets/planetlab-20110303.parquet` (1,052 VMs × 288 five-minute
//! samples) repeated over `KEEL_BENCH_DAYS` days (default 10), its VMs spread over 50 hosts.
//! The binary is then timed with `/usr/bin/time` importing one day and all the days, with the
//! default one-hour window. It prints rows, wall time, rows/s and peak RSS for each.
//!
//! Run: `cargo bench -p keel-trainer --bench fleet_import`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_core::parquet_io::read_samples;

const HOSTS: usize = 50;
const DAY_MS: i64 = 86_400_000;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        _ = self.0.kill();
        _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter this bench does not take.
    let days: i64 = std::env::var("KEEL_BENCH_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(10);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/planetlab-20110303.parquet");
    let day = read_samples(&data, None)
        .expect("the PlanetLab day")
        .samples;
    let t0 = day.iter().map(|s| s.ts_ms).min().expect("rows");
    let mut vm_index = std::collections::HashMap::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = Server(
        Command::new("/usr/bin/victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!(
                "-storageDataPath={}",
                tmp.path().join("vm").display()
            ))
            .args(["-retentionPeriod=100y", "-search.latencyOffset=0s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics (apt-get install -y victoria-metrics)"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::new();
    rt.block_on(async {
        let t = Instant::now();
        while client.get(format!("{base}/health")).send().await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(15), "server not up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let load = Instant::now();
    let mut lines = 0usize;
    for d in 0..days {
        let mut body = String::new();
        for s in &day {
            let vm = s.vm_id.as_deref().expect("PlanetLab rows are VM rows");
            let n = vm_index.len();
            let i = *vm_index.entry(vm.to_owned()).or_insert(n);
            let (Some(u), Some(c)) = (s.metrics.cpu_util, s.metrics.cpu_demand) else {
                continue;
            };
            _ = writeln!(
                body,
                "vm,host=pl-{:02},vm={vm} cpu_util={u:?},cpu_demand={c:?} {}",
                i % HOSTS,
                s.ts_ms + d * DAY_MS
            );
            lines += 1;
            if body.len() > 4 << 20 {
                post(&rt, &client, &base, std::mem::take(&mut body));
            }
        }
        post(&rt, &client, &base, body);
    }
    println!(
        "loaded {lines} rows ({days} days of {} VMs) in {:.1} s",
        vm_index.len(),
        load.elapsed().as_secs_f64()
    );
    // Wait until the last point is searchable.
    let last = t0 + (days - 1) * DAY_MS + 287 * 300_000;
    rt.block_on(async {
        let t = Instant::now();
        loop {
            let r = client
                .get(format!("{base}/api/v1/export"))
                .query(&[
                    ("match[]", "{__name__=\"vm_cpu_util\"}"),
                    ("start", &format!("{}", last / 1000)),
                ])
                .send()
                .await
                .expect("export")
                .text()
                .await
                .expect("body");
            if r.contains(&last.to_string()) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "data not searchable");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let bin = env!("CARGO_BIN_EXE_keel-trainer");
    for span in [1, days] {
        let out = tmp.path().join(format!("fleet-{span}d.parquet"));
        let o = Command::new("/usr/bin/time")
            .args(["-f", "%e %M"])
            .arg(bin)
            .args(["import", "victoriametrics", "--url", &base])
            .args(["--start", &t0.to_string()])
            .args(["--stop", &(t0 + span * DAY_MS).to_string()])
            .arg("-o")
            .arg(&out)
            .output()
            .expect("/usr/bin/time keel-trainer");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let mut it = err.lines().last().expect("time's line").split_whitespace();
        let secs: f64 = it.next().and_then(|s| s.parse().ok()).expect("seconds");
        let kb: f64 = it.next().and_then(|s| s.parse().ok()).expect("max RSS");
        let no_metrics: &[&str] = &[];
        let rows = read_samples(&out, Some(no_metrics))
            .expect("output")
            .samples
            .len();
        println!(
            "import victoriametrics, {span:>2} day(s): {rows:>9} rows in {secs:>6.2} s = {:>8.0} rows/s, peak RSS {:>6.1} MB",
            rows as f64 / secs,
            kb / 1024.0
        );
    }
}

fn post(rt: &tokio::runtime::Runtime, client: &reqwest::Client, base: &str, body: String) {
    rt.block_on(async {
        let r = client
            .post(format!(
                "{base}/api/v2/write?org=keel&bucket=bench&precision=ms"
            ))
            .body(body)
            .send()
            .await
            .expect("write");
        assert!(r.status().is_success(), "write: HTTP {}", r.status());
    });
}
