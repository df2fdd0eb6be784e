//! What an agent knows of its peers: the [`View`] a driver gives the core.
//!
//! The core decides with its own host's load, which it holds, and with what it knows of the
//! others, which it asks the view for. The daemon's view is the membership records that SWIM
//! spreads (role, load, utilisation history, scored by the stability model); the replay's view is
//! the same information read exactly and at once from the simulated fleet. Everything a `.lcc`
//! text can learn about another host passes through here.

use keel_lcc::Value;

/// A VM's needs, as the `Need` term of the interaction models carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// CPU (absolute units of the host capacities).
    pub cpu: f64,
    /// Memory in use (MiB; 0 where unmeasured).
    pub mem: f64,
    /// The VM.
    pub vm: Value,
    /// Offered by a host emptying itself (consolidation) rather than an overloaded one.
    pub drain: bool,
    /// CPU one of its virtual CPUs needs (a host whose cores are slower cannot run it).
    pub pe_cpu: f64,
    /// Its CPU demand at the last measurements (absolute units, oldest first); empty when the
    /// sender keeps none. Carried as a sixth argument only when present.
    pub hist: Vec<f64>,
}

impl Need {
    /// The term `need(Cpu, Mem, Vm, Kind, PeCpu)`, or `need(Cpu, Mem, Vm, Kind, PeCpu, Hist)`
    /// with the VM's CPU history as a list of numbers.
    pub fn to_value(&self) -> Value {
        let mut args = vec![
            Value::Float(self.cpu),
            Value::Float(self.mem),
            self.vm.clone(),
            Value::atom(if self.drain { "drain" } else { "over" }),
            Value::Float(self.pe_cpu),
        ];
        if !self.hist.is_empty() {
            args.push(Value::list(
                self.hist.iter().map(|&c| Value::Float(c)).collect(),
            ));
        }
        Value::compound("need", args)
    }

    /// Reads a `need/5` or `need/6` term; `None` for anything else.
    pub fn parse(v: &Value) -> Option<Self> {
        let a = v.args();
        if v.name() != Some("need") || !(5..=6).contains(&a.len()) {
            return None;
        }
        // Read in place (no copy of the items): this runs for every message that carries a need.
        let hist = match a.get(5) {
            Some(h) => h.map_list(Value::as_f64)?,
            None => Vec::new(),
        };
        Some(Self {
            cpu: a[0].as_f64()?,
            mem: a[1].as_f64()?,
            vm: a[2].clone(),
            drain: a[3].as_atom()? == "drain",
            pe_cpu: a[4].as_f64()?,
            hist,
        })
    }
}

/// What the core tells the view about its own host after every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published<'a> {
    /// Planned CPU (load plus reservations minus VMs promised away).
    pub cpu: f64,
    /// Planned memory, MiB.
    pub mem: f64,
    /// The role the interaction model plays now (its name).
    pub role: &'a str,
    /// Emptying itself this interval.
    pub draining: bool,
    /// VMs planned on the host.
    pub vms: usize,
}

/// The answer to a send whose recipient is unbound.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// This peer.
    Peer(Value),
    /// Not yet: the send waits (the fleet's roles are still being taken).
    Wait,
    /// Nobody can take it.
    Nobody,
}

/// What an agent knows of its peers. Every method is a question the core asks while an
/// interaction model runs; `me` is the asking agent's id.
pub trait View {
    /// The best peer playing `role` for a VM with `need`, not one of `exclude` (already tried).
    fn resolve(&mut self, me: &Value, role: &str, need: &Need, exclude: &[Value]) -> Resolved;

    /// Up to `k` peers playing `role` that could take `need`, best first (an auction's bidders).
    fn candidates(
        &mut self,
        me: &Value,
        role: &str,
        need: &Need,
        exclude: &[Value],
        k: usize,
    ) -> Vec<Value>;

    /// A request directed at `me` by [`View::resolve`] was answered (its CPU no longer pending).
    fn answered(&mut self, me: &Value, cpu: f64) {
        let _ = (me, cpu);
    }

    /// Whether the stability model scores `peer` unstable.
    fn unstable(&mut self, peer: &Value) -> bool;

    /// Whether `me` declines VMs because the model scores it unstable (where no discovery
    /// service ranks candidates, the receiver applies the model itself).
    fn declines(&mut self, me: &Value) -> bool {
        let _ = me;
        false
    }

    /// Whether a running host busier than `me`, not emptying itself, exists (to drain towards).
    fn busier_exists(&mut self, me: &Value, cpu: f64) -> bool;

    /// The next member of `me`'s local group (the next running host by id, cyclically).
    fn neighbour(&mut self, me: &Value) -> Option<Value>;

    /// Powers on a switched-off host that can take `need` up to `thr` of its CPU, reserving it.
    fn wake(&mut self, me: &Value, need: &Need, thr: f64) -> Option<Value> {
        let _ = (me, need, thr);
        None
    }

    /// The core's own state after a step.
    fn publish(&mut self, me: &Value, state: &Published<'_>);
}

/// One answer a [`View`] gave, as [`Recording`] keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewCall {
    /// [`View::resolve`].
    Resolve(Resolved),
    /// [`View::candidates`].
    Candidates(Vec<Value>),
    /// [`View::unstable`].
    Unstable(bool),
    /// [`View::declines`].
    Declines(bool),
    /// [`View::busier_exists`].
    Busier(bool),
    /// [`View::neighbour`].
    Neighbour(Option<Value>),
    /// [`View::wake`].
    Wake(Option<Value>),
}

