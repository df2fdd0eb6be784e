//! Keel's own policies: one host agent per host, each running an interaction model from
//! `agent/protocols/*.lcc` through keel-lcc, negotiating migrations with its peers over a
//! simulated transport.
//!
//! At every interval, after the datacenter update, each host's peer starts again in its initial
//! role (the runtime's timer replaces the seed's busy `idle` loop) and the round runs until no
//! message is in flight:
//! - the transport delivers each message after `latency` and loses it with probability `loss`
//!   (a ChaCha8 generator seeded from `--seed` and the interval, so a run is deterministic);
//! - when nothing is in flight, a peer still waiting in the middle of a negotiation has timed
//!   out: [`keel_lcc::Peer::timeout`] returns it to its initial role;
//! - the constraints (`overloaded/3`, `draining/3`, `spare/2`, `canMigrate/3`, `migrate/2`, …)
//!   are Rust predicates over the host's load as planned in this round: CPU, and memory where
//!   the dataset measures it;
//! - a send to a peer whose id is unbound (`a(underloaded, C)`) asks the [`Directory`]: the
//!   discovery service, which ranks candidates (fullest first to pack, least loaded first to
//!   balance) and, with a stability model, puts hosts the model scores unstable last.
//!
//! The agreed migrations are then started by the engine, with CloudSim's cost model.

