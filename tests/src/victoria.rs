//! A real VictoriaMetrics server for tests (Debian package `victoria-metrics`).
//!
//! It accepts the InfluxDB 2 write API (`POST /api/v2/write`), so the collector's InfluxDB sink
//! writes to it unchanged; series are named `{measurement}_{field}` and read back through
//! `/api/v1/export`. The server runs as a child process on a free 127.0.0.1 port with a data
//! directory the caller owns (so a test can stop it and start it again on the same port and
//! data), and is killed on `Drop`. A missing binary is an error with the install command: tests
//! fail, they never skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http;

/// Install instruction shown when the binary is missing.
pub const INSTALL: &str =
    "apt-get install -y victoria-metrics (or run scripts/test.sh, which installs it)";

/// A running server.
#[derive(Debug)]
pub struct VictoriaMetrics {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
}

/// The server binary, if installed.
pub fn binary() -> Option<PathBuf> {
    [
        "/usr/bin/victoria-metrics",
        "/usr/local/bin/victoria-metrics",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

impl VictoriaMetrics {
    /// Starts a server on `port` storing into `data_dir`; waits for `/health`.
    ///
    /// # Errors
    /// The binary is missing (the message has the install command), it does not start, or it is
    /// not healthy within 15 s.
    pub fn start(port: u16, data_dir: &Path) -> Result<Self, String> {
        Self::start_with(port, data_dir, &[])
    }

    /// As [`VictoriaMetrics::start`], with extra server flags (e.g.
    /// `-dedup.minScrapeInterval=1ms`, which keeps one sample per series and millisecond, as a
    /// fleet receiving at-least-once deliveries runs it).
    ///
    /// # Errors
    /// As [`VictoriaMetrics::start`].
    pub fn start_with(port: u16, data_dir: &Path, extra: &[&str]) -> Result<Self, String> {
        let bin =
            binary().ok_or_else(|| format!("victoria-metrics is not installed: {INSTALL}"))?;
        let log = std::fs::File::create(data_dir.with_extension("log"))
            .map_err(|e| format!("creating the server log: {e}"))?;
        let child = Command::new(bin)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data_dir.display()))
            .args([
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-search.disableCache",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting victoria-metrics: {e}"))?;
        let mut vm = Self {
            child: Some(child),
            port,
            data_dir: data_dir.to_path_buf(),
        };
        let healthy = crate::poll_until(Duration::from_secs(15), || {
            matches!(http::get(port, "/health"), Ok((200, ref b)) if b.trim() == "OK").then_some(())
        });
        if healthy.is_none() {
            vm.kill();
            return Err(format!(
                "victoria-metrics on port {port} not healthy within 15 s"
            ));
        }
        Ok(vm)
    }

    /// Base URL for clients.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server gracefully (SIGTERM, so it persists what it acknowledged) and waits.
    pub fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let done = crate::poll_until(Duration::from_secs(20), || c.try_wait().ok().flatten());
            if done.is_none() {
                _ = c.kill();
                _ = c.wait();
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            _ = c.kill();
            _ = c.wait();
        }
    }

    /// Exports series matching a PromQL selector, e.g. `{__name__="host_cpu_util"}`: one JSON
    /// object per series (`metric`, `values`, `timestamps`).
    ///
    /// # Errors
    /// Transport errors, a non-200 status, or a line that is not JSON.
    pub fn export(&self, selector: &str) -> Result<Vec<serde_json::Value>, String> {
        let path = format!("/api/v1/export?match[]={}", http::encode(selector));
        let (status, body) = http::get(self.port, &path).map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("export: HTTP {status}: {body}"));
        }
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l}")))
            .collect()
    }

    /// All timestamps (ms) of series matching `selector`, sorted.
    ///
    /// # Errors
    /// As [`export`](Self::export).
    pub fn timestamps(&self, selector: &str) -> Result<Vec<i64>, String> {
        let mut ts: Vec<i64> = self
            .export(selector)?
            .iter()
            .flat_map(|s| {
                s["timestamps"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(serde_json::Value::as_i64)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        ts.sort_unstable();
        Ok(ts)
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.kill();
    }
}
