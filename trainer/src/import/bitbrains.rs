//! Bitbrains GWA-T-12 month folders (`2013-7/1.csv` … `500.csv`), resampled to 5 minutes.
//!
//! Each file is one VM: a header line, then rows of 11 fields separated by `;` followed by a TAB
//! (fields are trimmed): timestamp, CPU cores, CPU capacity provisioned [MHz], CPU usage [MHz],
//! CPU usage [%], memory provisioned [KB], memory usage [KB], disk read / write [KB/s], network
//! received / transmitted [KB/s]. The header says `Timestamp [ms]` but the values are Unix
//! **seconds**; a value above 10¹¹ is read as milliseconds, so either works.
//!
//! # Mapping
//! `cpu_util = CPU usage [%] / 100`, `cpu_demand = CPU usage [MHz]` (inventory `cpu_unit = mhz`),
//! `mem_used_mib = memory usage [KB] / 1024`, disk and network KB/s copied as KiB/s. Steal,
//! iowait, delay and pressure are not measured: null. `host_id` is null (the trace has no
//! placement). Inventory per VM: `vcpus` = CPU cores and `cpu_per_vcpu` = provisioned MHz / cores,
//! `mem_mib` = provisioned KB / 1024, each the most common value over the file's rows (they change
//! during a month for a few VMs). VM ids are the file stems, taken in numeric order (1, 2, …, 500).
//!
//! # Placeholder rows
//! Some rows report 0 cores and 0 MHz provisioned (about 5 % of July's rows, in 74 files: the VM
//! was not provisioned; their other fields repeat stale values). Such a row is a sample of *nothing
//! measured*: all its metrics are null.
//!
//! # Resampling
//! Steps are not always 300 s: gaps of 10 or 15 minutes and more, pairs of rows a minute or two
//! apart, repeated timestamps (July 2013: 3.4 % of steps off 300 s by more than 5 s, 1.8 %
//! repeats; August: 0.8 % and 0.35 %), and every VM has its own phase. All VMs are put on one
//! grid, the multiples of 300 s since the epoch, by **sample and hold**: the row at grid time `g`
//! carries the latest sample at or before `g` (a later row with the same timestamp wins), if it
//! is at most [`HOLD_S`] = 450 s (1.5 steps) old; otherwise every metric at `g` is null. This keeps measured
//! values unchanged (no averaging that would flatten the spikes a stability model looks for),
//! tolerates jitter around a VM's phase, and turns real gaps into nulls, never zeros. A VM's rows
//! run from the first grid point at or after its first sample to the last grid point at or before
//! its last sample, optionally clipped to `--from`/`--until`. Timestamps that go backwards are an
//! error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime};
use keel_core::inventory::{CpuUnit, Inventory, VmSpec};
use keel_core::schema::{Metrics, Sample};
use rayon::prelude::*;

use super::{list_files, parse_finite, write_vms, ImportError, ImportSummary, Result, STEP_S};

/// Fields per row.
pub const FIELDS: usize = 11;
/// The longest a sample is held onto later grid points, seconds.
pub const HOLD_S: i64 = 450;

/// Latest timestamp accepted (9999-12-31T23:59:59Z), so grid arithmetic cannot overflow.
const MAX_TS_S: i64 = 253_402_300_799;
/// Longest span of one file, days: bounds the grid (and memory) a single file can ask for.
pub const MAX_SPAN_DAYS: i64 = 400;

/// Column names, for error messages.
const FIELD_NAMES: [&str; FIELDS] = [
    "Timestamp",
    "CPU cores",
    "CPU capacity provisioned [MHz]",
    "CPU usage [MHz]",
    "CPU usage [%]",
    "Memory capacity provisioned [KB]",
    "Memory usage [KB]",
    "Disk read throughput [KB/s]",
    "Disk write throughput [KB/s]",
    "Network received throughput [KB/s]",
    "Network transmitted throughput [KB/s]",
];

/// Arguments of `keel-trainer import bitbrains`.
#[derive(Debug, Clone, clap::Args)]
pub struct BitbrainsArgs {
    /// The month folder (e.g. `rnd/2013-7/`): `N.csv` per VM.
    pub input: PathBuf,
    /// Output Parquet file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Import only the first N VMs in numeric id order (among those with rows in the window).
    #[arg(long, value_name = "N")]
    pub max_vms: Option<usize>,
    /// Keep grid points at or after this UTC date (00:00).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<NaiveDate>,
    /// Keep grid points before this UTC date (00:00).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub until: Option<NaiveDate>,
    /// zstd compression level (1..=22).
    #[arg(long, default_value_t = super::DEFAULT_ZSTD_LEVEL)]
    pub zstd_level: i32,
}

