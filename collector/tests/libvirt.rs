//! The libvirt source across the process boundary: the real `keel-collector-libvirt` against
//! libvirt's built-in test driver (no daemon), and the `keel-collector` binary with a helper
//! that hangs, which must keep sampling, count the timeouts, and map no libvirt or OpenSSL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_collector::config::LibvirtSettings;
use keel_collector::sources::libvirt::LibvirtSource;
use keel_collector::sources::Round;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/libvirt")
        .join(p)
}

fn source(uri: &str) -> LibvirtSource {
    LibvirtSource::new(
        LibvirtSettings {
            uri: uri.into(),
            call_timeout: Duration::from_secs(5),
            helper: env!("CARGO_BIN_EXE_keel-collector-libvirt").into(),
        },
        "/proc".into(),
    )
}

#[tokio::test]
async fn test_driver_gives_rows_by_uuid_with_rates() {
    let mut s = source("test:///default");
    let mut r0 = Round::default();
    s.poll(&mut r0, "h").await;
    assert_eq!(
        r0.samples.len(),
        1,
        "test:///default has one running domain"
    );
    let uuid = r0.samples[0].vm_id.clone().unwrap();
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert!(r0.samples[0].metrics.mem_used_mib.unwrap() > 0.0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut r1 = Round::default();
    s.poll(&mut r1, "h").await;
    let m = r1.samples[0].metrics;
    // The test driver's CPU time grows with wall time: utilisation is a finite fraction.
    let u = m.cpu_util.expect("rate on the second round");
    assert!(u.is_finite() && u >= 0.0, "{u}");
    assert_eq!(m.cpu_delay, None, "the test driver has no QEMU process");
    assert_eq!(
        r1.details[0].measurement,
        keel_collector::sources::libvirt::M_VM_LIBVIRT
    );
    assert_eq!((s.spawns(), s.take_errors(), s.take_timeouts()), (1, 0, 0));
}

#[tokio::test]
async fn custom_node_gives_one_row_per_running_domain_keyed_by_uuid() {
    let mut s = source(&format!("test://{}", fixture("node.xml").display()));
    let mut r0 = Round::default();
    s.poll(&mut r0, "h").await;
    let mut ids: Vec<_> = r0
        .samples
        .iter()
        .map(|x| x.vm_id.clone().unwrap())
        .collect();
    ids.sort();
    // The test driver starts every domain defined in a node file.
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids.contains(&"11111111-2222-3333-4444-555555555501".to_owned()),
        "{ids:?}"
    );
    let web = r0
        .details
        .iter()
        .find(|d| d.tags.iter().any(|(k, v)| *k == "vm_name" && v == "web1"))
        .unwrap();
    assert!(web.fields.contains(&("vcpus", 2.0)), "{:?}", web.fields);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut r1 = Round::default();
    s.poll(&mut r1, "h").await;
    assert_eq!(r1.samples.len(), 3);
    for row in &r1.samples {
        let u = row.metrics.cpu_util.expect("second round has a CPU rate");
        assert!(u.is_finite() && u >= 0.0);
        assert!(row.metrics.mem_used_mib.unwrap() > 0.0);
    }
}

#[tokio::test]
async fn unreachable_uri_gives_no_rows_and_no_panic() {
    let mut s = source("test:///nonexistent/node.xml");
    let mut r = Round::default();
    s.poll(&mut r, "h").await;
    assert!(r.samples.is_empty());
    assert_eq!(s.take_errors(), 1);
    // The helper stays up (the error was libvirt's, not the helper's).
    s.poll(&mut r, "h").await;
    assert_eq!((s.spawns(), s.take_errors()), (1, 1));
}

/// Shared objects mapped by a process.
fn mapped_libs(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains(".so"))
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[test]
fn collector_keeps_sampling_through_a_hung_libvirt_call_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("pq");
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "interval = \"500ms\"\n[parquet]\ndir = {:?}\nrotate = \"1h\"\n\
             [libvirt]\nenabled = true\nuri = \"u-hang\"\ncall_timeout = \"200ms\"\nhelper = {:?}\n",
            pq.display().to_string(),
            fixture("fake-helper.sh").display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel-collector"))
        .args(["--config", cfg.to_str().unwrap(), "--host-id", "it-hang"])
        .args(["--duration", "4s"])
        .env("NO_COLOR", "1")
        .env("LOG_FILTER", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id();
    let own = mapped_libs(pid);
    // The helper is killed after each hung call and started again the next round, so it is
    // watched over the whole run: never two at once, and seen running.
    let (mut polls, mut with_helper, mut most) = (0u32, 0u32, 0usize);
    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        assert!(Instant::now() < deadline, "collector did not stop");
        let kids = children(pid).len();
        polls += 1;
        with_helper += u32::from(kids > 0);
        most = most.max(kids);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);

    // The collector process maps neither libvirt nor a TLS library; the helper is its child.
    for bad in ["libvirt", "libssl", "libcrypto", "libgnutls"] {
        assert!(!own.iter().any(|l| l.starts_with(bad)), "{bad} in {own:?}");
    }
    assert_eq!(most, 1, "never more than one helper process");
    assert!(with_helper > 0, "no helper seen in {polls} polls");

    // Every round has the host row and the healthy VM's row; the hung VM has none.
    let files: Vec<PathBuf> = std::fs::read_dir(&pq)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let rows: Vec<_> = files
        .iter()
        .flat_map(|f| {
            keel_core::parquet_io::read_samples(f, None)
                .unwrap()
                .samples
        })
        .collect();
    let host_rounds = rows.iter().filter(|r| r.vm_id.is_none()).count();
    let ok_rounds = rows
        .iter()
        .filter(|r| r.vm_id.as_deref() == Some("u-ok"))
        .count();
    assert!(
        host_rounds >= 5,
        "{host_rounds} rounds in 4 s at 500 ms\n{log}"
    );
    assert_eq!(ok_rounds, host_rounds, "{log}");
    assert!(!rows.iter().any(|r| r.vm_id.as_deref() == Some("u-hang")));

    // The counters: timeouts counted (each also an error), and the helper started again.
    let counters = log
        .lines()
        .find(|l| l.contains("counters (shutdown)"))
        .unwrap_or_else(|| panic!("no shutdown counters in\n{log}"));
    let get = |k: &str| -> u64 {
        counters
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {counters}"))
    };
    assert!(get("source_timeouts") >= 2, "{counters}");
    assert!(get("source_errors") >= get("source_timeouts"), "{counters}");
    assert!(get("helper_restarts") >= 1, "{counters}");
    assert!(log.contains("libvirt call timed out"), "{log}");
}
