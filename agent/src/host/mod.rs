//! The host agent: one state machine, no I/O, no clock, no runtime inside.
//!
//! [`HostAgent`] is the whole agent of one host. Its drivers feed it events and carry out what it
//! returns ([`Output`]): the daemon ([`crate::node`]) with tokio, TCP, SWIM and real executors; the
//! replay ([`crate::sim::keel`]) with a virtual clock, a simulated transport and the CloudSim
//! engine as the hypervisor. There is no other agent, so a policy measured in replay is the
//! policy that runs on hosts.
//!
//! Inside:
//! - the keel-lcc [`Peer`] that executes the interaction model: every `=>` and `<=` of the `.lcc`
//!   text is a message between agents ([`Output::Lcc`]);
//! - the predicates the models call ([`PREDICATES`]), over this host's planned load and over the
//!   driver's [`View`] of the peers (discovery, the stability model's scores, local groups);
//! - the safety layer under `migrate(Vm, Target)`: the two-sided commit ([`Negotiator`]). Whatever
//!   a `.lcc` text says, a VM is promised to at most one host (each VM once per interval, one
//!   commit at a time), and it moves ([`Output::Execute`]) only after the target, holding the
//!   reservation its model made (`canMigrate`), has committed.
//!
//! Events: [`HostAgent::tick`] (a measurement: the host's and its VMs' load; the interaction model
//! starts afresh in its initial role), [`HostAgent::on_lcc`] and [`HostAgent::on_neg`] (messages),
//! [`HostAgent::on_timer`] (deadlines; [`HostAgent::next_deadline`] says when),
//! [`HostAgent::on_executed`] (a migration finished or failed), [`HostAgent::set_program`] (a new
//! interaction model). Membership changes reach the core through the [`View`].
//!
//! Bad models do not wedge an agent: a runtime error (an unknown predicate, say) or a peer waiting
//! mid-exchange longer than [`CoreConfig::lcc_wait`] (a protocol where both sides wait) returns it
//! to its initial role, counted in [`CoreStats`].

pub mod predicates;
pub mod view;
pub mod wire;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use keel_lcc::{Envelope, Peer, Program, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::negotiation::{
    Action, Local, Msg, NegCounts, NegId, Negotiator, Outcome, Record, Side, Timeouts,
};
use crate::time::Time;
use keel_core::model::ModelFile;

/// Measurements of its own utilisation a host keeps for the stability model (3 h at 5 min).
const HIST_MAX: usize = 36;

pub use self::predicates::{calm_score, PREDICATES};
pub use self::view::{Need, Published, Recording, Resolved, Scripted, View, ViewCall};

/// How a host prices taking a VM (auction bids) and how discovery orders candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rank {
    /// Fullest host that fits first (consolidation).
    Pack,
    /// Least loaded host first (headroom).
    Spread,
}

/// The core's settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Candidates tried for one VM before it is given up for the interval.
    pub max_tries: u32,
    /// Bidders asked in an auction (`candidates/2`).
    pub bidders: usize,
    /// Pricing and candidate order.
    pub rank: Rank,
    /// The seed model's thresholds: overloaded above `high`, underloaded below `low`.
    pub high: f64,
    /// See `high`.
    pub low: f64,
    /// Utilisation a host may reach by accepting (the seed model's `underloaded/1`, and offers
    /// that arrive without a reservation: a host powered on by `wake/3`).
    pub accept_below: f64,
    /// The host may give VMs away (`overloaded`, `draining`).
    pub gives_vms: bool,
    /// The host may take VMs (`spare`, `canMigrate`, `price`).
    pub takes_vms: bool,
    /// A peer waiting in the middle of an exchange longer than this times out.
    pub lcc_wait: Duration,
    /// Roles in which waiting is the normal state (a receiver between requests).
    pub listening: Vec<String>,
    /// Commit deadlines.
    pub timeouts: Timeouts,
    /// VMs migrated away stay hidden from the load for this long or until the load source stops
    /// listing them (`None`: the load source is exact, as in the replay).
    pub hide_moved: Option<Duration>,
    /// The stability model, consulted where a partner is chosen: a host asked to take a VM scores
    /// its own CPU history with the VM's added (the *projected* series) and declines when the
    /// model says it would overload. `None`: no consult.
    pub stability: Option<Arc<ModelFile>>,
    /// Seconds between measurements (the step of the series the model scores).
    pub step_s: f64,
    /// Minimum stay: a VM that arrived less than this many seconds ago is not offered again while
    /// another VM can go, and a host holding one does not empty itself (0: off).
    pub min_stay_s: f64,
    /// Repeat a quiet tick instead of running the model again (see [`HostAgent::tick`]); the
    /// outcome is the same either way.
    pub repeat_quiet_ticks: bool,
    /// How a host shedding or emptying itself chooses the VM to offer. The drivers use
    /// [`VmChoice::Calm`] while a stability model is loaded (the choice reads the histories the
    /// model is given) and [`VmChoice::Size`] otherwise, unless configured.
    pub vm_choice: VmChoice,
    /// Which offers a host asked to take a VM checks with the stability model.
    pub model_consult: ModelConsult,
}

