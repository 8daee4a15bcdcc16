//! What a writable (owned) partition needs from its log beyond storing batches: the
//! largest producer id ever stored, a new leader epoch, and a bounded walk over the tail.
//!
//! The largest producer id is kept in `max-producer-id`, written no later than the roll
//! that seals the segment of a batch carrying a larger one (or on close). Recovery takes
//! the larger of the file and the ids in the active segment, so the bound holds after a
//! crash without an fsync on the append path: a mirror of idempotent producers would
//! otherwise make one for each partition's first batch and for every new producer. A
//! node's producer-id allocator uses the bound to stay above every id it stores, mirrored
//! ones included (see the replicator's `producer_ids`). Logs written before the file
//! existed are scanned once on open.

use std::path::Path;

use shadowlink_protocol::batch::RecordBatch;

use crate::error::Result;
use crate::log::PartitionLog;
use crate::meta::{read_meta, write_meta};
use crate::segment::Segment;
use crate::stamp::StoredBatch;

pub(crate) const MAX_PRODUCER_ID_FILE: &str = "max-producer-id";

/// The bound, and what the file holds: the persisted bound raised by the ids in
/// `active` (the active segment, or nothing after a clean close), or a full header scan
/// when the file is missing (then persisted, when there are sealed segments to spare the
/// next open).
pub(crate) fn load_max_producer_id(
    dir: &Path,
    segments: &[Segment],
    active: &[Segment],
) -> Result<(i64, i64)> {
    let path = dir.join(MAX_PRODUCER_ID_FILE);
    let (persisted, rescan) = match read_meta::<i64>(&path)? {
        Some(max) => (Some(max), active),
        None => (None, segments),
    };
    let mut max = persisted.unwrap_or(-1);
    for segment in rescan {
        segment.for_each_batch(|b| max = max.max(b.producer_id()))?;
    }
    match persisted {
        Some(persisted) => Ok((max, persisted)),
        // Only sealed segments make the file worth an fsync now: an open rescans the
        // active one unless a clean close wrote the file, and a roll writes it once it
        // rose.
        None if segments.len() > 1 => {
            write_meta(&path, &max)?;
            Ok((max, max))
        }
        None => Ok((max, -1)),
    }
}

impl PartitionLog {
    /// The largest producer id of any batch ever appended (an upper bound: truncation and
    /// retention never lower it), or -1 when none carried one.
    pub fn max_producer_id(&self) -> i64 {
        self.max_producer_id
    }

    /// Raises the bound to the batches' producer ids; the file follows at the next roll.
    pub(crate) fn raise_max_producer_id<B: StoredBatch>(&mut self, batches: &[B]) {
        let max = batches.iter().map(StoredBatch::producer_id).max();
        self.max_producer_id = self.max_producer_id.max(max.unwrap_or(-1));
    }

    /// Writes the bound to its file if it rose since it was last written.
    pub(crate) fn persist_max_producer_id(&mut self) -> Result<()> {
        if self.max_producer_id > self.persisted_max_producer_id {
            write_meta(&self.dir.join(MAX_PRODUCER_ID_FILE), &self.max_producer_id)?;
            self.persisted_max_producer_id = self.max_producer_id;
        }
        Ok(())
    }

