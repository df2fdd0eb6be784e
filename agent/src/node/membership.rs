//! The peer table: who is in the fleet, where they listen, which role they play.
//!
//! Membership and failure detection are SWIM, as implemented by the `foca` crate: each agent
//! joins by announcing itself to the seed list, probes one member per period (directly, then
//! through `fanout` others), suspects a member that answers neither, and declares it down after
//! `dead_after` unless it refutes. Nothing here is a centre: any member's announce joins the
//! fleet. Foca's packets travel inside the transport's authenticated frames ([`super::Body::Swim`]),
//! so only holders of the cluster key take part.
//!
//! What an agent says about itself (role, free capacity, utilisation history, libvirt URI) is a
//! [`PeerInfo`] record, spread as a foca custom broadcast piggybacked on the SWIM traffic: a
//! record replaces an older one of the same agent (higher `heartbeat`), and only records of
//! members foca holds active are used, so a dead host drops out of every choice as soon as SWIM
//! declares it down.
//!
//! An agent's identity is its id, listen address and a start stamp: a restarted agent (same address,
//! later stamp) replaces its previous incarnation, and an agent wrongly declared down rejoins under
//! a renewed stamp.
//!
//! Small fleets may use a directory instead ([`Mode::Directory`]): one or a few agents serve a
//! [`Directory`]; the others register their record with every directory each period and take the
//! live records it answers with as their view. A record not refreshed within `dead_after` drops
//! out, on the directory and in the view.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use foca::{
    AccumulatingRuntime, BroadcastHandler, Foca, Identity, Invalidates, OwnedNotification,
    PeriodicParams, PostcardCodec, Timer,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tracing::{debug, info, warn};

use super::Role;

/// What an agent says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Agent id.
    pub id: String,
    /// Listen address.
    pub addr: SocketAddr,
    /// Current role.
    pub role: Role,
    /// The interaction model's role it plays (what discovery matches on).
    pub plays: String,
    /// CPU capacity.
    pub capacity: f64,
    /// CPU in use.
    pub used: f64,
    /// Recent CPU utilisation, oldest first (for the stability model).
    pub history: Vec<f64>,
    /// Seconds between history values.
    pub step_s: f64,
    /// Record version: the owner's start time in ms, then incremented on every publication.
    pub heartbeat: u64,
    /// Libvirt URI for live migration to this host. (Records travel as postcard, which is not
    /// self-describing: no field may be skipped.)
    #[serde(default)]
    pub libvirt_uri: Option<String>,
    /// Policy bundle version in use.
    #[serde(default)]
    pub policy_version: u64,
}

/// An agent's SWIM identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwimId {
    /// Agent id.
    pub id: String,
    /// Listen address (foca's notion of address: one identity per address at a time).
    pub addr: SocketAddr,
    /// Start stamp; later wins when two identities claim one address.
    pub stamp: u64,
}

impl Identity for SwimId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            stamp: self.stamp + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.stamp > adversary.stamp
    }
}

/// Most history values accepted per record.
pub const MAX_HISTORY: usize = 512;
/// Largest SWIM packet sent or accepted (a record with a full history is about 4.6 kB).
pub const MAX_PACKET: usize = 32 * 1024;

/// SWIM settings, derived from the agent's.
#[derive(Debug, Clone, Copy)]
pub struct SwimConfig {
    /// Probe period; gossip runs at the same period.
    pub period: Duration,
    /// Members gossiped to per round (and indirect probes per failed direct probe).
    pub fanout: usize,
    /// A suspected member not refuting within this is declared down.
    pub dead_after: Duration,
}

impl SwimConfig {
    fn foca(self) -> foca::Config {
        let period = self.period.max(Duration::from_millis(10));
        let fanout = NonZeroUsize::new(self.fanout.max(1)).unwrap_or(NonZeroUsize::MIN);
        let mut c = foca::Config::new_lan(NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN));
        c.probe_period = period;
        c.probe_rtt = period / 2;
        c.num_indirect_probes = fanout;
        c.suspect_to_down_after = self.dead_after.max(period * 2);
        c.remove_down_after = (self.dead_after * 10).max(Duration::from_secs(15));
        c.max_packet_size = NonZeroUsize::new(MAX_PACKET).unwrap_or(NonZeroUsize::MIN);
        c.periodic_gossip = Some(PeriodicParams {
            frequency: period,
            num_members: fanout,
        });
        c.periodic_announce = Some(PeriodicParams {
            frequency: period * 30,
            num_members: NonZeroUsize::MIN,
        });
        c.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: period * 60,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        c
    }
}