/// Which decisions a host checks with the stability model: the offers it is asked to take
/// (`canMigrate/3`, `price/3`) and, with [`ModelConsult::Optional`], whether it must shed a VM at
/// all (`overloaded/3`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelConsult {
    /// Every offer: a host declines any VM that the model expects to overload it.
    Every,
    /// Only offers from hosts emptying themselves (consolidation), which are optional moves. An
    /// overloaded host's VM has to go somewhere: declining it only sends it to an emptier or a
    /// switched-off host while its host stays overloaded.
    Consolidation,
    /// The optional moves only: offers from hosts emptying themselves (as
    /// [`ModelConsult::Consolidation`]), and the move out of a host above its overload threshold
    /// but below its capacity, which waits while the model, scoring the host as it is, does not
    /// expect it to reach capacity (its label) within its horizon. A host at capacity sheds a VM
    /// to the best host that fits. The minimum stay is off by default
    /// ([`default_min_stay_s`](crate::sim::keel::default_min_stay_s)): the model judges whether a
    /// host must shed a VM.
    #[default]
    Optional,
}

/// How a host chooses the VM to offer (`overloaded/3`, `draining/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum VmChoice {
    /// By size: least RAM first when overloaded (the shortest migration), largest CPU first when
    /// draining.
    #[default]
    Size,
    /// By what is least likely to need moving again. Overloaded: a VM whose demand alone brings
    /// the host back under the threshold first (one move relieves it); among those, the one
    /// whose CPU history ([`VmLoad::hist`]) is calmest and most correlated with the rest of the
    /// host's load (see [`calm_score`]), equal scores the smallest; when none does, the
    /// largest. Without histories this is the seed model's rule (the smallest VM that removes
    /// the excess, else the largest). Draining: as [`VmChoice::Size`] (largest CPU first; calm
    /// first measured no better).
    Calm,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            max_tries: 3,
            bidders: 3,
            rank: Rank::Pack,
            high: 0.8,
            low: 0.5,
            accept_below: 0.9,
            gives_vms: true,
            takes_vms: true,
            lcc_wait: Duration::from_secs(2),
            listening: ["idle", "underloaded", "bidder", "member"]
                .into_iter()
                .map(String::from)
                .collect(),
            timeouts: Timeouts::default(),
            hide_moved: None,
            stability: None,
            step_s: 300.0,
            min_stay_s: 0.0,
            repeat_quiet_ticks: true,
            vm_choice: VmChoice::Size,
            model_consult: ModelConsult::Every,
        }
    }
}

/// One VM as the load source sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VmLoad {
    /// Its id in LCC terms (an atom on hosts, an integer in the replay).
    pub id: Value,
    /// CPU demand (absolute units).
    pub cpu: f64,
    /// Memory in use, MiB (0 where unmeasured).
    pub mem: f64,
    /// Configured RAM, MiB (what a live migration copies).
    pub ram: f64,
    /// CPU one virtual CPU needs.
    pub pe_cpu: f64,
    /// Already migrating (cannot be offered).
    pub migrating: bool,
    /// Seconds since it arrived on this host (`f64::INFINITY`: since before the agent knows).
    pub stay_s: f64,
    /// Its CPU demand at the last measurements (absolute units, oldest first, the newest is
    /// now); empty where the driver keeps none. Sent with an offer so that the receiver can
    /// score its own history with the VM's added.
    pub hist: Vec<f64>,
}

/// A measurement: the host's capacity and load.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostLoad {
    /// CPU capacity (absolute units).
    pub capacity: f64,
    /// CPU of one core (a VM whose virtual CPU needs more cannot run here).
    pub pe_capacity: f64,
    /// Memory capacity, MiB, where memory is measured.
    pub mem_capacity: Option<f64>,
    /// CPU in use not attributed to VMs.
    pub other: f64,
    /// The VMs.
    pub vms: Vec<VmLoad>,
    /// A new point of the host's CPU utilisation series at the stability model's step (the
    /// driver averages its measurements to that step), if one completed with this measurement.
    pub step_util: Option<f64>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send an interaction-model message to the agent `to` (the envelope's recipient id).
    Lcc {
        /// Recipient id.
        to: Value,
        /// The message.
        env: Envelope,
    },
    /// Send a commit-layer message.
    Neg {
        /// Recipient id.
        to: String,
        /// The message.
        msg: Msg,
    },
    /// Move the VM: both sides have committed. Report with [`HostAgent::on_executed`].
    Execute {
        /// The negotiation.
        neg: NegId,
        /// The VM.
        vm: String,
        /// The target agent.
        target: String,
    },
    /// A commit ended (either side).
    Finished(Record),
}

