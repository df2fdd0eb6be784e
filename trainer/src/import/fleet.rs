//! What the two fleet importers share: arguments, time windows, the row table of one window,
//! HTTP with retries, and the loop that writes the canonical Parquet file.
//!
//! A fleet's collectors write their canonical rows to a time-series database as two
//! measurements (see `keel-collector`'s `sinks/influx/encode.rs`): `host` (tag `host`) and `vm`
//! (tags `host`, `vm`), one field per canonical metric column. An import reads them back for
//! `[--start, --stop)`:
//! - **paged by time window** (`--window`, default 1 h): one query per window, its rows merged,
//!   sorted and appended to the output before the next query, so memory depends on the window
//!   and the fleet's size, never on the length of the range;
//! - **merged by row key** `(ts, host, vm)`: a metric absent from a row is null; a point the
//!   database returns twice (a duplicate write, a series split across tables or blocks) is kept
//!   once and counted; two different values for one key and metric keep the first and are counted
//!   as conflicts;
//! - **retried**: transport errors, timeouts (`--timeout`), HTTP 429 and 5xx are retried
//!   `--retries` times with exponential back-off from `--backoff`; then the import fails with an
//!   error naming the query. HTTP 401/403 (a wrong token) and other 4xx fail at once;
//! - **atomic**: rows go through [`SampleWriter`] (temporary file, renamed on success), so a
//!   failed import leaves nothing at the output path.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use keel_core::inventory::Inventory;
use keel_core::parquet_io::{SampleWriter, WriteOptions};
use keel_core::schema::{Metrics, Sample, METRIC_COLUMNS};
use tracing::{info, warn};

/// Measurement (InfluxDB) and series-name prefix (Prometheus-style stores) of host rows.
pub const M_HOST: &str = "host";
/// Measurement and series-name prefix of VM rows.
pub const M_VM: &str = "vm";
/// Tag naming the host.
pub const TAG_HOST: &str = "host";
/// Tag naming the VM.
pub const TAG_VM: &str = "vm";

/// Arguments every fleet importer takes.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Database URL, e.g. `http://127.0.0.1:8086`.
    #[arg(long)]
    pub url: String,
    /// First instant (inclusive): RFC 3339 (`2026-11-27T10:00:00Z`) or milliseconds since the epoch.
    #[arg(long, value_parser = parse_instant)]
    pub start: i64,
    /// Last instant (exclusive), same forms as `--start`.
    #[arg(long, value_parser = parse_instant)]
    pub stop: i64,
    /// Only these hosts (comma-separated or repeated) [default: every host].
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Output Parquet file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Time span of one query; memory grows with it, not with the range.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub window: Duration,
    /// Time limit of one HTTP request (connect, answer and body).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Retries of a failed request (transport error, timeout, HTTP 429 or 5xx).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// First back-off between retries; doubles each retry, at most 30 s.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub backoff: Duration,
    /// zstd compression level (1..=22).
    #[arg(long, default_value_t = 3)]
    pub zstd_level: i32,
}

