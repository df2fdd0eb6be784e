//! The agent runtime: one task per connection (in [`crate::net`]), one actor task that owns the
//! agent's state, and the timers that drive it.
//!
//! The actor reads the host's load on every evaluation tick and takes a role (`overloaded`,
//! `underloaded` or `idle`, restricted to the roles the operator allows); it publishes its role, free
//! capacity and recent utilisation as a record spread over SWIM membership ([`membership`], foca);
//! an overloaded agent picks a
//! VM and offers it to the best-ranked underloaded peer ([`crate::negotiation`]). Executors run
//! in their own tasks and report back. Shutdown uses a `CancellationToken` and a `TaskTracker`:
//! [`NodeHandle::shutdown`] lets a running migration finish, aborts what is not committed (telling
//! the peers), then stops every task; [`NodeHandle::kill`] stops everything at once, as a crash
//! would, for fault tests.
//!
//! Layout:
//! - [`membership`]: SWIM membership (foca) and the peer records it spreads.
//! - [`executor`]: the `libvirt`, `command` and `dry-run` executors.
//! - [`load`]: where the host's load comes from.
//! - [`policy`]: signed policy bundles.
//! - [`status`]: the JSON status endpoint and HTML page.

pub mod executor;
pub mod load;
pub mod membership;
pub mod policy;
pub mod status;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use keel_lcc::Value;

use crate::host::wire::WireEnvelope;
use crate::host::{
    self, CoreConfig, CoreError, CoreStats, HostAgent, HostLoad, ModelConsult, Need, Output,
    Published, Rank, Resolved, View, VmLoad,
};
use crate::negotiation::lcc::SEED_MODEL;
use crate::negotiation::rank::{rank, Candidate, Ranked, Ranker};
use crate::negotiation::{Msg, NegCounts, Outcome, Record, Side, Timeouts};
use crate::net::{ClusterKey, FaultPlan, Inbound, NetConfig, NetCounts, NetError, Transport};
use crate::time::Time;

use self::executor::{Executor, MigrationRequest};
use self::load::LoadSource;
use self::membership::{Directory, Membership, MembershipCounts, Mode, PeerInfo, SwimConfig};
use self::policy::Bundle;

/// A role an agent can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Neither over- nor underloaded.
    Idle,
    /// Above the high threshold: gives VMs away.
    Overloaded,
    /// Below the low threshold: takes VMs.
    Underloaded,
}

impl Role {
    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Overloaded => "overloaded",
            Self::Underloaded => "underloaded",
        }
    }
}

/// Everything on the wire between agents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// A SWIM packet (foca, postcard-encoded), base64.
    Swim {
        /// The packet.
        data: String,
    },
    /// Directory mode: the sender's record, to a directory.
    Register {
        /// The record.
        record: PeerInfo,
    },
    /// Directory mode: a directory's live records, in answer to a registration.
    Directory {
        /// The records.
        peers: Vec<PeerInfo>,
    },
    /// A message of the interaction model (every `=>` of the `.lcc` text).
    Lcc {
        /// The envelope.
        env: WireEnvelope,
    },
    /// A step of the commit layer under `migrate(...)`.
    Neg {
        /// The message.
        msg: Msg,
    },
    /// A policy bundle.
    Bundle {
        /// The bundle.
        bundle: Box<Bundle>,
    },
    /// Liveness probe (and the benchmark's round trip).
    Ping {
        /// Echoed.
        nonce: u64,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
}

/// The agent's settings (checked; built by `daemon` from file, env and flags).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Agent id (unique in the fleet).
    pub id: String,
    /// Listen address for peers.
    pub listen: SocketAddr,
    /// Addresses to announce this agent to until it knows a member (SWIM), or the directories
    /// to register with (directory mode).
    pub seeds: Vec<SocketAddr>,
    /// How peers are found.
    pub membership: Mode,
    /// Serve a directory (implies directory mode).
    pub directory_server: bool,
    /// The cluster key.
    pub key: ClusterKey,
    /// Host CPU capacity (absolute units of the load source).
    pub capacity: f64,
    /// Utilisation above which the host is overloaded.
    pub high: f64,
    /// Utilisation below which the host is underloaded.
    pub low: f64,
    /// Utilisation a target may reach by accepting a VM.
    pub accept_below: f64,
    /// Roles this agent is willing to play.
    pub roles: Vec<Role>,
    /// Negotiation deadlines.
    pub timeouts: Timeouts,
    /// Load evaluation period.
    pub eval_interval: Duration,
    /// SWIM probe and gossip period.
    pub gossip_interval: Duration,
    /// Members gossiped to per round, and indirect probes per failed direct probe.
    pub fanout: usize,
    /// A suspected member that does not refute within this is declared down.
    pub dead_after: Duration,
    /// After a failed negotiation with a peer, it is not asked again for this long.
    pub cooldown: Duration,
    /// Utilisation values kept for the stability model (at most [`membership::MAX_HISTORY`]).
    pub history_len: usize,
    /// Seconds of host time between history values (for the model's features).
    pub history_step_s: f64,
    /// Evaluations averaged into one history value (see [`history_plan`]).
    pub history_every: u32,
    /// Transport settings.
    pub net: NetConfig,
    /// Injected faults (tests, `cluster`).
    pub faults: FaultPlan,
    /// This host's libvirt URI, advertised to peers for live migration.
    pub libvirt_uri: Option<String>,
    /// Trusted policy signer; `None` refuses every bundle.
    pub policy_key: Option<ed25519_dalek::VerifyingKey>,
    /// Where adopted bundles are installed.
    pub policy_dir: Option<PathBuf>,
    /// Seed for SWIM's random member choices.
    pub seed: u64,
    /// LCC interaction model (source text) the agent runs; `None`: the seed model.
    pub interaction_model: Option<String>,
    /// Where the interaction model came from (its file), for diagnostics.
    pub interaction_model_name: String,
    /// A peer waiting in the middle of an exchange longer than this times out.
    pub lcc_wait: Duration,
    /// How the agent prices VMs and orders candidates (`agility` spreads; the others pack).
    pub rank: Rank,
    /// Order candidates as the replay's discovery does (by `rank`: to pack, the fullest running
    /// host first, and a draining host's VM only to a running host) rather than most room first.
    /// Set for the models the replay measures (`agent/protocols/*.lcc`), so a fleet runs them as
    /// the replay does.
    pub replay_order: bool,
    /// Minimum stay of a VM that migrated to this host, seconds of host time (see
    /// [`CoreConfig::min_stay_s`]); `None`: as the replay's default
    /// ([`default_min_stay_s`](crate::sim::keel::default_min_stay_s): the model's window and at
    /// least an hour while a stability model is consulted on `every` offer or on
    /// `consolidation`, none otherwise).
    pub min_stay_s: Option<f64>,
    /// Which decisions are checked with the stability model ([`CoreConfig::model_consult`]).
    pub model_consult: ModelConsult,
    /// Seconds of host time per real second: 1 on hosts; a `cluster` replaying a trace faster
    /// sets its speed-up, so that a VM's stay is counted in trace time.
    pub time_scale: f64,
}

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The listener.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The interaction model.
    #[error(transparent)]
    Policy(#[from] CoreError),
}

