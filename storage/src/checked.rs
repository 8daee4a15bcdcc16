//! Record sets walked and CRC-checked once, where they arrive.
//!
//! A mirror checks every fetched batch's CRC-32C as the response comes in, so that a
//! byte damaged on the way is fetched again instead of stored. [`CheckedRecordSet::check`]
//! is that check, and the only way to make a [`CheckedRecordSet`]: the log takes one
//! without walking or hashing its batches again ([`PartitionLog::append_checked`]),
//! and still checks what depends on the log itself (offsets at or above its end).

use bytes::Bytes;
use shadowlink_protocol::batch::{BatchError, BatchWalker, RecordBatch};

use crate::config::PersistMode;
use crate::durability::PendingSync;
use crate::error::Result;
use crate::log::{AppendInfo, PartitionLog};
use crate::stamp::{Arrived, Stamped};

/// Whole batches whose framing and CRC were checked, with the views the walk made of
/// them, so storing them reads only their fixed header fields.
#[derive(Debug, Clone)]
pub struct CheckedRecordSet {
    bytes: Bytes,
    /// Never empty; consecutive slices of `bytes`, covering it.
    batches: Vec<RecordBatch>,
}

/// A batch that cannot be stored as it came: its header cannot be read or its CRC does
/// not match its contents. Nothing from it on is in the checked set.
#[derive(Debug, thiserror::Error)]
#[error("unreadable batch at offset {offset}: {source}")]
pub struct UnreadableBatch {
    /// The first offset the batch would have covered: where fetching resumes.
    pub offset: i64,
    #[source]
    pub source: BatchError,
}

/// What a received record set holds: the intact batches from the requested offset on,
/// and the batch that stopped the walk, if one did. A partial batch at the end (a fetch
/// response cut at its size limit) is neither.
#[derive(Debug)]
pub struct Checked {
    pub set: Option<CheckedRecordSet>,
    pub unreadable: Option<UnreadableBatch>,
}

impl CheckedRecordSet {
    /// Walks `records` and checks the CRC of every batch that ends at or after
    /// `from_offset`; batches wholly below it (a fetch may start inside a batch) are
    /// skipped unread. Stops at the first batch that fails.
    pub fn check(records: &Bytes, from_offset: i64) -> Checked {
        let (mut position, mut start) = (0, None);
        let mut next_offset = from_offset;
        let mut batches = Vec::new();
        let mut unreadable = None;
        for batch in BatchWalker::new(records.clone()) {
            // Once a batch is kept every later one is, so the set covers its bytes
            // exactly: one going backwards is then refused by the log's offset check.
            let kept =
                batch.and_then(
                    |b| match start.is_some() || b.last_offset() >= next_offset {
                        true => b.validate_crc().map(|()| (b, true)),
                        false => Ok((b, false)),
                    },
                );
            match kept {
                Ok((batch, true)) => {
                    start.get_or_insert(position);
                    // Offsets advance by lastOffsetDelta, never recordCount: compacted
                    // sources have gaps inside and between batches.
                    next_offset = batch.next_offset();
                    position += batch.len();
                    batches.push(batch);
                }
                Ok((skipped, false)) => position += skipped.len(),
                Err(source) => {
                    unreadable = Some(UnreadableBatch {
                        offset: next_offset,
                        source,
                    });
                    break;
                }
            }
        }
        let set = start.map(|s| CheckedRecordSet {
            bytes: records.slice(s..position),
            batches,
        });
        Checked { set, unreadable }
    }

    /// The stored bytes: every batch, as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Whether a batch of the set is a control batch (a transaction marker).
    pub fn holds_control(&self) -> bool {
        self.batches.iter().any(RecordBatch::is_control)
    }

    /// Always false: a checked set holds at least one batch.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Where the next batch may start: the last batch's `baseOffset + lastOffsetDelta + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last().next_offset()
    }

    /// The leader epoch of the last batch (-1 for a legacy entry).
    pub fn last_epoch(&self) -> i32 {
        self.last().partition_leader_epoch()
    }

    /// Records in the batches, control records included; a compressed legacy wrapper,
    /// whose count is unknown without decompressing, counts none.
    pub fn record_count(&self) -> u64 {
        let counts = self.batches.iter().map(RecordBatch::record_count);
        counts.map(|n| u64::try_from(n).unwrap_or(0)).sum()
    }

    /// The batches that end at or after `offset`, or `None` when none does: what is left
    /// to store of a set when the log already holds the batches below `offset`.
    pub fn from_offset(&self, offset: i64) -> Option<CheckedRecordSet> {
        let skip = self.batches.partition_point(|b| b.last_offset() < offset);
        let kept = self.batches.get(skip..).filter(|rest| !rest.is_empty())?;
        let at: usize = self.batches[..skip].iter().map(RecordBatch::len).sum();
        Some(CheckedRecordSet {
            bytes: self.bytes.slice(at..),
            batches: kept.to_vec(),
        })
    }

    fn last(&self) -> &RecordBatch {
        self.batches.last().expect("a checked set holds a batch")
    }
}