/// A view that passes every question to `inner` and keeps the answers: with the events fed to
/// an agent, a complete record of what it was told.
#[derive(Debug)]
pub struct Recording<'v, V: View + ?Sized> {
    /// The view answering.
    pub inner: &'v mut V,
    /// Its answers, in order.
    pub calls: Vec<ViewCall>,
}

impl<V: View + ?Sized> View for Recording<'_, V> {
    fn resolve(&mut self, me: &Value, role: &str, need: &Need, exclude: &[Value]) -> Resolved {
        let r = self.inner.resolve(me, role, need, exclude);
        self.calls.push(ViewCall::Resolve(r.clone()));
        r
    }
    fn candidates(
        &mut self,
        me: &Value,
        role: &str,
        need: &Need,
        exclude: &[Value],
        k: usize,
    ) -> Vec<Value> {
        let r = self.inner.candidates(me, role, need, exclude, k);
        self.calls.push(ViewCall::Candidates(r.clone()));
        r
    }
    fn answered(&mut self, me: &Value, cpu: f64) {
        self.inner.answered(me, cpu);
    }
    fn unstable(&mut self, peer: &Value) -> bool {
        let r = self.inner.unstable(peer);
        self.calls.push(ViewCall::Unstable(r));
        r
    }
    fn declines(&mut self, me: &Value) -> bool {
        let r = self.inner.declines(me);
        self.calls.push(ViewCall::Declines(r));
        r
    }
    fn busier_exists(&mut self, me: &Value, cpu: f64) -> bool {
        let r = self.inner.busier_exists(me, cpu);
        self.calls.push(ViewCall::Busier(r));
        r
    }
    fn neighbour(&mut self, me: &Value) -> Option<Value> {
        let r = self.inner.neighbour(me);
        self.calls.push(ViewCall::Neighbour(r.clone()));
        r
    }
    fn wake(&mut self, me: &Value, need: &Need, thr: f64) -> Option<Value> {
        let r = self.inner.wake(me, need, thr);
        self.calls.push(ViewCall::Wake(r.clone()));
        r
    }
    fn publish(&mut self, me: &Value, state: &Published<'_>) {
        self.inner.publish(me, state);
    }
}

/// A view that answers from a record ([`Recording`]), in order: feeding an agent the same events
/// with it must ask the same questions. Questions that do not match the record are counted.
#[derive(Debug, Default)]
pub struct Scripted {
    calls: std::collections::VecDeque<ViewCall>,
    /// Questions asked that the record does not have next.
    pub mismatches: u64,
}

impl Scripted {
    /// A view that gives `calls`, in order.
    pub fn new(calls: Vec<ViewCall>) -> Self {
        Self {
            calls: calls.into(),
            mismatches: 0,
        }
    }

    /// Answers the record still holds (0 when the agent asked everything it was asked before).
    pub fn left(&self) -> usize {
        self.calls.len()
    }

    fn next(&mut self) -> Option<ViewCall> {
        let c = self.calls.pop_front();
        if c.is_none() {
            self.mismatches += 1;
        }
        c
    }
}

impl View for Scripted {
    fn resolve(&mut self, _me: &Value, _role: &str, _need: &Need, _exclude: &[Value]) -> Resolved {
        match self.next() {
            Some(ViewCall::Resolve(r)) => r,
            _ => {
                self.mismatches += 1;
                Resolved::Nobody
            }
        }
    }
    fn candidates(
        &mut self,
        _me: &Value,
        _role: &str,
        _need: &Need,
        _exclude: &[Value],
        _k: usize,
    ) -> Vec<Value> {
        match self.next() {
            Some(ViewCall::Candidates(r)) => r,
            _ => {
                self.mismatches += 1;
                Vec::new()
            }
        }
    }
    fn unstable(&mut self, _peer: &Value) -> bool {
        match self.next() {
            Some(ViewCall::Unstable(r)) => r,
            _ => {
                self.mismatches += 1;
                false
            }
        }
    }
    fn declines(&mut self, _me: &Value) -> bool {
        match self.next() {
            Some(ViewCall::Declines(r)) => r,
            _ => {
                self.mismatches += 1;
                false
            }
        }
    }
    fn busier_exists(&mut self, _me: &Value, _cpu: f64) -> bool {
        match self.next() {
            Some(ViewCall::Busier(r)) => r,
            _ => {
                self.mismatches += 1;
                false
            }
        }
    }
    fn neighbour(&mut self, _me: &Value) -> Option<Value> {
        match self.next() {
            Some(ViewCall::Neighbour(r)) => r,
            _ => {
                self.mismatches += 1;
                None
            }
        }
    }
    fn wake(&mut self, _me: &Value, _need: &Need, _thr: f64) -> Option<Value> {
        match self.next() {
            Some(ViewCall::Wake(r)) => r,
            _ => {
                self.mismatches += 1;
                None
            }
        }
    }
    fn publish(&mut self, _me: &Value, _state: &Published<'_>) {}
}
