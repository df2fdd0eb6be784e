//! `keel-agent run` configuration: file < environment (`KEEL_*`) < flags.
//!
//! [`FileConfig`] is the TOML file (every field optional, unknown fields refused); [`RunArgs`]
//! are the flags, each also read from its `KEEL_*` variable by clap. [`Settings::resolve`] takes
//! `flag.or(file).unwrap_or(default)`, checks the result, and is the only view the rest of the
//! program sees.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::host::ModelConsult;
use crate::negotiation::Timeouts;
use crate::net::ClusterKey;
use crate::node::membership::Mode;
use crate::node::Role;

/// A secret string whose `Debug` and `Display` are redacted.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// Which executor moves VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    /// `virsh migrate --live`.
    Libvirt,
    /// An operator's script.
    Command,
    /// Log only.
    DryRun,
}

/// The `[executor]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorFile {
    /// `libvirt`, `command` or `dry-run`.
    pub kind: Option<ExecutorKind>,
    /// `command`: the program.
    pub program: Option<String>,
    /// `command`: its arguments (`{vm}`, `{target}`, `{target_uri}`, `{source}`, `{neg}`).
    #[serde(default)]
    pub args: Vec<String>,
    /// `libvirt`: the virsh binary.
    pub virsh: Option<String>,
    /// `libvirt`: local connection URI.
    pub local_uri: Option<String>,
    /// `libvirt`: `virsh migrate --migrateuri` (placeholders `{target_host}`, `{target}`, `{vm}`).
    pub migrate_uri: Option<String>,
    /// `libvirt`: `virsh migrate --listen-address` (same placeholders).
    pub listen_address: Option<String>,
}

/// The `[timeouts]` table, milliseconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each is the `Timeouts` field of the same name, in ms
pub struct TimeoutsFile {
    pub offer_ms: Option<u64>,
    pub commit_ms: Option<u64>,
    pub reservation_ms: Option<u64>,
    pub execute_ms: Option<u64>,
    pub done_ms: Option<u64>,
    pub retry_ms: Option<u64>,
}

/// The configuration file (`agent.toml`). Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Agent id (default: the host name).
    pub id: Option<String>,
    /// Listen address for peers.
    pub listen: Option<SocketAddr>,
    /// Seed peers (SWIM), or the directories (directory mode).
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// How peers are found: `swim` (default) or `directory`.
    pub membership: Option<Mode>,
    /// Serve a directory for the fleet (implies `membership = "directory"`).
    #[serde(default)]
    pub directory_server: bool,
    /// Cluster key, hex (prefer `cluster_key_file`).
    pub cluster_key: Option<Secret>,
    /// File holding the cluster key, hex.
    pub cluster_key_file: Option<PathBuf>,
    /// Host CPU capacity in the load source's units (MHz for the collector).
    pub capacity: Option<f64>,
    /// Overloaded above this utilisation.
    pub high: Option<f64>,
    /// Underloaded below this utilisation.
    pub low: Option<f64>,
    /// A target accepts VMs up to this utilisation.
    pub accept_below: Option<f64>,
    /// Roles this agent may take.
    pub roles: Option<Vec<Role>>,
    /// Collector output folder; procfs when absent.
    pub collector_dir: Option<PathBuf>,
    /// Load from this libvirt connection's running domains instead (CPU demand in thousandths
    /// of a core: set `capacity` to cores × 1000), e.g. `qemu:///system`.
    pub load_libvirt_uri: Option<String>,
    /// Stability model file (reloaded when it changes).
    pub model: Option<PathBuf>,
    /// Folder of interaction models (`*.lcc`).
    pub models_dir: Option<PathBuf>,
    /// The interaction model that chooses roles and targets (a file name in `models_dir`, or a
    /// path); default `migration.lcc` in `models_dir` if present, else the built-in seed model.
    pub interaction_model: Option<PathBuf>,
    /// Where adopted policy bundles are installed.
    pub policy_dir: Option<PathBuf>,
    /// Trusted policy signer's ed25519 public key, hex.
    pub policy_public_key: Option<String>,
    /// Status endpoint (loopback).
    pub status_addr: Option<SocketAddr>,
    /// This host's libvirt URI, advertised to peers.
    pub libvirt_uri: Option<String>,
    /// Load evaluation period, ms.
    pub eval_interval_ms: Option<u64>,
    /// Gossip period, ms.
    pub gossip_interval_ms: Option<u64>,
    /// Minimum stay of a VM that migrated here, seconds (default: the stability model's window,
    /// at least an hour, while one is consulted on `every` offer or on `consolidation`; none
    /// otherwise).
    pub min_stay_s: Option<f64>,
    /// Which decisions are checked with the stability model: `optional` (default), `every` or
    /// `consolidation` (see `ModelConsult`).
    pub model_consult: Option<ModelConsult>,
    /// The executor.
    #[serde(default)]
    pub executor: ExecutorFile,
    /// Negotiation deadlines.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
}

