//! Configuration: file < environment (`KEEL_*`) < flags, resolved once into [`Settings`].
//!
//! [`FileConfig`] mirrors the TOML file (every field optional, unknown fields rejected), [`Cli`]
//! the flags (clap reads `KEEL_*` variables for each, so env < flag comes from clap), and
//! [`Settings::resolve`] takes `flag.or(file).unwrap_or(default)` and validates. The rest of the
//! program sees only [`Settings`]. See `collector/dist/collector.toml` for a commented example.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::sinks::influx::config::{
    InfluxSettings, DEFAULT_BATCH_LINES, DEFAULT_QUEUE_LINES, DEFAULT_SPOOL_MAX_BYTES,
    DEFAULT_TIMEOUT,
};
use crate::sinks::parquet::{ParquetSettings, DEFAULT_ROTATE};

/// Default collection interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default spool directory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/keel/spool";
/// Default libvirt connection URI.
pub const DEFAULT_LIBVIRT_URI: &str = "qemu:///system";
/// Default timeout of each per-domain libvirt call.
pub const DEFAULT_LIBVIRT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long shutdown may spend delivering the spool before leaving it for the next start.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// Interface prefixes left out of the host's network totals by default (loopback and the
/// virtual interfaces that carry guest traffic already counted on the physical NIC).
pub const DEFAULT_NET_EXCLUDE: [&str; 7] = ["lo", "vnet", "tap", "veth", "virbr", "docker", "br-"];

/// A secret string (the InfluxDB token) whose `Debug` and `Display` never show it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"**redacted**\""
        })
    }
}

/// A duration written as `500ms`, `10s`, `5m`, `1h` or a bare number of seconds.
///
/// # Errors
/// Text that is not such a duration, or not positive.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 5m, 1h)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s:?}: a duration must be positive"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// The TOML file. Every field is optional; unknown fields are an error naming them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Host id written in every row (default: the kernel hostname).
    pub host_id: Option<String>,
    /// Collection interval, e.g. `"10s"`.
    pub interval: Option<String>,
    /// procfs root (default `/proc`).
    pub proc_root: Option<PathBuf>,
    /// sysfs root (default `/sys`).
    pub sys_root: Option<PathBuf>,
    /// Interface name prefixes left out of the host network totals.
    pub net_exclude: Option<Vec<String>>,
    /// Self-metrics log period, e.g. `"5m"`.
    pub stats_interval: Option<String>,
    /// Parquet sink.
    pub parquet: Option<FileParquet>,
    /// InfluxDB sink.
    pub influx: Option<FileInflux>,
    /// libvirt source.
    pub libvirt: Option<FileLibvirt>,
    /// cgroup VM discovery.
    pub cgroup: Option<FileCgroup>,
}

/// `[parquet]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileParquet {
    /// Output directory (setting it enables the sink).
    pub dir: Option<PathBuf>,
    /// Rotation period, e.g. `"10m"`.
    pub rotate: Option<String>,
    /// zstd level 1..=22.
    pub zstd_level: Option<i32>,
}

/// `[influx]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInflux {
    /// Base URL (setting it enables the sink).
    pub url: Option<String>,
    /// Organisation.
    pub org: Option<String>,
    /// Bucket.
    pub bucket: Option<String>,
    /// Token (prefer `token_file` or `KEEL_INFLUX_TOKEN`).
    pub token: Option<Secret>,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
    /// Lines per request.
    pub batch_lines: Option<usize>,
    /// Longest wait before a write, e.g. `"10s"`.
    pub flush_interval: Option<String>,
    /// Request timeout, e.g. `"5s"`.
    pub timeout: Option<String>,
    /// Gzip bodies (default true).
    pub gzip: Option<bool>,
    /// Spool directory.
    pub spool_dir: Option<PathBuf>,
    /// Spool cap in bytes.
    pub spool_max_bytes: Option<u64>,
    /// Ignored: lines go straight to the spool's journal (kept so older files still load).
    pub queue_lines: Option<usize>,
}

/// `[libvirt]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLibvirt {
    /// Poll libvirt (default false).
    pub enabled: Option<bool>,
    /// Connection URI (default `qemu:///system`).
    pub uri: Option<String>,
    /// Timeout of each per-domain call, e.g. `"2s"`.
    pub call_timeout: Option<String>,
    /// The `keel-collector-libvirt` helper (default: beside the collector's executable, else
    /// on `PATH`).
    pub helper: Option<PathBuf>,
}

