//! A node-wide, bounded cache of open segment files.
//!
//! Every segment's `.log` is opened on demand through a [`FileCache`] shared by all the
//! logs of a node, and the least recently used descriptors are closed once more than
//! `limit` are open. An idle partition then holds no descriptor at all, so a node can
//! hold far more partitions than its `RLIMIT_NOFILE` (each one used to keep its active
//! segment, and every sealed one, open). Indexes are read into memory and written by
//! path, and memory maps need no descriptor once made, so segment data files are the
//! only long-lived descriptors of a log.
//!
//! Durability does not depend on a descriptor staying open: before an evicted
//! descriptor is closed it is fdatasynced if it was written since its last sync, and a
//! failure of that fsync is kept and returned by the segment's next sync, which then
//! poisons its log as any failed fsync does. Closing a dirty descriptor unsynced would
//! leave the only report of a lost writeback to whichever descriptor opens the file
//! next.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::error::{Result, StorageError};

/// Open descriptors kept when the process limit cannot be read.
const FALLBACK_LIMIT: usize = 512;

/// A handle on a node's cache of open segment files; clones share the cache.
#[derive(Clone)]
pub struct FileCache {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    next_id: AtomicU64,
    state: Mutex<State>,
    opening: Mutex<()>,
}

#[derive(Default)]
struct State {
    open: HashMap<u64, Open>,
    /// Last use → file id, oldest first.
    lru: BTreeMap<u64, u64>,
    clock: u64,
}

struct Open {
    file: Arc<File>,
    last_use: u64,
    slot: Weak<CachedFile>,
}

impl FileCache {
    /// A cache keeping at most `limit` descriptors open (at least one).
    pub fn new(limit: usize) -> FileCache {
        FileCache {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                next_id: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                opening: Mutex::new(()),
            }),
        }
    }

    /// Half of the process's soft `RLIMIT_NOFILE`, leaving the other half to sockets
    /// and the short-lived descriptors of metadata writes and directory syncs.
    pub fn default_limit() -> usize {
        soft_nofile_limit().map_or(FALLBACK_LIMIT, |n| (n / 2).max(1))
    }

    /// The process-wide cache that [`crate::LogConfig::default`] uses, with
    /// [`FileCache::default_limit`].
    pub fn shared() -> FileCache {
        static SHARED: std::sync::OnceLock<FileCache> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| FileCache::new(FileCache::default_limit()))
            .clone()
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Descriptors the cache holds open now.
    pub fn open_count(&self) -> usize {
        self.state().open.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn is_open(&self, file: &CachedFile) -> bool {
        self.state().open.contains_key(&file.id)
    }

    /// Registers the file at `path`, opened only when first used.
    pub(crate) fn register(&self, path: PathBuf) -> Arc<CachedFile> {
        Arc::new(CachedFile {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            path,
            cache: self.clone(),
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            evict_failure: Mutex::new(None),
        })
    }

    fn get(&self, slot: &Arc<CachedFile>) -> io::Result<Arc<File>> {
        if let Some(file) = self.touch(slot.id) {
            return Ok(file);
        }
        let _opening = self.opening();
        if let Some(file) = self.touch(slot.id) {
            return Ok(file);
        }
        self.make_room();
        let file = Arc::new(open_segment_file(&slot.path)?);
        self.insert(slot, file.clone());
        Ok(file)
    }

    /// Creates the file at `path`, which must not exist, and registers it open.
    pub(crate) fn create(&self, path: PathBuf) -> io::Result<Arc<CachedFile>> {
        let _opening = self.opening();
        self.make_room();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)?;
        let slot = self.register(path);
        self.insert(&slot, Arc::new(file));
        Ok(slot)
    }

    /// Serialises opening files, so that each makes room before it opens and the
    /// descriptors held never exceed the limit.
    fn opening(&self) -> MutexGuard<'_, ()> {
        self.inner
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the least recently used descriptors until one more fits.
    fn make_room(&self) {
        let evicted = self.state().evict_over(self.inner.limit - 1);
        // Outside the state lock: an fsync may take long and must not stall other logs'
        // reads and writes through descriptors already open.
        for victim in evicted {
            victim.close();
        }
    }

    fn insert(&self, slot: &Arc<CachedFile>, file: Arc<File>) {
        let mut state = self.state();
        let tick = state.tick();
        state.lru.insert(tick, slot.id);
        state.open.insert(
            slot.id,
            Open {
                file,
                last_use: tick,
                slot: Arc::downgrade(slot),
            },
        );
    }

    fn touch(&self, id: u64) -> Option<Arc<File>> {
        let mut guard = self.state();
        let state = &mut *guard;
        let open = state.open.get_mut(&id)?;
        let previous = open.last_use;
        // Already the most recent use (a log appending to its active segment over and
        // over): the LRU order stands as it is.
        if previous != state.clock {
            state.clock += 1;
            open.last_use = state.clock;
            state.lru.remove(&previous);
            state.lru.insert(state.clock, id);
        }
        Some(open.file.clone())
    }

    /// Drops the cached descriptor of `id`, if any, without syncing it: its file was
    /// deleted or replaced, or its segment is gone.
    fn forget(&self, id: u64) {
        let mut state = self.state();
        if let Some(open) = state.open.remove(&id) {
            state.lru.remove(&open.last_use);
        }
    }
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn evict_over(&mut self, limit: usize) -> Vec<Open> {
        let mut evicted = Vec::new();
        while self.open.len() > limit {
            let Some((_, id)) = self.lru.pop_first() else {
                break;
            };
            evicted.extend(self.open.remove(&id));
        }
        evicted
    }
}

