use bytes::Bytes;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_protocol::batch::BatchWalker;

use super::TXN_FILE;
use crate::{LogConfig, PartitionLog};

fn data(base: i64, producer_id: i64, records: usize) -> Bytes {
    let values: Vec<_> = (0..records).map(|_| (None, Some(&b"v"[..]))).collect();
    BatchBuilder::new(base)
        .producer(producer_id, 0, 0)
        .transactional()
        .records(&values)
        .build()
}

fn marker(base: i64, producer_id: i64, commit: bool) -> Bytes {
    BatchBuilder::new(base)
        .producer(producer_id, 0, -1)
        .marker(commit)
        .build()
}

fn plain(base: i64) -> Bytes {
    BatchBuilder::new(base)
        .records(&[(None, Some(b"p"))])
        .build()
}

/// Interleaved: producer 1 writes 0..2 and 4, commits at 6; producer 2 writes 2..4 and
/// 5, aborts at 7; a plain batch at 8; producer 3 opens at 9 and stays open; 10 plain.
fn interleaved() -> Vec<Bytes> {
    vec![
        data(0, 1, 2),
        data(2, 2, 2),
        data(4, 1, 1),
        data(5, 2, 1),
        marker(6, 1, true),
        marker(7, 2, false),
        plain(8),
        data(9, 3, 1),
        plain(10),
    ]
}

fn open_log(dir: &std::path::Path, segment_bytes: u64) -> PartitionLog {
    let config = LogConfig {
        segment_bytes,
        ..LogConfig::default()
    };
    PartitionLog::open(dir, config).unwrap()
}

fn filled(dir: &std::path::Path, segment_bytes: u64) -> PartitionLog {
    let mut log = open_log(dir, segment_bytes);
    for batch in interleaved() {
        log.append(batch).unwrap();
    }
    log
}

/// `(producer id, first offset)` pairs.
type Aborted = Vec<(i64, i64)>;

/// Every answer the index gives, for comparing logs.
fn answers(log: &PartitionLog) -> (i64, Aborted, Aborted, Aborted) {
    (
        log.last_stable_offset(),
        log.aborted_transactions(0, i64::MAX),
        log.aborted_transactions(7, 8),
        log.aborted_transactions(8, i64::MAX),
    )
}

#[test]
fn the_oldest_open_transaction_bounds_the_lso_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), 1 << 30);
    assert_eq!(log.last_stable_offset(), 0);
    let batches = interleaved();
    let lsos = [0, 0, 0, 0, 2, 8, 9, 9, 9];
    for (batch, lso) in batches.into_iter().zip(lsos) {
        log.append(batch).unwrap();
        assert_eq!(log.last_stable_offset(), lso);
    }
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![(2, 2)]);
    // Kafka's overlap rule: marker at or above `from`, first offset below `upper`.
    assert_eq!(log.aborted_transactions(7, 3), vec![(2, 2)]);
    assert!(log.aborted_transactions(8, i64::MAX).is_empty());
    assert!(log.aborted_transactions(0, 2).is_empty());
    log.append(marker(11, 3, false)).unwrap();
    assert_eq!(log.last_stable_offset(), 12);
    assert_eq!(log.aborted_transactions(8, 12), vec![(3, 9)]);
}

#[test]
fn open_transactions_lists_producers_without_a_marker_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), 1 << 30);
    log.append(data(0, 8, 1)).unwrap();
    log.append(data(1, 7, 2)).unwrap();
    log.append(data(3, 8, 1)).unwrap();
    assert_eq!(log.open_transactions(), vec![(8, 0), (7, 1)]);
    log.append(marker(4, 8, true)).unwrap();
    assert_eq!(log.open_transactions(), vec![(7, 1)]);
    drop(log);
    let log = open_log(dir.path(), 1 << 30);
    assert_eq!(log.open_transactions(), vec![(7, 1)]);
}