/// `[cgroup]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCgroup {
    /// Discover VMs from cgroups (default false).
    pub enabled: Option<bool>,
    /// cgroup mount root (default `/sys/fs/cgroup`).
    pub root: Option<PathBuf>,
}

/// Command line. Each flag also reads the `KEEL_*` variable named in `--help`.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "keel-collector",
    version,
    about = "Samples host and VM metrics to Parquet and InfluxDB 2 without losing data"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "KEEL_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Ignore the configuration file.
    #[arg(long, conflicts_with = "config")]
    pub no_config: bool,
    /// Collection interval (500ms, 10s, 1m ...).
    #[arg(long, env = "KEEL_INTERVAL", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Host id written in every row.
    #[arg(long, env = "KEEL_HOST_ID")]
    pub host_id: Option<String>,
    /// Write canonical Parquet files to DIR.
    #[arg(long, env = "KEEL_PARQUET_DIR", value_name = "DIR")]
    pub parquet_dir: Option<PathBuf>,
    /// Parquet rotation period.
    #[arg(long, env = "KEEL_PARQUET_ROTATE", value_parser = parse_duration)]
    pub parquet_rotate: Option<Duration>,
    /// InfluxDB 2 base URL.
    #[arg(long, env = "KEEL_INFLUX_URL")]
    pub influx_url: Option<String>,
    /// InfluxDB organisation.
    #[arg(long, env = "KEEL_INFLUX_ORG")]
    pub influx_org: Option<String>,
    /// InfluxDB bucket.
    #[arg(long, env = "KEEL_INFLUX_BUCKET")]
    pub influx_bucket: Option<String>,
    /// InfluxDB token (visible in `ps`: prefer the file or the variable).
    #[arg(long, env = "KEEL_INFLUX_TOKEN", hide_env_values = true)]
    pub influx_token: Option<String>,
    /// File holding the InfluxDB token.
    #[arg(long, env = "KEEL_INFLUX_TOKEN_FILE", value_name = "PATH")]
    pub influx_token_file: Option<PathBuf>,
    /// Spool directory for batches the database has not acknowledged.
    #[arg(long, env = "KEEL_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Spool cap in bytes.
    #[arg(long, env = "KEEL_SPOOL_MAX_BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// procfs root.
    #[arg(long, env = "KEEL_PROC_ROOT", value_name = "DIR")]
    pub proc_root: Option<PathBuf>,
    /// sysfs root.
    #[arg(long, env = "KEEL_SYS_ROOT", value_name = "DIR")]
    pub sys_root: Option<PathBuf>,
    /// Poll libvirt at this URI (enables the libvirt source).
    #[arg(long, env = "KEEL_LIBVIRT_URI")]
    pub libvirt_uri: Option<String>,
    /// Discover VMs from the cgroup tree under DIR (enables the cgroup source).
    #[arg(long, env = "KEEL_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// Take one round, flush every sink, exit.
    #[arg(long)]
    pub once: bool,
    /// Stop after this long (flushing every sink).
    #[arg(long, env = "KEEL_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Logging flags.
    #[command(flatten)]
    pub log: keel_core::cli::LogArgs,
}

/// The libvirt source's settings.
#[derive(Debug, Clone)]
pub struct LibvirtSettings {
    /// Connection URI.
    pub uri: String,
    /// Per-domain call timeout.
    pub call_timeout: Duration,
    /// The helper process that makes the libvirt calls.
    pub helper: PathBuf,
}

/// Everything the program needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Host id.
    pub host_id: String,
    /// Round interval.
    pub interval: Duration,
    /// procfs root.
    pub proc_root: PathBuf,
    /// sysfs root.
    pub sys_root: PathBuf,
    /// Interface prefixes excluded from network totals.
    pub net_exclude: Vec<String>,
    /// Self-metrics log period.
    pub stats_interval: Duration,
    /// Parquet sink, if enabled.
    pub parquet: Option<ParquetSettings>,
    /// InfluxDB sink, if enabled.
    pub influx: Option<InfluxSettings>,
    /// libvirt source, if enabled.
    pub libvirt: Option<LibvirtSettings>,
    /// cgroup discovery root, if enabled.
    pub cgroup_root: Option<PathBuf>,
    /// One round then exit.
    pub once: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Shutdown delivery deadline.
    pub shutdown_deadline: Duration,
}

fn dur(field: &str, v: Option<&String>) -> Result<Option<Duration>> {
    v.map(|s| parse_duration(s).map_err(|e| Error::Config(format!("{field}: {e}"))))
        .transpose()
}

