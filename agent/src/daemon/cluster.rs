//! `keel-agent cluster`: a fleet of real agents on 127.0.0.1, for trying Keel and for tests.
//!
//! Every agent is a full [`crate::node`] with its own TCP listener, the cluster key and the
//! dry-run executor. The VMs of a canonical-schema dataset are placed on the hosts
//! deterministically (dataset order, each host filled to `--pack` × its CPU capacity in
//! provisioned VM capacity, CloudSim's G4/G5 hosts alternating); each VM's demand is its recorded
//! CPU utilisation × its capacity, replayed at `--speedup` × real time. `--kill RATE` kills random
//! agents abruptly (no goodbye) at RATE per second and restarts them after `--down-ms` on the
//! same address. At the end the fleet is shut down gracefully and the counters are summed.
//!
//! `--placement FILE` (written by `keel-agent replay --export-placement FILE`) runs the replay's
//! small scenario instead: its hosts (capacity, power curve), its VMs on the hosts the replay
//! placed them on, its thresholds, for its steps, each VM's demand read as the replay reads it;
//! every agent evaluates once per step; the trace starts after `--warmup-ms` (hosts show no VMs
//! until then, so membership settles first); the run ends after the last step, and the report adds
//! `energy_kwh`, the replay engine's power rule over the placement and demand at each step's start
//! (see [`crate::replay::placement`]).
//!
//! `vm_conflicts` counts a VM promised to or placed on two hosts: a migration executed for a VM
//! that was not on its source, or two negotiations executing the same VM at once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::host::ModelConsult;
use crate::negotiation::rank::{ModelRanker, NoModel, Ranker};
use crate::negotiation::{Outcome, Side, Timeouts};
use crate::net::{ClusterKey, FaultPlan, NetCounts};
use crate::node::load::{SimFleet, Traces};
use crate::node::membership::Mode;
use crate::node::{self, NodeConfig, NodeEvent, NodeHandle};
use crate::replay::placement::{energy_kwh, Placement};

