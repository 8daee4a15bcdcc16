//! Append and read behaviour of `PartitionLog`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use common::*;
use shadowlink_protocol::batch::{BatchError, RecordBatch};
use shadowlink_storage::{LogConfig, PersistMode, StorageError};

#[test]
fn appends_and_reads_back_byte_identical_at_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let a = batch(0, 3, 5, 1_000);
    let b = gapped(10, 2, 7, 2_000); // offsets 10..=16, two records survive compaction
    let info = log.append(concat(&[a.clone(), b.clone()])).unwrap();
    assert_eq!(info.first_offset, 0);
    assert_eq!(info.last_offset, 16);
    assert_eq!(info.next_offset, 17); // base + lastOffsetDelta + 1, not base + count
    assert_eq!(
        (info.batches, info.bytes, info.max_timestamp),
        (2, a.len() + b.len(), 2_000)
    );
    assert_eq!(log.log_end_offset(), 17);
    assert_eq!(log.high_watermark(), 17);
    assert_eq!(read_all(&log), concat(&[a.clone(), b.clone()]));
    // Offsets inside the gap and inside a batch start at the containing/next batch.
    assert_eq!(
        joined(&log.read(1, usize::MAX).unwrap()),
        concat(&[a.clone(), b.clone()])
    );
    assert_eq!(joined(&log.read(5, usize::MAX).unwrap()), b);
    assert_eq!(joined(&log.read(16, usize::MAX).unwrap()), b);
    assert_eq!(log.size_bytes(), (a.len() + b.len()) as u64);
}

#[test]
fn read_bounds_follow_kip_74_and_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let a = batch(0, 1, 0, 1);
    let b = batch(1, 1, 0, 2);
    log.append(concat(&[a.clone(), b.clone()])).unwrap();
    // max_bytes smaller than one batch still returns that batch, and only it.
    assert_eq!(joined(&log.read(0, 1).unwrap()), a);
    assert_eq!(joined(&log.read(0, 0).unwrap()), a);
    assert_eq!(joined(&log.read(0, a.len() + b.len() - 1).unwrap()), a);
    assert_eq!(
        joined(&log.read(0, a.len() + b.len()).unwrap()),
        concat(&[a, b])
    );
    let at_end = log.read(2, 100).unwrap();
    assert!(at_end.chunks.is_empty());
    assert_eq!((at_end.log_start_offset, at_end.log_end_offset), (0, 2));
    assert!(matches!(
        log.read(3, 100),
        Err(StorageError::OffsetOutOfRange {
            requested: 3,
            log_start: 0,
            log_end: 2
        })
    ));
    assert!(matches!(
        log.read(-1, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn regression_and_bad_input_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    log.append(batch(10, 2, 0, 1)).unwrap();
    let before = read_all(&log);

    let err = log
        .append(concat(&[batch(12, 1, 0, 1), batch(11, 1, 0, 1)]))
        .unwrap_err();
    assert!(matches!(
        err,
        StorageError::OffsetRegression {
            base_offset: 11,
            log_end_offset: 13
        }
    ));
    let err = log.append(batch(5, 1, 0, 1)).unwrap_err();
    assert!(matches!(
        err,
        StorageError::OffsetRegression {
            base_offset: 5,
            log_end_offset: 12
        }
    ));

    let good = batch(12, 1, 0, 1);
    let partial = batch(13, 1, 0, 1);
    let err = log
        .append(concat(&[good.clone(), partial.slice(..20)]))
        .unwrap_err();
    assert!(matches!(
        err,
        StorageError::Batch {
            source: BatchError::Truncated { .. },
            ..
        }
    ));

    let mut flipped = BytesMut::from(&good[..]);
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    let err = log
        .append(concat(&[good.clone(), flipped.freeze()]))
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Batch { position, source: BatchError::CrcMismatch { .. } } if position == good.len())
    );

    let mut bad_magic = BytesMut::from(&good[..]);
    bad_magic[16] = 1;
    assert!(matches!(
        log.append(bad_magic.freeze()),
        Err(StorageError::Batch { .. })
    ));
    assert!(matches!(
        log.append(Bytes::new()),
        Err(StorageError::EmptyRecordSet)
    ));

    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(read_all(&log), before);
    assert!(!log.is_poisoned());
    log.append(good).unwrap();
    assert_eq!(log.log_end_offset(), 13);
}

#[test]
fn leader_epoch_is_stored_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let b = batch(0, 1, 42, 1);
    log.append(b.clone()).unwrap();
    let stored = RecordBatch::parse(read_all(&log)).unwrap();
    assert_eq!(stored.partition_leader_epoch(), 42);
    assert_eq!(stored.into_bytes(), b);
}

#[test]
fn rolls_on_size_and_reads_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut all = Vec::new();
    for i in 0..20 {
        let b = batch(i * 3, 3, 0, i);
        log.append(b.clone()).unwrap();
        all.push(b);
    }
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            assert!(std::fs::metadata(&path).unwrap().len() <= 1024);
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert_eq!(name.len(), 20, "zero-padded base offset: {name}");
        }
    }
    assert_eq!(read_all(&log), concat(&all));
    // A read spanning segments returns one chunk per segment, whole batches only.
    let result = log.read(0, 3 * all[0].len()).unwrap();
    assert_eq!(joined(&result), concat(&all[..3]));
}

