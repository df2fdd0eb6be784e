//! One peer running one role: the clause-expansion interpreter.
//!
//! A peer's state is a tree over the program's nodes (`St`): not-started nodes, `then` with its
//! left side in progress, `par` with both sides, and role frames (a clause instance with its
//! variables in the peer's binding store). [`Peer::step`] fires events until none can fire (or
//! until its budget, [`DEFAULT_STEP_BUDGET`] events, is spent):
//! - `or` is committed choice: branches are tried in order and a branch is taken only if its first
//!   event fires now; the other branch is dropped.
//! - a role change `a(R, I)` replaces itself by a fresh instance of `R`'s clause (variables
//!   renamed apart), unified with its arguments (the first clause of that name and arity whose head
//!   unifies). Where nothing else could be chosen (after `then`, in `par`, at the top), entering
//!   the role is itself a step, so the peer's [`Peer::role`] changes at once and directories see
//!   it. As the first event of an `or` branch, it counts as able to fire only if the new clause's
//!   own first event fires now. In tail position (the last thing its clause does) the callee
//!   *replaces* the caller, and a mark-compact collection of the store drops dead frames: a peer
//!   that recurses for months keeps a bounded state.
//! - an `or` branch that reaches the same clause again before any event fired (the seed's
//!   `... or a(idle, ID)` busy loop) cannot fire: the peer waits instead of spinning, and the
//!   runtime re-steps it on a timer or on new measurements.
//! - a receive takes the first inbox message that unifies with its pattern, whose sender matches
//!   (an atom role such as `overloaded` matches a sender in role `overloaded(...)`), and whose
//!   constraint holds; otherwise the message stays.
//! - a send whose recipient id is unbound asks the [`Directory`]; if it names nobody, the send
//!   waits. Variables still unbound in a sent message are renumbered from 0 (`_G0`, ...); the
//!   receiver gives them fresh cells of its own.
//! - a constraint's predicates are asked through [`Knowledge`]; `true`, `fail`/`false`, `=`,
//!   `\=`, `==`, `\==`, `<`, `>`, `=<`, `>=` are built in (comparisons of non-numbers are errors).
//!
//! Timeouts are the runtime's: [`Peer::timeout`] abandons the interaction in progress (the waiting
//! branch fails, and committed choice leaves no alternative) and restarts the peer in its initial
//! role with fresh variables. The inbox is kept (new requests are not lost); stale replies that
//! no longer match wait there until the inbox bound drops the oldest.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::program::{CClause, CCons, Node, NodeId, Program, Tpl};
use super::store::Store;
use crate::ast::CmpOp;
use crate::error::{Error, ErrorKind, RuntimeError};
use crate::knowledge::{Directory, Knowledge, KnowledgeError};
use crate::span::Span;
use crate::value::{Value, VarId};

/// A peer's address: the role it plays (or is addressed as) and its id.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerRef {
    /// The role.
    pub role: Value,
    /// The id.
    pub id: Value,
}

/// A message between peers.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// Sender (its role at the time of sending, and id).
    pub from: PeerRef,
    /// Recipient (the role as the sender named it, and id).
    pub to: PeerRef,
    /// The message term.
    pub body: Value,
}

/// What a call to [`Peer::step`] or [`Peer::timeout`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// At least one event fired; now no event can fire (or the step budget ran out).
    Progressed,
    /// No event could fire: waiting for a message or for a constraint to hold.
    Waiting,
    /// The peer's clause is finished.
    Closed,
    /// [`Peer::timeout`] abandoned the interaction; the peer is back in its initial role.
    TimedOut,
}

/// Sizes of a peer's state, to check that it stays bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Cells in the binding store.
    pub cells: usize,
    /// Nodes of the state tree.
    pub nodes: usize,
    /// Messages waiting in the inbox.
    pub inbox: usize,
}

#[derive(Debug)]
struct Frame {
    clause: u32,
    base: u32,
    /// The role's value, kept when it was ground on entry (see [`entered_role`]): it stays the
    /// role's value for as long as the frame lives, so a send need not build it again.
    role: Option<Value>,
    inner: St,
}

#[derive(Debug)]
enum St {
    Init(NodeId),
    Then(Box<Self>, NodeId),
    Par(Box<Self>, Box<Self>),
    Role(Box<Frame>),
    Closed,
}

/// Boxes of finished states kept for the next ones: an event that enters a role or starts a
/// `then` would otherwise allocate a box and free another. A spare box holds an empty state
/// (`role: None`, `inner: Closed`; `Closed`), so reusing it drops nothing.
// The boxes themselves are what is kept.
#[allow(clippy::vec_box)]
#[derive(Debug, Default)]
struct Spare {
    frames: Vec<Box<Frame>>,
    sts: Vec<Box<St>>,
}

