//! PlanetLab (CoMon) day folders, as CloudSim ships them for its consolidation experiments.
//!
//! A day folder (`20110303/`) holds one file per VM: 288 lines, one integer CPU % per line, line
//! `i` describing minute `5·i` of the day; no header, no timestamps. The import:
//! - takes the files in **sorted name order** (CloudSim takes filesystem order, which makes its
//!   results machine-dependent; sorted order is reproducible), the VM id being the file name;
//! - stamps line `i` with `start + 300 s · i`, `start` being `--start` or else the folder's name
//!   read as `YYYYMMDD`, at 00:00 UTC;
//! - gives VM `i` of `n` CloudSim's type `⌊i / ⌈n/4⌉⌋`
//!   ([`keel_core::catalog::cloudsim_vm_type_for`]), so `cpu_util = value / 100` and
//!   `cpu_demand = cpu_util × the type's MIPS` (inventory `cpu_unit = mips`);
//! - leaves every other metric and `host_id` null (the trace measures nothing else).
//!
//! Rows are ordered by VM (file order) then time: exactly `288 × files` rows. Any file that is
//! not 288 non-negative numbers, one per line, fails the whole import with its name and line.

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime};
use keel_core::catalog::cloudsim_vm_type_for;
use keel_core::inventory::{CpuUnit, Inventory};
use keel_core::schema::{Metrics, Sample};
use rayon::prelude::*;

use super::{list_files, parse_finite, write_vms, ImportError, ImportSummary, Result, STEP_S};

/// Samples per file: one day at 5-minute steps.
pub const SAMPLES_PER_DAY: usize = 288;

/// Arguments of `keel-trainer import planetlab`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanetlabArgs {
    /// The day folder (e.g. `20110303/`): one CoMon file per VM.
    pub input: PathBuf,
    /// Output Parquet file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// UTC date of the first sample [default: the folder's name as YYYYMMDD].
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub start: Option<NaiveDate>,
    /// zstd compression level (1..=22).
    #[arg(long, default_value_t = super::DEFAULT_ZSTD_LEVEL)]
    pub zstd_level: i32,
}

/// One VM's trace: its id (file name) and its 288 CPU % values.
#[derive(Debug, Clone, PartialEq)]
pub struct VmTrace {
    /// VM id: the file name.
    pub id: String,
    /// CPU utilisation in percent of the VM's capacity, one per 5-minute step.
    pub cpu_pct: Vec<f64>,
}

/// A day read whole: inventory plus traces in inventory order.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    /// The VMs with CloudSim's types, in file order.
    pub inventory: Inventory,
    /// One trace per VM, same order.
    pub traces: Vec<VmTrace>,
    /// Milliseconds since the epoch of the first sample.
    pub start_ms: i64,
}

impl Day {
    /// The canonical rows of VM `i` (288 of them).
    ///
    /// # Panics
    /// If `i` is not a VM index of this day.
    pub fn rows(&self, i: usize) -> Vec<Sample> {
        let vm = &self.inventory.vms[i];
        let mips = vm.cpu_capacity();
        self.traces[i]
            .cpu_pct
            .iter()
            .enumerate()
            .map(|(k, pct)| {
                // pct × MIPS / 100 keeps whole-number demands exact (34 % of 2500 is 850.0).
                Sample {
                    ts_ms: self.start_ms + (k as i64) * STEP_S * 1000,
                    host_id: None,
                    vm_id: Some(vm.id.clone()),
                    metrics: Metrics {
                        cpu_util: Some(pct / 100.0),
                        cpu_demand: Some(pct * mips / 100.0),
                        ..Metrics::default()
                    },
                }
            })
            .collect()
    }

    /// Rows in total.
    pub fn len(&self) -> usize {
        self.traces.iter().map(|t| t.cpu_pct.len()).sum()
    }

