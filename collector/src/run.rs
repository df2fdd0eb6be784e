//! The round loop: alignment, one timestamp per round, sinks, self-metrics, shutdown.
//!
//! Rounds are aligned to the interval on the wall clock (a 10 s interval fires at :00, :10, …)
//! so that hosts line up; the waiting itself uses tokio's monotonic clock, and the time between
//! polls (for rates) is measured on the monotonic clock too, so a wall-clock step does not bend
//! a rate. Each round reads the wall clock once and stamps every row with it.
//!
//! A round is written to both outputs before the next one starts: its Parquet rows to the open
//! file's write-ahead log, its lines to the InfluxDB spool's journal. A SIGKILL therefore loses
//! at most the round in progress.
//!
//! Shutdown (the token is cancelled on SIGINT/SIGTERM, after `--duration`, or after the single
//! round of `--once`) finishes the open Parquet file and lets the InfluxDB sink deliver what is
//! spooled until the deadline, then returns the counters.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::error::Result;
use crate::internal_events::Stats;
use crate::sinks::influx::encode;
use crate::sinks::influx::InfluxSink;
use crate::sinks::parquet::ParquetSink;
use crate::sources::cgroup::CgroupSource;
use crate::sources::host::{HostConfig, HostSource};
use crate::sources::libvirt::LibvirtSource;
use crate::sources::Round;

pub use crate::series::M_SELF;

/// Milliseconds since the epoch, now.
pub fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How long to wait from `now_ms` to the next multiple of `interval` (never zero).
pub fn until_next_boundary(now_ms: i64, interval: Duration) -> Duration {
    let iv = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let next = (now_ms.div_euclid(iv) + 1) * iv;
    Duration::from_millis(u64::try_from(next - now_ms).unwrap_or(0))
}

/// All sources of a run.
#[derive(Debug)]
struct Sources {
    host: HostSource,
    cgroup: Option<CgroupSource>,
    libvirt: Option<LibvirtSource>,
}

/// What went wrong in one poll of every source.
#[derive(Debug, Default)]
struct PollErrors {
    /// Failed reads (timeouts included).
    errors: u64,
    /// libvirt calls that missed their deadline.
    timeouts: u64,
    /// libvirt helper starts, in total.
    helper_spawns: u64,
}

impl Sources {
    fn new(s: &Settings) -> Result<Self> {
        Ok(Self {
            host: HostSource::new(HostConfig {
                host_id: s.host_id.clone(),
                proc_root: s.proc_root.clone(),
                sys_root: s.sys_root.clone(),
                net_exclude: s.net_exclude.clone(),
            }),
            cgroup: s
                .cgroup_root
                .clone()
                .map(|r| CgroupSource::new(r, s.proc_root.clone())),
            libvirt: s
                .libvirt
                .clone()
                .map(|l| LibvirtSource::new(l, s.proc_root.clone())),
        })
    }

    /// Polls every source.
    async fn poll(&mut self, round: &mut Round, dt_s: f64, host_id: &str) -> PollErrors {
        self.host.poll(round, dt_s);
        let mut out = PollErrors {
            errors: self.host.take_errors(),
            ..PollErrors::default()
        };
        if let Some(c) = &mut self.cgroup {
            c.poll(round, dt_s, host_id);
        }
        if let Some(l) = &mut self.libvirt {
            l.poll(round, host_id).await;
            out.errors += l.take_errors();
            out.timeouts = l.take_timeouts();
            out.helper_spawns = l.spawns();
        }
        out
    }
}

