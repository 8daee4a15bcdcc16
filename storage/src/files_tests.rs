//! Many logs sharing a cache smaller than their segment count behave exactly as logs
//! that keep every file open.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_protocol::batch::BatchWalker;

use crate::{FileCache, LogConfig, PartitionLog, PersistMode, StorageError};

const LOGS: usize = 10;

fn config(cache: &FileCache, persist: PersistMode) -> LogConfig {
    LogConfig {
        persist,
        segment_bytes: 300,
        index_interval_bytes: 100,
        open_files: cache.clone(),
        ..LogConfig::default()
    }
}

fn open_all(root: &Path, cache: &FileCache, persist: PersistMode) -> Vec<PartitionLog> {
    (0..LOGS)
        .map(|p| PartitionLog::open(&root.join(p.to_string()), config(cache, persist)).unwrap())
        .collect()
}

fn value(partition: usize, offset: i64) -> Vec<u8> {
    format!("p{partition}-o{offset}-padding-so-segments-roll").into_bytes()
}

fn batch(partition: usize, offset: i64) -> Bytes {
    build_batch(
        offset,
        0,
        &[(None, Some(&value(partition, offset)[..]))],
        1_000 + offset,
    )
}

/// `(base offset, bytes)` of every batch from the one holding `from`, read through the
/// log.
fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.log_end_offset() {
        for chunk in log.read(next, 1 << 20).unwrap().chunks {
            for batch in BatchWalker::new(chunk) {
                let batch = batch.unwrap();
                next = batch.next_offset();
                out.push((batch.base_offset(), batch.into_bytes()));
            }
        }
    }
    out
}

/// What `read_all` returns when every batch came through byte for byte.
fn expected(partition: usize, from: i64, to: i64) -> Vec<(i64, Bytes)> {
    (from..to).map(|o| (o, batch(partition, o))).collect()
}

fn append_round(logs: &mut [PartitionLog], cache: &FileCache, offset: i64) {
    for (p, log) in logs.iter_mut().enumerate() {
        log.append(batch(p, offset)).unwrap();
        assert!(cache.open_count() <= 2, "{} open", cache.open_count());
    }
}

#[test]
fn ten_logs_append_read_roll_recover_and_truncate_through_two_descriptors() {
    let root = tempfile::tempdir().unwrap();
    let cache = FileCache::new(2);
    let persist = PersistMode::Interval(Duration::ZERO);
    let mut logs = open_all(root.path(), &cache, persist);
    for offset in 0..20 {
        append_round(&mut logs, &cache, offset);
    }
    for (p, log) in logs.iter().enumerate() {
        assert!(log.segment_count() > 3, "segments rolled");
        assert_eq!(read_all(log, 0), expected(p, 0, 20));
        assert_eq!(read_all(log, 13), expected(p, 13, 20));
        assert!(cache.open_count() <= 2);
    }
    for log in &mut logs {
        log.truncate_to(15).unwrap();
    }
    append_round(&mut logs, &cache, 15);
    drop(logs);
    assert_eq!(cache.open_count(), 0, "a dropped log closes its files");

    // A torn tail on one log: recovery cuts it off, the others open intact.
    let torn = root.path().join("3");
    let active = std::fs::read_dir(&torn)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    std::io::Write::write_all(&mut file, &[0, 0, 0, 0, 0, 0, 0, 16, 0, 0]).unwrap();
    let logs = open_all(root.path(), &cache, persist);
    assert!(cache.open_count() <= 2);
    assert!(logs[3].recovered().dropped_anything());
    for (p, log) in logs.iter().enumerate() {
        assert_eq!(read_all(log, 0), expected(p, 0, 16), "partition {p}");
    }
}

#[test]
fn an_evicted_descriptor_is_synced_before_it_is_closed() {
    let root = tempfile::tempdir().unwrap();
    let cache = FileCache::new(2);
    let mut logs = open_all(root.path(), &cache, PersistMode::Os);
    logs[0].append(batch(0, 0)).unwrap();
    assert!(logs[0].active().file().is_dirty(), "os mode does not sync");
    for p in [1, 2] {
        logs[p].append(batch(p, 0)).unwrap();
    }
    assert!(!logs[0].active().file().is_dirty(), "synced on eviction");
}

#[test]
fn a_file_that_cannot_be_reopened_is_a_typed_error() {
    let root = tempfile::tempdir().unwrap();
    let cache = FileCache::new(2);
    let mut logs = open_all(root.path(), &cache, PersistMode::Os);
    logs[0].append(batch(0, 0)).unwrap();
    for p in [1, 2] {
        logs[p].append(batch(p, 0)).unwrap();
    }
    std::fs::remove_file(&logs[0].active().log_path).unwrap();
    let read = logs[0].read(0, 1 << 20);
    assert!(
        matches!(
            &read,
            Err(StorageError::Io {
                action: "reopening",
                ..
            })
        ),
        "{read:?}"
    );
    let append = logs[0].append(batch(0, 1));
    assert!(
        matches!(
            &append,
            Err(StorageError::Io {
                action: "reopening",
                ..
            })
        ),
        "{append:?}"
    );
    assert!(
        logs[0].is_poisoned(),
        "a failed write refuses further writes"
    );
    assert_eq!(
        read_all(&logs[1], 0),
        expected(1, 0, 1),
        "other logs unaffected"
    );
}

#[test]
fn a_descriptor_used_over_and_over_stays_the_most_recent() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::new(2);
    let file = |name: &str| {
        let path = dir.path().join(name);
        std::fs::File::create(&path).unwrap();
        cache.register(path)
    };
    let (a, b, c) = (file("a"), file("b"), file("c"));
    a.open().unwrap();
    b.open().unwrap();
    // `a` becomes the most recent use, then is used again while it already is.
    for _ in 0..3 {
        a.open().unwrap();
    }
    c.open().unwrap();
    assert!(cache.is_open(&a), "the descriptor in use was evicted");
    assert!(!cache.is_open(&b));
    assert!(cache.is_open(&c));
}