use std::cell::RefCell;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use keel_core::features::HostWindow;
use keel_core::model::ModelFile;
use keel_lcc::{Directory, Envelope, Knowledge, KnowledgeError, Peer, Program, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::engine::{Engine, Policy};
use super::heuristics::{pabfd, Detector};
use super::metrics::Negotiation;

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

    /// The interaction model shipped with the agent.
    pub fn builtin_protocol(self) -> &'static str {
        match self {
            Self::PowerSaving => include_str!("../../protocols/power-saving.lcc"),
            Self::Agility => include_str!("../../protocols/agility.lcc"),
            Self::Auction => include_str!("../../protocols/auction.lcc"),
            Self::PeerGroup => include_str!("../../protocols/peer-group.lcc"),
        }
    }

    fn rank(self) -> Rank {
        match self {
            Self::Agility => Rank::Spread,
            _ => Rank::Pack,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rank {
    /// Fullest host that fits first.
    Pack,
    /// Least loaded host first.
    Spread,
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
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            latency_s: 0.001,
            loss: 0.0,
            seed: 0,
            max_tries: 3,
            bidders: 3,
        }
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
    peers: Vec<Peer>,
    /// Host count, step and window samples for the model.
    name: String,
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
        let Some(variant) = Variant::ALL.into_iter().find(|v| v.name() == var) else {
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
        let program = Program::compile(&src).map_err(|errs| {
            let map = keel_lcc::SourceMap::new(origin.clone(), src.clone());
            let text: Vec<String> = errs
                .iter()
                .map(|e| keel_lcc::diag::render(&map, e))
                .collect();
            anyhow::anyhow!("{origin}: invalid interaction model:\n{}", text.join("\n"))
        })?;
        Ok(Self {
            variant,
            program: Arc::new(program),
            model: if with_model { model } else { None },
            transport,
            stats: Negotiation::default(),
            round: 0,
            peers: Vec::new(),
            name: name.to_string(),
        })
    }

    /// The variant.
    pub fn variant(&self) -> Variant {
        self.variant
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

    fn optimize(&mut self, e: &mut Engine<'_>) -> anyhow::Result<Vec<(usize, usize)>> {
        self.round += 1;
        let seed = self
            .transport
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(self.round);
        let round = Round::new(e, self.variant, self.transport, self.model.as_deref());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        run_round(
            &self.program,
            &mut self.peers,
            round,
            &mut rng,
            &mut self.stats,
        )
    }

    fn negotiation(&self) -> Option<Negotiation> {
        Some(self.stats)
    }
}

/// What the round knows and plans: per-host load as planned so far.
struct Round<'e> {
    e: &'e Engine<'e>,
    variant: Variant,
    t: Transport,
    cpu: Vec<f64>,
    /// CPU of requests the directory has sent to a host and that it has not answered yet: the
    /// directory counts them so that concurrent requests do not all pick the same receiver.
    pending: Vec<f64>,
    mem: Vec<f64>,
    mem_cap: Vec<f64>,
    vms: Vec<Vec<u32>>,
    roles: Vec<u8>,
    /// Hosts by role code, switched off (0) or running (1): discovery looks only at hosts in the
    /// role it asks for, and while packing at running ones first.
    by_role: Vec<[BTreeSet<usize>; 2]>,
    incoming: Vec<bool>,
    draining: Vec<bool>,
    moved: HashSet<u32>,
    tried: HashMap<u32, (u32, Vec<u32>)>,
    exhausted: HashSet<u32>,
    moves: Vec<(usize, usize)>,
    unstable: Vec<bool>,
    vetoes: u64,
    /// Off while the agents take their roles at the start of a round: a send to an unbound peer
    /// waits instead of failing, and is retried once every agent has a role.
    discovery_open: bool,
    agreed: u64,
    refused: u64,
    started: u64,
    /// Switched-off hosts powered on by `wake/3`.
    woken: u64,
}

fn mem_of(e: &Engine<'_>, v: usize) -> f64 {
    e.wl.mem_at(v, e.now).unwrap_or(0.0)
}

impl<'e> Round<'e> {
    fn new(e: &'e Engine<'e>, variant: Variant, t: Transport, model: Option<&ModelFile>) -> Self {
        let n = e.hosts.len();
        let vms: Vec<Vec<u32>> = e
            .hosts
            .iter()
            .map(|h| {
                h.vm_list
                    .iter()
                    .copied()
                    .filter(|v| !h.migrating_in.contains(v))
                    .collect()
            })
            .collect();
        let cpu: Vec<f64> = vms
            .iter()
            .map(|l| l.iter().map(|&v| e.vms[v as usize].req).sum())
            .collect();
        let mem = vms
            .iter()
            .map(|l| l.iter().map(|&v| mem_of(e, v as usize)).sum())
            .collect();
        let unstable = match model {
            Some(m) => {
                let need = ((m.window_s() / e.sc.interval_s).ceil() as usize).max(1);
                e.hosts
                    .iter()
                    .map(|h| {
                        let hist: Vec<f64> = h.history.iter().copied().collect();
                        if hist.len() < need {
                            return false;
                        }
                        let w = HostWindow::cpu(e.sc.interval_s, &hist[hist.len() - need..]);
                        m.score(&w).is_ok_and(|s| s >= m.threshold)
                    })
                    .collect()
            }
            None => vec![false; n],
        };
        Self {
            e,
            variant,
            t,
            pending: vec![0.0; n],
            mem,
            mem_cap: e.hosts.iter().map(|h| h.mem_mib).collect(),
            vms,
            roles: vec![ROLE_IDLE; n],
            by_role: (0..=ROLE_BUSY)
                .map(|r| {
                    let mut sets = [BTreeSet::new(), BTreeSet::new()];
                    if r == ROLE_IDLE {
                        for (h, &c) in cpu.iter().enumerate() {
                            sets[usize::from(c > 0.0)].insert(h);
                        }
                    }
                    sets
                })
                .collect(),
            incoming: vec![false; n],
            draining: vec![false; n],
            moved: HashSet::new(),
            tried: HashMap::new(),
            exhausted: HashSet::new(),
            moves: Vec::new(),
            cpu,
            unstable,
            vetoes: 0,
            discovery_open: false,
            agreed: 0,
            refused: 0,
            started: 0,
            woken: 0,
        }
    }

    fn util(&self, h: usize) -> f64 {
        self.cpu[h] / self.e.hosts[h].total_mips
    }

    fn set_role(&mut self, h: usize, role: u8) {
        let old = self.roles[h];
        if old != role {
            let on = usize::from(self.cpu[h] > 0.0);
            self.by_role[usize::from(old)][on].remove(&h);
            self.by_role[usize::from(role)][on].insert(h);
            self.roles[h] = role;
        }
    }

    /// Adds `delta` to host `h`'s planned CPU, keeping the running/switched-off index.
    fn add_cpu(&mut self, h: usize, delta: f64) {
        let was = self.cpu[h] > 0.0;
        self.cpu[h] += delta;
        let now = self.cpu[h] > 0.0;
        if was != now {
            let r = usize::from(self.roles[h]);
            self.by_role[r][usize::from(was)].remove(&h);
            self.by_role[r][usize::from(now)].insert(h);
        }
    }

    fn mem_util(&self, h: usize) -> f64 {
        if self.e.wl.has_mem() {
            self.mem[h] / self.mem_cap[h]
        } else {
            0.0
        }
    }

    fn need(&self, v: usize, kind: &str) -> Value {
        let vm = &self.e.vms[v];
        Value::compound(
            "need",
            vec![
                Value::Float(vm.req),
                Value::Float(mem_of(self.e, v)),
                Value::Int(v as i64),
                Value::atom(kind),
            ],
        )
    }

    /// Whether host `h` can take `need` up to `thr` of its CPU (and memory, where measured).
    fn fits(&self, h: usize, need: &Value, thr: f64) -> bool {
        parse_need(need).is_some_and(|n| self.fits_parsed(h, n, thr))
    }

    fn fits_parsed(
        &self,
        h: usize,
        (cpu, mem, v, drain): (f64, f64, usize, bool),
        thr: f64,
    ) -> bool {
        let host = &self.e.hosts[h];
        if cpu / f64::from(self.e.vms[v].pes) > host.pe_mips {
            return false;
        }
        if (self.cpu[h] + cpu) / host.total_mips > thr {
            return false;
        }
        if self.e.wl.has_mem() && self.mem[h] + mem > self.mem_cap[h] * thr.max(0.9) {
            return false;
        }
        if self.e.vms[v].in_migration || self.vms[h].contains(&(v as u32)) {
            return false;
        }
        if drain {
            // Consolidation only onto running hosts that are not emptying themselves.
            if self.cpu[h] <= 0.0 || self.draining[h] {
                return false;
            }
        }
        true
    }

    /// [`Self::fits`] counting the requests already directed to `h`.
    fn fits_pending(&self, h: usize, n: (f64, f64, usize, bool), thr: f64) -> bool {
        let cpu = n.0 + self.pending[h];
        self.fits_parsed(h, (cpu, n.1, n.2, n.3), thr)
    }

    fn reserve(&mut self, h: usize, need: &Value) {
        if let Some((cpu, mem, _, _)) = parse_need(need) {
            self.add_cpu(h, cpu);
            self.mem[h] += mem;
            self.incoming[h] = true;
        }
    }

    /// Picks a VM of host `h` to move: the least memory first (minimum migration time), then
    /// list order; skips VMs moved or given up this round.
    fn pick_vm(&self, h: usize, largest_first: bool) -> Option<usize> {
        let cand = self.vms[h].iter().map(|&v| v as usize).filter(|&v| {
            !self.moved.contains(&(v as u32)) && !self.exhausted.contains(&(v as u32))
        });
        if largest_first {
            cand.fold(None::<usize>, |b, v| match b {
                Some(x) if self.e.vms[x].req >= self.e.vms[v].req => Some(x),
                _ => Some(v),
            })
        } else {
            cand.fold(None::<usize>, |b, v| match b {
                Some(x) if self.e.vms[x].ram <= self.e.vms[v].ram => Some(x),
                _ => Some(v),
            })
        }
    }

    /// The `k` best candidate receivers for `need` from host `from`, best first.
    fn ranked(
        &mut self,
        from: usize,
        role: u8,
        need: &Value,
        vm: Option<u32>,
        k: usize,
    ) -> Vec<usize> {
        let thr = 0.9;
        let tried: Vec<u32> = vm
            .and_then(|v| self.tried.get(&v))
            .map_or_else(Vec::new, |t| t.1.clone());
        let rank = self.variant.rank();
        let Some(parsed) = parse_need(need) else {
            return Vec::new();
        };
        // While packing, switched-off hosts rank after every running one: look at running hosts
        // first and at the others only if too few stable running hosts can take the VM. Switched-off
        // hosts all carry no load, so they rank by (unstable, id): the first `k` stable ones in id
        // order (and the unstable ones before them) are all that can make the top `k`.
        let ok = |r: &Self, h: usize| {
            h != from && r.fits_pending(h, parsed, thr) && !tried.contains(&(h as u32))
        };
        let [off, on] = &self.by_role[usize::from(role)];
        let mut hosts: Vec<usize> = on.iter().copied().filter(|&h| ok(self, h)).collect();
        let stable = |hs: &[usize]| hs.iter().filter(|&&h| !self.unstable[h]).count();
        if rank != Rank::Pack {
            hosts.extend(off.iter().copied().filter(|&h| ok(self, h)));
        } else if stable(&hosts) < k {
            let mut found = 0;
            for h in off.iter().copied() {
                if found >= k {
                    break;
                }
                if ok(self, h) {
                    hosts.push(h);
                    found += usize::from(!self.unstable[h]);
                }
            }
        }
        // (unstable, switched off while packing, load order, id): smaller is better.
        let mut c: Vec<(bool, bool, f64, usize)> = hosts
            .into_iter()
            .map(|h| {
                let u = self.util(h);
                let load = match rank {
                    Rank::Pack => -u,
                    Rank::Spread => u,
                };
                (
                    self.unstable[h],
                    self.cpu[h] <= 0.0 && rank == Rank::Pack,
                    load,
                    h,
                )
            })
            .collect();
        let cmp = |a: &(bool, bool, f64, usize), b: &(bool, bool, f64, usize)| {
            a.0.cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        };
        // A veto: the best candidate without the model is one the model scores unstable.
        let without = c
            .iter()
            .min_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)).then(a.3.cmp(&b.3)));
        if without.is_some_and(|w| w.0) && c.iter().any(|x| !x.0) {
            self.vetoes += 1;
        }
        let k = k.min(c.len());
        if k == 0 {
            return Vec::new();
        }
        if k < c.len() {
            c.select_nth_unstable_by(k - 1, cmp);
            c.truncate(k);
        }
        c.sort_by(cmp);
        c.into_iter().map(|x| x.3).collect()
    }

    fn note_tried(&mut self, v: u32, h: u32) {
        let max = self.t.max_tries;
        let e = self.tried.entry(v).or_insert((0, Vec::new()));
        e.0 += 1;
        e.1.push(h);
        if e.0 >= max {
            self.exhausted.insert(v);
        }
    }

    /// The next running host after `h` in id order, cyclically: a peer group knows its live
    /// neighbours, not the whole fleet (switched-off hosts run no agent).
    fn group_next(&self, h: usize) -> usize {
        let n = self.e.hosts.len();
        (1..n)
            .map(|k| (h + k) % n)
            .find(|&x| self.cpu[x] > 0.0 || !self.vms[x].is_empty())
            .unwrap_or((h + 1) % n)
    }
}

