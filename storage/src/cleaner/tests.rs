use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use shadowlink_protocol::batch::testing::{BatchBuilder, RecordRef};
use shadowlink_protocol::batch::{BatchWalker, RecordBatch};

use super::swap::{install_until, Step};
use super::*;
use crate::config::LogConfig;

/// Small segments: one batch of a few records per segment or two.
fn open(dir: &Path) -> PartitionLog {
    let config = LogConfig {
        segment_bytes: 200,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    PartitionLog::open(dir, config).unwrap()
}

fn eager() -> CompactionConfig {
    CompactionConfig {
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1_000,
        ..CompactionConfig::default()
    }
}

fn put(log: &mut PartitionLog, records: &[RecordRef<'_>]) {
    let base = log.log_end_offset();
    log.append(
        BatchBuilder::new(base)
            .timestamp(10)
            .records(records)
            .build(),
    )
    .unwrap();
}

fn batches(log: &PartitionLog) -> Vec<RecordBatch> {
    let read = log.read(log.log_start_offset(), usize::MAX).unwrap();
    read.chunks
        .into_iter()
        .flat_map(|c| BatchWalker::new(c).map(Result::unwrap))
        .collect()
}

/// `(offset, key, value)` of every stored record, in offset order.
fn contents(log: &PartitionLog) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    batches(log)
        .iter()
        .filter(|b| !b.is_control())
        .flat_map(|b| {
            let mut bytes = b.as_bytes().clone();
            kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
                .unwrap()
                .records
        })
        .map(|r| (r.offset, text(r.key), text(r.value)))
        .collect()
}

fn kv(offset: i64, key: &str, value: Option<&str>) -> (i64, Option<String>, Option<String>) {
    (offset, Some(key.into()), value.map(String::from))
}

/// Writes 3 rounds of `a`, `b`, `c` (values 0..2), a tombstone for `b`, and rolls.
fn updates(log: &mut PartitionLog) {
    for round in ["0", "1", "2"] {
        let value = round.as_bytes();
        put(log, &[(Some(b"a"), Some(value)), (Some(b"b"), Some(value))]);
        put(log, &[(Some(b"c"), Some(value))]);
    }
    put(log, &[(Some(b"b"), None), (None, Some(b"no key"))]);
    log.roll_if_older_than(Duration::ZERO).unwrap();
}

#[test]
fn keeps_the_latest_record_of_each_key_at_its_offset_and_drops_records_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    updates(&mut log);
    let before = log.size_bytes();
    let stats = log.compact(&eager(), 100).unwrap().expect("a pass was due");
    assert_eq!(
        contents(&log),
        [
            kv(6, "a", Some("2")),
            kv(8, "c", Some("2")),
            kv(9, "b", None)
        ]
    );
    assert_eq!(log.log_end_offset(), 11, "offsets never move");
    assert!(stats.bytes_reclaimed() > 0 && log.size_bytes() < before);
    assert_eq!(stats.cleaned_to, 11);
    assert_eq!(
        log.read(0, 1).unwrap().chunks.len(),
        1,
        "a read in a gap finds the next batch"
    );
    drop(log);
    let log = open(dir.path());
    assert_eq!(contents(&log).len(), 3, "the cleaned log reopens as it was");
}

#[test]
fn a_tombstone_outlives_its_first_cleaning_by_delete_retention_then_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    updates(&mut log);
    let config = eager();
    log.compact(&config, 100).unwrap();
    assert!(contents(&log).contains(&kv(9, "b", None)));
    let (_, job) = log.compaction_plan(&config, 100 + 999).unwrap();
    assert!(
        job.is_none(),
        "nothing dirty and the tombstone not yet expired"
    );
    log.compact(&config, 100 + 1_000)
        .unwrap()
        .expect("the tombstone expired");
    assert_eq!(
        contents(&log),
        [kv(6, "a", Some("2")), kv(8, "c", Some("2"))]
    );
    assert!(log.compaction_plan(&config, 1_000_000).unwrap().1.is_none());
}

#[test]
fn a_batch_whose_records_all_survive_is_copied_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    put(
        &mut log,
        &[(Some(b"x"), Some(b"1")), (Some(b"y"), Some(b"1"))],
    );
    put(&mut log, &[(Some(b"x"), Some(b"2"))]);
    let survivor = BatchBuilder::new(3)
        .timestamp(10)
        .leader_epoch(3)
        .producer(9, 2, 40)
        .records(&[(Some(b"z"), Some(b"1")), (Some(b"w"), Some(b"1"))])
        .build();
    log.append(survivor.clone()).unwrap();
    log.roll_if_older_than(Duration::ZERO).unwrap();
    log.compact(&eager(), 100).unwrap().unwrap();
    let stored = batches(&log);
    assert_eq!(stored.len(), 3);
    assert_eq!(
        stored[1].as_bytes(),
        &log.read(2, 1).unwrap().chunks[0][..stored[1].len()]
    );
    assert_eq!(
        stored[2].as_bytes(),
        &survivor,
        "untouched batch kept byte for byte"
    );
    let rebuilt = &stored[0];
    assert_eq!(
        (
            rebuilt.base_offset(),
            rebuilt.last_offset(),
            rebuilt.record_count()
        ),
        (0, 1, 1)
    );
}