/// Reads the kernel hostname under `proc_root`.
fn hostname(proc_root: &Path) -> Option<String> {
    std::fs::read_to_string(proc_root.join("sys/kernel/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

impl FileConfig {
    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// The file cannot be read, or does not parse (the message names the line and field).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }
}

impl Settings {
    /// Merges flags (already merged with env by clap) over the file, applies defaults, validates.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field: no sink enabled, an incomplete InfluxDB section, an
    /// unreadable token file, a bad duration or level.
    pub fn resolve(cli: &Cli, file: FileConfig) -> Result<Self> {
        let fp = file.parquet.unwrap_or_default();
        let fi = file.influx.unwrap_or_default();
        let fl = file.libvirt.unwrap_or_default();
        let fc = file.cgroup.unwrap_or_default();
        let proc_root = cli
            .proc_root
            .clone()
            .or(file.proc_root)
            .unwrap_or_else(|| "/proc".into());
        let sys_root = cli
            .sys_root
            .clone()
            .or(file.sys_root)
            .unwrap_or_else(|| "/sys".into());
        let host_id = cli
            .host_id
            .clone()
            .or(file.host_id)
            .or_else(|| hostname(&proc_root))
            .unwrap_or_else(|| "localhost".into());
        let interval = match cli.interval {
            Some(d) => d,
            None => dur("interval", file.interval.as_ref())?.unwrap_or(DEFAULT_INTERVAL),
        };
        if interval < Duration::from_millis(100) {
            return Err(Error::Config("interval: must be at least 100ms".into()));
        }
        let stats_interval = dur("stats_interval", file.stats_interval.as_ref())?
            .unwrap_or(Duration::from_secs(300));

        let parquet = match cli.parquet_dir.clone().or(fp.dir) {
            None => None,
            Some(dir) => {
                let zstd_level = fp.zstd_level.unwrap_or(3);
                if !(1..=22).contains(&zstd_level) {
                    return Err(Error::Config("parquet.zstd_level: must be 1..=22".into()));
                }
                let rotate = match cli.parquet_rotate {
                    Some(d) => d,
                    None => dur("parquet.rotate", fp.rotate.as_ref())?.unwrap_or(DEFAULT_ROTATE),
                };
                Some(ParquetSettings {
                    dir,
                    rotate,
                    zstd_level,
                    host_id: host_id.clone(),
                })
            }
        };

        let influx = match cli.influx_url.clone().or(fi.url) {
            None => None,
            Some(url) => {
                let org = cli.influx_org.clone().or(fi.org).ok_or_else(|| {
                    Error::Config(
                        "influx.org (--influx-org) is required with an InfluxDB url".into(),
                    )
                })?;
                let bucket = cli.influx_bucket.clone().or(fi.bucket).ok_or_else(|| {
                    Error::Config(
                        "influx.bucket (--influx-bucket) is required with an InfluxDB url".into(),
                    )
                })?;
                let token = match (cli.influx_token.clone(), cli.influx_token_file.clone()) {
                    (Some(t), _) => Secret::new(t),
                    (None, Some(p)) => read_token(&p)?,
                    (None, None) => match (fi.token, fi.token_file) {
                        (Some(t), _) => t,
                        (None, Some(p)) => read_token(&p)?,
                        (None, None) => Secret::default(),
                    },
                };
                let batch_lines = fi.batch_lines.unwrap_or(DEFAULT_BATCH_LINES);
                if batch_lines == 0 {
                    return Err(Error::Config("influx.batch_lines: must be positive".into()));
                }
                Some(InfluxSettings {
                    url,
                    org,
                    bucket,
                    token,
                    batch_lines,
                    flush_interval: dur("influx.flush_interval", fi.flush_interval.as_ref())?
                        .unwrap_or(interval),
                    timeout: dur("influx.timeout", fi.timeout.as_ref())?.unwrap_or(DEFAULT_TIMEOUT),
                    gzip: fi.gzip.unwrap_or(true),
                    spool_dir: cli
                        .spool_dir
                        .clone()
                        .or(fi.spool_dir)
                        .unwrap_or_else(|| DEFAULT_SPOOL_DIR.into()),
                    spool_max_bytes: cli
                        .spool_max_bytes
                        .or(fi.spool_max_bytes)
                        .unwrap_or(DEFAULT_SPOOL_MAX_BYTES),
                    queue_lines: fi.queue_lines.unwrap_or(DEFAULT_QUEUE_LINES).max(1),
                })
            }
        };
        if parquet.is_none() && influx.is_none() {
            return Err(Error::Config(
                "no sink: set parquet.dir (--parquet-dir) and/or influx.url (--influx-url)".into(),
            ));
        }

        let libvirt = match (cli.libvirt_uri.clone(), fl.enabled.unwrap_or(false)) {
            (Some(uri), _) => Some(uri),
            (None, true) => Some(fl.uri.unwrap_or_else(|| DEFAULT_LIBVIRT_URI.into())),
            (None, false) => None,
        }
        .map(|uri| -> Result<LibvirtSettings> {
            Ok(LibvirtSettings {
                uri,
                call_timeout: dur("libvirt.call_timeout", fl.call_timeout.as_ref())?
                    .unwrap_or(DEFAULT_LIBVIRT_TIMEOUT),
                helper: fl
                    .helper
                    .clone()
                    .unwrap_or_else(crate::sources::libvirt::default_helper),
            })
        })
        .transpose()?;
        let cgroup_root = match (cli.cgroup_root.clone(), fc.enabled.unwrap_or(false)) {
            (Some(r), _) => Some(r),
            (None, true) => Some(fc.root.unwrap_or_else(|| "/sys/fs/cgroup".into())),
            (None, false) => None,
        };

        Ok(Self {
            host_id,
            interval,
            proc_root,
            sys_root,
            net_exclude: file.net_exclude.unwrap_or_else(|| {
                DEFAULT_NET_EXCLUDE
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            }),
            stats_interval,
            parquet,
            influx,
            libvirt,
            cgroup_root,
            once: cli.once,
            duration: cli.duration,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
        })
    }
}

fn read_token(p: &Path) -> Result<Secret> {
    let t = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    Ok(Secret::new(t.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("keel-collector").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let file: FileConfig = toml::from_str(
            r#"
            host_id = "from-file"
            interval = "30s"
            [parquet]
            dir = "/file/pq"
            [influx]
            url = "http://file:8086"
            org = "o"
            bucket = "b"
            token = "file-secret"
            "#,
        )
        .unwrap();
        let s = Settings::resolve(
            &cli(&[
                "--interval",
                "2s",
                "--influx-url",
                "http://flag:1",
                "--once",
            ]),
            file,
        )
        .unwrap();
        assert_eq!(s.host_id, "from-file");
        assert_eq!(s.interval, Duration::from_secs(2));
        let i = s.influx.unwrap();
        assert_eq!(i.url, "http://flag:1");
        assert_eq!(i.token.expose(), "file-secret");
        assert_eq!(i.flush_interval, Duration::from_secs(2));
        assert!(s.once);
        assert_eq!(s.parquet.unwrap().dir, PathBuf::from("/file/pq"));
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = toml::from_str::<FileConfig>("[influx]\nurll = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
    }

    #[test]
    fn no_sink_and_missing_org_are_errors() {
        let e = Settings::resolve(&cli(&[]), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("no sink"), "{e}");
        let e = Settings::resolve(&cli(&["--influx-url", "http://x"]), FileConfig::default())
            .unwrap_err();
        assert!(e.to_string().contains("influx.org"), "{e}");
    }

    #[test]
    fn token_file_is_read_and_secret_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "s3cret\n").unwrap();
        let s = Settings::resolve(
            &cli(&[
                "--influx-url",
                "http://x",
                "--influx-org",
                "o",
                "--influx-bucket",
                "b",
                "--influx-token-file",
                p.to_str().unwrap(),
            ]),
            FileConfig::default(),
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert_eq!(s.influx.unwrap().token.expose(), "s3cret");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../dist/collector.toml");
        let f: FileConfig = toml::from_str(text).unwrap();
        Settings::resolve(&cli(&[]), f).unwrap();
    }

    #[test]
    fn help_snapshot() {
        use clap::CommandFactory;
        let help = Cli::command()
            .term_width(100)
            .render_long_help()
            .to_string();
        // clap prints an env variable's value when it is set: keep the snapshot independent of
        // the environment the tests run in.
        let help: Vec<String> = help
            .lines()
            .map(|l| match (l.find("[env: "), l.find('=')) {
                (Some(a), Some(b)) if b > a => format!("{}]", &l[..b]),
                _ => l.to_owned(),
            })
            .collect();
        insta::assert_snapshot!(help.join("\n"));
    }
}
