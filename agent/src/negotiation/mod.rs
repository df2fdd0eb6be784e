//! The migration negotiation: a two-sided commit before any VM moves.
//!
//! The protocol refines the seed's `overloaded`/`underloaded` roles (`readyToMigrate(Need)` →
//! `migration(OK)`) into five steps, so that a VM is promised to at most one host and is moved only
//! after both sides have committed:
//!
//! ```text
//! source (overloaded)                         target (underloaded)
//!   Offer{neg, vm, demand}        ─────────▶  reserve demand for `reservation` (or Reject)
//!                                 ◀─────────  Accept{neg}
//!   Commit{neg}                   ─────────▶  reservation → committed (or Reject if expired)
//!                                 ◀─────────  CommitAck{neg}
//!   execute (libvirt/command/dry-run)
//!   Done{neg, ok}                 ─────────▶  release the reservation
//!                                 ◀─────────  DoneAck{neg}
//! ```
//!
//! Every wait has a deadline ([`Timeouts`]); within it the current step's message is resent with
//! exponential backoff (receivers answer repeats idempotently, keyed by the negotiation id). A
//! source that times out before `CommitAck` sends `Abort` and returns to idle with its VM; a target
//! whose reservation is not committed (or whose committed reservation sees no `Done`) in time
//! releases it. The source runs one negotiation at a time, so a VM is never offered to two hosts;
//! only the source executes, and only after `CommitAck`, so a VM never moves without a committed
//! target. [`Negotiator`] is a pure state machine (time is passed in), driven by the node runtime
//! and testable under a virtual clock.
//!
//! [`rank`] orders candidate targets with the stability model; [`lcc`] lets an LCC interaction
//! model choose the role and the target.

pub mod lcc;
pub mod rank;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use crate::time::Time as Instant;
use serde::{Deserialize, Serialize};

/// An agent id.
pub type PeerId = String;

/// A negotiation's id: its source and the source's sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NegId {
    /// The source agent.
    pub origin: PeerId,
    /// The source's sequence number.
    pub seq: u64,
}

impl fmt::Display for NegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.origin, self.seq)
    }
}

/// The negotiation messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(missing_docs)] // each variant is described in the module docs
pub enum Msg {
    Offer { neg: NegId, vm: String, demand: f64 },
    Accept { neg: NegId },
    Reject { neg: NegId, reason: String },
    Commit { neg: NegId },
    CommitAck { neg: NegId },
    Done { neg: NegId, ok: bool },
    DoneAck { neg: NegId },
    Abort { neg: NegId },
}

impl Msg {
    /// The negotiation this message belongs to.
    pub fn neg(&self) -> &NegId {
        match self {
            Self::Offer { neg, .. }
            | Self::Accept { neg }
            | Self::Reject { neg, .. }
            | Self::Commit { neg }
            | Self::CommitAck { neg }
            | Self::Done { neg, .. }
            | Self::DoneAck { neg }
            | Self::Abort { neg } => neg,
        }
    }

    /// A short name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Offer { .. } => "offer",
            Self::Accept { .. } => "accept",
            Self::Reject { .. } => "reject",
            Self::Commit { .. } => "commit",
            Self::CommitAck { .. } => "commit_ack",
            Self::Done { .. } => "done",
            Self::DoneAck { .. } => "done_ack",
            Self::Abort { .. } => "abort",
        }
    }
}

/// Deadlines of each wait and the first retry interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    /// Source: from `Offer` to `Accept`.
    pub offer: Duration,
    /// Source: from `Commit` to `CommitAck`.
    pub commit: Duration,
    /// Target: an uncommitted reservation's life.
    pub reservation: Duration,
    /// Target: a committed reservation's life without `Done`; also the executor's limit.
    pub execute: Duration,
    /// Source: from `Done` to `DoneAck` (the VM has moved; this only bounds the resends).
    pub done: Duration,
    /// First resend interval (doubles each time).
    pub retry: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        // OpenKnowledge used 5 s for commitments.
        Self {
            offer: Duration::from_secs(2),
            commit: Duration::from_secs(5),
            reservation: Duration::from_secs(5),
            execute: Duration::from_secs(120),
            done: Duration::from_secs(5),
            retry: Duration::from_millis(100),
        }
    }
}