impl FileConfig {
    /// Reads and parses a file.
    ///
    /// # Errors
    /// I/O or TOML errors, naming the file (TOML errors name the line and field).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }
}

/// Arguments of `keel-agent run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(long, env = "KEEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Ignore the configuration file.
    #[arg(long)]
    pub no_config: bool,
    /// Agent id.
    #[arg(long, env = "KEEL_ID")]
    pub id: Option<String>,
    /// Listen address for peers.
    #[arg(long, env = "KEEL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Seed peers (comma-separated); replaces the file's list.
    #[arg(long, env = "KEEL_SEEDS", value_delimiter = ',')]
    pub seeds: Option<Vec<SocketAddr>>,
    /// Cluster key, hex (prefer --cluster-key-file).
    #[arg(long, env = "KEEL_CLUSTER_KEY", hide_env_values = true)]
    pub cluster_key: Option<Secret>,
    /// File holding the cluster key, hex.
    #[arg(long, env = "KEEL_CLUSTER_KEY_FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Host CPU capacity.
    #[arg(long, env = "KEEL_CAPACITY")]
    pub capacity: Option<f64>,
    /// Collector output folder.
    #[arg(long, env = "KEEL_COLLECTOR_DIR")]
    pub collector_dir: Option<PathBuf>,
    /// Stability model file.
    #[arg(long, env = "KEEL_MODEL")]
    pub model: Option<PathBuf>,
    /// Folder of interaction models.
    #[arg(long, env = "KEEL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Status endpoint address (loopback).
    #[arg(long, env = "KEEL_STATUS_ADDR")]
    pub status_addr: Option<SocketAddr>,
    /// Executor.
    #[arg(long, env = "KEEL_EXECUTOR", value_enum)]
    pub executor: Option<ExecutorKind>,
    /// Minimum stay of a VM that migrated here, seconds: it is not offered again before, while
    /// another VM can go (default: the stability model's window, at least 3600, while one is
    /// loaded; 0 otherwise).
    #[arg(long, env = "KEEL_MIN_STAY_S")]
    pub min_stay_s: Option<f64>,
    /// Which decisions this host checks with the stability model: the `optional` moves (default:
    /// offers from hosts emptying themselves, and shedding a VM below capacity), `every` offer,
    /// or only `consolidation` offers.
    #[arg(long, env = "KEEL_MODEL_CONSULT", value_enum)]
    pub model_consult: Option<ModelConsult>,
}