/// Most boxes of each kind a peer keeps spare.
const SPARE_MAX: usize = 8;

impl Spare {
    fn frame(&mut self, f: Frame) -> Box<Frame> {
        match self.frames.pop() {
            Some(mut b) => {
                // A spare box holds an empty frame: nothing to drop.
                std::mem::forget(std::mem::replace(&mut *b, f));
                b
            }
            None => Box::new(f),
        }
    }

    fn st(&mut self, s: St) -> Box<St> {
        match self.sts.pop() {
            Some(mut b) => {
                // A spare box holds `Closed`: nothing to drop.
                std::mem::forget(std::mem::replace(&mut *b, s));
                b
            }
            None => Box::new(s),
        }
    }

    fn keep_frame(&mut self, mut b: Box<Frame>) {
        if self.frames.len() < SPARE_MAX {
            b.role = None;
            b.inner = St::Closed;
            self.frames.push(b);
        }
    }

    fn keep_st(&mut self, mut b: Box<St>) {
        if self.sts.len() < SPARE_MAX {
            *b = St::Closed;
            self.sts.push(b);
        }
    }

    /// `a` and `b` in parallel (either alone when the other is closed).
    fn par(&mut self, a: St, b: St) -> St {
        match (a, b) {
            (St::Closed, x) | (x, St::Closed) => x,
            (a, b) => St::Par(self.st(a), self.st(b)),
        }
    }
}

#[derive(Clone, Copy)]
struct FrameRef<'r> {
    clause: u32,
    base: u32,
    /// [`Frame::role`].
    role: Option<&'r Value>,
}

/// Default bound of a peer's inbox.
pub const DEFAULT_INBOX_CAPACITY: usize = 1024;
/// Deepest nesting of role changes that are not in tail position (each one keeps its caller's
/// clause alive); beyond it a role change is a runtime error rather than unbounded growth.
pub const MAX_ROLE_DEPTH: usize = 256;
/// Default number of events one [`Peer::step`] may fire before it yields.
pub const DEFAULT_STEP_BUDGET: usize = 10_000;

/// A peer playing a role of a [`Program`].
#[derive(Debug)]
pub struct Peer {
    program: Arc<Program>,
    initial_role: Value,
    /// The clauses the initial role selects.
    initial_clauses: Box<[u32]>,
    id: Value,
    store: Store,
    root: St,
    inbox: VecDeque<Envelope>,
    inbox_capacity: usize,
    dropped: u64,
    events: u64,
    budget: usize,
    live_cells: usize,
    /// A constraint call's arguments, kept between calls to save an allocation per call.
    args: Vec<Value>,
    /// [`Cx::probe`]'s buffer (empty between steps).
    probe: Vec<u32>,
    spare: Spare,
}

impl Peer {
    /// A peer with id `id` starting in `role` (unified with the clause heads for its name and
    /// arity; the first that unifies is used).
    ///
    /// # Errors
    /// [`RuntimeError::NoClause`] if no clause matches.
    pub fn new(program: Arc<Program>, role: Value, id: Value) -> Result<Self, Error> {
        let initial_clauses = program.clauses_for(&role).collect();
        let mut p = Self {
            program,
            initial_role: role,
            initial_clauses,
            id,
            store: Store::default(),
            root: St::Closed,
            inbox: VecDeque::new(),
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            dropped: 0,
            events: 0,
            budget: DEFAULT_STEP_BUDGET,
            live_cells: 0,
            args: Vec::new(),
            probe: Vec::new(),
            spare: Spare::default(),
        };
        p.root = p.start_state()?;
        Ok(p)
    }

    fn start_state(&mut self) -> Result<St, Error> {
        self.store.clear();
        let prog = Arc::clone(&self.program);
        for &c in &self.initial_clauses {
            let cl = &prog.clauses[c as usize];
            let m = self.store.mark();
            let base = self.store.alloc(cl.nvars);
            let mut map = HashMap::new();
            let want_role = self.store.import(&self.initial_role, &mut map);
            let want_id = self.store.import(&self.id, &mut map);
            if self.store.unify_tpl(&cl.role, base, &want_role)
                && self.store.unify_tpl(&cl.id, base, &want_id)
            {
                self.store.commit();
                return Ok(St::Role(self.spare.frame(Frame {
                    clause: c,
                    base,
                    role: None,
                    inner: St::Init(cl.body),
                })));
            }
            self.store.undo(m);
        }
        let e = RuntimeError::NoClause {
            role: self.initial_role.to_string(),
            agent: self.id.to_string(),
        };
        Err(Error::new(e, Span::default()))
    }

    /// Sets the inbox bound (at least 1); when full, the oldest message is dropped and counted.
    pub fn set_inbox_capacity(&mut self, cap: usize) {
        self.inbox_capacity = cap.max(1);
    }

