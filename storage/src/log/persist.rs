//! When appended data becomes durable: the syncs each [`PersistMode`] owes, handed out to
//! be waited on after releasing the log.

use std::time::Instant;

use super::PartitionLog;
use crate::config::PersistMode;
use crate::durability::PendingSync;
use crate::error::Result;

impl PartitionLog {
    pub(crate) fn sync_after_append(&mut self) -> Option<PendingSync> {
        let due = match self.config.persist {
            PersistMode::Always => true,
            PersistMode::Interval(interval) => {
                self.sealed_unsynced || self.last_sync.elapsed() >= interval
            }
            PersistMode::Os => false,
        };
        due.then(|| self.pending_sync())
    }

    /// A sync of everything written so far, to wait on after releasing the log. The
    /// active segment's index is not synced: recovery rescans the last segment anyway.
    pub fn pending_sync(&mut self) -> PendingSync {
        self.last_sync = Instant::now();
        self.sealed_unsynced = false;
        let sync = self.durability.pending();
        self.sync_handed = sync.target();
        sync
    }

    /// When a timer must call [`PartitionLog::due_sync`] to keep `Interval` mode's bound:
    /// the interval after the last sync, if something was written since and the log can
    /// still sync. `None` otherwise, so a log nobody writes needs no timer at all; in
    /// `Always` and `Os` mode it is always `None`.
    pub fn sync_due_at(&self) -> Option<Instant> {
        let PersistMode::Interval(interval) = self.config.persist else {
            return None;
        };
        let owed = self.sealed_unsynced || self.durability.written() > self.sync_handed;
        (owed && !self.durability.is_poisoned()).then(|| self.last_sync + interval)
    }

    /// Fsyncs everything appended so far, in any persist mode.
    pub fn flush(&mut self) -> Result<()> {
        self.check_writable()?;
        self.pending_sync().wait()
    }

    /// In `Interval` mode, the sync owed once the interval has passed since the last one;
    /// call it from a timer so a quiet log still becomes durable. `None` in other modes.
    pub fn due_sync(&mut self) -> Result<Option<PendingSync>> {
        self.check_writable()?;
        Ok(match self.config.persist {
            PersistMode::Interval(interval) if self.last_sync.elapsed() >= interval => {
                Some(self.pending_sync())
            }
            _ => None,
        })
    }

