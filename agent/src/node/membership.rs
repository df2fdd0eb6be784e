//! The peer table: who is in the fleet, where they listen, which role they play.
//!
//! Membership is spread by gossip without a centre: each agent starts from a seed list, and on
//! every gossip tick sends its view (itself first) to a few random live peers. Each record carries
//! a heartbeat its owner increments; a merge keeps the record with the higher heartbeat, and a
//! peer whose heartbeat has not advanced for `dead_after` is dropped (and re-learnt if it comes
//! back). Only frames that passed the cluster key's authentication reach this table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

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
    /// CPU capacity.
    pub capacity: f64,
    /// CPU in use.
    pub used: f64,
    /// Recent CPU utilisation, oldest first (for the stability model).
    pub history: Vec<f64>,
    /// Seconds between history values.
    pub step_s: f64,
    /// Owner-incremented liveness counter.
    pub heartbeat: u64,
    /// Libvirt URI for live migration to this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt_uri: Option<String>,
    /// Policy bundle version in use.
    #[serde(default)]
    pub policy_version: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    info: PeerInfo,
    /// When the heartbeat last advanced, by this agent's clock.
    changed: Instant,
}

/// Most records accepted from one gossip message (bounds work per frame).
pub const MAX_GOSSIP_PEERS: usize = 512;
/// Longest history accepted per record.
pub const MAX_HISTORY: usize = 512;

/// The peer table.
#[derive(Debug)]
pub struct Membership {
    me: PeerInfo,
    peers: HashMap<String, Entry>,
    dead_after: Duration,
}

impl Membership {
    /// A table with only this agent.
    pub fn new(me: PeerInfo, dead_after: Duration) -> Self {
        Self {
            me,
            peers: HashMap::new(),
            dead_after,
        }
    }

    /// Changes this agent's own record.
    pub fn update_me(&mut self, f: impl FnOnce(&mut PeerInfo)) {
        f(&mut self.me);
    }

    /// This agent's own record.
    pub fn me(&self) -> &PeerInfo {
        &self.me
    }

    /// Merges a gossiped view. The sender (first record) is pinned to the address the frame came
    /// from, so an agent cannot be redirected by a third party's stale record.
    pub fn merge(&mut self, view: Vec<PeerInfo>, sender_addr: SocketAddr, now: Instant) {
        for (i, mut p) in view.into_iter().take(MAX_GOSSIP_PEERS).enumerate() {
            if p.id == self.me.id {
                continue;
            }
            if i == 0 {
                p.addr = sender_addr;
            }
            if !(p.capacity.is_finite() && p.used.is_finite()) || p.history.len() > MAX_HISTORY {
                continue;
            }
            match self.peers.get_mut(&p.id) {
                Some(e) if e.info.heartbeat >= p.heartbeat => {}
                Some(e) => {
                    e.info = p;
                    e.changed = now;
                }
                None => {
                    self.peers.insert(
                        p.id.clone(),
                        Entry {
                            info: p,
                            changed: now,
                        },
                    );
                }
            }
        }
    }

    /// Drops peers whose heartbeat is stale.
    pub fn expire(&mut self, now: Instant) {
        let d = self.dead_after;
        self.peers
            .retain(|_, e| now.saturating_duration_since(e.changed) < d);
    }

    /// Live peers (and this agent first).
    pub fn alive(&self, now: Instant) -> impl Iterator<Item = &PeerInfo> {
        let d = self.dead_after;
        std::iter::once(&self.me).chain(
            self.peers
                .values()
                .filter(move |e| now.saturating_duration_since(e.changed) < d)
                .map(|e| &e.info),
        )
    }

    /// The view to gossip: this agent first, then live peers.
    pub fn view(&self, now: Instant) -> Vec<PeerInfo> {
        self.alive(now).cloned().collect()
    }

    /// Whether `id` is a member (this agent included).
    pub fn knows(&self, id: &str) -> bool {
        id == self.me.id || self.peers.contains_key(id)
    }

    /// Whether some member listens at `addr`.
    pub fn has_addr(&self, addr: SocketAddr) -> bool {
        self.peers.values().any(|e| e.info.addr == addr)
    }

    /// A member's address.
    pub fn addr_of(&self, id: &str) -> Option<SocketAddr> {
        if id == self.me.id {
            return Some(self.me.addr);
        }
        self.peers.get(id).map(|e| e.info.addr)
    }

    /// A member's record.
    pub fn get(&self, id: &str) -> Option<&PeerInfo> {
        self.peers.get(id).map(|e| &e.info)
    }

    /// Ids of live members in a role.
    pub fn in_role(&self, role: Role, now: Instant) -> Vec<String> {
        self.alive(now)
            .filter(|p| p.role == role)
            .map(|p| p.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, port: u16, hb: u64, role: Role) -> PeerInfo {
        PeerInfo {
            id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            role,
            capacity: 100.0,
            used: 10.0,
            history: vec![],
            step_s: 1.0,
            heartbeat: hb,
            libvirt_uri: None,
            policy_version: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn merge_keeps_newest_and_expires_silent_peers() {
        let mut m = Membership::new(info("me", 1, 0, Role::Idle), Duration::from_secs(3));
        let now = Instant::now();
        m.merge(
            vec![
                info("a", 2, 5, Role::Underloaded),
                info("b", 3, 1, Role::Idle),
            ],
            SocketAddr::from(([127, 0, 0, 1], 2)),
            now,
        );
        assert_eq!(m.in_role(Role::Underloaded, now), ["a"]);
        // An older record does not overwrite.
        m.merge(
            vec![info("a", 2, 4, Role::Overloaded)],
            "127.0.0.1:2".parse().unwrap(),
            now,
        );
        assert_eq!(m.get("a").unwrap().role, Role::Underloaded);
        tokio::time::advance(Duration::from_secs(2)).await;
        let later = Instant::now();
        m.merge(
            vec![info("a", 2, 6, Role::Underloaded)],
            "127.0.0.1:2".parse().unwrap(),
            later,
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        m.expire(Instant::now());
        assert!(m.knows("a"));
        assert!(!m.knows("b"), "b's heartbeat stopped");
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

    #[test]
    fn sender_address_is_pinned() {
        let mut m = Membership::new(info("me", 1, 0, Role::Idle), Duration::from_secs(3));
        m.merge(
            vec![info("a", 9999, 1, Role::Idle)],
            "127.0.0.1:2".parse().unwrap(),
            Instant::now(),
        );
        assert_eq!(m.addr_of("a"), Some("127.0.0.1:2".parse().unwrap()));
    }
}