    /// Sets how many events one [`Peer::step`] may fire before returning (at least 1).
    pub fn set_step_budget(&mut self, budget: usize) {
        self.budget = budget.max(1);
    }

    /// The peer's id.
    #[must_use]
    pub fn id(&self) -> &Value {
        &self.id
    }

    /// The program the peer runs.
    #[must_use]
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The role the peer started in (and returns to on [`Peer::timeout`]).
    #[must_use]
    pub fn initial_role(&self) -> &Value {
        &self.initial_role
    }

    /// The role the peer is playing now: that of the innermost clause instance in progress
    /// (with current bindings); the initial role once closed.
    #[must_use]
    pub fn role(&self) -> Value {
        match self.innermost() {
            Some(Frame { role: Some(r), .. }) => r.clone(),
            Some(f) => {
                let cl = &self.program.clauses[f.clause as usize];
                self.store.inst_resolved(&cl.role, f.base)
            }
            None => self.initial_role.clone(),
        }
    }

    /// The name of [`Peer::role`] (the functor of the role), without building the role.
    #[must_use]
    pub fn role_name(&self) -> Option<&str> {
        match self.innermost() {
            Some(f) => self.program.clauses[f.clause as usize].role.v.name(),
            None => self.initial_role.name(),
        }
    }

    /// The innermost clause instance in progress.
    fn innermost(&self) -> Option<&Frame> {
        let mut cur = &self.root;
        let mut found: Option<&Frame> = None;
        loop {
            match cur {
                St::Role(f) => {
                    found = Some(f);
                    cur = &f.inner;
                }
                St::Then(l, _) => cur = l,
                St::Par(a, b) => cur = if matches!(**a, St::Closed) { b } else { a },
                St::Init(_) | St::Closed => break,
            }
        }
        found
    }