#[test]
fn an_emptied_batch_goes_unless_it_is_its_producers_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let batch = |base: i64, seq: i32, key: &'static [u8]| {
        BatchBuilder::new(base)
            .timestamp(10)
            .producer(5, 0, seq)
            .records(&[(Some(key), Some(b"v"))])
            .build()
    };
    log.append(batch(0, 0, b"k")).unwrap();
    log.append(batch(1, 1, b"k")).unwrap();
    log.append(batch(2, 2, b"m")).unwrap();
    log.append(
        BatchBuilder::new(3)
            .timestamp(10)
            .records(&[(Some(b"m"), Some(b"w"))])
            .build(),
    )
    .unwrap();
    log.roll_if_older_than(Duration::ZERO).unwrap();
    log.compact(&eager(), 100).unwrap().unwrap();
    let stored = batches(&log);
    let shape: Vec<_> = stored
        .iter()
        .map(|b| {
            (
                b.base_offset(),
                b.producer_id(),
                b.base_sequence(),
                b.record_count(),
            )
        })
        .collect();
    // Offset 0 lost its record and goes; offset 2 lost its record but is producer 5's
    // last batch, so it stays, empty, with its sequence.
    assert_eq!(shape, [(1, 5, 1, 1), (2, 5, 2, 0), (3, -1, -1, 1)]);
}

#[test]
fn aborted_data_goes_and_markers_go_once_their_transaction_is_empty_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let txn = |base: i64, pid: i64, key: &'static [u8]| {
        BatchBuilder::new(base)
            .timestamp(10)
            .producer(pid, 0, 0)
            .transactional()
            .records(&[(Some(key), Some(b"t"))])
            .build()
    };
    let marker = |base: i64, pid: i64, commit: bool| {
        BatchBuilder::new(base)
            .timestamp(10)
            .producer(pid, 0, -1)
            .marker(commit)
            .build()
    };
    log.append(txn(0, 1, b"aborted")).unwrap();
    log.append(marker(1, 1, false)).unwrap();
    log.append(txn(2, 2, b"kept")).unwrap();
    log.append(marker(3, 2, true)).unwrap();
    log.append(txn(4, 3, b"kept")).unwrap();
    log.append(marker(5, 3, true)).unwrap();
    put(&mut log, &[(Some(b"other"), Some(b"v"))]);
    log.roll_if_older_than(Duration::ZERO).unwrap();
    let config = eager();
    log.compact(&config, 100).unwrap().unwrap();
    let offsets = |log: &PartitionLog| -> Vec<(i64, i32)> {
        batches(log)
            .iter()
            .map(|b| (b.base_offset(), b.record_count()))
            .collect()
    };
    // Producer 1's aborted batch is its last, so it stays empty with its marker; the
    // superseded `kept` of producer 2 stays empty too (its last batch).
    assert_eq!(
        offsets(&log),
        [(0, 0), (1, 1), (2, 0), (3, 1), (4, 1), (5, 1), (6, 1)]
    );
    assert!(contents(&log)
        .iter()
        .all(|(_, k, _)| k.as_deref() != Some("aborted")));
    assert!(
        log.compaction_plan(&config, 100 + 1_000)
            .unwrap()
            .1
            .is_none(),
        "markers of transactions with a batch left are not waiting to expire"
    );
    let reopened = {
        drop(log);
        open(dir.path())
    };
    assert_eq!(reopened.last_stable_offset(), reopened.log_end_offset());
}

#[test]
fn an_empty_transactions_marker_is_removed_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    // A transaction of producer 4 whose data a later non-transactional record of the
    // same key supersedes, then a later batch of producer 4 so the first is not its last.
    let txn = BatchBuilder::new(0)
        .timestamp(10)
        .producer(4, 0, 0)
        .transactional()
        .records(&[(Some(b"k"), Some(b"old"))])
        .build();
    log.append(txn).unwrap();
    log.append(
        BatchBuilder::new(1)
            .timestamp(10)
            .producer(4, 0, -1)
            .marker(true)
            .build(),
    )
    .unwrap();
    log.append(
        BatchBuilder::new(2)
            .timestamp(10)
            .producer(4, 0, 1)
            .records(&[(Some(b"j"), Some(b"v"))])
            .build(),
    )
    .unwrap();
    put(&mut log, &[(Some(b"k"), Some(b"new"))]);
    log.roll_if_older_than(Duration::ZERO).unwrap();
    let config = eager();
    log.compact(&config, 100).unwrap().unwrap();
    let bases = |log: &PartitionLog| -> Vec<i64> {
        batches(log).iter().map(RecordBatch::base_offset).collect()
    };
    assert_eq!(
        bases(&log),
        [1, 2, 3],
        "the marker waits for delete.retention.ms"
    );
    log.compact(&config, 1_100).unwrap().unwrap();
    assert_eq!(bases(&log), [2, 3]);
}

