//! Log configuration and durability modes.

use std::time::Duration;

use crate::files::FileCache;

/// When appended bytes are forced to stable storage.
///
/// Whatever the mode, a crash never leaves a torn or corrupt batch visible after
/// reopen: recovery truncates the active segment after its last valid batch. The modes
/// only differ in how many acknowledged batches a power loss may take away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistMode {
    /// `fdatasync` the segment after every append, before `append` returns (or before
    /// the sync `append_deferred` hands back completes). An acknowledged batch survives
    /// power loss. Slowest.
    Always,
    /// `fdatasync` on the first append (or [`crate::PartitionLog::flush_if_due`] call) at
    /// least this long after the previous sync. A power loss loses at most the batches
    /// appended since the last sync, i.e. roughly this interval's worth while writes flow.
    /// A sealed segment is synced when the log rolls.
    Interval(Duration),
    /// Never sync except on explicit [`crate::PartitionLog::flush`]; the OS writes pages
    /// back on its own schedule. A process crash loses nothing (the page cache survives);
    /// a power loss may lose any amount of recent data. For a mirror this is usually
    /// fine: lost batches are fetched again from the source.
    Os,
}

/// Per-partition log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before a batch would grow the active one past this size.
    pub segment_bytes: u64,
    /// Roll when the incoming batch's max timestamp is this much newer than the active
    /// segment's first batch (Kafka `segment.ms` semantics), or, when timestamps are
    /// missing, when the segment was created this long ago by the wall clock.
    pub segment_ms: Option<u64>,
    /// Add a sparse index entry after at least this many bytes since the previous one.
    pub index_interval_bytes: u32,
    pub persist: PersistMode,
    /// Delete sealed segments whose newest batch timestamp is older than this.
    pub retention_ms: Option<i64>,
    /// Delete the oldest sealed segments while the log exceeds this many bytes.
    pub retention_bytes: Option<u64>,
    /// Fault injection for tests: every fsync of appended data first sleeps this long,
    /// as on a slow disk. Zero, the default, adds nothing.
    pub fsync_delay: Duration,
    /// Fault injection for tests: after this many fsyncs of the log's files succeed,
    /// every later one fails, as on a disk that lost its writeback. `None`, the default,
    /// fails none.
    pub fsync_fail_after: Option<u64>,
    /// A clean close of a log whose active segment holds at least this many bytes
    /// writes what lets the next open load that segment from its indexes instead of
    /// reading it whole (see `clean.rs`); below it, the read costs less than the fsyncs.
    pub clean_close_min_bytes: u64,
    /// Where segment files are opened: one cache per node bounds the descriptors all
    /// its logs hold open. The default is a process-wide one.
    pub open_files: FileCache,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: None,
            index_interval_bytes: 4096,
            persist: PersistMode::Os,
            retention_ms: None,
            retention_bytes: None,
            fsync_delay: Duration::ZERO,
            fsync_fail_after: None,
            clean_close_min_bytes: 16 << 20,
            open_files: FileCache::shared(),
        }
    }
}