fn parse_need(v: &Value) -> Option<(f64, f64, usize, bool)> {
    if v.name() != Some("need") || v.args().len() != 4 {
        return None;
    }
    let a = v.args();
    Some((
        a[0].as_f64()?,
        a[1].as_f64()?,
        usize::try_from(a[2].as_int()?).ok()?,
        a[3].as_atom()? == "drain",
    ))
}

fn num(v: &Value) -> Result<f64, KnowledgeError> {
    v.as_f64()
        .ok_or_else(|| KnowledgeError::Failed(format!("expected a number, got {v}")))
}

fn id_of(v: &Value) -> Option<usize> {
    v.as_int().and_then(|i| usize::try_from(i).ok())
}

/// Host `h`'s knowledge: its predicates, over the round's plan.
struct HostKnowledge<'a, 'e> {
    h: usize,
    r: &'a RefCell<Round<'e>>,
}

impl Knowledge for HostKnowledge<'_, '_> {
    fn solve(&mut self, name: &str, args: &[Value]) -> Result<Option<Vec<Value>>, KnowledgeError> {
        let h = self.h;
        let mut guard = self.r.borrow_mut();
        let r = &mut *guard;
        let yes = |vals: Vec<Value>| Ok(Some(vals));
        match (name, args.len()) {
            ("overloaded", 3) => {
                let thr = num(&args[0])?;
                if r.util(h) <= thr && r.mem_util(h) <= thr.max(0.9) {
                    return Ok(None);
                }
                let Some(v) = r.pick_vm(h, false) else {
                    return Ok(None);
                };
                r.started += 1;
                yes(vec![
                    args[0].clone(),
                    Value::Int(v as i64),
                    r.need(v, "over"),
                ])
            }
            ("draining", 3) => {
                let thr = num(&args[0])?;
                let u = r.util(h);
                if !(u > 0.0 && u < thr) || r.incoming[h] {
                    return Ok(None);
                }
                // Drain only towards a busier running host that is not draining itself (the
                // discovery service knows loads): the busiest host always stays to receive.
                let busier = (0..r.cpu.len()).any(|x| {
                    x != h && !r.draining[x] && r.cpu[x] > r.cpu[h] && !r.vms[x].is_empty()
                });
                if !busier {
                    return Ok(None);
                }
                let Some(v) = r.pick_vm(h, true) else {
                    return Ok(None);
                };
                // A drain that already failed once leaves the host as it is this interval.
                if r.vms[h].iter().any(|x| r.exhausted.contains(x)) {
                    return Ok(None);
                }
                r.draining[h] = true;
                r.started += 1;
                yes(vec![
                    args[0].clone(),
                    Value::Int(v as i64),
                    r.need(v, "drain"),
                ])
            }
            ("spare", 2) => {
                let thr = num(&args[0])?;
                if r.draining[h] || r.util(h) >= thr {
                    return Ok(None);
                }
                let cap = thr * r.e.hosts[h].total_mips - r.cpu[h];
                yes(vec![args[0].clone(), Value::Float(cap)])
            }
            ("canMigrate", 3) | ("canMigrate", 2) => {
                let thr = num(&args[0])?;
                let need = &args[args.len() - 1];
                if let Some(n) = parse_need(need) {
                    r.pending[h] = (r.pending[h] - n.0).max(0.0);
                }
                // Without a directory to rank it, a peer the model scores unstable declines.
                if r.variant == Variant::PeerGroup && r.unstable[h] {
                    r.vetoes += 1;
                    return Ok(None);
                }
                if r.fits(h, need, thr) {
                    r.reserve(h, need);
                    Ok(Some(args.to_vec()))
                } else {
                    Ok(None)
                }
            }
            ("price", 3) => {
                let thr = num(&args[0])?;
                let need = &args[1];
                if !r.fits(h, need, thr) {
                    return Ok(None);
                }
                let cpu = parse_need(need).map_or(0.0, |n| n.0);
                let after = (r.cpu[h] + cpu) / r.e.hosts[h].total_mips;
                let p = match r.variant.rank() {
                    Rank::Pack => after,
                    Rank::Spread => 1.0 - after,
                };
                yes(vec![args[0].clone(), args[1].clone(), Value::Float(p)])
            }
            ("candidates", 2) => {
                let vm = parse_need(&args[0]).map(|n| n.2 as u32);
                let c = r.ranked(h, ROLE_BIDDER, &args[0], vm, r.t.bidders);
                let list = c
                    .into_iter()
                    .take(r.t.bidders)
                    .map(|x| Value::Int(x as i64))
                    .collect();
                yes(vec![args[0].clone(), Value::list(list)])
            }
            ("best", 2) => {
                let Some(bids) = args[0].list_items() else {
                    return Ok(None);
                };
                let mut best: Option<(bool, f64, usize)> = None;
                for b in bids {
                    if b.name() != Some("bid") || b.args().len() != 2 {
                        continue;
                    }
                    let (Some(w), Some(p)) = (id_of(&b.args()[0]), b.args()[1].as_f64()) else {
                        continue;
                    };
                    let k = (r.unstable[w], -p, w);
                    if best.is_none_or(|(u, q, x)| k < (u, -q, x)) {
                        best = Some((k.0, p, w));
                    }
                }
                match best {
                    Some((_, _, w)) => yes(vec![args[0].clone(), Value::Int(w as i64)]),
                    None => Ok(None),
                }
            }
            ("migrate", 2) => {
                let (Some(v), Some(to)) = (id_of(&args[0]), id_of(&args[1])) else {
                    return Ok(None);
                };
                if r.moved.contains(&(v as u32)) || !r.vms[h].contains(&(v as u32)) {
                    return Ok(None);
                }
                let cpu = r.e.vms[v].req;
                r.add_cpu(h, -cpu);
                r.mem[h] -= mem_of(r.e, v);
                r.vms[h].retain(|&x| x as usize != v);
                r.vms[to].push(v as u32);
                r.moved.insert(v as u32);
                r.moves.push((v, to));
                r.agreed += 1;
                Ok(Some(args.to_vec()))
            }
            ("refused", 2) => {
                let Some(v) = id_of(&args[0]) else {
                    return Ok(None);
                };
                let to = id_of(&args[1]).unwrap_or(usize::MAX);
                r.note_tried(v as u32, to as u32);
                if r.exhausted.contains(&(v as u32)) {
                    r.refused += 1;
                }
                Ok(Some(args.to_vec()))
            }
            ("wake", 3) => {
                // Last resort of an overloaded host whose group took nothing: power on the first
                // switched-off host (by id; ones the model scores unstable last) that fits.
                let thr = num(&args[0])?;
                let need = &args[1];
                if r.util(h) <= thr {
                    return Ok(None);
                }
                let off = |x: usize| x != h && r.cpu[x] <= 0.0 && r.vms[x].is_empty();
                let pick = (0..r.e.hosts.len())
                    .filter(|&x| off(x) && !r.unstable[x] && r.fits(x, need, thr))
                    .chain(
                        (0..r.e.hosts.len())
                            .filter(|&x| off(x) && r.unstable[x] && r.fits(x, need, thr)),
                    )
                    .next();
                match pick {
                    Some(w) => {
                        r.reserve(w, need);
                        r.woken += 1;
                        yes(vec![args[0].clone(), args[1].clone(), Value::Int(w as i64)])
                    }
                    None => Ok(None),
                }
            }
            ("neighbour", 2) => {
                let n = r.group_next(h);
                yes(vec![Value::Int(h as i64), Value::Int(n as i64)])
            }
            ("forward", 3) => {
                let Some(hops) = args[0].as_int() else {
                    return Ok(None);
                };
                if hops <= 0 {
                    return Ok(None);
                }
                let n = r.group_next(h);
                yes(vec![
                    args[0].clone(),
                    Value::Int(hops - 1),
                    Value::Int(n as i64),
                ])
            }
            _ => Err(KnowledgeError::Unknown),
        }
    }
}

