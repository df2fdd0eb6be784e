//! The networked agent: `keel-agent run`, `publish` and `cluster`.
//!
//! - `run`: one agent on this host (config file < `KEEL_*` env < flags; see [`config`]), with the
//!   status endpoint, until SIGINT/SIGTERM, then a graceful shutdown.
//! - `publish`: signs a policy bundle folder and hands it to peers, who verify and spread it.
//! - `cluster`: N real agents on 127.0.0.1 replaying a dataset ([`cluster`](mod@cluster)).

pub mod cluster;
pub mod config;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::negotiation::rank::{ModelRanker, NoModel, Ranker};
use crate::net::{ClusterKey, FaultPlan, NetConfig, Transport};
use crate::node::executor::{CommandExec, DryRun, Executor, Libvirt};
use crate::node::load::libvirt::LibvirtLoad;
use crate::node::load::{CollectorDir, LoadSource, Procfs};
use crate::node::policy::{parse_signing_key, Bundle};
use crate::node::{self, Body, NodeConfig};

pub use self::cluster::ClusterArgs;
pub use self::config::RunArgs;
use self::config::{ExecutorKind, FileConfig, Settings};

/// How an agent running the model in `path` prices VMs and orders candidates: `agility` (by file
/// stem) spreads load, every other model packs.
pub fn rank_for(path: Option<&std::path::Path>) -> crate::host::Rank {
    let stem = path.and_then(|p| p.file_stem()).and_then(|s| s.to_str());
    match stem.and_then(crate::sim::keel::Variant::from_stem) {
        Some(v) => v.rank(),
        None => crate::host::Rank::Pack,
    }
}

/// Whether the model in `path` is one the replay measures (`agent/protocols/<variant>.lcc`, by
/// file stem): its agents then order candidates as the replay does
/// ([`NodeConfig::replay_order`]).
pub fn replay_order_for(path: Option<&std::path::Path>) -> bool {
    let stem = path.and_then(|p| p.file_stem()).and_then(|s| s.to_str());
    stem.and_then(crate::sim::keel::Variant::from_stem)
        .is_some()
}

/// Arguments of `keel-agent publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Folder with the bundle's files (`*.lcc`, `model.json`, `*.toml`).
    #[arg(required_unless_present = "gen_key")]
    pub bundle_dir: Option<PathBuf>,
    /// Bundle version (must exceed the peers' current one; default: Unix time in seconds).
    #[arg(long = "bundle-version")]
    pub bundle_version: Option<u64>,
    /// ed25519 signing key file (32 bytes, hex).
    #[arg(long, env = "KEEL_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Peers to hand the bundle to (comma-separated); they spread it to the rest.
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<SocketAddr>,
    /// Cluster key, hex.
    #[arg(long, env = "KEEL_CLUSTER_KEY", hide_env_values = true)]
    pub cluster_key: Option<config::Secret>,
    /// Cluster key file, hex.
    #[arg(long, env = "KEEL_CLUSTER_KEY_FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Write a new signing key to this file and print its public key, then exit.
    #[arg(long, value_name = "KEY_FILE")]
    pub gen_key: Option<PathBuf>,
    /// Write the signed bundle as JSON here instead of (or as well as) sending it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The executor a settings value names.
///
/// # Errors
/// A `command` executor without a program.
pub fn make_executor(
    kind: ExecutorKind,
    f: &config::ExecutorFile,
) -> anyhow::Result<Arc<dyn Executor>> {
    Ok(match kind {
        ExecutorKind::DryRun => Arc::new(DryRun::default()),
        ExecutorKind::Command => Arc::new(CommandExec {
            program: f
                .program
                .clone()
                .context("executor.program: required for the command executor")?,
            args: f.args.clone(),
        }),
        ExecutorKind::Libvirt => Arc::new(Libvirt {
            virsh: f.virsh.clone().unwrap_or_else(|| "virsh".into()),
            local_uri: f.local_uri.clone(),
            migrate_uri: f.migrate_uri.clone(),
            listen_address: f.listen_address.clone(),
        }),
    })
}

