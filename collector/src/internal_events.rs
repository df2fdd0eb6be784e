//! Self-metrics: the collector's own counters, and the notable events that move them.
//!
//! Each event is a struct whose `emit()` logs it and increments the matching counter (vector's
//! `internal_events`). [`Stats`] is shared by the tasks; [`Stats::snapshot`] is logged
//! periodically, at shutdown, and written to InfluxDB as the `keel_collector` measurement.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The collector's counters (monotonic since start).
#[derive(Debug, Default)]
pub struct Stats {
    /// Collection rounds completed.
    pub rounds: AtomicU64,
    /// Canonical rows (host + VM) taken.
    pub samples_taken: AtomicU64,
    /// Rows written to finished Parquet files.
    pub parquet_rows_written: AtomicU64,
    /// Parquet files finished.
    pub parquet_files: AtomicU64,
    /// Lines acknowledged by InfluxDB (2xx).
    pub influx_lines_sent: AtomicU64,
    /// Lines written to the spool (every line is, before it is sent).
    pub influx_lines_spooled: AtomicU64,
    /// Lines dropped because the in-memory queue was full (no longer used: lines go straight
    /// to the spool; kept so the `keel_collector` fields stay the same).
    pub dropped_queue: AtomicU64,
    /// Lines dropped at the spool's byte cap.
    pub dropped_spool: AtomicU64,
    /// Lines the database rejected (400/422/other 4xx; retrying would not help).
    pub dropped_rejected: AtomicU64,
    /// Source read failures (a file or a libvirt call; timeouts included).
    pub source_errors: AtomicU64,
    /// libvirt calls that missed their deadline (each one also ended the helper process).
    pub source_timeouts: AtomicU64,
    /// Starts of the libvirt helper process after the first (it died, hung, or was killed).
    pub helper_restarts: AtomicU64,
}

/// Names of the counters, in [`Stats::snapshot`] order (the fields of the `keel_collector`
/// measurement).
pub const COUNTER_NAMES: [&str; 12] = [
    "rounds",
    "samples_taken",
    "parquet_rows_written",
    "parquet_files",
    "influx_lines_sent",
    "influx_lines_spooled",
    "dropped_queue",
    "dropped_spool",
    "dropped_rejected",
    "source_errors",
    "source_timeouts",
    "helper_restarts",
];

/// A point-in-time copy of [`Stats`], as `(name, value)` pairs in [`COUNTER_NAMES`] order.
pub type Snapshot = [(&'static str, u64); COUNTER_NAMES.len()];

impl Stats {
    fn counters(&self) -> [&AtomicU64; COUNTER_NAMES.len()] {
        [
            &self.rounds,
            &self.samples_taken,
            &self.parquet_rows_written,
            &self.parquet_files,
            &self.influx_lines_sent,
            &self.influx_lines_spooled,
            &self.dropped_queue,
            &self.dropped_spool,
            &self.dropped_rejected,
            &self.source_errors,
            &self.source_timeouts,
            &self.helper_restarts,
        ]
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> Snapshot {
        let c = self.counters();
        std::array::from_fn(|i| (COUNTER_NAMES[i], c[i].load(Relaxed)))
    }

    /// Logs the counters at INFO.
    pub fn log(&self, why: &str) {
        let s = self.snapshot();
        tracing::info!(
            rounds = s[0].1,
            samples_taken = s[1].1,
            parquet_rows_written = s[2].1,
            parquet_files = s[3].1,
            influx_lines_sent = s[4].1,
            influx_lines_spooled = s[5].1,
            dropped_queue = s[6].1,
            dropped_spool = s[7].1,
            dropped_rejected = s[8].1,
            source_errors = s[9].1,
            source_timeouts = s[10].1,
            helper_restarts = s[11].1,
            "Collector counters ({why})."
        );
    }
}

/// The database rejected a batch for good.
#[derive(Debug)]
pub struct InfluxRejected<'a> {
    /// HTTP status.
    pub status: u16,
    /// Lines in the batch.
    pub lines: u64,
    /// The server's message.
    pub text: &'a str,
}

impl InfluxRejected<'_> {
    /// Logs and counts.
    pub fn emit(&self, stats: &Stats) {
        stats.dropped_rejected.fetch_add(self.lines, Relaxed);
        tracing::error!(status = self.status, lines = self.lines, message = %self.text, "InfluxDB rejected a batch; dropping it (retrying would not help).");
    }
}

/// Lines written to the spool.
#[derive(Debug)]
pub struct Spooled {
    /// Lines.
    pub lines: u64,
    /// Lines dropped at the cap to make room.
    pub dropped: u64,
}

impl Spooled {
    /// Logs and counts.
    pub fn emit(&self, stats: &Stats) {
        stats.influx_lines_spooled.fetch_add(self.lines, Relaxed);
        stats.dropped_spool.fetch_add(self.dropped, Relaxed);
        tracing::debug!(lines = self.lines, "Round spooled to disk.");
    }
}

/// Lines acknowledged by the database.
#[derive(Debug)]
pub struct Delivered {
    /// Lines.
    pub lines: u64,
}

impl Delivered {
    /// Counts (debug log).
    pub fn emit(&self, stats: &Stats) {
        stats.influx_lines_sent.fetch_add(self.lines, Relaxed);
        tracing::debug!(lines = self.lines, "Batch delivered.");
    }
}

/// A Parquet file was finished.
#[derive(Debug)]
pub struct ParquetFileWritten<'a> {
    /// The file.
    pub path: &'a std::path::Path,
    /// Rows in it.
    pub rows: u64,
}