/// The discovery service seen by host `from`.
struct HostDirectory<'a, 'e> {
    from: usize,
    r: &'a RefCell<Round<'e>>,
}

impl Directory for HostDirectory<'_, '_> {
    fn resolve(&mut self, role: &Value, body: &Value) -> Option<Value> {
        let role = role_code(role.name()?);
        // readyToMigrate(Vm, Need)
        let (vm, need) = match body.args() {
            [vm, need] => (id_of(vm)? as u32, need.clone()),
            _ => return None,
        };
        let mut r = self.r.borrow_mut();
        if !r.discovery_open {
            return None;
        }
        let c = r.ranked(self.from, role, &need, Some(vm), 1);
        match c.first() {
            Some(&h) => {
                if let Some(n) = parse_need(&need) {
                    r.pending[h] += n.0;
                }
                Some(Value::Int(h as i64))
            }
            None => {
                // Nobody can take it: give the VM up for this interval.
                r.exhausted.insert(vm);
                r.refused += 1;
                None
            }
        }
    }
}

#[derive(Debug, PartialEq)]
struct InFlight {
    t: f64,
    seq: u64,
    env: Envelope,
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Min-heap on (t, seq).
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}

const ROUND_EVENT_LIMIT: u64 = 2_000_000;

const ROLE_IDLE: u8 = 0;
const ROLE_UNDERLOADED: u8 = 1;
const ROLE_BIDDER: u8 = 2;
const ROLE_MEMBER: u8 = 3;
/// In the middle of a negotiation (any other role).
const ROLE_BUSY: u8 = 4;