#[test]
fn rolls_when_data_time_exceeds_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: Some(1_000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    log.append(batch(0, 1, 0, 10_000)).unwrap();
    log.append(batch(1, 1, 0, 10_900)).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(batch(2, 1, 0, 11_001)).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert!(dir.path().join(format!("{:020}.log", 2)).exists());
}

#[test]
fn rolls_when_relative_offsets_would_overflow_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    log.append(batch(0, 1, 0, 1)).unwrap();
    let far = 1i64 << 33;
    log.append(batch(far, 1, 0, 2)).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(joined(&log.read(far, 10).unwrap()), batch(far, 1, 0, 2));
    assert_eq!(joined(&log.read(5, 10).unwrap()), batch(far, 1, 0, 2));

    // An empty log whose only segment is far below the first batch re-bases it.
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    log.append(batch(far, 1, 0, 2)).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(joined(&log.read(0, 10).unwrap()), batch(far, 1, 0, 2));
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), far + 1);
}

#[test]
fn sealed_segment_reads_share_one_map() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..20 {
        log.append(batch(i, 1, 0, i)).unwrap();
    }
    assert!(log.segment_count() > 1);
    let first = log.read(0, 1).unwrap();
    let again = log.read(0, 1).unwrap();
    // Zero-copy: both reads point into the same mapped memory.
    assert_eq!(first.chunks[0].as_ptr(), again.chunks[0].as_ptr());
}

#[test]
fn timestamps_and_epochs_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let stamps = [100, 300, 200, 500, 400, 500];
    for (i, ts) in stamps.iter().enumerate() {
        let epoch = if i < 3 { 1 } else { 4 };
        log.append(batch(i as i64 * 10, 5, epoch, *ts)).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(150).unwrap(), Some((10, 300)));
    assert_eq!(log.offset_for_timestamp(301).unwrap(), Some((30, 500)));
    assert_eq!(log.offset_for_timestamp(501).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), Some((500, 30)));
    assert_eq!(log.epoch_entries(), vec![(1, 0), (4, 30)]);
    assert_eq!(log.latest_epoch(), Some(4));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 30)));
    assert_eq!(log.end_offset_for_epoch(3), Some((1, 30)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 55)));
    assert_eq!(log.end_offset_for_epoch(5), None);
}

#[test]
fn reopen_after_close_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..30 {
        log.append(gapped(i * 10, 2, 4, 1_000 + i)).unwrap();
    }
    let before: Vec<Bytes> = (0..log.log_end_offset())
        .map(|o| joined(&log.read(o, 500).unwrap()))
        .collect();
    let (leo, epochs, max_ts) = (
        log.log_end_offset(),
        log.epoch_entries(),
        log.max_timestamp().unwrap(),
    );
    let ts = log.offset_for_timestamp(1_015).unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.log_end_offset(), 294);
    assert_eq!(log.epoch_entries(), epochs);
    assert_eq!(log.max_timestamp().unwrap(), max_ts);
    assert_eq!(log.offset_for_timestamp(1_015).unwrap(), ts);
    for (o, expected) in before.iter().enumerate() {
        assert_eq!(
            &joined(&log.read(o as i64, 500).unwrap()),
            expected,
            "offset {o}"
        );
    }
}

/// The log's files other than segment data and indexes, with their inodes: a durable
/// metadata write replaces its file by rename, so it shows as a new inode.
fn metadata_inodes(dir: &Path) -> BTreeMap<String, u64> {
    let entries = std::fs::read_dir(dir).unwrap().map(Result::unwrap);
    entries
        .filter(|e| !["log", "index", "timeindex"].contains(&extension(&e.path())))
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().ino(),
            )
        })
        .collect()
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

/// A metadata write costs two fsyncs and a rename under the log's lock, so no append
/// makes one, not even the first batch of a new leader epoch (a mirror has one for each
/// partition's first batch): the checkpoint is brought up to date when the segment
/// holding the epoch's first batch is sealed, and until then recovery finds the epoch in
/// the active segment, after a crash as after a clean close.
#[test]
fn appends_rewrite_no_metadata_and_the_roll_writes_the_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        persist: PersistMode::Os,
        segment_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    log.append(batch(0, 2, 3, 1_000)).unwrap();
    let first = metadata_inodes(dir.path());
    assert!(!first.contains_key("leader-epoch-checkpoint"), "{first:?}");
    for base in (2..400).step_by(2) {
        log.append(batch(base, 2, 3, 1_000 + base)).unwrap();
    }
    log.append(batch(400, 2, 4, 2_000)).unwrap();
    assert_eq!(metadata_inodes(dir.path()), first);
    assert_eq!(log.epoch_entries(), vec![(3, 0), (4, 400)]);

    // A crash: the log is never closed, and the epochs come back from the active segment.
    std::mem::forget(log);
    let mut log = open(dir.path(), config.clone());
    assert_eq!(log.epoch_entries(), vec![(3, 0), (4, 400)]);

    // Sealing the segment writes the checkpoint before the next segment exists.
    let segments = log.segment_count();
    let mut base = 402;
    while log.segment_count() == segments {
        log.append(batch(base, 2, 5, 3_000 + base)).unwrap();
        base += 2;
    }
    let written: Vec<(i32, i64)> =
        serde_json::from_slice(&std::fs::read(dir.path().join("leader-epoch-checkpoint")).unwrap())
            .unwrap();
    assert_eq!(written, vec![(3, 0), (4, 400), (5, 402)]);
    std::mem::forget(log);
    let log = open(dir.path(), config);
    assert_eq!(log.epoch_entries(), vec![(3, 0), (4, 400), (5, 402)]);
}
