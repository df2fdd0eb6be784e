//! `keel-trainer import <format> <input> -o <out.parquet>`: real traces into the canonical schema.
//!
//! Trace formats, one module each:
//! - [`planetlab`]: a day folder of CoMon files (CloudSim's PlanetLab workload), one VM per file,
//!   288 CPU % values at 5-minute steps.
//! - [`bitbrains`]: a GWA-T-12 Bitbrains month folder (`N.csv` per VM, `;`+TAB separated),
//!   resampled onto a 5-minute grid with every measured dimension kept.
//!
//!
//! And the fleet's own data, read back from the database its collectors write to
//! ([`fleet`] holds what the two share: time windows, merging, retries, the atomic write):
//! - [`influx`]: an InfluxDB 2 bucket, through Flux queries (annotated CSV);
//! - [`victoria`]: VictoriaMetrics, through its export API (JSON lines).
//!
//! The trace importers read every input file before anything is committed: files are parsed in parallel (rayon),
//! the first error in file order is reported with the file and line, and the output is written
//! through [`keel_core::parquet_io::SampleWriter`], which writes to a temporary name and renames
//! only on success. A failed import therefore leaves no output file and never a partial one.

pub mod bitbrains;
pub mod fleet;
pub mod influx;
pub mod planetlab;
pub mod victoria;

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_core::inventory::Inventory;
use keel_core::parquet_io::{SampleWriter, WriteOptions};
use keel_core::schema::Sample;

/// Default zstd level of imported files: high, because shipped datasets live in the repository.
pub const DEFAULT_ZSTD_LEVEL: i32 = 19;

/// The grid step of every imported trace, seconds (both formats sample every 5 minutes).
pub const STEP_S: i64 = 300;

/// Why an import failed. Every variant names the file (and line, where there is one).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line could not be parsed.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The input as a whole is unusable (empty folder, mixed days, a name that is not a date).
    #[error("{}: {message}", path.display())]
    Input {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Write(#[from] keel_core::Error),
}

/// Result of the importers.
pub type Result<T, E = ImportError> = std::result::Result<T, E>;

/// What an import wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// The output file.
    pub path: PathBuf,
    /// Rows written.
    pub rows: usize,
    /// VMs in the inventory.
    pub vms: usize,
}

/// Arguments of `keel-trainer import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The trace format.
    #[command(subcommand)]
    pub format: Format,
}

/// The formats `keel-trainer import` reads.
#[derive(Debug, clap::Subcommand)]
pub enum Format {
    /// A PlanetLab (CoMon) day folder, as shipped with CloudSim: one file per VM, 288 CPU %
    /// values at 5-minute steps.
    Planetlab(planetlab::PlanetlabArgs),
    /// A Bitbrains GWA-T-12 month folder (`1.csv` … `500.csv`), resampled to 5 minutes.
    Bitbrains(bitbrains::BitbrainsArgs),
    /// The fleet's collector rows from an InfluxDB 2 bucket (Flux), for a time range.
    Influx(influx::InfluxArgs),
    /// The fleet's collector rows from VictoriaMetrics (export API), for a time range.
    #[command(name = "victoriametrics")]
    Victoriametrics(victoria::VictoriaArgs),
}

/// Runs `keel-trainer import`.
///
/// # Errors
/// Any failure, with context; nothing is left at the output path on failure.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let summary = match args.format {
        Format::Planetlab(a) => planetlab::run(&a).context("import planetlab")?,
        Format::Bitbrains(a) => bitbrains::run(&a).context("import bitbrains")?,
        Format::Influx(a) => {
            println!("{}", influx::run(&a).context("import influx")?);
            return Ok(());
        }
        Format::Victoriametrics(a) => {
            println!("{}", victoria::run(&a).context("import victoriametrics")?);
            return Ok(());
        }
    };
    println!(
        "wrote {}: {} rows, {} VMs",
        summary.path.display(),
        summary.rows,
        summary.vms
    );
    Ok(())
}

/// The regular, non-hidden files of `dir` (errors on sub-folders: one day or month per folder).
fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let io = |source| ImportError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type().map_err(|source| ImportError::Io {
            path: path.clone(),
            source,
        })?;
        if ft.is_dir() {
            return Err(ImportError::Input {
                path,
                message: "is a folder: give one day (PlanetLab) or month (Bitbrains) folder, \
                          not a folder of folders or a mix"
                    .into(),
            });
        }
        out.push((name, path));
    }
    Ok(out)
}

/// Parses a number that must be finite (rejects `NaN`, `inf`, empty fields).
fn parse_finite(field: &str) -> Option<f64> {
    field.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Writes per-VM row groups in order through an atomic [`SampleWriter`].
fn write_vms<I>(dest: &Path, inventory: &Inventory, zstd_level: i32, vms: I) -> Result<usize>
where
    I: IntoIterator<Item = Vec<Sample>>,
{
    inventory.validate()?;
    let opts = WriteOptions {
        zstd_level,
        ..WriteOptions::default()
    };
    let mut w = SampleWriter::create(dest, inventory, opts)?;
    let mut buf: Vec<Sample> = Vec::new();
    for rows in vms {
        buf.extend(rows);
        if buf.len() >= opts.row_group_size {
            w.write(&buf)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        w.write(&buf)?;
    }
    let rows = w.rows();
    w.finish()?;
    Ok(rows)
}
