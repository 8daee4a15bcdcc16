//! Offset-preserving partition log.
//!
//! A [`PartitionLog`] stores record batches (v2, and the legacy v0/v1 messages of older
//! topics) byte for byte at the offsets they carry,
//! in segments with sparse offset and time indexes, and serves them back as zero-copy
//! `Bytes` over memory-mapped files. It knows nothing about Kafka requests or networking;
//! the API is synchronous (call it from a dedicated writer task or `spawn_blocking`).
//!
//! Directory layout: `{base:020}.log`, `.index` (u32 relative offset, u32 position) and
//! `.timeindex` (i64 timestamp, u32 relative offset) per segment, plus
//! `log-start-offset`, `leader-epoch-checkpoint` and `leader-epoch-floor` (JSON,
//! atomically replaced).

mod config;
mod durability;
mod epoch;
mod epoch_floor;
mod error;
mod index;
mod log;
mod meta;
mod mmap;
mod producers;
mod record_time;
mod recovery;
mod retention;
mod segment;
mod time_index;
mod truncate;

pub use config::{LogConfig, PersistMode};
pub use durability::PendingSync;
pub use epoch_floor::EpochFloor;
pub use error::{Result, StorageError};
pub use log::{AppendInfo, PartitionLog, ReadResult};
pub use meta::{read_meta, sync_dir, write_meta, TopicMeta};
