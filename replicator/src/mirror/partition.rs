//! One partition of a topic: its log behind a guard that publishes what a change means
//! to readers, mirrored appends, syncs, the leader epochs clients are checked against,
//! and healing a log a failed write stopped.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use shadowlink_storage::{
    AppendInfo, CheckedRecordSet, EpochFloor, PartitionLog, PendingSync, Poison, StorageError,
};

use super::appends::{Appends, Waiters, Watcher};
use super::change_feed::{ChangeFeed, PartitionId};
use super::{FlushQueue, MirrorError, MirrorPartition, HEAL_INTERVAL};

/// How a client's `current_leader_epoch` disagrees with the partition's (KIP-320).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EpochMismatch {
    #[error("the client's leader epoch {client} is older than the partition's {ours}")]
    Fenced { client: i32, ours: i32 },
    #[error("the client's leader epoch {client} is newer than the partition's {ours}")]
    Unknown { client: i32, ours: i32 },
}

/// The locked log of a partition. Releasing it publishes the log's latest epoch to
/// [`MirrorPartition::leader_epoch`] and queues the sync an `Interval` log owes,
/// whatever the holder changed; a holder that had the log mutably counts as a change
/// in [`Store::changes`].
pub struct LogGuard<'a> {
    log: MutexGuard<'a, PartitionLog>,
    partition: &'a MirrorPartition,
    /// Every mutation of a log takes `&mut PartitionLog`, so a guard never dereferenced
    /// mutably changed nothing a reader can see.
    mutated: bool,
}

impl Deref for LogGuard<'_> {
    type Target = PartitionLog;

    fn deref(&self) -> &PartitionLog {
        &self.log
    }
}

impl DerefMut for LogGuard<'_> {
    fn deref_mut(&mut self) -> &mut PartitionLog {
        self.mutated = true;
        &mut self.log
    }
}

impl Drop for LogGuard<'_> {
    fn drop(&mut self) {
        let epoch = self.log.latest_epoch().unwrap_or(-1);
        self.partition.stored_epoch.store(epoch, Ordering::Relaxed);
        if let Some(at) = self.log.sync_due_at() {
            let p = self.partition;
            if !p.flush_queued.swap(true, Ordering::AcqRel) {
                p.flushes.schedule(at, &p.topic, p.partition);
            }
        }
        if self.mutated {
            // Counted while the log is still locked: a reader that sees the old count
            // before reading will find the change and read again next time.
            self.partition.changed();
        }
    }
}

impl MirrorPartition {
    pub(super) fn new(
        topic: &str,
        partition: i32,
        log: PartitionLog,
        source_epoch: EpochFloor,
        appended: Arc<Appends>,
        changes: Arc<ChangeFeed>,
        flushes: Arc<FlushQueue>,
    ) -> Self {
        MirrorPartition {
            topic: topic.to_string(),
            partition,
            stored_epoch: AtomicI32::new(log.latest_epoch().unwrap_or(-1)),
            log: Mutex::new(log),
            appended,
            waiters: Waiters::default(),
            version: AtomicU64::new(0),
            changes,
            flushes,
            flush_queued: AtomicBool::new(false),
            failure: Mutex::new(None),
            owned: Mutex::new(None),
            source_floor: AtomicI32::new(source_epoch.epoch()),
            source_epoch: Mutex::new(source_epoch),
            next_heal: Mutex::new(None),
        }
    }