/// Why a SWIM packet or record was refused.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Foca refused the packet (malformed, too big, from ourselves, ...).
    #[error("SWIM packet refused: {0}")]
    Swim(String),
    /// A record did not decode.
    #[error("peer record does not decode: {0}")]
    Record(#[from] postcard::Error),
}

/// Records by agent id, shared between the table and foca's broadcast handler.
#[derive(Debug, Default)]
struct Records {
    by_id: HashMap<String, PeerInfo>,
    refused: u64,
    /// Agents whose first record arrived (a change of the view).
    first_seen: u64,
}

type Shared = Arc<Mutex<Records>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Records> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A record's dissemination key: a newer version of the same agent's record replaces it.
#[derive(Debug)]
pub struct RecordKey {
    id: String,
    version: u64,
}

impl Invalidates for RecordKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.id == other.id && self.version >= other.version
    }
}

/// Foca's custom-broadcast handler: keeps the newest record of each agent.
struct RecordHandler {
    me: String,
    records: Shared,
}

impl BroadcastHandler<SwimId> for RecordHandler {
    type Key = RecordKey;
    type Error = MembershipError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&SwimId>,
    ) -> Result<Option<RecordKey>, MembershipError> {
        let p: PeerInfo = postcard::from_bytes(data)?;
        let key = RecordKey {
            id: p.id.clone(),
            version: p.heartbeat,
        };
        if p.id == self.me {
            // Our own publication (no sender) is spread; our record echoed back is not.
            return Ok(sender.is_none().then_some(key));
        }
        let mut r = lock(&self.records);
        if !valid(&p) {
            r.refused += 1;
            return Ok(None);
        }
        match r.by_id.get(&p.id) {
            Some(old) if old.heartbeat >= p.heartbeat => Ok(None),
            old => {
                if old.is_none() {
                    r.first_seen += 1;
                }
                r.by_id.insert(p.id.clone(), p);
                Ok(Some(key))
            }
        }
    }
}

fn valid(p: &PeerInfo) -> bool {
    p.capacity.is_finite()
        && p.capacity >= 0.0
        && p.used.is_finite()
        && p.step_s.is_finite()
        && p.history.len() <= MAX_HISTORY
        && p.history.iter().all(|v| v.is_finite())
        && !p.id.is_empty()
}

/// Membership counters for the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MembershipCounts {
    /// Members foca holds active (alive or suspect), this agent excluded.
    pub active: usize,
    /// Members seen coming up.
    pub up: u64,
    /// Members declared down.
    pub down: u64,
    /// SWIM packets refused.
    pub refused_packets: u64,
    /// Peer records refused (non-finite values, oversized history).
    pub refused_records: u64,
}

/// How an agent learns its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// SWIM (foca): no centre.
    #[default]
    Swim,
    /// Register with the directories (the seeds) and take their answers as the view.
    Directory,
}

/// Most records in a directory answer (directories are for small fleets).
pub const MAX_DIRECTORY_PEERS: usize = 256;

/// What a directory server holds: each registrant's latest record and when it came.
#[derive(Debug)]
pub struct Directory {
    records: HashMap<String, (PeerInfo, Instant)>,
    dead_after: Duration,
    /// Registrations refused (invalid records, id not the frame's sender, full).
    pub refused: u64,
}

impl Directory {
    /// An empty directory; records expire after `dead_after`.
    pub fn new(dead_after: Duration) -> Self {
        Self {
            records: HashMap::new(),
            dead_after,
            refused: 0,
        }
    }

