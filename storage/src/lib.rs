//! Offset-preserving partition log.
//!
//! A [`PartitionLog`] stores record batches (v2, and the legacy v0/v1 messages of older
//! topics) byte for byte at the offsets they carry,
//! in segments with sparse offset and time indexes, and serves them back as zero-copy
//! `Bytes` over memory-mapped files. It knows nothing about Kafka requests or networking;
//! the API is synchronous (call it from a dedicated writer task or `spawn_blocking`).
//!
//! Partition directory layout:
//! - per segment, `{base:020}.log` (the batches), `{base:020}.index` (u32 relative offset,
//!   u32 position) and `{base:020}.timeindex` (i64 timestamp, u32 relative offset);
//! - `log-start-offset`, `leader-epoch-checkpoint`, `leader-epoch-floor`,
//!   `max-producer-id` and `txn-index` (open and aborted transactions): JSON,
//!   atomically replaced through a `{name}.tmp` sibling;
//! - `clean-close` (JSON) between a clean close of a log with a large active segment and
//!   the next open, which removes it (see `clean`);
//! - `{base:020}.swap` only while a segment is being truncated, renamed over its `.log`;
//! - `cleaner-checkpoint` (JSON) and, only while compaction replaces segments,
//!   `{base:020}.cleaned` and `{first:020}-{last:020}.swap` (see `cleaner`).
//!
//! Recovery deletes a leftover `.swap`, `.cleaned` or `.tmp` file from an interrupted
//! write, and finishes a compaction swap that was committed.

#[cfg(test)]
mod append_tests;
mod checked;
mod clean;
mod cleaner;
mod config;
mod durability;
mod epoch;
mod epoch_floor;
mod error;
mod files;
#[cfg(test)]
mod files_tests;
mod index;
mod log;
mod meta;
mod mmap;
mod producers;
mod record_time;
mod recovery;
mod retention;
mod segment;
mod stamp;
mod time_index;
mod truncate;
mod txn;

pub use checked::{Checked, CheckedRecordSet, UnreadableBatch};
pub use cleaner::{
    CleanJob, CleanStats, Cleaned, CompactionConfig, DirtyState, SealedSegment, Throttle,
};
pub use config::{LogConfig, PersistMode};
pub use durability::{PendingSync, Poison};
pub use epoch_floor::EpochFloor;
pub use error::{Result, StorageError};
pub use files::FileCache;
pub use log::{AppendInfo, PartitionLog, ReadResult};
pub use meta::{read_meta, sync_dir, write_meta, TopicMeta};
pub use recovery::Recovered;
pub use txn::CommittedRead;
