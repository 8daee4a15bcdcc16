//! Leader-epoch cache: for each partitionLeaderEpoch seen in the log, the first offset
//! written in it. It answers OffsetsForLeaderEpoch (KIP-320) so consumers can detect
//! that the log was truncated under them.
//!
//! Persisted as `leader-epoch-checkpoint` (JSON, atomically replaced). An epoch first
//! seen in an append is written no later than the roll that seals its segment: recovery
//! re-derives entries from the active segment, so the file only has to hold every epoch
//! that starts below it. That keeps the writes and fsyncs of a metadata file out of the
//! appends, a partition's first included. Truncations persist at once. Recovery rebuilds
//! the whole cache from batch headers if the file is missing or inconsistent.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::meta::{read_meta, write_meta};

pub(crate) const EPOCH_FILE: &str = "leader-epoch-checkpoint";

#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    /// `(epoch, start_offset)`, strictly increasing in both.
    entries: Vec<(i32, i64)>,
    /// Whether the file exists: loaded from it or written since.
    on_disk: bool,
    /// Whether `entries` changed since they were loaded or written.
    changed: bool,
}

impl LeaderEpochCache {
    pub(crate) fn empty(dir: &Path) -> Self {
        LeaderEpochCache {
            path: dir.join(EPOCH_FILE),
            entries: Vec::new(),
            on_disk: false,
            changed: false,
        }
    }

    /// Loads the persisted cache; `None` if missing, unreadable or not monotonic.
    pub(crate) fn load(dir: &Path) -> Result<Option<Self>> {
        let mut cache = Self::empty(dir);
        let entries: Vec<(i32, i64)> = match read_meta(&cache.path) {
            Ok(Some(entries)) => entries,
            Ok(None) | Err(crate::StorageError::Meta { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let monotonic = entries
            .windows(2)
            .all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1);
        if !monotonic || entries.iter().any(|&(e, o)| e < 0 || o < 0) {
            return Ok(None);
        }
        cache.entries = entries;
        cache.on_disk = true;
        Ok(Some(cache))
    }

    pub(crate) fn persist(&mut self) -> Result<()> {
        write_meta(&self.path, &self.entries)?;
        self.on_disk = true;
        self.changed = false;
        Ok(())
    }

    pub(crate) fn is_on_disk(&self) -> bool {
        self.on_disk
    }

    /// Whether the file holds every entry.
    pub(crate) fn is_persisted(&self) -> bool {
        self.on_disk && !self.changed
    }

    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    /// The epoch `offset` was written in: the latest one starting at or before it.
    pub(crate) fn epoch_at(&self, offset: i64) -> Option<i32> {
        let after = self.entries.partition_point(|&(_, start)| start <= offset);
        after.checked_sub(1).map(|i| self.entries[i].0)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest.
    /// Returns whether the cache changed. A mirror copies a single leader history, so an
    /// older epoch after a newer one is never a new leader; negative (unknown) epochs,
    /// written by pre-KIP-101 clients, carry no information.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        self.entries.push((epoch, start_offset));
        self.changed = true;
        true
    }

    /// Starts `epoch` at `log_end_offset` before any batch carries it (a leader taking
    /// over). An entry already starting at the LEO has no batches yet and is replaced,
    /// which keeps start offsets strictly increasing. Returns whether the cache changed.
    pub(crate) fn begin_at(&mut self, epoch: i32, log_end_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        if self
            .entries
            .last()
            .is_some_and(|&(_, start)| start >= log_end_offset)
        {
            self.entries.pop();
        }
        self.entries.push((epoch, log_end_offset));
        self.changed = true;
        true
    }

    /// Drops epochs that start at or after the new log end offset.
    pub(crate) fn truncate_from_end(&mut self, log_end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|&(_, start)| start < log_end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        self.changed |= changed;
        changed
    }

    /// Drops epochs wholly below the new log start and moves the first kept one up to it.
    pub(crate) fn truncate_from_start(&mut self, log_start_offset: i64) -> bool {
        let covering = self
            .entries
            .partition_point(|&(_, start)| start <= log_start_offset);
        let drop = covering.saturating_sub(1);
        let mut changed = drop > 0;
        self.entries.drain(..drop);
        if let Some(first) = self.entries.first_mut() {
            if first.1 < log_start_offset {
                first.1 = log_start_offset;
                changed = true;
            }
        }
        self.changed |= changed;
        changed
    }

    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        self.changed |= changed;
        changed
    }

    /// KIP-320 end offset for `requested`: the largest known epoch `<= requested` and the
    /// start offset of the next higher epoch (or the log end offset for the latest).
    /// Like Kafka, a requested epoch below the first known one returns itself with the
    /// first epoch's start offset, and one above the latest returns `None` (undefined).
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let latest = self.latest_epoch()?;
        if requested == latest {
            return Some((latest, log_end_offset));
        }
        let higher = self
            .entries
            .partition_point(|&(epoch, _)| epoch <= requested);
        let &(_, higher_start) = self.entries.get(higher)?;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].0, higher_start)),
            None => Some((requested, higher_start)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::empty(Path::new("/nonexistent"));
        for &(e, o) in entries {
            assert!(c.assign(e, o));
        }
        c
    }

    #[test]
    fn assign_ignores_old_and_unknown_epochs() {
        let mut c = cache(&[(1, 0), (3, 10)]);
        assert!(!c.assign(3, 20));
        assert!(!c.assign(2, 30));
        assert!(!c.assign(-1, 40));
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
    }

    #[test]
    fn end_offset_follows_kip_320() {
        let c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(c.end_offset_for(5, 30), Some((5, 30)));
        assert_eq!(c.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(1, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(c.end_offset_for(6, 30), None);
        assert_eq!(cache(&[]).end_offset_for(0, 0), None);
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(c.truncate_from_end(20));
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
        assert!(!c.truncate_from_end(25));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[(3, 12)]);
        let mut c = cache(&[(1, 0), (3, 10)]);
        assert!(c.truncate_from_start(10));
        assert_eq!(c.entries(), &[(3, 10)]);
    }

    #[test]
    fn persists_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::empty(dir.path());
        c.assign(2, 5);
        c.persist().unwrap();
        assert_eq!(
            LeaderEpochCache::load(dir.path())
                .unwrap()
                .unwrap()
                .entries(),
            &[(2, 5)]
        );
        std::fs::write(dir.path().join(EPOCH_FILE), b"[[3,5],[2,9]]").unwrap();
        assert!(LeaderEpochCache::load(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join(EPOCH_FILE), b"garbage").unwrap();
        assert!(LeaderEpochCache::load(dir.path()).unwrap().is_none());
    }
}