impl Open {
    /// Closes an evicted descriptor, fdatasyncing it first if it holds unsynced writes.
    fn close(self) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        if let Err(e) = slot.sync_through(&self.file) {
            tracing::error!(file = %slot.path.display(), error = %e,
                "fsync before closing an evicted segment file failed");
            *slot.evict_failure() = Some(e);
        }
    }
}

impl fmt::Debug for FileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCache")
            .field("limit", &self.inner.limit)
            .finish_non_exhaustive()
    }
}

/// Logs configured with clones of one cache compare equal.
impl PartialEq for FileCache {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for FileCache {}

/// One segment data file, opened through its node's [`FileCache`] when used.
pub(crate) struct CachedFile {
    id: u64,
    path: PathBuf,
    cache: FileCache,
    /// Writes made through any descriptor of this file.
    writes: AtomicU64,
    /// The write count the last successful fdatasync covered.
    synced: AtomicU64,
    /// A failed fsync of an evicted descriptor, for the next sync to report.
    evict_failure: Mutex<Option<io::Error>>,
}

impl CachedFile {
    /// An open descriptor, reopening the file if it was evicted.
    pub(crate) fn open(self: &Arc<Self>) -> Result<Arc<File>> {
        self.cache
            .get(self)
            .map_err(StorageError::io("reopening", &self.path))
    }

    /// Notes a write made through a descriptor from [`CachedFile::open`].
    pub(crate) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Release);
    }

    /// Fdatasyncs the writes made so far, reopening the file if needed. A file that no
    /// longer exists (its segment was deleted) needs no sync.
    pub(crate) fn sync_data(self: &Arc<Self>) -> io::Result<()> {
        if let Some(failure) = self.evict_failure().take() {
            return Err(failure);
        }
        if self.synced.load(Ordering::Acquire) >= self.writes.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.cache.get(self) {
            Ok(file) => self.sync_through(&file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn sync_through(&self, file: &File) -> io::Result<()> {
        let target = self.writes.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        file.sync_data()?;
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Whether writes were made since the last successful fdatasync.
    #[cfg(test)]
    pub(crate) fn is_dirty(&self) -> bool {
        self.synced.load(Ordering::Acquire) < self.writes.load(Ordering::Acquire)
    }

    /// Closes the cached descriptor after the file at the path was replaced, so the
    /// next use opens the new one.
    pub(crate) fn reopen_later(&self) {
        self.cache.forget(self.id);
    }

    fn evict_failure(&self) -> MutexGuard<'_, Option<io::Error>> {
        self.evict_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.cache.forget(self.id);
    }
}

impl fmt::Debug for CachedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn open_segment_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).open(path)
}

/// The soft `RLIMIT_NOFILE` from `/proc/self/limits`, the one source std can read.
fn soft_nofile_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