    /// Is the peer's clause finished?
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.root, St::Closed)
    }

    /// Events fired since the peer was made.
    #[must_use]
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Messages dropped because the inbox was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Messages waiting in the inbox.
    #[must_use]
    pub fn inbox(&self) -> &VecDeque<Envelope> {
        &self.inbox
    }

    /// Sizes of the state.
    #[must_use]
    pub fn footprint(&self) -> Footprint {
        Footprint {
            cells: self.store.cells.len(),
            nodes: count(&self.root),
            inbox: self.inbox.len(),
        }
    }

    /// Puts a message in the inbox. When the inbox is full the oldest message is dropped (and
    /// counted in [`Peer::dropped`]); returns `false` then.
    pub fn deliver(&mut self, env: Envelope) -> bool {
        let mut kept = true;
        if self.inbox.len() >= self.inbox_capacity {
            self.inbox.pop_front();
            self.dropped += 1;
            kept = false;
        }
        self.inbox.push_back(env);
        kept
    }

    /// What a receive that waited too long does: the interaction in progress is abandoned and the
    /// peer restarts in its initial role with fresh variables (the inbox is kept).
    ///
    /// # Errors
    /// Only if the initial role has no clause, which [`Peer::new`] already ruled out.
    pub fn timeout(&mut self) -> Result<Status, Error> {
        self.root = self.start_state()?;
        self.live_cells = self.store.cells.len();
        Ok(Status::TimedOut)
    }

    /// Starts the peer afresh, as [`Peer::new`] with the same program, role and id would, but
    /// reusing its buffers: initial role, fresh variables, empty inbox, counters at zero (the
    /// inbox bound and step budget are kept).
    ///
    /// # Errors
    /// Only if the initial role has no clause, which [`Peer::new`] already ruled out; the peer is
    /// then unchanged but for its store.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.root = self.start_state()?;
        self.inbox.clear();
        self.dropped = 0;
        self.events = 0;
        self.live_cells = 0;
        Ok(())
    }

    /// Fires events until none can fire (or the step budget is spent), appending sent messages to
    /// `out`. Constraints are solved by `knowledge`; unbound recipients by `directory`.
    ///
    /// # Errors
    /// A runtime error (unknown predicate, comparison of non-numbers, role without clause), with
    /// the span of the call and the peer's id and role. The peer's state is as before the event
    /// that failed.
    pub fn step(
        &mut self,
        knowledge: &mut dyn Knowledge,
        directory: &mut dyn Directory,
        out: &mut Vec<Envelope>,
    ) -> Result<Status, Error> {
        if self.is_closed() {
            return Ok(Status::Closed);
        }
        let mut fired = 0;
        let mut result = Ok(());
        self.probe.clear();
        {
            let mut cx = Cx {
                prog: &self.program,
                store: &mut self.store,
                inbox: &mut self.inbox,
                k: knowledge,
                d: directory,
                out,
                id: &self.id,
                probe: &mut self.probe,
                spare: &mut self.spare,
                args: &mut self.args,
                depth: 0,
            };
            while fired < self.budget {
                let m = cx.store.mark();
                let root = FrameRef {
                    clause: u32::MAX,
                    base: 0,
                    role: None,
                };
                match cx.advance(&mut self.root, root) {
                    Ok(true) => {
                        cx.store.commit();
                        fired += 1;
                        if matches!(self.root, St::Closed) {
                            break;
                        }
                    }
                    Ok(false) => {
                        cx.store.undo(m);
                        cx.store.commit();
                        break;
                    }
                    Err(e) => {
                        cx.store.undo(m);
                        cx.store.commit();
                        result = Err(*e);
                        break;
                    }
                }
            }
        }
        self.events += fired as u64;
        if self.store.cells.len() > 2 * self.live_cells + 256 {
            self.gc();
        }
        result?;
        Ok(if self.is_closed() {
            Status::Closed
        } else if fired > 0 {
            Status::Progressed
        } else {
            Status::Waiting
        })
    }

    /// Mark-compact collection of the store: keeps the frames in the state tree and every cell
    /// their values reach, renumbered from 0.
    fn gc(&mut self) {
        let mut frames = Vec::new();
        collect_frames(&self.root, &self.program, &mut frames);
        let old = std::mem::take(&mut self.store.cells);
        let mut map = vec![u32::MAX; old.len()];
        let mut queue: Vec<u32> = Vec::new();
        for &(base, n) in &frames {
            for i in base..base + n {
                if let Some(slot) = map.get_mut(i as usize) {
                    if *slot == u32::MAX {
                        *slot = u32::try_from(queue.len()).unwrap_or(u32::MAX);
                        queue.push(i);
                    }
                }
            }
        }
        let mut k = 0;
        while k < queue.len() {
            if let Some(Some(v)) = old.get(queue[k] as usize) {
                let mut stack = vec![v];
                while let Some(v) = stack.pop() {
                    if v.is_ground() {
                        continue;
                    }
                    match v {
                        Value::Var(id) => {
                            if let Some(slot) = map.get_mut(*id as usize) {
                                if *slot == u32::MAX {
                                    *slot = u32::try_from(queue.len()).unwrap_or(u32::MAX);
                                    queue.push(*id);
                                }
                            }
                        }
                        Value::Compound(c) => stack.extend(c.args.iter()),
                        Value::Cons(c) => {
                            stack.push(&c.head);
                            stack.push(&c.tail);
                        }
                        _ => {}
                    }
                }
            }
            k += 1;
        }
        // The store keeps its capacity: it grows back at once as the peer goes on.
        let mut cells = Vec::with_capacity(old.capacity());
        cells.extend(queue.iter().map(|&i| {
            old.get(i as usize).and_then(Option::as_ref).map(|v| {
                if v.is_ground() {
                    v.clone()
                } else {
                    v.map_vars(&mut |id| Value::Var(map[id as usize]))
                }
            })
        }));
        self.store.cells = cells;
        rebase(&mut self.root, &map);
        self.live_cells = self.store.cells.len();
    }
}

fn count(st: &St) -> usize {
    match st {
        St::Init(_) | St::Closed => 1,
        St::Then(l, _) => 1 + count(l),
        St::Par(a, b) => 1 + count(a) + count(b),
        St::Role(f) => 1 + count(&f.inner),
    }
}

fn collect_frames(st: &St, prog: &Program, out: &mut Vec<(u32, u32)>) {
    match st {
        St::Init(_) | St::Closed => {}
        St::Then(l, _) => collect_frames(l, prog, out),
        St::Par(a, b) => {
            collect_frames(a, prog, out);
            collect_frames(b, prog, out);
        }
        St::Role(f) => {
            out.push((f.base, prog.clauses[f.clause as usize].nvars));
            collect_frames(&f.inner, prog, out);
        }
    }
}

fn rebase(st: &mut St, map: &[u32]) {
    match st {
        St::Init(_) | St::Closed => {}
        St::Then(l, _) => rebase(l, map),
        St::Par(a, b) => {
            rebase(a, map);
            rebase(b, map);
        }
        St::Role(f) => {
            f.base = map
                .get(f.base as usize)
                .copied()
                .filter(|&b| b != u32::MAX)
                .unwrap_or(0);
            rebase(&mut f.inner, map);
        }
    }
}

/// A result of the interpreter's inner functions: the error is boxed, so that the results the
/// recursion passes around stay small (an [`Error`] is over a hundred bytes; errors are rare).
type Fallible<T> = std::result::Result<T, Box<Error>>;