impl NodeConfig {
    /// Defaults for a test or cluster agent on `127.0.0.1:0`.
    pub fn local(id: &str, key: ClusterKey, capacity: f64) -> Self {
        Self {
            id: id.to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seeds: Vec::new(),
            membership: Mode::Swim,
            directory_server: false,
            key,
            capacity,
            high: 0.8,
            low: 0.5,
            accept_below: 0.75,
            roles: vec![Role::Overloaded, Role::Underloaded],
            timeouts: Timeouts::default(),
            eval_interval: Duration::from_millis(200),
            gossip_interval: Duration::from_millis(100),
            fanout: 3,
            dead_after: Duration::from_secs(3),
            cooldown: Duration::from_secs(2),
            history_len: 12,
            history_step_s: 300.0,
            history_every: 1,
            net: NetConfig::default(),
            faults: FaultPlan::default(),
            libvirt_uri: None,
            policy_key: None,
            policy_dir: None,
            seed: 0,
            interaction_model: None,
            interaction_model_name: "interaction model".into(),
            lcc_wait: Duration::from_secs(2),
            rank: Rank::Pack,
            replay_order: false,
            min_stay_s: None,
            model_consult: ModelConsult::default(),
            time_scale: 1.0,
        }
    }
}

/// How to keep the utilisation history the stability model reads: evaluations every `eval_s`
/// seconds of host time are averaged into points `step_s` apart (the model's training step,
/// e.g. 300 s for PlanetLab), and `window_s` of them are kept. Returns `(every, step_s, len)`.
/// Keeping the history at the model's step keeps gossip records small.
pub fn history_plan(eval_s: f64, step_s: f64, window_s: f64) -> (u32, f64, usize) {
    let eval_s = if eval_s.is_finite() && eval_s > 0.0 {
        eval_s
    } else {
        1.0
    };
    let every = (step_s / eval_s).round().clamp(1.0, 10_000.0);
    let step = every * eval_s;
    let len = (window_s / step)
        .ceil()
        .clamp(2.0, membership::MAX_HISTORY as f64);
    (every as u32, step, len as usize)
}

/// Something a test or a supervisor may want to watch.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// The agent changed role.
    Role(Role),
    /// The interaction model sent a message.
    LccSent {
        /// The message's name (`request`, `bid`, ...).
        kind: String,
        /// The recipient.
        to: String,
    },
    /// A commit step was taken (source or target): the message kind sent.
    Sent {
        /// The message kind.
        kind: &'static str,
        /// The negotiation.
        neg: String,
    },
    /// A migration is executing (source).
    Executing {
        /// The negotiation.
        neg: String,
        /// The VM.
        vm: String,
        /// The target.
        target: String,
    },
    /// A negotiation ended.
    Finished(Record),
    /// A policy bundle was adopted.
    BundleAdopted(u64),
    /// A policy bundle was refused.
    BundleRefused(String),
}

/// Counters beyond the transport's and the negotiator's.
#[derive(Debug, Default)]
struct NodeStats {
    unknown_sender: AtomicU64,
    lcc_refused: AtomicU64,
    bundles_adopted: AtomicU64,
    bundles_refused: AtomicU64,
}

/// A point-in-time view for the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Agent id.
    pub id: String,
    /// Listen address.
    pub addr: String,
    /// Current role.
    pub role: Option<Role>,
    /// The interaction model's current role.
    pub plays: String,
    /// The interaction model in use (where it came from).
    pub model: String,
    /// Current utilisation.
    pub util: f64,
    /// VMs on this host.
    pub vms: usize,
    /// Reservations held for incoming VMs.
    pub reservations: usize,
    /// Policy bundle version in use.
    pub policy_version: u64,
    /// Peers with their role and the model's score.
    pub peers: Vec<PeerStatus>,
    /// Recent negotiations, newest last.
    pub recent: Vec<Record>,
    /// Commit-layer counters.
    pub negotiation: NegCounts,
    /// The interaction model's counters: messages by name, timeouts, errors, models switched.
    pub lcc: CoreStats,
    /// Interaction-model messages refused (malformed, or naming another sender).
    pub lcc_refused: u64,
    /// Transport counters.
    pub net: NetCounts,
    /// Negotiation messages from senders not in membership.
    pub unknown_sender: u64,
    /// SWIM membership counters.
    pub membership: MembershipCounts,
}