/// The measured values of one row, in the canonical units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// CPU usage as a fraction of provisioned capacity.
    pub cpu_util: f64,
    /// CPU usage, MHz.
    pub cpu_mhz: f64,
    /// Memory in use, MiB.
    pub mem_used_mib: f64,
    /// Disk read, KiB/s.
    pub disk_read: f64,
    /// Disk write, KiB/s.
    pub disk_write: f64,
    /// Network received, KiB/s.
    pub net_rx: f64,
    /// Network transmitted, KiB/s.
    pub net_tx: f64,
}

impl Measured {
    fn metrics(self) -> Metrics {
        Metrics {
            cpu_util: Some(self.cpu_util),
            cpu_demand: Some(self.cpu_mhz),
            mem_used_mib: Some(self.mem_used_mib),
            net_rx_kib_s: Some(self.net_rx),
            net_tx_kib_s: Some(self.net_tx),
            disk_read_kib_s: Some(self.disk_read),
            disk_write_kib_s: Some(self.disk_write),
            ..Metrics::default()
        }
    }
}

/// One parsed row: its time and what it measured (`None` for a placeholder row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    /// Unix seconds.
    pub ts_s: i64,
    /// The values, or `None` when the row reports no provisioned CPU.
    pub values: Option<Measured>,
}

/// A parsed file: its records and the VM's provisioned size.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFile {
    /// Rows in file order (timestamps non-decreasing).
    pub records: Vec<Record>,
    /// The most common (cores, provisioned MHz, provisioned MiB) over measured rows, or `None`
    /// when every row is a placeholder.
    pub size: Option<(u32, f64, f64)>,
}

/// One VM on the 5-minute grid.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSeries {
    /// The VM's size and id.
    pub spec: VmSpec,
    /// Unix seconds of the first grid point.
    pub start_s: i64,
    /// One entry per grid point (`None`: nothing measured within [`HOLD_S`]).
    pub values: Vec<Option<Measured>>,
}

impl VmSeries {
    /// The canonical rows of this VM.
    pub fn rows(&self) -> Vec<Sample> {
        self.values
            .iter()
            .enumerate()
            .map(|(k, v)| Sample {
                ts_ms: (self.start_s + k as i64 * STEP_S) * 1000,
                host_id: None,
                vm_id: Some(self.spec.id.clone()),
                metrics: v.map(Measured::metrics).unwrap_or_default(),
            })
            .collect()
    }
}

/// Most common value (first seen wins ties), keyed by exact bit pattern.
#[derive(Debug, Default)]
struct Mode {
    counts: HashMap<(u32, u64, u64), (usize, usize)>,
}

impl Mode {
    fn add(&mut self, key: (u32, f64, f64)) {
        let n = self.counts.len();
        let e = self
            .counts
            .entry((key.0, key.1.to_bits(), key.2.to_bits()))
            .or_insert((0, n));
        e.0 += 1;
    }

    fn get(&self) -> Option<(u32, f64, f64)> {
        self.counts
            .iter()
            .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
            .map(|(k, _)| (k.0, f64::from_bits(k.1), f64::from_bits(k.2)))
    }
}

