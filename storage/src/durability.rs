//! Fsyncs that run after the log's lock is released.
//!
//! A write happens under the partition's lock (`&mut PartitionLog`) and hands back a
//! [`PendingSync`]; the caller waits on it once the lock is released, so readers of the
//! log never queue behind the disk. Each write is numbered, and a sync records the
//! highest number it made durable: a sync whose writes an earlier fsync already covered
//! returns at once, so concurrent appenders share one fsync (group commit).
//!
//! The fsyncs of one log still run one at a time, under their own lock. Linux reports a
//! failed writeback once per open file description (errseq): two concurrent fsyncs could
//! split one error between them, and the one that saw none would call data durable that
//! is lost. Serialised, the first fsync after a failed writeback gets the error and
//! poisons the log, and every later sync finds the poison and fails too.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::error::{Result, StorageError};

/// A file written since its last fsync.
#[derive(Debug)]
struct Unsynced {
    path: PathBuf,
    /// The handle the data was written through, for segment data; `None` means the
    /// path is opened to sync it (index files and directories, written by path). A dead
    /// handle belongs to a deleted segment, whose data no longer needs syncing.
    file: Option<Weak<File>>,
}

impl Unsynced {
    fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => match file.upgrade() {
                Some(file) => file.sync_data(),
                None => Ok(()),
            },
            None => match File::open(&self.path) {
                Ok(file) => file.sync_all(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
        }
    }
}

/// One log's durability state, shared by the log and its pending syncs.
#[derive(Debug)]
pub(crate) struct Durability {
    /// Held only to add or take entries, never across I/O, so writers never wait on it
    /// for long.
    unsynced: Mutex<Vec<Unsynced>>,
    /// Number of the last finished write.
    written: AtomicU64,
    /// Number of the last write known durable. Held across fsyncs, which it serialises.
    synced: Mutex<u64>,
    /// Set after a failed write or fsync: what is on disk is then unknown.
    poisoned: AtomicBool,
    /// Fault injection (see `LogConfig::fsync_delay`).
    delay: Duration,
    /// Rounds of fsyncs run, for tests of group commit.
    #[cfg(test)]
    rounds: AtomicU64,
}

impl Durability {
    pub(crate) fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Durability {
            unsynced: Mutex::new(Vec::new()),
            written: AtomicU64::new(0),
            synced: Mutex::new(0),
            poisoned: AtomicBool::new(false),
            delay,
            #[cfg(test)]
            rounds: AtomicU64::new(0),
        })
    }

    /// Notes that the segment data file at `path` was written through `file`.
    pub(crate) fn wrote_data(&self, path: &Path, file: &Arc<File>) {
        self.add(path, Some(Arc::downgrade(file)));
    }

    /// Notes that the file or directory at `path` was changed through its path.
    pub(crate) fn wrote_path(&self, path: &Path) {
        self.add(path, None);
    }

    fn add(&self, path: &Path, file: Option<Weak<File>>) {
        let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        unsynced.retain(|u| u.file.as_ref().is_none_or(|f| f.strong_count() > 0));
        if !unsynced.iter().any(|u| u.path == path) {
            unsynced.push(Unsynced {
                path: path.to_path_buf(),
                file,
            });
        }
    }

    /// Ends a write: the files it touched must have been noted before.
    pub(crate) fn finish_write(&self) {
        self.written.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// A sync covering every write finished so far.
    pub(crate) fn pending(self: &Arc<Self>) -> PendingSync {
        PendingSync {
            durability: self.clone(),
            target: self.written.load(Ordering::Acquire),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_unsynced(&self, path: &Path) -> bool {
        let unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        unsynced.iter().any(|u| u.path == path)
    }

    fn sync_to(&self, target: u64) -> Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        if *synced >= target {
            return Ok(());
        }
        // Every write numbered up to `upto` noted its files before finishing, so they
        // are in the list taken next, and their bytes precede the fsyncs below.
        let upto = self.written.load(Ordering::Acquire);
        let files =
            std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(PoisonError::into_inner));
        #[cfg(test)]
        self.rounds.fetch_add(1, Ordering::Relaxed);
        if !files.is_empty() && !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        for file in &files {
            if let Err(e) = file.sync() {
                self.poison();
                return Err(StorageError::io("syncing", &file.path)(e));
            }
        }
        *synced = upto;
        Ok(())
    }
}

/// An fsync owed for writes already made: wait on it after releasing the log's lock.
/// Dropping it without waiting leaves the writes to a later sync.
#[derive(Debug)]
#[must_use = "the writes are not durable until the sync is waited on"]
pub struct PendingSync {
    durability: Arc<Durability>,
    target: u64,
}

impl PendingSync {
    /// Blocks until the writes are on stable storage. Fails, and poisons the log, if an
    /// fsync fails; fails with [`StorageError::Poisoned`] if the log was poisoned before.
    pub fn wait(self) -> Result<()> {
        self.durability.sync_to(self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(durability: &Durability, path: &Path, file: &Arc<File>) {
        durability.wrote_data(path, file);
        durability.finish_write();
    }

    #[test]
    fn a_sync_covered_by_an_earlier_one_runs_no_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let file = Arc::new(File::create(&path).unwrap());
        let durability = Durability::new(Duration::ZERO);
        written(&durability, &path, &file);
        let first = durability.pending();
        written(&durability, &path, &file);
        let second = durability.pending();
        second.wait().unwrap();
        assert!(!durability.is_unsynced(&path));
        first.wait().unwrap();
        assert_eq!(durability.rounds.load(Ordering::Relaxed), 1);
        written(&durability, &path, &file);
        durability.pending().wait().unwrap();
        assert_eq!(durability.rounds.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_failed_fsync_poisons_every_later_sync() {
        let durability = Durability::new(Duration::ZERO);
        // The null device refuses fsync (EINVAL): a stand-in for a failed writeback.
        let path = Path::new("/dev/null");
        let null = Arc::new(File::options().write(true).open(path).unwrap());
        written(&durability, path, &null);
        let failed = durability.pending().wait();
        assert!(matches!(failed, Err(StorageError::Io { .. })), "{failed:?}");
        assert!(durability.is_poisoned());
        assert!(matches!(
            durability.pending().wait(),
            Err(StorageError::Poisoned)
        ));
    }
}
