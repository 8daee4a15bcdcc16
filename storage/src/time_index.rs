//! Sparse time index: where the segment's running maximum timestamp rose.
//!
//! An entry `(timestamp, relative_offset)` says: the batch starting at `relative_offset`
//! is the first whose max timestamp reached `timestamp`, so every earlier batch has a
//! smaller max timestamp. To find the first batch with max timestamp `>= target`, start
//! scanning at the last entry whose timestamp is `< target`: everything before it is
//! too old. Entries are added at the offset index's cadence, and once more when a
//! segment is sealed, so a sealed segment's last entry is its maximum.

use crate::index::{Entry, IndexFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    fn follows(&self, previous: &Self) -> bool {
        self.timestamp > previous.timestamp && self.relative_offset > previous.relative_offset
    }

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

pub(crate) type TimeIndex = IndexFile<TimeEntry>;

impl TimeIndex {
    /// Relative offset of a batch at or before the first batch whose max timestamp is
    /// `>= target`, or `None` to scan from the segment start.
    pub(crate) fn scan_start(&self, target: i64) -> Option<u32> {
        let n = self.entries().partition_point(|e| e.timestamp < target);
        n.checked_sub(1).map(|i| self.entries()[i].relative_offset)
    }

    /// Records a new running maximum if it is above the last entry.
    pub(crate) fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) -> crate::Result<()> {
        match self.last() {
            Some(last)
                if timestamp <= last.timestamp || relative_offset <= last.relative_offset =>
            {
                Ok(())
            }
            _ => self.push(TimeEntry {
                timestamp,
                relative_offset,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_start_skips_only_older_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::create(dir.path().join("0.timeindex")).unwrap();
        assert_eq!(index.scan_start(100), None);
        index.maybe_push(100, 0).unwrap();
        index.maybe_push(100, 5).unwrap(); // not a new maximum: ignored
        index.maybe_push(90, 6).unwrap(); // lower: ignored
        index.maybe_push(200, 10).unwrap();
        assert_eq!(index.entries().len(), 2);
        assert_eq!(index.scan_start(100), None);
        assert_eq!(index.scan_start(101), Some(0));
        assert_eq!(index.scan_start(200), Some(0));
        assert_eq!(index.scan_start(201), Some(10));
    }
}
