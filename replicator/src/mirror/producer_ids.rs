//! The node's producer-id allocator for idempotent producers (InitProducerId, KIP-98).
//!
//! Ids are reserved in blocks, like Kafka's `ProducerIdManager`: `producer-ids.json` in
//! the data directory records the end of the reserved block and is rewritten (atomically)
//! once per block, so a restart skips the rest of a block and never hands out an id twice.
//!
//! Mirrored batches carry the *source's* producer ids. Owned partitions keep per-producer
//! sequence state, and a topic failed over from a shadow rebuilds that state from
//! mirrored batches, so an id handed out here must never equal one already stored: every
//! allocation is raised above a floor that callers feed with the largest id stored
//! anywhere on the node ([`ProducerIdAllocator::allocate`]'s `stored_max`) and with ids
//! seen on the mirror write path ([`ProducerIdAllocator::observe`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use shadowlink_storage::{read_meta, write_meta, StorageError};

/// Ids reserved per write of `producer-ids.json`.
pub const BLOCK_SIZE: i64 = 1000;
const FILE: &str = "producer-ids.json";

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Persisted {
    /// Every id below this may have been handed out.
    reserved_end: i64,
}

#[derive(Debug)]
struct State {
    next: i64,
    reserved_end: i64,
    /// The lowest id that may be handed out: one above every id seen.
    floor: i64,
}

/// Hands out producer ids, never twice and always above every id seen.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    state: Mutex<State>,
}

impl ProducerIdAllocator {
    /// Opens the allocator state in `data_dir`; a missing file starts at 0.
    pub fn open(data_dir: &Path) -> Result<ProducerIdAllocator, StorageError> {
        let path = data_dir.join(FILE);
        let persisted: Persisted = read_meta(&path)?.unwrap_or_default();
        let start = persisted.reserved_end.max(0);
        Ok(ProducerIdAllocator {
            path,
            state: Mutex::new(State {
                next: start,
                reserved_end: start,
                floor: 0,
            }),
        })
    }

    /// Raises the floor above `producer_id`, e.g. one found in a mirrored batch.
    pub fn observe(&self, producer_id: i64) {
        let mut state = self.lock();
        state.floor = state.floor.max(producer_id.saturating_add(1));
    }

    /// A new producer id above `stored_max` (the largest id stored on the node, -1 for
    /// none), every id observed, and every id handed out before (across restarts).
    pub fn allocate(&self, stored_max: i64) -> Result<i64, StorageError> {
        let mut state = self.lock();
        let next = state
            .next
            .max(state.floor)
            .max(stored_max.saturating_add(1));
        if next >= i64::MAX - BLOCK_SIZE {
            return Err(StorageError::Io {
                action: "allocating a producer id in",
                path: self.path.clone(),
                source: std::io::Error::other("the producer id space is exhausted"),
            });
        }
        if next >= state.reserved_end {
            let reserved_end = next + BLOCK_SIZE;
            write_meta(&self.path, &Persisted { reserved_end })?;
            state.reserved_end = reserved_end;
        }
        state.next = next + 1;
        Ok(next)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts_and_written_once_per_block() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!(ids.allocate(-1).unwrap(), 0);
        assert_eq!(ids.allocate(-1).unwrap(), 1);
        let persisted: Persisted = read_meta(&dir.path().join(FILE)).unwrap().unwrap();
        assert_eq!(persisted.reserved_end, BLOCK_SIZE);
        drop(ids);
        // A restart skips the rest of the block: 2..1000 may never be handed out.
        let ids = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!(ids.allocate(-1).unwrap(), BLOCK_SIZE);
    }

    #[test]
    fn allocation_stays_above_stored_and_observed_ids_and_persists_that() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!(ids.allocate(4999).unwrap(), 5000);
        ids.observe(70_000);
        assert_eq!(ids.allocate(4999).unwrap(), 70_001);
        assert_eq!(ids.allocate(-1).unwrap(), 70_002);
        drop(ids);
        let ids = ProducerIdAllocator::open(dir.path()).unwrap();
        assert!(ids.allocate(-1).unwrap() > 70_002);
    }

    #[test]
    fn an_exhausted_id_space_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdAllocator::open(dir.path()).unwrap();
        ids.observe(i64::MAX);
        assert!(ids.allocate(-1).is_err());
        assert!(ids.allocate(i64::MAX).is_err());
    }
}
