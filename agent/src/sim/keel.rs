//! Keel's own policies in the replay: one [`HostAgent`] per host — the same core the daemon runs —
//! each executing an interaction model from `agent/protocols/*.lcc`, driven here by a virtual
//! clock, a simulated transport and the CloudSim engine as the hypervisor.
//!
//! At every interval, after the datacenter update, each host's agent gets a measurement (its VMs'
//! CPU, and memory where the dataset measures it) and starts its model afresh; the round runs
//! until no message is in flight:
//! - the transport delivers each message (the model's own and the commit layer's) after `latency`
//!   and loses it with probability `loss` (a ChaCha8 generator seeded from `--seed` and the
//!   interval, so a run is deterministic);
//! - when nothing is in flight, an agent still waiting in the middle of an exchange has timed out
//!   and returns to its initial role; an agent with a commit deadline (a lost commit message) has
//!   its clock advanced to it;
//! - the agents' view of their peers ([`SimView`]) is exact and immediate: a discovery service
//!   that ranks candidates (fullest first to pack, least loaded first to balance);
//! - with a stability model (`+model`), each agent consults it where a partner is chosen (a host
//!   asked to take a VM scores its own history with the VM's added and declines if it would
//!   overload), and VMs keep a minimum stay (one hour unless `min_stay_s` says otherwise);
//! - a migration starts once both sides have committed ([`Output::Execute`]), with CloudSim's cost
//!   model.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use keel_core::model::ModelFile;
use keel_lcc::{Program, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::engine::{Engine, Policy};
use super::heuristics::{pabfd, Detector};
use super::metrics::Negotiation;
use crate::host::{
    self, CoreConfig, HostAgent, HostLoad, ModelConsult, Need, Output, Published, Rank, Recording,
    Resolved, View, ViewCall, VmChoice, VmLoad,
};
use crate::time::Time;

/// Keel's negotiation variants, each an interaction model in `agent/protocols/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Pack VMs onto few hosts (`power-saving.lcc`).
    PowerSaving,
    /// Keep load even with headroom (`agility.lcc`).
    Agility,
    /// Overloaded hosts ask several candidates for bids (`auction.lcc`).
    Auction,
    /// No discovery: requests travel around local groups (`peer-group.lcc`).
    PeerGroup,
}

impl Variant {
    /// All variants, in report order.
    pub const ALL: [Self; 4] = [
        Self::PowerSaving,
        Self::Agility,
        Self::Auction,
        Self::PeerGroup,
    ];

    /// The variant's name (`power-saving`, …), also its protocol file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Self::PowerSaving => "power-saving",
            Self::Agility => "agility",
            Self::Auction => "auction",
            Self::PeerGroup => "peer-group",
        }
    }

    /// The variant named `name` (a protocol file's stem).
    pub fn from_stem(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The interaction model shipped with the agent.
    pub fn builtin_protocol(self) -> &'static str {
        match self {
            Self::PowerSaving => include_str!("../../protocols/power-saving.lcc"),
            Self::Agility => include_str!("../../protocols/agility.lcc"),
            Self::Auction => include_str!("../../protocols/auction.lcc"),
            Self::PeerGroup => include_str!("../../protocols/peer-group.lcc"),
        }
    }

    /// How the variant prices and ranks candidates.
    pub fn rank(self) -> Rank {
        match self {
            Self::Agility => Rank::Spread,
            _ => Rank::Pack,
        }
    }
}

/// The minimum stay of a VM by default, seconds. With a stability model consulted on every
/// offer or on consolidation only: the model's window, and at least an hour. A host a VM moved
/// to is judged on a projected series (its history plus the VM's) until its own history holds
/// the VM for a whole window, so moving the VM again before then acts on a guess; and thrash is
/// a VM moved again within an hour, the horizon the model is asked about. With
/// [`ModelConsult::Optional`] the model itself judges whether a host must shed a VM: none. Without
/// a model: none.
pub fn default_min_stay_s(model: Option<&ModelFile>, consult: ModelConsult) -> f64 {
    match (model, consult) {
        (Some(m), ModelConsult::Every | ModelConsult::Consolidation) => m.window_s().max(3600.0),
        _ => 0.0,
    }
}

/// How a host chooses the VM to offer by default: [`VmChoice::Calm`] with a stability model
/// (the choice reads the histories the model is given), [`VmChoice::Size`] without.
pub fn default_vm_choice(model: Option<&ModelFile>) -> VmChoice {
    if model.is_some() {
        VmChoice::Calm
    } else {
        VmChoice::Size
    }
}

/// Transport and negotiation settings.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// One-way message latency, seconds.
    pub latency_s: f64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Seed of the transport's generator.
    pub seed: u64,
    /// Candidates a host tries for one VM before giving it up for this interval.
    pub max_tries: u32,
    /// Bidders asked in an auction.
    pub bidders: usize,
    /// Minimum stay of a VM on a host, seconds (`None`: [`default_min_stay_s`]).
    pub min_stay_s: Option<f64>,
    /// How a host chooses the VM to offer (`None`: [`default_vm_choice`]).
    pub vm_choice: Option<VmChoice>,
    /// Which offers a receiver checks with the stability model.
    pub model_consult: ModelConsult,
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            latency_s: 0.001,
            loss: 0.0,
            seed: 0,
            max_tries: 3,
            bidders: 3,
            min_stay_s: None,
            vm_choice: None,
            model_consult: ModelConsult::default(),
        }
    }
}