/// Arguments of `keel-agent cluster`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 8)]
    pub agents: usize,
    /// Canonical-schema Parquet dataset (VM rows with `cpu_util`).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Trace seconds per real second.
    #[arg(long, default_value_t = 300.0)]
    pub speedup: f64,
    /// Real seconds to run.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Agents killed (and restarted) per second, fleet-wide.
    #[arg(long, default_value_t = 0.0)]
    pub kill: f64,
    /// How long a killed agent stays down, ms.
    #[arg(long, default_value_t = 1000)]
    pub down_ms: u64,
    /// Provisioned VM capacity per host, as a multiple of the host's CPU capacity.
    #[arg(long, default_value_t = 3.0)]
    pub pack: f64,
    /// Frames dropped at random (fault injection), probability.
    #[arg(long, default_value_t = 0.0)]
    pub drop: f64,
    /// Frames duplicated at random (fault injection), probability.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate: f64,
    /// Stability model to rank targets with.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// LCC interaction model every agent runs (default: the seed slides' model); e.g.
    /// `agent/protocols/peer-group.lcc`.
    #[arg(long)]
    pub interaction_model: Option<PathBuf>,
    /// Find peers through a directory served by the first agent instead of SWIM.
    #[arg(long)]
    pub directory: bool,
    /// RNG seed (placement is deterministic regardless).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run a replay's small scenario (`keel-agent replay --export-placement FILE`): its hosts,
    /// VMs, initial placement, thresholds and steps; `--agents`, `--pack` and `--seconds` are
    /// then taken from the file.
    #[arg(long)]
    pub placement: Option<PathBuf>,
    /// Load evaluation period of every agent, ms (default 200, or one trace step with
    /// `--placement`).
    #[arg(long)]
    pub eval_ms: Option<u64>,
    /// With `--placement`: real ms the fleet runs before the trace starts.
    #[arg(long, default_value_t = 2000)]
    pub warmup_ms: u64,
    /// Minimum stay of a VM that migrated to a host, trace seconds: it is not offered again
    /// before, while another VM can go (default with `--model`: the model's window, at least
    /// 3600; 0 without; as in replay).
    #[arg(long)]
    pub min_stay_s: Option<f64>,
    /// Which offers a host checks with the stability model (with `--model`): `every` or
    /// `consolidation` (as in replay).
    #[arg(long, value_enum, default_value_t = ModelConsult::default())]
    pub model_consult: ModelConsult,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a cluster run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Agents.
    pub agents: usize,
    /// VMs placed.
    pub vms: usize,
    /// Real seconds run (before the graceful shutdown).
    pub seconds: f64,
    /// Trace seconds per real second.
    pub speedup: f64,
    /// Negotiations started (sources).
    pub negotiations: u64,
    /// Migrations executed.
    pub migrations: u64,
    /// Frames written by all agents (gossip included).
    pub messages: u64,
    /// Commit-layer messages sent (offer, accept, commit, ...).
    pub negotiation_messages: u64,
    /// The interaction model every agent ran.
    pub interaction_model: String,
    /// The interaction model's own messages the agents sent over TCP, by message name.
    pub lcc_messages: BTreeMap<String, u64>,
    /// Interaction-model waits that ran out (the agent went back to its initial role).
    pub lcc_timeouts: u64,
    /// Interaction-model runtime errors.
    pub lcc_errors: u64,
    /// Waits that ran out (sources and targets).
    pub timeouts: u64,
    /// Offers rejected.
    pub rejected: u64,
    /// Negotiations aborted.
    pub aborted: u64,
    /// Resends.
    pub retries: u64,
    /// VMs promised to or placed on two hosts (must be 0).
    pub vm_conflicts: u64,
    /// Agents killed.
    pub kills: u64,
    /// Frames refused (bad MAC, malformed, oversize) and duplicates dropped.
    pub frames_refused: u64,
    /// Duplicate frames dropped.
    pub duplicates_dropped: u64,
    /// Frames dropped or duplicated by fault injection.
    pub faults_injected: u64,
    /// With `--placement`: trace steps run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// With `--placement`: energy over the steps, kWh (the replay engine's power rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_kwh: Option<f64>,
    /// With `--placement`: energy of the initial placement kept throughout (no migration), kWh,
    /// by the same rule: the yardstick for `energy_kwh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_energy_kwh: Option<f64>,
    /// With `--placement`: hosts running a VM with demand at each step's start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub active_hosts: Vec<u32>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} agents running {}, {} VMs, {:.1} s at {}x: {} negotiations, {} migrations, {} messages ({} commit), \
             model messages {:?}, {} timeouts, {} rejected, {} aborted, {} kills, vm_conflicts {}",
            self.agents,
            self.interaction_model,
            self.vms,
            self.seconds,
            self.speedup,
            self.negotiations,
            self.migrations,
            self.messages,
            self.negotiation_messages,
            self.lcc_messages,
            self.timeouts,
            self.rejected,
            self.aborted,
            self.kills,
            self.vm_conflicts
        )?;
        if let (Some(steps), Some(e)) = (self.steps, self.energy_kwh) {
            write!(f, ", {steps} steps, {e:.3} kWh")?;
        }
        Ok(())
    }
}

/// VM demand traces and a placement built from a dataset.
#[derive(Debug)]
pub struct Scenario {
    /// Host id → capacity.
    pub hosts: Vec<(String, f64)>,
    /// VM → host.
    pub placement: BTreeMap<String, String>,
    /// VM → demand per step.
    pub series: HashMap<String, Vec<f64>>,
    /// Trace seconds per step.
    pub step_s: f64,
}