/// Checked settings of `keel-agent run`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Agent id.
    pub id: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// Seeds (SWIM) or directories.
    pub seeds: Vec<SocketAddr>,
    /// How peers are found.
    pub membership: Mode,
    /// Serve a directory.
    pub directory_server: bool,
    /// Cluster key.
    pub key: ClusterKey,
    /// CPU capacity.
    pub capacity: f64,
    /// Thresholds.
    pub high: f64,
    /// Thresholds.
    pub low: f64,
    /// Thresholds.
    pub accept_below: f64,
    /// Roles.
    pub roles: Vec<Role>,
    /// Collector folder.
    pub collector_dir: Option<PathBuf>,
    /// Libvirt connection the load is read from.
    pub load_libvirt_uri: Option<String>,
    /// Model file.
    pub model: Option<PathBuf>,
    /// Interaction models folder.
    pub models_dir: Option<PathBuf>,
    /// The interaction model file, if one is configured or found.
    pub interaction_model: Option<PathBuf>,
    /// Policy folder.
    pub policy_dir: Option<PathBuf>,
    /// Trusted policy key.
    pub policy_key: Option<ed25519_dalek::VerifyingKey>,
    /// Status address.
    pub status_addr: SocketAddr,
    /// Libvirt URI.
    pub libvirt_uri: Option<String>,
    /// Executor kind and its table.
    pub executor: (ExecutorKind, ExecutorFile),
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Evaluation period.
    pub eval_interval: Duration,
    /// Gossip period.
    pub gossip_interval: Duration,
    /// Minimum stay, seconds (`None`: `default_min_stay_s`).
    pub min_stay_s: Option<f64>,
    /// Which decisions are checked with the stability model.
    pub model_consult: ModelConsult,
}

/// Default peer port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7070";
/// Default status address.
pub const DEFAULT_STATUS: &str = "127.0.0.1:7071";

fn parse_key(hexed: &str, what: &str) -> anyhow::Result<ClusterKey> {
    let bytes = hex::decode(hexed.trim()).with_context(|| format!("{what}: not hex"))?;
    ClusterKey::new(&bytes).with_context(|| what.to_string())
}