/// The core's settings for a variant in the replay.
pub fn core_config(variant: Variant, t: &Transport) -> CoreConfig {
    CoreConfig {
        max_tries: t.max_tries,
        bidders: t.bidders,
        rank: variant.rank(),
        accept_below: 0.9,
        vm_choice: t.vm_choice.unwrap_or_default(),
        model_consult: t.model_consult,
        ..CoreConfig::default()
    }
}

/// A Keel policy: a variant, its interaction model, optionally the stability model.
#[derive(Debug)]
pub struct KeelPolicy {
    variant: Variant,
    program: Arc<Program>,
    model: Option<Arc<ModelFile>>,
    transport: Transport,
    stats: Negotiation,
    round: u64,
    /// The host agents, kept across intervals.
    agents: Vec<HostAgent>,
    name: String,
    /// Every event fed to the agents, when recording (see [`KeelPolicy::record_events`]).
    log: Option<Vec<Event>>,
}

/// One event fed to an agent, with what it returned: a replay's record, for checking that another
/// driver of the same core gets the same actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The agent.
    pub host: usize,
    /// When.
    pub at: Time,
    /// What.
    pub input: Input,
    /// What the agent returned.
    pub outputs: Vec<Output>,
    /// What its view told it meanwhile.
    pub view: Vec<ViewCall>,
}

/// An input to an agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A measurement.
    Tick(HostLoad),
    /// Discovery opened: the agent goes on.
    Resume,
    /// A model message.
    Lcc(keel_lcc::Envelope),
    /// A commit message.
    Neg(String, crate::negotiation::Msg),
    /// The migration executed.
    Executed(crate::negotiation::NegId),
    /// The agent's wait ran out.
    Timeout,
    /// A deadline.
    Timer,
}

impl KeelPolicy {
    /// A policy from its name: `keel-<variant>` or `keel-<variant>+model`. The interaction model
    /// is read from `protocols_dir/<variant>.lcc` when given, else the built-in copy.
    ///
    /// # Errors
    /// Unknown variant, `+model` without a model, unreadable or invalid protocol (rendered
    /// diagnostics).
    pub fn from_name(
        name: &str,
        model: Option<Arc<ModelFile>>,
        protocols_dir: Option<&Path>,
        transport: Transport,
    ) -> anyhow::Result<Self> {
        let Some(rest) = name.strip_prefix("keel-") else {
            bail!("not a Keel policy: {name:?}");
        };
        let (var, with_model) = match rest.strip_suffix("+model") {
            Some(v) => (v, true),
            None => (rest, false),
        };
        let Some(variant) = Variant::from_stem(var) else {
            bail!(
                "unknown Keel variant {var:?} (known: power-saving, agility, auction, peer-group)"
            );
        };
        if with_model && model.is_none() {
            bail!("policy {name} needs a stability model: pass --model FILE");
        }
        let (src, origin) = match protocols_dir {
            Some(d) => {
                let p = d.join(format!("{var}.lcc"));
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading interaction model {}", p.display()))?;
                (text, p.display().to_string())
            }
            None => (
                variant.builtin_protocol().to_string(),
                format!("protocols/{var}.lcc"),
            ),
        };
        let program = host::compile_model(&origin, &src).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            variant,
            program,
            model: if with_model { model } else { None },
            transport,
            stats: Negotiation::default(),
            round: 0,
            agents: Vec::new(),
            name: name.to_string(),
            log: None,
        })
    }

    /// The variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The interaction model.
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The core settings its agents run with.
    pub fn core_config(&self) -> CoreConfig {
        core_config(self.variant, &self.transport)
    }

    /// Records every event fed to the agents from now on.
    pub fn record_events(&mut self) {
        self.log = Some(Vec::new());
    }

    /// The recorded events.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.log.take().unwrap_or_default()
    }

    /// Per-message-name counts of the interaction models' messages, summed over the agents.
    pub fn lcc_messages(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = std::collections::BTreeMap::new();
        for a in &self.agents {
            for (k, v) in &a.stats().lcc_sent {
                *m.entry(k.clone()).or_insert(0) += v;
            }
        }
        m
    }
}

impl Policy for KeelPolicy {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn place(&mut self, e: &mut Engine<'_>, vm: usize) -> Option<usize> {
        // Initial placement is the scheduler's, as for the baselines: PABFD.
        pabfd(e, &Detector::Thr(0.8), vm, &HashSet::new())
    }

    fn placement_key(&self) -> Option<String> {
        Some(format!("pabfd {:?}", Detector::Thr(0.8)))
    }

