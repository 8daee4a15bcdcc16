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
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::error::{Result, StorageError};
use crate::files::CachedFile;

/// Why a log refuses writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    /// A write failed (a full disk, say): the file holds an unknown tail, which recovery
    /// cuts off, so reopening the log makes it writable again.
    Write = 1,
    /// An fsync failed: the kernel may have dropped the dirty pages and marked them
    /// clean, so data read back can differ from what is on disk, and no later fsync can
    /// tell. Only a restart, recovering from what the disk really holds, is safe (the
    /// lesson PostgreSQL and Kafka drew from Linux's fsync semantics).
    Fsync = 2,
}

/// Faults a test injects into the fsyncs of one log (`LogConfig::fsync_delay`,
/// `LogConfig::fsync_fail_after`).
#[derive(Debug, Default)]
pub(crate) struct FsyncFault {
    delay: Duration,
    fail_after: Option<u64>,
    done: AtomicU64,
}

impl FsyncFault {
    pub(crate) fn new(delay: Duration, fail_after: Option<u64>) -> FsyncFault {
        FsyncFault {
            delay,
            fail_after,
            done: AtomicU64::new(0),
        }
    }

    /// Counts one fsync; fails it once `fail_after` have succeeded.
    fn fsync(&self) -> io::Result<()> {
        let done = self.done.fetch_add(1, Ordering::Relaxed);
        match self.fail_after {
            Some(limit) if done >= limit => Err(io::Error::other(
                "injected fsync failure (storage.fault_fsync_fail_after)",
            )),
            _ => Ok(()),
        }
    }
}

/// A file written since its last fsync.
#[derive(Debug)]
struct Unsynced {
    path: PathBuf,
    /// The cached file the data was written through, for segment data (synced through
    /// the cache, which reopens it if its descriptor was evicted); `None` means the path
    /// is opened to sync it (index files and directories, written by path). A dead
    /// handle belongs to a deleted segment, whose data no longer needs syncing.
    file: Option<Weak<CachedFile>>,
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
    /// Set after a failed write or fsync: what is on disk is then unknown. Holds a
    /// [`Poison`] as `u8`, 0 while healthy.
    poisoned: AtomicU8,
    /// Fault injection (see `LogConfig::fsync_delay` and `fsync_fail_after`).
    fault: FsyncFault,
    /// Rounds of fsyncs run, for tests of group commit.
    #[cfg(test)]
    rounds: AtomicU64,
}

impl Durability {
    pub(crate) fn new(fault: FsyncFault) -> Arc<Self> {
        Arc::new(Durability {
            unsynced: Mutex::new(Vec::new()),
            written: AtomicU64::new(0),
            synced: Mutex::new(0),
            poisoned: AtomicU8::new(0),
            fault,
            #[cfg(test)]
            rounds: AtomicU64::new(0),
        })
    }

    /// Notes that the segment data file at `path` was written through `file`.
    pub(crate) fn wrote_data(&self, path: &Path, file: &Arc<CachedFile>) {
        self.add(path, Some(file));
    }

    /// Notes that the file or directory at `path` was changed through its path.
    pub(crate) fn wrote_path(&self, path: &Path) {
        self.add(path, None);
    }

    fn add(&self, path: &Path, file: Option<&Arc<CachedFile>>) {
        let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        let live = |u: &Unsynced| u.file.as_ref().is_none_or(|f| f.strong_count() > 0);
        // Compared byte-wise: `Path`'s `==` walks components, and this runs on every
        // append, nearly always for the file the last one noted.
        let noted = |u: &Unsynced| u.path.as_os_str() == path.as_os_str();
        if unsynced.last().is_some_and(|u| noted(u) && live(u)) {
            return;
        }
        unsynced.retain(live);
        if !unsynced.iter().any(noted) {
            unsynced.push(Unsynced {
                path: path.to_path_buf(),
                file: file.map(Arc::downgrade),
            });
        }
    }

    /// Number of the last finished write.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Ends a write: the files it touched must have been noted before.
    pub(crate) fn finish_write(&self) {
        self.written.fetch_add(1, Ordering::Release);
    }