#[test]
fn markers_without_data_and_empty_control_batches_add_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), 1 << 30);
    // The mirror started after producer 4's data: its ABORT marker has nothing to cover.
    log.append(marker(0, 4, false)).unwrap();
    log.append(data(1, 5, 1)).unwrap();
    assert_eq!(log.last_stable_offset(), 1);
    // A control batch whose marker compaction removed still ends the transaction.
    let empty_control = BatchBuilder::new(2)
        .producer(5, 0, -1)
        .attributes(0x30)
        .build();
    log.append(empty_control).unwrap();
    assert_eq!(log.last_stable_offset(), 3);
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
}

#[test]
fn read_committed_stops_before_the_lso_and_names_overlapping_aborts() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: the aborted range spans several of them.
    let log = filled(dir.path(), 1);
    assert!(log.segment_count() > 5);
    let mut offsets = Vec::new();
    let mut offset = 0;
    loop {
        let read = log.read_committed(offset, 1 << 20).unwrap();
        assert_eq!(read.last_stable_offset, 9);
        let Some(chunk) = read.read.chunks.last() else {
            break;
        };
        if offset <= 7 {
            assert_eq!(read.aborted_transactions, vec![(2, 2)], "from {offset}");
        } else {
            assert!(read.aborted_transactions.is_empty(), "from {offset}");
        }
        let last = BatchWalker::new(chunk.clone()).last().unwrap().unwrap();
        offsets.push(last.last_offset());
        offset = last.next_offset();
    }
    assert_eq!(offsets.last(), Some(&8), "nothing at or after the LSO");
    let at_lso = log.read_committed(9, 1 << 20).unwrap();
    assert!(at_lso.read.chunks.is_empty() && at_lso.aborted_transactions.is_empty());
    // Before the aborted data starts, the entry is not needed.
    let first = log.read_committed(0, 1).unwrap();
    assert_eq!(first.read.len(), data(0, 1, 2).len());
    assert!(first.aborted_transactions.is_empty());
}

#[test]
fn reopening_with_or_without_the_file_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let expected = answers(&filled(dir.path(), 1));
    assert_eq!(answers(&open_log(dir.path(), 1)), expected);
    std::fs::remove_file(dir.path().join(TXN_FILE)).unwrap();
    assert_eq!(answers(&open_log(dir.path(), 1)), expected);
    std::fs::write(dir.path().join(TXN_FILE), b"garbage").unwrap();
    assert_eq!(answers(&open_log(dir.path(), 1)), expected);
}

#[test]
fn a_file_ahead_of_the_recovered_log_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let mut log = filled(dir.path(), 1 << 30);
        log.truncate_to(7).unwrap();
        answers(&log)
    };
    assert_eq!(expected.0, 2);
    // A snapshot of the longer log (written at its rolls), as if a crash lost the tail
    // it described.
    let longer = tempfile::tempdir().unwrap();
    drop(filled(longer.path(), 1));
    let snapshot = std::fs::read(longer.path().join(TXN_FILE)).unwrap();
    let snapshot: serde_json::Value = serde_json::from_slice(&snapshot).unwrap();
    assert!(snapshot["end_offset"].as_i64().unwrap() > 7, "{snapshot}");
    std::fs::copy(longer.path().join(TXN_FILE), dir.path().join(TXN_FILE)).unwrap();
    assert_eq!(answers(&open_log(dir.path(), 1 << 30)), expected);
}

#[test]
fn truncation_reopens_transactions_and_drops_their_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 1);
    log.truncate_to(7).unwrap();
    assert_eq!(log.last_stable_offset(), 2, "producer 2 is open again");
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    log.append(marker(7, 2, false)).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![(2, 2)]);
    log.truncate_fully_and_start_at(20).unwrap();
    assert_eq!(log.last_stable_offset(), 20);
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    drop(log);
    assert_eq!(open_log(dir.path(), 1).last_stable_offset(), 20);
}

#[test]
fn retention_drops_aborts_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 1);
    log.delete_before(7).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![(2, 2)]);
    log.delete_before(8).unwrap();
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    drop(log);
    let log = open_log(dir.path(), 1);
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    assert_eq!(log.last_stable_offset(), 9);
}
