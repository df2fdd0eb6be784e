//! Paths to the workspace's binaries for tests that spawn them.
//!
//! Integration tests of `keel-tests` cannot use `CARGO_BIN_EXE_*` for another package's binary,
//! so the binary is looked up beside the test executable (`target/<profile>/`); if it is not
//! there (the test was run with `-p keel-tests` alone), `cargo build --bin NAME` builds it first.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Serialises on-demand builds between tests running in parallel threads.
static BUILD: Mutex<()> = Mutex::new(());

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
    let _guard = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = dir.file_name().and_then(|p| p.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--bin", name]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(
            status.success() && path.exists(),
            "cannot build {name}: run `cargo build --bin {name}` (looked for {})",
            path.display()
        );
    }
    path
}