/// Checks every `*.lcc` in the interaction-models folder compiles (keel-lcc); returns how many there are.
///
/// # Errors
/// An unreadable folder or file, or a model that does not parse, naming the file.
pub fn check_models(dir: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if p.extension().is_some_and(|x| x == "lcc") {
            let src =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            if let Err(errs) = keel_lcc::Program::compile(&src) {
                let map = keel_lcc::SourceMap::new(p.display().to_string(), src.as_str());
                let first = errs
                    .first()
                    .map(|e| keel_lcc::diag::short(&map, e))
                    .unwrap_or_default();
                bail!(
                    "{} error(s) in an interaction model; first: {first}",
                    errs.len()
                );
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Runs `keel-agent run`.
///
/// # Errors
/// Any failure, with context.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let file = match (&args.config, args.no_config) {
        (Some(p), false) => FileConfig::load(p)?,
        _ => FileConfig::default(),
    };
    let s = Settings::resolve(args, file)?;
    debug!(settings = ?s, "Settings resolved.");
    if let Some(d) = &s.models_dir {
        match check_models(d) {
            Ok(n) => info!(dir = %d.display(), models = n, "Interaction models found."),
            Err(e) => warn!(error = %format!("{e:#}"), "Interaction models not usable."),
        }
    }
    let (interaction_model, model_name) = match &s.interaction_model {
        Some(p) => {
            let src = std::fs::read_to_string(p)
                .with_context(|| format!("reading interaction model {}", p.display()))?;
            let name = p.display().to_string();
            crate::host::compile_model(&name, &src).map_err(|e| anyhow::anyhow!("{e}"))?;
            info!(model = %name, "Interaction model loaded.");
            (src, name)
        }
        None => {
            info!("Interaction model: the built-in seed model.");
            (
                crate::negotiation::lcc::SEED_MODEL.to_string(),
                "protocols/seed.lcc".to_string(),
            )
        }
    };
    let exec = make_executor(s.executor.0, &s.executor.1)?;
    let load: Box<dyn LoadSource> = match (&s.load_libvirt_uri, &s.collector_dir) {
        (Some(uri), _) => {
            let virsh = s.executor.1.virsh.clone().unwrap_or_else(|| "virsh".into());
            info!(%uri, "Load: the running domains of this libvirt connection.");
            Box::new(LibvirtLoad::start(
                virsh,
                uri.clone(),
                s.eval_interval.min(Duration::from_secs(2)),
                Duration::from_secs(10),
            ))
        }
        (None, Some(d)) => Box::new(CollectorDir::new(d.clone(), s.id.clone(), s.capacity)),
        (None, None) => Box::new(Procfs::new(s.capacity)),
    };
    let model = s.model.clone();
    let ranker: Arc<ModelRanker> = Arc::new(match &model {
        Some(p) => ModelRanker::from_path(p),
        None => ModelRanker::empty(),
    });
    let mut nc = NodeConfig::local(&s.id, s.key.clone(), s.capacity);
    nc.listen = s.listen;
    nc.seeds = s.seeds.clone();
    nc.membership = s.membership;
    nc.directory_server = s.directory_server;
    nc.high = s.high;
    nc.low = s.low;
    nc.accept_below = s.accept_below;
    nc.roles = s.roles.clone();
    nc.timeouts = s.timeouts;
    nc.eval_interval = s.eval_interval;
    nc.gossip_interval = s.gossip_interval;
    nc.dead_after = s.gossip_interval * 10;
    nc.cooldown = s.eval_interval * 6;
    // History points 5 min apart (the step of the traces models are trained on) over the
    // model's window.
    let window_s = ranker.model().map_or(3600.0, |m| m.window_s());
    let (every, step, len) = node::history_plan(s.eval_interval.as_secs_f64(), 300.0, window_s);
    nc.history_every = every;
    nc.history_step_s = step;
    nc.history_len = len;
    nc.libvirt_uri = s.libvirt_uri.clone();
    nc.policy_key = s.policy_key;
    nc.policy_dir = s.policy_dir.clone();
    nc.rank = rank_for(s.interaction_model.as_deref());
    nc.replay_order = replay_order_for(s.interaction_model.as_deref());
    nc.interaction_model = Some(interaction_model);
    nc.interaction_model_name = model_name;
    nc.min_stay_s = s.min_stay_s;
    nc.model_consult = s.model_consult;
    let rt = runtime()?;
    rt.block_on(async move {
        let handle = node::spawn(nc, load, exec, Arc::clone(&ranker) as Arc<dyn Ranker>)
            .await
            .with_context(|| format!("listening on {}", s.listen))?;
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let status_addr =
            node::status::serve(s.status_addr, handle.status_watch(), &tracker, stop.clone())
                .await
                .with_context(|| format!("status endpoint on {}", s.status_addr))?;
        info!(id = %handle.id, peers = %handle.addr, status = %status_addr, "Agent running.");
        // Reload the stability model when its file changes.
        let r2 = Arc::clone(&ranker);
        let stop2 = stop.clone();
        tracker.spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = stop2.cancelled() => return,
                    _ = t.tick() => { r2.reload_if_changed(); }
                }
            }
        });
        wait_for_signal().await;
        info!("Signal received; shutting down.");
        handle.shutdown().await;
        stop.cancel();
        tracker.close();
        tracker.wait().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `keel-agent publish`.
