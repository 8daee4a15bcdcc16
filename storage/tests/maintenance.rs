//! Log start/end maintenance: delete_before, truncate_to, retention, poisoning.

mod common;

use std::fs;

use bytes::Bytes;
use common::*;
use shadowlink_storage::{LogConfig, PartitionLog, StorageError};

/// 20 batches of 2 offsets each (0..40) over several 1 KiB segments.
fn filled(dir: &std::path::Path, config: LogConfig) -> (PartitionLog, Vec<Bytes>) {
    let mut log = open(dir, config);
    let batches: Vec<Bytes> = (0..20)
        .map(|i| batch(i * 2, 2, (i / 5) as i32, 1_000 * i))
        .collect();
    for b in &batches {
        log.append(b.clone()).unwrap();
    }
    (log, batches)
}

#[test]
fn delete_before_moves_log_start_and_removes_whole_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config());
    let segments = log.segment_count();
    // Seven ~141-byte batches fit a 1 KiB segment: the first holds offsets 0..14.
    log.delete_before(15).unwrap(); // inside the batch 14..=15
    assert_eq!(log.log_start_offset(), 15);
    assert_eq!(log.segment_count(), segments - 1);
    assert!(!dir.path().join(format!("{:020}.log", 0)).exists());
    assert!(matches!(
        log.read(14, 1),
        Err(StorageError::OffsetOutOfRange { log_start: 15, .. })
    ));
    assert_eq!(joined(&log.read(15, 1).unwrap()), batches[7]); // never cut inside a batch
    assert_eq!(log.epoch_entries()[0], (1, 15));
    log.delete_before(5).unwrap(); // lower: no-op
    assert_eq!(log.log_start_offset(), 15);
    assert!(matches!(
        log.delete_before(41),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 15);
    assert_eq!(joined(&log.read(15, 1).unwrap()), batches[7]);
}

#[test]
fn delete_before_the_end_empties_the_log_but_keeps_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = filled(dir.path(), small_config());
    log.delete_before(40).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (40, 40, 0)
    );
    assert!(log.read(40, 10).unwrap().chunks.is_empty());
    let next = batch(40, 1, 9, 1);
    log.append(next.clone()).unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 41));
    assert_eq!(read_all(&log), next);
}

#[test]
fn truncate_to_a_boundary_removes_the_tail_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config());
    log.truncate_to(16).unwrap();
    assert_eq!(log.log_end_offset(), 16);
    assert_eq!(read_all(&log), concat(&batches[..8]));
    assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 10)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 16)));
    assert_eq!(log.max_timestamp().unwrap(), Some((7_000, 14)));
    assert_eq!(log.offset_for_timestamp(7_500).unwrap(), None);
    // The tail can be written again, and everything survives a reopen.
    log.append(concat(&batches[8..])).unwrap();
    assert_eq!(read_all(&log), concat(&batches));
    log.truncate_to(20).unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(read_all(&log), concat(&batches[..10]));
    assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 10)]);
}

#[test]
fn truncate_inside_a_batch_cuts_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config());
    log.truncate_to(17).unwrap(); // batch 16..=17
    assert_eq!(log.log_end_offset(), 16);
    assert_eq!(read_all(&log), concat(&batches[..8]));
    log.truncate_to(100).unwrap(); // beyond the end: no-op
    assert_eq!(log.log_end_offset(), 16);
}

#[test]
fn truncate_into_an_offset_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let (a, b) = (batch(0, 5, 0, 1), batch(50, 5, 1, 2));
    log.append(concat(&[a.clone(), b])).unwrap();
    log.truncate_to(20).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(read_all(&log), a);
    assert_eq!(log.epoch_entries(), vec![(0, 0)]);
}

#[test]
fn truncation_keeps_bytes_already_handed_to_readers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let batches: Vec<Bytes> = (0..10).map(|i| batch(i, 1, 0, i)).collect();
    log.append(concat(&batches)).unwrap();
    let held = log.read(0, usize::MAX).unwrap();
    log.truncate_to(3).unwrap();
    // The truncated file was replaced, not shrunk under the live map: no SIGBUS, and
    // the reader still sees the bytes it was given.
    assert_eq!(joined(&held), concat(&batches));
    assert_eq!(read_all(&log), concat(&batches[..3]));
    let replacement = batch(3, 4, 0, 3);
    log.append(replacement.clone()).unwrap();
    assert_eq!(joined(&held), concat(&batches));
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(
        read_all(&log),
        concat(&[concat(&batches[..3]), replacement])
    );
}

#[test]
fn truncate_below_log_start_restarts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = filled(dir.path(), small_config());
    log.delete_before(20).unwrap();
    log.truncate_to(10).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
    log.truncate_fully_and_start_at(1_000).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (1_000, 1_000)
    );
    assert!(log.epoch_entries().is_empty());
    assert!(matches!(
        log.append(batch(999, 1, 0, 1)),
        Err(StorageError::OffsetRegression { .. })
    ));
    log.append(batch(1_000, 1, 0, 1)).unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (1_000, 1_001)
    );
}