    /// [`PartitionLog::due_sync`], waited on while holding the log.
    pub fn flush_if_due(&mut self) -> Result<()> {
        match self.due_sync()? {
            Some(sync) => sync.wait(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use crate::durability::Poison;
    use crate::error::StorageError;
    use shadowlink_protocol::batch::testing::build_batch;
    use std::time::Duration;

    fn unsynced(log: &PartitionLog, segment: usize) -> bool {
        log.durability.is_unsynced(&log.segments[segment].log_path)
    }

    fn open(persist: PersistMode, segment_bytes: u64) -> (PartitionLog, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            persist,
            segment_bytes,
            ..LogConfig::default()
        };
        (PartitionLog::open(dir.path(), config).unwrap(), dir)
    }

    fn dirty_after_append(persist: PersistMode) -> (bool, PartitionLog, tempfile::TempDir) {
        let (mut log, dir) = open(persist, 1 << 30);
        log.append(build_batch(0, 0, &[(None, Some(b"v"))], 1))
            .unwrap();
        (unsynced(&log, 0), log, dir)
    }

    #[test]
    fn persist_modes_sync_when_documented() {
        assert!(!dirty_after_append(PersistMode::Always).0);
        assert!(!dirty_after_append(PersistMode::Interval(Duration::ZERO)).0);
        let (dirty, mut log, _dir) =
            dirty_after_append(PersistMode::Interval(Duration::from_secs(3600)));
        assert!(dirty);
        log.flush_if_due().unwrap();
        assert!(unsynced(&log, 0), "not due yet");
        log.last_sync -= Duration::from_secs(3601);
        log.flush_if_due().unwrap();
        assert!(!unsynced(&log, 0));
        let (dirty, mut log, _dir) = dirty_after_append(PersistMode::Os);
        assert!(dirty);
        log.flush_if_due().unwrap();
        assert!(unsynced(&log, 0), "Os mode leaves syncing to the OS");
        log.flush().unwrap();
        assert!(!unsynced(&log, 0));
    }

    #[test]
    fn only_an_unsynced_append_asks_for_a_timer_which_makes_it_durable_when_due() {
        let interval = Duration::from_millis(50);
        let (mut log, _dir) = open(PersistMode::Interval(interval), 1 << 30);
        assert_eq!(log.sync_due_at(), None, "an idle log owes nothing");
        let before = Instant::now();
        let sync = log
            .append_deferred(build_batch(0, 0, &[(None, Some(b"v"))], 1))
            .unwrap()
            .1;
        assert!(sync.is_none(), "the interval has not passed yet");
        let due = log
            .sync_due_at()
            .expect("an unsynced append schedules a sync");
        assert!(due > before && due <= Instant::now() + interval);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        log.due_sync()
            .unwrap()
            .expect("due by then")
            .wait()
            .unwrap();
        assert!(!unsynced(&log, 0));
        assert_eq!(log.sync_due_at(), None, "nothing owed after the sync");
        for persist in [PersistMode::Always, PersistMode::Os] {
            let (_, log, _dir) = dirty_after_append(persist);
            assert_eq!(log.sync_due_at(), None, "{persist:?} needs no timer");
        }
    }

    #[test]
    fn rolling_syncs_the_sealed_segment_unless_os_mode() {
        for (persist, expect_dirty) in [
            (PersistMode::Interval(Duration::from_secs(3600)), false),
            (PersistMode::Os, true),
        ] {
            let (mut log, _dir) = open(persist, 1);
            log.append(build_batch(0, 0, &[(None, None)], 1)).unwrap();
            log.append(build_batch(1, 0, &[(None, None)], 1)).unwrap();
            assert_eq!(log.segments.len(), 2);
            assert_eq!(unsynced(&log, 0), expect_dirty, "{persist:?}");
            assert_eq!(log.durability.is_unsynced(&log.dir), expect_dirty);
        }
    }

    #[test]
    fn a_deferred_append_is_readable_before_its_sync_and_durable_after() {
        let (mut log, _dir) = open(PersistMode::Always, 1 << 30);
        let (info, sync) = log
            .append_deferred(build_batch(0, 0, &[(None, Some(b"v"))], 1))
            .unwrap();
        let sync = sync.expect("always mode owes a sync");
        assert!(unsynced(&log, 0));
        assert_eq!(
            log.read(0, 1 << 20).unwrap().log_end_offset,
            info.next_offset
        );
        sync.wait().unwrap();
        assert!(!unsynced(&log, 0));
        let (_, os_sync) = open(PersistMode::Os, 1 << 30)
            .0
            .append_deferred(build_batch(0, 0, &[(None, None)], 1))
            .unwrap();
        assert!(os_sync.is_none());
    }

    #[test]
    fn a_sync_after_a_poisoned_log_fails() {
        let (mut log, _dir) = open(PersistMode::Always, 1 << 30);
        let (_, sync) = log
            .append_deferred(build_batch(0, 0, &[(None, None)], 1))
            .unwrap();
        log.durability.poison();
        assert!(matches!(sync.unwrap().wait(), Err(StorageError::Poisoned)));
        assert!(matches!(
            log.append(build_batch(1, 0, &[(None, None)], 1)),
            Err(StorageError::Poisoned)
        ));
    }

    #[test]
    fn a_log_poisoned_by_a_write_reopens_writable_but_not_after_a_failed_fsync() {
        let (mut log, _dir) = open(PersistMode::Always, 1 << 30);
        log.append(build_batch(0, 0, &[(None, None)], 1)).unwrap();
        log.durability.poison();
        assert_eq!(log.poisoned(), Some(Poison::Write));
        log.reopen().unwrap();
        assert_eq!(log.poisoned(), None);
        log.append(build_batch(1, 0, &[(None, None)], 1)).unwrap();
        assert_eq!(log.log_end_offset(), 2);

        log.durability.poison_fsync();
        assert!(matches!(log.reopen(), Err(StorageError::FsyncFailed)));
        assert!(matches!(
            log.append(build_batch(2, 0, &[(None, None)], 1)),
            Err(StorageError::FsyncFailed)
        ));
    }

    #[test]
    fn a_new_segments_directory_entry_is_synced_by_the_append_that_made_it() {
        let (mut log, _dir) = open(PersistMode::Always, 1 << 30);
        // Too far above the empty first segment's base for its index: replaced.
        let far = i64::from(u32::MAX) + 10;
        let (_, sync) = log
            .append_deferred(build_batch(far, 0, &[(None, None)], 1))
            .unwrap();
        assert_eq!(log.segments[0].base_offset, far);
        assert!(log.durability.is_unsynced(&log.dir));
        sync.expect("always mode owes a sync").wait().unwrap();
        assert!(!log.durability.is_unsynced(&log.dir));
    }

    #[test]
    fn log_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PartitionLog>();
        assert_send_sync::<PendingSync>();
    }
}