    /// Registers `p`, sent by agent `from` (the frame's authenticated sender) from `addr`
    /// (pinned as the record's address). Returns whether it was taken.
    pub fn register(
        &mut self,
        mut p: PeerInfo,
        from: &str,
        addr: SocketAddr,
        now: Instant,
    ) -> bool {
        self.expire(now);
        let full = self.records.len() >= MAX_DIRECTORY_PEERS && !self.records.contains_key(&p.id);
        if p.id != from || !valid(&p) || full {
            self.refused += 1;
            return false;
        }
        p.addr = addr;
        match self.records.get(&p.id) {
            // A restarted agent's record has a later start stamp; an older one is stale.
            Some((old, _)) if old.heartbeat > p.heartbeat => false,
            _ => {
                self.records.insert(p.id.clone(), (p, now));
                true
            }
        }
    }

    /// Live records, by id.
    pub fn live(&mut self, now: Instant) -> Vec<PeerInfo> {
        self.expire(now);
        let mut v: Vec<PeerInfo> = self.records.values().map(|(p, _)| p.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn expire(&mut self, now: Instant) {
        let d = self.dead_after;
        self.records
            .retain(|_, (_, t)| now.saturating_duration_since(*t) < d);
    }
}

/// The peer table.
pub struct Membership {
    mode: Mode,
    /// Directory mode: the view from the directories' answers, with when each record came.
    view: HashMap<String, (PeerInfo, Instant)>,
    dead_after: Duration,
    me: PeerInfo,
    identity: SwimId,
    foca: Foca<SwimId, PostcardCodec, ChaCha8Rng, RecordHandler>,
    runtime: AccumulatingRuntime<SwimId>,
    timers: DelayQueue<Timer<SwimId>>,
    records: Shared,
    /// Active members by address (from foca's notifications).
    active: HashMap<SocketAddr, SwimId>,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    seeds: Vec<SocketAddr>,
    counts: MembershipCounts,
    /// When the view last changed (a member up, down or renamed, a first record), and the
    /// first-record count then.
    changed: (Instant, u64),
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", &self.identity)
            .field("active", &self.active.len())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// A SWIM table with only this agent; `seeds` are announced to by [`Self::join`].
    pub fn new(me: PeerInfo, seeds: Vec<SocketAddr>, cfg: SwimConfig, seed: u64) -> Self {
        Self::with_mode(Mode::Swim, me, seeds, cfg, seed)
    }

    /// A table in `mode`; in [`Mode::Directory`] the seeds are the directories.
    pub fn with_mode(
        mode: Mode,
        me: PeerInfo,
        seeds: Vec<SocketAddr>,
        cfg: SwimConfig,
        seed: u64,
    ) -> Self {
        let identity = SwimId {
            id: me.id.clone(),
            addr: me.addr,
            stamp: me.heartbeat,
        };
        let records = Shared::default();
        let handler = RecordHandler {
            me: me.id.clone(),
            records: Arc::clone(&records),
        };
        let foca = Foca::with_custom_broadcast(
            identity.clone(),
            cfg.foca(),
            ChaCha8Rng::seed_from_u64(seed),
            PostcardCodec,
            handler,
        );
        Self {
            mode,
            view: HashMap::new(),
            dead_after: cfg.dead_after,
            seeds: seeds.into_iter().filter(|s| *s != me.addr).collect(),
            me,
            identity,
            foca,
            runtime: AccumulatingRuntime::new(),
            timers: DelayQueue::new(),
            records,
            active: HashMap::new(),
            outbox: Vec::new(),
            counts: MembershipCounts::default(),
            changed: (Instant::now(), 0),
        }
    }

    /// Announces this agent to every seed while it knows no member (call periodically).
    pub fn join(&mut self) {
        if self.mode == Mode::Directory || !self.active.is_empty() {
            return;
        }
        for s in self.seeds.clone() {
            // The seed's identity is not known yet: foca accepts an announce addressed to any
            // identity at its address.
            let dst = SwimId {
                id: String::new(),
                addr: s,
                stamp: 0,
            };
            if let Err(e) = self.foca.announce(dst, &mut self.runtime) {
                debug!(seed = %s, error = %e, "Announce not sent.");
            }
        }
        self.drain();
    }

    /// Changes this agent's own record (spread by the next [`Self::publish`]).
    pub fn update_me(&mut self, f: impl FnOnce(&mut PeerInfo)) {
        f(&mut self.me);
    }

    /// Spreads this agent's record as a new version.
    pub fn publish(&mut self) {
        self.me.heartbeat += 1;
        if self.mode == Mode::Directory {
            return;
        }
        match postcard::to_allocvec(&self.me) {
            Ok(data) => {
                if let Err(e) = self.foca.add_broadcast(&data) {
                    warn!(error = %e, "Own record not spread.");
                }
            }
            Err(e) => warn!(error = %e, "Own record does not encode."),
        }
        self.drain();
    }

    /// Hands a SWIM packet from the network to foca.
    ///
    /// # Errors
    /// The packet is malformed, too big, or carries a record that does not decode.
    pub fn handle_data(&mut self, data: &[u8]) -> Result<(), MembershipError> {
        let r = self.foca.handle_data(data, &mut self.runtime);
        self.drain();
        r.map_err(|e| {
            self.counts.refused_packets += 1;
            MembershipError::Swim(e.to_string())
        })
    }

    /// The next due SWIM timer (pending while none is scheduled).
    pub async fn next_timer(&mut self) -> Timer<SwimId> {
        use futures_util::StreamExt;
        if self.timers.is_empty() {
            return std::future::pending().await;
        }
        match self.timers.next().await {
            Some(t) => t.into_inner(),
            None => std::future::pending().await,
        }
    }

    /// Runs a due SWIM timer.
    pub fn handle_timer(&mut self, t: Timer<SwimId>) {
        if let Err(e) = self.foca.handle_timer(t, &mut self.runtime) {
            debug!(error = %e, "SWIM timer failed.");
        }
        self.drain();
    }

    /// Leaves the fleet (graceful shutdown): peers learn it at once instead of suspecting.
    pub fn leave(&mut self) {
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            debug!(error = %e, "Leave not announced.");
        }
        self.drain();
    }

    /// SWIM packets to send: (address, bytes).
    pub fn take_outbox(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.outbox.push((to.addr, data.to_vec()));
        }
        while let Some((after, t)) = self.runtime.to_schedule() {
            self.timers.insert(t, after);
        }
        while let Some(n) = self.runtime.to_notify() {
            self.on_notification(n);
        }
    }

