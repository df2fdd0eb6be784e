//! `keel-agent cluster` on a small canonical-schema dataset written by the test: real agents on
//! 127.0.0.1 with real TCP and the cluster key, the dry-run executor, load replayed from the
//! file, with and without peers killed and restarted.

use std::path::Path;

use keel_agent::daemon::cluster::{run, scenario, ClusterArgs};
use keel_core::inventory::{Inventory, VmSpec};
use keel_core::parquet_io::write_samples;
use keel_core::schema::{Metrics, Sample};

/// Eight 2500-MIPS VMs at 30 % CPU for an hour (12 × 5 min). Placed on three CloudSim hosts at
/// pack 3.0, the first host gets five of them (3750 of 3720 MIPS: overloaded), the second three,
/// the third none.
fn dataset(path: &Path) {
    let inv = Inventory {
        vms: (0..8)
            .map(|i| VmSpec {
                id: format!("vm{i}"),
                vcpus: 1,
                cpu_per_vcpu: 2500.0,
                mem_mib: 613.0,
                vm_type: None,
            })
            .collect(),
        ..Inventory::default()
    };
    let mut rows = Vec::new();
    for step in 0..12i64 {
        for i in 0..8 {
            rows.push(Sample {
                ts_ms: 1_299_110_400_000 + step * 300_000,
                host_id: None,
                vm_id: Some(format!("vm{i}")),
                metrics: Metrics {
                    cpu_util: Some(0.3),
                    ..Metrics::default()
                },
            });
        }
    }
    write_samples(path, &rows, &inv, Default::default()).unwrap();
}

fn args(path: &Path) -> ClusterArgs {
    ClusterArgs {
        agents: 3,
        dataset: path.to_path_buf(),
        speedup: 300.0,
        seconds: 4.0,
        kill: 0.0,
        down_ms: 500,
        pack: 3.0,
        drop: 0.0,
        duplicate: 0.0,
        model: None,
        interaction_model: None,
        directory: false,
        seed: 7,
        placement: None,
        eval_ms: None,
        warmup_ms: 2000,
        min_stay_s: None,
        model_consult: keel_agent::host::ModelConsult::Every,
        json: true,
    }
}

#[test]
fn placement_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    dataset(&p);
    let s = scenario(&p, 3, 3.0).unwrap();
    let on = |h: &str| s.placement.values().filter(|x| *x == h).count();
    assert_eq!((on("h00"), on("h01"), on("h02")), (5, 3, 0));
    assert_eq!(s.step_s, 300.0);
    assert_eq!(s.series["vm0"][0], 750.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_relieves_the_overloaded_host_without_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    dataset(&p);
    let r = run(&args(&p)).await.unwrap();
    assert_eq!(r.vms, 8);
    assert!(r.negotiations >= 1, "{r:?}");
    assert!(r.migrations >= 1, "{r:?}");
    assert!(r.messages > r.negotiation_messages, "{r:?}");
    assert_eq!(r.vm_conflicts, 0, "{r:?}");
    assert_eq!(r.frames_refused, 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_with_killed_peers_and_lossy_links_has_no_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    dataset(&p);
    let mut a = args(&p);
    a.agents = 4;
    a.kill = 1.5;
    a.drop = 0.1;
    a.duplicate = 0.1;
    a.interaction_model =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("protocols/peer-group.lcc"));
    let r = run(&a).await.unwrap();
    assert!(r.kills >= 1, "{r:?}");
    assert!(r.faults_injected > 0, "{r:?}");
    assert_eq!(r.vm_conflicts, 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_through_a_directory_relieves_the_overloaded_host() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.parquet");
    dataset(&p);
    let mut a = args(&p);
    a.directory = true;
    let r = run(&a).await.unwrap();
    assert!(r.migrations >= 1, "{r:?}");
    assert_eq!(r.vm_conflicts, 0, "{r:?}");
}