    /// Whether the day has no rows (never true for a day [`read_day`] returned).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses one CoMon file: exactly [`SAMPLES_PER_DAY`] lines, each one non-negative number.
///
/// # Errors
/// [`ImportError::Parse`] naming the file and line (a line that is not a number: wrong separator,
/// text, a blank line; fewer lines: a truncated file; more lines: a longer trace or mixed days).
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<f64>> {
    let err = |line: usize, message: String| ImportError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut out = Vec::with_capacity(SAMPLES_PER_DAY);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let field = raw.trim();
        let v = parse_finite(field).ok_or_else(|| {
            if field.is_empty() {
                err(line, "empty line, expected one CPU % value".into())
            } else {
                err(
                    line,
                    format!("{field:?} is not a number (one CPU % value per line expected)"),
                )
            }
        })?;
        if v < 0.0 {
            return Err(err(line, format!("negative CPU % {field}")));
        }
        if out.len() == SAMPLES_PER_DAY {
            return Err(err(
                line,
                format!(
                    "more than {SAMPLES_PER_DAY} lines: a PlanetLab file is one day at 5-minute \
                     steps (files of different lengths or mixed days?)"
                ),
            ));
        }
        out.push(v);
    }
    if out.len() < SAMPLES_PER_DAY {
        return Err(err(
            out.len() + 1,
            format!(
                "truncated: {} lines, expected {SAMPLES_PER_DAY} (one day at 5-minute steps)",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// The date a day folder's name encodes (`20110303` → 2011-03-03).
///
/// # Errors
/// [`ImportError::Input`] when the name is not `YYYYMMDD`.
pub fn folder_date(dir: &Path) -> Result<NaiveDate> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    NaiveDate::parse_from_str(&name, "%Y%m%d").map_err(|_| ImportError::Input {
        path: dir.to_path_buf(),
        message: format!("folder name {name:?} is not a date (YYYYMMDD); pass --start YYYY-MM-DD"),
    })
}

/// Reads a day folder whole.
///
/// # Errors
/// An empty folder, a sub-folder, an unreadable file, a malformed file (with its line), or a
/// folder name that is not a date when `start` is `None`.
pub fn read_day(dir: &Path, start: Option<NaiveDate>) -> Result<Day> {
    let date = match start {
        Some(d) => d,
        None => folder_date(dir)?,
    };
    let start_ms = date.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
    let mut files = list_files(dir)?;
    if files.is_empty() {
        return Err(ImportError::Input {
            path: dir.to_path_buf(),
            message: "no trace files in folder".into(),
        });
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let parsed: Vec<Result<VmTrace>> = files
        .par_iter()
        .map(|(name, path)| {
            let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
                path: path.clone(),
                source,
            })?;
            Ok(VmTrace {
                id: name.clone(),
                cpu_pct: parse_file(path, &text)?,
            })
        })
        .collect();
    let traces = parsed.into_iter().collect::<Result<Vec<_>>>()?;
    let n = traces.len();
    let vms = traces
        .iter()
        .enumerate()
        .map(|(i, t)| cloudsim_vm_type_for(i, n).spec(t.id.clone()))
        .collect();
    let inventory = Inventory {
        cpu_unit: CpuUnit::Mips,
        vms,
        hosts: Vec::new(),
        source: Some(format!(
            "planetlab comon day folder {:?}: {n} VMs in sorted file order, start {date} 00:00 UTC, \
             300 s steps; CloudSim VM types in equal consecutive blocks",
            dir.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )),
    };
    Ok(Day {
        inventory,
        traces,
        start_ms,
    })
}

/// Imports a day folder to `dest`; returns what was written.
///
/// # Errors
/// As [`read_day`], plus write errors; `dest` is untouched on any error.
pub fn import(
    dir: &Path,
    dest: &Path,
    start: Option<NaiveDate>,
    zstd_level: i32,
) -> Result<ImportSummary> {
    let day = read_day(dir, start)?;
    let n = day.traces.len();
    tracing::info!(vms = n, rows = day.len(), "parsed planetlab day");
    let rows = write_vms(
        dest,
        &day.inventory,
        zstd_level,
        (0..n).map(|i| day.rows(i)),
    )?;
    Ok(ImportSummary {
        path: dest.to_path_buf(),
        rows,
        vms: n,
    })
}

/// Runs `keel-trainer import planetlab`.
///
/// # Errors
/// As [`import`].
pub fn run(args: &PlanetlabArgs) -> Result<ImportSummary> {
    import(&args.input, &args.output, args.start, args.zstd_level)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day_text(n: usize) -> String {
        (0..n).map(|i| format!("{}\n", i % 100)).collect()
    }

    #[test]
    fn parses_288_values() {
        let v = parse_file(Path::new("f"), &day_text(288)).unwrap();
        assert_eq!(v.len(), 288);
        assert_eq!(v[101], 1.0);
    }

    #[test]
    fn short_long_and_bad_lines_name_the_line() {
        let e = parse_file(Path::new("f"), &day_text(287))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:288: truncated: 287 lines"), "{e}");
        let e = parse_file(Path::new("f"), &day_text(289))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:289: more than 288"), "{e}");
        let mut t = day_text(288);
        t.replace_range(0..2, "0,5\n");
        let e = parse_file(Path::new("f"), &t).unwrap_err().to_string();
        assert!(e.starts_with("f:1: \"0,5\" is not a number"), "{e}");
        let e = parse_file(Path::new("f"), "1\n\n2\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:2: empty line"), "{e}");
        let e = parse_file(Path::new("f"), "1\n-2\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:2: negative"), "{e}");
        let e = parse_file(Path::new("f"), "1\nNaN\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:2: \"NaN\" is not a number"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "([0-9a-z ,;.eE+-]{0,8}\n){0,300}") {
            match parse_file(Path::new("f"), &text) {
                Ok(v) => proptest::prop_assert_eq!(v.len(), SAMPLES_PER_DAY),
                Err(e) => proptest::prop_assert!(e.to_string().starts_with("f:")),
            }
        }
    }

    #[test]
    fn folder_name_is_the_date() {
        assert_eq!(
            folder_date(Path::new("/x/20110303")).unwrap(),
            NaiveDate::from_ymd_opt(2011, 3, 3).unwrap()
        );
        let e = folder_date(Path::new("/x/day1")).unwrap_err().to_string();
        assert!(e.contains("--start"), "{e}");
    }
}