    fn on_notification(&mut self, n: OwnedNotification<SwimId>) {
        if matches!(
            n,
            OwnedNotification::MemberUp(_)
                | OwnedNotification::MemberDown(_)
                | OwnedNotification::Rename(..)
        ) {
            self.changed.0 = Instant::now();
        }
        match n {
            OwnedNotification::MemberUp(id) => {
                info!(peer = %id.id, addr = %id.addr, "Member up.");
                self.counts.up += 1;
                self.active.insert(id.addr, id);
            }
            OwnedNotification::MemberDown(id) => {
                info!(peer = %id.id, addr = %id.addr, "Member down.");
                self.counts.down += 1;
                if self.active.get(&id.addr) == Some(&id) {
                    self.active.remove(&id.addr);
                }
            }
            OwnedNotification::Rename(old, new) => {
                debug!(peer = %new.id, old = old.stamp, new = new.stamp, "Member restarted.");
                if self.active.contains_key(&old.addr) {
                    self.active.insert(new.addr, new);
                }
            }
            OwnedNotification::Rejoin(id) => {
                warn!(stamp = id.stamp, "This agent was declared down; rejoined.");
                self.identity = id;
            }
            OwnedNotification::Defunct => warn!("This agent was declared down."),
            OwnedNotification::Active => debug!("Joined the fleet."),
            OwnedNotification::Idle => debug!("No active member left."),
        }
    }

    /// This agent's own record.
    pub fn me(&self) -> &PeerInfo {
        &self.me
    }

    /// How long the view has not changed (no member up, down or restarted, no first record of
    /// an agent). A source waits for a settled view before choosing a target, so that it does not
    /// pick from the few peers it happened to hear first.
    pub fn quiet_for(&mut self, now: Instant) -> Duration {
        let seen = lock(&self.records).first_seen;
        if seen != self.changed.1 {
            self.changed = (now, seen);
        }
        now.saturating_duration_since(self.changed.0)
    }

