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
}

impl Need {
    /// The term `need(Cpu, Mem, Vm, Kind, PeCpu)`.
    pub fn to_value(&self) -> Value {
        Value::compound(
            "need",
            vec![
                Value::Float(self.cpu),
                Value::Float(self.mem),
                self.vm.clone(),
                Value::atom(if self.drain { "drain" } else { "over" }),
                Value::Float(self.pe_cpu),
            ],
        )
    }

    /// Reads a `need/5` term; `None` for anything else.
    pub fn parse(v: &Value) -> Option<Self> {
        if v.name() != Some("need") || v.args().len() != 5 {
            return None;
        }
        let a = v.args();
        Some(Self {
            cpu: a[0].as_f64()?,
            mem: a[1].as_f64()?,
            vm: a[2].clone(),
            drain: a[3].as_atom()? == "drain",
            pe_cpu: a[4].as_f64()?,
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
    fn unstable(&self, peer: &Value) -> bool;

    /// Whether `me` declines VMs because the model scores it unstable (where no discovery
    /// service ranks candidates, the receiver applies the model itself).
    fn declines(&mut self, me: &Value) -> bool {
        let _ = me;
        false
    }

    /// Whether a running host busier than `me`, not emptying itself, exists (to drain towards).
    fn busier_exists(&self, me: &Value, cpu: f64) -> bool;

    /// The next member of `me`'s local group (the next running host by id, cyclically).
    fn neighbour(&self, me: &Value) -> Option<Value>;

    /// Powers on a switched-off host that can take `need` up to `thr` of its CPU, reserving it.
    fn wake(&mut self, me: &Value, need: &Need, thr: f64) -> Option<Value> {
        let _ = (me, need, thr);
        None
    }

    /// The core's own state after a step.
    fn publish(&mut self, me: &Value, state: &Published<'_>);
}