/// Everything an event needs, borrowed from the peer for one step.
struct Cx<'a> {
    prog: &'a Program,
    store: &'a mut Store,
    inbox: &'a mut VecDeque<Envelope>,
    k: &'a mut dyn Knowledge,
    d: &'a mut dyn Directory,
    out: &'a mut Vec<Envelope>,
    id: &'a Value,
    /// Clauses entered since the last event in this attempt (a second entry is a busy loop).
    probe: &'a mut Vec<u32>,
    /// The peer's spare boxes.
    spare: &'a mut Spare,
    /// Role frames around the node being advanced.
    depth: usize,
    /// The peer's buffer for a constraint call's arguments (empty between calls).
    args: &'a mut Vec<Value>,
}

/// Whether `role_v`, a role that clause `cl`'s head has just unified with, is the value of that
/// head from now on: it is ground (every variable of the head is bound to a part of it, for as
/// long as the frame lives) and the head has no float constant (`0.0` unifies with `-0.0`, so
/// the head's own constant could differ from the caller's).
fn entered_role(cl: &CClause, role_v: &Value) -> bool {
    role_v.is_ground() && !cl.role_has_float
}

/// Whether unifying `v` (a predicate's argument) with `o` (what the predicate returned for it)
/// would succeed without binding anything, seen without the unifier: `o` is the same shared
/// ground term, the same atom or string, an equal integer or float, or both are `[]`. (`false`
/// does not mean that the unification fails.)
fn returned_as_is(v: &Value, o: &Value) -> bool {
    match (v, o) {
        (Value::Compound(x), Value::Compound(y)) => Arc::ptr_eq(x, y) && v.is_ground(),
        (Value::Cons(x), Value::Cons(y)) => Arc::ptr_eq(x, y) && v.is_ground(),
        (Value::Atom(x), Value::Atom(y)) | (Value::Str(x), Value::Str(y)) => Arc::ptr_eq(x, y),
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Nil, Value::Nil) => true,
        _ => false,
    }
}

/// An atom role pattern addresses any role of that name (`underloaded` matches a peer in
/// `underloaded(5)`); otherwise the roles must unify.
fn role_matches(store: &mut Store, pat: &Value, actual: &Value) -> bool {
    let p = store.deref(pat);
    if let (Value::Atom(a), Some(n)) = (p, actual.name()) {
        if **a == *n {
            return true;
        }
    }
    let p = p.clone();
    store.unify(&p, actual)
}

/// `v`, from a message, moved into `store` ([`Store::import`], through the map made on first
/// use); a ground value (the common case) is read where it is, as importing it would clone it.
fn imported<'v>(
    store: &mut Store,
    v: &'v Value,
    map: &mut Option<HashMap<VarId, VarId>>,
) -> Cow<'v, Value> {
    if v.is_ground() {
        Cow::Borrowed(v)
    } else {
        Cow::Owned(store.import(v, map.get_or_insert_with(HashMap::new)))
    }
}

/// The state after an event that finishes its node (`Some(Closed)`), or `None`: without the
/// `Closed` that `bool::then_some` would build and then drop.
fn closed_if(fired: bool) -> Option<St> {
    if fired {
        Some(St::Closed)
    } else {
        None
    }
}