/// Builds the scenario: reads the dataset's CPU utilisation and places VMs.
///
/// # Errors
/// Reading the dataset; a dataset without VM rows.
pub fn scenario(path: &std::path::Path, agents: usize, pack: f64) -> anyhow::Result<Scenario> {
    let ds = keel_core::parquet_io::read_samples(path, Some(&[keel_core::schema::CPU_UTIL]))
        .with_context(|| format!("reading dataset {}", path.display()))?;
    let mut by_vm: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for s in &ds.samples {
        if let (Some(vm), Some(u)) = (&s.vm_id, s.metrics.cpu_util) {
            by_vm.entry(vm.clone()).or_default().push((s.ts_ms, u));
        }
    }
    if by_vm.is_empty() {
        bail!("{}: no VM rows with cpu_util", path.display());
    }
    let mut step_ms = i64::MAX;
    for v in by_vm.values_mut() {
        v.sort_by_key(|x| x.0);
        for w in v.windows(2) {
            if w[1].0 > w[0].0 {
                step_ms = step_ms.min(w[1].0 - w[0].0);
            }
        }
    }
    let step_s = if step_ms == i64::MAX {
        300.0
    } else {
        step_ms as f64 / 1000.0
    };
    let hosts: Vec<(String, f64)> = keel_core::catalog::cloudsim_hosts(agents)
        .into_iter()
        .enumerate()
        .map(|(i, h)| (format!("h{i:02}"), h.cpu_capacity()))
        .collect();
    // VMs in inventory order where the file has one, else by id.
    let order: Vec<String> = if ds.inventory.vms.is_empty() {
        by_vm.keys().cloned().collect()
    } else {
        ds.inventory
            .vms
            .iter()
            .map(|v| v.id.clone())
            .filter(|id| by_vm.contains_key(id))
            .collect()
    };
    let n = order.len();
    let mut placement = BTreeMap::new();
    let mut series = HashMap::new();
    let mut h = 0;
    let mut filled = 0.0;
    for (i, vm) in order.iter().enumerate() {
        if h >= hosts.len() {
            break;
        }
        let cap = ds.inventory.vm(vm).map_or_else(
            || {
                keel_core::catalog::cloudsim_vm_type_for(i, n)
                    .spec(vm.clone())
                    .cpu_capacity()
            },
            |v| v.cpu_capacity(),
        );
        placement.insert(vm.clone(), hosts[h].0.clone());
        series.insert(
            vm.clone(),
            by_vm[vm]
                .iter()
                .map(|(_, u)| u.clamp(0.0, 1.0) * cap)
                .collect(),
        );
        filled += cap;
        if filled >= pack * hosts[h].1 {
            h += 1;
            filled = 0.0;
        }
    }
    Ok(Scenario {
        hosts,
        placement,
        series,
        step_s,
    })
}

/// A replay's small scenario ([`crate::replay::placement`]) as a cluster scenario, with the
/// hosts' power curves. Series index `j` is the replay's interval update `j + 1`.
///
/// # Errors
/// Reading the file or the dataset.
pub fn scenario_from_placement(
    pl: &Placement,
    dataset: &std::path::Path,
) -> anyhow::Result<(Scenario, Vec<[f64; 11]>)> {
    let series = pl.demands(dataset)?;
    let sc = Scenario {
        hosts: pl
            .hosts
            .iter()
            .map(|h| (h.id.clone(), h.capacity))
            .collect(),
        placement: pl
            .vms
            .iter()
            .map(|v| (v.id.clone(), v.host.clone()))
            .collect(),
        series,
        step_s: pl.interval_s,
    };
    Ok((sc, pl.hosts.iter().map(|h| h.power_watts).collect()))
}

/// Host utilisations now, in host order, from the fleet's placement and the demand at `step`.
fn utils(sc: &Scenario, fleet: &SimFleet, step: usize) -> Vec<f64> {
    utils_of(sc, &fleet.placement(), step)
}