/// Counters of one agent's core.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CoreStats {
    /// Interaction-model messages sent, by message name.
    pub lcc_sent: BTreeMap<String, u64>,
    /// Interaction-model messages received.
    pub lcc_received: u64,
    /// Interaction-model messages refused (malformed, or not for this agent).
    pub lcc_refused: u64,
    /// Negotiations started (`overloaded/3`, `draining/3`, the seed's `overloaded/1`).
    pub started: u64,
    /// Migrations agreed in the model (`migrate/2`).
    pub agreed: u64,
    /// VMs given up (no candidate left).
    pub refused: u64,
    /// Waits that ran out: the peer went back to its initial role.
    pub timed_out: u64,
    /// Runtime errors of the model (the peer went back to its initial role).
    pub model_errors: u64,
    /// The last runtime error, rendered.
    pub last_error: Option<String>,
    /// Candidates the stability model turned down.
    pub model_vetoes: u64,
    /// Overloads left to pass because the model expects the host to stay below capacity
    /// ([`ModelConsult::Optional`]).
    pub model_waits: u64,
    /// Switched-off hosts powered on (`wake/3`).
    pub woken: u64,
    /// Offers taken without a reservation (by a host that was just powered on).
    pub unsolicited: u64,
    /// Interaction models adopted while running.
    pub models_adopted: u64,
    /// Interaction models refused (did not compile, or call predicates the agent lacks).
    pub models_refused: u64,
    /// Measurements that repeated the last quiet tick (see [`HostAgent::tick`]).
    pub quiet_ticks: u64,
}

/// Why a model was refused or the core could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// The text does not compile (rendered diagnostics with file:line:col).
    #[error("{0}")]
    Compile(String),
    /// The model calls predicates this agent does not register.
    #[error(
        "{origin}: the interaction model calls predicates this agent does not register: {names}"
    )]
    UnknownPredicates {
        /// Where the model came from.
        origin: String,
        /// `name/arity` with positions.
        names: String,
    },
    /// The initial role cannot start.
    #[error("{0}")]
    Start(String),
}

/// Compiles an interaction model and checks that every predicate it calls is one the agent
/// registers (the [`PREDICATES`], comparisons and list built-ins).
///
/// # Errors
/// [`CoreError::Compile`] with rendered diagnostics, [`CoreError::UnknownPredicates`].
pub fn compile_model(origin: &str, src: &str) -> Result<Arc<Program>, CoreError> {
    let program = Program::compile(src).map_err(|errs| {
        let map = keel_lcc::SourceMap::new(origin.to_string(), src.to_string());
        let text: Vec<String> = errs
            .iter()
            .map(|e| keel_lcc::diag::render(&map, e))
            .collect();
        CoreError::Compile(format!(
            "{origin}: invalid interaction model:\n{}",
            text.join("\n")
        ))
    })?;
    let unknown = predicates::unknown_calls(&program, src);
    if !unknown.is_empty() {
        return Err(CoreError::UnknownPredicates {
            origin: origin.to_string(),
            names: unknown.join(", "),
        });
    }
    // The initial role must start.
    let program = Arc::new(program);
    let role = initial_role(&program);
    Peer::new(Arc::clone(&program), role, Value::atom("check"))
        .map_err(|e| CoreError::Start(format!("{origin}: {e}")))?;
    Ok(program)
}

fn initial_role(p: &Program) -> Value {
    p.initial_roles()
        .into_iter()
        .next()
        .unwrap_or_else(|| Value::atom("idle"))
}

/// An id as a string: atoms and strings as their text, numbers as written.
pub fn id_str(v: &Value) -> String {
    with_id(v, str::to_owned)
}

/// Appends [`id_str`] of `v` to `out`.
fn write_id(out: &mut String, v: &Value) {
    with_id(v, |s| out.push_str(s));
}

/// Runs `f` on [`id_str`] of `v`, without building a string for an atom, a string or an
/// integer (the predicates look a VM up by its id at every offer and bid).
pub(crate) fn with_id<R>(v: &Value, f: impl FnOnce(&str) -> R) -> R {
    match v {
        Value::Atom(a) | Value::Str(a) => f(a),
        Value::Int(i) => f(itoa::Buffer::new().format(*i)),
        other => f(&other.to_string()),
    }
}