impl PartitionLog {
    /// [`PartitionLog::append_deferred`] of a set whose batches were checked when they
    /// arrived: only the offsets are checked against the log, so no batch is walked or
    /// hashed twice.
    pub fn append_checked(
        &mut self,
        set: &CheckedRecordSet,
    ) -> Result<(AppendInfo, Option<PendingSync>)> {
        let info = self.append_checked_unsynced(set)?;
        Ok((info, self.sync_after_append()))
    }

    /// [`PartitionLog::append_checked`] for a writer whose node runs a flush timer
    /// ([`PartitionLog::sync_due_at`]): in `Interval` mode a sync that fell due stays owed
    /// to that timer instead of being handed out, so the next append need not wait for
    /// it, and the bytes just received are written while still in the CPU's cache.
    /// A sealed segment is still synced at the end of the append that rolled it, as
    /// recovery rescans only the last segment.
    pub fn append_checked_timed(
        &mut self,
        set: &CheckedRecordSet,
    ) -> Result<(AppendInfo, Option<PendingSync>)> {
        let info = self.append_checked_unsynced(set)?;
        let timed = matches!(self.config.persist, PersistMode::Interval(_));
        let sync = if timed && !self.sealed_unsynced {
            None
        } else {
            self.sync_after_append()
        };
        Ok((info, sync))
    }

    /// [`PartitionLog::append_checked`] of a client's batches, as a leader stores them:
    /// moved so the first starts at the log end offset (the others keep their distance
    /// to it) and stamped with `leader_epoch`. Only `baseOffset` and
    /// `partitionLeaderEpoch` change, and both lie before the CRC-32C's range, so the
    /// check still holds and is not repeated. A legacy message has no leader epoch (its
    /// CRC sits there): only its offset moves. The client's bytes are written as they
    /// are, beside the new header fields, never copied to be rewritten.
    pub fn append_as_leader(
        &mut self,
        set: &CheckedRecordSet,
        leader_epoch: i32,
    ) -> Result<(AppendInfo, Option<PendingSync>)> {
        self.check_writable()?;
        let shift = self
            .log_end_offset()
            .wrapping_sub(set.batches[0].base_offset());
        let stamped: Vec<Stamped<'_>> = (set.batches.iter())
            .map(|b| Stamped::new(b, b.base_offset().wrapping_add(shift), leader_epoch))
            .collect();
        self.check_order(&stamped)?;
        let info = self.write_batches_unsynced(&stamped[..])?;
        Ok((info, self.sync_after_append()))
    }