    fn optimize(&mut self, e: &mut Engine<'_>) -> anyhow::Result<Vec<(usize, usize)>> {
        self.round += 1;
        let seed = self
            .transport
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(self.round);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = e.hosts.len();
        if self.agents.len() != n {
            let mut cfg = core_config(self.variant, &self.transport);
            cfg.step_s = e.sc.interval_s;
            cfg.stability = self.model.clone();
            cfg.vm_choice = self
                .transport
                .vm_choice
                .unwrap_or_else(|| default_vm_choice(self.model.as_deref()));
            cfg.min_stay_s = self.transport.min_stay_s.unwrap_or_else(|| {
                default_min_stay_s(self.model.as_deref(), self.transport.model_consult)
            });
            self.agents = (0..n)
                .map(|h| {
                    HostAgent::new(
                        Value::Int(h as i64),
                        Arc::clone(&self.program),
                        cfg.clone(),
                        0,
                    )
                })
                .collect::<Result<_, _>>()
                .map_err(|err| anyhow::anyhow!("starting the agents: {err}"))?;
        }
        // Offers carry the VM's history over the model's window.
        let vm_hist = self
            .model
            .as_deref()
            .map_or(0, |m| m.window_samples(e.sc.interval_s));
        let mut view = SimView::new(e, self.variant.rank(), vm_hist);
        let mut d = Round {
            agents: &mut self.agents,
            queue: VecDeque::new(),
            latency: Duration::from_secs_f64(self.transport.latency_s.max(0.0)),
            loss: self.transport.loss,
            rng: &mut rng,
            stats: &mut self.stats,
            moves: Vec::new(),
            log: self.log.as_mut(),
        };
        d.run(&mut view, e.now)?;
        let moves = d.moves;
        // Sum the agents' counters afresh (they are cumulative).
        let (mut started, mut agreed, mut refused, mut timed_out) = (0, 0, 0, 0);
        let (mut vetoes, mut waits, mut woken) = (0, 0, 0);
        for a in &self.agents {
            let s = a.stats();
            started += s.started;
            agreed += s.agreed;
            refused += s.refused;
            timed_out += s.timed_out;
            vetoes += s.model_vetoes;
            waits += s.model_waits;
            woken += s.woken;
        }
        self.stats.started = started;
        self.stats.agreed = agreed;
        self.stats.refused = refused;
        self.stats.timed_out = timed_out;
        self.stats.woken = woken;
        self.stats.model_vetoes = vetoes;
        self.stats.model_waits = waits;
        Ok(moves)
    }

    fn negotiation(&self) -> Option<Negotiation> {
        Some(self.stats)
    }
}

#[derive(Debug, PartialEq)]
enum Payload {
    Lcc(keel_lcc::Envelope),
    Neg(String, crate::negotiation::Msg),
}

/// A message on its way: delivered at `t` to agent `to`.
#[derive(Debug)]
struct InFlight {
    t: Time,
    to: usize,
    p: Payload,
}

const ROUND_EVENT_LIMIT: u64 = 4_000_000;

/// The replay's driver of one interval.
struct Round<'a> {
    agents: &'a mut [HostAgent],
    /// Messages in flight, in delivery order. Every message takes the same latency and is sent
    /// at the time of the event being handled, which never decreases, and each is due no
    /// earlier than the ones already in flight: sending order is delivery order (ties in
    /// sending order), so a FIFO queue is the transport's priority queue.
    queue: VecDeque<InFlight>,
    latency: Duration,
    loss: f64,
    rng: &'a mut ChaCha8Rng,
    stats: &'a mut Negotiation,
    moves: Vec<(usize, usize)>,
    log: Option<&'a mut Vec<Event>>,
}

/// Feeds one input to an agent: what the replay's driver does, and what a test does with a
/// recorded event log.
pub fn feed_agent(a: &mut HostAgent, now: Time, input: Input, view: &mut dyn View) -> Vec<Output> {
    match input {
        Input::Tick(load) => a.tick(now, load, view),
        Input::Resume => a.resume(now, view),
        Input::Lcc(env) => a.on_lcc(now, env, view),
        Input::Neg(from, msg) => a.on_neg(now, &from, msg, view),
        Input::Executed(neg) => a.on_executed(now, &neg, Ok(()), view),
        Input::Timeout => a.timeout(now, view),
        Input::Timer => a.on_timer(now, view),
    }
}

fn host_of(id: &str) -> Option<usize> {
    id.parse().ok()
}