/// This host's plan for the interval.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) load: HostLoad,
    /// `here[i]`: VM `i` of the load is still planned on this host.
    pub(crate) here: Vec<bool>,
    pub(crate) keys: Vec<String>,
    pub(crate) cpu: f64,
    pub(crate) mem: f64,
    pub(crate) draining: bool,
    pub(crate) incoming: bool,
    /// VMs agreed to move, by key (changed through [`State::set_moved`]).
    pub(crate) moved: FxHashSet<String>,
    pub(crate) tried: FxHashMap<String, (u32, Vec<Value>)>,
    /// VMs given up for the interval, by key (changed through [`State::set_exhausted`]).
    pub(crate) exhausted: FxHashSet<String>,
    /// The VM (key) whose last `candidates/2` answer was empty, in this interval.
    pub(crate) no_candidates: Option<String>,
    /// `gone[i]`: VM `i` of the load is in `moved` or `exhausted` (read for every VM at every
    /// choice of a VM to offer, without hashing its key).
    pub(crate) gone: Vec<bool>,
    /// `need_vals[i][drain]`: VM `i`'s `Need` term as offered, made at its first offer in the
    /// interval (the load, which it is made of, changes only with a measurement).
    pub(crate) need_vals: Vec<[Option<Value>; 2]>,
    /// Reservations this host's model made (`canMigrate`), by VM: CPU and memory.
    pub(crate) promises: FxHashMap<String, (f64, f64)>,
    /// Agreed migrations waiting for the commit layer: VM key, CPU, target.
    pub(crate) commits: VecDeque<(String, f64, String)>,
    /// The target of each agreed migration, as the model named it.
    pub(crate) targets: FxHashMap<String, Value>,
    /// The seed model's VM picked by `overloaded/1`.
    pub(crate) last_pick: Option<Need>,
    /// This host's CPU utilisation at the last measurements, oldest first (bounded).
    pub(crate) hist: VecDeque<f64>,
    /// Times the history was read (the stability model's consult).
    pub(crate) hist_reads: u64,
    pub(crate) stats: CoreStats,
}

impl State {
    /// Records a new point of this host's utilisation series (bounded).
    pub(crate) fn push_point(&mut self, u: f64) {
        if self.hist.len() >= HIST_MAX {
            self.hist.pop_front();
        }
        self.hist.push_back(u);
    }

    pub(crate) fn util(&self) -> f64 {
        if self.load.capacity > 0.0 {
            self.cpu / self.load.capacity
        } else {
            0.0
        }
    }

    pub(crate) fn mem_util(&self) -> f64 {
        match self.load.mem_capacity {
            Some(c) if c > 0.0 => self.mem / c,
            _ => 0.0,
        }
    }

    /// VMs planned on the host: those still here and those promised to it.
    pub(crate) fn planned_vms(&self) -> usize {
        self.here.iter().filter(|&&h| h).count() + self.promises.len()
    }

    pub(crate) fn index_of(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    /// Puts VM `key` in `moved` (`true`) or takes it out.
    pub(crate) fn set_moved(&mut self, key: &str, moved: bool) {
        if moved {
            self.moved.insert(key.to_string());
        } else {
            self.moved.remove(key);
        }
        self.refresh_gone(key);
    }

    /// Puts VM `key` in `exhausted`.
    pub(crate) fn set_exhausted(&mut self, key: &str) {
        self.exhausted.insert(key.to_string());
        self.refresh_gone(key);
    }

    /// `gone` of the VMs keyed `key`, after `moved` or `exhausted` changed.
    fn refresh_gone(&mut self, key: &str) {
        let g = self.moved.contains(key) || self.exhausted.contains(key);
        for (k, gone) in self.keys.iter().zip(self.gone.iter_mut()) {
            if k == key {
                *gone = g;
            }
        }
    }

    /// Whether VM `i` is in `moved` or `exhausted`.
    pub(crate) fn is_gone(&self, i: usize) -> bool {
        self.gone.get(i).copied().unwrap_or(false)
    }
}

/// Whether two measurements differ at most by the new point of the utilisation series.
fn same_but_step(a: &HostLoad, b: &HostLoad) -> bool {
    a.capacity.to_bits() == b.capacity.to_bits()
        && a.pe_capacity.to_bits() == b.pe_capacity.to_bits()
        && a.mem_capacity.map(f64::to_bits) == b.mem_capacity.map(f64::to_bits)
        && a.other.to_bits() == b.other.to_bits()
        && a.vms == b.vms
}

/// Passes every question to `inner` and counts them (all but the published state).
struct Asked<'v> {
    inner: &'v mut dyn View,
    n: u32,
}

impl View for Asked<'_> {
    fn resolve(&mut self, me: &Value, role: &str, need: &Need, exclude: &[Value]) -> Resolved {
        self.n += 1;
        self.inner.resolve(me, role, need, exclude)
    }
    fn candidates(
        &mut self,
        me: &Value,
        role: &str,
        need: &Need,
        exclude: &[Value],
        k: usize,
    ) -> Vec<Value> {
        self.n += 1;
        self.inner.candidates(me, role, need, exclude, k)
    }
    fn answered(&mut self, me: &Value, cpu: f64) {
        self.n += 1;
        self.inner.answered(me, cpu);
    }
    fn unstable(&mut self, peer: &Value) -> bool {
        self.n += 1;
        self.inner.unstable(peer)
    }
    fn declines(&mut self, me: &Value) -> bool {
        self.n += 1;
        self.inner.declines(me)
    }
    fn busier_exists(&mut self, me: &Value, cpu: f64) -> bool {
        self.n += 1;
        self.inner.busier_exists(me, cpu)
    }
    fn neighbour(&mut self, me: &Value) -> Option<Value> {
        self.n += 1;
        self.inner.neighbour(me)
    }
    fn wake(&mut self, me: &Value, need: &Need, thr: f64) -> Option<Value> {
        self.n += 1;
        self.inner.wake(me, need, thr)
    }
    fn publish(&mut self, me: &Value, state: &Published<'_>) {
        self.inner.publish(me, state);
    }
}

