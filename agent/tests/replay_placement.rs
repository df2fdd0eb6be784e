//! A replay's small scenario for `keel-agent cluster` (`--hosts`, `--steps`,
//! `--export-placement`): the file holds the replay's own placement, and the cluster's energy
//! rule, applied to it with no migration, gives the replay's no-migration energy.

use std::path::PathBuf;

use clap::Parser;
use keel_agent::replay::placement::{energy_kwh, Placement};
use keel_agent::replay::{replay, ReplayArgs};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    a: ReplayArgs,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn exported_placement_gives_the_replays_no_migration_energy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.json");
    let ds = root().join("datasets/planetlab-20110303.parquet");
    let a = Cli::parse_from([
        "replay",
        "--dataset",
        ds.to_str().unwrap(),
        "--hosts",
        "30",
        "--steps",
        "36",
        "--max-vms",
        "40",
        "--policies",
        "no-migration,keel-power-saving",
        "--export-placement",
        out.to_str().unwrap(),
        "--export-policy",
        "no-migration",
        "--quiet",
    ])
    .a;
    let (results, _, sc, _) = replay(&a).unwrap();
    assert_eq!(sc.hosts.len(), 30);
    let steps = &results[0].result.steps;
    assert_eq!(steps.len(), 36, "36 interval updates");
    let pl = Placement::load(&out).unwrap();
    assert_eq!((pl.hosts.len(), pl.vms.len(), pl.steps), (30, 39, 36));
    assert_eq!((pl.policy.as_str(), pl.accept_below), ("no-migration", 0.9));
    let d = pl.demands(&ds).unwrap();
    let idx = |h: &str| pl.hosts.iter().position(|x| x.id == h).unwrap();
    let utils: Vec<Vec<f64>> = (0..pl.steps)
        .map(|k| {
            let mut u = vec![0.0; pl.hosts.len()];
            for v in &pl.vms {
                u[idx(&v.host)] += d[&v.id][k];
            }
            u.iter()
                .zip(&pl.hosts)
                .map(|(x, h)| x / h.capacity)
                .collect()
        })
        .collect();
    let power: Vec<[f64; 11]> = pl.hosts.iter().map(|h| h.power_watts).collect();
    let e = energy_kwh(&power, &utils, pl.interval_s);
    let replay_e = results[0].result.energy_kwh;
    eprintln!("static placement: {e} kWh, replay no-migration: {replay_e} kWh");
    assert!((e - replay_e).abs() / replay_e < 1e-9, "{e} vs {replay_e}");
}
