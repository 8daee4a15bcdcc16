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
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use shadowlink_storage::{read_meta, write_meta, StorageError};

/// Why no producer id was handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("producer ids cannot be allocated: {0}")]
    Unreadable(#[source] Arc<StorageError>),
    #[error("the producer id space is exhausted")]
    Exhausted,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

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
    /// Why the persisted state could not be read. Allocation is refused then: ids handed
    /// out before the restart but never stored in a log cannot be known, so any guess
    /// could give a live producer's id to another.
    failure: Option<Arc<StorageError>>,
}

impl ProducerIdAllocator {
    /// Opens the allocator state in `data_dir`; a missing file starts at 0 (every stored
    /// id is still avoided through `allocate`'s `stored_max`). An unreadable file leaves
    /// the allocator failed, not the node.
    pub fn open(data_dir: &Path) -> ProducerIdAllocator {
        let path = data_dir.join(FILE);
        let (persisted, failure) = match read_meta::<Persisted>(&path) {
            Ok(persisted) => (persisted.unwrap_or_default(), None),
            Err(e) => {
                tracing::error!(error = %e, "producer ids cannot be allocated");
                (Persisted::default(), Some(Arc::new(e)))
            }
        };
        let start = persisted.reserved_end.max(0);
        ProducerIdAllocator {
            path,
            state: Mutex::new(State {
                next: start,
                reserved_end: start,
                floor: 0,
            }),
            failure,
        }
    }

    /// Why allocation is refused, if it is.
    pub fn failure(&self) -> Option<String> {
        self.failure.as_ref().map(|e| e.to_string())
    }

    /// Raises the floor above `producer_id`, e.g. one found in a mirrored batch.
    pub fn observe(&self, producer_id: i64) {
        let mut state = self.lock();
        state.floor = state.floor.max(producer_id.saturating_add(1));
    }

    /// A new producer id above `stored_max` (the largest id stored on the node, -1 for
    /// none), every id observed, and every id handed out before (across restarts).
    pub fn allocate(&self, stored_max: i64) -> Result<i64, ProducerIdError> {
        if let Some(failure) = &self.failure {
            return Err(ProducerIdError::Unreadable(failure.clone()));
        }
        let mut state = self.lock();
        let next = state
            .next
            .max(state.floor)
            .max(stored_max.saturating_add(1));
        if next >= i64::MAX - BLOCK_SIZE {
            return Err(ProducerIdError::Exhausted);
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
        let ids = ProducerIdAllocator::open(dir.path());
        assert_eq!(ids.allocate(-1).unwrap(), 0);
        assert_eq!(ids.allocate(-1).unwrap(), 1);
        let persisted: Persisted = read_meta(&dir.path().join(FILE)).unwrap().unwrap();
        assert_eq!(persisted.reserved_end, BLOCK_SIZE);
        drop(ids);
        // A restart skips the rest of the block: 2..1000 may never be handed out.
        let ids = ProducerIdAllocator::open(dir.path());
        assert_eq!(ids.allocate(-1).unwrap(), BLOCK_SIZE);
    }

    #[test]
    fn allocation_stays_above_stored_and_observed_ids_and_persists_that() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdAllocator::open(dir.path());
        assert_eq!(ids.allocate(4999).unwrap(), 5000);
        ids.observe(70_000);
        assert_eq!(ids.allocate(4999).unwrap(), 70_001);
        assert_eq!(ids.allocate(-1).unwrap(), 70_002);
        drop(ids);
        let ids = ProducerIdAllocator::open(dir.path());
        assert!(ids.allocate(-1).unwrap() > 70_002);
    }

    #[test]
    fn an_unreadable_file_refuses_allocation_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"reserved_end\": 10").unwrap();
        let ids = ProducerIdAllocator::open(dir.path());
        let failure = ids.failure().unwrap();
        assert!(failure.contains("producer-ids.json"), "{failure}");
        let refused = ids.allocate(-1).unwrap_err().to_string();
        assert!(refused.contains("producer-ids.json"), "{refused}");
    }

    #[test]
    fn an_exhausted_id_space_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdAllocator::open(dir.path());
        ids.observe(i64::MAX);
        assert!(matches!(ids.allocate(-1), Err(ProducerIdError::Exhausted)));
        assert!(matches!(
            ids.allocate(i64::MAX),
            Err(ProducerIdError::Exhausted)
        ));
    }
}
