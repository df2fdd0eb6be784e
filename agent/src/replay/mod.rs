//! `keel-agent replay`: the agents on recorded traces under a virtual clock, next to CloudSim's
//! baselines, with CloudSim's metrics and Keel's own.
//!
//! One command runs every chosen policy on the same data centre and workload (see
//! [`crate::sim`]) and prints a table; `--json`, `--csv`, `--report DIR` (HTML with plots) and
//! `--export-hosts FILE` (host-level series for the trainer) write the same results elsewhere.
//! Over time: `--steps-csv FILE` writes every policy's per-interval series (also `steps` in the
//! JSON), and `--migrations-csv FILE` logs every migration, thrash marked, written policy by
//! policy as each run ends so that only one run's log is ever held.
//!
//! A small scenario: `--hosts N` keeps the scenario's first N hosts, `--steps S` runs the first S
//! interval updates, `--max-vms K` keeps K evenly spaced VMs; `--export-placement FILE` writes
//! it, with the Keel policies' initial placement, for `keel-agent cluster --placement FILE`
//! ([`placement`]).

pub mod output;
pub mod placement;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_core::model::ModelFile;

use crate::host::{ModelConsult, VmChoice};
use crate::sim::engine::HostSeries;
use crate::sim::engine::PlacementCache;
use crate::sim::heuristics::{Heuristic, NoMigration};
use crate::sim::keel::{KeelPolicy, Transport, Variant};
use crate::sim::{Engine, Policy, PolicyResult, Scenario, Workload};

/// The baselines run by default.
pub const BASELINES: [&str; 6] = [
    "no-migration",
    "thr-mmt-0.8",
    "iqr-mmt-1.5",
    "mad-mmt-2.5",
    "lr-mmt-1.2",
    "lr-mc-1.2",
];

/// Arguments of `keel-agent replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Canonical Parquet dataset (VM rows with `cpu_util`; inventory in the metadata).
    #[arg(long)]
    pub dataset: PathBuf,
    /// `cloudsim-planetlab` or a scenario TOML file (hosts, power models, interval).
    #[arg(long, default_value = "cloudsim-planetlab")]
    pub scenario: String,
    /// Stability model (JSON written by `keel-trainer train`); adds the `keel-*+model` policies.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Policies to run, comma-separated. Baselines: no-migration, thr-mmt-0.8, iqr-mmt-1.5,
    /// mad-mmt-2.5, lr-mmt-1.2, lr-mc-1.2 (any parameter). Keel: keel-power-saving, keel-agility,
    /// keel-auction, keel-peer-group, each also with `+model`. Default: all baselines and all
    /// Keel variants (with and without the model when one is given).
    #[arg(long, value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Read the interaction models from this folder (`<variant>.lcc`) instead of the built-in
    /// copies of agent/protocols.
    #[arg(long)]
    pub protocols: Option<PathBuf>,
    /// Seed of the simulated transport.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// One-way latency of the simulated transport, milliseconds.
    #[arg(long, default_value_t = 1.0)]
    pub latency_ms: f64,
    /// Probability that the simulated transport loses a message (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Replicate the dataset's VMs and the scenario's hosts this many times (copy j of VM v has
    /// v's type and trace; `cloudsim-planetlab` gets 800 × scale hosts).
    #[arg(long, default_value_t = 1)]
    pub scale: usize,
    /// Use only N of the dataset's VMs, evenly spaced in its order (quick runs; before --scale).
    #[arg(long)]
    pub max_vms: Option<usize>,
    /// Use only the scenario's first N hosts (a small scenario; after --scale).
    #[arg(long)]
    pub hosts: Option<usize>,
    /// Run only the first S interval updates (a small scenario; S × the scenario's interval).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Write the small scenario (hosts, VMs, the initial placement of `--export-policy` or else
    /// the first Keel policy run, steps, the Keel agents' thresholds) as JSON for
    /// `keel-agent cluster --placement FILE`.
    #[arg(long)]
    pub export_placement: Option<PathBuf>,
    /// Minimum stay of a VM on a host, seconds, for every Keel policy (default: the stability
    /// model's window, at least an hour, for `+model` policies; none for the others).
    #[arg(long)]
    pub min_stay_s: Option<f64>,
    /// How a Keel host chooses the VM to offer: `size` (least RAM first when overloaded) or
    /// `calm` (a VM that removes the excess, the calmest and most correlated with the host's
    /// load first; see `VmChoice`). Default: `calm` for `+model` policies, `size` for the others.
    #[arg(long, value_enum)]
    pub vm_choice: Option<VmChoice>,
    /// Which decisions a Keel host checks with the stability model (`+model` policies):
    /// `optional` (default: only the optional moves, i.e. taking a VM from a host emptying itself,
    /// and shedding a VM from a host above its threshold but below capacity, which waits while
    /// the model expects the host to stay below capacity; no minimum stay by default), `every`
    /// offer it is asked to take, or only `consolidation` offers (an overloaded host's VM goes to
    /// the best host that fits, as without a model).
    #[arg(long, value_enum, default_value_t = ModelConsult::default())]
    pub model_consult: ModelConsult,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the results as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Also write an HTML report with plots into this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write host-level series (canonical schema, `vm_id` null) of one policy to this Parquet file.
    #[arg(long)]
    pub export_hosts: Option<PathBuf>,
    /// Policy whose host series `--export-hosts` writes, and whose initial placement
    /// `--export-placement` writes (default: the first Keel policy run, or the first policy).
    #[arg(long)]
    pub export_policy: Option<String>,
    /// Write every policy's per-interval series to this CSV (policy, step, t (s from the start),
    /// active_hosts, migrations_step, migrations (so far), energy_kwh (so far),
    /// overloaded_hosts, util_spread).
    #[arg(long)]
    pub steps_csv: Option<PathBuf>,
    /// Log every migration to this CSV (policy, t (s from the start), vm, from_host, to_host,
    /// thrash); the thrash rows of a policy are its `thrash_migrations`.
    #[arg(long)]
    pub migrations_csv: Option<PathBuf>,
    /// Hide the progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// One policy's results with its name.