impl Cx<'_> {
    /// Tries to fire one event in `st`; on `Ok(false)` nothing changed (bindings included, once
    /// the caller undoes to its mark).
    fn advance(&mut self, st: &mut St, fr: FrameRef<'_>) -> Fallible<bool> {
        match st {
            St::Closed => Ok(false),
            St::Init(n) => match self.start(*n, fr, false)? {
                Some(next) => {
                    // `st` is `Init`: nothing to drop (forgetting it spares a call to the drop
                    // glue for every event).
                    std::mem::forget(std::mem::replace(st, next));
                    Ok(true)
                }
                None => Ok(false),
            },
            St::Then(left, right) => {
                if !self.advance(left, fr)? {
                    return Ok(false);
                }
                if matches!(**left, St::Closed) {
                    let right = *right;
                    if let St::Then(left, _) = std::mem::replace(st, St::Init(right)) {
                        self.spare.keep_st(left);
                    }
                }
                Ok(true)
            }
            St::Par(a, b) => {
                let fired = self.advance(a, fr)? || self.advance(b, fr)?;
                if fired && (matches!(**a, St::Closed) || matches!(**b, St::Closed)) {
                    if let St::Par(mut a, mut b) = std::mem::replace(st, St::Closed) {
                        let av = std::mem::replace(&mut *a, St::Closed);
                        let bv = std::mem::replace(&mut *b, St::Closed);
                        self.spare.keep_st(a);
                        self.spare.keep_st(b);
                        *st = self.spare.par(av, bv);
                    }
                }
                Ok(fired)
            }
            St::Role(f) => {
                let Frame {
                    clause,
                    base,
                    role,
                    inner,
                } = &mut **f;
                let inner_fr = FrameRef {
                    clause: *clause,
                    base: *base,
                    role: role.as_ref(),
                };
                self.depth += 1;
                let fired = self.advance(inner, inner_fr);
                self.depth -= 1;
                if !fired? {
                    return Ok(false);
                }
                let next = match &mut f.inner {
                    St::Closed => St::Closed,
                    // A role change in tail position: the callee replaces the caller.
                    inner @ St::Role(_) => std::mem::replace(inner, St::Closed),
                    _ => return Ok(true),
                };
                if let St::Role(f) = std::mem::replace(st, next) {
                    self.spare.keep_frame(f);
                }
                Ok(true)
            }
        }
    }

    /// Tries to fire the first event of a not-yet-started node; returns the state after it.
    /// `probing` is set while choosing an `or` branch: a role change then counts as able to fire
    /// only if the new clause's first event fires; otherwise entering the role is itself a step.
    fn start(
        &mut self,
        mut n: NodeId,
        fr: FrameRef<'_>,
        mut probing: bool,
    ) -> Fallible<Option<St>> {
        let prog = self.prog;
        // (A loop only for `or`, which goes on with its second branch: a tail call.)
        loop {
            return match &prog.nodes[n as usize] {
                Node::Send {
                    msg,
                    role,
                    id,
                    guard,
                    ..
                } => Ok(closed_if(self.send(msg, role, id, guard.as_ref(), fr)?)),
                Node::Recv {
                    msg,
                    role,
                    id,
                    guard,
                    ..
                } => Ok(closed_if(self.recv(msg, role, id, guard.as_ref(), fr)?)),
                Node::Null { guard } => {
                    let m = self.store.mark();
                    if self.eval(guard, fr)? {
                        Ok(Some(St::Closed))
                    } else {
                        self.store.undo(m);
                        Ok(None)
                    }
                }
                Node::Then(a, b) => Ok(match self.start(*a, fr, probing)? {
                    None => None,
                    Some(St::Closed) => Some(St::Init(*b)),
                    Some(s) => Some(St::Then(self.spare.st(s), *b)),
                }),
                Node::Or(a, b) => {
                    if let Some(s) = self.start(*a, fr, true)? {
                        return Ok(Some(s));
                    }
                    n = *b;
                    probing = true;
                    continue;
                }
                Node::Par(a, b) => {
                    if let Some(s) = self.start(*a, fr, probing)? {
                        return Ok(Some(self.spare.par(s, St::Init(*b))));
                    }
                    Ok(match self.start(*b, fr, probing)? {
                        Some(s) => Some(self.spare.par(St::Init(*a), s)),
                        None => None,
                    })
                }
                Node::Call {
                    role,
                    id,
                    guard,
                    span,
                } => self.call(n, role, id, guard.as_ref(), *span, fr, probing),
            };
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        n: NodeId,
        role: &Tpl,
        id: &Tpl,
        guard: Option<&CCons>,
        span: Span,
        fr: FrameRef<'_>,
        probing: bool,
    ) -> Fallible<Option<St>> {
        let m = self.store.mark();
        if let Some(g) = guard {
            if !self.eval(g, fr)? {
                self.store.undo(m);
                return Ok(None);
            }
        }
        let role_v = self.role_value(n, role, fr);
        if self.depth >= MAX_ROLE_DEPTH {
            self.store.undo(m);
            let role_called = role_v.to_string();
            return Err(
                self.rt_error(fr, span, |agent, role| RuntimeError::TooDeep {
                    role_called,
                    limit: MAX_ROLE_DEPTH,
                    agent,
                    role,
                }),
            );
        }
        let prog = self.prog;
        let dynamic: Vec<u32>;
        let clauses = match prog.call_clauses(n) {
            Some(list) => list,
            None => {
                dynamic = prog.clauses_for(&role_v).collect();
                &dynamic
            }
        };
        let mut any = false;
        for &c in clauses {
            any = true;
            if self.probe.contains(&c) {
                continue;
            }
            let cl = &prog.clauses[c as usize];
            let m2 = self.store.mark();
            let base = self.store.alloc(cl.nvars);
            if self.store.unify_tpl(&cl.role, base, &role_v)
                && self.store.unify_tpls(&cl.id, base, id, fr.base)
            {
                let keep = entered_role(cl, &role_v);
                if !probing {
                    let inner = St::Init(cl.body);
                    return Ok(Some(St::Role(self.spare.frame(Frame {
                        clause: c,
                        base,
                        role: keep.then_some(role_v),
                        inner,
                    }))));
                }
                self.probe.push(c);
                let callee = FrameRef {
                    clause: c,
                    base,
                    role: keep.then_some(&role_v),
                };
                let r = self.start(cl.body, callee, true);
                self.probe.pop();
                if let Some(inner) = r? {
                    return Ok(Some(match inner {
                        St::Closed => St::Closed,
                        inner => St::Role(self.spare.frame(Frame {
                            clause: c,
                            base,
                            role: keep.then_some(role_v),
                            inner,
                        })),
                    }));
                }
            }
            self.store.undo(m2);
        }
        self.store.undo(m);
        if any {
            Ok(None)
        } else {
            let e = RuntimeError::NoClause {
                role: role_v.to_string(),
                agent: self.id.to_string(),
            };
            Err(Box::new(Error::new(e, span)))
        }
    }

    /// `inst_resolved(role, fr.base)` for role change `n`. A role written as the frame's own
    /// head (`a(bidder(Cap), H)` in `bidder(Cap)`'s clause) is the frame's role: its kept value is
    /// shared instead of built again (the same template in the same frame, without a float
    /// constant that could unify with another, gives an equal value).
    fn role_value(&self, n: NodeId, role: &Tpl, fr: FrameRef<'_>) -> Value {
        if let Some(r) = fr.role {
            if self.prog.own_role(n) == Some(fr.clause) {
                return r.clone();
            }
        }
        self.store.inst_resolved(role, fr.base)
    }

    fn current_role(&self, fr: FrameRef<'_>) -> Value {
        if let Some(r) = fr.role {
            return r.clone();
        }
        match self.prog.clauses.get(fr.clause as usize) {
            Some(cl) => self.store.inst_resolved(&cl.role, fr.base),
            None => Value::atom("?"),
        }
    }

    fn send(
        &mut self,
        msg: &Tpl,
        role: &Tpl,
        id: &Tpl,
        guard: Option<&CCons>,
        fr: FrameRef<'_>,
    ) -> Fallible<bool> {
        let m = self.store.mark();
        if let Some(g) = guard {
            if !self.eval(g, fr)? {
                self.store.undo(m);
                return Ok(false);
            }
        }
        let body = self.store.inst_resolved(msg, fr.base);
        let to_role = self.store.inst_resolved(role, fr.base);
        // The recipient's id is unbound only if its template is a variable (an instance of
        // anything else is not a variable).
        let unbound_id = match id.v {
            Value::Var(s) => match self.store.deref(&Value::Var(fr.base + s)) {
                Value::Var(v) => Some(*v),
                _ => None,
            },
            _ => None,
        };
        if let Some(v) = unbound_id {
            match self.d.resolve(&to_role, &body) {
                Some(x) => {
                    let x = self.store.sanitize(x);
                    if !self.store.unify(&Value::Var(v), &x) {
                        self.store.undo(m);
                        return Ok(false);
                    }
                }
                None => {
                    self.store.undo(m);
                    return Ok(false);
                }
            }
        }
        let to_id = self.store.inst_resolved(id, fr.base);
        let from_role = self.current_role(fr);
        // Unbound variables leave the peer numbered from 0 in order of appearance, so that a
        // message does not depend on the sender's store layout.
        let mut map = None;
        let mut canon = |v: Value| {
            if v.is_ground() {
                return v;
            }
            let map = map.get_or_insert_with(HashMap::new);
            v.map_vars(&mut |id| {
                let n = u32::try_from(map.len()).unwrap_or(u32::MAX);
                Value::Var(*map.entry(id).or_insert(n))
            })
        };
        let body = canon(body);
        let to = PeerRef {
            role: canon(to_role),
            id: canon(to_id),
        };
        let from = PeerRef {
            role: canon(from_role),
            id: self.id.clone(),
        };
        self.out.push(Envelope { from, to, body });
        Ok(true)
    }

    fn recv(
        &mut self,
        msg: &Tpl,
        role: &Tpl,
        id: &Tpl,
        guard: Option<&CCons>,
        fr: FrameRef<'_>,
    ) -> Fallible<bool> {
        if self.inbox.is_empty() {
            return Ok(false);
        }
        let role_pat = self.store.inst_resolved(role, fr.base);
        for i in 0..self.inbox.len() {
            let env = &self.inbox[i];
            // A message of another name cannot match: skip it without importing it.
            if self.store.functors_differ(msg, fr.base, &env.body) {
                continue;
            }
            let m = self.store.mark();
            let mut map = None;
            let body = imported(self.store, &env.body, &mut map);
            let ok = self.store.unify_tpl(msg, fr.base, &body) && {
                let from_role = imported(self.store, &env.from.role, &mut map);
                let from_id = imported(self.store, &env.from.id, &mut map);
                role_matches(self.store, &role_pat, &from_role)
                    && self.store.unify_tpl(id, fr.base, &from_id)
            };
            let ok = ok
                && match guard {
                    Some(g) => match self.eval(g, fr) {
                        Ok(b) => b,
                        Err(e) => {
                            self.store.undo(m);
                            return Err(e);
                        }
                    },
                    None => true,
                };
            if ok {
                self.inbox.remove(i);
                return Ok(true);
            }
            self.store.undo(m);
        }
        Ok(false)
    }

    fn rt_error(
        &self,
        fr: FrameRef<'_>,
        span: Span,
        f: impl FnOnce(String, String) -> RuntimeError,
    ) -> Box<Error> {
        let e = f(self.id.to_string(), self.current_role(fr).to_string());
        Box::new(Error {
            kind: ErrorKind::Runtime(e),
            span,
        })
    }

    /// Asks [`Knowledge`] for predicate `name` with `vals` and unifies the values it returns.
    fn call_pred(
        &mut self,
        name: &str,
        vals: &[Value],
        span: Span,
        fr: FrameRef<'_>,
    ) -> Fallible<bool> {
        let failed = |cx: &Self, message: String| {
            cx.rt_error(fr, span, |agent, role| RuntimeError::Predicate {
                name: name.to_string(),
                arity: vals.len(),
                message,
                agent,
                role,
            })
        };
        match self.k.solve(name, vals) {
            Ok(None) => Ok(false),
            Ok(Some(outs)) => {
                if outs.len() != vals.len() {
                    let message = format!(
                        "returned {} values for {} arguments",
                        outs.len(),
                        vals.len()
                    );
                    return Err(failed(self, message));
                }
                for (v, o) in vals.iter().zip(outs) {
                    // An argument handed back as it came unifies with itself, binding nothing.
                    if returned_as_is(v, &o) {
                        continue;
                    }
                    let o = self.store.sanitize(o);
                    if !self.store.unify(v, &o) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Err(KnowledgeError::Unknown) => {
                Err(
                    self.rt_error(fr, span, |agent, role| RuntimeError::UnknownPredicate {
                        name: name.to_string(),
                        arity: vals.len(),
                        agent,
                        role,
                    }),
                )
            }
            Err(KnowledgeError::Failed(message)) => Err(failed(self, message)),
        }
    }

    /// Evaluates a constraint. On `Ok(false)` the caller undoes to its mark.
    fn eval(&mut self, c: &CCons, fr: FrameRef<'_>) -> Fallible<bool> {
        match c {
            CCons::Call { name, args, span } => {
                match (&**name, args.len()) {
                    ("true", 0) => return Ok(true),
                    ("fail" | "false", 0) => return Ok(false),
                    _ => {}
                }
                let mut vals = std::mem::take(self.args);
                vals.extend(args.iter().map(|a| self.store.inst_resolved(a, fr.base)));
                let r = self.call_pred(name, &vals, *span, fr);
                vals.clear();
                *self.args = vals;
                r
            }
            CCons::Cmp { op, l, r, span } => match op {
                CmpOp::Unify => Ok(self.store.unify_tpls(l, fr.base, r, fr.base)),
                CmpOp::NotUnify => {
                    let m = self.store.mark();
                    let u = self.store.unify_tpls(l, fr.base, r, fr.base);
                    self.store.undo(m);
                    Ok(!u)
                }
                CmpOp::Eq | CmpOp::NotEq => {
                    let a = self.store.inst_resolved(l, fr.base);
                    let b = self.store.inst_resolved(r, fr.base);
                    Ok((a == b) == matches!(op, CmpOp::Eq))
                }
                CmpOp::Lt | CmpOp::Gt | CmpOp::Le | CmpOp::Ge => {
                    let a = self.store.inst_resolved(l, fr.base);
                    let b = self.store.inst_resolved(r, fr.base);
                    let ord = match (&a, &b) {
                        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
                        _ => match (a.as_f64(), b.as_f64()) {
                            (Some(x), Some(y)) => x.partial_cmp(&y),
                            _ => None,
                        },
                    };
                    let Some(ord) = ord else {
                        let message = format!(
                            "`{a} {} {b}` compares values that are not numbers",
                            op.as_str()
                        );
                        return Err(self.rt_error(fr, *span, |agent, role| RuntimeError::Type {
                            message,
                            agent,
                            role,
                        }));
                    };
                    Ok(match op {
                        CmpOp::Lt => ord.is_lt(),
                        CmpOp::Gt => ord.is_gt(),
                        CmpOp::Le => ord.is_le(),
                        _ => ord.is_ge(),
                    })
                }
            },
            CCons::Not(x) => {
                let m = self.store.mark();
                let r = self.eval(x, fr)?;
                self.store.undo(m);
                Ok(!r)
            }
            CCons::And(a, b) => Ok(self.eval(a, fr)? && self.eval(b, fr)?),
            CCons::Or(a, b) => {
                let m = self.store.mark();
                if self.eval(a, fr)? {
                    return Ok(true);
                }
                self.store.undo(m);
                self.eval(b, fr)
            }
        }
    }
}