/// The agent of one host.
#[derive(Debug)]
pub struct HostAgent {
    me: Value,
    me_str: String,
    cfg: CoreConfig,
    program: Arc<Program>,
    peer: Peer,
    neg: Negotiator,
    st: State,
    /// VMs migrated away (daemon): hidden until the load source stops listing them.
    moved_out: HashMap<String, Time>,
    /// Since when the peer waits mid-exchange.
    busy_since: Option<Time>,
    /// Whether the peer's role is not a listening one (kept from the last step).
    busy: bool,
    /// The peer's role name after the last step.
    role: String,
    /// Where the last step's role name lies (address and length; it points into the program or
    /// the peer, which keep their text while the program runs) and whether that role is busy:
    /// a step in the same role skips comparing names.
    role_seen: (usize, usize, bool),
    /// The last measurement, when the tick it started was quiet (see [`HostAgent::tick`]) and
    /// nothing reached the agent since: a tick with the same measurement would do the same.
    quiet: Option<HostLoad>,
    /// The messages one step of the peer sends (empty between steps; kept for its buffer).
    sent: Vec<Envelope>,
}

impl HostAgent {
    /// An agent `me` running `program`.
    ///
    /// # Errors
    /// The program's initial role cannot start.
    pub fn new(
        me: Value,
        program: Arc<Program>,
        cfg: CoreConfig,
        neg_seq: u64,
    ) -> Result<Self, CoreError> {
        let peer = Peer::new(Arc::clone(&program), initial_role(&program), me.clone())
            .map_err(|e| CoreError::Start(e.to_string()))?;
        let me_str = id_str(&me);
        Ok(Self {
            neg: Negotiator::new(me_str.clone(), cfg.timeouts).numbered_from(neg_seq),
            me,
            me_str,
            cfg,
            program,
            peer,
            st: State::default(),
            moved_out: HashMap::new(),
            busy_since: None,
            busy: false,
            role: String::new(),
            role_seen: (0, 0, false),
            quiet: None,
            sent: Vec::new(),
        })
    }

    /// This agent's id.
    pub fn id(&self) -> &Value {
        &self.me
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The interaction model's current role (its name).
    pub fn role_name(&self) -> String {
        if self.role.is_empty() {
            return self.peer.role_name().unwrap_or("?").to_string();
        }
        self.role.clone()
    }

    /// Whether the peer is waiting in the middle of an exchange (not in a listening role).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    fn role_is_busy(&self, name: &str) -> bool {
        !self.cfg.listening.iter().any(|l| l == name)
    }

    /// The counters.
    pub fn stats(&self) -> &CoreStats {
        &self.st.stats
    }

    /// The commit layer's counters.
    pub fn neg_counts(&self) -> NegCounts {
        self.neg.counts()
    }

    /// Open reservations of the commit layer (as target).
    pub fn reservations(&self) -> usize {
        self.neg.reservations()
    }

    /// Whether a migration is executing (a graceful stop waits for it).
    pub fn is_executing(&self) -> bool {
        self.neg.is_executing()
    }

    /// Planned CPU.
    pub fn planned_cpu(&self) -> f64 {
        self.st.cpu
    }

    /// Planned utilisation.
    pub fn util(&self) -> f64 {
        self.st.util()
    }

    /// VMs planned on the host.
    pub fn planned_vms(&self) -> usize {
        self.st.planned_vms()
    }

    /// The interaction model.
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Replaces the interaction model. The running exchange is abandoned (the peer starts the new
    /// model in its initial role, with no message kept); commits under way go on.
    ///
    /// # Errors
    /// The new model's initial role cannot start; the running model stays.
    pub fn set_program(&mut self, program: Arc<Program>) -> Result<(), CoreError> {
        self.quiet = None;
        let peer = Peer::new(
            Arc::clone(&program),
            initial_role(&program),
            self.me.clone(),
        )
        .map_err(|e| CoreError::Start(e.to_string()))?;
        self.peer = peer;
        self.program = program;
        self.busy_since = None;
        self.busy = false;
        self.role_seen = (0, 0, false);
        self.st.stats.models_adopted += 1;
        Ok(())
    }

    /// Replaces the stability model (a new file or bundle); `None`: no consult.
    pub fn set_stability(&mut self, model: Option<Arc<ModelFile>>) {
        let same = match (&self.cfg.stability, &model) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.quiet = None;
            self.cfg.stability = model;
        }
    }

    /// Replaces the minimum stay ([`CoreConfig::min_stay_s`]), seconds; 0: off.
    pub fn set_min_stay_s(&mut self, s: f64) {
        if self.cfg.min_stay_s.to_bits() != s.to_bits() {
            self.quiet = None;
            self.cfg.min_stay_s = s;
        }
    }