    fn append_checked_unsynced(&mut self, set: &CheckedRecordSet) -> Result<AppendInfo> {
        self.check_writable()?;
        self.check_order(&set.batches)?;
        let arrived = Arrived {
            bytes: &set.bytes,
            batches: &set.batches,
        };
        self.write_batches_unsynced(&arrived)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shadowlink_protocol::batch::testing::build_batch;

    use super::*;
    use crate::append_tests::open;
    use crate::StorageError;

    /// Batches of `(records, value bytes, timestamp step, leader epoch step)` with
    /// contiguous offsets from 0.
    fn batches(shapes: &[(usize, usize, i64, i32)]) -> Vec<Bytes> {
        let (mut offset, mut timestamp, mut epoch) = (0i64, 1_000i64, 0);
        let mut out = Vec::new();
        for &(records, value_bytes, step, epoch_step) in shapes {
            let value = vec![7u8; value_bytes];
            let records: Vec<_> = (0..records).map(|_| (None, Some(&value[..]))).collect();
            timestamp += step;
            epoch += epoch_step;
            out.push(build_batch(offset, epoch, &records, timestamp));
            offset += records.len() as i64;
        }
        out
    }

    /// Every segment's file bytes, offset index, time index and bounds, and the epochs.
    fn on_disk(log: &PartitionLog) -> impl PartialEq + std::fmt::Debug {
        let segments: Vec<_> = log
            .segments
            .iter()
            .map(|s| {
                (
                    s.base_offset,
                    s.next_offset,
                    s.mapped().unwrap(),
                    s.index.entries().to_vec(),
                    s.time_index.entries().to_vec(),
                    s.max,
                )
            })
            .collect();
        (segments, log.epoch_entries(), log.log_end_offset())
    }

    fn checked(records: &Bytes, from: i64) -> CheckedRecordSet {
        let checked = CheckedRecordSet::check(records, from);
        assert!(checked.unreadable.is_none());
        checked.set.expect("intact batches")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn a_checked_append_stores_what_the_checking_append_stores(
            shapes in proptest::collection::vec((1usize..4, 0usize..700, 0i64..40, 0i32..2), 1..40),
            cuts in proptest::collection::vec(0usize..40, 0..4),
            segment_bytes in 100u64..6000,
            segment_ms in proptest::option::of(20u64..200),
        ) {
            let batches = batches(&shapes);
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c < batches.len()).collect();
            bounds.extend([0, batches.len()]);
            bounds.sort();
            bounds.dedup();
            let sets: Vec<Bytes> = bounds
                .windows(2)
                .map(|w| Bytes::from(batches[w[0]..w[1]].concat()))
                .collect();
            let (full_dir, checked_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let mut full = open(full_dir.path(), segment_bytes, segment_ms);
            let mut pre = open(checked_dir.path(), segment_bytes, segment_ms);
            for set in &sets {
                let a = full.append(set.clone()).unwrap();
                let (b, sync) = pre.append_checked(&checked(set, pre.log_end_offset())).unwrap();
                prop_assert!(sync.is_none());
                prop_assert_eq!(a, b);
            }
            prop_assert_eq!(on_disk(&pre), on_disk(&full));
            // Recovery rebuilds the last segment's indexes from its bytes: the same.
            drop((full, pre));
            let full = open(full_dir.path(), segment_bytes, segment_ms);
            let pre = open(checked_dir.path(), segment_bytes, segment_ms);
            prop_assert_eq!(on_disk(&pre), on_disk(&full));
        }
    }

    #[test]
    fn the_check_skips_batches_below_the_offset_and_stops_at_a_bad_crc() {
        let parts = batches(&[(2, 10, 1, 0), (2, 10, 1, 1), (2, 10, 1, 0), (2, 10, 1, 0)]);
        let mut records = parts.concat();
        let third_end = parts[0].len() + parts[1].len() + parts[2].len();
        records[third_end - 1] ^= 0x01;
        let records = Bytes::from(records);
        let checked = CheckedRecordSet::check(&records, 3);
        let set = checked.set.expect("the second batch is intact");
        assert_eq!(set.bytes(), &parts[1]);
        assert_eq!(
            (set.next_offset(), set.last_epoch(), set.record_count()),
            (4, 1, 2)
        );
        let bad = checked.unreadable.expect("the third batch fails its CRC");
        assert_eq!(bad.offset, 4);
        assert!(matches!(
            bad.source,
            BatchError::CrcMismatch { base_offset: 4, .. }
        ));
        let none = CheckedRecordSet::check(&records.slice(third_end - parts[2].len()..), 4);
        assert!(none.set.is_none() && none.unreadable.is_some());
    }

    #[test]
    fn from_offset_keeps_the_batches_the_log_does_not_hold_yet() {
        let records = Bytes::from(batches(&[(2, 10, 1, 0); 3]).concat());
        let set = checked(&records, 0);
        let rest = set.from_offset(3).expect("batches 2..=5 are left");
        assert_eq!(rest.batches().len(), 2);
        assert_eq!(rest.bytes(), &records.slice(records.len() / 3..));
        assert!(set.from_offset(6).is_none());
        assert_eq!(set.from_offset(0).unwrap().len(), records.len());
    }

    /// The batches stored from `offset` on.
    fn stored(log: &PartitionLog, offset: i64) -> Vec<RecordBatch> {
        let bytes = Bytes::from(log.read(offset, usize::MAX).unwrap().chunks.concat());
        let walked: std::result::Result<_, _> = BatchWalker::new(bytes).collect();
        walked.unwrap()
    }

    #[test]
    fn a_leader_append_moves_the_offsets_and_stamps_the_epoch_of_the_bytes_it_writes() {
        let records = Bytes::from(batches(&[(2, 10, 1, 0), (3, 10, 1, 0)]).concat());
        let set = checked(&records, 0);
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), 1 << 20, None);
        log.append(build_batch(0, 0, &[(None, Some(b"v"))], 1_000))
            .unwrap();
        let (info, _) = log.append_as_leader(&set, 7).unwrap();
        assert_eq!(
            (info.first_offset, info.next_offset, info.bytes),
            (1, 6, set.len())
        );
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(log.epoch_entries(), [(0, 0), (7, 1)]);
        let stored = stored(&log, 1);
        let bases: Vec<_> = stored.iter().map(RecordBatch::base_offset).collect();
        assert_eq!(bases, [1, 3]);
        for (new, old) in stored.iter().zip(set.batches()) {
            assert_eq!(new.partition_leader_epoch(), 7);
            let (new, old) = (new.as_bytes(), old.as_bytes());
            assert_eq!((&new[8..12], &new[16..]), (&old[8..12], &old[16..]));
            assert!(RecordBatch::parse(new.clone())
                .unwrap()
                .validate_crc()
                .is_ok());
        }
    }

    #[test]
    fn leader_appends_that_roll_segments_index_and_reopen_at_their_new_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), 2_000, None);
        let set = checked(&Bytes::from(batches(&[(4, 200, 1, 0); 5]).concat()), 0);
        for round in 0..4 {
            log.append_as_leader(&set, round).unwrap();
        }
        assert!(log.segment_count() > 2, "the small segments rolled");
        let written = stored(&log, 0);
        let reopened = {
            drop(log);
            let log = open(dir.path(), 2_000, None);
            assert_eq!(log.log_end_offset(), 80);
            stored(&log, 0)
        };
        assert_eq!(written.len(), 20);
        let bytes = |batches: &[RecordBatch]| -> Vec<Bytes> {
            batches.iter().map(|b| b.as_bytes().clone()).collect()
        };
        assert_eq!(bytes(&reopened), bytes(&written));
        for (n, batch) in written.iter().enumerate() {
            assert_eq!(batch.base_offset(), 4 * n as i64);
            assert_eq!(batch.partition_leader_epoch(), n as i32 / 5);
            assert!(batch.validate_crc().is_ok());
        }
        let log = open(dir.path(), 2_000, None);
        assert_eq!(log.epoch_entries(), [(0, 0), (1, 20), (2, 40), (3, 60)]);
        assert_eq!(stored(&log, 43)[0].base_offset(), 40);
    }

    #[test]
    fn a_leader_append_of_a_legacy_message_moves_it_and_keeps_its_crc() {
        let message = shadowlink_protocol::batch::testing::build_legacy_message(
            0,
            1,
            1_000,
            None,
            Some(b"v"),
        );
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), 1 << 20, None);
        log.append(build_batch(0, 0, &[(None, Some(b"v"))], 1_000))
            .unwrap();
        log.append_as_leader(&checked(&message, 0), 7).unwrap();
        let stored = stored(&log, 1);
        let bytes = stored[0].as_bytes();
        assert_eq!(stored[0].base_offset(), 1);
        assert_eq!(&bytes[8..], &message[8..]);
        assert!(stored[0].validate_crc().is_ok());
    }

    #[test]
    fn a_checked_set_below_the_log_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), 1 << 20, None);
        let records = Bytes::from(batches(&[(2, 10, 1, 0); 2]).concat());
        let set = checked(&records, 0);
        log.append_checked(&set).unwrap();
        assert!(matches!(
            log.append_checked(&set),
            Err(StorageError::OffsetRegression {
                base_offset: 0,
                log_end_offset: 4
            })
        ));
        assert_eq!(log.log_end_offset(), 4);
    }

    #[test]
    fn a_timed_append_leaves_an_interval_sync_to_the_timer_but_syncs_a_sealed_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), 1 << 30, None);
        log.config.persist = PersistMode::Interval(std::time::Duration::ZERO);
        let records = Bytes::from(batches(&[(2, 10, 1, 0); 3]).concat());
        let (_, sync) = log.append_checked_timed(&checked(&records, 0)).unwrap();
        assert!(
            sync.is_none(),
            "an interval sync was handed to the appender"
        );
        assert!(log.durability.is_unsynced(&log.segments[0].log_path));
        assert!(
            log.sync_due_at().is_some(),
            "the owed sync must reach the timer"
        );
        let more = build_batch(6, 0, &[(None, Some(b"v"))], 2_000);
        let (_, sync) = log.append_checked(&checked(&more, 6)).unwrap();
        assert!(sync.is_some(), "a plain append still hands the sync out");

        let mut small = open(&dir.path().join("small"), 1, None);
        small.config.persist = PersistMode::Interval(std::time::Duration::from_secs(3600));
        let one = build_batch(0, 0, &[(None, Some(b"v"))], 1_000);
        small.append_checked_timed(&checked(&one, 0)).unwrap();
        let two = build_batch(1, 0, &[(None, Some(b"v"))], 1_001);
        let (_, sync) = small.append_checked_timed(&checked(&two, 1)).unwrap();
        assert_eq!(small.segments.len(), 2, "the second batch rolled the log");
        sync.expect("the sealed segment is synced by the append that rolled")
            .wait()
            .unwrap();
        assert!(!small.durability.is_unsynced(&small.segments[0].log_path));
    }
}
