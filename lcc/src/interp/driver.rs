//! The async driver (feature `async`): runs one [`Peer`] as a tokio task over channels, with the
//! same core as the deterministic [`Peer::step`].
//!
//! Loop: step; send what the step emitted; if closed, stop; otherwise wait for the next message,
//! the re-evaluation tick (constraints may have changed: new measurements), or the receive
//! timeout. When the peer has waited `receive_timeout` without firing an event while in the
//! middle of an interaction, [`Peer::timeout`] abandons it and the peer restarts in its initial
//! role.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::Error;
use crate::interp::{Envelope, Peer, Status};
use crate::knowledge::{Directory, Knowledge};

/// Timing of the driver.
#[derive(Clone, Copy, Debug)]
pub struct DriveConfig {
    /// How long the peer may wait, mid-interaction, before [`Peer::timeout`].
    pub receive_timeout: Duration,
    /// How often constraints are re-evaluated while nothing arrives.
    pub tick: Duration,
}

impl Default for DriveConfig {
    fn default() -> Self {
        Self {
            receive_timeout: Duration::from_secs(5),
            tick: Duration::from_secs(1),
        }
    }
}

/// Why [`drive`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveEnd {
    /// The peer's clause closed.
    Closed,
    /// The inbox channel closed (shutdown).
    InboxClosed,
    /// The outbox channel closed (the transport is gone).
    OutboxClosed,
}

/// Counters of a [`drive`] run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriveStats {
    /// Times [`Peer::timeout`] fired.
    pub timeouts: u64,
    /// Messages sent.
    pub sent: u64,
}

/// Runs `peer` until it closes or a channel closes.
///
/// # Errors
/// A runtime error of the peer.
pub async fn drive(
    peer: &mut Peer,
    knowledge: &mut (dyn Knowledge + Send),
    directory: &mut (dyn Directory + Send),
    inbox: &mut mpsc::Receiver<Envelope>,
    outbox: &mpsc::Sender<Envelope>,
    cfg: DriveConfig,
    stats: &mut DriveStats,
) -> Result<DriveEnd, Error> {
    let mut out = Vec::new();
    let mut last_progress = Instant::now();
    let mut busy = false;
    loop {
        let status = peer.step(knowledge, directory, &mut out)?;
        for env in out.drain(..) {
            if outbox.send(env).await.is_err() {
                return Ok(DriveEnd::OutboxClosed);
            }
            stats.sent += 1;
        }
        match status {
            Status::Closed => return Ok(DriveEnd::Closed),
            Status::Progressed => {
                last_progress = Instant::now();
                busy = true;
            }
            Status::Waiting | Status::TimedOut => {}
        }
        if busy && last_progress.elapsed() >= cfg.receive_timeout {
            peer.timeout()?;
            stats.timeouts += 1;
            busy = false;
            last_progress = Instant::now();
            continue;
        }
        let wake = if busy {
            (last_progress + cfg.receive_timeout).min(Instant::now() + cfg.tick)
        } else {
            Instant::now() + cfg.tick
        };
        tokio::select! {
            msg = inbox.recv() => match msg {
                Some(env) => { peer.deliver(env); }
                None => return Ok(DriveEnd::InboxClosed),
            },
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}