    /// Replaces how the host chooses the VM to offer ([`CoreConfig::vm_choice`]).
    pub fn set_vm_choice(&mut self, c: VmChoice) {
        if self.cfg.vm_choice != c {
            self.quiet = None;
            self.cfg.vm_choice = c;
        }
    }

    /// Counts a model refused by the driver (compile error or unknown predicate).
    pub fn note_model_refused(&mut self) {
        self.st.stats.models_refused += 1;
    }

    /// A measurement: the plan for the interval starts from `load`, and the interaction model
    /// starts afresh in its initial role (a peer with stale messages drops them).
    ///
    /// A host with no VMs whose last tick was *quiet* (no output, no question to the view but
    /// the published state, no counter moved, no model consult, not waiting mid-exchange, no
    /// commit or reservation) and that nothing has reached since, measured the same again, is
    /// in the state that tick left it in: running the model again would ask nothing, say
    /// nothing and end there, so the tick only records the measurement and publishes the state.
    /// (Most of a consolidated fleet is switched-off hosts like this.)
    pub fn tick(&mut self, now: Time, mut load: HostLoad, view: &mut dyn View) -> Vec<Output> {
        if let Some(q) = &self.quiet {
            if self.cfg.repeat_quiet_ticks && same_but_step(q, &load) {
                self.st.stats.quiet_ticks += 1;
                if let Some(u) = load.step_util {
                    self.st.push_point(u);
                }
                self.st.load.step_util = load.step_util;
                self.publish(view);
                return Vec::new();
            }
        }
        self.quiet = None;
        if let Some(keep) = self.cfg.hide_moved {
            self.moved_out.retain(|vm, t| {
                now.saturating_duration_since(*t) < keep
                    && load.vms.iter().any(|v| id_str(&v.id) == *vm)
            });
            if !self.moved_out.is_empty() {
                load.vms
                    .retain(|v| !self.moved_out.contains_key(&id_str(&v.id)));
            }
        }
        let st = &mut self.st;
        // Reuse the previous plan's buffers: this runs for every host at every measurement.
        let n = load.vms.len();
        st.keys.truncate(n);
        for (i, v) in load.vms.iter().enumerate() {
            match st.keys.get_mut(i) {
                Some(k) => {
                    k.clear();
                    write_id(k, &v.id);
                }
                None => st.keys.push(id_str(&v.id)),
            }
        }
        st.here.clear();
        st.here.resize(n, true);
        st.cpu = load.other + load.vms.iter().map(|v| v.cpu).sum::<f64>();
        if let Some(u) = load.step_util {
            st.push_point(u);
        }
        st.mem = load.vms.iter().map(|v| v.mem).sum();
        st.load = load;
        st.draining = false;
        st.incoming = false;
        st.moved.clear();
        st.tried.clear();
        st.exhausted.clear();
        st.no_candidates = None;
        st.gone.clear();
        st.gone.resize(n, false);
        st.need_vals.clear();
        st.need_vals.resize(n, [None, None]);
        st.last_pick = None;
        st.targets.clear();
        // Reservations the commit layer still holds (a VM on its way in) stay planned.
        st.promises.retain(|_, _| false);
        st.cpu += self.neg.reserved();
        // A VM whose commit is under way or queued is promised already: out of the plan, and
        // never agreed twice. A queued one no longer on the host is dropped.
        let current = self.neg.current().map(|(_, vm, _, _)| vm.to_string());
        if !st.commits.is_empty() {
            st.commits.retain(|(vm, _, _)| st.keys.contains(vm));
        }
        let promised: Vec<String> = if st.commits.is_empty() && current.is_none() {
            Vec::new()
        } else {
            st.commits
                .iter()
                .map(|c| c.0.clone())
                .chain(current)
                .collect()
        };
        for vm in promised {
            if let Some(i) = st.index_of(&vm) {
                if st.here[i] {
                    st.here[i] = false;
                    st.cpu -= st.load.vms[i].cpu;
                    st.mem -= st.load.vms[i].mem;
                }
            }
            st.set_moved(&vm, true);
        }
        // A peer with messages waiting starts without them.
        let restarted = !self.peer.inbox().is_empty() && self.peer.reset().is_ok();
        if !restarted {
            _ = self.peer.timeout();
        }
        self.busy_since = None;
        self.busy = false;
        let mut out = Vec::new();
        // Only a host with no VMs can repeat its tick: watch the others' runs for nothing.
        if !(self.cfg.repeat_quiet_ticks && self.st.load.vms.is_empty()) {
            self.step(now, view, &mut out);
            return out;
        }
        let before = (self.counters(), self.st.hist_reads);
        let mut asked = Asked { inner: view, n: 0 };
        self.step(now, &mut asked, &mut out);
        let quiet = out.is_empty()
            && asked.n == 0
            && before == (self.counters(), self.st.hist_reads)
            && self.is_settled();
        if quiet {
            self.quiet = Some(self.st.load.clone());
        }
        out
    }

