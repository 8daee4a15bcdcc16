//! The node's changes to what a Fetch could see, in order: a count, and which partition
//! each of the latest changes was, so a fetch session learns which of its partitions
//! changed since its last read without looking at every one of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How many of the latest changes are kept. A session that fell further behind (it has
/// not fetched through that many changes) reads all its partitions once instead.
pub const RECENT_CHANGES: usize = 16 * 1024;

/// A partition as the feed names it: its address, which no other partition has while it
/// is alive (a session holds the partitions it watches).
pub type PartitionId = usize;

/// See the module comment.
pub struct ChangeFeed {
    /// Changes so far: the number the next change gets.
    count: AtomicU64,
    /// The partition of change `n` at `n % RECENT_CHANGES`, for the latest changes.
    recent: Mutex<Box<[PartitionId]>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed {
            count: AtomicU64::new(0),
            recent: Mutex::new(vec![0; RECENT_CHANGES].into_boxed_slice()),
        }
    }
}

impl ChangeFeed {
    /// How many changes there have been. Taken before a read, every change the read may
    /// have missed is numbered at or above it.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Records a change to partition `id`.
    pub(crate) fn push(&self, id: PartitionId) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Numbered under the lock, so changes are stored in the order of their numbers.
        let n = self.count.load(Ordering::Relaxed);
        recent[(n % RECENT_CHANGES as u64) as usize] = id;
        self.count.store(n + 1, Ordering::Release);
    }

    /// Calls `changed` with the partition of each change numbered from `from` up to
    /// `to` (counts taken earlier), in order. False when some of those are no longer
    /// kept: then any partition may have changed.
    pub fn since(&self, from: u64, to: u64, mut changed: impl FnMut(PartitionId)) -> bool {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let kept_from = self.count().saturating_sub(RECENT_CHANGES as u64);
        if from < kept_from || to < from {
            return false;
        }
        for n in from..to {
            changed(recent[(n % RECENT_CHANGES as u64) as usize]);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_changes_are_named_in_order_and_older_ones_are_not() {
        let feed = ChangeFeed::default();
        let start = feed.count();
        for id in [7, 8, 7] {
            feed.push(id);
        }
        let mut seen = Vec::new();
        assert!(feed.since(start, feed.count(), |id| seen.push(id)));
        assert_eq!(seen, [7, 8, 7]);
        let mut later = Vec::new();
        assert!(feed.since(start + 1, start + 2, |id| later.push(id)));
        assert_eq!(later, [8]);
        for id in 0..RECENT_CHANGES {
            feed.push(id);
        }
        assert!(
            !feed.since(start, feed.count(), |_| {}),
            "three were dropped"
        );
        let mut kept = 0;
        let from = feed.count() - RECENT_CHANGES as u64;
        assert!(feed.since(from, feed.count(), |_| kept += 1));
        assert_eq!(kept, RECENT_CHANGES);
    }
}
