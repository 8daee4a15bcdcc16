//! A clean close that spares the next open a read of the active segment.
//!
//! Every open after a crash reads the whole active segment to check its CRCs, since a
//! torn write can only be in its tail. After a clean close nothing is torn, but the scan
//! still costs a read of up to `segment_bytes` per partition: with 256 MiB segments, a
//! node holding a thousand busy partitions would read over a hundred gigabytes to
//! restart. So a clean close of a log whose active segment holds at least
//! [`crate::LogConfig::clean_close_min_bytes`] syncs the segment, writes its indexes and
//! the transaction index, leader epochs and largest producer id as of its end, and then,
//! last, the `clean-close` file naming the segment and its length. An open that finds
//! the file removes it before anything else (Kafka's `.kafka_cleanshutdown` works the
//! same way), and opens the active segment like a sealed one, from its indexes, when the
//! file still matches it. A crash leaves no file, so the next open scans everything.
//!
//! Smaller active segments write none of this: their scan is cheaper than the fsyncs.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::log::PartitionLog;
use crate::meta::{read_meta, sync_dir, write_meta};
use crate::producers::MAX_PRODUCER_ID_FILE;

pub(crate) const CLEAN_FILE: &str = "clean-close";

/// The active segment as a clean close left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CleanClose {
    /// The active segment's base offset.
    pub(crate) segment: i64,
    /// Its length in bytes, all of them whole batches.
    pub(crate) size: u64,
    /// Its first batch's newest timestamp, which time-based rolls count from: kept here
    /// so the open reads nothing at the start of the segment.
    pub(crate) first_timestamp: Option<i64>,
}

/// Reads and removes `dir`'s clean-close file, durably, so that nothing written after
/// this open can be mistaken for what the close left. An unreadable file counts as none.
pub(crate) fn take(dir: &Path) -> Result<Option<CleanClose>> {
    let path = dir.join(CLEAN_FILE);
    let clean = match read_meta::<CleanClose>(&path) {
        Ok(clean) => clean,
        Err(StorageError::Meta { .. }) => None,
        Err(e) => return Err(e),
    };
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("removing", &path)(e)),
    }
    Ok(clean)
}

impl PartitionLog {
    /// Whether a close should leave a clean-close file.
    pub(crate) fn worth_a_clean_close(&self) -> bool {
        let active = &self.segments[self.segments.len() - 1];
        active.size > 0 && active.size >= self.config.clean_close_min_bytes
    }