impl ParquetFileWritten<'_> {
    /// Logs and counts.
    pub fn emit(&self, stats: &Stats) {
        stats.parquet_files.fetch_add(1, Relaxed);
        stats.parquet_rows_written.fetch_add(self.rows, Relaxed);
        tracing::info!(path = %self.path.display(), rows = self.rows, "Parquet file written.");
    }
}

/// The database stopped accepting writes (the first failure of an outage).
#[derive(Debug)]
pub struct InfluxOutageBegan<'a> {
    /// Why the first request failed.
    pub reason: &'a str,
    /// Sealed batches in the spool at that moment.
    pub spooled_batches: usize,
}

impl InfluxOutageBegan<'_> {
    /// Logs (the counters move with each spooled line, not here).
    pub fn emit(&self, _stats: &Stats) {
        tracing::warn!(
            reason = self.reason,
            spooled_batches = self.spooled_batches,
            "InfluxDB write failed; outage begun, keeping every line in the spool and retrying with back-off."
        );
    }
}

/// The database accepted a write again after an outage.
#[derive(Debug)]
pub struct InfluxOutageEnded {
    /// How long the outage lasted.
    pub seconds: f64,
    /// Requests that failed during it.
    pub failed_requests: u64,
    /// Sealed batches still to replay.
    pub backlog_batches: usize,
    /// Bytes still to replay.
    pub backlog_bytes: u64,
}

impl InfluxOutageEnded {
    /// Logs.
    pub fn emit(&self, stats: &Stats) {
        tracing::info!(
            outage_s = self.seconds,
            failed_requests = self.failed_requests,
            backlog_batches = self.backlog_batches,
            backlog_bytes = self.backlog_bytes,
            dropped_spool = stats.dropped_spool.load(Relaxed),
            "InfluxDB is accepting writes again; outage ended, replaying the spool."
        );
    }
}

/// The spool was sent in full after an outage (or after a start with a non-empty spool).
#[derive(Debug)]
pub struct SpoolReplayed {
    /// Lines delivered since the replay began.
    pub lines: u64,
    /// How long it took.
    pub seconds: f64,
}

impl SpoolReplayed {
    /// Logs.
    pub fn emit(&self, _stats: &Stats) {
        tracing::info!(
            lines = self.lines,
            seconds = self.seconds,
            "Spool replayed; the database is up to date."
        );
    }
}
