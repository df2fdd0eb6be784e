//! Harness for Keel's end-to-end tests: fixtures and real servers started on loopback.
//!
//! Layout:
//! - [`bins`]: paths to the workspace's binaries (built on demand when a test runs alone).
//! - [`http`]: a minimal HTTP/1.1 client over `std::net` (GET, percent-encoding) for probing
//!   servers without pulling an HTTP stack into the harness.
//! - [`victoria`]: a real VictoriaMetrics server (Debian `victoria-metrics`) as a child process on
//!   a free 127.0.0.1 port with a temporary data directory; killed on `Drop`.
//! - [`fake_influx`]: a small scripted HTTP server that answers like InfluxDB 2 (status codes,
//!   annotated CSV for Flux queries), for what VictoriaMetrics cannot show: 4xx handling and Flux.
#![warn(missing_docs)]

pub mod bins;
pub mod fake_influx;
pub mod http;
pub mod victoria;

use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; fine for tests on one machine).
///
/// # Panics
/// If no port can be bound on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 for a free port")
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