/// Where a source negotiation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Offer sent, waiting for `Accept`.
    AwaitAccept,
    /// Commit sent, waiting for `CommitAck`.
    AwaitCommitAck,
    /// Both committed; the executor is moving the VM.
    Executing,
    /// Moved; `Done` sent, waiting for `DoneAck`.
    AwaitDoneAck,
}

/// How a negotiation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The VM moved.
    Migrated,
    /// The target declined.
    Rejected(String),
    /// A wait ran out (source: the stage; target: the reservation).
    TimedOut(String),
    /// One side gave up (shutdown or the peer's `Abort`).
    Aborted,
    /// The executor failed; the VM stayed.
    ExecFailed(String),
}

/// Which side of a negotiation this agent was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The overloaded host giving a VM away.
    Source,
    /// The underloaded host receiving it.
    Target,
}

/// A finished negotiation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Which one.
    pub neg: NegId,
    /// The VM.
    pub vm: String,
    /// The other side.
    pub peer: PeerId,
    /// This agent's side.
    pub side: Side,
    /// The end.
    pub outcome: Outcome,
    /// Duration, ms.
    pub elapsed_ms: u64,
}

/// What the runtime must do after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a message.
    Send {
        /// To whom.
        to: PeerId,
        /// What.
        msg: Msg,
    },
    /// Move the VM (source only; both sides have committed).
    Execute {
        /// The negotiation.
        neg: NegId,
        /// The VM.
        vm: String,
        /// The target.
        target: PeerId,
    },
    /// A negotiation ended.
    Finished(Record),
}

/// The local facts a target needs to decide on an offer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Local {
    /// Host CPU capacity (absolute units, e.g. MIPS).
    pub capacity: f64,
    /// Current CPU demand (same units).
    pub used: f64,
    /// Utilisation a target may reach by accepting (fraction).
    pub accept_below: f64,
    /// Whether this agent currently plays a role that takes VMs.
    pub takes_vms: bool,
}

#[derive(Debug, Clone)]
struct Outgoing {
    neg: NegId,
    vm: String,
    demand: f64,
    target: PeerId,
    stage: Stage,
    started: Instant,
    deadline: Instant,
    next_retry: Instant,
    backoff: Duration,
    outcome_if_acked: Outcome,
}

#[derive(Debug, Clone)]
struct Reservation {
    from: PeerId,
    vm: String,
    demand: f64,
    committed: bool,
    started: Instant,
    expires: Instant,
}

/// Counters of a negotiator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NegCounts {
    /// Negotiations started as source.
    pub started: u64,
    /// Source negotiations that moved a VM.
    pub migrated: u64,
    /// Source negotiations rejected by the target.
    pub rejected: u64,
    /// Waits that ran out (both sides).
    pub timeouts: u64,
    /// Negotiations aborted (both sides).
    pub aborted: u64,
    /// Offers received as target.
    pub offers: u64,
    /// Offers accepted (reservations made).
    pub reservations: u64,
    /// Resends of a step's message.
    pub retries: u64,
    /// Messages that fit no current negotiation (late or duplicated), ignored or answered.
    pub stray: u64,
}

/// The state machine of one agent's negotiations, on both sides.
#[derive(Debug)]
pub struct Negotiator {
    me: PeerId,
    seq: u64,
    t: Timeouts,
    out: Option<Outgoing>,
    reservations: HashMap<NegId, Reservation>,
    /// Recently finished target negotiations, so that a repeated `Done` is acknowledged and a
    /// repeated `Offer` is not mistaken for a new one.
    closed: VecDeque<NegId>,
    /// The same ids, for lookups.
    closed_set: std::collections::HashSet<NegId>,
    counts: NegCounts,
}

const CLOSED_MEMORY: usize = 1024;

impl Negotiator {
    /// A negotiator for agent `me`.
    pub fn new(me: PeerId, t: Timeouts) -> Self {
        Self {
            me,
            seq: 0,
            t,
            out: None,
            reservations: HashMap::new(),
            closed: VecDeque::new(),
            closed_set: std::collections::HashSet::new(),
            counts: NegCounts::default(),
        }
    }