fn role_code(name: &str) -> u8 {
    match name {
        "idle" => ROLE_IDLE,
        "underloaded" => ROLE_UNDERLOADED,
        "bidder" => ROLE_BIDDER,
        "member" => ROLE_MEMBER,
        _ => ROLE_BUSY,
    }
}

fn role_name(p: &Peer) -> u8 {
    p.role().name().map_or(ROLE_BUSY, role_code)
}

fn step_peer(
    h: usize,
    peers: &mut [Peer],
    rc: &RefCell<Round<'_>>,
    out: &mut Vec<Envelope>,
) -> anyhow::Result<()> {
    // The interpreter never calls the knowledge and the directory at the same time, so each
    // borrows the round only for the length of one call.
    let mut k = HostKnowledge { h, r: rc };
    let mut d = HostDirectory { from: h, r: rc };
    peers[h]
        .step(&mut k, &mut d, out)
        .map_err(|e| anyhow::anyhow!("agent of host {h}: {e}"))?;
    rc.borrow_mut().set_role(h, role_name(&peers[h]));
    Ok(())
}

/// Puts sent messages in flight, losing each with probability `loss`.
#[allow(clippy::too_many_arguments)]
fn flush(
    out: &mut Vec<Envelope>,
    queue: &mut BinaryHeap<InFlight>,
    seq: &mut u64,
    now: f64,
    latency: f64,
    loss: f64,
    rng: &mut ChaCha8Rng,
    stats: &mut Negotiation,
) {
    for env in out.drain(..) {
        stats.messages += 1;
        if loss > 0.0 && rng.gen::<f64>() < loss {
            stats.lost += 1;
            continue;
        }
        *seq += 1;
        queue.push(InFlight {
            t: now + latency,
            seq: *seq,
            env,
        });
    }
}