/// One peer in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    /// Id.
    pub id: String,
    /// Address.
    pub addr: String,
    /// Role.
    pub role: Role,
    /// The interaction model's role it plays.
    pub plays: String,
    /// Utilisation.
    pub util: f64,
    /// Instability score, if the model could score it.
    pub score: Option<f64>,
}

/// A running agent.
#[derive(Debug)]
pub struct NodeHandle {
    /// Agent id.
    pub id: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Graceful stop.
    shutdown: CancellationToken,
    /// Immediate stop (also ends graceful shutdown's last step).
    kill: CancellationToken,
    tracker: TaskTracker,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<NodeEvent>,
    transport: Arc<Transport<Body>>,
}

impl NodeHandle {
    /// The latest status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A status watcher.
    pub fn status_watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Subscribes to events.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// The transport (counters, fault plan).
    pub fn transport(&self) -> &Arc<Transport<Body>> {
        &self.transport
    }

    /// Graceful stop: waits for a running migration (bounded by the execute timeout), aborts
    /// uncommitted negotiations with the peers told, then stops every task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Immediate stop, as a crash: no message is sent.
    pub async fn kill(self) {
        self.kill.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Starts an agent.
///
/// # Errors
/// Binding the listen address; an interaction model that does not compile or calls predicates
/// the agent does not register.
pub async fn spawn(
    cfg: NodeConfig,
    load: Box<dyn LoadSource>,
    exec: Arc<dyn Executor>,
    ranker: Arc<dyn Ranker>,
) -> Result<NodeHandle, SpawnError> {
    let (origin_name, text) = match &cfg.interaction_model {
        Some(text) => (cfg.interaction_model_name.clone(), text.clone()),
        None => ("protocols/seed.lcc".to_string(), SEED_MODEL.to_string()),
    };
    let program = host::compile_model(&origin_name, &text)?;
    let tracker = TaskTracker::new();
    let kill = CancellationToken::new();
    let shutdown = CancellationToken::new();
    let (transport, inbox) = Transport::<Body>::bind(
        cfg.id.clone(),
        cfg.listen,
        cfg.key.clone(),
        cfg.net,
        cfg.faults,
        tracker.clone(),
        kill.clone(),
    )
    .await?;
    let addr = transport.local_addr();
    let (status_tx, status_rx) = watch::channel(Status {
        id: cfg.id.clone(),
        addr: addr.to_string(),
        ..Status::default()
    });
    let (events, _) = broadcast::channel(1024);
    let policy_version = cfg
        .policy_dir
        .as_deref()
        .map_or(0, Bundle::installed_version);
    let me = PeerInfo {
        id: cfg.id.clone(),
        addr,
        role: Role::Idle,
        plays: "idle".into(),
        capacity: cfg.capacity,
        used: 0.0,
        history: Vec::new(),
        step_s: cfg.history_step_s,
        // Wall-clock start, so a restarted agent's records supersede its previous incarnation's.
        heartbeat: crate::net::now_ms(),
        libvirt_uri: cfg.libvirt_uri.clone(),
        policy_version,
    };
    let core_cfg = CoreConfig {
        high: cfg.high,
        low: cfg.low,
        accept_below: cfg.accept_below,
        gives_vms: cfg.roles.contains(&Role::Overloaded),
        takes_vms: cfg.roles.contains(&Role::Underloaded),
        lcc_wait: cfg.lcc_wait,
        timeouts: cfg.timeouts,
        hide_moved: Some(MOVED_OUT_MEMORY),
        rank: cfg.rank,
        step_s: cfg.history_step_s,
        model_consult: cfg.model_consult,
        ..CoreConfig::default()
    };
    let core = HostAgent::new(
        Value::atom(&cfg.id),
        program,
        core_cfg,
        crate::net::now_ms(),
    )?;
    let (exec_tx, exec_rx) = mpsc::channel(8);
    let actor = Actor {
        core,
        origin: Instant::now(),
        model_name: origin_name,
        directory: cfg.directory_server.then(|| Directory::new(cfg.dead_after)),
        members: Membership::with_mode(
            if cfg.directory_server {
                Mode::Directory
            } else {
                cfg.membership
            },
            me,
            cfg.seeds.clone(),
            SwimConfig {
                period: cfg.gossip_interval,
                fanout: cfg.fanout,
                dead_after: cfg.dead_after,
            },
            cfg.seed ^ crate::net::now_ms(),
        ),
        cfg,
        transport: Arc::clone(&transport),
        load,
        exec,
        ranker,
        exec_tx,
        role: None,
        cooldown: HashMap::new(),
        recent: VecDeque::new(),
        stats: NodeStats::default(),
        status: status_tx,
        events: events.clone(),
        tracker: tracker.clone(),
        policy_version,
        hist_acc: (0.0, 0),
        arrived: HashMap::new(),
        vm_hist: VmHistories::default(),
    };
    tracker.spawn(actor.run(inbox, exec_rx, shutdown.clone(), kill.clone()));
    Ok(NodeHandle {
        id: transport.id().to_string(),
        addr,
        shutdown,
        kill,
        tracker,
        status: status_rx,
        events,
        transport,
    })
}

const RECENT: usize = 50;
/// Gossip periods without a membership change before a source picks a target.
const SETTLE_PERIODS: u32 = 3;
const MOVED_OUT_MEMORY: Duration = Duration::from_secs(600);

/// The daemon's driver state around the one agent core ([`HostAgent`]).
struct Actor {
    cfg: NodeConfig,
    core: HostAgent,
    /// The core's time origin.
    origin: Instant,
    /// Where the running interaction model came from.
    model_name: String,
    members: Membership,
    /// The directory this agent serves, if any.
    directory: Option<Directory>,
    transport: Arc<Transport<Body>>,
    load: Box<dyn LoadSource>,
    exec: Arc<dyn Executor>,
    ranker: Arc<dyn Ranker>,
    /// Executor results come back here; bounded (one migration runs at a time).
    exec_tx: mpsc::Sender<(crate::negotiation::NegId, Result<(), String>)>,
    role: Option<Role>,
    /// Peers not to ask again until the instant.
    cooldown: HashMap<String, Instant>,
    recent: VecDeque<Record>,
    stats: NodeStats,
    status: watch::Sender<Status>,
    events: broadcast::Sender<NodeEvent>,
    tracker: TaskTracker,
    policy_version: u64,
    /// Utilisation summed over the evaluations of the history point in progress, and their count.
    hist_acc: (f64, u32),
    /// When each VM that migrated here arrived (the target side of a commit), for the minimum
    /// stay. Bounded: a VM is forgotten when it migrates away, or when the load source no longer
    /// lists it (after [`MOVED_OUT_MEMORY`], the time a load source may take to list a VM).
    arrived: HashMap<String, Instant>,
    /// Each VM's CPU series at the model's step (what offers carry and the VM choice reads).
    vm_hist: VmHistories,
}

/// Each listed VM's CPU demand averaged to the model's step, as the host's own series is:
/// the measurements of the point in progress are summed, and a point is closed when the host's
/// is. Bounded: at most `len` points per VM, and a VM the load source no longer lists is
/// forgotten.
#[derive(Debug, Default)]
pub struct VmHistories {
    vms: HashMap<String, (f64, u32, VecDeque<f64>)>,
}

impl VmHistories {
    /// One measurement of the listed VMs' CPU; `close`: the host's point closes with it. Keeps
    /// at most `len` points per VM.
    pub fn observe(&mut self, vms: &[(String, f64)], close: bool, len: usize) {
        self.vms.retain(|id, _| vms.iter().any(|(v, _)| v == id));
        for (id, cpu) in vms {
            let e = self.vms.entry(id.clone()).or_default();
            e.0 += cpu;
            e.1 += 1;
            if close {
                e.2.push_back(e.0 / f64::from(e.1));
                while e.2.len() > len.max(1) {
                    e.2.pop_front();
                }
                e.0 = 0.0;
                e.1 = 0;
            }
        }
    }

    /// VM `id`'s closed points, oldest first.
    pub fn series(&self, id: &str) -> Vec<f64> {
        self.vms
            .get(id)
            .map(|e| e.2.iter().copied().collect())
            .unwrap_or_default()
    }

    /// VMs kept.
    pub fn len(&self) -> usize {
        self.vms.len()
    }

    /// Whether no VM is kept.
    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }
}

/// The role the membership record advertises for an interaction-model role name.
pub fn role_of(plays: &str) -> Role {
    match plays {
        "underloaded" | "bidder" => Role::Underloaded,
        "overloaded" | "draining" | "requester" | "auctioneer" => Role::Overloaded,
        _ => Role::Idle,
    }
}

/// The daemon's [`View`]: the membership records SWIM spreads, ranked by the stability model.
struct MemberView<'a> {
    me: &'a str,
    members: &'a mut Membership,
    ranker: &'a dyn Ranker,
    cooldown: &'a HashMap<String, Instant>,
    accept_below: f64,
    /// `Some`: the replay's candidate order ([`NodeConfig::replay_order`]).
    rank: Option<Rank>,
    settling: bool,
    now: Instant,
}