    /// Starts leader epoch `epoch` at the log end offset, as a Kafka leader does when it
    /// is elected (before it has written anything in that epoch), so OffsetsForLeaderEpoch
    /// and Metadata report it at once. Returns false, changing nothing, unless `epoch` is
    /// above the latest epoch. Recovery drops an epoch that starts at the LEO with no
    /// batch in it, so callers that need it across restarts persist it themselves and
    /// call this again after opening.
    pub fn begin_epoch(&mut self, epoch: i32) -> Result<bool> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        if !self.epochs.begin_at(epoch, leo) {
            return Ok(false);
        }
        // A log without a checkpoint file rebuilds its epochs from its batches on open,
        // and the new epoch starts at the end, where recovery drops it until a batch
        // carries it: the file can wait for the first roll (a new owned partition
        // writes none when it is made).
        if self.epochs.is_on_disk() || self.segments.iter().any(|s| !s.is_empty()) {
            self.guarded(|log| log.epochs.persist())?;
        }
        Ok(true)
    }

    /// Calls `f` on every batch of the newest segments holding at least `max_bytes`
    /// (whole segments, at least the active one), oldest first, from the log start on.
    /// Used to rebuild per-producer state on open without reading the whole log.
    pub fn for_each_tail_batch(
        &self,
        max_bytes: u64,
        mut f: impl FnMut(&RecordBatch),
    ) -> Result<()> {
        let mut first = self.segments.len() - 1;
        let mut total = self.segments[first].size;
        while first > 0 && total < max_bytes {
            first -= 1;
            total += self.segments[first].size;
        }
        let log_start = self.log_start_offset;
        for segment in &self.segments[first..] {
            segment.for_each_batch(|b| {
                if b.last_offset() >= log_start {
                    f(b)
                }
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{LogConfig, PartitionLog};
    use shadowlink_protocol::batch::testing::BatchBuilder;

    fn batch(base: i64, epoch: i32, producer_id: i64) -> bytes::Bytes {
        BatchBuilder::new(base)
            .leader_epoch(epoch)
            .producer(producer_id, 0, 0)
            .records(&[(None, Some(b"v"))])
            .build()
    }

    #[test]
    fn max_producer_id_survives_a_crash_and_is_written_at_the_roll() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 64 * 1024,
            ..LogConfig::default()
        };
        let file = dir.path().join(super::MAX_PRODUCER_ID_FILE);
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(log.max_producer_id(), -1);
        log.append(batch(0, 0, 7000)).unwrap();
        log.append(batch(1, 0, 12)).unwrap();
        assert_eq!(log.max_producer_id(), 7000);
        assert!(!file.exists(), "no metadata write on the append path");
        // A crash: never closed; the id comes back from the active segment.
        std::mem::forget(log);
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(log.max_producer_id(), 7000);
        // A log of one segment, scanned whole by every open, writes no file on opening;
        // a larger id since comes back from the active segment after another crash.
        assert!(!file.exists(), "written on opening");
        log.append(batch(2, 0, 9000)).unwrap();
        std::mem::forget(log);
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(log.max_producer_id(), 9000);

        let mut next = 3;
        while log.segment_count() == 1 {
            log.append(batch(next, 0, 5)).unwrap();
            next += 1;
        }
        let written: i64 = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(written, 9000, "written when its segment was sealed");
        std::mem::forget(log);
        let log = PartitionLog::open(dir.path(), config).unwrap();
        assert_eq!(log.max_producer_id(), 9000);
    }

    #[test]
    fn a_log_with_sealed_segments_without_the_file_is_scanned_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        };
        let file = dir.path().join(super::MAX_PRODUCER_ID_FILE);
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        log.append(batch(0, 0, 41)).unwrap();
        log.append(batch(1, 0, 3)).unwrap();
        assert_eq!(log.segment_count(), 2);
        drop(log);
        std::fs::remove_file(&file).unwrap();
        let log = PartitionLog::open(dir.path(), config).unwrap();
        assert_eq!(log.max_producer_id(), 41);
        let written: i64 = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(written, 41, "the scan of the sealed segment is kept");
    }

    #[test]
    fn begin_epoch_starts_at_the_log_end_and_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        log.append(batch(0, 3, -1)).unwrap();
        assert!(log.begin_epoch(4).unwrap());
        assert!(!log.begin_epoch(4).unwrap());
        assert!(!log.begin_epoch(2).unwrap());
        assert_eq!(log.epoch_entries(), vec![(3, 0), (4, 1)]);
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 1)));
        // A batch in the new epoch keeps the entry where it began.
        log.append(batch(1, 4, -1)).unwrap();
        assert_eq!(log.epoch_entries(), vec![(3, 0), (4, 1)]);
    }

    #[test]
    fn begin_epoch_on_an_epoch_that_has_no_batches_yet_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert!(log.begin_epoch(1).unwrap());
        assert!(log.begin_epoch(2).unwrap());
        assert_eq!(log.epoch_entries(), vec![(2, 0)]);
    }

    #[test]
    fn tail_walk_covers_whole_newest_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config).unwrap();
        for i in 0..5 {
            log.append(batch(i, 0, i)).unwrap();
        }
        assert_eq!(log.segment_count(), 5);
        let mut seen = Vec::new();
        log.for_each_tail_batch(1, |b| seen.push(b.base_offset()))
            .unwrap();
        assert_eq!(seen, vec![4]);
        seen.clear();
        log.for_each_tail_batch(u64::MAX, |b| seen.push(b.base_offset()))
            .unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }
}