    /// Makes everything the next open would rebuild from the active segment durable, and
    /// then the file that lets it skip the rebuild. Any failure leaves no file.
    pub(crate) fn close_cleanly(&mut self) -> Result<()> {
        self.pending_sync().wait()?;
        let active = self.segments.len() - 1;
        let segment = &mut self.segments[active];
        // The pending sync covers this log's own writes; bytes an earlier process wrote
        // without a sync, or a recovery's cut, are made durable here.
        segment.sync_all_data()?;
        sync_dir(&self.dir)?;
        segment.read_first_timestamp()?;
        segment.write_indexes_durably()?;
        self.txns.persist()?;
        if !self.epochs.is_persisted() {
            self.epochs.persist()?;
        }
        // Without the file, the next open would scan every segment for producer ids.
        let bound = self.dir.join(MAX_PRODUCER_ID_FILE);
        if self.max_producer_id > self.persisted_max_producer_id || !bound.exists() {
            write_meta(&bound, &self.max_producer_id)?;
            self.persisted_max_producer_id = self.max_producer_id;
        }
        let active = &self.segments[active];
        let clean = CleanClose {
            segment: active.base_offset,
            size: active.size,
            first_timestamp: active.first_timestamp,
        };
        write_meta(&self.dir.join(CLEAN_FILE), &clean)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;
    use shadowlink_protocol::batch::testing::BatchBuilder;

    use super::*;
    use crate::index::OffsetEntry;
    use crate::segment::MaxTimestamp;
    use crate::time_index::TimeEntry;
    use crate::{LogConfig, PersistMode};

    const VALUE: [u8; 200] = [7; 200];

    fn config(clean_close_min_bytes: u64) -> LogConfig {
        LogConfig {
            persist: PersistMode::Os,
            index_interval_bytes: 600,
            clean_close_min_bytes,
            ..LogConfig::default()
        }
    }

    /// Batch `n` at offset `n`: epoch 3 then 4, producers 7 then 9, one transaction of
    /// producer 11 aborted at offsets 4 and 5, timestamps rising but for one step back.
    fn batch(n: i64) -> Bytes {
        let builder = BatchBuilder::new(n)
            .leader_epoch(if n < 3 { 3 } else { 4 })
            .timestamp(1_000 + n * 10 - if n == 6 { 50 } else { 0 });
        match n {
            4 => builder
                .producer(11, 0, 0)
                .transactional()
                .records(&[(None, Some(&VALUE[..]))]),
            5 => builder.producer(11, 0, -1).transactional().marker(false),
            _ => builder
                .producer(if n < 6 { 7 } else { 9 }, 0, n as i32)
                .records(&[(None, Some(&VALUE[..]))]),
        }
        .build()
    }

    fn filled(dir: &Path, config: &LogConfig, batches: std::ops::Range<i64>) -> PartitionLog {
        let mut log = PartitionLog::open(dir, config.clone()).unwrap();
        for n in batches {
            log.append(batch(n)).unwrap();
        }
        log
    }

    type State = (
        (i64, u64, i64, Vec<OffsetEntry>, Vec<TimeEntry>),
        (Option<MaxTimestamp>, Option<i64>, u64),
        (Vec<(i32, i64)>, i64, i64, Vec<(i64, i64)>),
    );

    /// The active segment as the next append builds on it, and the log's derived state.
    fn state(log: &PartitionLog) -> State {
        let s = &log.segments[log.segments.len() - 1];
        (
            (
                s.base_offset,
                s.size,
                s.next_offset,
                s.index.entries().to_vec(),
                s.time_index.entries().to_vec(),
            ),
            (s.max, s.first_timestamp, s.bytes_since_index),
            (
                log.epoch_entries(),
                log.max_producer_id(),
                log.last_stable_offset(),
                log.aborted_transactions(0, i64::MAX),
            ),
        )
    }

    /// Flips a byte in the last record of the batch that ends at `end` in the active
    /// segment: a CRC scan finds it, nothing else does.
    fn damage_batch_ending_at(dir: &Path, end: u64) {
        let path = dir.join(format!("{:020}.log", 0));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[end as usize - 3] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }

    fn end_of_batch(log: &PartitionLog, n: i64) -> u64 {
        let (mut position, mut end) = (0, 0);
        log.segments[0]
            .for_each_batch(|b| {
                position += b.len() as u64;
                if b.base_offset() == n {
                    end = position;
                }
            })
            .unwrap();
        end
    }

    #[test]
    fn an_open_after_a_clean_close_loads_the_active_segment_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), &config(1), 0..8);
        let (before, damaged_end) = (state(&log), end_of_batch(&log, 2));
        drop(log);
        assert!(dir.path().join(CLEAN_FILE).exists());
        damage_batch_ending_at(dir.path(), damaged_end);
        let log = PartitionLog::open(dir.path(), config(1)).unwrap();
        assert!(
            !dir.path().join(CLEAN_FILE).exists(),
            "an open takes the file"
        );
        assert_eq!(state(&log), before, "no batch was read to check its CRC");
        assert!(!log.recovered().dropped_anything());
    }

    #[test]
    fn without_the_file_an_open_checks_every_batch_and_cuts_at_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), &config(1), 0..8);
        let damaged_end = end_of_batch(&log, 2);
        drop(log);
        // An open that finds the file removes it: a crash after it leaves none.
        std::mem::forget(PartitionLog::open(dir.path(), config(1)).unwrap());
        damage_batch_ending_at(dir.path(), damaged_end);
        let log = PartitionLog::open(dir.path(), config(1)).unwrap();
        assert_eq!(log.log_end_offset(), 2);
        assert!(log.recovered().dropped_anything());
    }

    #[test]
    fn a_file_that_no_longer_matches_the_active_segment_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        drop(filled(dir.path(), &config(1), 0..8));
        let path = dir.path().join(format!("{:020}.log", 0));
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, &[0xee; 40]).unwrap();
        let log = PartitionLog::open(dir.path(), config(1)).unwrap();
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(log.recovered().dropped_bytes, 40, "the torn tail is cut");
    }

    #[test]
    fn a_log_opened_from_a_clean_close_goes_on_as_one_that_was_scanned() {
        let (clean, scanned) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (dir, min) in [(clean.path(), 1), (scanned.path(), u64::MAX)] {
            drop(filled(dir, &config(min), 0..8));
        }
        assert!(clean.path().join(CLEAN_FILE).exists());
        assert!(!scanned.path().join(CLEAN_FILE).exists());
        let reopened = |dir: &Path, min| {
            let mut log = PartitionLog::open(dir, config(min)).unwrap();
            for n in 8..14 {
                log.append(batch(n)).unwrap();
            }
            state(&log)
        };
        assert_eq!(
            reopened(clean.path(), 1),
            reopened(scanned.path(), u64::MAX)
        );
    }

    #[test]
    fn an_active_segment_whose_newest_timestamp_came_first_opens_reading_a_few_headers() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), config(1)).unwrap();
        // The first batch's timestamp stays the newest: the time index keeps one entry.
        for n in 0..400 {
            let timestamp = if n == 0 { 1_000_000 } else { n };
            let batch = BatchBuilder::new(n).timestamp(timestamp);
            log.append(batch.records(&[(None, Some(&VALUE[..]))]).build())
                .unwrap();
        }
        drop(log);
        let log = PartitionLog::open(dir.path(), config(1)).unwrap();
        let active = &log.segments[0];
        assert_eq!(active.time_index.entries().len(), 1);
        assert_eq!(
            active.max.map(|m| (m.timestamp, m.offset)),
            Some((1_000_000, 0))
        );
        let checked = active.headers_checked.load(Ordering::Relaxed);
        assert!(checked < 12, "read {checked} of 400 batch headers");
    }

    #[test]
    fn a_sealed_segment_made_active_by_truncation_keeps_its_first_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), &config(1), 0..8);
        log.roll(20).unwrap();
        log.append(
            BatchBuilder::new(20)
                .records(&[(None, Some(&VALUE[..]))])
                .build(),
        )
        .unwrap();
        drop(log);
        // The sealed segment is loaded from its indexes; truncating into the gap after it
        // makes it the active one.
        let mut log = PartitionLog::open(dir.path(), config(1)).unwrap();
        log.truncate_to(15).unwrap();
        assert_eq!((log.segment_count(), log.log_end_offset()), (1, 8));
        assert_eq!(log.segments[0].first_timestamp, Some(1_000));
        drop(log);
        let log = PartitionLog::open(dir.path(), config(1)).unwrap();
        assert_eq!(log.segments[0].first_timestamp, Some(1_000));
    }

    #[test]
    fn a_small_active_segment_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        drop(filled(dir.path(), &LogConfig::default(), 0..8));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{:020}.log", 0)]);
    }

    #[test]
    fn an_unreadable_file_counts_as_none_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        drop(filled(dir.path(), &config(1), 0..8));
        std::fs::write(dir.path().join(CLEAN_FILE), b"{").unwrap();
        let log = PartitionLog::open(dir.path(), config(1)).unwrap();
        assert_eq!(log.log_end_offset(), 8);
        drop(log);
        assert!(
            dir.path().join(CLEAN_FILE).exists(),
            "written again on close"
        );
        assert_eq!(take(dir.path()).unwrap().map(|c| c.segment), Some(0));
        assert!(take(dir.path()).unwrap().is_none());
    }
}