/// Why a fleet import failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The arguments cannot describe an import.
    #[error("{0}")]
    Args(String),
    /// The database refused the credentials.
    #[error(
        "{query}: HTTP {status}: the database refused the credentials (check the token): {body}"
    )]
    Auth {
        /// The query.
        query: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        body: String,
    },
    /// The database rejected the query (a 4xx other than 401, 403 and 429).
    #[error("{query}: HTTP {status}: {body}")]
    Rejected {
        /// The query.
        query: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        body: String,
    },
    /// Every attempt failed with a retriable error.
    #[error("{query}: failed after {attempts} attempts, last: {reason}")]
    GaveUp {
        /// The query.
        query: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// The answer is not what the API documents.
    #[error("{query}: response line {line}: {message}")]
    Parse {
        /// The query.
        query: String,
        /// 1-based line of the response body.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The range holds no canonical row.
    #[error("no host or VM rows between {start} and {stop}{hosts} (check the URL, bucket, hosts and range)")]
    Empty {
        /// Start (RFC 3339).
        start: String,
        /// Stop (RFC 3339).
        stop: String,
        /// The host filter, if any, as text.
        hosts: String,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Write(#[from] keel_core::Error),
}

/// Result of the fleet importers.
pub type Result<T, E = FleetError> = std::result::Result<T, E>;

/// Parses `--start`/`--stop`: RFC 3339 or integer milliseconds since the epoch.
///
/// # Errors
/// Text that is neither.
pub fn parse_instant(s: &str) -> std::result::Result<i64, String> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is neither RFC 3339 nor milliseconds since the epoch: {e}"))
}

/// An instant as RFC 3339 UTC with milliseconds (what Flux and the logs show).
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A half-open time window `[start_ms, stop_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant, ms (inclusive).
    pub start_ms: i64,
    /// Last instant, ms (exclusive).
    pub stop_ms: i64,
}

impl Window {
    /// Whether `ts_ms` falls in the window.
    pub fn contains(&self, ts_ms: i64) -> bool {
        (self.start_ms..self.stop_ms).contains(&ts_ms)
    }
}

/// `[start, stop)` cut into windows of `step_ms` (the last one shorter).
pub fn windows(start_ms: i64, stop_ms: i64, step_ms: i64) -> impl Iterator<Item = Window> {
    let step = step_ms.max(1);
    let mut at = start_ms;
    std::iter::from_fn(move || {
        (at < stop_ms).then(|| {
            let w = Window {
                start_ms: at,
                stop_ms: at.saturating_add(step).min(stop_ms),
            };
            at = w.stop_ms;
            w
        })
    })
}

/// What an import met on the way, for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Values read (one metric of one row).
    pub points: u64,
    /// Values returned again for a key and metric already set, with the same value.
    pub duplicates: u64,
    /// Values returned again for a key and metric already set, with a different value (the
    /// first is kept).
    pub conflicts: u64,
    /// Series that are not canonical rows (breakdowns, extra labels) and were skipped.
    pub skipped_series: u64,
    /// Values outside the window they were asked for (dropped: the neighbouring window has them).
    pub outside: u64,
    /// Values that are not finite numbers (dropped).
    pub non_finite: u64,
}

/// Row key: time, host, VM (`None` for a host row). The order is the output order: time, then
/// host, then the host row before its VMs.
type Key = (i64, String, Option<String>);

/// The rows of one window, merged by key.
#[derive(Debug, Default)]
pub struct Rows {
    map: BTreeMap<Key, Metrics>,
    /// Counters, kept across windows.
    pub counters: Counters,
}

impl Rows {
    /// Sets metric `metric` (index into [`METRIC_COLUMNS`]) of the row `(ts_ms, host, vm)`.
    pub fn put(&mut self, ts_ms: i64, host: &str, vm: Option<&str>, metric: usize, v: f64) {
        if !v.is_finite() {
            self.counters.non_finite += 1;
            return;
        }
        self.counters.points += 1;
        let m = self
            .map
            .entry((ts_ms, host.to_owned(), vm.map(str::to_owned)))
            .or_default();
        match m.get(metric) {
            None => m.set(metric, Some(v)),
            Some(old) if old.to_bits() == v.to_bits() => self.counters.duplicates += 1,
            Some(_) => self.counters.conflicts += 1,
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Takes the rows out in key order, leaving the counters.
    pub fn take(&mut self) -> Vec<Sample> {
        std::mem::take(&mut self.map)
            .into_iter()
            .map(|((ts_ms, host, vm_id), metrics)| Sample {
                ts_ms,
                host_id: Some(host),
                vm_id,
                metrics,
            })
            .collect()
    }
}

/// The index of a canonical metric column by name.
pub fn metric_index(name: &str) -> Option<usize> {
    METRIC_COLUMNS.iter().position(|c| *c == name)
}

/// How requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First back-off.
    pub backoff: Duration,
    /// Time limit of one request.
    pub timeout: Duration,
}

/// Longest back-off between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How one attempt ended.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Done.
    Done(T),
    /// Worth another try (transport error, timeout, 429, 5xx); the reason.
    Retry(String),
    /// Final.
    Fail(FleetError),
}

/// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
///
/// # Errors
/// The attempt's own error, or [`FleetError::GaveUp`] naming `query`.
pub async fn with_retries<T, F, Fut>(query: &str, policy: RetryPolicy, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut wait = policy.backoff;
    let mut n = 0;
    loop {
        n += 1;
        let reason = match tokio::time::timeout(policy.timeout, attempt()).await {
            Ok(Attempt::Done(v)) => return Ok(v),
            Ok(Attempt::Fail(e)) => return Err(e),
            Ok(Attempt::Retry(r)) => r,
            Err(_) => format!("no complete answer within {:?}", policy.timeout),
        };
        if n > policy.retries {
            return Err(FleetError::GaveUp {
                query: query.to_owned(),
                attempts: n,
                reason,
            });
        }
        warn!(attempt = n, %reason, retry_in = ?wait, query, "Query failed; retrying.");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

/// Sends a request and reads the whole body, classifying the outcome for [`with_retries`].
pub async fn send(query: &str, req: reqwest::RequestBuilder) -> Attempt<String> {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(error_chain(&e)),
    };
    let status = resp.status().as_u16();
    let body = match resp.text().await {
        Ok(b) => b,
        Err(e) => return Attempt::Retry(format!("reading the answer: {}", error_chain(&e))),
    };
    match status {
        200..=299 => Attempt::Done(body),
        401 | 403 => Attempt::Fail(FleetError::Auth {
            query: query.to_owned(),
            status,
            body: short(&body),
        }),
        429 | 500..=599 => Attempt::Retry(format!("HTTP {status}: {}", short(&body))),
        _ => Attempt::Fail(FleetError::Rejected {
            query: query.to_owned(),
            status,
            body: short(&body),
        }),
    }
}

/// The first 300 characters of a server message, on one line.
fn short(body: &str) -> String {
    let one_line: String = body.trim().replace(['\r', '\n'], " ");
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// An error and its causes on one line (reqwest's `Display` alone says "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A database the fleet importers read.
pub(super) trait Source {
    /// Reads window `w` into `rows`.
    async fn fetch(&self, w: Window, rows: &mut Rows) -> Result<()>;
    /// Where the data comes from, for the inventory's `source`.
    fn describe(&self) -> String;
}

/// What a fleet import wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSummary {
    /// The output file.
    pub path: PathBuf,
    /// Rows written.
    pub rows: usize,
    /// Distinct hosts.
    pub hosts: usize,
    /// Distinct VMs.
    pub vms: usize,
    /// What was met on the way.
    pub counters: Counters,
}

impl std::fmt::Display for FleetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counters;
        write!(
            f,
            "wrote {}: {} rows, {} hosts, {} VMs ({} values; {} duplicates and {} conflicting \
             values dropped, {} non-canonical series skipped)",
            self.path.display(),
            self.rows,
            self.hosts,
            self.vms,
            c.points,
            c.duplicates,
            c.conflicts,
            c.skipped_series
        )
    }
}

/// Checks the arguments shared by both importers.
pub(super) fn check(args: &FleetArgs) -> Result<()> {
    if args.start >= args.stop {
        return Err(FleetError::Args(format!(
            "--start {} is not before --stop {}",
            rfc3339(args.start),
            rfc3339(args.stop)
        )));
    }
    if args.window.as_millis() == 0 {
        return Err(FleetError::Args("--window must be at least 1 ms".into()));
    }
    if !(1..=22).contains(&args.zstd_level) {
        return Err(FleetError::Args(format!(
            "--zstd-level {} is not in 1..=22",
            args.zstd_level
        )));
    }
    if args.hosts.iter().any(String::is_empty) {
        return Err(FleetError::Args("--hosts has an empty name".into()));
    }
    Ok(())
}

/// The retry policy the arguments give.
pub(super) fn policy(args: &FleetArgs) -> RetryPolicy {
    RetryPolicy {
        retries: args.retries,
        backoff: args.backoff,
        timeout: args.timeout,
    }
}

/// Reads every window of `args` from `source` and writes the rows to `args.output`.
///
/// The output file is created once the first window has answered, and renamed into place only
/// once every window has; on any error nothing is left at the output path.
///
/// # Errors
/// The source's errors, [`FleetError::Empty`], or a write error.
pub(super) fn import<S: Source>(args: &FleetArgs, source: &S) -> Result<FleetSummary> {
    check(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| keel_core::Error::Io {
            path: PathBuf::from("<tokio runtime>"),
            source,
        })?;
    let step = i64::try_from(args.window.as_millis()).unwrap_or(i64::MAX);
    let n = windows(args.start, args.stop, step).count() as u64;
    let bar = ProgressBar::new(n).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} windows, {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    info!(source = %source.describe(), start = %rfc3339(args.start), stop = %rfc3339(args.stop),
          windows = n, "Import started.");
    let mut rows = Rows::default();
    let mut writer: Option<SampleWriter> = None;
    let mut hosts = std::collections::BTreeSet::new();
    let mut vms = std::collections::BTreeSet::new();
    for w in windows(args.start, args.stop, step) {
        rt.block_on(source.fetch(w, &mut rows))?;
        let batch = rows.take();
        if !batch.is_empty() {
            if writer.is_none() {
                writer = Some(create(&args.output, source, args.zstd_level)?);
            }
            let wr = writer.as_mut().expect("created above");
            for s in &batch {
                if let Some(h) = &s.host_id {
                    if !hosts.contains(h) {
                        hosts.insert(h.clone());
                    }
                }
                if let Some(v) = &s.vm_id {
                    if !vms.contains(v) {
                        vms.insert(v.clone());
                    }
                }
            }
            wr.write(&batch)?;
            bar.set_message(format!("{} rows", wr.rows()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let Some(writer) = writer else {
        return Err(FleetError::Empty {
            start: rfc3339(args.start),
            stop: rfc3339(args.stop),
            hosts: if args.hosts.is_empty() {
                String::new()
            } else {
                format!(" for hosts {}", args.hosts.join(","))
            },
        });
    };
    let total = writer.rows();
    let path = writer.finish()?;
    let summary = FleetSummary {
        path,
        rows: total,
        hosts: hosts.len(),
        vms: vms.len(),
        counters: rows.counters,
    };
    info!(
        rows = total,
        hosts = summary.hosts,
        vms = summary.vms,
        duplicates = summary.counters.duplicates,
        conflicts = summary.counters.conflicts,
        "Import finished."
    );
    if summary.counters.conflicts > 0 {
        warn!(
            conflicts = summary.counters.conflicts,
            "The database held different values for one row and metric; the first was kept."
        );
    }
    Ok(summary)
}

fn create<S: Source>(dest: &Path, source: &S, zstd_level: i32) -> Result<SampleWriter> {
    let inventory = Inventory {
        source: Some(source.describe()),
        ..Inventory::default()
    };
    let opts = WriteOptions {
        zstd_level,
        ..WriteOptions::default()
    };
    Ok(SampleWriter::create(dest, &inventory, opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_range_once() {
        let w: Vec<Window> = windows(0, 25, 10).collect();
        assert_eq!(
            w,
            vec![
                Window {
                    start_ms: 0,
                    stop_ms: 10
                },
                Window {
                    start_ms: 10,
                    stop_ms: 20
                },
                Window {
                    start_ms: 20,
                    stop_ms: 25
                },
            ]
        );
        assert_eq!(windows(5, 5, 10).count(), 0);
    }

    #[test]
    fn rows_merge_by_key_and_count_duplicates() {
        let mut r = Rows::default();
        r.put(10, "h", None, 0, 0.5);
        r.put(10, "h", None, 2, 100.0);
        r.put(10, "h", None, 0, 0.5);
        r.put(10, "h", None, 0, 0.7);
        r.put(10, "h", Some("v"), 0, 0.1);
        r.put(5, "h", None, 0, f64::NAN);
        let c = r.counters;
        assert_eq!(
            (c.points, c.duplicates, c.conflicts, c.non_finite),
            (5, 1, 1, 1)
        );
        let s = r.take();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].vm_id, None);
        assert_eq!(s[0].metrics.cpu_util, Some(0.5));
        assert_eq!(s[0].metrics.mem_used_mib, Some(100.0));
        assert_eq!(s[0].metrics.cpu_demand, None);
        assert_eq!(s[1].vm_id.as_deref(), Some("v"));
        assert!(r.is_empty());
    }

    #[test]
    fn instants_parse_both_ways() {
        assert_eq!(parse_instant("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_instant("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert!(parse_instant("yesterday").is_err());
    }
}
