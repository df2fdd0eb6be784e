//! The `keel-agent` binary as an operator runs it: `run --config` with the status endpoint,
//! `publish --gen-key`, `publish BUNDLE_DIR` to the running agent, and a graceful stop on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keel-agent");

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(String::from)
}

fn status(addr: SocketAddr) -> Option<serde_json::Value> {
    serde_json::from_str(&get(addr, "/status")?).ok()
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Kills the child if the test fails before stopping it.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            _ = c.kill();
            _ = c.wait();
        }
    }
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

#[test]
fn run_serves_status_adopts_a_published_bundle_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        &d.join("cluster.key"),
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    );
    let out = Command::new(BIN)
        .args(["publish", "--gen-key"])
        .arg(d.join("signing.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(public.len(), 64);
    let (listen, status_addr) = (free_addr(), free_addr());
    std::fs::create_dir(d.join("policy")).unwrap();
    write(
        &d.join("agent.toml"),
        &format!(
            "id = \"hv-test\"\nlisten = \"{listen}\"\ncluster_key_file = \"{}\"\ncapacity = 1000.0\n\
             policy_dir = \"{}\"\nmodels_dir = \"{}\"\npolicy_public_key = \"{public}\"\n\
             status_addr = \"{status_addr}\"\neval_interval_ms = 200\ngossip_interval_ms = 200\n\
             [executor]\nkind = \"dry-run\"\n",
            d.join("cluster.key").display(),
            d.join("policy").display(),
            d.join("policy").display(),
        ),
    );
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(d.join("agent.toml"))
        .env("LOG_FILTER", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(Some(child));
    assert!(
        wait_until(Duration::from_secs(10), || status(status_addr)
            .is_some_and(|s| s["id"] == "hv-test" && !s["role"].is_null())),
        "status endpoint did not come up"
    );
    let html = get(status_addr, "/").unwrap();
    assert!(html.contains("keel-agent hv-test"), "{html}");
    // Publish a signed bundle to the running agent.
    let bundle = d.join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    write(
        &bundle.join("migration.lcc"),
        "a(idle, I) :: ( null <- underloaded(C) then a(underloaded(C), I) ) or a(idle, I)\n\
         a(underloaded(C), I) :: readyToMigrate(N) <= a(overloaded, J)\n",
    );
    let out = Command::new(BIN)
        .arg("publish")
        .arg(&bundle)
        .args(["--bundle-version", "5", "--to", &listen.to_string()])
        .arg("--signing-key-file")
        .arg(d.join("signing.key"))
        .arg("--cluster-key-file")
        .arg(d.join("cluster.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(10), || status(status_addr)
            .is_some_and(|s| s["policy_version"] == 5)),
        "bundle not adopted"
    );
    assert!(d.join("policy/migration.lcc").exists());
    // Graceful stop on SIGTERM.
    let mut child = guard.0.take().unwrap();
    // The shell's builtin `kill` (no procps needed).
    let st = Command::new("sh")
        .args(["-c", "kill -TERM \"$0\"", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let end = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(c) = child.try_wait().unwrap() {
            break c;
        }
        assert!(Instant::now() < end, "agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(code.success(), "{code:?}: {err}");
    assert!(err.contains("Policy bundle adopted"), "{err}");
}

#[test]
fn run_refuses_a_bad_config_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.toml");
    write(&p, "id = \"x\"\ncapacity = 10.0\ncolour = \"blue\"\n");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("colour") && err.contains("agent.toml"),
        "{err}"
    );
}