impl Round<'_> {
    fn feed(&mut self, h: usize, now: Time, input: Input, view: &mut SimView<'_>) -> Vec<Output> {
        let a = &mut self.agents[h];
        if self.log.is_none() {
            return feed_agent(a, now, input, view);
        }
        let logged = input.clone();
        let mut rec = Recording {
            inner: view,
            calls: Vec::new(),
        };
        let out = feed_agent(a, now, input, &mut rec);
        if let Some(log) = self.log.as_deref_mut() {
            log.push(Event {
                host: h,
                at: now,
                input: logged,
                outputs: out.clone(),
                view: rec.calls,
            });
        }
        out
    }

    /// Carries out an agent's outputs: messages in flight (or lost), migrations started.
    fn route(&mut self, h: usize, now: Time, outs: Vec<Output>, view: &mut SimView<'_>) {
        let mut pending = outs;
        while !pending.is_empty() {
            let mut next = Vec::new();
            for o in pending {
                let (to, p) = match o {
                    Output::Lcc { to, env } => {
                        self.stats.messages += 1;
                        (
                            to.as_int().and_then(|x| usize::try_from(x).ok()),
                            Payload::Lcc(env),
                        )
                    }
                    Output::Neg { to, msg } => {
                        self.stats.commit_messages += 1;
                        (
                            host_of(&to),
                            Payload::Neg(self.agents[h].id().to_string(), msg),
                        )
                    }
                    Output::Execute { neg, vm, target } => {
                        if let (Some(v), Some(t)) = (host_of(&vm), host_of(&target)) {
                            self.moves.push((v, t));
                        }
                        // The engine models the migration's time and cost; the agents go on.
                        next.extend(self.feed(h, now, Input::Executed(neg), view));
                        continue;
                    }
                    Output::Finished(_) => continue,
                };
                if self.loss > 0.0 && self.rng.gen::<f64>() < self.loss {
                    self.stats.lost += 1;
                    continue;
                }
                let Some(to) = to.filter(|&x| x < self.agents.len()) else {
                    continue;
                };
                let t = now + self.latency;
                debug_assert!(self.queue.back().is_none_or(|last| last.t <= t));
                self.queue.push_back(InFlight { t, to, p });
            }
            pending = next;
        }
    }

    fn run(&mut self, view: &mut SimView<'_>, now_s: f64) -> anyhow::Result<()> {
        let n = self.agents.len();
        let t0 = Time::from_secs_f64(now_s);
        for h in 0..n {
            let load = view.load(h);
            let outs = self.feed(h, t0, Input::Tick(load), view);
            self.route(h, t0, outs, view);
        }
        // Every agent has its role now: the ones waiting to address an unbound peer go on.
        view.discovery_open = true;
        for h in 0..n {
            if self.agents[h].is_busy() {
                let outs = self.feed(h, t0, Input::Resume, view);
                self.route(h, t0, outs, view);
            }
        }
        let mut now = t0;
        let mut events = 0u64;
        loop {
            while let Some(InFlight { t, to, p }) = self.queue.pop_front() {
                now = t;
                events += 1;
                if events > ROUND_EVENT_LIMIT {
                    bail!("negotiation round at t = {now_s:.1} s did not settle");
                }
                let input = match p {
                    Payload::Lcc(env) => Input::Lcc(env),
                    Payload::Neg(from, msg) => Input::Neg(from, msg),
                };
                let outs = self.feed(to, now, input, view);
                self.route(to, now, outs, view);
            }
            // Nothing in flight: an agent in the middle of an exchange has timed out.
            let mut any = false;
            for h in 0..n {
                if !self.agents[h].is_busy() {
                    continue;
                }
                let outs = self.feed(h, now, Input::Timeout, view);
                any |= !outs.is_empty();
                self.route(h, now, outs, view);
            }
            if any || !self.queue.is_empty() {
                continue;
            }
            // A lost commit message: the clock moves to the next deadline.
            let next = self
                .agents
                .iter()
                .filter_map(HostAgent::next_deadline)
                .min();
            match next {
                Some(t) => {
                    now = now.max(t);
                    for h in 0..n {
                        if self.agents[h].next_deadline().is_some_and(|d| d <= now) {
                            let outs = self.feed(h, now, Input::Timer, view);
                            self.route(h, now, outs, view);
                        }
                    }
                }
                None => break,
            }
            events += 1;
            if events > ROUND_EVENT_LIMIT {
                bail!("negotiation round at t = {now_s:.1} s did not settle");
            }
        }
        Ok(())
    }
}

const ROLE_IDLE: u8 = 0;
const ROLE_UNDERLOADED: u8 = 1;
const ROLE_BIDDER: u8 = 2;
const ROLE_MEMBER: u8 = 3;
/// Any other role.
const ROLE_OTHER: u8 = 4;

fn role_code(name: &str) -> u8 {
    match name {
        "idle" => ROLE_IDLE,
        "underloaded" => ROLE_UNDERLOADED,
        "bidder" => ROLE_BIDDER,
        "member" => ROLE_MEMBER,
        _ => ROLE_OTHER,
    }
}

fn host_id(v: &Value) -> Option<usize> {
    v.as_int().and_then(|i| usize::try_from(i).ok())
}

/// The agents' view of the simulated fleet: exact and immediate, with the planning state every
/// agent publishes (planned CPU and memory, role, draining) and the discovery service's own
/// bookkeeping (requests directed to a host that it has not answered yet).
struct SimView<'e> {
    e: &'e Engine<'e>,
    rank: Rank,
    cpu: Vec<f64>,
    /// CPU of requests discovery has sent to a host that it has not answered yet: counted so
    /// that concurrent requests do not all pick the same receiver.
    pending: Vec<f64>,
    mem: Vec<f64>,
    nvms: Vec<usize>,
    roles: Vec<u8>,
    /// Hosts by role code, switched off (0) or running (1).
    by_role: Vec<[HostBits; 2]>,
    /// The same hosts by capacity (an index into `capacities`), in discovery's order: by
    /// [`SimView::load_key`], then id.
    /// Kept only for the roles discovery has been asked about this round (built at the first
    /// request): the others change often and are never read.
    by_load: Vec<Option<[Vec<LoadOrder>; 2]>>,
    /// Each host's key in `by_load`.
    load_keys: Vec<i64>,
    /// The hosts' distinct CPU capacities, and each host's.
    capacities: Vec<f64>,
    capacity_of: Vec<usize>,
    /// No request has put a negative (or NaN) CPU into `pending`: every entry is ≥ 0.
    pending_nonneg: bool,
    /// No host's CPU has been NaN: every switched-off host's is ≤ 0.
    cpu_numbers: bool,
    draining: Vec<bool>,
    /// Measurements of a VM's demand sent with an offer (the model's window; 0 without one).
    vm_hist: usize,
    /// Off while the agents take their roles at the start of a round: a send to an unbound peer
    /// waits instead of failing, and is retried once every agent has a role.
    discovery_open: bool,
}

