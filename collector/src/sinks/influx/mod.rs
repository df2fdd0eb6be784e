//! The InfluxDB 2 sink: every line goes to the on-disk spool first and is sent from there, in
//! order, and deleted only when the database has acknowledged it.
//!
//! The round loop appends each round's lines to the spool's journal through a [`SpoolWriter`]
//! before the round is counted (so a SIGKILL loses at most the round in progress); the sink task
//! seals the journal into a batch every flush interval (or when it holds `batch_lines`), and
//! sends sealed batches oldest first, splitting on 413 and backing off on retryable failures.
//! At shutdown the journal is sealed and the spool drained until it is empty or the shutdown
//! deadline passes; what is left is replayed by the next start.
//!
//! Layout: [`config`] (settings), [`encode`] (line protocol), [`service`] (one request and the
//! status-code policy), [`spool`] (the journal and the directory of batches).

pub mod config;
pub mod encode;
pub mod service;
pub mod spool;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::internal_events::{
    Delivered, InfluxOutageBegan, InfluxOutageEnded, InfluxRejected, SpoolReplayed, Spooled, Stats,
};
use config::{InfluxSettings, MAX_BACKOFF};
use service::{InfluxService, Outcome};
use spool::Spool;

/// The spool, shared by the round loop (which appends) and the sink task (which seals, sends and
/// deletes). The lock is held only for file operations, never across an await.
type SharedSpool = Arc<Mutex<Spool>>;

fn lock(spool: &SharedSpool) -> MutexGuard<'_, Spool> {
    // A panic while holding this lock leaves a spool whose files are still consistent on disk.
    spool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The round loop's handle on the spool: appends rounds and wakes the sink.
#[derive(Debug, Clone)]
pub struct SpoolWriter {
    spool: SharedSpool,
    /// Wakes the sink task after an append.
    notify: Arc<Notify>,
    stats: Arc<Stats>,
    batch_lines: usize,
}

impl SpoolWriter {
    /// Appends one round's lines to the spool's journal (sealing it once it holds a batch), then
    /// wakes the sink. When the disk refuses, the lines are counted as dropped and logged.
    pub fn push(&self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let mut spool = lock(&self.spool);
        match spool.append(lines) {
            Ok(dropped) => Spooled {
                lines: lines.len() as u64,
                dropped,
            }
            .emit(&self.stats),
            Err(e) => {
                self.stats
                    .dropped_spool
                    .fetch_add(lines.len() as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, lines = lines.len(), "Cannot write to the spool; dropping the round's lines.");
            }
        }
        if spool.journal_lines() >= self.batch_lines {
            if let Err(e) = spool.seal() {
                tracing::error!(error = %e, "Cannot seal the spool's journal; trying again later.");
            }
        }
        drop(spool);
        self.notify.notify_one();
    }
}

/// An outage in progress: since when, and how many requests failed.
#[derive(Debug)]
struct Outage {
    since: Instant,
    failures: u64,
}

/// A replay of the spool after an outage, in progress.
#[derive(Debug)]
struct Replay {
    since: Instant,
    lines: u64,
}

/// The sink task's state.
#[derive(Debug)]
pub struct InfluxSink {
    settings: InfluxSettings,
    service: InfluxService,
    spool: SharedSpool,
    /// Woken by [`SpoolWriter::push`].
    notify: Arc<Notify>,
    stats: Arc<Stats>,
    /// No request before this instant (set after a retryable failure).
    retry_at: Option<Instant>,
    backoff: Duration,
    last_flush: Instant,
    outage: Option<Outage>,
    replay: Option<Replay>,
}

/// What happened to a batch after splitting on 413.
#[derive(Debug, Default)]
struct SplitResult {
    /// Lines not yet delivered because a part hit a retryable failure (in order).
    keep: Vec<String>,
    retry_reason: Option<String>,
    /// The server's `Retry-After` with the retryable failure, if it sent one.
    retry_after: Option<Duration>,
}

