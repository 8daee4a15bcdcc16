//! `[storage]` and `[groups]`: how partitions are laid out and made durable, and how
//! long consumer groups' offsets are kept.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, Config, ConfigError};

/// How mirror partitions are laid out and made durable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    pub segment_bytes: u64,
    /// `"always"` (fsync every append), `"os"` (page cache only) or a duration such as
    /// `"100ms"` (fsync at most that long after an append).
    pub persist: String,
    /// How often retention limits synced from the source are enforced.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// How often the node's compacted topics are checked for a compaction pass.
    #[serde(with = "humantime_serde")]
    pub cleaner_interval: Duration,
    /// Compaction's I/O budget, bytes read plus written per second; unset for none.
    pub cleaner_bytes_per_second: Option<u64>,
    /// Partitions the node may hold, shadows included, before CreateTopics is refused.
    /// Every partition keeps its segments mapped, so this bounds memory maps and files.
    pub max_partitions: i64,
    /// Segment files the node keeps open at once, across all its partitions; the least
    /// recently used are closed beyond it and reopened when needed. Unset, half the
    /// process's open-file limit, leaving the rest to client connections.
    pub max_open_files: Option<usize>,
    /// Fault injection for tests: every fsync of partition data first sleeps this long,
    /// as on a slow disk. Never set it in production.
    #[serde(with = "humantime_serde")]
    pub fault_fsync_delay: Duration,
    /// Fault injection for tests: in each partition log, the fsyncs after this many
    /// successful ones fail, as on a disk that lost its writeback. Never set it in
    /// production.
    pub fault_fsync_fail_after: Option<u64>,
    /// How fast the background scrubber re-reads stored batches to check their CRC;
    /// 0 turns it off.
    pub scrub_bytes_per_second: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            segment_bytes: 256 * 1024 * 1024,
            persist: "100ms".to_string(),
            retention_interval: Duration::from_secs(60),
            cleaner_interval: Duration::from_secs(15),
            cleaner_bytes_per_second: None,
            max_partitions: 10_000,
            max_open_files: None,
            fault_fsync_delay: Duration::ZERO,
            fault_fsync_fail_after: None,
            scrub_bytes_per_second: 4 * 1024 * 1024,
        }
    }
}

/// `[groups]`: consumer groups this node coordinates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSettings {
    /// Kafka's `offsets.retention.minutes`: a group with no members whose offsets have
    /// not changed for this long expires, offsets and all.
    #[serde(with = "humantime_serde")]
    pub offsets_retention: Duration,
    /// Kafka's `offsets.retention.check.interval.ms`: how often groups are checked.
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            offsets_retention: Duration::from_secs(7 * 24 * 60 * 60),
            retention_check_interval: Duration::from_secs(600),
        }
    }
}

impl Config {
    /// The storage, partition and group limits, checked in this order so the first
    /// error a file has is the one reported.
    pub(super) fn validate_limits(&self) -> Result<(), ConfigError> {
        self.persist_mode()?;
        if self.storage.segment_bytes < 1024 {
            return Err(invalid("storage.segment_bytes", "must be at least 1024"));
        }
        if self.storage.retention_interval < Duration::from_millis(100) {
            return Err(invalid(
                "storage.retention_interval",
                "must be at least 100ms",
            ));
        }
        if self.kafka.max_partitions_per_request < 1 {
            return Err(invalid(
                "kafka.max_partitions_per_request",
                "must be at least 1",
            ));
        }
        if self.groups.offsets_retention < Duration::from_secs(1) {
            return Err(invalid("groups.offsets_retention", "must be at least 1s"));
        }
        if self.groups.retention_check_interval < Duration::from_millis(100) {
            return Err(invalid(
                "groups.retention_check_interval",
                "must be at least 100ms",
            ));
        }
        if self.storage.cleaner_interval < Duration::from_millis(100) {
            return Err(invalid(
                "storage.cleaner_interval",
                "must be at least 100ms",
            ));
        }
        if self.storage.max_partitions < 1 {
            return Err(invalid("storage.max_partitions", "must be at least 1"));
        }
        if self.storage.max_open_files == Some(0) {
            return Err(invalid("storage.max_open_files", "must be at least 1"));
        }
        Ok(())
    }

    /// The storage persist mode parsed from `storage.persist`.
    pub fn persist_mode(&self) -> Result<shadowlink_storage::PersistMode, ConfigError> {
        use shadowlink_storage::PersistMode;
        match self.storage.persist.as_str() {
            "always" => Ok(PersistMode::Always),
            "os" => Ok(PersistMode::Os),
            other => humantime::parse_duration(other)
                .map(PersistMode::Interval)
                .map_err(|_| {
                    invalid(
                        "storage.persist",
                        format!("{other:?} is not \"always\", \"os\" or a duration like \"100ms\""),
                    )
                }),
        }
    }
}
