//! The highest leader epoch a partition has advertised without a batch carrying it: a
//! mirror reports its source's leader epoch, which may run ahead of every mirrored batch
//! (a leader change with nothing written since). KIP-320 clients fence on that number,
//! so it must never go backwards, not even across a restart.
//!
//! Persisted as `leader-epoch-floor` (JSON, atomically replaced) next to the
//! `leader-epoch-checkpoint`, and only rewritten when it rises.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::meta::{read_meta, write_meta};

pub(crate) const EPOCH_FLOOR_FILE: &str = "leader-epoch-floor";

#[derive(Debug)]
pub struct EpochFloor {
    path: PathBuf,
    epoch: i32,
}

impl EpochFloor {
    /// Loads the floor of the partition in `dir`; -1 when none was ever recorded.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(EPOCH_FLOOR_FILE);
        let epoch = read_meta::<i32>(&path)?.unwrap_or(-1);
        Ok(EpochFloor { path, epoch })
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// Raises the floor to `epoch`, durably before it is visible. Returns whether it rose.
    /// Epoch 0 is never recorded: no partition advertises an epoch below it, so a floor
    /// of 0 says nothing, and a new mirror of a new topic writes no file.
    pub fn raise(&mut self, epoch: i32) -> Result<bool> {
        if epoch <= self.epoch.max(0) {
            return Ok(false);
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(crate::StorageError::io("creating", dir))?;
        }
        write_meta(&self.path, &epoch)?;
        self.epoch = epoch;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_only_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut floor = EpochFloor::open(dir.path()).unwrap();
        assert_eq!(floor.epoch(), -1);
        assert!(floor.raise(4).unwrap());
        assert!(!floor.raise(3).unwrap());
        assert!(!floor.raise(4).unwrap());
        assert_eq!(EpochFloor::open(dir.path()).unwrap().epoch(), 4);
    }

    #[test]
    fn epoch_zero_writes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut floor = EpochFloor::open(dir.path()).unwrap();
        assert!(!floor.raise(0).unwrap());
        assert!(!dir.path().join(EPOCH_FLOOR_FILE).exists());
        assert!(floor.raise(1).unwrap());
        assert_eq!(EpochFloor::open(dir.path()).unwrap().epoch(), 1);
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EPOCH_FLOOR_FILE), b"{").unwrap();
        assert!(EpochFloor::open(dir.path()).is_err());
    }
}