#[test]
fn the_active_segment_open_transactions_and_young_data_are_never_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    put(&mut log, &[(Some(b"a"), Some(b"1"))]);
    put(&mut log, &[(Some(b"a"), Some(b"2"))]);
    let config = eager();
    assert!(
        log.compaction_plan(&config, 100).unwrap().1.is_none(),
        "all in the active segment"
    );
    log.roll_if_older_than(Duration::ZERO).unwrap();
    let lagging = CompactionConfig {
        min_compaction_lag_ms: 1_000,
        ..eager()
    };
    assert!(
        log.compaction_plan(&lagging, 500).unwrap().1.is_none(),
        "younger than the lag"
    );
    let open_txn = BatchBuilder::new(2)
        .timestamp(10)
        .producer(8, 0, 0)
        .transactional()
        .records(&[(Some(b"a"), Some(b"3"))])
        .build();
    log.append(open_txn).unwrap();
    log.roll_if_older_than(Duration::ZERO).unwrap();
    put(&mut log, &[(Some(b"a"), Some(b"4"))]);
    log.roll_if_older_than(Duration::ZERO).unwrap();
    log.compact(&config, 100).unwrap().unwrap();
    let keys = contents(&log);
    assert_eq!(
        keys,
        [
            kv(1, "a", Some("2")),
            kv(2, "a", Some("3")),
            kv(3, "a", Some("4"))
        ],
        "cleaning stops at the open transaction"
    );
}

#[test]
fn the_dirty_ratio_decides_when_a_pass_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    updates(&mut log);
    let lazy = CompactionConfig {
        min_cleanable_dirty_ratio: 0.5,
        ..eager()
    };
    let (state, job) = log.compaction_plan(&lazy, 100).unwrap();
    assert_eq!(state.dirty_ratio, 1.0);
    assert!(job.is_some());
    log.compact(&lazy, 100).unwrap().unwrap();
    put(&mut log, &[(Some(b"a"), Some(b"3"))]);
    log.roll_if_older_than(Duration::ZERO).unwrap();
    let (state, job) = log.compaction_plan(&lazy, 100).unwrap();
    assert!(
        state.dirty_ratio > 0.0 && state.dirty_ratio < 0.5,
        "{state:?}"
    );
    assert!(job.is_none());
    let overdue = CompactionConfig {
        max_compaction_lag_ms: 50,
        ..lazy
    };
    assert!(
        log.compaction_plan(&overdue, 100).unwrap().1.is_some(),
        "dirty data past the max lag"
    );
}

#[test]
fn a_pass_is_discarded_if_its_segments_changed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    updates(&mut log);
    let job = log.compaction_plan(&eager(), 100).unwrap().1.unwrap();
    let cleaned = job.run(&mut Throttle::unlimited()).unwrap();
    let second = log.segments[1].base_offset;
    log.delete_before(second).unwrap();
    let before = contents(&log);
    let e = log.commit_clean(cleaned).unwrap_err();
    assert!(matches!(e, StorageError::CleanedStale { .. }), "{e}");
    assert_eq!(contents(&log), before);
    assert!(!log.is_poisoned());
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cleaned")
        })
        .count();
    assert_eq!(leftovers, 0, "the discarded pass's files are removed");
}

/// Runs a pass up to `step` of its first group's swap, then "crashes" (no Drop, which
/// would write index files), and returns the reopened log.
fn crash_at(step: Option<Step>) -> (BTreeMap<i64, Vec<u8>>, PartitionLog, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    updates(&mut log);
    log.compact(&eager(), 100).unwrap().unwrap();
    updates(&mut log);
    let job = log.compaction_plan(&eager(), 100).unwrap().1.unwrap();
    let cleaned = job.run(&mut Throttle::unlimited()).unwrap();
    let bases: Vec<i64> = cleaned.groups[0].members.iter().map(|m| m.0).collect();
    assert!(bases.len() > 1, "the test needs a merged group");
    if let Some(step) = step {
        install_until(dir.path(), &bases, step).unwrap();
    }
    std::mem::forget(cleaned);
    std::mem::forget(log);
    let log = open(dir.path());
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| {
            let base = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            (base, std::fs::read(&p).unwrap())
        })
        .collect();
    (files, log, dir)
}