    /// Starts numbering negotiations after `seq` (a restarted agent passes its start time, so
    /// that peers that remember its previous negotiations do not mistake new ones for repeats).
    #[must_use]
    pub fn numbered_from(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    /// Whether no source negotiation is running.
    pub fn is_idle(&self) -> bool {
        self.out.is_none()
    }

    /// The running source negotiation: id, VM, target, stage.
    pub fn current(&self) -> Option<(&NegId, &str, &str, Stage)> {
        self.out
            .as_ref()
            .map(|o| (&o.neg, o.vm.as_str(), o.target.as_str(), o.stage))
    }

    /// Number of open reservations (as target).
    pub fn reservations(&self) -> usize {
        self.reservations.len()
    }

    /// CPU demand reserved for incoming VMs.
    pub fn reserved(&self) -> f64 {
        self.reservations.values().map(|r| r.demand).sum()
    }

    /// The counters.
    pub fn counts(&self) -> NegCounts {
        self.counts
    }

    /// The timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.t
    }

    /// Starts offering `vm` (CPU `demand`) to `target`. Does nothing if a negotiation is running.
    pub fn start(&mut self, now: Instant, vm: &str, demand: f64, target: &str) -> Vec<Action> {
        if self.out.is_some() {
            return Vec::new();
        }
        self.seq += 1;
        let neg = NegId {
            origin: self.me.clone(),
            seq: self.seq,
        };
        self.counts.started += 1;
        self.out = Some(Outgoing {
            neg: neg.clone(),
            vm: vm.to_string(),
            demand,
            target: target.to_string(),
            stage: Stage::AwaitAccept,
            started: now,
            deadline: now + self.t.offer,
            next_retry: now + self.t.retry,
            backoff: self.t.retry,
            outcome_if_acked: Outcome::Migrated,
        });
        vec![Action::Send {
            to: target.to_string(),
            msg: Msg::Offer {
                neg,
                vm: vm.to_string(),
                demand,
            },
        }]
    }