/// Runs until `shutdown` is cancelled (or `--once` / `--duration` end it). Returns the counters.
///
/// # Errors
/// Sinks that cannot start (an uncreatable directory, a bad InfluxDB URL).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<Arc<Stats>> {
    tracing::debug!(?settings, "Resolved settings.");
    log_start(&settings);
    let stats = Arc::new(Stats::default());
    let mut parquet = settings
        .parquet
        .clone()
        .map(|p| ParquetSink::new(p, Arc::clone(&stats)))
        .transpose()?;
    let tracker = TaskTracker::new();
    let sink_stop = CancellationToken::new();
    let spool = match settings.influx.clone() {
        Some(i) => {
            let sink = InfluxSink::new(i, Arc::clone(&stats))?;
            let w = sink.writer();
            tracker.spawn(sink.run(sink_stop.clone(), settings.shutdown_deadline));
            Some(w)
        }
        None => None,
    };
    tracker.close();

    let mut sources = Sources::new(&settings)?;
    let host_id = settings.host_id.clone();
    let started = Instant::now();
    let end = settings.duration.map(|d| started + d);

    // Prime the counters so that the first real round already has rates.
    let mut prime = Round::default();
    let primed = sources.poll(&mut prime, 0.0, &host_id).await;
    stats.source_errors.fetch_add(primed.errors, Relaxed);
    stats.source_timeouts.fetch_add(primed.timeouts, Relaxed);
    let mut last_poll = Instant::now();
    let mut last_stats_log = Instant::now();

    loop {
        let wait = if settings.once {
            settings.interval.min(Duration::from_secs(1))
        } else {
            until_next_boundary(wall_ms(), settings.interval)
        };
        let wake = Instant::now() + wait;
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep_until(end.unwrap_or(wake).min(wake)) => end.is_some_and(|e| Instant::now() >= e),
        };
        if stop {
            break;
        }
        let now = Instant::now();
        let dt_s = now.duration_since(last_poll).as_secs_f64();
        last_poll = now;
        let mut round = Round {
            ts_ms: wall_ms(),
            ..Round::default()
        };
        let polled = sources.poll(&mut round, dt_s, &host_id).await;
        stats.source_errors.fetch_add(polled.errors, Relaxed);
        stats.source_timeouts.fetch_add(polled.timeouts, Relaxed);
        stats
            .helper_restarts
            .store(polled.helper_spawns.saturating_sub(1), Relaxed);
        stats.rounds.fetch_add(1, Relaxed);
        stats
            .samples_taken
            .fetch_add(round.samples.len() as u64, Relaxed);
        if let Some(p) = &mut parquet {
            if let Err(e) = p.write(round.ts_ms, &round.samples) {
                tracing::error!(error = %e, "Parquet write failed; the open file is abandoned.");
            }
        }
        if let Some(w) = &spool {
            let mut lines = encode::round_lines(&round);
            let snap = stats.snapshot();
            lines.extend(encode::line(
                M_SELF,
                [("host", host_id.as_str())],
                snap.iter().map(|(k, v)| (*k, *v as f64)),
                round.ts_ms,
            ));
            w.push(&lines);
        }
        tracing::debug!(
            ts_ms = round.ts_ms,
            rows = round.samples.len(),
            points = round.details.len(),
            source_errors = polled.errors,
            "Round written."
        );
        if last_stats_log.elapsed() >= settings.stats_interval {
            stats.log("periodic");
            last_stats_log = Instant::now();
        }
        if settings.once {
            break;
        }
    }

    if let Some(p) = &mut parquet {
        if let Err(e) = p.flush() {
            tracing::error!(error = %e, "Finishing the Parquet file failed.");
        }
    }
    sink_stop.cancel();
    tracker.wait().await;
    stats.log("shutdown");
    Ok(stats)
}

/// The start line: what this run will do, in one INFO event (the full settings are at DEBUG).
fn log_start(s: &Settings) {
    let parquet = s.parquet.as_ref().map_or_else(
        || "off".to_owned(),
        |p| format!("{} (rotate {:?})", p.dir.display(), p.rotate),
    );
    let influx = s.influx.as_ref().map_or_else(
        || "off".to_owned(),
        |i| {
            format!(
                "{} org={} bucket={} spool={} (cap {} B, batch {} lines, flush {:?})",
                i.url,
                i.org,
                i.bucket,
                i.spool_dir.display(),
                i.spool_max_bytes,
                i.batch_lines,
                i.flush_interval
            )
        },
    );
    let vms = match (&s.libvirt, &s.cgroup_root) {
        (Some(l), _) => format!("libvirt {}", l.uri),
        (None, Some(r)) => format!("cgroup {}", r.display()),
        (None, None) => "off".to_owned(),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        host_id = %s.host_id,
        interval = ?s.interval,
        parquet = %parquet,
        influx = %influx,
        vms = %vms,
        "Collector started."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_align() {
        let iv = Duration::from_secs(10);
        assert_eq!(until_next_boundary(1_000, iv), Duration::from_millis(9_000));
        assert_eq!(
            until_next_boundary(10_000, iv),
            Duration::from_millis(10_000)
        );
        assert_eq!(until_next_boundary(19_999, iv), Duration::from_millis(1));
    }
}
