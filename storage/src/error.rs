//! Errors returned by the partition log.

use std::io;
use std::path::{Path, PathBuf};

use shadowlink_protocol::batch::BatchError;

/// Why a storage operation failed. Messages read as sentences; variants carry the
/// offsets a caller needs to map them to Kafka error codes.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O failed while {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the batch at byte {position} of the appended record set is invalid: {source}")]
    Batch {
        position: usize,
        #[source]
        source: BatchError,
    },
    #[error("the appended record set is empty")]
    EmptyRecordSet,
    #[error(
        "the batch at offset {base_offset} has lastOffsetDelta {last_offset_delta}; \
         offsets must be non-negative and not overflow"
    )]
    InvalidOffsets {
        base_offset: i64,
        last_offset_delta: i32,
    },
    #[error(
        "a batch starts at offset {base_offset}, below the log end offset {log_end_offset}; \
         offsets must never go backwards"
    )]
    OffsetRegression {
        base_offset: i64,
        log_end_offset: i64,
    },
    #[error("offset {requested} is outside the log, which spans [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("the log refuses writes because an earlier write failed; reopen it to recover")]
    Poisoned,
    /// Nothing written since the last good fsync can be trusted to be on disk, and the
    /// page cache may no longer show what the disk holds.
    #[error(
        "the log refuses writes because an fsync failed: data written since the last good \
         fsync may be lost; restart the node once the disk is repaired, so recovery reads \
         what the disk really holds"
    )]
    FsyncFailed,
    #[error("{} is corrupt at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A segment a cleaning pass read was deleted or changed before the pass committed
    /// (retention or truncation ran meanwhile); the pass is discarded.
    #[error("the segment at offset {base_offset} changed while it was being cleaned")]
    CleanedStale { base_offset: i64 },
    /// A segment's replacement holds a batch outside the segment's offsets.
    #[error(
        "the batch at offset {base_offset} does not fit the segment [{segment_base}, \
         {segment_end}) it would replace"
    )]
    ReplacementOutOfRange {
        base_offset: i64,
        segment_base: i64,
        segment_end: i64,
    },
    #[error("the metadata file {} could not be encoded or decoded: {source}", path.display())]
    Meta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error with what was being done to which file; the path is copied
    /// only when there is an error, as appends map every write's result through this.
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| StorageError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
