//! The on-disk spool: every line the collector has taken for the database and the database has
//! not acknowledged, in order.
//!
//! Each round's lines are appended to the journal (`journal.lp.open`) with one `write`, followed
//! by a `#` marker line that closes the round, before the round is counted as taken: a SIGKILL
//! cannot lose what the kernel has, and the journal is `fdatasync`ed at most every
//! [`JOURNAL_SYNC`]. Every flush interval (or when it holds a batch's worth of lines) the journal
//! is sealed into a batch: fsynced, renamed to `<seq>.lp` (20-digit sequence number, so names
//! sort in write order) and the directory fsynced. Batches are sent oldest first and deleted
//! only after a 2xx. On open, a journal left by a crash is cut after its last marker (a round
//! the crash interrupted is left out whole) and sealed; stale `.tmp` files are removed. When the
//! spool would exceed its byte cap, the oldest batches are deleted and their lines counted as
//! dropped: this is the only place the collector drops data it has accepted for InfluxDB, and
//! every such drop is logged. No crate needed: the directory is easy to inspect and to empty by
//! hand.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// File name of the journal (lines not yet sealed into a batch).
pub const JOURNAL: &str = "journal.lp.open";
/// Longest time between two `fdatasync`s of the journal.
pub const JOURNAL_SYNC: Duration = Duration::from_secs(2);
/// The line that closes each round in the journal (a line-protocol comment; never sent).
const MARKER: &str = "#\n";

/// The open journal.
#[derive(Debug)]
struct Journal {
    file: File,
    bytes: u64,
    lines: usize,
    opened: Instant,
    synced: Instant,
}

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Sequence number → file size, for every `.lp` file; the map's order is the replay order.
    files: BTreeMap<u64, u64>,
    /// Bytes of the sealed batches (the journal's are in `journal`).
    bytes: u64,
    next_seq: u64,
    dropped_lines: u64,
    dropped_batches: u64,
    /// Lines appended but not yet sealed; `None` until the first append after a seal.
    journal: Option<Journal>,
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
        let mut spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            files,
            bytes,
            next_seq,
            dropped_lines: 0,
            dropped_batches: 0,
            journal: None,
        };
        spool.recover_journal()?;
        if !spool.files.is_empty() {
            tracing::info!(dir = %dir.display(), batches = spool.files.len(), bytes = spool.bytes, "Spool holds batches from before; replaying them first.");
        }
        Ok(spool)
    }

    /// Seals the journal a previous run left, cut after its last complete round.
    fn recover_journal(&mut self) -> Result<()> {
        let path = self.dir.join(JOURNAL);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let keep = complete_rounds(&text);
        if keep.len() < text.len() {
            tracing::info!(
                file = %path.display(),
                bytes = text.len() - keep.len(),
                "Leaving out the round a crash interrupted."
            );
        }
        let lines = keep
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
            .count();
        if lines > 0 {
            let seq = self.next_seq;
            self.write_file(seq, keep)?;
            self.next_seq += 1;
            self.files.insert(seq, keep.len() as u64);
            self.bytes += keep.len() as u64;
            tracing::info!(lines, "Sealed the journal a previous run left.");
        }
        fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir);
        Ok(())
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

    /// Appends one round's lines to the journal (one `write`, closed by a marker). Drops the
    /// oldest sealed batches first if the cap would be exceeded; a round larger than the whole
    /// cap is itself dropped. Returns the number of lines dropped to make room.
    ///
    /// # Errors
    /// I/O errors writing the journal (the lines are then not in the spool).
    pub fn append(&mut self, lines: &[String]) -> Result<u64> {
        if lines.is_empty() {
            return Ok(0);
        }
        let mut body = join(lines);
        body.push_str(MARKER);
        let len = body.len() as u64;
        if len > self.max_bytes {
            self.count_drop(lines.len() as u64, "a single round exceeds the spool cap");
            return Ok(lines.len() as u64);
        }
        let mut dropped = 0;
        while self.total_bytes() + len > self.max_bytes {
            if let Some(seq) = self.oldest() {
                let n = self.read(seq).map_or(0, |l| l.len() as u64);
                self.remove(seq)?;
                self.count_drop(n, "spool full");
                dropped += n;
            } else {
                // Only the journal is left and it is too large with this round: seal it so that
                // the next turn of the loop can drop it.
                self.seal()?;
                if self.files.is_empty() {
                    break;
                }
            }
        }
        let path = self.dir.join(JOURNAL);
        if self.journal.is_none() {
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            sync_dir(&self.dir);
            let now = Instant::now();
            self.journal = Some(Journal {
                file,
                bytes: 0,
                lines: 0,
                opened: now,
                synced: now,
            });
        }
        let j = self.journal.as_mut().expect("opened above");
        j.file
            .write_all(body.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        j.bytes += len;
        j.lines += lines.len();
        if j.synced.elapsed() >= JOURNAL_SYNC {
            j.file.sync_data().map_err(|e| Error::io(&path, e))?;
            j.synced = Instant::now();
        }
        Ok(dropped)
    }

    /// Seals the journal into the next batch (fsync, rename, fsync of the directory). Nothing to
    /// do when the journal is empty.
    ///
    /// # Errors
    /// I/O errors; the journal then stays open and is sealed by a later call.
    pub fn seal(&mut self) -> Result<()> {
        let Some(j) = self.journal.take() else {
            return Ok(());
        };
        let path = self.dir.join(JOURNAL);
        let sealed = j
            .file
            .sync_all()
            .map_err(|e| Error::io(&path, e))
            .and_then(|()| {
                let dest = self.path(self.next_seq);
                fs::rename(&path, &dest).map_err(|e| Error::io(&dest, e))
            });
        if let Err(e) = sealed {
            self.journal = Some(j);
            return Err(e);
        }
        sync_dir(&self.dir);
        self.files.insert(self.next_seq, j.bytes);
        self.bytes += j.bytes;
        self.next_seq += 1;
        Ok(())
    }

    /// Lines in the journal (appended, not yet sealed).
    pub fn journal_lines(&self) -> usize {
        self.journal.as_ref().map_or(0, |j| j.lines)
    }

    /// How long ago the journal was opened (`None` when it is empty).
    pub fn journal_age(&self) -> Option<Duration> {
        self.journal.as_ref().map(|j| j.opened.elapsed())
    }

    fn total_bytes(&self) -> u64 {
        self.bytes + self.journal.as_ref().map_or(0, |j| j.bytes)
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
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
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

    /// Sealed batches in the spool.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the spool holds no sealed batch and no journal.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.journal.is_none()
    }

    /// Bytes in the spool (batches and journal).
    pub fn bytes(&self) -> u64 {
        self.total_bytes()
    }

    /// Lines dropped at the cap since open.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }
}

