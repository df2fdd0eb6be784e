//! Paths to the workspace's binaries for tests that spawn them.
//!
//! Integration tests of `keel-tests` cannot use `CARGO_BIN_EXE_*` for another package's binary,
//! so the binary is looked up beside the test executable (`target/<profile>/`) after
//! `cargo build -p NAME --bin NAME` when needed. A binary newer than every source file of the
//! workspace is used as it is: `cargo nextest run --workspace` has just built it (with the
//! workspace's feature set; `cargo build -p NAME` alone resolves other features and would rebuild
//! heavy dependencies such as polars from scratch). A stale or missing one is built, so a test
//! run with `-p keel-tests` alone never uses an old binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

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
    if !built.iter().any(|b| b == name) && !fresh(&path) {
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

/// Whether `bin` exists and is newer than every source file (`.rs`, `.toml`, `.lcc`) of the
/// workspace's crates.
fn fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = [
        "core",
        "lcc",
        "collector",
        "trainer",
        "agent",
        "Cargo.toml",
        "Cargo.lock",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            let skip = p.file_name().is_some_and(|n| n == "target" || n == "fuzz");
            if let (false, Ok(rd)) = (skip, std::fs::read_dir(&p)) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if p
            .extension()
            .is_some_and(|e| e == "rs" || e == "toml" || e == "lcc" || e == "lock")
        {
            if let Ok(m) = meta.modified() {
                newest = newest.max(m);
            }
        }
    }
    newest < built
}