#[test]
fn a_restarted_log_takes_the_source_batch_holding_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = filled(dir.path(), small_config());
    log.truncate_fully_and_start_at(1_000).unwrap();
    // The source's log start (1000) lies inside its batch 998..=1001.
    let straddling = batch(998, 4, 3, 7);
    log.append(straddling.clone()).unwrap();
    let after = batch(1_002, 2, 3, 8);
    log.append(after.clone()).unwrap();
    assert!(matches!(
        log.append(batch(1_003, 1, 3, 9)),
        Err(StorageError::OffsetRegression { .. })
    ));
    let check = |log: &PartitionLog| {
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (1_000, 1_004)
        );
        assert_eq!(read_all(log), concat(&[straddling.clone(), after.clone()]));
        assert!(matches!(
            log.read(999, 1),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.epoch_entries(), vec![(3, 1_000)]);
    };
    check(&log);
    drop(log);
    check(&open(dir.path(), small_config()));
}

#[test]
fn only_an_empty_log_takes_a_batch_that_starts_below_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    log.append(batch(0, 4, 0, 1)).unwrap();
    assert!(matches!(
        log.append(batch(2, 4, 0, 2)),
        Err(StorageError::OffsetRegression { .. })
    ));
}

#[test]
fn a_restart_interrupted_before_its_deletions_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path(), small_config());
    drop(log);
    // As truncate_fully_and_start_at leaves it when the process dies right after
    // persisting the new log start.
    fs::write(dir.path().join("log-start-offset"), b"5000").unwrap();
    let mut log = open(dir.path(), small_config());
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (5_000, 5_000, 0)
    );
    assert!(!dir.path().join(format!("{:020}.log", 0)).exists());
    log.append(batch(5_000, 1, 0, 1)).unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (5_000, 5_001)
    );
}

#[test]
fn time_retention_deletes_old_sealed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(5_000),
        ..small_config()
    };
    let (mut log, batches) = filled(dir.path(), config);
    let segments = log.segment_count();
    // Newest batch is at 19_000; at now = 100_000 every sealed segment is expired.
    assert_eq!(log.apply_retention(10_000).unwrap(), 0);
    let deleted = log.apply_retention(100_000).unwrap();
    assert_eq!(deleted as usize, segments - 1);
    assert_eq!(
        log.segment_count(),
        1,
        "the active segment is never deleted"
    );
    let start = log.log_start_offset();
    assert!(start > 0);
    assert_eq!(read_all(&log), concat(&batches[start as usize / 2..]));
}

#[test]
fn retention_limits_can_change_on_an_open_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = filled(dir.path(), small_config());
    let segments = log.segment_count();
    assert_eq!(
        log.apply_retention(100_000).unwrap(),
        0,
        "no limit, nothing deleted"
    );
    log.set_retention(Some(5_000), None);
    assert_eq!(log.apply_retention(100_000).unwrap() as usize, segments - 1);
    log.set_retention(None, None);
    assert_eq!(log.apply_retention(i64::MAX).unwrap(), 0);
}

#[test]
fn size_retention_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(1_500),
        ..small_config()
    };
    let (mut log, _) = filled(dir.path(), config);
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() >= 1_500);
    assert!(log.size_bytes() < 1_500 + 1_024);
    assert_eq!(log.apply_retention(0).unwrap(), 0);
    let files = fs::read_dir(dir.path()).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "log")
    });
    assert_eq!(files.count(), log.segment_count());
}

#[test]
fn failed_write_poisons_the_log_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    log.append(batch(0, 2, 0, 1)).unwrap();
    // Sabotage: a directory where the active segment's index goes, so writing the
    // index when the segment is sealed on roll fails.
    let index = dir.path().join(format!("{:020}.index", 0));
    let _ = fs::remove_file(&index);
    fs::create_dir(&index).unwrap();
    let mut offset = 2;
    let mut failure = None;
    for _ in 0..20 {
        match log.append(batch(offset, 2, 0, 1)) {
            Ok(_) => offset += 2,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("rolling must fail");
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert!(log.is_poisoned());
    assert!(matches!(
        log.append(batch(offset, 2, 0, 1)),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(log.flush(), Err(StorageError::Poisoned)));
    assert!(matches!(log.truncate_to(0), Err(StorageError::Poisoned)));
    assert_eq!(log.read(0, 10).unwrap().chunks.len(), 1, "reads still work");
    drop(log);
    fs::remove_dir(&index).unwrap();
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), offset);
    log.append(batch(offset, 2, 0, 1)).unwrap();
}

#[test]
fn retention_due_says_whether_applying_the_limits_would_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = filled(dir.path(), small_config());
    // Three segments; their newest batches are stamped 6_000, 13_000 and 19_000.
    let cases = [
        (10_000, Some(5_000), None, false),
        (0, None, Some(u64::MAX), false),
        (0, None, Some(1_500), true),
        (20_000, Some(5_000), None, true),
        (i64::MAX, None, None, false),
    ];
    for (now_ms, ms, bytes, due) in cases {
        assert_eq!(
            log.retention_due(now_ms, ms, bytes),
            due,
            "{now_ms} {ms:?} {bytes:?}"
        );
        log.set_retention(ms, bytes);
        let deleted = log.apply_retention(now_ms).unwrap();
        assert_eq!(deleted > 0, due, "{now_ms} {ms:?} {bytes:?}");
        assert!(
            !log.retention_due(now_ms, ms, bytes),
            "all that was due went"
        );
    }
    assert_eq!(log.segment_count(), 1);
    assert!(
        !log.retention_due(i64::MAX, Some(0), Some(0)),
        "the active segment is never due"
    );
}
