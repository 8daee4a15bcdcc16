//! Which partitions of a fetch session the next read must look at: every one not known to
//! be quiet, and the quiet ones the node's change feed has named since the last read.
//! A busy session of thousands of partitions, few of which change between two fetches,
//! then reads only those few, instead of checking each partition's change count.

use std::collections::{BTreeSet, HashMap};

use crate::mirror::change_feed::{ChangeFeed, PartitionId};

/// See the module comment. Positions are the session's partition positions.
#[derive(Debug, Default)]
pub struct DueReads {
    /// Positions to read next.
    due: BTreeSet<usize>,
    /// Every quiet partition (its last read had nothing to tell) and its position. An
    /// entry may outlive its partition's quiet state; it then only causes a read.
    quiet: HashMap<PartitionId, usize>,
    /// The feed's count when the changes were last applied.
    seen: Option<u64>,
}

impl DueReads {
    /// Every one of `len` positions is due, and none is known quiet.
    pub fn all(&mut self, len: usize) {
        self.due = (0..len).collect();
        self.quiet.clear();
    }

    /// `position` is due: it is new, or asked for with new parameters.
    pub fn add(&mut self, position: usize) {
        self.due.insert(position);
    }

    /// Records a read of `position`: quiet as partition `quiet` (due again once the feed
    /// names it), or, with `None`, due again next time.
    pub fn read(&mut self, position: usize, quiet: Option<PartitionId>) {
        match quiet {
            Some(id) => {
                self.due.remove(&position);
                self.quiet.insert(id, position);
            }
            None => {
                self.due.insert(position);
            }
        }
    }

    /// The partition at `position` (`id` when it was looked up) left the session, and the
    /// one at `last`, `moved` when it was looked up, took its position.
    pub fn removed(
        &mut self,
        position: usize,
        id: Option<PartitionId>,
        last: usize,
        moved: Option<PartitionId>,
    ) {
        if let Some(id) = id {
            self.quiet.remove(&id);
        }
        self.due.remove(&position);
        if self.due.remove(&last) && last != position {
            self.due.insert(position);
        }
        if let Some(entry) = moved.and_then(|id| self.quiet.get_mut(&id)) {
            *entry = position;
        }
    }

    /// Makes due the quiet partitions the feed named since the last call, or, when the
    /// feed no longer holds all of those changes, every one of `len` positions. Call it
    /// before reading: a change during the read is then named next time.
    pub fn catch_up(&mut self, feed: &ChangeFeed, len: usize) {
        let now = feed.count();
        let (due, quiet) = (&mut self.due, &self.quiet);
        let applied = self.seen.is_some_and(|seen| {
            feed.since(seen, now, |id| {
                if let Some(&position) = quiet.get(&id).filter(|&&p| p < len) {
                    due.insert(position);
                }
            })
        });
        if !applied {
            self.due = (0..len).collect();
        }
        self.seen = Some(now);
    }

    /// The due positions from `start` on, then those before it.
    pub fn positions_from(&self, start: usize) -> Vec<usize> {
        let (after, before) = (self.due.range(start..), self.due.range(..start));
        after.chain(before).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed, and `len` positions all due and caught up with it.
    fn started(len: usize) -> (ChangeFeed, DueReads) {
        let (feed, mut due) = (ChangeFeed::default(), DueReads::default());
        due.all(len);
        due.catch_up(&feed, len);
        (feed, due)
    }

    #[test]
    fn a_quiet_partition_is_due_again_only_once_the_feed_names_it() {
        let (feed, mut due) = started(3);
        assert_eq!(due.positions_from(1), [1, 2, 0]);
        for (position, id) in [(0, 10), (1, 11), (2, 12)] {
            due.read(position, Some(id));
        }
        due.catch_up(&feed, 3);
        assert!(due.positions_from(0).is_empty());
        feed.push(11);
        feed.push(99);
        due.catch_up(&feed, 3);
        assert_eq!(due.positions_from(0), [1]);
        due.read(1, None);
        due.catch_up(&feed, 3);
        assert_eq!(
            due.positions_from(0),
            [1],
            "a partition with news is read again"
        );
    }

    #[test]
    fn a_feed_that_dropped_changes_makes_every_partition_due() {
        let (feed, mut due) = started(2);
        due.read(0, Some(10));
        due.read(1, Some(11));
        for _ in 0..=crate::mirror::change_feed::RECENT_CHANGES {
            feed.push(99);
        }
        due.catch_up(&feed, 2);
        assert_eq!(due.positions_from(0), [0, 1]);
    }

    #[test]
    fn a_partition_moved_into_a_gap_is_named_at_its_new_position() {
        let (feed, mut due) = started(3);
        due.read(0, Some(10));
        due.read(1, None);
        due.read(2, Some(12));
        due.removed(0, Some(10), 2, Some(12));
        assert_eq!(due.positions_from(0), [1]);
        feed.push(12);
        feed.push(10);
        due.catch_up(&feed, 2);
        assert_eq!(due.positions_from(0), [0, 1]);
        due.read(0, None);
        due.removed(0, None, 1, None);
        assert_eq!(
            due.positions_from(0),
            [0],
            "the due partition moved from 1 to 0"
        );
    }
}
