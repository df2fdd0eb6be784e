//! The Parquet sink: the canonical schema through `keel_core::parquet_io::SampleWriter`
//! (arrow-rs, zstd), one file per rotation period, with a write-ahead log beside the open file.
//!
//! Rows of a file accumulate under a hidden temporary name (`.<name>.<pid>.tmp`) and appear
//! under their final name `keel-<host>-<first ts ms>.parquet` only when the file is complete
//! (closed, fsynced, renamed), so no partial file ever carries a `.parquet` name. A Parquet file
//! cannot be read before its footer is written, so every round is also appended, as one line, to
//! the write-ahead log `.<name>.wal` before the round counts as written: one `write` per round
//! (a SIGKILL cannot lose what the kernel has), `fdatasync` at most every [`WAL_SYNC`] (a power
//! cut loses at most that). The log is deleted once its file is finished. The next start folds
//! every log it finds into the Parquet file it stands for (unless that file was finished and
//! only the deletion was missed) and removes stale temporary files. A crash therefore loses at
//! most the round being written: a torn last line is that round, and it is left out whole.
//!
//! Log lines are JSON (`{"ts_ms":…,"rows":[{"host":…,"vm":…,"m":[…]}]}`) with each metric as
//! the bit pattern of its `f64` (`u64`), so values come back bit for bit.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_core::inventory::Inventory;
use keel_core::parquet_io::{SampleWriter, WriteOptions};
use keel_core::schema::{Metrics, Sample, METRIC_COLUMNS};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::internal_events::{ParquetFileWritten, Stats};

/// Default rotation period.
pub const DEFAULT_ROTATE: Duration = Duration::from_secs(600);
/// Longest time between two `fdatasync`s of the write-ahead log.
pub const WAL_SYNC: Duration = Duration::from_secs(2);

/// Resolved Parquet sink settings.
#[derive(Debug, Clone)]
pub struct ParquetSettings {
    /// Output directory.
    pub dir: PathBuf,
    /// Start a new file after this long.
    pub rotate: Duration,
    /// zstd level.
    pub zstd_level: i32,
    /// Host id (in file names and the inventory's `source`).
    pub host_id: String,
}

#[derive(Debug)]
struct Open {
    writer: SampleWriter,
    opened: Instant,
    /// The write-ahead log of this file's rows (appended before the Parquet writer sees them).
    wal: File,
    wal_path: PathBuf,
    synced: Instant,
}

/// One canonical row in the write-ahead log.
#[derive(Debug, Serialize, Deserialize)]
struct WalRow {
    host: Option<String>,
    vm: Option<String>,
    /// Metric columns in [`METRIC_COLUMNS`] order, as `f64::to_bits` (exact through JSON).
    m: Vec<Option<u64>>,
}

/// One round in the write-ahead log.
#[derive(Debug, Serialize, Deserialize)]
struct WalRound {
    ts_ms: i64,
    rows: Vec<WalRow>,
}

fn wal_line(ts_ms: i64, samples: &[Sample]) -> String {
    let round = WalRound {
        ts_ms,
        rows: samples
            .iter()
            .map(|s| WalRow {
                host: s.host_id.clone(),
                vm: s.vm_id.clone(),
                m: (0..METRIC_COLUMNS.len())
                    .map(|i| s.metrics.get(i).map(f64::to_bits))
                    .collect(),
            })
            .collect(),
    };
    let mut line = serde_json::to_string(&round).expect("a WAL round always serialises");
    line.push('\n');
    line
}

/// What [`read_wal`] found.
#[derive(Debug, Default, PartialEq)]
struct WalContents {
    rows: Vec<Sample>,
    rounds: usize,
    /// The last line was incomplete or unreadable: the round a crash interrupted.
    torn: bool,
    /// 1-based numbers of unreadable lines before the last (left out; never expected).
    bad_lines: Vec<usize>,
}

/// The rows of a write-ahead log, oldest first.
fn read_wal(text: &str) -> WalContents {
    let mut out = WalContents::default();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, l) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        let parsed = serde_json::from_str::<WalRound>(l.trim_end())
            .ok()
            .filter(|_| l.ends_with('\n'));
        let Some(r) = parsed else {
            if last {
                out.torn = true;
            } else {
                out.bad_lines.push(i + 1);
            }
            continue;
        };
        out.rounds += 1;
        for row in r.rows {
            let mut metrics = Metrics::default();
            for (i, v) in row.m.iter().enumerate().take(METRIC_COLUMNS.len()) {
                metrics.set(i, v.map(f64::from_bits));
            }
            out.rows.push(Sample {
                ts_ms: r.ts_ms,
                host_id: row.host,
                vm_id: row.vm,
                metrics,
            });
        }
    }
    out
}

/// The sink.
#[derive(Debug)]
pub struct ParquetSink {
    settings: ParquetSettings,
    /// The file being written and its log; `None` between a finished file and the next round.
    open: Option<Open>,
    stats: Arc<Stats>,
}