    /// How this table learns peers.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The directories (directory mode) or the seeds (SWIM).
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Directory mode: takes a directory's answer (records refreshed now; others age out).
    pub fn set_view(&mut self, peers: Vec<PeerInfo>, now: Instant) {
        for p in peers.into_iter().take(MAX_DIRECTORY_PEERS) {
            if p.id == self.me.id {
                continue;
            }
            if !valid(&p) {
                lock(&self.records).refused += 1;
                continue;
            }
            match self.view.get(&p.id) {
                Some((old, _)) if old.heartbeat > p.heartbeat => {}
                old => {
                    if old.is_none() {
                        lock(&self.records).first_seen += 1;
                    }
                    self.view.insert(p.id.clone(), (p, now));
                }
            }
        }
        let d = self.dead_after;
        self.view
            .retain(|_, (_, t)| now.saturating_duration_since(*t) < d);
    }

    /// Active members' records, by id (a record counts only while its agent is an active member
    /// at the record's address).
    fn live_records(&self) -> Vec<PeerInfo> {
        if self.mode == Mode::Directory {
            let now = Instant::now();
            return self
                .view
                .values()
                .filter(|(_, t)| now.saturating_duration_since(*t) < self.dead_after)
                .map(|(p, _)| p.clone())
                .collect();
        }
        let r = lock(&self.records);
        let ids: HashSet<(&str, SocketAddr)> = self
            .active
            .values()
            .map(|m| (m.id.as_str(), m.addr))
            .collect();
        r.by_id
            .values()
            .filter(|p| ids.contains(&(p.id.as_str(), p.addr)))
            .cloned()
            .collect()
    }

    /// Live peers (and this agent first).
    pub fn alive(&self, _now: Instant) -> impl Iterator<Item = PeerInfo> {
        let mut peers = self.live_records();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        std::iter::once(self.me.clone()).chain(peers)
    }

    /// Whether `id` is an active member (this agent included).
    pub fn knows(&self, id: &str) -> bool {
        self.addr_of(id).is_some()
    }

    /// A live member's address.
    pub fn addr_of(&self, id: &str) -> Option<SocketAddr> {
        if id == self.me.id {
            return Some(self.me.addr);
        }
        if self.mode == Mode::Directory {
            return self
                .live_records()
                .into_iter()
                .find(|p| p.id == id)
                .map(|p| p.addr);
        }
        self.active.values().find(|m| m.id == id).map(|m| m.addr)
    }

    /// A live member's record.
    pub fn get(&self, id: &str) -> Option<PeerInfo> {
        if self.mode == Mode::Directory {
            return self.live_records().into_iter().find(|p| p.id == id);
        }
        let addr = self.addr_of(id)?;
        lock(&self.records)
            .by_id
            .get(id)
            .filter(|p| p.addr == addr)
            .cloned()
    }

    /// Ids of live members in a role.
    pub fn in_role(&self, role: Role, now: Instant) -> Vec<String> {
        self.alive(now)
            .filter(|p| p.role == role)
            .map(|p| p.id)
            .collect()
    }