/// Parses one GWA-T-12 file.
///
/// # Errors
/// [`ImportError::Parse`] naming the file and line: a header or row without 11 `;`-separated
/// fields (wrong separator, a cut-off row), a field that is not a finite non-negative number,
/// fractional cores, a timestamp past the year 9999 or going backwards, a last line without its
/// newline (a truncated file), timestamps spanning more than [`MAX_SPAN_DAYS`], or no data rows.
pub fn parse_file(path: &Path, text: &str) -> Result<ParsedFile> {
    let err = |line: usize, message: String| ImportError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l).unwrap_or_default();
    let header_fields = header.split(';').count();
    if header_fields != FIELDS || !header.trim_start().starts_with("Timestamp") {
        return Err(err(
            1,
            format!(
                "header has {header_fields} ';'-separated fields, expected {FIELDS} starting with \
                 \"Timestamp\" (wrong separator or not a GWA-T-12 file?)"
            ),
        ));
    }
    let mut records = Vec::new();
    let mut mode = Mode::default();
    let mut prev: Option<(i64, usize)> = None;
    let mut f = [0.0_f64; FIELDS];
    for (i, raw) in lines {
        let line = i + 1;
        let mut fields = [""; FIELDS];
        let mut n = 0;
        for field in raw.split(';') {
            if n < FIELDS {
                fields[n] = field.trim();
            }
            n += 1;
        }
        if n != FIELDS {
            return Err(err(
                line,
                format!(
                    "{n} ';'-separated fields, expected {FIELDS} (wrong separator or cut-off row?)"
                ),
            ));
        }
        for (k, field) in fields.iter().enumerate() {
            f[k] = parse_finite(field).ok_or_else(|| {
                err(
                    line,
                    format!(
                        "field {} ({}): {field:?} is not a number",
                        k + 1,
                        FIELD_NAMES[k]
                    ),
                )
            })?;
            if f[k] < 0.0 {
                return Err(err(
                    line,
                    format!(
                        "field {} ({}): negative value {field}",
                        k + 1,
                        FIELD_NAMES[k]
                    ),
                ));
            }
        }
        // Header says ms, data are seconds; accept real milliseconds too.
        let secs = if f[0] > 1e11 { f[0] / 1000.0 } else { f[0] };
        if secs > MAX_TS_S as f64 {
            return Err(err(
                line,
                format!("field 1 (Timestamp): {} is past the year 9999", fields[0]),
            ));
        }
        let ts_s = secs.round() as i64;
        if let Some((p, pl)) = prev {
            if ts_s < p {
                return Err(err(
                    line,
                    format!("timestamp {ts_s} goes backwards (line {pl} has {p})"),
                ));
            }
        }
        prev = Some((ts_s, line));
        let cores = f[1];
        if cores.fract() != 0.0 || cores > f64::from(u32::MAX) {
            return Err(err(
                line,
                format!("field 2 (CPU cores): {cores} is not a count"),
            ));
        }
        let values = if cores == 0.0 || f[2] == 0.0 {
            None
        } else {
            mode.add((cores as u32, f[2], f[5]));
            Some(Measured {
                cpu_util: f[4] / 100.0,
                cpu_mhz: f[3],
                mem_used_mib: f[6] / 1024.0,
                disk_read: f[7],
                disk_write: f[8],
                net_rx: f[9],
                net_tx: f[10],
            })
        };
        records.push(Record { ts_s, values });
    }
    if records.is_empty() {
        return Err(err(2, "no data rows after the header".into()));
    }
    if !text.ends_with('\n') {
        return Err(err(
            records.len() + 1,
            "last line has no newline: truncated file?".into(),
        ));
    }
    let span_days = (records[records.len() - 1].ts_s - records[0].ts_s) / 86_400;
    if span_days > MAX_SPAN_DAYS {
        return Err(err(
            records.len() + 1,
            format!(
                "timestamps span {span_days} days (a GWA-T-12 file covers about a month; at most \
                 {MAX_SPAN_DAYS} accepted)"
            ),
        ));
    }
    Ok(ParsedFile {
        records,
        size: mode.get().map(|(c, mhz, kb)| (c, mhz, kb / 1024.0)),
    })
}

/// Puts records on the 300 s grid by sample and hold (see the module docs), keeping grid points
/// in `[lo_s, hi_s)`. Returns the first grid point and the values; `None` if no grid point is left.
pub fn resample(records: &[Record], lo_s: i64, hi_s: i64) -> Option<(i64, Vec<Option<Measured>>)> {
    let first = records.first()?.ts_s;
    let last = records.last()?.ts_s;
    let ceil_to_grid =
        |t: i64| (t.div_euclid(STEP_S) + i64::from(t.rem_euclid(STEP_S) != 0)) * STEP_S;
    let start = ceil_to_grid(first).max(ceil_to_grid(lo_s));
    let end = (last.div_euclid(STEP_S) * STEP_S).min(hi_s - 1);
    if end < start {
        return None;
    }
    let mut out = Vec::with_capacity(((end - start) / STEP_S + 1) as usize);
    let mut j = 0; // records[..j] are at or before the current grid point
    let mut g = start;
    while g <= end {
        while j < records.len() && records[j].ts_s <= g {
            j += 1;
        }
        let v = (j > 0)
            .then(|| records[j - 1])
            .filter(|r| g - r.ts_s <= HOLD_S)
            .and_then(|r| r.values);
        out.push(v);
        g += STEP_S;
    }
    Some((start, out))
}