/// Hosts in discovery's order: (load key, host).
type LoadOrder = BTreeSet<(i64, u32)>;

/// A set of hosts as one bit per host: constant-time changes, iteration in id order.
#[derive(Debug, Clone)]
struct HostBits(Vec<u64>);

impl HostBits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }

    fn insert(&mut self, h: usize) {
        self.0[h / 64] |= 1 << (h % 64);
    }

    fn remove(&mut self, h: usize) {
        self.0[h / 64] &= !(1 << (h % 64));
    }

    /// The hosts in id order.
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + b
                })
            })
        })
    }
}

fn mem_of(e: &Engine<'_>, v: usize) -> f64 {
    e.wl.mem_at(v, e.now).unwrap_or(0.0)
}

impl<'e> SimView<'e> {
    fn new(e: &'e Engine<'e>, rank: Rank, vm_hist: usize) -> Self {
        let n = e.hosts.len();
        // Every host's load as measured, before any agent plans: what discovery knows at the
        // start of the interval (each agent then publishes its plan as it changes).
        let mut cpu = vec![0.0; n];
        let mut mem = vec![0.0; n];
        let mut nvms = vec![0; n];
        for (h, host) in e.hosts.iter().enumerate() {
            for &v in host
                .vm_list
                .iter()
                .filter(|v| !host.migrating_in.contains(v))
            {
                cpu[h] += e.vms[v as usize].req;
                mem[h] += mem_of(e, v as usize);
                nvms[h] += 1;
            }
        }
        let roles = usize::from(ROLE_OTHER) + 1;
        let mut capacities: Vec<f64> = Vec::new();
        let capacity_of = e
            .hosts
            .iter()
            .map(|host| {
                let t = host.total_mips;
                match capacities.iter().position(|c| c.to_bits() == t.to_bits()) {
                    Some(i) => i,
                    None => {
                        capacities.push(t);
                        capacities.len() - 1
                    }
                }
            })
            .collect();
        let mut view = Self {
            e,
            rank,
            cpu,
            pending: vec![0.0; n],
            mem,
            nvms,
            roles: vec![ROLE_IDLE; n],
            by_role: vec![[HostBits::new(n), HostBits::new(n)]; roles],
            by_load: vec![None; roles],
            load_keys: vec![0; n],
            capacities,
            capacity_of,
            pending_nonneg: true,
            cpu_numbers: true,
            draining: vec![false; n],
            vm_hist,
            discovery_open: false,
        };
        // Every host starts idle.
        for h in 0..n {
            view.cpu_numbers &= !view.cpu[h].is_nan();
            let on = usize::from(view.cpu[h] > 0.0);
            view.load_keys[h] = view.load_key(h);
            view.by_role[usize::from(ROLE_IDLE)][on].insert(h);
        }
        view
    }

    /// Takes `role`'s sets in discovery's order out of the view, building them if they are not
    /// kept yet (from sorted lists, in one pass); they go back with [`SimView::keep_order`].
    fn take_order(&mut self, role: u8) -> [Vec<LoadOrder>; 2] {
        let r = usize::from(role);
        if let Some(sets) = self.by_load[r].take() {
            return sets;
        }
        let nc = self.capacities.len();
        let mut lists: [Vec<Vec<(i64, u32)>>; 2] = [vec![Vec::new(); nc], vec![Vec::new(); nc]];
        for (on, bits) in self.by_role[r].iter().enumerate() {
            for h in bits.iter() {
                lists[on][self.capacity_of[h]].push((self.load_keys[h], h as u32));
            }
        }
        lists.map(|lists| {
            lists
                .into_iter()
                .map(|mut list| {
                    list.sort_unstable();
                    list.into_iter().collect::<LoadOrder>()
                })
                .collect()
        })
    }

    /// Keeps `role`'s sets (see [`SimView::take_order`]) up to date from now on.
    fn keep_order(&mut self, role: u8, sets: [Vec<LoadOrder>; 2]) {
        self.by_load[usize::from(role)] = Some(sets);
    }

    /// Host `h`'s place in discovery's order, smaller first: its utilisation, least loaded first
    /// to spread, fullest first to pack, as an integer that orders as [`f64::total_cmp`] orders
    /// the (signed) utilisation.
    fn load_key(&self, h: usize) -> i64 {
        self.util_key(self.util(h))
    }

    /// [`SimView::load_key`] of a host at utilisation `u`.
    fn util_key(&self, u: f64) -> i64 {
        let load = match self.rank {
            Rank::Pack => -u,
            Rank::Spread => u,
        };
        // f64::total_cmp's own mapping of the bits to a signed integer.
        let mut k = load.to_bits() as i64;
        k ^= (((k >> 63) as u64) >> 1) as i64;
        k
    }