    /// Counters.
    pub fn counts(&self) -> MembershipCounts {
        MembershipCounts {
            active: match self.mode {
                Mode::Swim => self.active.len(),
                Mode::Directory => self.live_records().len(),
            },
            refused_records: lock(&self.records).refused,
            ..self.counts.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn info(id: &str, port: u16) -> PeerInfo {
        PeerInfo {
            id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            role: Role::Idle,
            plays: "idle".into(),
            capacity: 100.0,
            used: 10.0,
            history: vec![0.1, 0.2],
            step_s: 300.0,
            heartbeat: 1_000,
            libvirt_uri: None,
            policy_version: 0,
        }
    }

    const CFG: SwimConfig = SwimConfig {
        period: Duration::from_millis(100),
        fanout: 2,
        dead_after: Duration::from_millis(600),
    };

    /// `n` agents on ports 1..=n, all seeded with agent 1.
    fn fleet(n: u16) -> Vec<Membership> {
        let seed = SocketAddr::from(([127, 0, 0, 1], 1));
        (1..=n)
            .map(|p| Membership::new(info(&format!("h{p}"), p), vec![seed], CFG, u64::from(p)))
            .collect()
    }

    /// Runs the fleet for `ms` of paused time; `down` agents neither send nor receive.
    async fn run(f: &mut [Membership], ms: u64, down: &[usize]) {
        for step in 0..ms / 10 {
            if step % 10 == 0 {
                for (i, m) in f.iter_mut().enumerate() {
                    if !down.contains(&i) {
                        m.join();
                        m.publish();
                    }
                }
            }
            tokio::time::advance(Duration::from_millis(10)).await;
            for (i, m) in f.iter_mut().enumerate() {
                while let Some(t) = m.next_timer().now_or_never() {
                    if !down.contains(&i) {
                        m.handle_timer(t);
                    }
                }
            }
            // Deliver until quiet.
            loop {
                let mut sent = Vec::new();
                for (i, m) in f.iter_mut().enumerate() {
                    let out = m.take_outbox();
                    if !down.contains(&i) {
                        sent.extend(out);
                    }
                }
                if sent.is_empty() {
                    break;
                }
                for (to, data) in sent {
                    let i = usize::from(to.port()) - 1;
                    if let (Some(m), false) = (f.get_mut(i), down.contains(&i)) {
                        _ = m.handle_data(&data);
                    }
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fleet_joins_through_one_seed_and_learns_records() {
        let mut f = fleet(5);
        f[3].update_me(|me| me.role = Role::Underloaded);
        run(&mut f, 2_000, &[]).await;
        let now = Instant::now();
        for m in &f {
            assert_eq!(m.alive(now).count(), 5, "{} sees everyone", m.me().id);
            if m.me().id != "h4" {
                assert_eq!(m.in_role(Role::Underloaded, now), ["h4"]);
                assert_eq!(m.get("h4").unwrap().history, [0.1, 0.2]);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_member_is_declared_down_and_a_restart_replaces_it() {
        let mut f = fleet(4);
        run(&mut f, 1_500, &[]).await;
        assert!(f[0].knows("h3"));
        run(&mut f, 3_000, &[2]).await;
        for (i, m) in f.iter().enumerate() {
            if i != 2 {
                assert!(!m.knows("h3"), "{} still holds h3", m.me().id);
                assert_eq!(m.alive(Instant::now()).count(), 3);
                assert!(m.counts().down >= 1);
            }
        }
        // h3 restarts on the same address with a later stamp and a fresh record.
        let mut me = info("h3", 3);
        me.heartbeat = 50_000;
        me.role = Role::Underloaded;
        f[2] = Membership::new(me, vec![SocketAddr::from(([127, 0, 0, 1], 1))], CFG, 9);
        run(&mut f, 3_000, &[]).await;
        assert_eq!(f[0].in_role(Role::Underloaded, Instant::now()), ["h3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_packets_and_records_are_refused() {
        let mut f = fleet(2);
        run(&mut f, 1_000, &[]).await;
        assert!(f[0].handle_data(b"\x00\x01garbage").is_err());
        assert!(f[0].handle_data(&vec![7u8; MAX_PACKET + 1]).is_err());
        assert_eq!(f[0].counts().refused_packets, 2);
        // A record with a non-finite value is refused by the handler, not stored.
        let mut h = RecordHandler {
            me: "h1".into(),
            records: Shared::default(),
        };
        let mut bad = info("x", 9);
        bad.used = f64::NAN;
        let data = postcard::to_allocvec(&bad).unwrap();
        let sender = f[1].identity.clone();
        assert!(h.receive_item(&data, Some(&sender)).unwrap().is_none());
        assert_eq!(lock(&h.records).refused, 1);
        // An older version of a known record is not spread again.
        let good = info("y", 9);
        let data = postcard::to_allocvec(&good).unwrap();
        assert!(h.receive_item(&data, Some(&sender)).unwrap().is_some());
        assert!(h.receive_item(&data, Some(&sender)).unwrap().is_none());
        assert!(h.receive_item(b"\xff", Some(&sender)).is_err());
    }

    #[test]
    fn history_plan_matches_the_model_step() {
        // 5 s evaluations, 300 s points, one hour: 60 evaluations per point, 12 points.
        assert_eq!(
            super::super::history_plan(5.0, 300.0, 3600.0),
            (60, 300.0, 12)
        );
        // Cluster at 300x: 60 s of trace per evaluation.
        assert_eq!(
            super::super::history_plan(60.0, 300.0, 3600.0),
            (5, 300.0, 12)
        );
        // Never more than peers accept.
        assert_eq!(super::super::history_plan(1.0, 1.0, 1e9).2, MAX_HISTORY);
    }
}