fn run_round(
    program: &Arc<Program>,
    peers: &mut Vec<Peer>,
    round: Round<'_>,
    rng: &mut ChaCha8Rng,
    stats: &mut Negotiation,
) -> anyhow::Result<Vec<(usize, usize)>> {
    let n = round.e.hosts.len();
    let now_s = round.e.now;
    let latency = round.t.latency_s;
    let loss = round.t.loss;
    let rc = RefCell::new(round);
    // Every agent starts the interval in its initial role: a peer whose inbox is empty is reset
    // (`timeout`), one with stale messages from the last interval is started afresh.
    if peers.len() != n {
        peers.clear();
    }
    for h in 0..n {
        if h < peers.len() && peers[h].inbox().is_empty() {
            peers[h]
                .timeout()
                .map_err(|e| anyhow::anyhow!("resetting the agent of host {h}: {e}"))?;
        } else {
            let p = Peer::new(
                Arc::clone(program),
                Value::atom("idle"),
                Value::Int(h as i64),
            )
            .map_err(|e| anyhow::anyhow!("starting the agent of host {h}: {e}"))?;
            if h < peers.len() {
                peers[h] = p;
            } else {
                peers.push(p);
            }
        }
    }
    let mut queue = BinaryHeap::new();
    let mut seq = 0u64;
    let mut out = Vec::new();
    let mut events = 0u64;
    for h in 0..n {
        step_peer(h, peers, &rc, &mut out)?;
        flush(
            &mut out, &mut queue, &mut seq, 0.0, latency, loss, rng, stats,
        );
    }
    // Every agent has its role now: the ones waiting to address an unbound peer go on.
    rc.borrow_mut().discovery_open = true;
    for h in 0..n {
        if rc.borrow().roles[h] == ROLE_BUSY {
            step_peer(h, peers, &rc, &mut out)?;
            flush(
                &mut out, &mut queue, &mut seq, 0.0, latency, loss, rng, stats,
            );
        }
    }
    let mut now = 0.0;
    loop {
        while let Some(InFlight { t, env, .. }) = queue.pop() {
            now = t;
            events += 1;
            if events > ROUND_EVENT_LIMIT {
                bail!("negotiation round at t = {now_s:.1} s did not settle");
            }
            let Some(to) = id_of(&env.to.id).filter(|&x| x < n) else {
                continue;
            };
            peers[to].deliver(env);
            step_peer(to, peers, &rc, &mut out)?;
            flush(
                &mut out, &mut queue, &mut seq, now, latency, loss, rng, stats,
            );
        }
        // Nothing in flight: a peer in the middle of a negotiation has timed out.
        let mut any = false;
        for h in 0..n {
            if rc.borrow().roles[h] != ROLE_BUSY {
                continue;
            }
            peers[h]
                .timeout()
                .map_err(|e| anyhow::anyhow!("agent of host {h}: {e}"))?;
            stats.timed_out += 1;
            {
                // Whatever it was negotiating is given up for this interval.
                let mut r = rc.borrow_mut();
                let vms = r.vms[h].clone();
                r.exhausted.extend(vms);
            }
            step_peer(h, peers, &rc, &mut out)?;
            any |= !out.is_empty();
            flush(
                &mut out, &mut queue, &mut seq, now, latency, loss, rng, stats,
            );
        }
        if !any && queue.is_empty() {
            break;
        }
    }
    let r = rc.into_inner();
    stats.started += r.started;
    stats.woken += r.woken;
    stats.agreed += r.agreed;
    stats.refused += r.refused;
    stats.model_vetoes += r.vetoes;
    Ok(r.moves)
}