///
/// # Errors
/// Any failure, with context.
pub fn publish(args: PublishArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.gen_key {
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        write_secret(path, &hex::encode(seed))?;
        println!("{}", hex::encode(key.verifying_key().to_bytes()));
        return Ok(());
    }
    let dir = args
        .bundle_dir
        .as_deref()
        .context("BUNDLE_DIR is required")?;
    let key_path = args
        .signing_key_file
        .as_deref()
        .context("--signing-key-file (or KEEL_SIGNING_KEY_FILE) is required")?;
    let key_text = std::fs::read_to_string(key_path)
        .with_context(|| format!("reading signing key {}", key_path.display()))?;
    let key = parse_signing_key(&key_text).with_context(|| format!("{}", key_path.display()))?;
    let files = Bundle::read_dir(dir)?;
    if files.is_empty() {
        bail!(
            "{}: no .lcc, .json or .toml files to publish",
            dir.display()
        );
    }
    if let Some(m) = files.get("model.json") {
        keel_core::model::ModelFile::from_json(m, &dir.join("model.json"))
            .with_context(|| format!("checking {}", dir.join("model.json").display()))?;
    }
    let version = args
        .bundle_version
        .unwrap_or_else(|| crate::net::now_ms() / 1000);
    let bundle = Bundle::sign(&key, version, files)?;
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&bundle).context("encoding the bundle")?;
        std::fs::write(out, json).with_context(|| format!("writing {}", out.display()))?;
    }
    if args.to.is_empty() {
        if args.out.is_none() {
            bail!("nothing to do: give --to PEER[,PEER] and/or --out FILE");
        }
        return Ok(());
    }
    let ck = match (&args.cluster_key, &args.cluster_key_file) {
        (Some(k), _) => k.expose().to_string(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("reading cluster key file {}", p.display()))?,
        _ => bail!("--cluster-key-file (or KEEL_CLUSTER_KEY_FILE) is required to send"),
    };
    let ck = ClusterKey::new(&hex::decode(ck.trim()).context("cluster key: not hex")?)
        .context("cluster key")?;
    let sent = runtime()?.block_on(send_bundle(ck, bundle.clone(), &args.to))?;
    println!(
        "published bundle version {} ({} files) to {sent} of {} peers",
        bundle.version,
        bundle.files.len(),
        args.to.len()
    );
    if sent == 0 {
        bail!("no peer could be reached");
    }
    Ok(())
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// Sends a bundle to each peer; returns how many frames were written.
///
/// # Errors
/// Binding a local socket.
pub async fn send_bundle(
    key: ClusterKey,
    bundle: Bundle,
    to: &[SocketAddr],
) -> anyhow::Result<u64> {
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let (t, _rx) = Transport::<Body>::bind(
        format!("publisher-{}", std::process::id()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        key,
        NetConfig::default(),
        FaultPlan::default(),
        tracker.clone(),
        stop.clone(),
    )
    .await
    .context("binding a local socket")?;
    let body = Body::Bundle {
        bundle: Box::new(bundle),
    };
    for p in to {
        t.send(*p, &body).context("encoding the bundle")?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = t.stats().snapshot();
        if s.frames_out + s.send_failures >= to.len() as u64
            || tokio::time::Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = t.stats().snapshot().frames_out;
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(sent)
}

/// Runs `keel-agent cluster`.
///
/// # Errors
/// Any failure, with context.
pub fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let report = runtime()?.block_on(cluster::run(&args))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        println!("{report}");
    }
    if report.vm_conflicts > 0 {
        bail!("{} VM conflicts", report.vm_conflicts);
    }
    Ok(())
}

/// A ranker for when no model file is configured.
pub fn no_model() -> Arc<dyn Ranker> {
    Arc::new(NoModel)
}