impl MemberView<'_> {
    /// The peers playing `role` that can take `need`, best first: stable before unstable, then
    /// most room first; or, in the replay's discovery order (`rank` set): stable before
    /// unstable; to pack, running hosts before empty ones, fullest first; to spread, least loaded
    /// first; and a VM offered by a host emptying itself only to a running host that is not
    /// emptying itself (the target's `canMigrate` refuses otherwise).
    fn ranked(&self, role: &str, need: &Need, exclude: &[Value]) -> Vec<Ranked> {
        let replay = self.rank.is_some();
        let excluded: Vec<String> = exclude.iter().map(host::id_str).collect();
        let mut util: HashMap<String, f64> = HashMap::new();
        let candidates: Vec<Candidate> = self
            .members
            .alive(self.now)
            .filter(|p| {
                p.id != self.me
                    && p.plays == role
                    && !self.cooldown.contains_key(&p.id)
                    && !excluded.contains(&p.id)
                    && !(replay && need.drain && (p.used <= 0.0 || p.plays == "draining"))
            })
            .map(|p| {
                util.insert(p.id.clone(), p.used / p.capacity.max(f64::MIN_POSITIVE));
                Candidate {
                    id: p.id.clone(),
                    free: p.capacity * self.accept_below - p.used,
                    history: p.history.clone(),
                    step_s: p.step_s,
                }
            })
            .collect();
        let mut v = rank(self.ranker, candidates, need.cpu);
        let Some(order) = self.rank else {
            return v;
        };
        let key = |r: &Ranked| {
            let u = util.get(&r.candidate.id).copied().unwrap_or(0.0);
            match order {
                Rank::Pack => (r.unstable, u <= 0.0, -u),
                Rank::Spread => (r.unstable, false, u),
            }
        };
        v.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.cmp(&kb.1))
                .then(ka.2.total_cmp(&kb.2))
                .then(a.candidate.id.cmp(&b.candidate.id))
        });
        v
    }
}