    /// The counters a model's run can move (each only grows).
    fn counters(&self) -> u64 {
        let s = &self.st.stats;
        s.lcc_received
            + s.lcc_refused
            + s.started
            + s.agreed
            + s.refused
            + s.timed_out
            + s.model_errors
            + s.model_vetoes
            + s.model_waits
            + s.woken
            + s.unsolicited
            + s.lcc_sent.values().sum::<u64>()
    }

    /// Nothing under way: not waiting mid-exchange, no message waiting, no commit, reservation
    /// or deadline, no VM hidden as moved, nothing promised or agreed in the plan.
    fn is_settled(&self) -> bool {
        !self.busy
            && self.peer.inbox().is_empty()
            && self.neg.is_idle()
            && self.neg.reservations() == 0
            && self.neg.next_deadline().is_none()
            && self.moved_out.is_empty()
            && self.st.commits.is_empty()
            && self.st.promises.is_empty()
            && self.st.moved.is_empty()
            && !self.st.draining
            && !self.st.incoming
    }

    /// Runs the interaction model as far as it can go (after the driver opened discovery, say).
    pub fn resume(&mut self, now: Time, view: &mut dyn View) -> Vec<Output> {
        self.quiet = None;
        let mut out = Vec::new();
        self.step(now, view, &mut out);
        out
    }

    /// A message of the interaction model from a peer.
    pub fn on_lcc(&mut self, now: Time, env: Envelope, view: &mut dyn View) -> Vec<Output> {
        self.quiet = None;
        let mut out = Vec::new();
        if env.to.id != self.me {
            self.st.stats.lcc_refused += 1;
            return out;
        }
        self.st.stats.lcc_received += 1;
        if !self.peer.deliver(env) {
            self.st.stats.lcc_refused += 1;
        }
        self.step(now, view, &mut out);
        out
    }

    /// A commit-layer message from `from`.
    pub fn on_neg(&mut self, now: Time, from: &str, msg: Msg, view: &mut dyn View) -> Vec<Output> {
        self.quiet = None;
        let local = match &msg {
            Msg::Offer { vm, demand, .. } => self.offer_local(vm, *demand),
            _ => Local {
                capacity: 1.0,
                used: 0.0,
                accept_below: 1.0,
                takes_vms: false,
            },
        };
        let acts = self.neg.on_message(now, from, msg, &local);
        let mut out = Vec::new();
        self.apply(now, acts, view, &mut out);
        out
    }

    /// Whether to accept an offer: the model reserved this VM (`canMigrate`), or, with no
    /// reservation, the host takes VMs and the VM fits under `accept_below` (a host just powered
    /// on by its peer's `wake/3`, whose agent knew nothing of the request).
    fn offer_local(&mut self, vm: &str, demand: f64) -> Local {
        if self.st.promises.contains_key(vm) {
            return Local {
                capacity: f64::INFINITY,
                used: 0.0,
                accept_below: 1.0,
                takes_vms: true,
            };
        }
        let cap = self.st.load.capacity;
        let fits = self.cfg.takes_vms
            && cap > 0.0
            && !self.st.draining
            && (self.st.cpu + demand) / cap <= self.cfg.accept_below;
        if fits {
            self.st.stats.unsolicited += 1;
            self.st.promises.insert(vm.to_string(), (demand, 0.0));
            self.st.cpu += demand;
            self.st.incoming = true;
        }
        // The commit layer adds its own open reservations; the plan already holds them.
        Local {
            capacity: f64::INFINITY,
            used: 0.0,
            accept_below: 1.0,
            takes_vms: fits,
        }
    }

    /// The executor's result for negotiation `neg`.
    pub fn on_executed(
        &mut self,
        now: Time,
        neg: &NegId,
        result: Result<(), String>,
        view: &mut dyn View,
    ) -> Vec<Output> {
        self.quiet = None;
        let acts = self.neg.on_executed(now, neg, result);
        let mut out = Vec::new();
        self.apply(now, acts, view, &mut out);
        out
    }

    /// The earliest time at which [`Self::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<Time> {
        let lcc = self.busy_since.map(|t| t + self.cfg.lcc_wait);
        match (self.neg.next_deadline(), lcc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Deadlines: commit resends and timeouts; a peer waiting mid-exchange past
    /// [`CoreConfig::lcc_wait`] times out.
    pub fn on_timer(&mut self, now: Time, view: &mut dyn View) -> Vec<Output> {
        self.quiet = None;
        let acts = self.neg.on_tick(now);
        let mut out = Vec::new();
        self.apply(now, acts, view, &mut out);
        if self
            .busy_since
            .is_some_and(|t| now >= t + self.cfg.lcc_wait)
        {
            out.extend(self.timeout(now, view));
        }
        out
    }

    /// The peer's wait has run out: it returns to its initial role, and what it was negotiating
    /// is given up for the interval.
    pub fn timeout(&mut self, now: Time, view: &mut dyn View) -> Vec<Output> {
        self.quiet = None;
        let mut out = Vec::new();
        _ = self.peer.timeout();
        self.busy_since = None;
        self.busy = false;
        self.st.stats.timed_out += 1;
        let keys: Vec<String> = self
            .st
            .keys
            .iter()
            .zip(&self.st.here)
            .filter(|(_, &h)| h)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.st.set_exhausted(k);
        }
        self.step(now, view, &mut out);
        out
    }

