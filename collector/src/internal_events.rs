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
    /// Lines written to the spool.
    pub influx_lines_spooled: AtomicU64,
    /// Lines dropped because the in-memory queue was full.
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

/// A point-in-time copy of [`Stats`], as `(name, value)` pairs in a fixed order.
pub type Snapshot = [(&'static str, u64); 12];

impl Stats {
    /// Copies the counters.
    pub fn snapshot(&self) -> Snapshot {
        [
            ("rounds", self.rounds.load(Relaxed)),
            ("samples_taken", self.samples_taken.load(Relaxed)),
            (
                "parquet_rows_written",
                self.parquet_rows_written.load(Relaxed),
            ),
            ("parquet_files", self.parquet_files.load(Relaxed)),
            ("influx_lines_sent", self.influx_lines_sent.load(Relaxed)),
            (
                "influx_lines_spooled",
                self.influx_lines_spooled.load(Relaxed),
            ),
            ("dropped_queue", self.dropped_queue.load(Relaxed)),
            ("dropped_spool", self.dropped_spool.load(Relaxed)),
            ("dropped_rejected", self.dropped_rejected.load(Relaxed)),
            ("source_errors", self.source_errors.load(Relaxed)),
            ("source_timeouts", self.source_timeouts.load(Relaxed)),
            ("helper_restarts", self.helper_restarts.load(Relaxed)),
        ]
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

/// Lines dropped from the full in-memory queue.
#[derive(Debug)]
pub struct QueueOverflow {
    /// Lines dropped this time.
    pub lines: u64,
}

impl QueueOverflow {
    /// Logs and counts.
    pub fn emit(&self, stats: &Stats) {
        let total = stats.dropped_queue.fetch_add(self.lines, Relaxed) + self.lines;
        tracing::warn!(
            lines = self.lines,
            total,
            "In-memory queue full; dropped the oldest lines."
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
        tracing::debug!(lines = self.lines, "Batch spooled to disk.");
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