    /// A utilisation from which on no running host of capacity `total` can take `need` up to
    /// `thr` (a host at `u` ≥ the bound fails [`SimView::fits`] on CPU alone), or `None` when
    /// the figures are outside what the bound is proved for.
    ///
    /// A host with CPU `c` > 0 fails when `(c + (need + pending)) / total > thr`; with
    /// `pending` ≥ 0 every step of that is non-decreasing in `c`. Its utilisation is
    /// `u = c / total` rounded, so `c / total ≥ u (1 − ε)`; with `u ≥ L`, where
    /// `L = thr − need / total + m` (or `L` ≤ 0 < `u`), the exact `(c + need) / total` is at
    /// least `thr + m − 5 ε` while `L` ≤ 5. The two roundings of the check lower it by at most
    /// `10 ε` more, so it stays above `thr` when the margin `m` is far above `15 ε`
    /// (ε = 2⁻⁵³). The margin only costs a look at a few hosts that the exact check then turns
    /// down.
    fn cpu_bound(&self, total: f64, need: &Need, thr: f64) -> Option<f64> {
        const MARGIN: f64 = 1e-6;
        let ok = self.pending_nonneg
            && total.is_finite()
            && total > 0.0
            && (0.0..=4.0 * total).contains(&need.cpu)
            && (0.0..=4.0).contains(&thr);
        ok.then(|| thr - need.cpu / total + MARGIN)
    }

    /// Host `h`'s measurement: its VMs (not those migrating in), CPU as requested, memory where
    /// the dataset has it.
    fn load(&self, h: usize) -> HostLoad {
        let e = self.e;
        let host = &e.hosts[h];
        let vms = host
            .vm_list
            .iter()
            .copied()
            .filter(|v| !host.migrating_in.contains(v))
            .map(|v| {
                let vm = &e.vms[v as usize];
                VmLoad {
                    id: Value::Int(i64::from(v)),
                    cpu: vm.req,
                    mem: mem_of(e, v as usize),
                    ram: vm.ram,
                    pe_cpu: vm.req / f64::from(vm.pes.max(1)),
                    migrating: vm.in_migration,
                    stay_s: vm.since_move(e.now),
                    // What the stability model needs of the VM: its demand at the last
                    // measurements (the engine keeps utilisation fractions, newest first).
                    hist: vm
                        .history
                        .iter()
                        .take(self.vm_hist)
                        .rev()
                        .map(|f| f * vm.mips)
                        .collect(),
                }
            })
            .collect();
        HostLoad {
            capacity: host.total_mips,
            pe_capacity: host.pe_mips,
            mem_capacity: e.wl.has_mem().then_some(host.mem_mib),
            other: 0.0,
            vms,
            // The engine records each host's utilisation at every interval: the model's step.
            step_util: host.history.back().copied(),
        }
    }

    fn util(&self, h: usize) -> f64 {
        self.cpu[h] / self.e.hosts[h].total_mips
    }

    fn set_cpu(&mut self, h: usize, cpu: f64) {
        let was = self.cpu[h] > 0.0;
        let old_key = self.load_keys[h];
        self.cpu_numbers &= !cpu.is_nan();
        self.cpu[h] = cpu;
        let now = self.cpu[h] > 0.0;
        let key = self.load_key(h);
        let r = usize::from(self.roles[h]);
        if was != now {
            self.by_role[r][usize::from(was)].remove(h);
            self.by_role[r][usize::from(now)].insert(h);
        }
        if was != now || old_key != key {
            let c = self.capacity_of[h];
            if let Some(sets) = self.by_load[r].as_mut() {
                sets[usize::from(was)][c].remove(&(old_key, h as u32));
                sets[usize::from(now)][c].insert((key, h as u32));
            }
            self.load_keys[h] = key;
        }
    }

    fn set_role(&mut self, h: usize, role: u8) {
        let old = self.roles[h];
        if old != role {
            let on = usize::from(self.cpu[h] > 0.0);
            let entry = (self.load_keys[h], h as u32);
            self.by_role[usize::from(old)][on].remove(h);
            self.by_role[usize::from(role)][on].insert(h);
            let c = self.capacity_of[h];
            if let Some(sets) = self.by_load[usize::from(old)].as_mut() {
                sets[on][c].remove(&entry);
            }
            if let Some(sets) = self.by_load[usize::from(role)].as_mut() {
                sets[on][c].insert(entry);
            }
            self.roles[h] = role;
        }
    }

    /// Whether host `h` can take `need` up to `thr`, counting requests already directed to it.
    fn fits(&self, h: usize, need: &Need, thr: f64, pending: bool) -> bool {
        let host = &self.e.hosts[h];
        let Some(v) = host_id(&need.vm) else {
            return false;
        };
        if need.pe_cpu > host.pe_mips {
            return false;
        }
        let cpu = need.cpu + if pending { self.pending[h] } else { 0.0 };
        if (self.cpu[h] + cpu) / host.total_mips > thr {
            return false;
        }
        if self.e.wl.has_mem() && self.mem[h] + need.mem > host.mem_mib * thr.max(0.9) {
            return false;
        }
        if self.e.vms.get(v).is_none_or(|vm| vm.in_migration) {
            return false;
        }
        if need.drain && (self.cpu[h] <= 0.0 || self.draining[h]) {
            // Consolidation only onto running hosts that are not emptying themselves.
            return false;
        }
        true
    }