/// The `.csv` files of a month folder in numeric id order, as (id, path).
///
/// # Errors
/// An unreadable folder, a sub-folder, or no `.csv` file.
pub fn month_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files: Vec<(String, PathBuf)> = list_files(dir)?
        .into_iter()
        .filter_map(|(name, path)| name.strip_suffix(".csv").map(|s| (s.to_string(), path)))
        .collect();
    if files.is_empty() {
        return Err(ImportError::Input {
            path: dir.to_path_buf(),
            message: "no .csv files in folder".into(),
        });
    }
    // Numeric ids first in numeric order, then any other names in byte order.
    files.sort_by(|a, b| {
        let key = |s: &str| s.parse::<u64>().map_or((1, 0), |n| (0, n));
        key(&a.0).cmp(&key(&b.0)).then_with(|| a.0.cmp(&b.0))
    });
    Ok(files)
}

/// Reads one VM file onto the grid window `[lo, hi)`; `None` (with a warning) when it has no
/// measured row or no grid point in the window.
fn read_vm(id: &str, path: &Path, lo: i64, hi: i64) -> Result<Option<VmSeries>> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let p = parse_file(path, &text)?;
    let Some((cores, mhz, mem_mib)) = p.size else {
        tracing::warn!(file = %path.display(), "no row with provisioned CPU; VM left out");
        return Ok(None);
    };
    let Some((start_s, values)) = resample(&p.records, lo, hi) else {
        tracing::info!(file = %path.display(), "no grid point in the window; VM left out");
        return Ok(None);
    };
    Ok(Some(VmSeries {
        spec: VmSpec {
            id: id.to_string(),
            vcpus: cores,
            cpu_per_vcpu: mhz / f64::from(cores),
            mem_mib,
            vm_type: None,
        },
        start_s,
        values,
    }))
}

/// A month read whole: the inventory and one series per VM, same order.
#[derive(Debug, Clone, PartialEq)]
pub struct Month {
    /// VMs with their sizes, `cpu_unit = mhz`.
    pub inventory: Inventory,
    /// The VMs' grid series.
    pub series: Vec<VmSeries>,
}

/// Reads a month folder: grid points in `[from, until)` (UTC midnights), the first `max_vms` VMs
/// in id order that have rows there (all when `None`).
///
/// VMs with no measured row at all, or no grid point in the window, are left out with a log line.
///
/// # Errors
/// As [`month_files`] and [`parse_file`]; the first error in file order is returned.
pub fn read_month(
    dir: &Path,
    max_vms: Option<usize>,
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
) -> Result<Month> {
    let files = month_files(dir)?;
    let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc().timestamp();
    let lo = from.map_or(i64::MIN / 2, midnight);
    let hi = until.map_or(i64::MAX / 2, midnight);
    let want = max_vms.unwrap_or(usize::MAX);
    let mut series: Vec<VmSeries> = Vec::new();
    // Parse in chunks, in parallel within a chunk, until `want` VMs are kept: `--max-vms N`
    // reads only as many files as it needs.
    for chunk in files.chunks(64) {
        if series.len() >= want {
            break;
        }
        let parsed: Vec<Result<Option<VmSeries>>> = chunk
            .par_iter()
            .map(|(id, path)| read_vm(id, path, lo, hi))
            .collect();
        for vm in parsed {
            series.extend(vm?);
        }
    }
    series.truncate(want);
    if series.is_empty() {
        return Err(ImportError::Input {
            path: dir.to_path_buf(),
            message: "no VM has measured rows in the window".into(),
        });
    }
    let window = match (from, until) {
        (None, None) => "whole month".to_string(),
        (f, u) => format!(
            "grid points in [{}, {})",
            f.map_or("start".into(), |d| d.to_string()),
            u.map_or("end".into(), |d| d.to_string())
        ),
    };
    let inventory = Inventory {
        cpu_unit: CpuUnit::Mhz,
        vms: series.iter().map(|s| s.spec.clone()).collect(),
        hosts: Vec::new(),
        source: Some(format!(
            "bitbrains gwa-t-12 month folder {:?}: {} VMs (ids {}..{} in numeric order), {window}; \
             resampled to 300 s by sample and hold (<= {HOLD_S} s)",
            dir.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            series.len(),
            series.first().map_or("", |s| s.spec.id.as_str()),
            series.last().map_or("", |s| s.spec.id.as_str()),
        )),
    };
    Ok(Month { inventory, series })
}

