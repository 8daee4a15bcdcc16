//! A record set is written with one write per segment it touches, and lands in exactly
//! the segments, indexes and bytes that appending its batches one at a time makes.

use bytes::Bytes;
use proptest::prelude::*;
use shadowlink_protocol::batch::testing::build_batch;

use crate::index::OffsetEntry;
use crate::segment::MaxTimestamp;
use crate::time_index::TimeEntry;
use crate::{LogConfig, PartitionLog, PersistMode};

/// Batches of `(records, value bytes, timestamp step)` with contiguous offsets from 0.
fn batches(shapes: &[(usize, usize, i64)]) -> Vec<Bytes> {
    let (mut offset, mut timestamp) = (0i64, 1_000i64);
    shapes
        .iter()
        .map(|&(records, value_bytes, step)| {
            let value = vec![7u8; value_bytes];
            let records: Vec<_> = (0..records).map(|_| (None, Some(&value[..]))).collect();
            timestamp += step;
            let batch = build_batch(offset, 0, &records, timestamp);
            offset += records.len() as i64;
            batch
        })
        .collect()
}

/// A log that keeps appends in the page cache, with an index entry every 256 bytes.
pub(crate) fn open(
    dir: &std::path::Path,
    segment_bytes: u64,
    segment_ms: Option<u64>,
) -> PartitionLog {
    let config = LogConfig {
        persist: PersistMode::Os,
        segment_bytes,
        segment_ms,
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    PartitionLog::open(dir, config).unwrap()
}

type Layout = Vec<(
    i64,
    u64,
    i64,
    Vec<OffsetEntry>,
    Vec<TimeEntry>,
    Option<MaxTimestamp>,
)>;

/// What each segment holds and how it is indexed.
fn layout(log: &PartitionLog) -> Layout {
    log.segments
        .iter()
        .map(|s| {
            (
                s.base_offset,
                s.size,
                s.next_offset,
                s.index.entries().to_vec(),
                s.time_index.entries().to_vec(),
                s.max,
            )
        })
        .collect()
}

fn data_writes(log: &PartitionLog) -> u64 {
    log.segments.iter().map(|s| s.data_writes).sum()
}

#[test]
fn a_record_set_in_one_segment_is_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 1 << 30, None);
    let set = batches(&[(3, 100, 1); 20]).concat();
    let info = log.append(Bytes::from(set.clone())).unwrap();
    assert_eq!((info.batches, info.next_offset), (20, 60));
    assert_eq!(data_writes(&log), 1);
    let read = log.read(0, 1 << 20).unwrap();
    assert_eq!(read.chunks.concat(), set);
}

proptest! {
    // Each case creates two logs of many small segments: a few dozen cases cover the
    // roll decisions (size, time, both) without slowing the suite.
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn a_record_set_lands_where_its_batches_one_by_one_would(
        shapes in proptest::collection::vec((1usize..4, 0usize..700, 0i64..40), 1..40),
        segment_bytes in 100u64..6000,
        segment_ms in proptest::option::of(20u64..200),
    ) {
        let batches = batches(&shapes);
        let (one_dir, set_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut one_by_one = open(one_dir.path(), segment_bytes, segment_ms);
        for batch in &batches {
            one_by_one.append(batch.clone()).unwrap();
        }
        let mut whole = open(set_dir.path(), segment_bytes, segment_ms);
        whole.append(Bytes::from(batches.concat())).unwrap();
        prop_assert_eq!(layout(&whole), layout(&one_by_one));
        prop_assert_eq!(data_writes(&whole), whole.segments.len() as u64);
        prop_assert_eq!(data_writes(&one_by_one), batches.len() as u64);
        for (a, b) in whole.segments.iter().zip(&one_by_one.segments) {
            prop_assert_eq!(a.mapped().unwrap(), b.mapped().unwrap());
        }
    }
}

/// A read at any offset of a log of small batches with gaps between them (a compacted
/// source) starts at the first batch whose last offset is at or above it, however many
/// batches lie between it and the index entry before it.
#[test]
fn a_read_between_index_entries_starts_at_the_batch_holding_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 4096, None);
    let mut lasts = Vec::new();
    for i in 0..120i64 {
        let base = i * 3;
        let batch = build_batch(
            base,
            0,
            &[(None, Some(b"ab")), (None, Some(b"c"))],
            1_000 + i,
        );
        log.append(batch).unwrap();
        lasts.push(base + 1);
    }
    assert!(log.segments.len() > 1, "the batches span several segments");
    for offset in 0..log.log_end_offset() {
        let read = log.read(offset, 1).unwrap();
        let first = shadowlink_protocol::batch::RecordBatch::parse(read.chunks[0].clone()).unwrap();
        let expected = lasts.iter().find(|&&last| last >= offset).unwrap();
        assert_eq!(first.last_offset(), *expected, "read at {offset}");
    }
}

fn maps_made(log: &PartitionLog) -> u64 {
    let made = log.segments.iter().map(|s| &s.maps_made);
    made.map(|m| m.load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

#[test]
fn reads_after_appends_share_a_map_until_the_file_outgrows_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 1 << 30, None);
    let small = batches(&[(1, 100, 1); 200]);
    let mut held = Vec::new();
    for (offset, batch) in small.iter().enumerate() {
        log.append(batch.clone()).unwrap();
        let read = log.read(offset as i64, usize::MAX).unwrap().chunks.concat();
        assert_eq!(&read[..], &batch[..]);
        // Bytes read earlier stay what they were while the file grows under their map.
        held.push(log.read(0, usize::MAX).unwrap().chunks.concat());
    }
    assert_eq!(
        maps_made(&log),
        1,
        "each read after an append made a new map"
    );
    for (n, whole) in held.iter().enumerate() {
        assert_eq!(&whole[..], &small[..=n].concat()[..]);
    }
    let large = build_batch(200, 0, &[(None, Some(&vec![9u8; 2 << 20][..]))], 5_000);
    log.append(large.clone()).unwrap();
    let read = log.read(200, usize::MAX).unwrap().chunks.concat();
    assert_eq!(&read[..], &large[..]);
    assert_eq!(maps_made(&log), 2, "a file past its map is mapped again");
}