    /// The `k` best candidate receivers in `role` for `need` from host `from`, best first.
    fn ranked(
        &mut self,
        from: usize,
        role: u8,
        need: &Need,
        exclude: &[Value],
        k: usize,
    ) -> Vec<usize> {
        let thr = 0.9;
        let tried: Vec<usize> = exclude.iter().filter_map(host_id).collect();
        let rank = self.rank;
        let sets = self.take_order(role);
        // While packing, switched-off hosts rank after every running one: look at running hosts
        // first and at the others only if too few running hosts can take the VM.
        let ok =
            |r: &Self, h: usize| h != from && r.fits(h, need, thr, true) && !tried.contains(&h);
        let [off, _] = &self.by_role[usize::from(role)];
        let [off_by_load, on_by_load] = &sets;
        // (switched off while packing, load order, id): smaller is better.
        let key = |r: &Self, h: usize| {
            let u = r.util(h);
            let load = match rank {
                Rank::Pack => -u,
                Rank::Spread => u,
            };
            (r.cpu[h] <= 0.0 && rank == Rank::Pack, load, h)
        };
        let cmp = |a: &(bool, f64, usize), b: &(bool, f64, usize)| {
            a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2))
        };
        // The k best of a set in discovery's order are its first k that can take the VM (a
        // host's key below orders as its place there, after whether it is off while packing,
        // the same for the whole set); so the k best of all are among the k best of each
        // capacity. Running hosts too full to take the VM are passed over ([`cpu_bound`]).
        let mut hosts = Vec::new();
        for (c, set) in on_by_load.iter().enumerate() {
            let bound = self.cpu_bound(self.capacities[c], need, thr);
            let take = |it: &mut dyn Iterator<Item = &(i64, u32)>| {
                it.map(|&(_, h)| h as usize)
                    .filter(|&h| ok(self, h))
                    .take(k)
                    .collect::<Vec<usize>>()
            };
            let found = match (bound, rank) {
                (None, _) => take(&mut set.iter()),
                // Fullest first: start below the bound.
                (Some(b), Rank::Pack) => {
                    take(&mut set.range((Excluded((self.util_key(b), u32::MAX)), Unbounded)))
                }
                // Least loaded first: stop at the bound.
                (Some(b), Rank::Spread) => take(&mut set.range(..(self.util_key(b), 0))),
            };
            hosts.extend(found);
        }
        if rank != Rank::Pack {
            for set in off_by_load {
                hosts.extend(
                    set.iter()
                        .map(|&(_, h)| h as usize)
                        .filter(|&h| ok(self, h))
                        .take(k),
                );
            }
        } else if hosts.len() < k && !(need.drain && self.cpu_numbers) {
            // (A switched-off host, at CPU ≤ 0, takes no VM that a host drains.)
            let more: Vec<usize> = off.iter().filter(|&h| ok(self, h)).take(k).collect();
            hosts.extend(more);
        }
        self.keep_order(role, sets);
        let mut c: Vec<(bool, f64, usize)> = hosts.into_iter().map(|h| key(self, h)).collect();
        let k = k.min(c.len());
        if k == 0 {
            return Vec::new();
        }
        if k < c.len() {
            c.select_nth_unstable_by(k - 1, cmp);
            c.truncate(k);
        }
        c.sort_by(cmp);
        c.into_iter().map(|x| x.2).collect()
    }

    /// The next running host after `h` in id order, cyclically: a peer group knows its live
    /// neighbours, not the whole fleet (switched-off hosts run no agent).
    fn group_next(&self, h: usize) -> usize {
        let n = self.e.hosts.len();
        (1..n)
            .map(|k| (h + k) % n)
            .find(|&x| self.cpu[x] > 0.0 || self.nvms[x] > 0)
            .unwrap_or((h + 1) % n)
    }
}

