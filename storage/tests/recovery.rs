//! Recovery on open: torn writes, flipped bytes, lost or damaged indexes.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use shadowlink_storage::{LogConfig, PartitionLog};

fn seg(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Appends `n` one-record batches at offsets 0.. and returns them.
fn fill(log: &mut PartitionLog, n: i64) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let b = batch(i, 1, 0, i);
            log.append(b.clone()).unwrap();
            b
        })
        .collect()
}

fn flip_byte(path: &Path, at: u64) {
    let mut data = fs::read(path).unwrap();
    data[at as usize] ^= 0x40;
    fs::write(path, data).unwrap();
}

#[test]
fn torn_tail_is_truncated_at_every_cut_point() {
    let dir = tempfile::tempdir().unwrap();
    let batches = {
        let mut log = open(dir.path(), LogConfig::default());
        fill(&mut log, 3)
    };
    let log_path = seg(dir.path(), 0, "log");
    let full = fs::read(&log_path).unwrap();
    let first_two = (batches[0].len() + batches[1].len()) as u64;
    for cut in first_two..full.len() as u64 {
        fs::write(&log_path, &full[..cut as usize]).unwrap();
        let log = open(dir.path(), LogConfig::default());
        assert_eq!(log.log_end_offset(), 2, "cut at {cut}");
        assert_eq!(read_all(&log), concat(&batches[..2]));
        drop(log);
        assert_eq!(
            fs::metadata(&log_path).unwrap().len(),
            first_two,
            "invalid bytes kept"
        );
    }
}

#[test]
fn crc_failure_drops_that_batch_and_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let batches = {
        let mut log = open(dir.path(), LogConfig::default());
        fill(&mut log, 4)
    };
    let log_path = seg(dir.path(), 0, "log");
    let start_of_third = (batches[0].len() + batches[1].len()) as u64;
    flip_byte(&log_path, start_of_third + 40); // inside the CRC-covered header
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all(&log), concat(&batches[..2]));
    // The log accepts the lost offsets again, e.g. re-fetched from the source.
    log.append(concat(&batches[2..])).unwrap();
    assert_eq!(read_all(&log), concat(&batches));
}

#[test]
fn flipped_length_field_is_treated_as_torn() {
    let dir = tempfile::tempdir().unwrap();
    let batches = {
        let mut log = open(dir.path(), LogConfig::default());
        fill(&mut log, 3)
    };
    let log_path = seg(dir.path(), 0, "log");
    flip_byte(&log_path, batches[0].len() as u64 + 9); // batchLength of the 2nd batch
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(read_all(&log), batches[0]);
}

#[test]
fn missing_or_garbage_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let (expected, reads) = {
        let mut log = open(dir.path(), config.clone());
        fill(&mut log, 40);
        let reads: Vec<Bytes> = (0..40)
            .map(|o| joined(&log.read(o, 300).unwrap()))
            .collect();
        (read_all(&log), reads)
    };
    let damage: [(i64, &str, Option<&[u8]>); 4] = [
        (0, "index", None),
        (0, "timeindex", Some(&[1, 2, 3][..])),
        (0, "index", Some(&[0xff; 16][..])),
        (0, "timeindex", Some(&[0; 24][..])),
    ];
    for (base, ext, contents) in damage {
        let path = seg(dir.path(), base, ext);
        match contents {
            None => fs::remove_file(&path).unwrap(),
            Some(bytes) => fs::write(&path, bytes).unwrap(),
        }
        let log = open(dir.path(), config.clone());
        assert_eq!(read_all(&log), expected);
        for (o, r) in reads.iter().enumerate() {
            assert_eq!(&joined(&log.read(o as i64, 300).unwrap()), r);
        }
        assert_eq!(
            log.offset_for_timestamp(7).unwrap().map(|(o, _)| o),
            Some(7)
        );
        drop(log);
        assert!(path.exists(), "rebuilt index is written back");
    }
}

#[test]
fn index_pointing_into_a_batch_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let expected = {
        let mut log = open(dir.path(), config.clone());
        fill(&mut log, 40);
        read_all(&log)
    };
    // Well-formed but wrong: strictly increasing entries with a bogus position.
    let mut entries = Vec::new();
    for (rel, pos) in [(1u32, 7u32), (2, 9)] {
        entries.extend_from_slice(&rel.to_be_bytes());
        entries.extend_from_slice(&pos.to_be_bytes());
    }
    fs::write(seg(dir.path(), 0, "index"), &entries).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(read_all(&log), expected);
    assert_eq!(joined(&log.read(1, 1).unwrap()), batch(1, 1, 0, 1));
}

#[test]
fn corrupt_sealed_segment_truncates_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let batches = {
        let mut log = open(dir.path(), config.clone());
        let b = fill(&mut log, 40);
        assert!(log.segment_count() > 2);
        b
    };
    // Damage the first (sealed) segment's tail and its index so the cheap check fails.
    let first = seg(dir.path(), 0, "log");
    let len = fs::metadata(&first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let log = open(dir.path(), config);
    let kept = read_all(&log);
    assert_eq!(log.segment_count(), 1);
    let n = log.log_end_offset() as usize;
    assert!(n > 0 && n < 40);
    assert_eq!(kept, concat(&batches[..n]));
}

#[test]
fn empty_and_leftover_files_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path(), LogConfig::default());
        fill(&mut log, 2);
    }
    fs::write(dir.path().join("00000000000000000000.swap"), b"junk").unwrap();
    fs::write(dir.path().join("log-start-offset.tmp"), b"junk").unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 2);
    assert!(!dir.path().join("00000000000000000000.swap").exists());
    assert!(!dir.path().join("log-start-offset.tmp").exists());
}

#[test]
fn epoch_cache_is_rebuilt_when_lost() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path(), small_config());
        for i in 0..30 {
            log.append(batch(i, 1, (i / 10) as i32, i)).unwrap();
        }
    }
    fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 10), (2, 20)]);
}