/// Host utilisations, in host order, of `placement` with the demand at `step`.
fn utils_of(sc: &Scenario, placement: &BTreeMap<String, String>, step: usize) -> Vec<f64> {
    let mut used: HashMap<&str, f64> = HashMap::new();
    for (vm, host) in placement {
        let d = sc
            .series
            .get(vm)
            .and_then(|s| s.get(step))
            .copied()
            .unwrap_or(0.0);
        if let Some((id, _)) = sc.hosts.iter().find(|(id, _)| id == host) {
            *used.entry(id.as_str()).or_insert(0.0) += d;
        }
    }
    sc.hosts
        .iter()
        .map(|(id, cap)| used.get(id.as_str()).copied().unwrap_or(0.0) / cap)
        .collect()
}

/// Negotiation timeouts for a fleet on loopback.
pub fn cluster_timeouts() -> Timeouts {
    Timeouts {
        offer: Duration::from_millis(800),
        commit: Duration::from_millis(800),
        reservation: Duration::from_millis(1500),
        execute: Duration::from_secs(5),
        done: Duration::from_millis(800),
        retry: Duration::from_millis(100),
    }
}

#[derive(Debug, Default)]
struct Tally {
    neg_messages: u64,
    migrations_src: u64,
    /// VMs currently executing → (negotiation id, target), to catch two negotiations moving one
    /// VM at once.
    executing: HashMap<String, (String, String)>,
    double_exec: u64,
}

fn watch_events(mut rx: broadcast::Receiver<NodeEvent>, tally: Arc<Mutex<Tally>>) {
    tokio::spawn(async move {
        loop {
            let e = match rx.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "Event watcher lagged.");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let mut t = tally.lock().expect("tally lock is never poisoned");
            match e {
                NodeEvent::Sent { .. } => t.neg_messages += 1,
                NodeEvent::Executing { vm, neg, target } => {
                    // The source is the negotiation's origin (`origin#seq`). A VM whose previous
                    // move's target now moves it on is a next hop (the dry-run move is instant;
                    // the previous source's negotiation stays open until its DoneAck), not two
                    // negotiations moving one VM.
                    let source = neg
                        .rsplit_once('#')
                        .map_or(neg.as_str(), |(o, _)| o)
                        .to_string();
                    if let Some((other, to)) = t.executing.insert(vm.clone(), (neg.clone(), target))
                    {
                        if to != source {
                            warn!(%vm, %neg, %other, "Two negotiations executing one VM.");
                            t.double_exec += 1;
                        }
                    }
                }
                NodeEvent::Finished(r) if r.side == Side::Source => {
                    let mine = t
                        .executing
                        .get(&r.vm)
                        .is_some_and(|(n, _)| *n == r.neg.to_string());
                    if mine {
                        t.executing.remove(&r.vm);
                    }
                    if r.outcome == Outcome::Migrated {
                        t.migrations_src += 1;
                    }
                }
                _ => {}
            }
        }
    });
}

fn add(a: &mut NetCounts, b: &NetCounts) {
    a.frames_in += b.frames_in;
    a.frames_out += b.frames_out;
    a.rejected_mac += b.rejected_mac;
    a.rejected_malformed += b.rejected_malformed;
    a.rejected_oversize += b.rejected_oversize;
    a.duplicates += b.duplicates;
    a.send_failures += b.send_failures;
    a.queue_drops += b.queue_drops;
    a.fault_drops += b.fault_drops;
    a.fault_dups += b.fault_dups;
}

