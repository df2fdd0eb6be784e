//! Calibration against CloudSim 3.0.3 on PlanetLab 20110303 (files in sorted order): the proof that
//! `cloudsim-planetlab` is CloudSim's scenario before any comparison is believed.
//!
//! CloudSim's figures (../shared/design/reference-results.md): DVFS (no migration) 802.75 kWh;
//! THR-MMT-0.8 192.62 kWh and 26,711 migrations, SLATAH 4.91 %, PDM 0.06 %; LR-MC-1.2 151.07 kWh
//! and 23,380 migrations, SLATAH 7.01 %.

use std::path::PathBuf;

use keel_agent::sim::heuristics::{Heuristic, NoMigration};
use keel_agent::sim::{Engine, Policy, Scenario, Workload};

fn dataset() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/planetlab-20110303.parquet")
}

fn run(policy: &mut dyn Policy) -> keel_agent::sim::engine::RunOutput {
    let wl = Workload::from_parquet(&dataset()).expect("the shipped dataset reads");
    assert_eq!(wl.n_vms(), 1052);
    let sc = Scenario::cloudsim_planetlab(800);
    Engine::new(&sc, &wl)
        .run(policy, false, &mut |_, _| {})
        .expect("the run completes")
}

fn within(ours: f64, theirs: f64, tol: f64) -> bool {
    ((ours - theirs) / theirs).abs() <= tol
}

#[test]
fn no_migration_energy_is_within_1_percent_of_cloudsim_dvfs() {
    let r = run(&mut NoMigration);
    assert_eq!(r.migrations, 0);
    assert!(
        within(r.energy_kwh, 802.75, 0.01),
        "no-migration: {:.2} kWh, CloudSim DVFS 802.75 kWh",
        r.energy_kwh
    );
}

#[test]
fn thr_mmt_08_is_within_10_percent_of_cloudsim() {
    let mut p = Heuristic::parse("thr-mmt-0.8").expect("known policy");
    let r = run(&mut p);
    assert!(
        within(r.energy_kwh, 192.62, 0.10),
        "THR-MMT-0.8 energy {:.2} kWh vs 192.62",
        r.energy_kwh
    );
    assert!(
        within(r.migrations as f64, 26_711.0, 0.10),
        "THR-MMT-0.8 migrations {} vs 26,711",
        r.migrations
    );
    // The SLA figures are not part of the calibration target, but must be of the same order.
    assert!(within(r.slatah, 0.0491, 0.25), "SLATAH {:.4}", r.slatah);
    assert!(within(r.pdm, 0.0006, 0.5), "PDM {:.5}", r.pdm);
}

#[test]
fn lr_mc_12_is_within_5_percent_of_cloudsim() {
    // Maximum-correlation selection (an R² regression per VM per choice) on top of the LR detector.
    let mut p = Heuristic::parse("lr-mc-1.2").expect("known policy");
    let r = run(&mut p);
    assert!(
        within(r.energy_kwh, 151.07, 0.05),
        "LR-MC-1.2 energy {:.2} kWh vs 151.07",
        r.energy_kwh
    );
    assert!(
        within(r.migrations as f64, 23_380.0, 0.05),
        "LR-MC-1.2 migrations {} vs 23,380",
        r.migrations
    );
    assert!(within(r.slatah, 0.0701, 0.25), "SLATAH {:.4}", r.slatah);
}