impl View for MemberView<'_> {
    fn resolve(&mut self, _me: &Value, role: &str, need: &Need, exclude: &[Value]) -> Resolved {
        // A view still filling (just started, a member joined or left) waits a few periods.
        if self.settling {
            return Resolved::Wait;
        }
        match self.ranked(role, need, exclude).first() {
            Some(best) => {
                debug!(target = %best.candidate.id, score = ?best.score, unstable = best.unstable, "Target ranked first.");
                Resolved::Peer(Value::atom(&best.candidate.id))
            }
            None => Resolved::Nobody,
        }
    }

    fn candidates(
        &mut self,
        _me: &Value,
        role: &str,
        need: &Need,
        exclude: &[Value],
        k: usize,
    ) -> Vec<Value> {
        self.ranked(role, need, exclude)
            .into_iter()
            .take(k)
            .map(|r| Value::atom(&r.candidate.id))
            .collect()
    }

    fn unstable(&mut self, peer: &Value) -> bool {
        let id = host::id_str(peer);
        self.members.get(&id).is_some_and(|p| {
            let c = Candidate {
                id: p.id.clone(),
                free: 0.0,
                history: p.history.clone(),
                step_s: p.step_s,
            };
            self.ranker
                .instability(&c)
                .is_some_and(|s| s >= self.ranker.threshold())
        })
    }

    fn busier_exists(&mut self, _me: &Value, cpu: f64) -> bool {
        self.members
            .alive(self.now)
            .any(|p| p.id != self.me && p.plays != "draining" && p.used > cpu)
    }

    fn neighbour(&mut self, _me: &Value) -> Option<Value> {
        // The local group: live members in id order, cyclically, starting after this agent;
        // as in the replay, hosts that run nothing (switched off) are skipped while any runs.
        let mut ids: Vec<(String, bool)> = self
            .members
            .alive(self.now)
            .map(|p| (p.id, p.used > 0.0))
            .filter(|(id, _)| id != self.me)
            .collect();
        ids.sort();
        let after = |on: bool| {
            ids.iter()
                .find(|(id, u)| id.as_str() > self.me && (*u || !on))
                .or(ids.iter().find(|(_, u)| *u || !on))
        };
        after(true).or(after(false)).map(|(id, _)| Value::atom(id))
    }

    fn publish(&mut self, _me: &Value, st: &Published<'_>) {
        let plays = st.role.to_string();
        let cpu = st.cpu;
        self.members.update_me(|me| {
            me.role = role_of(&plays);
            me.plays = plays;
            me.used = cpu;
        });
    }
}

impl Actor {
    fn now(&self) -> Time {
        Time::from_duration(Instant::now().saturating_duration_since(self.origin))
    }

    fn instant(&self, t: Time) -> Instant {
        self.origin + t.since_origin()
    }

