//! Settings of the InfluxDB sink (already resolved and checked by [`crate::config`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Secret;

/// Default lines per write request.
pub const DEFAULT_BATCH_LINES: usize = 5000;
/// Default request timeout (Telegraf's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default spool cap: 256 MiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default in-memory queue capacity, in lines.
pub const DEFAULT_QUEUE_LINES: usize = 100_000;
/// Longest back-off between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Resolved InfluxDB sink settings.
#[derive(Debug, Clone)]
pub struct InfluxSettings {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Organisation.
    pub org: String,
    /// Bucket.
    pub bucket: String,
    /// API token (may be empty for servers without auth).
    pub token: Secret,
    /// Lines per request.
    pub batch_lines: usize,
    /// Longest time lines wait in memory before a write.
    pub flush_interval: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Gzip request bodies.
    pub gzip: bool,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool byte cap.
    pub spool_max_bytes: u64,
    /// Ignored: lines go straight to the spool's journal (kept so older files still load).
    pub queue_lines: usize,
}