impl View for SimView<'_> {
    fn resolve(&mut self, me: &Value, role: &str, need: &Need, exclude: &[Value]) -> Resolved {
        if !self.discovery_open {
            return Resolved::Wait;
        }
        let Some(from) = host_id(me) else {
            return Resolved::Nobody;
        };
        match self.ranked(from, role_code(role), need, exclude, 1).first() {
            Some(&h) => {
                self.pending_nonneg &= need.cpu >= 0.0;
                self.pending[h] += need.cpu;
                Resolved::Peer(Value::Int(h as i64))
            }
            None => Resolved::Nobody,
        }
    }

    fn candidates(
        &mut self,
        me: &Value,
        role: &str,
        need: &Need,
        exclude: &[Value],
        k: usize,
    ) -> Vec<Value> {
        let Some(from) = host_id(me) else {
            return Vec::new();
        };
        self.ranked(from, role_code(role), need, exclude, k)
            .into_iter()
            .map(|h| Value::Int(h as i64))
            .collect()
    }

    fn answered(&mut self, me: &Value, cpu: f64) {
        if let Some(h) = host_id(me) {
            self.pending[h] = (self.pending[h] - cpu).max(0.0);
        }
    }

    fn unstable(&mut self, _peer: &Value) -> bool {
        // The replay's discovery does not score hosts: each agent consults the model itself.
        false
    }

    fn busier_exists(&mut self, me: &Value, cpu: f64) -> bool {
        let Some(h) = host_id(me) else {
            return false;
        };
        (0..self.cpu.len())
            .any(|x| x != h && !self.draining[x] && self.cpu[x] > cpu && self.nvms[x] > 0)
    }

    fn neighbour(&mut self, me: &Value) -> Option<Value> {
        host_id(me).map(|h| Value::Int(self.group_next(h) as i64))
    }

    fn wake(&mut self, me: &Value, need: &Need, thr: f64) -> Option<Value> {
        // Power on the first switched-off host (by id) that fits, and reserve it.
        let h = host_id(me)?;
        let n = self.e.hosts.len();
        let pick = (0..n).find(|&x| {
            x != h && self.cpu[x] <= 0.0 && self.nvms[x] == 0 && self.fits(x, need, thr, false)
        })?;
        let c = self.cpu[pick] + need.cpu;
        self.set_cpu(pick, c);
        self.mem[pick] += need.mem;
        Some(Value::Int(pick as i64))
    }

    fn publish(&mut self, me: &Value, st: &Published<'_>) {
        let Some(h) = host_id(me) else {
            return;
        };
        self.set_cpu(h, st.cpu);
        self.mem[h] = st.mem;
        self.nvms[h] = st.vms;
        self.draining[h] = st.draining;
        self.set_role(h, role_code(st.role));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Scenario, Workload};

    /// Discovery's ranking as a scan of every host of the role: the reference for
    /// [`SimView::ranked`]'s ordered sets.
    fn ranked_every_host(
        r: &SimView<'_>,
        from: usize,
        role: u8,
        need: &Need,
        exclude: &[Value],
        k: usize,
    ) -> Vec<usize> {
        let thr = 0.9;
        let tried: Vec<usize> = exclude.iter().filter_map(host_id).collect();
        let ok = |h: usize| h != from && r.fits(h, need, thr, true) && !tried.contains(&h);
        let n = r.cpu.len();
        let of_role = |h: &usize| r.roles[*h] == role;
        let running = |h: &usize| r.cpu[*h] > 0.0;
        let on = (0..n).filter(of_role).filter(running);
        let off = (0..n).filter(of_role).filter(|h| !running(h));
        let mut hosts: Vec<usize> = on.filter(|&h| ok(h)).collect();
        if r.rank != Rank::Pack {
            hosts.extend(off.filter(|&h| ok(h)));
        } else if hosts.len() < k {
            hosts.extend(off.filter(|&h| ok(h)).take(k));
        }
        let mut c: Vec<(bool, f64, usize)> = hosts
            .into_iter()
            .map(|h| {
                let u = r.util(h);
                let load = if r.rank == Rank::Pack { -u } else { u };
                (r.cpu[h] <= 0.0 && r.rank == Rank::Pack, load, h)
            })
            .collect();
        c.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        c.into_iter().take(k).map(|x| x.2).collect()
    }

    #[test]
    fn discovery_ranks_receivers_as_a_scan_of_every_host() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/planetlab-20110303.parquet");
        let wl = Workload::from_parquet(&path)
            .expect("the shipped dataset reads")
            .take(300);
        let sc = Scenario::cloudsim_planetlab(400);
        let mut e = Engine::new(&sc, &wl);
        e.place_all(
            &mut KeelPolicy::from_name("keel-power-saving", None, None, Transport::default())
                .unwrap(),
        )
        .unwrap();
        let n = e.hosts.len();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut found = 0;
        for rank in [Rank::Pack, Rank::Spread] {
            let mut view = SimView::new(&e, rank, 0);
            for round in 0..4000 {
                // Change a few hosts: CPU from a coarse grid (many equal utilisations), 0 (off),
                // role, draining, requests pending.
                for _ in 0..3 {
                    let h = rng.gen_range(0..n);
                    let cpu = match rng.gen_range(0..4) {
                        0 => 0.0,
                        _ => f64::from(rng.gen_range(0..60u32)) * 100.0,
                    };
                    view.set_cpu(h, cpu);
                    view.set_role(h, rng.gen_range(0..=ROLE_OTHER));
                    view.draining[h] = rng.gen_bool(0.1);
                    view.pending[h] = if rng.gen_bool(0.2) {
                        f64::from(rng.gen_range(0..20u32)) * 100.0
                    } else {
                        0.0
                    };
                }
                let need = Need {
                    cpu: f64::from(rng.gen_range(0..30u32)) * 100.0,
                    mem: 0.0,
                    vm: Value::Int(rng.gen_range(0..e.vms.len() as i64)),
                    drain: rng.gen_bool(0.5),
                    pe_cpu: f64::from(rng.gen_range(0..30u32)) * 100.0,
                    hist: Vec::new(),
                };
                let exclude: Vec<Value> = (0..rng.gen_range(0..4))
                    .map(|_| Value::Int(rng.gen_range(0..n as i64)))
                    .collect();
                let from = rng.gen_range(0..n);
                let role = if round % 2 == 0 {
                    ROLE_IDLE
                } else {
                    rng.gen_range(0..=ROLE_OTHER)
                };
                let k = [1, 3, 5][round % 3];
                let want = ranked_every_host(&view, from, role, &need, &exclude, k);
                let got = view.ranked(from, role, &need, &exclude, k);
                assert_eq!(got, want, "{rank:?}, round {round}, {need:?}");
                found += usize::from(!want.is_empty());
            }
        }
        assert!(found > 4000, "only {found} requests found a receiver");
    }
}
