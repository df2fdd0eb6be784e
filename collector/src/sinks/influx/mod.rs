//! The InfluxDB 2 sink: a bounded in-memory queue, batched writes, and an on-disk spool that
//! keeps whatever the database has not acknowledged, replayed in order when it returns.
//!
//! Order is kept by one rule: a new batch is sent directly only when the spool is empty and no
//! back-off is in force; otherwise it is appended to the spool, and the spool is drained oldest
//! first. At shutdown everything still queued in memory is spooled first (so nothing depends on
//! the last request finishing), then the spool is drained until it is empty or the shutdown
//! deadline passes; what is left is replayed by the next start.
//!
//! Layout: [`config`] (settings), [`encode`] (line protocol), [`service`] (one request and the
//! status-code policy), [`spool`] (the directory of batches).

pub mod config;
pub mod encode;
pub mod service;
pub mod spool;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::buffer::SharedQueue;
use crate::error::Result;
use crate::internal_events::{Delivered, InfluxRejected, Spooled, Stats};
use config::{InfluxSettings, MAX_BACKOFF};
use service::{InfluxService, Outcome};
use spool::Spool;

/// The sink task's state.
#[derive(Debug)]
pub struct InfluxSink {
    settings: InfluxSettings,
    service: InfluxService,
    spool: Spool,
    stats: Arc<Stats>,
    /// No request before this instant (set after a retryable failure).
    retry_at: Option<Instant>,
    backoff: Duration,
    last_flush: Instant,
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
        Ok(Self {
            settings,
            service,
            spool,
            stats,
            retry_at: None,
            backoff: Duration::from_secs(1),
            last_flush: Instant::now(),
        })
    }

    /// The spool (for inspection).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    fn backing_off(&self) -> bool {
        self.retry_at.is_some_and(|t| Instant::now() < t)
    }

    /// Backs off after a retryable failure: the longer of our exponential back-off and the
    /// server's `Retry-After` (Telegraf does the same).
    fn fail(&mut self, reason: &str, retry_after: Option<Duration>) {
        let wait = retry_after.map_or(self.backoff, |a| a.max(self.backoff));
        tracing::warn!(
            reason,
            retry_in_s = wait.as_secs_f64(),
            retry_after_s = retry_after.map(|a| a.as_secs_f64()),
            spooled_batches = self.spool.len(),
            "InfluxDB write failed; keeping the data and backing off."
        );
        self.retry_at = Some(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// When the next request may be sent, if a back-off is in force.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    fn succeed(&mut self) {
        if self.retry_at.take().is_some() {
            tracing::info!("InfluxDB is accepting writes again.");
        }
        self.backoff = Duration::from_secs(1);
    }

    fn spool_push(&mut self, lines: &[String]) {
        match self.spool.push(lines) {
            Ok(dropped) => Spooled {
                lines: lines.len() as u64,
                dropped,
            }
            .emit(&self.stats),
            Err(e) => {
                // The disk refused: these lines are lost; count them with the cap drops.
                self.stats
                    .dropped_spool
                    .fetch_add(lines.len() as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, lines = lines.len(), "Cannot write to the spool; dropping the batch.");
            }
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

    /// Sends spooled batches oldest first until the spool is empty or a send fails.
    async fn drain_spool(&mut self) {
        while let Some(seq) = self.spool.oldest() {
            if self.backing_off() {
                return;
            }
            let lines = match self.spool.read(seq) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "Unreadable spool file; removing it.");
                    _ = self.spool.remove(seq);
                    continue;
                }
            };
            let n = lines.len();
            let res = self.send_split(lines).await;
            match res.retry_reason {
                None => {
                    if let Err(e) = self.spool.remove(seq) {
                        tracing::error!(error = %e, "Cannot remove a delivered spool file.");
                    }
                    self.succeed();
                }
                Some(reason) => {
                    if res.keep.len() != n {
                        if let Err(e) = self.spool.replace(seq, &res.keep) {
                            tracing::error!(error = %e, "Cannot rewrite a partly delivered spool file; it will be sent again whole.");
                        }
                    }
                    self.fail(&reason, res.retry_after);
                    return;
                }
            }
        }
    }

    /// Handles one batch fresh from the queue.
    async fn handle_batch(&mut self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        if !self.spool.is_empty() || self.backing_off() {
            self.spool_push(&lines);
            return;
        }
        let res = self.send_split(lines).await;
        match res.retry_reason {
            None => self.succeed(),
            Some(reason) => {
                self.spool_push(&res.keep);
                self.fail(&reason, res.retry_after);
            }
        }
    }

    /// One pass: write queued lines if a batch is full or the flush interval passed, then try
    /// the spool.
    pub async fn step(&mut self, queue: &SharedQueue<String>, force: bool) {
        let due = force || self.last_flush.elapsed() >= self.settings.flush_interval;
        while queue.len() >= self.settings.batch_lines || (due && !queue.is_empty()) {
            let batch = queue.take(self.settings.batch_lines);
            self.handle_batch(batch).await;
        }
        if due {
            self.last_flush = Instant::now();
        }
        if !self.backing_off() {
            self.drain_spool().await;
        }
    }

    /// Runs until `shutdown`, then spools what is queued and drains the spool until `deadline`.
    pub async fn run(
        mut self,
        queue: SharedQueue<String>,
        shutdown: CancellationToken,
        deadline: Duration,
    ) {
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
                () = queue.notified() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
            self.step(&queue, false).await;
        }
        // Shutdown: persist first, then deliver what we can in time.
        loop {
            let batch = queue.take(self.settings.batch_lines);
            if batch.is_empty() {
                break;
            }
            if self.spool.is_empty() && !self.backing_off() {
                // Try once directly, bounded by the request timeout; keep on failure.
                self.handle_batch(batch).await;
            } else {
                self.spool_push(&batch);
            }
        }
        self.retry_at = None;
        let end = Instant::now() + deadline;
        while !self.spool.is_empty() && Instant::now() < end {
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
        if !self.spool.is_empty() {
            tracing::warn!(
                batches = self.spool.len(),
                bytes = self.spool.bytes(),
                "Unsent batches stay in the spool for the next start."
            );
        }
    }
}