    /// The earliest instant at which [`on_tick`](Self::on_tick) has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let out = self.out.as_ref().map(|o| {
            if o.stage == Stage::Executing {
                o.deadline
            } else {
                o.deadline.min(o.next_retry)
            }
        });
        let res = self.reservations.values().map(|r| r.expires).min();
        match (out, res) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn finish_out(&mut self, now: Instant, outcome: Outcome) -> Vec<Action> {
        let Some(o) = self.out.take() else {
            return Vec::new();
        };
        match &outcome {
            Outcome::Migrated => self.counts.migrated += 1,
            Outcome::Rejected(_) => self.counts.rejected += 1,
            Outcome::TimedOut(_) => self.counts.timeouts += 1,
            Outcome::Aborted | Outcome::ExecFailed(_) => self.counts.aborted += 1,
        }
        vec![Action::Finished(Record {
            neg: o.neg,
            vm: o.vm,
            peer: o.target,
            side: Side::Source,
            outcome,
            elapsed_ms: elapsed_ms(now, o.started),
        })]
    }

    fn finish_res(&mut self, now: Instant, neg: &NegId, outcome: Outcome) -> Vec<Action> {
        let Some(r) = self.reservations.remove(neg) else {
            return Vec::new();
        };
        match &outcome {
            Outcome::TimedOut(_) => self.counts.timeouts += 1,
            Outcome::Aborted => self.counts.aborted += 1,
            _ => {}
        }
        self.closed.push_back(neg.clone());
        self.closed_set.insert(neg.clone());
        if self.closed.len() > CLOSED_MEMORY {
            if let Some(old) = self.closed.pop_front() {
                self.closed_set.remove(&old);
            }
        }
        vec![Action::Finished(Record {
            neg: neg.clone(),
            vm: r.vm,
            peer: r.from,
            side: Side::Target,
            outcome,
            elapsed_ms: elapsed_ms(now, r.started),
        })]
    }

    /// Handles a message from `from`.
    pub fn on_message(&mut self, now: Instant, from: &str, msg: Msg, local: &Local) -> Vec<Action> {
        let reply = |msg: Msg| Action::Send {
            to: from.to_string(),
            msg,
        };
        let is_out = |o: &Option<Outgoing>, neg: &NegId| {
            o.as_ref()
                .is_some_and(|o| &o.neg == neg && o.target == from)
        };
        match msg {
            Msg::Offer { neg, vm, demand } => {
                if neg.origin != from {
                    self.counts.stray += 1;
                    return Vec::new();
                }
                if let Some(r) = self.reservations.get(&neg) {
                    // A resent offer: answer as before.
                    self.counts.stray += 1;
                    let m = if r.committed {
                        Msg::CommitAck { neg }
                    } else {
                        Msg::Accept { neg }
                    };
                    return vec![reply(m)];
                }
                if self.closed_set.contains(&neg) {
                    self.counts.stray += 1;
                    return Vec::new();
                }
                self.counts.offers += 1;
                let after = (local.used + self.reserved() + demand) / local.capacity;
                let reason = if !local.takes_vms {
                    Some("not taking vms".to_string())
                } else if self.out.is_some() {
                    Some("busy migrating".to_string())
                } else if !(demand.is_finite() && demand >= 0.0) {
                    Some("invalid demand".to_string())
                } else if after > local.accept_below {
                    Some(format!("no capacity (would reach {after:.2})"))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return vec![reply(Msg::Reject { neg, reason })];
                }
                self.counts.reservations += 1;
                self.reservations.insert(
                    neg.clone(),
                    Reservation {
                        from: from.to_string(),
                        vm,
                        demand,
                        committed: false,
                        started: now,
                        expires: now + self.t.reservation,
                    },
                );
                vec![reply(Msg::Accept { neg })]
            }
            Msg::Accept { neg } => {
                if !is_out(&self.out, &neg) {
                    // Not ours (any more): tell the target to release its reservation.
                    self.counts.stray += 1;
                    return vec![reply(Msg::Abort { neg })];
                }
                let o = self.out.as_mut().expect("checked above");
                if o.stage != Stage::AwaitAccept {
                    self.counts.stray += 1;
                    return Vec::new();
                }
                o.stage = Stage::AwaitCommitAck;
                o.deadline = now + self.t.commit;
                o.backoff = self.t.retry;
                o.next_retry = now + o.backoff;
                vec![reply(Msg::Commit { neg })]
            }
            Msg::Reject { neg, reason } => {
                if !is_out(&self.out, &neg) {
                    self.counts.stray += 1;
                    return Vec::new();
                }
                let stage = self.out.as_ref().map(|o| o.stage);
                match stage {
                    Some(Stage::AwaitAccept | Stage::AwaitCommitAck) => {
                        self.finish_out(now, Outcome::Rejected(reason))
                    }
                    _ => {
                        self.counts.stray += 1;
                        Vec::new()
                    }
                }
            }
            Msg::Commit { neg } => match self.reservations.get_mut(&neg) {
                Some(r) if r.from == from => {
                    if !r.committed {
                        r.committed = true;
                        r.expires = now + self.t.execute;
                    }
                    vec![reply(Msg::CommitAck { neg })]
                }
                _ => {
                    self.counts.stray += 1;
                    vec![reply(Msg::Reject {
                        neg,
                        reason: "no reservation".into(),
                    })]
                }
            },
            Msg::CommitAck { neg } => {
                if !is_out(&self.out, &neg) {
                    self.counts.stray += 1;
                    return Vec::new();
                }
                let o = self.out.as_mut().expect("checked above");
                if o.stage != Stage::AwaitCommitAck {
                    self.counts.stray += 1;
                    return Vec::new();
                }
                o.stage = Stage::Executing;
                o.deadline = now + self.t.execute;
                vec![Action::Execute {
                    neg,
                    vm: o.vm.clone(),
                    target: o.target.clone(),
                }]
            }
            Msg::Done { neg, ok } => {
                let ours = self.reservations.get(&neg).is_some_and(|r| r.from == from);
                let mut acts = vec![reply(Msg::DoneAck { neg: neg.clone() })];
                if ours {
                    let outcome = if ok {
                        Outcome::Migrated
                    } else {
                        Outcome::ExecFailed("source reported failure".into())
                    };
                    acts.extend(self.finish_res(now, &neg, outcome));
                } else {
                    self.counts.stray += 1;
                }
                acts
            }
            Msg::DoneAck { neg } => {
                if is_out(&self.out, &neg)
                    && self.out.as_ref().map(|o| o.stage) == Some(Stage::AwaitDoneAck)
                {
                    let outcome = self
                        .out
                        .as_ref()
                        .map_or(Outcome::Migrated, |o| o.outcome_if_acked.clone());
                    self.finish_out(now, outcome)
                } else {
                    self.counts.stray += 1;
                    Vec::new()
                }
            }
            Msg::Abort { neg } => {
                if self.reservations.get(&neg).is_some_and(|r| r.from == from) {
                    return self.finish_res(now, &neg, Outcome::Aborted);
                }
                let stage = self.out.as_ref().map(|o| o.stage);
                if is_out(&self.out, &neg)
                    && matches!(stage, Some(Stage::AwaitAccept | Stage::AwaitCommitAck))
                {
                    return self.finish_out(now, Outcome::Aborted);
                }
                self.counts.stray += 1;
                Vec::new()
            }
        }
    }

    /// Reports the executor's result for the running negotiation.
    pub fn on_executed(
        &mut self,
        now: Instant,
        neg: &NegId,
        result: Result<(), String>,
    ) -> Vec<Action> {
        let Some(o) = self.out.as_mut() else {
            return Vec::new();
        };
        if &o.neg != neg || o.stage != Stage::Executing {
            return Vec::new();
        }
        let ok = result.is_ok();
        o.outcome_if_acked = match result {
            Ok(()) => Outcome::Migrated,
            Err(e) => Outcome::ExecFailed(e),
        };
        o.stage = Stage::AwaitDoneAck;
        o.deadline = now + self.t.done;
        o.backoff = self.t.retry;
        o.next_retry = now + o.backoff;
        vec![Action::Send {
            to: o.target.clone(),
            msg: Msg::Done {
                neg: neg.clone(),
                ok,
            },
        }]
    }

    /// Applies deadlines and resends.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut acts = Vec::new();
        let expired: Vec<NegId> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for neg in expired {
            acts.extend(self.finish_res(now, &neg, Outcome::TimedOut("reservation".into())));
        }
        let Some(o) = self.out.as_mut() else {
            return acts;
        };
        if o.stage == Stage::Executing {
            // The executor enforces its own limit and always reports back.
            return acts;
        }
        if now >= o.deadline {
            let (stage, target, neg) = (o.stage, o.target.clone(), o.neg.clone());
            if stage == Stage::AwaitDoneAck {
                // The VM has moved; the target's reservation expires by itself.
                let outcome = o.outcome_if_acked.clone();
                acts.extend(self.finish_out(now, outcome));
            } else {
                acts.push(Action::Send {
                    to: target,
                    msg: Msg::Abort { neg },
                });
                let what = match stage {
                    Stage::AwaitAccept => "accept",
                    _ => "commit_ack",
                };
                acts.extend(self.finish_out(now, Outcome::TimedOut(what.into())));
            }
            return acts;
        }
        if now >= o.next_retry {
            self.counts.retries += 1;
            o.backoff *= 2;
            o.next_retry = now + o.backoff;
            let neg = o.neg.clone();
            let msg = match o.stage {
                Stage::AwaitAccept => Msg::Offer {
                    neg,
                    vm: o.vm.clone(),
                    demand: o.demand,
                },
                Stage::AwaitCommitAck => Msg::Commit { neg },
                _ => Msg::Done {
                    neg,
                    ok: o.outcome_if_acked == Outcome::Migrated,
                },
            };
            acts.push(Action::Send {
                to: o.target.clone(),
                msg,
            });
        }
        acts
    }

    /// Gives up everything not yet committed (graceful shutdown): the source negotiation if it
    /// has not reached `Executing`, and all uncommitted reservations. Returns the `Abort`s to send.
    pub fn abort_uncommitted(&mut self, now: Instant) -> Vec<Action> {
        let mut acts = Vec::new();
        if let Some(o) = &self.out {
            if matches!(o.stage, Stage::AwaitAccept | Stage::AwaitCommitAck) {
                acts.push(Action::Send {
                    to: o.target.clone(),
                    msg: Msg::Abort { neg: o.neg.clone() },
                });
                acts.extend(self.finish_out(now, Outcome::Aborted));
            }
        }
        let open: Vec<(NegId, PeerId)> = self
            .reservations
            .iter()
            .filter(|(_, r)| !r.committed)
            .map(|(k, r)| (k.clone(), r.from.clone()))
            .collect();
        for (neg, from) in open {
            acts.push(Action::Send {
                to: from,
                msg: Msg::Abort { neg: neg.clone() },
            });
            acts.extend(self.finish_res(now, &neg, Outcome::Aborted));
        }
        acts
    }

    /// Whether a migration is executing (shutdown waits for it).
    pub fn is_executing(&self) -> bool {
        self.out
            .as_ref()
            .is_some_and(|o| o.stage == Stage::Executing)
    }
}