    /// Marks the log unusable after a failed write; an fsync failure already recorded
    /// is the graver one and stays.
    pub(crate) fn poison(&self) {
        let _ = self.poisoned.compare_exchange(
            0,
            Poison::Write as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub(crate) fn poison_fsync(&self) {
        self.poisoned.store(Poison::Fsync as u8, Ordering::Release);
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned().is_some()
    }

    pub(crate) fn poisoned(&self) -> Option<Poison> {
        match self.poisoned.load(Ordering::Acquire) {
            0 => None,
            n if n == Poison::Write as u8 => Some(Poison::Write),
            _ => Some(Poison::Fsync),
        }
    }

    /// The error a poisoned log answers writes and syncs with.
    pub(crate) fn refusal(&self) -> StorageError {
        match self.poisoned() {
            Some(Poison::Fsync) => StorageError::FsyncFailed,
            _ => StorageError::Poisoned,
        }
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
            return Err(self.refusal());
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
        if !files.is_empty() && !self.fault.delay.is_zero() {
            std::thread::sleep(self.fault.delay);
        }
        for file in &files {
            if let Err(e) = self.fault.fsync().and_then(|()| file.sync()) {
                self.poison_fsync();
                let consequence = StorageError::FsyncFailed;
                tracing::error!(file = %file.path.display(), error = %e, %consequence, "fsync failed");
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
    /// fsync fails; fails with [`StorageError::Poisoned`] or [`StorageError::FsyncFailed`]
    /// if the log was poisoned before.
    pub fn wait(self) -> Result<()> {
        self.durability.sync_to(self.target)
    }

    /// The number of the last write this sync covers.
    pub(crate) fn target(&self) -> u64 {
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(durability: &Durability, path: &Path, file: &Arc<CachedFile>) {
        file.wrote();
        durability.wrote_data(path, file);
        durability.finish_write();
    }

    fn cached(path: &Path) -> Arc<CachedFile> {
        crate::FileCache::new(4).register(path.to_path_buf())
    }

    #[test]
    fn a_sync_covered_by_an_earlier_one_runs_no_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        File::create(&path).unwrap();
        let file = cached(&path);
        let durability = Durability::new(FsyncFault::default());
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
    fn a_file_replaced_at_the_same_path_is_synced_through_its_new_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        File::create(&path).unwrap();
        let durability = Durability::new(FsyncFault::default());
        let old = cached(&path);
        written(&durability, &path, &old);
        // The segment is swapped for a new file at the same path before any sync.
        drop(old);
        let new = cached(&path);
        written(&durability, &path, &new);
        durability.pending().wait().unwrap();
        assert!(!new.is_dirty(), "the new file's writes were left unsynced");
    }

    #[test]
    fn a_failed_fsync_poisons_every_later_sync() {
        let durability = Durability::new(FsyncFault::default());
        // The null device refuses fsync (EINVAL): a stand-in for a failed writeback.
        let path = Path::new("/dev/null");
        let null = cached(path);
        written(&durability, path, &null);
        let failed = durability.pending().wait();
        assert!(matches!(failed, Err(StorageError::Io { .. })), "{failed:?}");
        assert_eq!(durability.poisoned(), Some(Poison::Fsync));
        assert!(matches!(
            durability.pending().wait(),
            Err(StorageError::FsyncFailed)
        ));
        // A later write failure does not make the fsync failure look curable.
        durability.poison();
        assert_eq!(durability.poisoned(), Some(Poison::Fsync));
    }

    #[test]
    fn an_injected_fsync_failure_comes_after_the_allowed_successes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        File::create(&path).unwrap();
        let file = cached(&path);
        let durability = Durability::new(FsyncFault::new(Duration::ZERO, Some(2)));
        for _ in 0..2 {
            written(&durability, &path, &file);
            durability.pending().wait().unwrap();
        }
        written(&durability, &path, &file);
        let failed = durability.pending().wait();
        assert!(
            matches!(&failed, Err(StorageError::Io { source, .. }) if source.to_string().contains("fault_fsync_fail_after")),
            "{failed:?}"
        );
        assert_eq!(durability.poisoned(), Some(Poison::Fsync));
    }
}
