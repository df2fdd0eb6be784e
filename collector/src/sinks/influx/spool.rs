//! The on-disk spool: batches the database has not acknowledged, one file per batch.
//!
//! A batch is written to `.<seq>.tmp`, fsynced, renamed to `<seq>.lp` (20-digit sequence number,
//! so names sort in write order) and the directory fsynced; a crash therefore leaves either the
//! whole batch or nothing under a `.lp` name, and stale `.tmp` files are removed on open. Files
//! are replayed oldest first and deleted only after a 2xx. When the spool would exceed its byte
//! cap, the oldest files are deleted and their lines counted as dropped: this is the only place
//! the collector drops data it has accepted for InfluxDB, and every such drop is logged.
//! No crate needed: the directory is easy to inspect and to empty by hand.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Sequence number → file size, for every `.lp` file; the map's order is the replay order.
    files: BTreeMap<u64, u64>,
    bytes: u64,
    next_seq: u64,
    dropped_lines: u64,
    dropped_batches: u64,
}

fn sync_dir(dir: &Path) {
    // Persists renames and unlinks; not every filesystem allows fsync on a directory.
    if let Ok(d) = File::open(dir) {
        _ = d.sync_all();
    }
}

impl Spool {
    /// Opens (creating if needed) the spool at `dir` with a cap of `max_bytes`.
    ///
    /// # Errors
    /// I/O errors creating or listing the directory.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                tracing::warn!(file = %entry.path().display(), "Removing an incomplete spool file left by a crash.");
                _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(seq) = name.strip_suffix(".lp").and_then(|s| s.parse::<u64>().ok()) {
                let len = entry
                    .metadata()
                    .map_err(|e| Error::io(entry.path(), e))?
                    .len();
                files.insert(seq, len);
            }
        }
        let bytes = files.values().sum();
        let next_seq = files.keys().next_back().map_or(0, |s| s + 1);
        if !files.is_empty() {
            tracing::info!(dir = %dir.display(), batches = files.len(), bytes, "Spool holds batches from before; replaying them first.");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            files,
            bytes,
            next_seq,
            dropped_lines: 0,
            dropped_batches: 0,
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.lp"))
    }

    fn write_file(&self, seq: u64, body: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!(".{seq:020}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(body).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        let dest = self.path(seq);
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Appends a batch of lines (each without its newline). Drops the oldest batches first if
    /// the cap would be exceeded; a batch larger than the whole cap is itself dropped.
    /// Returns the number of lines dropped to make room.
    ///
    /// # Errors
    /// I/O errors writing the batch (the batch is then not in the spool).
    pub fn push(&mut self, lines: &[String]) -> Result<u64> {
        if lines.is_empty() {
            return Ok(0);
        }
        let body = join(lines);
        let len = body.len() as u64;
        if len > self.max_bytes {
            self.count_drop(lines.len() as u64, "a single batch exceeds the spool cap");
            return Ok(lines.len() as u64);
        }
        let mut dropped = 0;
        while self.bytes + len > self.max_bytes {
            let Some(seq) = self.oldest() else { break };
            let n = self.read(seq).map_or(0, |l| l.len() as u64);
            self.remove(seq)?;
            self.count_drop(n, "spool full");
            dropped += n;
        }
        let seq = self.next_seq;
        self.write_file(seq, body.as_bytes())?;
        self.next_seq += 1;
        self.files.insert(seq, len);
        self.bytes += len;
        Ok(dropped)
    }

    fn count_drop(&mut self, lines: u64, why: &str) {
        self.dropped_lines += lines;
        self.dropped_batches += 1;
        tracing::warn!(
            lines,
            total_dropped_lines = self.dropped_lines,
            cap_bytes = self.max_bytes,
            reason = why,
            "Dropped the oldest spooled batch."
        );
    }

    /// The oldest batch's sequence number.
    pub fn oldest(&self) -> Option<u64> {
        self.files.keys().next().copied()
    }

    /// Reads a batch's lines.
    ///
    /// # Errors
    /// I/O errors; a file that is not UTF-8 is an error naming it.
    pub fn read(&self, seq: u64) -> Result<Vec<String>> {
        let p = self.path(seq);
        let text = fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Deletes a batch (after the database acknowledged it, or to drop it).
    ///
    /// # Errors
    /// I/O errors other than "already gone".
    pub fn remove(&mut self, seq: u64) -> Result<()> {
        let p = self.path(seq);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
        if let Some(len) = self.files.remove(&seq) {
            self.bytes -= len;
        }
        sync_dir(&self.dir);
        Ok(())
    }

    /// Rewrites a batch with the lines still to send (after part of it was delivered).
    ///
    /// # Errors
    /// I/O errors; the old file stays in place on failure.
    pub fn replace(&mut self, seq: u64, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return self.remove(seq);
        }
        let body = join(lines);
        self.write_file(seq, body.as_bytes())?;
        let len = body.len() as u64;
        if let Some(old) = self.files.insert(seq, len) {
            self.bytes -= old;
        }
        self.bytes += len;
        Ok(())
    }

    /// Batches in the spool.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the spool is empty.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes in the spool.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Lines dropped at the cap since open.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }
}

fn join(lines: &[String]) -> String {
    let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(tag: u32, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m,t={tag} v={i}i 1")).collect()
    }

    #[test]
    fn replays_in_order_across_reopen_and_ignores_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(&batch(1, 3)).unwrap();
        s.push(&batch(2, 2)).unwrap();
        std::fs::write(dir.path().join(".00000000000000000009.tmp"), "partial").unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 2);
        assert!(!dir.path().join(".00000000000000000009.tmp").exists());
        let first = s.oldest().unwrap();
        assert_eq!(s.read(first).unwrap(), batch(1, 3));
        s.remove(first).unwrap();
        s.push(&batch(3, 1)).unwrap();
        let second = s.oldest().unwrap();
        assert_eq!(s.read(second).unwrap(), batch(2, 2));
        s.remove(second).unwrap();
        assert_eq!(s.read(s.oldest().unwrap()).unwrap(), batch(3, 1));
    }

    #[test]
    fn cap_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let one = join(&batch(1, 4)).len() as u64;
        let mut s = Spool::open(dir.path(), one * 2).unwrap();
        assert_eq!(s.push(&batch(1, 4)).unwrap(), 0);
        assert_eq!(s.push(&batch(2, 4)).unwrap(), 0);
        assert_eq!(s.push(&batch(3, 4)).unwrap(), 4);
        assert_eq!(s.dropped_lines(), 4);
        assert_eq!(s.len(), 2);
        assert_eq!(s.read(s.oldest().unwrap()).unwrap(), batch(2, 4));
        assert!(s.bytes() <= one * 2);
    }

    proptest! {
        /// Whatever is pushed comes out in order, minus exactly the counted drops, and the byte
        /// total never exceeds the cap.
        #[test]
        fn spool_matches_queue_model(sizes in proptest::collection::vec(1usize..6, 1..20), cap in 40u64..400) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open(dir.path(), cap).unwrap();
            let mut model: std::collections::VecDeque<Vec<String>> = Default::default();
            let mut dropped = 0u64;
            for (i, n) in sizes.iter().enumerate() {
                let b = batch(i as u32, *n);
                let len = join(&b).len() as u64;
                if len > cap { dropped += b.len() as u64; s.push(&b).unwrap(); continue; }
                while model.iter().map(|b| join(b).len() as u64).sum::<u64>() + len > cap {
                    dropped += model.pop_front().unwrap().len() as u64;
                }
                model.push_back(b.clone());
                s.push(&b).unwrap();
                prop_assert!(s.bytes() <= cap);
            }
            prop_assert_eq!(s.dropped_lines(), dropped);
            while let Some(seq) = s.oldest() {
                prop_assert_eq!(s.read(seq).unwrap(), model.pop_front().unwrap());
                s.remove(seq).unwrap();
            }
            prop_assert!(model.is_empty());
        }
    }
}