fn elapsed_ms(now: Instant, start: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Local = Local {
        capacity: 1000.0,
        used: 200.0,
        accept_below: 0.8,
        takes_vms: true,
    };

    fn sends(acts: &[Action]) -> Vec<(String, Msg)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Send { to, msg } => Some((to.clone(), msg.clone())),
                _ => None,
            })
            .collect()
    }

    /// Carries every message between two negotiators until quiet; returns the records.
    fn pump(
        now: Instant,
        a: &mut Negotiator,
        b: &mut Negotiator,
        mut pending: Vec<(String, String, Msg)>,
    ) -> Vec<Record> {
        let mut records = Vec::new();
        while let Some((from, to, msg)) = pending.pop() {
            let n = if to == a.me { &mut *a } else { &mut *b };
            let mut acts = n.on_message(now, &from, msg, &LOCAL);
            let mut more = Vec::new();
            for act in acts.drain(..) {
                match act {
                    Action::Send { to: t, msg } => pending.push((n.me.clone(), t, msg)),
                    Action::Execute { neg, .. } => more.extend(n.on_executed(now, &neg, Ok(()))),
                    Action::Finished(r) => records.push(r),
                }
            }
            for act in more {
                if let Action::Send { to: t, msg } = act {
                    pending.push((n.me.clone(), t, msg));
                }
            }
        }
        records
    }

    #[test]
    fn happy_path_commits_both_sides_then_moves() {
        let now = Instant::ZERO;
        let mut s = Negotiator::new("s".into(), Timeouts::default());
        let mut t = Negotiator::new("t".into(), Timeouts::default());
        let acts = s.start(now, "vm1", 300.0, "t");
        let pending = sends(&acts)
            .into_iter()
            .map(|(to, m)| ("s".to_string(), to, m))
            .collect();
        let recs = pump(now, &mut s, &mut t, pending);
        assert_eq!(recs.len(), 2);
        assert!(recs.iter().all(|r| r.outcome == Outcome::Migrated));
        assert!(s.is_idle());
        assert_eq!(t.reservations(), 0);
        assert_eq!(s.counts().migrated, 1);
    }

    #[test]
    fn target_without_capacity_rejects() {
        let now = Instant::ZERO;
        let mut s = Negotiator::new("s".into(), Timeouts::default());
        let mut t = Negotiator::new("t".into(), Timeouts::default());
        let acts = s.start(now, "vm1", 700.0, "t");
        let pending = sends(&acts)
            .into_iter()
            .map(|(to, m)| ("s".to_string(), to, m))
            .collect();
        let recs = pump(now, &mut s, &mut t, pending);
        assert!(matches!(recs[0].outcome, Outcome::Rejected(_)));
        assert!(s.is_idle());
    }

    #[test]
    fn reservations_never_overcommit() {
        let now = Instant::ZERO;
        let mut t = Negotiator::new("t".into(), Timeouts::default());
        let offer = |o: &str, vm: &str| Msg::Offer {
            neg: NegId {
                origin: o.into(),
                seq: 1,
            },
            vm: vm.into(),
            demand: 250.0,
        };
        // 200 used + 250 + 250 = 700 ≤ 800; the third would reach 950.
        let a = t.on_message(now, "a", offer("a", "v1"), &LOCAL);
        let b = t.on_message(now, "b", offer("b", "v2"), &LOCAL);
        let c = t.on_message(now, "c", offer("c", "v3"), &LOCAL);
        assert!(matches!(sends(&a)[0].1, Msg::Accept { .. }));
        assert!(matches!(sends(&b)[0].1, Msg::Accept { .. }));
        assert!(matches!(sends(&c)[0].1, Msg::Reject { .. }));
        // A repeated offer is answered the same way, not reserved twice.
        let a2 = t.on_message(now, "a", offer("a", "v1"), &LOCAL);
        assert!(matches!(sends(&a2)[0].1, Msg::Accept { .. }));
        assert_eq!(t.reservations(), 2);
    }

    #[test]
    fn source_losing_its_peer_times_out_and_returns_to_idle() {
        let t0 = Instant::ZERO;
        let to = Timeouts::default();
        let mut s = Negotiator::new("s".into(), to);
        s.start(t0, "vm1", 100.0, "t");
        let mut resends = 0;
        let mut finished = None;
        while let Some(d) = s.next_deadline() {
            for a in s.on_tick(d) {
                match a {
                    Action::Send {
                        msg: Msg::Offer { .. },
                        ..
                    } => resends += 1,
                    Action::Finished(r) => finished = Some(r),
                    _ => {}
                }
            }
        }
        assert!(resends >= 3, "backoff resends: {resends}");
        let r = finished.expect("finished");
        assert_eq!(r.outcome, Outcome::TimedOut("accept".into()));
        assert_eq!(r.elapsed_ms, to.offer.as_millis() as u64);
        assert!(s.is_idle());
        assert_eq!(s.counts().timeouts, 1);
    }

    #[test]
    fn target_reservation_expires_when_source_vanishes() {
        let t0 = Instant::ZERO;
        let to = Timeouts::default();
        let mut t = Negotiator::new("t".into(), to);
        let neg = NegId {
            origin: "s".into(),
            seq: 1,
        };
        t.on_message(
            t0,
            "s",
            Msg::Offer {
                neg: neg.clone(),
                vm: "v".into(),
                demand: 100.0,
            },
            &LOCAL,
        );
        assert_eq!(t.reserved(), 100.0);
        let acts = t.on_tick(t.next_deadline().unwrap());
        assert!(matches!(
            &acts[0],
            Action::Finished(Record {
                outcome: Outcome::TimedOut(_),
                ..
            })
        ));
        assert_eq!(t.reserved(), 0.0);
        // A late Commit for the expired reservation is refused, so the source cannot execute.
        let late = t.on_message(Instant::ZERO, "s", Msg::Commit { neg }, &LOCAL);
        assert!(matches!(sends(&late)[0].1, Msg::Reject { .. }));
    }

    #[test]
    fn source_without_commit_ack_never_executes() {
        let now = Instant::ZERO;
        let mut s = Negotiator::new("s".into(), Timeouts::default());
        s.start(now, "vm1", 100.0, "t");
        let neg = NegId {
            origin: "s".into(),
            seq: 1,
        };
        let acts = s.on_message(now, "t", Msg::Accept { neg: neg.clone() }, &LOCAL);
        assert!(matches!(sends(&acts)[0].1, Msg::Commit { .. }));
        let later = now + Timeouts::default().commit;
        let acts = s.on_tick(later);
        assert!(acts.iter().all(|a| !matches!(a, Action::Execute { .. })));
        assert!(s.is_idle());
        // A CommitAck arriving after the timeout is ignored.
        let acts = s.on_message(later, "t", Msg::CommitAck { neg }, &LOCAL);
        assert!(acts.is_empty());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            /// Deliver the in-flight message at this index (mod the count).
            Deliver(usize),
            /// Lose it.
            Drop(usize),
            /// Deliver a copy and keep the original in flight.
            Duplicate(usize),
            /// Let time pass (ms) and tick everyone.
            Advance(u64),
            /// The source offers its next VM to target 0 or 1.
            Start(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => any::<usize>().prop_map(Op::Deliver),
                1 => any::<usize>().prop_map(Op::Drop),
                1 => any::<usize>().prop_map(Op::Duplicate),
                2 => (1u64..3000).prop_map(Op::Advance),
                1 => (0usize..2).prop_map(Op::Start),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

            /// Whatever the network does (loss, duplication, reordering, delay), a VM moves at most
            /// once, only to a target holding a committed reservation for that negotiation, and
            /// every wait ends: after enough time everyone is idle with no reservation left.
            #[test]
            fn a_vm_moves_once_and_only_to_a_committed_target(
                ops in proptest::collection::vec(op(), 1..120),
                exec_fails in any::<bool>(),
            ) {
                let t = Timeouts::default();
                let mut now = Instant::ZERO;
                let mut s = Negotiator::new("s".into(), t);
                let mut targets = [
                    Negotiator::new("t0".into(), t),
                    Negotiator::new("t1".into(), t),
                ];
                let vms = ["v1", "v2", "v3"];
                let mut moved: HashMap<String, usize> = HashMap::new();
                let mut next_vm = 0;
                let mut net: Vec<(String, String, Msg)> = Vec::new();
                fn push(net: &mut Vec<(String, String, Msg)>, from: &str, acts: &[Action]) {
                    for a in acts {
                        if let Action::Send { to, msg } = a {
                            net.push((from.to_string(), to.clone(), msg.clone()));
                        }
                    }
                }
                let handle = |s: &mut Negotiator,
                                  targets: &mut [Negotiator; 2],
                                  net: &mut Vec<(String, String, Msg)>,
                                  moved: &mut HashMap<String, usize>,
                                  now: Instant,
                                  from: String,
                                  to: String,
                                  msg: Msg|
                 -> Result<(), TestCaseError> {
                    if to == "s" {
                        let acts = s.on_message(now, &from, msg, &LOCAL);
                        push(net, "s", &acts);
                        for a in &acts {
                            if let Action::Execute { neg, vm, target } = a {
                                let ti = usize::from(target == "t1");
                                let r = targets[ti].reservations.get(neg);
                                prop_assert!(r.is_some_and(|r| r.committed),
                                    "executing {vm} to {target} without its commitment");
                                let res = if exec_fails { Err("failed".to_string()) } else { Ok(()) };
                                if res.is_ok() {
                                    *moved.entry(vm.clone()).or_default() += 1;
                                }
                                let more = s.on_executed(now, neg, res);
                                push(net, "s", &more);
                            }
                        }
                    } else {
                        let ti = usize::from(to == "t1");
                        let acts = targets[ti].on_message(now, &from, msg, &LOCAL);
                        push(net, &to, &acts);
                    }
                    Ok(())
                };
                for op in ops {
                    match op {
                        Op::Deliver(i) | Op::Duplicate(i) if !net.is_empty() => {
                            let i = i % net.len();
                            let (from, to, msg) = if matches!(op, Op::Deliver(_)) {
                                net.swap_remove(i)
                            } else {
                                net[i].clone()
                            };
                            handle(&mut s, &mut targets, &mut net, &mut moved, now, from, to, msg)?;
                        }
                        Op::Drop(i) if !net.is_empty() => {
                            let i = i % net.len();
                            net.swap_remove(i);
                        }
                        Op::Advance(ms) => {
                            now += Duration::from_millis(ms);
                            let acts = s.on_tick(now);
                            push(&mut net, "s", &acts);
                            for (k, tn) in targets.iter_mut().enumerate() {
                                let acts = tn.on_tick(now);
                                push(&mut net, &format!("t{k}"), &acts);
                            }
                        }
                        Op::Start(k) if s.is_idle() && next_vm < vms.len() => {
                            let vm = vms[next_vm];
                            // A VM that moved is gone from the source; one that did not is offered
                            // again only after its negotiation ended.
                            if moved.contains_key(vm) {
                                next_vm += 1;
                                continue;
                            }
                            let acts = s.start(now, vm, 100.0, &format!("t{k}"));
                            push(&mut net, "s", &acts);
                            next_vm = (next_vm + 1) % vms.len();
                        }
                        _ => {}
                    }
                    for (vm, n) in &moved {
                        prop_assert!(*n <= 1, "{vm} moved {n} times");
                    }
                }
                // Every wait ends: with no more messages, time alone returns everyone to idle.
                now += t.execute + t.commit + t.done + t.offer + t.reservation;
                let acts = s.on_tick(now);
                drop(acts);
                for tn in &mut targets {
                    let _ = tn.on_tick(now);
                }
                prop_assert!(s.is_idle());
                prop_assert!(targets.iter().all(|t| t.reservations() == 0));
            }
        }
    }

    #[test]
    fn forged_origin_and_wrong_peer_are_ignored() {
        let now = Instant::ZERO;
        let mut t = Negotiator::new("t".into(), Timeouts::default());
        let neg = NegId {
            origin: "s".into(),
            seq: 1,
        };
        let acts = t.on_message(
            now,
            "mallory",
            Msg::Offer {
                neg: neg.clone(),
                vm: "v".into(),
                demand: 1.0,
            },
            &LOCAL,
        );
        assert!(acts.is_empty());
        let mut s = Negotiator::new("s".into(), Timeouts::default());
        s.start(now, "vm1", 100.0, "t");
        // An Accept from someone other than the target does not advance the negotiation.
        s.on_message(now, "mallory", Msg::Accept { neg }, &LOCAL);
        assert_eq!(s.current().unwrap().3, Stage::AwaitAccept);
    }
}