impl Settings {
    /// Merges flags over the file over defaults, and checks.
    ///
    /// # Errors
    /// A missing or invalid value, naming it.
    pub fn resolve(cli: RunArgs, file: FileConfig) -> anyhow::Result<Self> {
        let id = match cli.id.or(file.id) {
            Some(id) => id,
            None => std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .context("id: not set and /etc/hostname unreadable")?,
        };
        let key = if let Some(k) = cli.cluster_key.or(file.cluster_key) {
            parse_key(k.expose(), "cluster_key")?
        } else if let Some(p) = cli.cluster_key_file.or(file.cluster_key_file) {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("reading cluster key file {}", p.display()))?;
            parse_key(&text, &format!("cluster key file {}", p.display()))?
        } else {
            bail!("cluster_key: set cluster_key_file in the config, KEEL_CLUSTER_KEY_FILE or --cluster-key-file");
        };
        let capacity = cli
            .capacity
            .or(file.capacity)
            .context("capacity: the host's CPU capacity is required")?;
        if !(capacity.is_finite() && capacity > 0.0) {
            bail!("capacity: must be positive, got {capacity}");
        }
        let high = file.high.unwrap_or(0.8);
        let low = file.low.unwrap_or(0.5);
        let accept_below = file.accept_below.unwrap_or(0.75);
        if !(0.0 < low && low < high && high <= 1.5) {
            bail!("thresholds: need 0 < low < high <= 1.5, got low {low}, high {high}");
        }
        if !(low <= accept_below && accept_below <= high) {
            bail!(
                "accept_below: must be between low ({low}) and high ({high}), got {accept_below}"
            );
        }
        let status_addr = match cli.status_addr.or(file.status_addr) {
            Some(a) => a,
            None => DEFAULT_STATUS
                .parse()
                .expect("default status address parses"),
        };
        if !status_addr.ip().is_loopback() {
            bail!("status_addr: must be a loopback address, got {status_addr}");
        }
        let policy_key = file
            .policy_public_key
            .as_deref()
            .map(crate::node::policy::parse_public_key)
            .transpose()
            .context("policy_public_key")?;
        let kind = cli
            .executor
            .or(file.executor.kind)
            .unwrap_or(ExecutorKind::DryRun);
        if kind == ExecutorKind::Command && file.executor.program.is_none() {
            bail!("executor.program: required for the command executor");
        }
        let d = Timeouts::default();
        let ms = |v: Option<u64>, def: Duration| v.map_or(def, Duration::from_millis);
        let t = &file.timeouts;
        let timeouts = Timeouts {
            offer: ms(t.offer_ms, d.offer),
            commit: ms(t.commit_ms, d.commit),
            reservation: ms(t.reservation_ms, d.reservation),
            execute: ms(t.execute_ms, d.execute),
            done: ms(t.done_ms, d.done),
            retry: ms(t.retry_ms, d.retry),
        };
        if timeouts.reservation < timeouts.offer {
            bail!("timeouts.reservation_ms: must be at least offer_ms");
        }
        let collector_dir = cli.collector_dir.or(file.collector_dir);
        if collector_dir.is_some() && file.load_libvirt_uri.is_some() {
            bail!("load_libvirt_uri: set either it or collector_dir, not both");
        }
        let min_stay_s = cli.min_stay_s.or(file.min_stay_s);
        if let Some(m) = min_stay_s {
            if !(m.is_finite() && m >= 0.0) {
                bail!("min_stay_s: must be a number of seconds, 0 or more, got {m}");
            }
        }
        let seeds = cli.seeds.unwrap_or(file.seeds);
        let membership = if file.directory_server {
            Mode::Directory
        } else {
            file.membership.unwrap_or_default()
        };
        if membership == Mode::Directory && !file.directory_server && seeds.is_empty() {
            bail!("membership = \"directory\": seeds must list the directories (agents with directory_server = true)");
        }
        Ok(Self {
            id,
            listen: match cli.listen.or(file.listen) {
                Some(a) => a,
                None => DEFAULT_LISTEN
                    .parse()
                    .expect("default listen address parses"),
            },
            seeds,
            membership,
            directory_server: file.directory_server,
            key,
            capacity,
            high,
            low,
            accept_below,
            roles: file
                .roles
                .unwrap_or_else(|| vec![Role::Overloaded, Role::Underloaded]),
            collector_dir,
            load_libvirt_uri: file.load_libvirt_uri,
            model: cli.model.or(file.model),
            interaction_model: {
                let dir = cli.models_dir.clone().or(file.models_dir.clone());
                match (file.interaction_model, &dir) {
                    (Some(p), Some(d)) if p.is_relative() => Some(d.join(p)),
                    (Some(p), _) => Some(p),
                    (None, Some(d)) => Some(d.join("migration.lcc")).filter(|p| p.exists()),
                    (None, None) => None,
                }
            },
            models_dir: cli.models_dir.or(file.models_dir),
            policy_dir: file.policy_dir,
            policy_key,
            status_addr,
            libvirt_uri: file.libvirt_uri,
            executor: (kind, file.executor),
            timeouts,
            eval_interval: Duration::from_millis(file.eval_interval_ms.unwrap_or(5_000)),
            gossip_interval: Duration::from_millis(file.gossip_interval_ms.unwrap_or(1_000)),
            min_stay_s,
            model_consult: cli.model_consult.or(file.model_consult).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../dist/agent.toml");
        let f: FileConfig = toml::from_str(text).unwrap();
        let cli = RunArgs {
            cluster_key: Some(Secret::new(KEY.into())),
            ..RunArgs::default()
        };
        let s = Settings::resolve(cli, f).unwrap();
        assert_eq!(s.executor.0, ExecutorKind::Libvirt);
    }

    #[test]
    fn directory_mode_settings() {
        let base = format!("id = \"a\"\ncluster_key = \"{KEY}\"\ncapacity = 100.0\n");
        let f: FileConfig = toml::from_str(&format!("{base}directory_server = true\n")).unwrap();
        let s = Settings::resolve(RunArgs::default(), f).unwrap();
        assert_eq!((s.membership, s.directory_server), (Mode::Directory, true));
        let f: FileConfig = toml::from_str(&format!(
            "{base}membership = \"directory\"\nseeds = [\"10.0.0.1:7070\"]\n"
        ))
        .unwrap();
        let s = Settings::resolve(RunArgs::default(), f).unwrap();
        assert_eq!((s.membership, s.directory_server), (Mode::Directory, false));
        let f: FileConfig = toml::from_str(&base).unwrap();
        assert_eq!(
            Settings::resolve(RunArgs::default(), f).unwrap().membership,
            Mode::Swim
        );
    }

    #[test]
    fn flags_override_file_and_unknown_fields_fail() {
        let f: FileConfig = toml::from_str(&format!(
            "id = \"a\"\ncluster_key = \"{KEY}\"\ncapacity = 100.0\nlisten = \"127.0.0.1:1\"\n"
        ))
        .unwrap();
        let cli = RunArgs {
            id: Some("b".into()),
            ..RunArgs::default()
        };
        let s = Settings::resolve(cli, f.clone()).unwrap();
        assert_eq!(s.id, "b");
        // The minimum stay: unset (it follows the model), from the file, or from the flag.
        assert_eq!(s.min_stay_s, None);
        let mut f2 = f.clone();
        f2.min_stay_s = Some(600.0);
        let cli = RunArgs {
            min_stay_s: Some(60.0),
            ..RunArgs::default()
        };
        assert_eq!(
            Settings::resolve(RunArgs::default(), f2.clone())
                .unwrap()
                .min_stay_s,
            Some(600.0)
        );
        assert_eq!(Settings::resolve(cli, f2).unwrap().min_stay_s, Some(60.0));
        // Which decisions the model checks: the optional moves unless the file or the flag says
        // otherwise.
        assert_eq!(s.model_consult, ModelConsult::Optional);
        let f3: FileConfig = toml::from_str(&format!(
            "id = \"a\"\ncluster_key = \"{KEY}\"\ncapacity = 100.0\nmodel_consult = \"consolidation\"\n"
        ))
        .unwrap();
        assert_eq!(
            Settings::resolve(RunArgs::default(), f3.clone())
                .unwrap()
                .model_consult,
            ModelConsult::Consolidation
        );
        let cli = RunArgs {
            model_consult: Some(ModelConsult::Every),
            ..RunArgs::default()
        };
        assert_eq!(
            Settings::resolve(cli, f3).unwrap().model_consult,
            ModelConsult::Every
        );
        let e = toml::from_str::<FileConfig>("model_consult = \"sometimes\"").unwrap_err();
        assert!(e.to_string().contains("model_consult"), "{e}");
        assert_eq!(s.listen, "127.0.0.1:1".parse().unwrap());
        let e = toml::from_str::<FileConfig>("colour = 1").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        assert_eq!(
            format!("{:?}", Secret::new("x".into())),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let base = format!("id = \"a\"\ncluster_key = \"{KEY}\"\ncapacity = 100.0\n");
        let check = |extra: &str, want: &str| {
            let f: FileConfig = toml::from_str(&format!("{base}{extra}")).unwrap();
            let e = Settings::resolve(RunArgs::default(), f).unwrap_err();
            assert!(format!("{e:#}").contains(want), "{e:#}");
        };
        check("high = 0.4\n", "thresholds");
        check(
            "collector_dir = \"/x\"\nload_libvirt_uri = \"qemu:///system\"\n",
            "not both",
        );
        check("status_addr = \"0.0.0.0:1\"\n", "loopback");
        check("min_stay_s = -1.0\n", "min_stay_s");
        check(
            "membership = \"directory\"\n",
            "seeds must list the directories",
        );
        let e = toml::from_str::<FileConfig>("membership = \"central\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `central`"), "{e}");
        let f: FileConfig =
            toml::from_str("id = \"a\"\ncapacity = 1.0\ncluster_key = \"abcd\"\n").unwrap();
        assert!(format!(
            "{:#}",
            Settings::resolve(RunArgs::default(), f).unwrap_err()
        )
        .contains("at least"));
    }
}