impl InfluxSink {
    /// Opens the spool and builds the client.
    ///
    /// # Errors
    /// The spool directory cannot be created or listed; the client cannot be built.
    pub fn new(settings: InfluxSettings, stats: Arc<Stats>) -> Result<Self> {
        let spool = Spool::open(&settings.spool_dir, settings.spool_max_bytes)?;
        let service =
            InfluxService::new(&settings).map_err(|e| crate::Error::Config(e.to_string()))?;
        // Batches left by the previous run are a replay from the start.
        let replay = (!spool.is_empty()).then(|| Replay {
            since: Instant::now(),
            lines: 0,
        });
        Ok(Self {
            settings,
            service,
            spool: Arc::new(Mutex::new(spool)),
            notify: Arc::new(Notify::new()),
            stats,
            retry_at: None,
            backoff: Duration::from_secs(1),
            last_flush: Instant::now(),
            outage: None,
            replay,
        })
    }

    /// The handle the round loop appends through.
    pub fn writer(&self) -> SpoolWriter {
        SpoolWriter {
            spool: Arc::clone(&self.spool),
            notify: Arc::clone(&self.notify),
            stats: Arc::clone(&self.stats),
            batch_lines: self.settings.batch_lines,
        }
    }

    /// The spool (for inspection; do not hold the guard across an await).
    pub fn spool(&self) -> MutexGuard<'_, Spool> {
        lock(&self.spool)
    }

    fn backing_off(&self) -> bool {
        self.retry_at.is_some_and(|t| Instant::now() < t)
    }

    /// Backs off after a retryable failure: the longer of our exponential back-off and the
    /// server's `Retry-After` (Telegraf does the same).
    fn fail(&mut self, reason: &str, retry_after: Option<Duration>) {
        let wait = retry_after.map_or(self.backoff, |a| a.max(self.backoff));
        let (batches, bytes) = {
            let s = self.spool();
            (s.len(), s.bytes())
        };
        match &mut self.outage {
            None => {
                InfluxOutageBegan {
                    reason,
                    spooled_batches: batches,
                }
                .emit(&self.stats);
                self.outage = Some(Outage {
                    since: Instant::now(),
                    failures: 1,
                });
            }
            Some(o) => o.failures += 1,
        }
        tracing::debug!(
            reason,
            retry_in_s = wait.as_secs_f64(),
            retry_after_s = retry_after.map(|a| a.as_secs_f64()),
            spooled_batches = batches,
            spooled_bytes = bytes,
            "InfluxDB write failed; keeping the data and backing off."
        );
        self.retry_at = Some(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// When the next request may be sent, if a back-off is in force.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    fn succeed(&mut self, lines: u64) {
        self.retry_at = None;
        self.backoff = Duration::from_secs(1);
        if let Some(o) = self.outage.take() {
            let (batches, bytes) = {
                let s = self.spool();
                (s.len(), s.bytes())
            };
            InfluxOutageEnded {
                seconds: o.since.elapsed().as_secs_f64(),
                failed_requests: o.failures,
                backlog_batches: batches,
                backlog_bytes: bytes,
            }
            .emit(&self.stats);
            self.replay = Some(Replay {
                since: Instant::now(),
                lines: 0,
            });
        }
        if let Some(r) = &mut self.replay {
            r.lines += lines;
        }
    }

    /// Sends `lines`, splitting on 413 (halves, recursively; a single line that is too large is
    /// rejected). Stops at the first retryable failure and returns what is left.
    async fn send_split(&mut self, lines: Vec<String>) -> SplitResult {
        let mut stack = vec![lines];
        let mut out = SplitResult::default();
        while let Some(batch) = stack.pop() {
            if out.retry_reason.is_some() {
                // Keep order: everything after the failed part stays, in order.
                out.keep.extend(batch);
                continue;
            }
            match self.service.write(&batch).await {
                Outcome::Delivered => Delivered {
                    lines: batch.len() as u64,
                }
                .emit(&self.stats),
                Outcome::TooLarge if batch.len() > 1 => {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    stack.push(second);
                    stack.push(first);
                }
                Outcome::TooLarge => InfluxRejected {
                    status: 413,
                    lines: 1,
                    text: "a single line is larger than the server accepts",
                }
                .emit(&self.stats),
                Outcome::Reject { status, text } => InfluxRejected {
                    status,
                    lines: batch.len() as u64,
                    text: &text,
                }
                .emit(&self.stats),
                Outcome::Retry { reason, after } => {
                    out.retry_reason = Some(reason);
                    out.retry_after = after;
                    out.keep.extend(batch);
                }
            }
        }
        out
    }

    /// Sends sealed batches oldest first until none is left or a send fails.
    async fn drain_spool(&mut self) {
        loop {
            if self.backing_off() {
                return;
            }
            let next = {
                let s = self.spool();
                s.oldest().map(|seq| (seq, s.read(seq)))
            };
            let Some((seq, read)) = next else { break };
            let lines = match read {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "Unreadable spool file; removing it.");
                    _ = self.spool().remove(seq);
                    continue;
                }
            };
            let n = lines.len();
            let res = self.send_split(lines).await;
            match res.retry_reason {
                None => {
                    if let Err(e) = self.spool().remove(seq) {
                        tracing::error!(error = %e, "Cannot remove a delivered spool file.");
                    }
                    self.succeed(n as u64);
                }
                Some(reason) => {
                    if res.keep.len() != n {
                        if let Err(e) = self.spool().replace(seq, &res.keep) {
                            tracing::error!(error = %e, "Cannot rewrite a partly delivered spool file; it will be sent again whole.");
                        }
                    }
                    self.fail(&reason, res.retry_after);
                    return;
                }
            }
        }
        if let Some(r) = self.replay.take() {
            SpoolReplayed {
                lines: r.lines,
                seconds: r.since.elapsed().as_secs_f64(),
            }
            .emit(&self.stats);
        }
    }

    fn seal(&mut self) {
        if let Err(e) = self.spool().seal() {
            tracing::error!(error = %e, "Cannot seal the spool's journal; trying again later.");
        }
    }

    /// One pass: seal the journal if the flush interval passed (or `force`), then send what is
    /// sealed unless a back-off is in force.
    pub async fn step(&mut self, force: bool) {
        if force || self.last_flush.elapsed() >= self.settings.flush_interval {
            self.seal();
            self.last_flush = Instant::now();
        }
        if !self.backing_off() {
            self.drain_spool().await;
        }
    }

    /// Runs until `shutdown`, then seals the journal and drains the spool until `deadline`.
    pub async fn run(mut self, shutdown: CancellationToken, deadline: Duration) {
        let notify = Arc::clone(&self.notify);
        loop {
            // Wake for the next flush, or earlier for a retry still ahead (a retry time already
            // past was handled by the last step; waking for it again would spin).
            let flush_at = self.last_flush + self.settings.flush_interval;
            let wake = match self.retry_at {
                Some(t) if t > Instant::now() => t.min(flush_at),
                _ => flush_at,
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = notify.notified() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
            self.step(false).await;
        }
        // Shutdown: everything is on disk already; seal it and deliver what we can in time.
        self.seal();
        self.retry_at = None;
        let end = Instant::now() + deadline;
        // Only sealed batches can be sent (a journal whose sealing failed stays for next time).
        while self.spool().oldest().is_some() && Instant::now() < end {
            if tokio::time::timeout_at(end, self.drain_spool())
                .await
                .is_err()
            {
                break;
            }
            if self.backing_off() {
                break;
            }
        }
        let (batches, bytes) = {
            let s = self.spool();
            (s.len(), s.bytes())
        };
        if batches > 0 {
            tracing::warn!(
                batches,
                bytes,
                "Unsent batches stay in the spool for the next start."
            );
        }
    }
}
