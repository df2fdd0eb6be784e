//! The Parquet sink: the canonical schema through `keel_core::parquet_io::SampleWriter`
//! (arrow-rs, zstd), one file per rotation period.
//!
//! Rows of a file accumulate under a hidden temporary name (`.<name>.<pid>.tmp`) and appear
//! under their final name `keel-<host>-<first ts ms>.parquet` only when the file is complete
//! (closed, fsynced, renamed). A crash (even SIGKILL) therefore loses at most the rows of the
//! open rotation period and never leaves a partial file under a `.parquet` name; the next start
//! removes the stale temporary files. Shorter rotation bounds the loss; longer makes fewer files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_core::inventory::Inventory;
use keel_core::parquet_io::{SampleWriter, WriteOptions};
use keel_core::schema::Sample;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::internal_events::{ParquetFileWritten, Stats};

/// Default rotation period.
pub const DEFAULT_ROTATE: Duration = Duration::from_secs(600);

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
}

/// The sink.
#[derive(Debug)]
pub struct ParquetSink {
    settings: ParquetSettings,
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

impl ParquetSink {
    /// Creates the directory and cleans up after a crash.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(settings: ParquetSettings, stats: Arc<Stats>) -> Result<Self> {
        std::fs::create_dir_all(&settings.dir).map_err(|e| Error::io(&settings.dir, e))?;
        remove_stale_temporaries(&settings.dir);
        Ok(Self {
            settings,
            open: None,
            stats,
        })
    }

    fn start(&self, ts_ms: i64) -> Result<Open> {
        let host = safe_name(&self.settings.host_id);
        let mut dest = self
            .settings
            .dir
            .join(format!("keel-{host}-{ts_ms}.parquet"));
        let mut k = 1;
        while dest.exists() {
            dest = self
                .settings
                .dir
                .join(format!("keel-{host}-{ts_ms}-{k}.parquet"));
            k += 1;
        }
        let inventory = Inventory {
            source: Some(format!("keel-collector on {}", self.settings.host_id)),
            ..Inventory::default()
        };
        let opts = WriteOptions {
            zstd_level: self.settings.zstd_level,
            ..WriteOptions::default()
        };
        Ok(Open {
            writer: SampleWriter::create(&dest, &inventory, opts)?,
            opened: Instant::now(),
        })
    }

    /// Appends a round's rows; finishes the file when its rotation period is over.
    ///
    /// # Errors
    /// Parquet or I/O errors (the open file is abandoned; the next round starts a new one).
    pub fn write(&mut self, ts_ms: i64, samples: &[Sample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut open = match self.open.take() {
            Some(o) => o,
            None => self.start(ts_ms)?,
        };
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
    }
}
