//! A deterministic in-process bus: several [`Peer`]s, each with its own [`Knowledge`], stepped in
//! a fixed order, with messages delivered by recipient id as soon as they are sent. Unbound
//! recipients are resolved to the first other peer (in the order added) whose current role
//! matches. Used by tests, benchmarks and `keel-agent lcc run`.

use std::fmt;

use crate::error::Error;
use crate::interp::{Envelope, Peer, Status};
use crate::knowledge::{Directory, Knowledge};
use crate::value::Value;

struct Slot {
    peer: Peer,
    knowledge: Box<dyn Knowledge + Send>,
    status: Status,
}

/// Peers exchanging messages in one process.
#[derive(Default)]
pub struct Bus {
    slots: Vec<Slot>,
    trace: Vec<Envelope>,
    record: bool,
    undelivered: u64,
    out: Vec<Envelope>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field(
                "peers",
                &self.slots.iter().map(|s| &s.peer).collect::<Vec<_>>(),
            )
            .field("trace", &self.trace.len())
            .field("undelivered", &self.undelivered)
            .finish_non_exhaustive()
    }
}

/// How a [`Bus::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every peer's clause closed.
    AllClosed,
    /// A full round fired no event: every peer waits.
    Quiescent,
    /// The round limit was reached.
    RoundLimit,
}

/// Does `role` match `pat`? An atom matches any role of that name; variables match anything.
#[must_use]
pub fn role_matches(pat: &Value, role: &Value) -> bool {
    match (pat, role) {
        (Value::Var(_), _) | (_, Value::Var(_)) => true,
        (Value::Atom(a), r) => r.name() == Some(&**a),
        (Value::Compound(p), Value::Compound(r)) => {
            p.name == r.name
                && p.args.len() == r.args.len()
                && p.args
                    .iter()
                    .zip(r.args.iter())
                    .all(|(a, b)| role_matches(a, b))
        }
        (Value::Cons(p), Value::Cons(r)) => {
            role_matches(&p.head, &r.head) && role_matches(&p.tail, &r.tail)
        }
        (p, r) => p == r,
    }
}

struct BusDirectory<'a> {
    before: &'a [Slot],
    after: &'a [Slot],
}

impl Directory for BusDirectory<'_> {
    fn resolve(&mut self, role: &Value, _body: &Value) -> Option<Value> {
        self.before
            .iter()
            .chain(self.after.iter())
            .find(|s| !s.peer.is_closed() && role_matches(role, &s.peer.role()))
            .map(|s| s.peer.id().clone())
    }
}

impl Bus {
    /// An empty bus that records every message.
    #[must_use]
    pub fn new() -> Self {
        Self {
            record: true,
            ..Self::default()
        }
    }

    /// Records messages in [`Bus::trace`] (on by default)?
    pub fn set_record(&mut self, on: bool) {
        self.record = on;
    }

    /// Adds a peer with its knowledge; returns its index.
    pub fn add(&mut self, peer: Peer, knowledge: impl Knowledge + Send + 'static) -> usize {
        self.slots.push(Slot {
            peer,
            knowledge: Box::new(knowledge),
            status: Status::Waiting,
        });
        self.slots.len() - 1
    }

    /// The peer at `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    #[must_use]
    pub fn peer(&self, i: usize) -> &Peer {
        &self.slots[i].peer
    }

    /// The peer at `i`, mutably (e.g. to call [`Peer::timeout`]).
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn peer_mut(&mut self, i: usize) -> &mut Peer {
        &mut self.slots[i].peer
    }

    /// Number of peers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No peers?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Status of the last step of peer `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    #[must_use]
    pub fn status(&self, i: usize) -> Status {
        self.slots[i].status
    }

    /// Messages delivered so far, in order.
    #[must_use]
    pub fn trace(&self) -> &[Envelope] {
        &self.trace
    }

    /// Messages addressed to an id no peer has (dropped).
    #[must_use]
    pub fn undelivered(&self) -> u64 {
        self.undelivered
    }

    /// Steps every peer once, in order; returns whether any event fired.
    ///
    /// # Errors
    /// The first runtime error of a peer.
    pub fn round(&mut self) -> Result<bool, Error> {
        let mut progressed = false;
        for i in 0..self.slots.len() {
            let (before, rest) = self.slots.split_at_mut(i);
            let Some((cur, after)) = rest.split_first_mut() else {
                break;
            };
            let mut dir = BusDirectory { before, after };
            let events = cur.peer.events();
            let status = cur
                .peer
                .step(cur.knowledge.as_mut(), &mut dir, &mut self.out)?;
            cur.status = status;
            progressed |= cur.peer.events() != events;
            let mut out = std::mem::take(&mut self.out);
            for env in out.drain(..) {
                match self.slots.iter_mut().find(|s| s.peer.id() == &env.to.id) {
                    Some(s) => {
                        if self.record {
                            self.trace.push(env.clone());
                        }
                        s.peer.deliver(env);
                    }
                    None => self.undelivered += 1,
                }
            }
            self.out = out;
        }
        Ok(progressed)
    }

    /// Runs rounds until every peer is closed, a round fires nothing, or `max_rounds` rounds.
    ///
    /// # Errors
    /// The first runtime error of a peer.
    pub fn run(&mut self, max_rounds: usize) -> Result<Outcome, Error> {
        for _ in 0..max_rounds {
            let before: u64 = self.slots.iter().map(|s| s.peer.events()).sum();
            self.round()?;
            if self.slots.iter().all(|s| s.peer.is_closed()) {
                return Ok(Outcome::AllClosed);
            }
            let after: u64 = self.slots.iter().map(|s| s.peer.events()).sum();
            if after == before {
                return Ok(Outcome::Quiescent);
            }
        }
        Ok(Outcome::RoundLimit)
    }
}
