//! Legacy v0/v1 messages in the log: a topic written by 0.8 and 0.10 clients, then
//! upgraded in place to v2 batches, is stored, indexed, read and recovered unchanged.

mod common;

use std::fs;
use std::path::Path;

use bytes::Bytes;
use common::*;
use shadowlink_protocol::batch::testing::{build_batch, build_gzip_wrapper, build_legacy_message};
use shadowlink_protocol::batch::{RecordBatch, MAGIC_V0, MAGIC_V1};
use shadowlink_storage::{LogConfig, PartitionLog, StorageError};

/// v0 messages at 0..4, a gzip v0 wrapper for 4..7, v1 messages at 7..10, gzip v1
/// wrappers for 10..14 and 14..16, then v2 batches in epochs 2 (16..19) and 3 (19).
fn history() -> Vec<Bytes> {
    let value = [b'v'; 24];
    let three = vec![(Some(&b"key"[..]), Some(&value[..])); 3];
    let four = vec![(None, Some(&value[..])); 4];
    let two = vec![(Some(&b"k"[..]), None); 2];
    let mut out: Vec<Bytes> = (0..4)
        .map(|o| build_legacy_message(o, MAGIC_V0, -1, Some(b"key"), Some(&value)))
        .collect();
    out.push(build_gzip_wrapper(6, MAGIC_V0, &three, -1));
    out.extend((7..10).map(|o| build_legacy_message(o, MAGIC_V1, 1_000 + o, None, Some(&value))));
    out.push(build_gzip_wrapper(13, MAGIC_V1, &four, 2_000));
    out.push(build_gzip_wrapper(15, MAGIC_V1, &two, 3_000));
    out.push(build_batch(16, 2, &three, 4_000));
    out.push(build_batch(19, 3, &two[..1], 5_000));
    out
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

fn filled(dir: &Path) -> (PartitionLog, Vec<Bytes>) {
    let entries = history();
    let mut log = open(dir, config());
    // The v0 messages arrive as one record set, the rest one by one.
    log.append(concat(&entries[..4])).unwrap();
    for entry in &entries[4..] {
        log.append(entry.clone()).unwrap();
    }
    (log, entries)
}

/// The entry a read at `offset` must start with: the first whose last offset reaches it.
fn holder(entries: &[Bytes], offset: i64) -> &Bytes {
    entries
        .iter()
        .find(|e| RecordBatch::parse((*e).clone()).unwrap().last_offset() >= offset)
        .unwrap()
}

fn check_reads(log: &PartitionLog, entries: &[Bytes]) {
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(read_all(log), concat(entries));
    for offset in 0..20 {
        let read = joined(&log.read(offset, 1).unwrap());
        assert_eq!(&read, holder(entries, offset), "read at {offset}");
    }
}

#[test]
fn legacy_entries_then_v2_batches_are_stored_indexed_and_read_at_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, entries) = filled(dir.path());
    assert!(log.segment_count() > 2);
    check_reads(&log, &entries);
    // Legacy entries carry no leader epoch: only the v2 batches start epochs.
    assert_eq!(log.epoch_entries(), vec![(2, 16), (3, 19)]);
    // v0 has no timestamps, so the first v1 message is the first at or after time 0.
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((7, 1_007)));
    // A compressed wrapper is found from the offset after the entry before it, so a
    // consumer starting there receives all of its records.
    assert_eq!(log.offset_for_timestamp(2_002).unwrap(), Some((10, 2_003)));
    assert_eq!(log.offset_for_timestamp(3_001).unwrap(), Some((14, 3_001)));
    assert_eq!(log.offset_for_timestamp(3_002).unwrap(), Some((16, 4_000)));
    assert_eq!(log.max_timestamp().unwrap(), Some((5_000, 19)));
    assert_eq!(log.max_producer_id(), -1);
}

#[test]
fn reopening_and_rebuilding_indexes_reads_legacy_entries_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (log, entries) = filled(dir.path());
    drop(log);
    check_reads(&open(dir.path(), config()), &entries);
    for file in fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "index" || ext == "timeindex" {
            fs::remove_file(path).unwrap();
        }
    }
    let log = open(dir.path(), config());
    check_reads(&log, &entries);
    assert_eq!(log.epoch_entries(), vec![(2, 16), (3, 19)]);
}

#[test]
fn a_segment_rolled_for_a_legacy_wrapper_starts_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let first = build_legacy_message(0, MAGIC_V1, 10, None, Some(b"v"));
    let records = [
        (None, Some(&b"a"[..])),
        (None, Some(b"b")),
        (None, Some(b"c")),
    ];
    let wrapper = build_gzip_wrapper(3, MAGIC_V1, &records, 20);
    log.append(first).unwrap();
    log.append(wrapper.clone()).unwrap();
    // The wrapper holds offsets 1..=3, so its segment is based at 1, not at 3.
    assert!(dir.path().join(format!("{:020}.log", 1)).exists());
    assert_eq!(log.offset_for_timestamp(11).unwrap(), Some((1, 22)));
    for offset in 1..=3 {
        assert_eq!(joined(&log.read(offset, 1).unwrap()), wrapper);
    }
}

/// v0 and v1 messages then a gzip v1 wrapper, all in one segment.
fn legacy_only(dir: &Path) -> Vec<Bytes> {
    let entries: Vec<Bytes> = history().into_iter().take(9).collect();
    let mut log = open(dir, LogConfig::default());
    log.append(concat(&entries)).unwrap();
    entries
}

#[test]
fn a_torn_legacy_wrapper_is_cut_off_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let entries = legacy_only(dir.path());
    let log_path = dir.path().join(format!("{:020}.log", 0));
    let full = fs::read(&log_path).unwrap();
    let kept = concat(&entries[..8]);
    for cut in kept.len()..full.len() {
        fs::write(&log_path, &full[..cut]).unwrap();
        let log = open(dir.path(), LogConfig::default());
        assert_eq!(log.log_end_offset(), 10, "cut at {cut}");
        assert_eq!(read_all(&log), kept);
        drop(log);
        assert_eq!(fs::metadata(&log_path).unwrap().len() as usize, kept.len());
    }
    // The lost wrapper is accepted again, followed by v2 batches.
    let mut log = open(dir.path(), LogConfig::default());
    log.append(entries[8].clone()).unwrap();
    let v2 = build_batch(14, 0, &[(None, None)], 9);
    log.append(v2.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 15);
    assert_eq!(read_all(&log), concat(&[kept, entries[8].clone(), v2]));
}

#[test]
fn a_flipped_byte_in_a_legacy_message_fails_its_crc_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let entries = legacy_only(dir.path());
    let log_path = dir.path().join(format!("{:020}.log", 0));
    let mut data = fs::read(&log_path).unwrap();
    let start_of_v1 = concat(&entries[..5]).len();
    data[start_of_v1 + 30] ^= 0x01; // inside the value of the first v1 message
    fs::write(&log_path, data).unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 7);
    assert_eq!(read_all(&log), concat(&entries[..5]));
}

#[test]
fn appends_check_legacy_crcs_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let entries = history();
    log.append(concat(&entries[..5])).unwrap();
    assert_eq!(log.log_end_offset(), 7);
    let err = log.append(entries[3].clone()).unwrap_err();
    assert!(matches!(
        err,
        StorageError::OffsetRegression {
            base_offset: 3,
            log_end_offset: 7
        }
    ));
    let mut corrupt = entries[5].to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    let err = log.append(Bytes::from(corrupt)).unwrap_err();
    assert!(
        matches!(err, StorageError::Batch { position: 0, .. }),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), 7);
}