    /// Gives up every commit not yet under way (graceful stop); returns the aborts to send.
    pub fn abort_uncommitted(&mut self, now: Time, view: &mut dyn View) -> Vec<Output> {
        self.quiet = None;
        self.st.commits.clear();
        let acts = self.neg.abort_uncommitted(now);
        let mut out = Vec::new();
        self.apply(now, acts, view, &mut out);
        out
    }

    fn step(&mut self, now: Time, view: &mut dyn View, out: &mut Vec<Output>) {
        let mut sent = std::mem::take(&mut self.sent);
        let result = {
            let cx = RefCell::new(predicates::Cx {
                me: &self.me,
                cfg: &self.cfg,
                st: &mut self.st,
                view,
            });
            let mut k = predicates::Preds(&cx);
            let mut d = predicates::Discovery(&cx);
            self.peer.step(&mut k, &mut d, &mut sent)
        };
        if let Err(e) = result {
            self.st.stats.model_errors += 1;
            self.st.stats.last_error = Some(e.to_string());
            tracing::warn!(agent = %self.me_str, error = %e, "Interaction model failed; back to the initial role.");
            _ = self.peer.timeout();
        }
        for env in sent.drain(..) {
            let name = env.body.name().unwrap_or("?");
            match self.st.stats.lcc_sent.get_mut(name) {
                Some(c) => *c += 1,
                None => _ = self.st.stats.lcc_sent.insert(name.to_string(), 1),
            }
            out.push(Output::Lcc {
                to: env.to.id.clone(),
                env,
            });
        }
        self.sent = sent;
        let name = self.peer.role_name().unwrap_or("");
        let (at, len, busy) = self.role_seen;
        if (at, len) == (name.as_ptr() as usize, name.len()) {
            self.busy = busy;
        } else {
            self.busy = self.role_is_busy(name);
            let shown = if name.is_empty() { "?" } else { name };
            if self.role != shown {
                self.role.clear();
                self.role.push_str(shown);
            }
            self.role_seen = (name.as_ptr() as usize, name.len(), self.busy);
        }
        if self.busy {
            self.busy_since.get_or_insert(now);
        } else {
            self.busy_since = None;
        }
        self.start_commits(now, out);
        self.publish(view);
    }

    fn publish(&self, view: &mut dyn View) {
        view.publish(
            &self.me,
            &Published {
                cpu: self.st.cpu,
                mem: self.st.mem,
                role: &self.role,
                draining: self.st.draining,
                vms: self.st.planned_vms(),
            },
        );
    }

    /// Starts the next agreed migration's commit when none is running.
    fn start_commits(&mut self, now: Time, out: &mut Vec<Output>) {
        while self.neg.is_idle() {
            let Some((vm, cpu, target)) = self.st.commits.pop_front() else {
                return;
            };
            let acts = self.neg.start(now, &vm, cpu, &target);
            self.apply_inner(now, acts, out);
        }
    }

    fn apply(&mut self, now: Time, acts: Vec<Action>, view: &mut dyn View, out: &mut Vec<Output>) {
        self.apply_inner(now, acts, out);
        self.start_commits(now, out);
        self.publish(view);
    }

    fn apply_inner(&mut self, now: Time, acts: Vec<Action>, out: &mut Vec<Output>) {
        for a in acts {
            match a {
                Action::Send { to, msg } => out.push(Output::Neg { to, msg }),
                Action::Execute { neg, vm, target } => {
                    out.push(Output::Execute { neg, vm, target })
                }
                Action::Finished(r) => {
                    self.finished(now, &r);
                    out.push(Output::Finished(r));
                }
            }
        }
    }

    fn finished(&mut self, now: Time, r: &Record) {
        let st = &mut self.st;
        match (r.side, &r.outcome) {
            (Side::Source, Outcome::Migrated) => {
                if self.cfg.hide_moved.is_some() {
                    self.moved_out.insert(r.vm.clone(), now);
                }
            }
            (Side::Source, _) => {
                // The VM stays: back in the plan, and the target counts as tried.
                if let Some(i) = st.index_of(&r.vm) {
                    if !st.here[i] {
                        st.here[i] = true;
                        st.cpu += st.load.vms[i].cpu;
                        st.mem += st.load.vms[i].mem;
                    }
                }
                st.set_moved(&r.vm, false);
                let to = st
                    .targets
                    .remove(&r.vm)
                    .unwrap_or_else(|| Value::atom(&r.peer));
                predicates::note_tried(st, self.cfg.max_tries, &r.vm, to);
            }
            (Side::Target, Outcome::Migrated) => {
                st.promises.remove(&r.vm);
            }
            (Side::Target, _) => {
                if let Some((cpu, mem)) = st.promises.remove(&r.vm) {
                    st.cpu -= cpu;
                    st.mem -= mem;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
