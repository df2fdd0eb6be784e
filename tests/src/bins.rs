//! Paths to the workspace's binaries for tests that spawn them.
//!
//! Integration tests of `keel-tests` cannot use `CARGO_BIN_EXE_*` for another package's binary,
//! so the binary is looked up beside the test executable (`target/<profile>/`) after
//! `cargo build -p NAME --bin NAME` (once per test process: a no-op when it is fresh, and it keeps
//! a test run with `-p keel-tests` alone from using a stale binary).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Binaries already built by this process; the lock also serialises builds between threads.
static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The path of workspace binary `name`, building it if needed.
///
/// # Panics
/// If the binary cannot be found or built (the message says how to build it).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let path = dir.join(name);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = dir.file_name().and_then(|p| p.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(cargo);
        // Each of Keel's binaries is named after its package.
        cmd.args(["build", "-q", "-p", name, "--bin", name]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(
            status.success() && path.exists(),
            "cannot build {name}: run `cargo build -p {name} --bin {name}` (looked for {})",
            path.display()
        );
        built.push(name.to_owned());
    }
    path
}
