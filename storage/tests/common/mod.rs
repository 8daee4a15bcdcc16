//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use shadowlink_protocol::batch::testing::{build_batch, BatchBuilder};
use shadowlink_storage::{LogConfig, PartitionLog, ReadResult};
use std::path::Path;

/// A batch of `records` small records at `base`, in `epoch`, stamped `ts`.
pub fn batch(base: i64, records: usize, epoch: i32, ts: i64) -> Bytes {
    let payload = [b'x'; 32];
    let recs = vec![(None, Some(&payload[..])); records];
    build_batch(base, epoch, &recs, ts)
}

/// A compacted-looking batch: `records` records spanning `span` offsets.
pub fn gapped(base: i64, records: usize, span: i32, ts: i64) -> Bytes {
    let recs = vec![(Some(&b"k"[..]), Some(&b"v"[..])); records];
    BatchBuilder::new(base)
        .timestamp(ts)
        .records(&recs)
        .last_offset_delta(span - 1)
        .build()
}

pub fn concat(parts: &[Bytes]) -> Bytes {
    parts.concat().into()
}

pub fn joined(result: &ReadResult) -> Bytes {
    concat(&result.chunks)
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

pub fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config).expect("open log")
}

/// Everything from the log start, as one buffer.
pub fn read_all(log: &PartitionLog) -> Bytes {
    if log.log_start_offset() == log.log_end_offset() {
        return Bytes::new();
    }
    joined(&log.read(log.log_start_offset(), usize::MAX).unwrap())
}