/// Runs a fleet and returns its report.
///
/// # Errors
/// Reading the dataset; binding sockets.
pub async fn run(args: &ClusterArgs) -> anyhow::Result<Report> {
    if args.placement.is_none() && args.agents < 2 {
        bail!("--agents: need at least 2");
    }
    if !(args.speedup > 0.0 && args.seconds > 0.0) {
        bail!("--speedup and --seconds must be positive");
    }
    let fit = match &args.placement {
        Some(p) => {
            let pl = Placement::load(p)?;
            let (sc, power) = scenario_from_placement(&pl, &args.dataset)?;
            Some((pl, sc, power))
        }
        None => None,
    };
    let (sc, fit) = match fit {
        Some((pl, sc, power)) => (sc, Some((pl, power))),
        None => (scenario(&args.dataset, args.agents, args.pack)?, None),
    };
    let agents = sc.hosts.len();
    // One trace step in real time.
    let step_real = Duration::from_secs_f64(sc.step_s / args.speedup);
    let vms = sc.placement.len();
    info!(agents, vms, step_s = sc.step_s, "Cluster scenario built.");
    let fleet = SimFleet::with_traces(
        sc.placement.clone(),
        Traces {
            series: sc.series.clone(),
            step_s: sc.step_s,
            speedup: args.speedup,
            start: std::time::Instant::now(),
        },
    );
    let mut seed = [0u8; 32];
    ChaCha8Rng::seed_from_u64(args.seed).fill(&mut seed);
    let key = ClusterKey::new(&seed).context("cluster key")?;
    let (interaction_model, model_name) = match &args.interaction_model {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading interaction model {}", p.display()))?;
            let name = p.display().to_string();
            // Refuse a bad model before starting anything, with its position.
            crate::host::compile_model(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
            (Some(text), name)
        }
        None => (None, "protocols/seed.lcc".to_string()),
    };
    if let Some(m) = args.min_stay_s {
        if !(m.is_finite() && m >= 0.0) {
            bail!("--min-stay-s: must be a number of seconds, 0 or more, got {m}");
        }
    }
    let rank = crate::daemon::rank_for(args.interaction_model.as_deref());
    let replay_order = crate::daemon::replay_order_for(args.interaction_model.as_deref());
    let ranker: Arc<dyn Ranker> = match &args.model {
        Some(p) => {
            let r = ModelRanker::from_path(p);
            if r.model().is_none() {
                bail!("{}: stability model not loaded", p.display());
            }
            Arc::new(r)
        }
        None => Arc::new(NoModel),
    };
    let window_s = match &args.model {
        Some(p) => keel_core::model::ModelFile::load(p)
            .map(|m| m.window_s())
            .unwrap_or(3600.0),
        None => 3600.0,
    };
    // Bind every agent first (port 0), then give each the first agent as its seed.
    let eval = match (args.eval_ms, &fit) {
        (Some(ms), _) => Duration::from_millis(ms.max(1)),
        (None, Some(_)) => step_real,
        (None, None) => Duration::from_millis(200),
    };
    let make_cfg = |i: usize, listen: SocketAddr, seeds: Vec<SocketAddr>| {
        let (id, cap) = &sc.hosts[i];
        let mut c = NodeConfig::local(id, key.clone(), *cap);
        c.listen = listen;
        c.seeds = seeds;
        c.timeouts = cluster_timeouts();
        c.eval_interval = eval;
        c.gossip_interval = Duration::from_millis(150);
        c.dead_after = Duration::from_millis(1500);
        c.cooldown = Duration::from_millis(600);
        // History points at the dataset's step, over the model's window (trace time).
        let (every, step, len) =
            node::history_plan(eval.as_secs_f64() * args.speedup, sc.step_s, window_s);
        c.history_every = every;
        c.history_step_s = step;
        c.history_len = len;
        c.faults = FaultPlan {
            drop: args.drop,
            duplicate: args.duplicate,
            seed: args.seed.wrapping_add(i as u64),
        };
        c.seed = args.seed.wrapping_add(1000 + i as u64);
        c.interaction_model.clone_from(&interaction_model);
        c.interaction_model_name.clone_from(&model_name);
        c.rank = rank;
        c.replay_order = replay_order;
        // Stays are counted in trace time, as the replay counts them.
        c.min_stay_s = args.min_stay_s;
        c.model_consult = args.model_consult;
        c.time_scale = args.speedup;
        if let Some((pl, _)) = &fit {
            c.high = pl.high;
            c.low = pl.low;
            c.accept_below = pl.accept_below;
            // No agent is killed here: a slow failure detector keeps a loaded machine's late
            // agents from being declared down, which would stall negotiations while they rejoin.
            c.dead_after = Duration::from_secs(10);
            // The replay gives up a wait as soon as nothing is in flight; over loopback a quarter
            // of a step is ample, where a longer wait would idle an agent over whole steps.
            c.lcc_wait = (step_real / 4).max(Duration::from_millis(100));
            c.cooldown = c.cooldown.min(step_real / 2);
        }
        if args.directory {
            c.membership = Mode::Directory;
            c.directory_server = i == 0;
        }
        c
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut nodes: Vec<Option<NodeHandle>> = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..agents {
        let seeds = addrs.first().copied().into_iter().collect();
        let cfg = make_cfg(i, SocketAddr::from(([127, 0, 0, 1], 0)), seeds);
        let h = node::spawn(
            cfg,
            fleet.load_for(&sc.hosts[i].0),
            Arc::new(fleet.executor()),
            Arc::clone(&ranker),
        )
        .await
        .context("starting an agent")?;
        watch_events(h.events(), Arc::clone(&tally));
        addrs.push(h.addr);
        nodes.push(Some(h));
    }
    let mut totals = Totals::default();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed);
    let mut down: Vec<(usize, tokio::time::Instant)> = Vec::new();
    let start = tokio::time::Instant::now();
    let mut end = start + Duration::from_secs_f64(args.seconds);
    // A replay's scenario: the trace starts after the warm-up and the run ends after its steps;
    // a task samples the host utilisations at each step's start (for the energy) and the
    // migrations at the end of the last step.
    let sampler = fit.as_ref().map(|(pl, _)| {
        let t0 = start + Duration::from_millis(args.warmup_ms);
        fleet.start_traces_at(t0.into_std());
        end = t0 + step_real * u32::try_from(pl.steps).unwrap_or(u32::MAX);
        let steps = pl.steps;
        let fleet = Arc::clone(&fleet);
        let sc = Scenario {
            hosts: sc.hosts.clone(),
            placement: BTreeMap::new(),
            series: sc.series.clone(),
            step_s: sc.step_s,
        };
        tokio::spawn(async move {
            let mut rows = Vec::with_capacity(steps);
            for j in 0..steps {
                tokio::time::sleep_until(t0 + step_real * j as u32).await;
                rows.push(utils(&sc, &fleet, j));
            }
            tokio::time::sleep_until(t0 + step_real * steps as u32).await;
            (rows, fleet.moves())
        })
    });
    let tick = Duration::from_millis(100);
    let mut kills = 0;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(tick).await;
        let now = tokio::time::Instant::now();
        // Restart agents whose downtime is over.
        let mut still = Vec::new();
        for (i, until) in down.drain(..) {
            if now < until {
                still.push((i, until));
                continue;
            }
            // SWIM: any live member will do; directory mode: the directory.
            let seeds = if args.directory {
                addrs
                    .first()
                    .copied()
                    .into_iter()
                    .filter(|_| i != 0)
                    .collect()
            } else {
                vec![addrs[(i + 1) % addrs.len()]]
            };
            match node::spawn(
                make_cfg(i, addrs[i], seeds),
                fleet.load_for(&sc.hosts[i].0),
                Arc::new(fleet.executor()),
                Arc::clone(&ranker),
            )
            .await
            {
                Ok(h) => {
                    watch_events(h.events(), Arc::clone(&tally));
                    nodes[i] = Some(h);
                }
                Err(e) => {
                    warn!(agent = i, error = %e, "Restart failed; retrying.");
                    still.push((i, now + tick));
                }
            }
        }
        down = still;
        if args.kill > 0.0 && rng.gen_bool((args.kill * tick.as_secs_f64()).clamp(0.0, 1.0)) {
            let live: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].is_some()).collect();
            if live.len() > 1 {
                let i = live[rng.gen_range(0..live.len())];
                if let Some(h) = nodes[i].take() {
                    totals.absorb(&h.status());
                    info!(agent = %h.id, "Killing an agent.");
                    let prefix = format!("{}#", h.id);
                    h.kill().await;
                    // Its migrations in flight end with it.
                    tally
                        .lock()
                        .expect("tally lock is never poisoned")
                        .executing
                        .retain(|_, (neg, _)| !neg.starts_with(&prefix));
                    // Whatever it was executing is over (the dry-run executor is instant).
                    kills += 1;
                    down.push((i, now + Duration::from_millis(args.down_ms)));
                }
            }
        }
    }
    let ran_s = start.elapsed().as_secs_f64();
    let sampled = match sampler {
        Some(h) => Some(h.await.context("the energy sampler")?),
        None => None,
    };
    for h in nodes.into_iter().flatten() {
        let st = h.status();
        h.shutdown().await;
        totals.absorb(&st);
    }
    // Let the event watchers drain.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = tally.lock().expect("tally lock is never poisoned");
    let static_energy = fit.as_ref().map(|(pl, power)| {
        let rows: Vec<Vec<f64>> = (0..pl.steps)
            .map(|j| utils_of(&sc, &sc.placement, j))
            .collect();
        energy_kwh(power, &rows, pl.interval_s)
    });
    let (migrations, steps, energy, active_hosts) = match (&sampled, &fit) {
        (Some((rows, moves)), Some((pl, power))) => (
            *moves,
            Some(pl.steps),
            Some(energy_kwh(power, rows, pl.interval_s)),
            rows.iter()
                .map(|r| r.iter().filter(|u| **u > 0.0).count() as u32)
                .collect(),
        ),
        _ => (fleet.moves(), None, None, Vec::new()),
    };
    Ok(Report {
        agents,
        vms,
        seconds: ran_s,
        speedup: args.speedup,
        negotiations: totals.started,
        migrations,
        messages: totals.net.frames_out,
        negotiation_messages: t.neg_messages,
        interaction_model: model_name,
        lcc_messages: totals.lcc_sent,
        lcc_timeouts: totals.lcc_timeouts,
        lcc_errors: totals.lcc_errors,
        timeouts: totals.timeouts,
        rejected: totals.rejected,
        aborted: totals.aborted,
        retries: totals.retries,
        vm_conflicts: fleet.conflicts() + t.double_exec,
        kills,
        frames_refused: totals.net.rejected_mac
            + totals.net.rejected_malformed
            + totals.net.rejected_oversize,
        duplicates_dropped: totals.net.duplicates,
        faults_injected: totals.net.fault_drops + totals.net.fault_dups,
        steps,
        energy_kwh: energy,
        static_energy_kwh: static_energy,
        active_hosts,
    })
}

#[derive(Debug, Default)]
struct Totals {
    started: u64,
    timeouts: u64,
    rejected: u64,
    aborted: u64,
    retries: u64,
    net: NetCounts,
    lcc_sent: BTreeMap<String, u64>,
    lcc_timeouts: u64,
    lcc_errors: u64,
}

impl Totals {
    fn absorb(&mut self, st: &node::Status) {
        self.started += st.negotiation.started;
        for (k, v) in &st.lcc.lcc_sent {
            *self.lcc_sent.entry(k.clone()).or_insert(0) += v;
        }
        self.lcc_timeouts += st.lcc.timed_out;
        self.lcc_errors += st.lcc.model_errors;
        self.timeouts += st.negotiation.timeouts;
        self.rejected += st.negotiation.rejected;
        self.aborted += st.negotiation.aborted;
        self.retries += st.negotiation.retries;
        add(&mut self.net, &st.net);
    }
}
