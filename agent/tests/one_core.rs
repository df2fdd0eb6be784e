//! One agent, two drivers: the replay's event log, fed to fresh agent cores outside the replay's
//! driver (as the daemon's driver feeds its core), gives the same actions, event for event.

use std::path::PathBuf;
use std::sync::Arc;

use keel_agent::host::{HostAgent, Output, Scripted};
use keel_agent::sim::engine::Engine;
use keel_agent::sim::keel::{feed_agent, Event, KeelPolicy, Transport};
use keel_agent::sim::scenario::Scenario;
use keel_agent::sim::workload::Workload;
use keel_lcc::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `policy` on the first VMs of a shipped day with a lossy transport; returns its log.
fn recorded(policy: &str) -> (KeelPolicy, Vec<Event>) {
    let wl = Workload::from_parquet(&root().join("datasets/planetlab-20110303.parquet"))
        .expect("dataset")
        .take(60);
    let sc = Scenario::resolve(
        &root()
            .join("agent/scenarios/small-lab.toml")
            .display()
            .to_string(),
        1,
    )
    .expect("scenario");
    let t = Transport {
        loss: 0.05,
        seed: 3,
        ..Transport::default()
    };
    let mut p = KeelPolicy::from_name(policy, None, None, t).expect("policy");
    p.record_events();
    Engine::new(&sc, &wl)
        .run(&mut p, false, &mut |_, _| {})
        .expect("replay runs");
    let events = p.take_events();
    (p, events)
}

fn replays_identically(policy: &str) {
    let (p, events) = recorded(policy);
    let hosts = events.iter().map(|e| e.host).max().expect("events") + 1;
    let mut agents: Vec<HostAgent> = (0..hosts)
        .map(|h| {
            HostAgent::new(
                Value::Int(h as i64),
                Arc::clone(p.program()),
                p.core_config(),
                0,
            )
            .unwrap()
        })
        .collect();
    let (mut lcc, mut executes) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let mut view = Scripted::new(e.view.clone());
        let out = feed_agent(&mut agents[e.host], e.at, e.input.clone(), &mut view);
        assert_eq!(
            out,
            e.outputs,
            "{policy}: event {i} of {} (host {}, {:?})",
            events.len(),
            e.host,
            e.input
        );
        assert_eq!(
            (view.mismatches, view.left()),
            (0, 0),
            "{policy}: event {i}: the agent asked other questions"
        );
        lcc += out
            .iter()
            .filter(|o| matches!(o, Output::Lcc { .. }))
            .count();
        executes += out
            .iter()
            .filter(|o| matches!(o, Output::Execute { .. }))
            .count();
    }
    // The log exercised the model's exchange and the commit layer, not an idle fleet.
    assert!(lcc > 20, "{policy}: {lcc} model messages");
    assert!(executes > 0, "{policy}: no migration");
}

#[test]
fn power_saving_event_log_gives_the_same_actions() {
    replays_identically("keel-power-saving");
}

#[test]
fn peer_group_event_log_gives_the_same_actions() {
    replays_identically("keel-peer-group");
}

#[test]
fn auction_event_log_gives_the_same_actions() {
    replays_identically("keel-auction");
}