#[test]
fn a_crash_before_the_swap_leaves_the_old_segments() {
    let (_, log, dir) = crash_at(None);
    let uncleaned = contents(&log);
    assert_eq!(uncleaned.len(), 3 + 11, "every record is still there");
    assert_eq!(uncleaned[3], kv(11, "a", Some("0")));
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .path()
        .to_str()
        .unwrap()
        .ends_with(".cleaned")));
}

#[test]
fn a_crash_at_any_point_after_the_swap_finishes_it_at_open() {
    let expected = [
        kv(17, "a", Some("2")),
        kv(19, "c", Some("2")),
        kv(20, "b", None),
    ];
    let (untouched, _, _dir) = crash_at(None);
    let (swapped, _, _dir) = crash_at(Some(Step::Done));
    assert_ne!(untouched, swapped);
    for step in [Step::Swapped, Step::FirstDeleted, Step::Deleted, Step::Done] {
        let (files, mut log, dir) = crash_at(Some(step));
        // The first group is swapped in, byte for byte; later ones are still the old
        // data, which the next pass cleans.
        assert_eq!(files, swapped, "{step:?}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".swap") || n.ends_with(".cleaned"))
            .collect();
        assert!(leftovers.is_empty(), "{step:?}: {leftovers:?}");
        log.compact(&eager(), 100).unwrap();
        assert_eq!(contents(&log), expected, "{step:?}");
        assert_eq!(log.read(0, usize::MAX).unwrap().log_end_offset, 22);
    }
}

#[test]
fn indexes_find_every_kept_batch_after_a_swap_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    for i in 0..40u8 {
        let key = [b'k', i % 5];
        put(&mut log, &[(Some(&key), Some(&[i]))]);
    }
    log.roll_if_older_than(Duration::ZERO).unwrap();
    log.compact(&eager(), 100).unwrap().unwrap();
    for log in [&log, &open(dir.path())] {
        let kept: Vec<i64> = batches(log).iter().map(RecordBatch::base_offset).collect();
        assert_eq!(kept, [35, 36, 37, 38, 39]);
        for offset in 0..40 {
            let first = log.read(offset, 1).unwrap().chunks[0].clone();
            let batch = BatchWalker::new(first).next().unwrap().unwrap();
            assert_eq!(batch.base_offset(), offset.max(35), "read at {offset}");
        }
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((35, 10)));
        assert_eq!(log.epoch_for_offset(37), Some(0));
    }
}

#[test]
fn a_segment_is_replaced_by_given_batches_byte_for_byte_and_out_of_range_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    updates(&mut log);
    let sealed = log.sealed_segments();
    let first = sealed[0];
    let stored = log.segment_data(first.base_offset).unwrap().unwrap();
    let kept: Vec<RecordBatch> = BatchWalker::new(stored.clone())
        .map(Result::unwrap)
        .collect();
    assert!(
        kept.len() > 1,
        "the test needs a segment of several batches"
    );
    let replacement = kept[kept.len() - 1].as_bytes().clone();
    let too_far = BatchBuilder::new(first.next_offset)
        .records(&[(Some(b"k"), None)])
        .build();
    let e = Cleaned::replacement(dir.path(), first, too_far, 5).unwrap_err();
    assert!(
        matches!(e, StorageError::ReplacementOutOfRange { .. }),
        "{e}"
    );
    let cleaned = Cleaned::replacement(dir.path(), first, replacement.clone(), 5).unwrap();
    log.commit_clean(cleaned).unwrap();
    assert_eq!(
        log.segment_data(first.base_offset).unwrap().unwrap(),
        replacement
    );
    assert_eq!(
        log.sealed_segments()[1..],
        sealed[1..],
        "later segments untouched"
    );
    let read = log.read(first.base_offset, usize::MAX).unwrap();
    assert_eq!(
        read.chunks[0], replacement,
        "a read at the old base finds the kept batch"
    );
    drop(log);
    let log = open(dir.path());
    assert_eq!(
        log.segment_data(first.base_offset).unwrap().unwrap(),
        replacement
    );
}

#[test]
fn the_throttle_holds_cleaning_to_its_byte_rate() {
    let started = std::time::Instant::now();
    let mut throttle = Throttle::new(Some(10_000));
    for _ in 0..4 {
        throttle.spend(500);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "2,000 B at 10,000 B/s"
    );
    let started = std::time::Instant::now();
    Throttle::unlimited().spend(u64::MAX / 2);
    assert!(started.elapsed() < Duration::from_millis(100));
}