/// The prefix of a journal that ends with its last round marker.
fn complete_rounds(text: &[u8]) -> &[u8] {
    let m = MARKER.as_bytes();
    let mut end = 0;
    let mut start = 0;
    for (i, _) in text.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        if &text[start..=i] == m {
            end = i + 1;
        }
        start = i + 1;
    }
    &text[..end]
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

    #[test]
    fn journal_seals_into_batches_and_a_torn_round_is_left_out_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&batch(1, 2)).unwrap();
        s.append(&batch(2, 1)).unwrap();
        assert_eq!((s.len(), s.journal_lines()), (0, 3));
        assert!(!s.is_empty());
        s.seal().unwrap();
        assert_eq!((s.len(), s.journal_lines()), (1, 0));
        let mut both = batch(1, 2);
        both.extend(batch(2, 1));
        assert_eq!(s.read(s.oldest().unwrap()).unwrap(), both);
        s.append(&batch(3, 2)).unwrap();
        s.append(&batch(4, 2)).unwrap();
        drop(s);
        // The crash tore round 5: its first line is in, the rest and its marker are not.
        let j = dir.path().join(JOURNAL);
        let mut f = std::fs::OpenOptions::new().append(true).open(&j).unwrap();
        f.write_all(b"m,t=5 v=0i 1\nm,t=5 v=").unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(!j.exists());
        assert_eq!(s.len(), 2);
        s.remove(s.oldest().unwrap()).unwrap();
        let mut both = batch(3, 2);
        both.extend(batch(4, 2));
        assert_eq!(s.read(s.oldest().unwrap()).unwrap(), both);
        // Sequence numbers go on after the recovered batch.
        s.append(&batch(6, 1)).unwrap();
        s.seal().unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn journal_counts_against_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let one = (join(&batch(1, 4)).len() + MARKER.len()) as u64;
        let mut s = Spool::open(dir.path(), one * 2).unwrap();
        assert_eq!(s.append(&batch(1, 4)).unwrap(), 0);
        s.seal().unwrap();
        assert_eq!(s.append(&batch(2, 4)).unwrap(), 0);
        assert_eq!(
            s.append(&batch(3, 4)).unwrap(),
            4,
            "the sealed batch 1 goes"
        );
        // Only the journal (rounds 2 and 3) is left: it is sealed and dropped as one batch.
        assert_eq!(s.append(&batch(4, 4)).unwrap(), 8);
        assert!(s.bytes() <= one * 2);
        assert_eq!(s.dropped_lines(), 12);
        assert_eq!(s.journal_lines(), 4);
    }

    #[test]
    fn complete_rounds_cuts_after_the_last_marker() {
        assert_eq!(complete_rounds(b"a\n#\nb\n#\nc\n"), b"a\n#\nb\n#\n");
        assert_eq!(complete_rounds(b"a\nb"), b"");
        assert_eq!(complete_rounds(b"#\n"), b"#\n");
        assert_eq!(complete_rounds(b"x#\n"), b"");
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