/// Imports a month folder to `dest`.
///
/// # Errors
/// As [`read_month`], plus write errors; `dest` is untouched on any error.
pub fn import(
    dir: &Path,
    dest: &Path,
    max_vms: Option<usize>,
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
    zstd_level: i32,
) -> Result<ImportSummary> {
    let month = read_month(dir, max_vms, from, until)?;
    let vms = month.series.len();
    let rows = write_vms(
        dest,
        &month.inventory,
        zstd_level,
        month.series.iter().map(VmSeries::rows),
    )?;
    Ok(ImportSummary {
        path: dest.to_path_buf(),
        rows,
        vms,
    })
}

/// Runs `keel-trainer import bitbrains`.
///
/// # Errors
/// As [`import`].
pub fn run(args: &BitbrainsArgs) -> Result<ImportSummary> {
    import(
        &args.input,
        &args.output,
        args.max_vms,
        args.from,
        args.until,
        args.zstd_level,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n";

    fn row(ts: i64, cores: u32, pct: f64) -> String {
        let mhz = 2000.0 * f64::from(cores);
        format!(
            "{ts};\t{cores};\t{mhz};\t{};\t{pct};\t1048576.0;\t524288.0;\t1.5;\t2.5;\t3.5;\t4.5\n",
            mhz * pct / 100.0
        )
    }

    fn rec(ts_s: i64, u: f64) -> Record {
        Record {
            ts_s,
            values: Some(Measured {
                cpu_util: u,
                cpu_mhz: 0.0,
                mem_used_mib: 0.0,
                disk_read: 0.0,
                disk_write: 0.0,
                net_rx: 0.0,
                net_tx: 0.0,
            }),
        }
    }

    fn utils(v: &[Option<Measured>]) -> Vec<Option<f64>> {
        v.iter().map(|m| m.map(|m| m.cpu_util)).collect()
    }

    #[test]
    fn parses_rows_units_and_placeholders() {
        let text = format!(
            "{HEADER}{}{}{}",
            row(600, 2, 50.0),
            row(900, 0, 10.0),
            row(1200, 2, 25.0)
        );
        let p = parse_file(Path::new("1.csv"), &text).unwrap();
        assert_eq!(p.records.len(), 3);
        let m = p.records[0].values.unwrap();
        assert_eq!(m.cpu_util, 0.5);
        assert_eq!(m.cpu_mhz, 2000.0);
        assert_eq!(m.mem_used_mib, 512.0);
        assert_eq!(
            (m.disk_read, m.disk_write, m.net_rx, m.net_tx),
            (1.5, 2.5, 3.5, 4.5)
        );
        assert_eq!(p.records[1].values, None);
        assert_eq!(p.size, Some((2, 4000.0, 1024.0)));
    }

    #[test]
    fn bad_rows_name_the_line() {
        let cases = [
            (
                format!("{HEADER}{}", row(600, 2, 5.0).replace(";\t", ",")),
                "1.csv:2: 1 ';'-separated fields",
            ),
            (
                format!(
                    "{HEADER}{}{}",
                    row(600, 2, 5.0),
                    row(900, 2, 5.0).replacen("900", "x", 1)
                ),
                "1.csv:3: field 1 (Timestamp): \"x\" is not a number",
            ),
            (
                format!("{HEADER}{}900;\t2\n", row(600, 2, 5.0)),
                "1.csv:3: 2 ';'-separated fields",
            ),
            (
                format!("{HEADER}{}{}", row(900, 2, 5.0), row(600, 2, 5.0)),
                "1.csv:3: timestamp 600 goes backwards (line 2 has 900)",
            ),
            (
                format!("{HEADER}{}", row(600, 2, 5.0).trim_end()),
                "1.csv:2: last line has no newline",
            ),
            (HEADER.replace(";\t", ","), "1.csv:1: header has 1"),
            (HEADER.to_string(), "1.csv:2: no data rows"),
        ];
        for (text, want) in cases {
            let e = parse_file(Path::new("1.csv"), &text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn sample_and_hold_on_the_grid() {
        // Phase 10 s after the grid, jitter, a 10-minute gap, a duplicate and a 2-minute pair.
        let r = [
            rec(310, 0.1),
            rec(610, 0.2),
            rec(895, 0.3), // early: still the latest at 900
            rec(1210, 0.4),
            rec(2100, 0.5), // gap: 1500 holds 1210 (290 s), 1800 is 590 s stale -> null
            rec(2100, 0.55), // same timestamp: the later row wins
            rec(2290, 0.6),
            rec(2410, 0.7),
        ];
        let (start, v) = resample(&r, i64::MIN / 2, i64::MAX / 2).unwrap();
        assert_eq!(start, 600);
        assert_eq!(
            utils(&v),
            vec![
                Some(0.1),
                Some(0.3),
                Some(0.3),
                Some(0.4),
                None,
                Some(0.55),
                Some(0.6)
            ]
        );
        // Clipped to a window: grid points 1200 and 1500 only.
        let (start, v) = resample(&r, 1200, 1800).unwrap();
        assert_eq!(start, 1200);
        assert_eq!(utils(&v), vec![Some(0.3), Some(0.4)]);
        assert!(resample(&r, 3000, 4000).is_none());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(body in "[0-9e;\t .,x-]{0,200}(\n[0-9e;\t .,x-]{0,120}){0,4}\n?") {
            let text = format!("{HEADER}{body}");
            for t in [&text, &body] {
                match parse_file(Path::new("p.csv"), t) {
                    Ok(p) => proptest::prop_assert!(!p.records.is_empty()),
                    Err(e) => proptest::prop_assert!(e.to_string().starts_with("p.csv:")),
                }
            }
        }

        /// Each grid value is the latest record at or before the grid point when at most HOLD_S
        /// old, else null; the grid covers first..=last record on multiples of STEP_S.
        #[test]
        fn resample_is_sample_and_hold(
            t0 in 1_000_000_i64..2_000_000,
            steps in proptest::collection::vec(0_i64..1000, 1..60),
        ) {
            let mut t = t0;
            let mut r = vec![rec(t, 0.0)];
            for (i, s) in steps.iter().enumerate() {
                t += s;
                r.push(rec(t, (i + 1) as f64));
            }
            let Some((start, v)) = resample(&r, i64::MIN / 2, i64::MAX / 2) else {
                // Only when no grid point lies between the first and last record.
                proptest::prop_assert!(t0.div_euclid(STEP_S) == t.div_euclid(STEP_S) && t0 % STEP_S != 0);
                return Ok(());
            };
            proptest::prop_assert_eq!(start % STEP_S, 0);
            proptest::prop_assert!(start >= t0 && start - t0 < STEP_S);
            let end = start + (v.len() as i64 - 1) * STEP_S;
            proptest::prop_assert!(end <= t && t - end < STEP_S);
            for (k, got) in utils(&v).into_iter().enumerate() {
                let g = start + k as i64 * STEP_S;
                let want = r
                    .iter()
                    .rev()
                    .find(|x| x.ts_s <= g)
                    .filter(|x| g - x.ts_s <= HOLD_S)
                    .and_then(|x| x.values.map(|m| m.cpu_util));
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn absurd_timestamps_are_errors_not_panics() {
        let far = format!("{HEADER}{}", row(1_000_000_000_000_000_000, 1, 5.0));
        let e = parse_file(Path::new("1.csv"), &far)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1.csv:2: field 1 (Timestamp)") && e.contains("9999"),
            "{e}"
        );
        let long = format!("{HEADER}{}{}", row(0, 1, 5.0), row(1_372_629_804, 1, 5.0));
        let e = parse_file(Path::new("1.csv"), &long)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1.csv:3: timestamps span 15886 days"), "{e}");
    }

    #[test]
    fn milliseconds_are_read_as_such() {
        let text = format!("{HEADER}{}", row(1_372_629_804_000, 1, 5.0));
        let p = parse_file(Path::new("1.csv"), &text).unwrap();
        assert_eq!(p.records[0].ts_s, 1_372_629_804);
    }
}