/// Removes temporary files a killed collector left behind in `dir`; returns how many.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".keel-") && name.ends_with(".tmp") {
            tracing::warn!(file = %e.path().display(), "Removing an incomplete Parquet file left by a crash.");
            if std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
    }
    n
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The write-ahead log of the Parquet file `dest`.
fn wal_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.wal"))
}

/// The Parquet file a write-ahead log stands for (`.<name>.wal` → `<name>`).
fn wal_dest(wal: &Path) -> Option<PathBuf> {
    let name = wal.file_name()?.to_str()?;
    let dest = name.strip_prefix('.')?.strip_suffix(".wal")?;
    dest.ends_with(".parquet").then(|| wal.with_file_name(dest))
}

fn sync_dir(dir: &Path) {
    // Persists renames and unlinks; not every filesystem allows fsync on a directory.
    if let Ok(d) = File::open(dir) {
        _ = d.sync_all();
    }
}

impl ParquetSink {
    /// Creates the directory and cleans up after a crash: stale temporary files are removed and
    /// write-ahead logs are folded into the Parquet files they stand for.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(settings: ParquetSettings, stats: Arc<Stats>) -> Result<Self> {
        std::fs::create_dir_all(&settings.dir).map_err(|e| Error::io(&settings.dir, e))?;
        remove_stale_temporaries(&settings.dir);
        let sink = Self {
            settings,
            open: None,
            stats,
        };
        sink.recover();
        Ok(sink)
    }

    /// Folds every write-ahead log in the directory into its Parquet file. A log that cannot be
    /// folded is kept (and logged) so that nothing is deleted that was not written elsewhere.
    fn recover(&self) {
        let Ok(rd) = std::fs::read_dir(&self.settings.dir) else {
            return;
        };
        let mut wals: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| wal_dest(p).is_some())
            .collect();
        wals.sort();
        for wal in wals {
            if let Err(e) = self.recover_one(&wal) {
                tracing::error!(file = %wal.display(), error = %e, "Cannot fold a write-ahead log into Parquet; keeping it for the next start.");
            }
        }
    }

    fn recover_one(&self, wal: &Path) -> Result<()> {
        let dest = wal_dest(wal).expect("only logs with a destination are listed");
        if dest.exists() {
            // The file was finished; only the deletion of its log was missed.
            std::fs::remove_file(wal).map_err(|e| Error::io(wal, e))?;
            return Ok(());
        }
        let text = std::fs::read(wal).map_err(|e| Error::io(wal, e))?;
        let c = read_wal(&String::from_utf8_lossy(&text));
        if !c.bad_lines.is_empty() {
            tracing::error!(file = %wal.display(), lines = ?c.bad_lines, "Unreadable lines in a write-ahead log; leaving them out.");
        }
        if !c.rows.is_empty() {
            let mut w = SampleWriter::create(&dest, &self.inventory(), self.options())?;
            w.write(&c.rows)?;
            let path = w.finish()?;
            tracing::info!(
                file = %path.display(),
                rounds = c.rounds,
                rows = c.rows.len(),
                torn_last_round = c.torn,
                "Recovered rows from a write-ahead log."
            );
            ParquetFileWritten {
                path: &path,
                rows: c.rows.len() as u64,
            }
            .emit(&self.stats);
        }
        std::fs::remove_file(wal).map_err(|e| Error::io(wal, e))?;
        sync_dir(&self.settings.dir);
        Ok(())
    }

    fn inventory(&self) -> Inventory {
        Inventory {
            source: Some(format!("keel-collector on {}", self.settings.host_id)),
            ..Inventory::default()
        }
    }

    fn options(&self) -> WriteOptions {
        WriteOptions {
            zstd_level: self.settings.zstd_level,
            ..WriteOptions::default()
        }
    }

    fn start(&self, ts_ms: i64) -> Result<Open> {
        let host = safe_name(&self.settings.host_id);
        let mut dest = self
            .settings
            .dir
            .join(format!("keel-{host}-{ts_ms}.parquet"));
        let mut k = 1;
        while dest.exists() || wal_path(&dest).exists() {
            dest = self
                .settings
                .dir
                .join(format!("keel-{host}-{ts_ms}-{k}.parquet"));
            k += 1;
        }
        let wal_path = wal_path(&dest);
        let wal = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&wal_path)
            .map_err(|e| Error::io(&wal_path, e))?;
        sync_dir(&self.settings.dir);
        Ok(Open {
            writer: SampleWriter::create(&dest, &self.inventory(), self.options())?,
            opened: Instant::now(),
            wal,
            wal_path,
            synced: Instant::now(),
        })
    }

    /// Appends a round's rows (to the write-ahead log first, then to the Parquet writer);
    /// finishes the file when its rotation period is over.
    ///
    /// # Errors
    /// Parquet or I/O errors (the open file is abandoned, its log kept for the next start; the
    /// next round starts a new file).
    pub fn write(&mut self, ts_ms: i64, samples: &[Sample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut open = match self.open.take() {
            Some(o) => o,
            None => self.start(ts_ms)?,
        };
        open.wal
            .write_all(wal_line(ts_ms, samples).as_bytes())
            .map_err(|e| Error::io(&open.wal_path, e))?;
        if open.synced.elapsed() >= WAL_SYNC {
            open.wal
                .sync_data()
                .map_err(|e| Error::io(&open.wal_path, e))?;
            open.synced = Instant::now();
        }
        open.writer.write(samples)?;
        if open.opened.elapsed() >= self.settings.rotate {
            self.finish_file(open)?;
        } else {
            self.open = Some(open);
        }
        Ok(())
    }

    fn finish_file(&self, open: Open) -> Result<()> {
        let rows = open.writer.rows() as u64;
        let path = open.writer.finish()?;
        drop(open.wal);
        std::fs::remove_file(&open.wal_path).map_err(|e| Error::io(&open.wal_path, e))?;
        sync_dir(&self.settings.dir);
        ParquetFileWritten { path: &path, rows }.emit(&self.stats);
        Ok(())
    }

    /// Finishes the open file, if any (shutdown).
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn flush(&mut self) -> Result<()> {
        match self.open.take() {
            Some(o) => self.finish_file(o),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::schema::Metrics;

    fn row(ts: i64) -> Sample {
        Sample {
            ts_ms: ts,
            host_id: Some("h/1".into()),
            vm_id: None,
            metrics: Metrics {
                cpu_util: Some(0.5),
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn rotates_and_reads_back_with_core_reader() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".keel-x-1.parquet.99.tmp"), b"junk").unwrap();
        let stats = Arc::new(Stats::default());
        let mut sink = ParquetSink::new(
            ParquetSettings {
                dir: dir.path().into(),
                rotate: Duration::ZERO,
                zstd_level: 3,
                host_id: "h/1".into(),
            },
            Arc::clone(&stats),
        )
        .unwrap();
        sink.write(1000, &[row(1000)]).unwrap();
        sink.write(2000, &[row(2000)]).unwrap();
        sink.flush().unwrap();
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].ends_with("keel-h_1-1000.parquet"));
        let back = keel_core::parquet_io::read_samples(&files[1], None).unwrap();
        assert_eq!(back.samples, vec![row(2000)]);
        assert_eq!(stats.snapshot()[3].1, 2);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 2,
            "no log is left beside finished files"
        );
    }

    fn sink(dir: &Path, stats: &Arc<Stats>) -> ParquetSink {
        ParquetSink::new(
            ParquetSettings {
                dir: dir.into(),
                rotate: Duration::from_secs(3600),
                zstd_level: 3,
                host_id: "h/1".into(),
            },
            Arc::clone(stats),
        )
        .unwrap()
    }

    fn odd_row(ts: i64) -> Sample {
        let mut r = row(ts);
        r.vm_id = Some("vm \"1\"".into());
        r.metrics.net_rx_kib_s = Some(0.1 + 0.2);
        r.metrics.psi_io_full = Some(f64::MIN_POSITIVE);
        r
    }

    #[test]
    fn a_killed_writer_is_recovered_from_its_log_bit_for_bit_minus_the_torn_round() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let mut s = sink(dir.path(), &stats);
        s.write(1000, &[row(1000), odd_row(1000)]).unwrap();
        s.write(2000, &[row(2000)]).unwrap();
        let wal = s.open.as_ref().unwrap().wal_path.clone();
        // A round torn by the kill: half a line at the end of the log.
        let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
        let torn = wal_line(3000, &[row(3000)]);
        f.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
        // The kill: nothing is finished, the Parquet file stays a temporary.
        std::mem::forget(s);
        let stats = Arc::new(Stats::default());
        let s = sink(dir.path(), &stats);
        assert!(!wal.exists());
        let files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with("keel-h_1-1000.parquet"));
        let back = keel_core::parquet_io::read_samples(&files[0], None).unwrap();
        assert_eq!(back.samples, vec![row(1000), odd_row(1000), row(2000)]);
        assert_eq!(
            stats
                .parquet_rows_written
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        drop(s);
    }

    #[test]
    fn a_log_whose_file_was_finished_is_only_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let mut s = sink(dir.path(), &stats);
        s.write(1000, &[row(1000)]).unwrap();
        let wal = s.open.as_ref().unwrap().wal_path.clone();
        let keep = std::fs::read(&wal).unwrap();
        s.flush().unwrap();
        // The crash came between the rename of the file and the deletion of its log.
        std::fs::write(&wal, keep).unwrap();
        let _s = sink(dir.path(), &stats);
        assert!(!wal.exists());
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn wal_reader_reports_torn_ends_and_bad_lines() {
        let a = wal_line(1, &[row(1)]);
        let b = wal_line(2, &[row(2)]);
        let c = read_wal(&format!("{a}garbage\n{b}{}", &a[..5]));
        assert_eq!(c.rows, vec![row(1), row(2)]);
        assert_eq!((c.rounds, c.torn, c.bad_lines), (2, true, vec![2]));
        let c = read_wal(&format!("{a}{b}"));
        assert_eq!((c.rounds, c.torn), (2, false));
        assert_eq!(read_wal(""), WalContents::default());
    }
}
