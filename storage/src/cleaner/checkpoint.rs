//! `cleaner-checkpoint`: how far the log is clean, and when each cleaned segment was
//! first cleaned (Kafka's `cleaner-offset-checkpoint`, plus the clock tombstones and
//! transaction markers wait on).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::meta::{read_meta, write_meta};

pub(crate) const CHECKPOINT_FILE: &str = "cleaner-checkpoint";

/// A segment the cleaner wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CleanedMark {
    /// Wall-clock time (ms) its data was first cleaned: tombstones and empty
    /// transaction markers in it are removed `delete.retention.ms` after this.
    pub(crate) at_ms: i64,
    /// Whether it still holds a tombstone or a marker that waits only for that time.
    pub(crate) deletes: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Every batch below this offset has been cleaned at least once.
    pub(crate) cleaned_to: i64,
    /// By segment base offset.
    pub(crate) segments: BTreeMap<i64, CleanedMark>,
}

impl Checkpoint {
    /// The stored checkpoint; an unreadable one is treated as none (the whole log is
    /// then dirty, which only costs a redundant pass and keeps tombstones longer).
    pub(crate) fn load(dir: &Path) -> Result<Checkpoint> {
        match read_meta::<Checkpoint>(&dir.join(CHECKPOINT_FILE)) {
            Ok(found) => Ok(found.unwrap_or_default()),
            Err(StorageError::Meta { .. }) => Ok(Checkpoint::default()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        write_meta(&dir.join(CHECKPOINT_FILE), self)
    }
}