    /// Runs `f` on the core with the membership view.
    fn with_core<R>(
        &mut self,
        f: impl FnOnce(&mut HostAgent, &mut MemberView<'_>, Time) -> R,
    ) -> R {
        let now_i = Instant::now();
        let now = self.now();
        let settling = self.members.quiet_for(now_i) < self.cfg.gossip_interval * SETTLE_PERIODS;
        let mut view = MemberView {
            me: &self.cfg.id,
            members: &mut self.members,
            ranker: self.ranker.as_ref(),
            cooldown: &self.cooldown,
            accept_below: self.cfg.accept_below,
            rank: self.cfg.replay_order.then_some(self.cfg.rank),
            settling,
            now: now_i,
        };
        f(&mut self.core, &mut view, now)
    }

    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Inbound<Body>>,
        mut exec_rx: mpsc::Receiver<(crate::negotiation::NegId, Result<(), String>)>,
        shutdown: CancellationToken,
        kill: CancellationToken,
    ) {
        let mut eval = tokio::time::interval(self.cfg.eval_interval);
        eval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gossip = tokio::time::interval(self.cfg.gossip_interval);
        gossip.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(id = %self.cfg.id, addr = %self.transport.local_addr(), model = %self.model_name, "Agent started.");
        loop {
            let deadline = self.core.next_deadline().map(|t| self.instant(t));
            tokio::select! {
                () = kill.cancelled() => return,
                () = shutdown.cancelled() => break,
                Some(m) = inbox.recv() => self.on_inbound(m),
                Some((neg, r)) = exec_rx.recv() => {
                    let out = self.with_core(|c, v, now| c.on_executed(now, &neg, r, v));
                    self.apply(out);
                }
                () = sleep_opt(deadline) => {
                    let out = self.with_core(|c, v, now| c.on_timer(now, v));
                    self.apply(out);
                }
                _ = eval.tick() => self.evaluate(),
                _ = gossip.tick() => self.join(),
                t = self.members.next_timer() => {
                    self.members.handle_timer(t);
                    self.flush_swim();
                }
            }
        }
        // Graceful: let a running migration report (bounded), abort the rest, flush, stop.
        info!(id = %self.cfg.id, "Agent stopping.");
        let limit = Instant::now() + self.cfg.timeouts.execute;
        while self.core.is_executing() && Instant::now() < limit {
            tokio::select! {
                () = kill.cancelled() => return,
                Some((neg, r)) = exec_rx.recv() => {
                    let out = self.with_core(|c, v, now| c.on_executed(now, &neg, r, v));
                    self.apply(out);
                }
                () = tokio::time::sleep_until(limit) => {}
            }
        }
        let out = self.with_core(|c, v, now| c.abort_uncommitted(now, v));
        self.apply(out);
        self.members.leave();
        self.flush_swim();
        self.publish_status();
        info!(
            id = %self.cfg.id,
            negotiation = ?self.core.neg_counts(),
            lcc_sent = ?self.core.stats().lcc_sent,
            "Agent stopped."
        );
        // Give the writer tasks a moment to flush the aborts.
        tokio::select! {
            () = kill.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        kill.cancel();
    }

    fn emit(&self, e: NodeEvent) {
        _ = self.events.send(e);
    }

    fn send(&self, to: SocketAddr, body: &Body) {
        if let Err(e) = self.transport.send(to, body) {
            warn!(%to, error = %e, "Message not sent.");
        }
    }

    fn on_inbound(&mut self, m: Inbound<Body>) {
        let from = m.header.from.clone();
        match m.body {
            Body::Swim { data } => {
                let r = base64::engine::general_purpose::STANDARD
                    .decode(data.as_bytes())
                    .map_err(|e| membership::MembershipError::Swim(e.to_string()))
                    .and_then(|d| self.members.handle_data(&d));
                if let Err(e) = r {
                    debug!(%from, error = %e, "SWIM packet refused.");
                }
                self.flush_swim();
            }
            Body::Neg { msg } => {
                if !self.members.knows(&from) {
                    self.stats.unknown_sender.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, kind = msg.kind(), "Negotiation message from an unknown sender refused.");
                    return;
                }
                let out = self.with_core(|c, v, now| c.on_neg(now, &from, msg, v));
                self.apply(out);
            }
            Body::Lcc { env } => {
                if !self.members.knows(&from) {
                    self.stats.unknown_sender.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, "Interaction-model message from an unknown sender refused.");
                    return;
                }
                let env = match env.to_envelope() {
                    // The authenticated sender must be the one the message names.
                    Ok(e) if host::id_str(&e.from.id) == from => e,
                    Ok(_) => {
                        self.stats.lcc_refused.fetch_add(1, Ordering::Relaxed);
                        warn!(%from, "Interaction-model message naming another sender refused.");
                        return;
                    }
                    Err(e) => {
                        self.stats.lcc_refused.fetch_add(1, Ordering::Relaxed);
                        warn!(%from, error = %e, "Malformed interaction-model message refused.");
                        return;
                    }
                };
                let out = self.with_core(|c, v, now| c.on_lcc(now, env, v));
                self.apply(out);
            }
            Body::Register { record } => {
                let now = Instant::now();
                let Some(dir) = self.directory.as_mut() else {
                    self.stats.unknown_sender.fetch_add(1, Ordering::Relaxed);
                    debug!(%from, "Registration sent to an agent that serves no directory.");
                    return;
                };
                if !dir.register(record, &from, m.header.reply_to, now) {
                    debug!(%from, "Registration refused.");
                    return;
                }
                let peers = dir.live(now);
                self.members.set_view(peers.clone(), now);
                self.send(m.header.reply_to, &Body::Directory { peers });
            }
            Body::Directory { peers } => {
                let from_directory = self.members.mode() == Mode::Directory
                    && self.members.seeds().contains(&m.header.reply_to);
                if from_directory {
                    self.members.set_view(peers, Instant::now());
                } else {
                    self.stats.unknown_sender.fetch_add(1, Ordering::Relaxed);
                    debug!(%from, "Directory answer from an agent that is not a directory.");
                }
            }
            Body::Bundle { bundle } => self.on_bundle(*bundle),
            Body::Ping { nonce } => self.send(m.header.reply_to, &Body::Pong { nonce }),
            Body::Pong { .. } => {}
        }
    }

    fn apply(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Lcc { to, env } => {
                    let to = host::id_str(&to);
                    let Some(addr) = self.members.addr_of(&to) else {
                        debug!(%to, "No address for peer; message dropped.");
                        continue;
                    };
                    let kind = env.body.name().unwrap_or("?").to_string();
                    self.emit(NodeEvent::LccSent {
                        kind,
                        to: to.clone(),
                    });
                    self.send(
                        addr,
                        &Body::Lcc {
                            env: WireEnvelope::from_envelope(&env),
                        },
                    );
                }
                Output::Neg { to, msg } => {
                    let Some(addr) = self.members.addr_of(&to) else {
                        debug!(%to, "No address for peer; message dropped.");
                        continue;
                    };
                    self.emit(NodeEvent::Sent {
                        kind: msg.kind(),
                        neg: msg.neg().to_string(),
                    });
                    self.send(addr, &Body::Neg { msg });
                }
                Output::Execute { neg, vm, target } => {
                    info!(%neg, %vm, %target, "Migration committed on both sides; executing.");
                    self.emit(NodeEvent::Executing {
                        neg: neg.to_string(),
                        vm: vm.clone(),
                        target: target.clone(),
                    });
                    let req = MigrationRequest {
                        neg: neg.to_string(),
                        vm,
                        source: self.cfg.id.clone(),
                        target_uri: self
                            .members
                            .get(&target)
                            .and_then(|p| p.libvirt_uri.clone()),
                        target,
                    };
                    let exec = Arc::clone(&self.exec);
                    let tx = self.exec_tx.clone();
                    let limit = self.cfg.timeouts.execute;
                    // Not cancelled by shutdown: a started migration is allowed to finish.
                    self.tracker.spawn(async move {
                        let r = exec.migrate(&req, limit).await;
                        _ = tx.send((neg, r)).await;
                    });
                }
                Output::Finished(r) => {
                    match (&r.outcome, r.side) {
                        (Outcome::Migrated, Side::Source) => {
                            info!(neg = %r.neg, vm = %r.vm, target = %r.peer, "Migration done.");
                            self.arrived.remove(&r.vm);
                        }
                        (Outcome::Migrated, Side::Target) => {
                            info!(neg = %r.neg, vm = %r.vm, source = %r.peer, "VM received.");
                            self.arrived.insert(r.vm.clone(), Instant::now());
                        }
                        (o, _) => {
                            info!(neg = %r.neg, vm = %r.vm, peer = %r.peer, outcome = ?o, "Negotiation ended without a migration.");
                            if r.side == Side::Source {
                                self.cooldown
                                    .insert(r.peer.clone(), Instant::now() + self.cfg.cooldown);
                            }
                        }
                    }
                    self.recent.push_back(r.clone());
                    if self.recent.len() > RECENT {
                        self.recent.pop_front();
                    }
                    self.emit(NodeEvent::Finished(r));
                    self.publish_status();
                }
            }
        }
    }

    fn evaluate(&mut self) {
        let now = Instant::now();
        let obs = self.load.observe();
        self.cooldown.retain(|_, t| *t > now);
        // The utilisation series the stability model reads (this host's, in its own core, and
        // peers', in the gossip records): measurements averaged to the model's step.
        let measured = if self.cfg.capacity > 0.0 {
            (obs.other + obs.vms.iter().map(|(_, c)| c).sum::<f64>()) / self.cfg.capacity
        } else {
            0.0
        };
        self.hist_acc.0 += measured;
        self.hist_acc.1 += 1;
        let point = (self.hist_acc.1 >= self.cfg.history_every.max(1)).then(|| {
            let mean = self.hist_acc.0 / f64::from(self.hist_acc.1);
            self.hist_acc = (0.0, 0);
            mean
        });
        // Arrivals of VMs no longer here are forgotten (after the grace a load source may take
        // to list a VM that has just arrived).
        self.arrived.retain(|vm, t| {
            obs.vms.iter().any(|(id, _)| id == vm)
                || now.saturating_duration_since(*t) < MOVED_OUT_MEMORY
        });
        // The model file may have been replaced (a new file, or a bundle).
        let model = self.ranker.model();
        // Each VM's series at the model's step, as long as the host's; offers carry it and the
        // VM choice reads it (with a model, as in the replay).
        let hist_len = self.cfg.history_len.min(membership::MAX_HISTORY);
        self.vm_hist.observe(&obs.vms, point.is_some(), hist_len);
        let vm_hist = model.is_some().then_some(&self.vm_hist);
        let scale = self.cfg.time_scale;
        let arrived = &self.arrived;
        let load = HostLoad {
            capacity: self.cfg.capacity,
            pe_capacity: 0.0,
            mem_capacity: None,
            other: obs.other,
            vms: obs
                .vms
                .into_iter()
                .map(|(id, cpu)| VmLoad {
                    stay_s: arrived.get(&id).map_or(f64::INFINITY, |t| {
                        now.saturating_duration_since(*t).as_secs_f64() * scale
                    }),
                    id: Value::atom(&id),
                    cpu,
                    mem: 0.0,
                    ram: 0.0,
                    pe_cpu: 0.0,
                    migrating: false,
                    hist: vm_hist.map(|h| h.series(&id)).unwrap_or_default(),
                })
                .collect(),
            step_util: point,
        };
        // The minimum stay follows the model unless configured (as in the replay).
        let min_stay = self.cfg.min_stay_s.unwrap_or_else(|| {
            crate::sim::keel::default_min_stay_s(model.as_deref(), self.cfg.model_consult)
        });
        self.core.set_min_stay_s(min_stay);
        // So does the choice of the VM to offer, as in the replay.
        self.core
            .set_vm_choice(crate::sim::keel::default_vm_choice(model.as_deref()));
        self.core.set_stability(model);
        // The interaction model starts afresh on each measurement; its exchange runs over TCP.
        let out = self.with_core(|c, v, t| c.tick(t, load, v));
        self.apply(out);
        let role = role_of(&self.core.role_name());
        if self.role != Some(role) {
            debug!(id = %self.cfg.id, role = role.name(), util = self.core.util(), "Role changed.");
            self.role = Some(role);
            self.emit(NodeEvent::Role(role));
        }
        // Peers refuse longer records (membership::MAX_HISTORY).
        if let Some(p) = point {
            self.members.update_me(|me| {
                me.history.push(p);
                if me.history.len() > hist_len {
                    me.history.remove(0);
                }
            });
        }
        self.members.publish();
        self.flush_swim();
        self.publish_status();
    }

    /// SWIM: announces this agent to the seeds while it knows no member. Directory mode:
    /// registers this agent's record with every directory (and, serving one, with its own).
    fn join(&mut self) {
        if self.members.mode() == Mode::Directory {
            let now = Instant::now();
            let me = self.members.me().clone();
            if let Some(dir) = self.directory.as_mut() {
                dir.register(me.clone(), &me.id, me.addr, now);
                let peers = dir.live(now);
                self.members.set_view(peers, now);
            }
            let body = Body::Register { record: me };
            for d in self.members.seeds().to_vec() {
                self.send(d, &body);
            }
            return;
        }
        self.members.join();
        self.flush_swim();
    }

    /// Sends what SWIM has queued.
    fn flush_swim(&mut self) {
        for (to, data) in self.members.take_outbox() {
            let body = Body::Swim {
                data: base64::engine::general_purpose::STANDARD.encode(data),
            };
            self.send(to, &body);
        }
    }

    fn refuse_bundle(&mut self, why: String) {
        self.stats.bundles_refused.fetch_add(1, Ordering::Relaxed);
        warn!(error = %why, "Policy bundle refused.");
        self.emit(NodeEvent::BundleRefused(why));
    }

    fn on_bundle(&mut self, b: Bundle) {
        let Some(trusted) = self.cfg.policy_key else {
            self.refuse_bundle("no trusted policy key configured".into());
            return;
        };
        if let Err(e) = policy::admit(&b, &trusted, self.policy_version) {
            match e {
                policy::PolicyError::NotNewer { .. } => {
                    debug!(error = %e, "Policy bundle ignored.")
                }
                _ => self.refuse_bundle(e.to_string()),
            }
            return;
        }
        // A bundle that carries an interaction model switches the fleet to it; one that does not
        // compile, or calls predicates this agent lacks, is refused and the running model stays.
        let model = match policy::interaction_model(&b) {
            Ok(m) => m,
            Err(e) => {
                self.refuse_bundle(e.to_string());
                return;
            }
        };
        let program = match model {
            Some((name, text)) => {
                let origin = format!("bundle v{}/{name}", b.version);
                match host::compile_model(&origin, &text) {
                    Ok(p) => Some((origin, p)),
                    Err(e) => {
                        self.core.note_model_refused();
                        self.refuse_bundle(e.to_string());
                        return;
                    }
                }
            }
            None => None,
        };
        if let Some(dir) = &self.cfg.policy_dir {
            if let Err(e) = b.install(dir) {
                warn!(error = %e, "Policy bundle could not be installed.");
                return;
            }
        }
        if let Some((origin, p)) = program {
            if let Err(e) = self.core.set_program(p) {
                self.core.note_model_refused();
                self.refuse_bundle(e.to_string());
                return;
            }
            info!(model = %origin, "Interaction model switched.");
            self.model_name = origin;
        }
        self.policy_version = b.version;
        self.stats.bundles_adopted.fetch_add(1, Ordering::Relaxed);
        let v = b.version;
        self.members.update_me(|me| me.policy_version = v);
        info!(version = v, files = b.files.len(), "Policy bundle adopted.");
        self.emit(NodeEvent::BundleAdopted(v));
        // Spread it: every known peer gets it once from each adopter; older holders adopt.
        let now = Instant::now();
        let body = Body::Bundle {
            bundle: Box::new(b),
        };
        let peers: Vec<SocketAddr> = self
            .members
            .alive(now)
            .filter(|p| p.id != self.cfg.id && p.policy_version < v)
            .map(|p| p.addr)
            .collect();
        for p in peers {
            self.send(p, &body);
        }
    }

    fn publish_status(&self) {
        let now = Instant::now();
        let peers = self
            .members
            .alive(now)
            .filter(|p| p.id != self.cfg.id)
            .map(|p| PeerStatus {
                id: p.id.clone(),
                addr: p.addr.to_string(),
                role: p.role,
                plays: p.plays.clone(),
                util: if p.capacity > 0.0 {
                    p.used / p.capacity
                } else {
                    0.0
                },
                score: self.ranker.instability(&Candidate {
                    id: p.id.clone(),
                    free: 0.0,
                    history: p.history.clone(),
                    step_s: p.step_s,
                }),
            })
            .collect();
        let st = Status {
            id: self.cfg.id.clone(),
            addr: self.transport.local_addr().to_string(),
            role: self.role,
            plays: self.core.role_name(),
            model: self.model_name.clone(),
            util: self.core.util(),
            vms: self.core.planned_vms(),
            reservations: self.core.reservations(),
            policy_version: self.policy_version,
            peers,
            recent: self.recent.iter().cloned().collect(),
            negotiation: self.core.neg_counts(),
            lcc: self.core.stats().clone(),
            net: self.transport.stats().snapshot(),
            unknown_sender: self.stats.unknown_sender.load(Ordering::Relaxed),
            lcc_refused: self.stats.lcc_refused.load(Ordering::Relaxed),
            membership: self.members.counts(),
        };
        self.status.send_replace(st);
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A member with no agent behind it, for tools and tests that speak the negotiation protocol by
/// hand: it takes part in SWIM through `transport` (announcing itself to `seeds`), publishes `me`
/// every period, and forwards every non-SWIM message to the returned receiver. It stops with
/// `stop`.
pub fn bare_member(
    transport: Arc<Transport<Body>>,
    mut inbox: mpsc::Receiver<Inbound<Body>>,
    me: PeerInfo,
    seeds: Vec<SocketAddr>,
    cfg: SwimConfig,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> mpsc::Receiver<Inbound<Body>> {
    let (tx, rx) = mpsc::channel(256);
    let mut members = Membership::new(me, seeds, cfg, crate::net::now_ms());
    tracker.spawn(async move {
        let send = |members: &mut Membership| {
            for (to, data) in members.take_outbox() {
                let body = Body::Swim {
                    data: base64::engine::general_purpose::STANDARD.encode(data),
                };
                _ = transport.send(to, &body);
            }
        };
        let mut tick = tokio::time::interval(cfg.period);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    members.join();
                    members.publish();
                }
                t = members.next_timer() => members.handle_timer(t),
                m = inbox.recv() => match m {
                    None => return,
                    Some(Inbound { body: Body::Swim { data }, .. }) => {
                        if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(data) {
                            _ = members.handle_data(&d);
                        }
                    }
                    Some(m) => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                },
            }
            send(&mut members);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::VmHistories;

    fn obs(vms: &[(&str, f64)]) -> Vec<(String, f64)> {
        vms.iter().map(|(v, c)| ((*v).to_string(), *c)).collect()
    }

    #[test]
    fn vm_series_are_averaged_to_the_hosts_points_bounded_and_forgotten() {
        let mut h = VmHistories::default();
        // Two measurements per point: a point is the mean of the measurements it closes.
        h.observe(&obs(&[("a", 10.0), ("b", 1.0)]), false, 3);
        h.observe(&obs(&[("a", 20.0), ("b", 3.0)]), true, 3);
        assert_eq!(h.series("a"), vec![15.0]);
        assert_eq!(h.series("b"), vec![2.0]);
        // A VM that arrives mid-point has the mean of what was measured of it.
        h.observe(&obs(&[("a", 30.0), ("b", 5.0)]), false, 3);
        h.observe(&obs(&[("a", 30.0), ("b", 5.0), ("c", 7.0)]), true, 3);
        assert_eq!(h.series("a"), vec![15.0, 30.0]);
        assert_eq!(h.series("c"), vec![7.0]);
        // At most `len` points, the oldest dropped.
        for x in [40.0, 50.0] {
            h.observe(&obs(&[("a", x), ("b", 5.0), ("c", 7.0)]), true, 3);
        }
        assert_eq!(h.series("a"), vec![30.0, 40.0, 50.0]);
        // A VM no longer listed is forgotten.
        h.observe(&obs(&[("a", 60.0)]), false, 3);
        assert_eq!(h.len(), 1);
        assert!(h.series("b").is_empty());
    }
}