#[derive(Debug, Clone)]
pub struct Named {
    /// Policy name.
    pub name: String,
    /// Results.
    pub result: PolicyResult,
}

/// Runs `keel-agent replay`.
///
/// # Errors
/// Unreadable dataset, scenario or model, unknown policy, or a failed run.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let (results, series, sc, wl) = replay(&args)?;
    let meta = output::Meta {
        dataset: args.dataset.display().to_string(),
        scenario: sc.name.clone(),
        hosts: sc.hosts.len(),
        vms: wl.n_vms(),
        seed: args.seed,
        model: args.model.as_ref().map(|p| p.display().to_string()),
        wall_s: t0.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", output::json(&meta, &results)?);
    } else {
        print!("{}", output::table(&meta, &results));
    }
    if let Some(p) = &args.csv {
        output::write_atomic(p, output::csv(&results).as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.steps_csv {
        output::write_atomic(p, output::steps_csv(&results).as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(dir) = &args.report {
        output::report(dir, &meta, &results)
            .with_context(|| format!("writing the report in {}", dir.display()))?;
    }
    if let (Some(p), Some((name, s))) = (&args.export_hosts, series) {
        output::export_hosts(p, &sc, &wl, &name, &s)
            .with_context(|| format!("writing host series to {}", p.display()))?;
    }
    Ok(())
}

/// The policies `--policies` names, or the default list.
pub fn policy_names(args: &ReplayArgs) -> Vec<String> {
    if !args.policies.is_empty() {
        return args.policies.clone();
    }
    let mut v: Vec<String> = BASELINES.iter().map(|s| (*s).to_string()).collect();
    for var in Variant::ALL {
        v.push(format!("keel-{}", var.name()));
        if args.model.is_some() {
            v.push(format!("keel-{}+model", var.name()));
        }
    }
    v
}

/// Builds a policy by name.
///
/// # Errors
/// Unknown names and Keel policies that cannot start (see [`KeelPolicy::from_name`]).
pub fn make_policy(
    name: &str,
    model: Option<&Arc<ModelFile>>,
    args: &ReplayArgs,
) -> anyhow::Result<Box<dyn Policy>> {
    if name == "no-migration" || name == "dvfs" {
        return Ok(Box::new(NoMigration));
    }
    if let Some(h) = Heuristic::parse(name) {
        return Ok(Box::new(h));
    }
    if name.starts_with("keel-") {
        let KeelArgs(_, t) = keel_args(name, args)?;
        return Ok(Box::new(KeelPolicy::from_name(
            name,
            model.cloned(),
            args.protocols.as_deref(),
            t,
        )?));
    }
    bail!(
        "unknown policy {name:?}: use no-migration, thr|iqr|mad|lr-mmt|mc-<param>, or keel-<variant>[+model]"
    )
}

/// A Keel policy's variant and transport settings.
struct KeelArgs(Variant, Transport);

fn keel_args(name: &str, args: &ReplayArgs) -> anyhow::Result<KeelArgs> {
    let stem = name.trim_start_matches("keel-").trim_end_matches("+model");
    let Some(v) = Variant::from_stem(stem) else {
        bail!("unknown Keel variant {stem:?} (known: power-saving, agility, auction, peer-group)");
    };
    let t = Transport {
        latency_s: args.latency_ms / 1000.0,
        loss: args.loss,
        seed: args.seed,
        min_stay_s: args.min_stay_s,
        vm_choice: args.vm_choice,
        model_consult: args.model_consult,
        ..Transport::default()
    };
    Ok(KeelArgs(v, t))
}

type Replayed = (Vec<Named>, Option<(String, HostSeries)>, Scenario, Workload);

/// Runs every chosen policy; returns the results, the exported policy's host series if asked,
/// and the scenario and workload used.
///
/// # Errors
/// As [`run`].
pub fn replay(args: &ReplayArgs) -> anyhow::Result<Replayed> {
    if !(0.0..1.0).contains(&args.loss) {
        bail!("--loss must be in 0..1, got {}", args.loss);
    }
    if !(args.latency_ms.is_finite() && args.latency_ms >= 0.0) {
        bail!("--latency-ms must be >= 0");
    }
    if let Some(m) = args.min_stay_s {
        if !(m.is_finite() && m >= 0.0) {
            bail!("--min-stay-s: must be a number of seconds, 0 or more, got {m}");
        }
    }
    let mut wl = Workload::from_parquet(&args.dataset)?;
    if let Some(n) = args.max_vms {
        wl = wl.take(n);
    }
    let wl = wl.replicate(args.scale);
    let mut sc = Scenario::resolve(&args.scenario, args.scale)?;
    if let Some(n) = args.hosts {
        if n < 2 || n > sc.hosts.len() {
            bail!(
                "--hosts {n}: the scenario has {} hosts; use 2..={}",
                sc.hosts.len(),
                sc.hosts.len()
            );
        }
        sc.hosts.truncate(n);
    }
    if let Some(s) = args.steps {
        let whole = sc.duration_s.unwrap_or_else(|| wl.duration_s());
        // Updates fall at offset + k·interval, k = 1.. while below the end; ending 1 s after
        // update S leaves its migrations (each takes seconds) unfinished, so no energy is counted
        // after it.
        let end = sc.offset_s + s as f64 * sc.interval_s + 1.0;
        if s == 0 || end > whole {
            bail!(
                "--steps {s}: must be 1..={} for this scenario and dataset",
                ((whole - sc.offset_s) / sc.interval_s).ceil() as usize - 1
            );
        }
        sc.duration_s = Some(end);
    }
    let model = match &args.model {
        Some(p) => {
            Some(Arc::new(ModelFile::load(p).with_context(|| {
                format!("loading the model {}", p.display())
            })?))
        }
        None => None,
    };
    let names = policy_names(args);
    // Build every policy first so that a bad name fails before any run.
    let mut policies = Vec::new();
    for n in &names {
        policies.push((n.clone(), make_policy(n, model.as_ref(), args)?));
    }
    if let Some(p) = &args.export_placement {
        let name = match &args.export_policy {
            Some(n) => n,
            None => names
                .iter()
                .find(|n| n.starts_with("keel-"))
                .unwrap_or(&names[0]),
        };
        if !names.contains(name) {
            bail!("--export-policy {name:?} is not among the policies run");
        }
        // The thresholds the Keel agents run with (every variant has the same ones).
        let KeelArgs(variant, t) =
            keel_args(name, args).or_else(|_| keel_args("keel-power-saving", args))?;
        let c = crate::sim::keel::core_config(variant, &t);
        let mut policy = make_policy(name, model.as_ref(), args)?;
        let steps = args.steps.unwrap_or_else(|| {
            let end = sc.duration_s.unwrap_or_else(|| wl.duration_s());
            ((end - sc.offset_s) / sc.interval_s).ceil().max(1.0) as usize - 1
        });
        placement::Placement::build(
            &sc,
            &wl,
            policy.as_mut(),
            steps,
            (c.high, c.low, c.accept_below),
            &args.dataset,
        )?
        .save(p)?;
    }
    let export = args.export_hosts.as_ref().map(|_| {
        args.export_policy.clone().unwrap_or_else(|| {
            names
                .iter()
                .find(|n| n.starts_with("keel-"))
                .unwrap_or(&names[0])
                .clone()
        })
    });
    if let Some(e) = &export {
        if !names.contains(e) {
            bail!("--export-policy {e:?} is not among the policies run");
        }
    }
    let steps = ((sc.duration_s.unwrap_or_else(|| wl.duration_s()) - sc.offset_s) / sc.interval_s)
        .ceil()
        .max(1.0) as u64;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(
            Some(steps * policies.len() as u64),
            ProgressDrawTarget::stderr(),
        )
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} steps {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut log = match &args.migrations_csv {
        Some(p) => Some(
            output::MigrationCsv::create(p).with_context(|| format!("creating {}", p.display()))?,
        ),
        None => None,
    };
    let mut results = Vec::new();
    let mut series = None;
    let mut placements = PlacementCache::default();
    for (i, (name, mut p)) in policies.into_iter().enumerate() {
        bar.set_prefix(name.clone());
        let t0 = Instant::now();
        let record = export.as_deref() == Some(name.as_str());
        let base = i as u64 * steps;
        let mut engine = Engine::new(&sc, &wl);
        if log.is_some() {
            engine.migration_log = Some(Vec::new());
        }
        let mut out = engine
            .run_cached(
                p.as_mut(),
                record,
                &mut |k, _| bar.set_position(base + k as u64),
                &mut placements,
            )
            .with_context(|| format!("policy {name}"))?;
        let result = PolicyResult::from_run(&out, p.negotiation(), t0.elapsed().as_secs_f64());
        if let (Some(w), Some(l)) = (log.as_mut(), out.migration_log.take()) {
            w.append(&name, &l, &sc, &wl)
                .context("writing the migration log")?;
        }
        if record {
            series = out.host_series.map(|s| (name.clone(), s));
        }
        results.push(Named { name, result });
    }
    bar.finish_and_clear();
    if let Some(w) = log {
        w.finish().context("writing the migration log")?;
    }
    Ok((results, series, sc, wl))
}
