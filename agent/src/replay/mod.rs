//! `keel-agent replay`: the agents on recorded traces under a virtual clock, next to CloudSim's
//! baselines, with CloudSim's metrics and Keel's own.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::sim::heuristics::{Heuristic, NoMigration};
use crate::sim::{Engine, Policy, PolicyResult, Scenario, Workload};

/// Default policy list.
pub const DEFAULT_POLICIES: &str = "no-migration,thr-mmt-0.8,iqr-mmt-1.5,mad-mmt-2.5,lr-mmt-1.2";

/// Arguments of `keel-agent replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Canonical Parquet dataset (VM rows with `cpu_util`; inventory in the metadata).
    #[arg(long)]
    pub dataset: PathBuf,
    /// `cloudsim-planetlab` or a scenario TOML file.
    #[arg(long, default_value = "cloudsim-planetlab")]
    pub scenario: String,
    /// Policies to run, comma-separated.
    #[arg(long, default_value = DEFAULT_POLICIES, value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Replicate the dataset's VMs and the scenario's hosts this many times.
    #[arg(long, default_value_t = 1)]
    pub scale: usize,
}

/// Runs `keel-agent replay`.
///
/// # Errors
/// Unreadable dataset or scenario, unknown policy, or a failed run.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let wl = Workload::from_parquet(&args.dataset)?.replicate(args.scale);
    let sc = Scenario::resolve(&args.scenario, args.scale)?;
    let mut results = Vec::new();
    for name in &args.policies {
        let mut p = make_policy(name)?;
        let t0 = Instant::now();
        let out = Engine::new(&sc, &wl)
            .run(p.as_mut(), false, &mut |_, _| {})
            .with_context(|| format!("policy {name}"))?;
        let r = PolicyResult::from_run(&out, p.negotiation(), t0.elapsed().as_secs_f64());
        results.push((name.clone(), r));
    }
    for (n, r) in &results {
        println!(
            "{n:24} {:10.2} {:8} {:8.4} {:8.5} {:10.3e} {:8.3}",
            r.energy_kwh,
            r.migrations,
            r.slatah * 100.0,
            r.pdm * 100.0,
            r.slav,
            r.wall_s
        );
    }
    Ok(())
}

fn make_policy(name: &str) -> anyhow::Result<Box<dyn Policy>> {
    if name == "no-migration" {
        return Ok(Box::new(NoMigration));
    }
    if let Some(h) = Heuristic::parse(name) {
        return Ok(Box::new(h));
    }
    bail!("unknown policy {name:?}")
}