    /// The log, recovering the guard if a writer panicked while holding it. Never hold
    /// it across an fsync: take the sync out (`append_deferred`, `pending_sync`) and wait
    /// on it after the guard is dropped.
    pub fn log(&self) -> LogGuard<'_> {
        LogGuard {
            log: self.log.lock().unwrap_or_else(|p| p.into_inner()),
            partition: self,
            mutated: false,
        }
    }

    fn changed(&self) {
        // The partition's count first: a reader that sees the node's count moved and
        // then this partition's count unmoved may rely on the partition being unchanged.
        self.version.fetch_add(1, Ordering::AcqRel);
        self.changes.push(self.feed_id());
    }

    /// Counts an append to the node and to each fetch watching this partition, each
    /// count before its wake-up: a fetch woken before its count moved would find nothing
    /// new and wait past the append until the next one or its deadline.
    pub(super) fn count_append(&self, bytes: usize, control: bool) {
        self.appended.appended(bytes, control);
        self.waiters.appended(bytes, control);
    }

    /// Has each append to this partition counted to `watcher`, and wake it, until
    /// [`Self::unwatch`].
    pub fn watch(&self, watcher: &Arc<Watcher>) {
        self.waiters.add(watcher);
    }

    pub fn unwatch(&self, watcher: &Arc<Watcher>) {
        self.waiters.remove(watcher);
    }

    /// How the node's change feed names this partition.
    pub fn feed_id(&self) -> PartitionId {
        self as *const MirrorPartition as PartitionId
    }

    /// How many times this partition changed in a way a Fetch could see (see
    /// [`super::Store::changes`]). Taken before a read, an unmoved count later means
    /// another read would find what that one found.
    pub fn changes(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Appends complete batches exactly as fetched. Refused once the partition is owned:
    /// from then on only producers write it, at offsets this node assigns. Blocking: the
    /// fsync the persist mode owes runs after the log is released, before this returns.
    pub fn append(&self, record_set: Bytes) -> Result<AppendInfo, MirrorError> {
        // Not walked for control batches here: counted as if it held one.
        self.append_with(true, |log| log.append_deferred(record_set))
    }

    /// [`MirrorPartition::append`] of batches whose CRCs the link checked on arrival. In
    /// `Interval` mode the sync that falls due is left to the node's flush timer
    /// (`PartitionLog::append_checked_timed`), which runs it within the interval as it
    /// does for a quiet log: the link's writer never waits on the disk between appends.
    pub fn append_checked(&self, set: &CheckedRecordSet) -> Result<AppendInfo, MirrorError> {
        self.append_with(set.holds_control(), |log| log.append_checked_timed(set))
    }

    fn append_with(
        &self,
        control: bool,
        append: impl FnOnce(
            &mut PartitionLog,
        ) -> Result<(AppendInfo, Option<PendingSync>), StorageError>,
    ) -> Result<AppendInfo, MirrorError> {
        if self.is_owned() {
            return Err(MirrorError::NotMirrored {
                topic: self.topic.clone(),
                partition: self.partition,
            });
        }
        let (info, sync) = append(&mut self.log())?;
        self.count_append(info.bytes, control);
        if let Some(sync) = sync {
            sync.wait()?;
        }
        Ok(info)
    }

    /// Fsyncs everything appended so far, without holding the log during the fsync.
    pub fn flush(&self) -> Result<(), StorageError> {
        let sync = {
            let mut log = self.log();
            log.check_writable()?;
            log.pending_sync()
        };
        sync.wait()
    }

    /// In `Interval` mode, fsyncs if the interval has passed since the last sync, without
    /// holding the log during the fsync. Called for a partition the node's
    /// [`FlushQueue`] handed out; releasing the log queues it again if it still owes one.
    pub fn flush_if_due(&self) -> Result<(), StorageError> {
        self.flush_queued.store(false, Ordering::Release);
        let due = self.log().due_sync()?;
        match due {
            Some(sync) => sync.wait(),
            None => Ok(()),
        }
    }

    /// Records the source partition's current leader epoch, which may run ahead of the
    /// newest mirrored batch (a leader change with nothing written since). It is made
    /// durable before clients see it; if that fails it is not advertised, the next
    /// observation tries again, and this returns false.
    pub fn observe_source_epoch(&self, epoch: i32) -> bool {
        let mut floor = self.source_epoch();
        let raised = floor.raise(epoch);
        if self.source_floor.swap(floor.epoch(), Ordering::AcqRel) != floor.epoch() {
            // The epoch Fetch checks clients against moved.
            self.changed();
        }
        if let Err(e) = &raised {
            tracing::warn!(
                topic = %self.topic,
                partition = self.partition,
                epoch,
                error = %e,
                "cannot record the source leader epoch"
            );
        }
        raised.is_ok()
    }

    fn source_epoch(&self) -> MutexGuard<'_, EpochFloor> {
        self.source_epoch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader epoch clients see: never below the source's (KIP-320, so a consumer
    /// holding an epoch from the source is not told it is ahead), nor below any batch
    /// the partition holds.
    pub fn leader_epoch(&self) -> i32 {
        let stored = self.stored_epoch.load(Ordering::Relaxed);
        stored.max(self.source_floor.load(Ordering::Relaxed)).max(0)
    }

    /// Checks a request's `current_leader_epoch` as a Kafka leader does (KIP-320): -1
    /// skips the check, an older epoch is fenced, a newer one is not known here yet.
    pub fn check_leader_epoch(&self, current: i32) -> Result<(), EpochMismatch> {
        if current < 0 {
            return Ok(());
        }
        let ours = self.leader_epoch();
        match current.cmp(&ours) {
            std::cmp::Ordering::Less => Err(EpochMismatch::Fenced {
                client: current,
                ours,
            }),
            std::cmp::Ordering::Greater => Err(EpochMismatch::Unknown {
                client: current,
                ours,
            }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Makes a log that a failed write left refusing writes writable again, when
    /// [`HEAL_INTERVAL`] has passed since the last attempt: the log is reopened, and
    /// recovery cuts off whatever the failed write left. Returns whether the log takes
    /// writes now. A failed fsync is never healed: only a restart clears it.
    pub fn heal(&self) -> bool {
        let mut log = self.log();
        self.heal_log(&mut log)
    }

    pub(crate) fn heal_log(&self, log: &mut PartitionLog) -> bool {
        match log.poisoned() {
            None => return true,
            Some(Poison::Fsync) => return false,
            Some(Poison::Write) => {}
        }
        let now = Instant::now();
        {
            let mut next = self.next_heal.lock().unwrap_or_else(|p| p.into_inner());
            if next.is_some_and(|at| now < at) {
                return false;
            }
            *next = Some(now + HEAL_INTERVAL);
        }
        match log.reopen() {
            Ok(()) => {
                tracing::info!(topic = %self.topic, partition = self.partition, recovered = ?log.recovered(), "partition log reopened after a failed write: it takes writes again");
                true
            }
            Err(e) => {
                tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "partition log still cannot be reopened");
                false
            }
        }
    }

    /// Clears the failure of a partition that recovered by itself.
    pub fn clear_failure(&self) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn fail(&self, reason: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
