//! Replacing a sealed segment with batches from elsewhere: a mirror of a compacted
//! source takes the source's compacted copy of a range it already stores, through the
//! same crash-safe swap as the cleaner (see `swap.rs`).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use shadowlink_protocol::batch::{BatchWalker, RecordBatch};

use super::checkpoint::CleanedMark;
use super::swap::cleaned_path;
use super::{Cleaned, CleanedGroup};
use crate::error::{Result, StorageError};
use crate::log::PartitionLog;

/// A sealed segment: the offsets it covers and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedSegment {
    pub base_offset: i64,
    /// The end of its last batch, or its base when empty.
    pub next_offset: i64,
    pub size: u64,
}

impl PartitionLog {
    /// Every segment but the active one, oldest first.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        self.segments[..self.segments.len() - 1]
            .iter()
            .map(|s| SealedSegment {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
            })
            .collect()
    }

    /// The stored bytes of the sealed segment based at `base_offset`, if it is one.
    pub fn segment_data(&self, base_offset: i64) -> Result<Option<Bytes>> {
        let sealed = &self.segments[..self.segments.len() - 1];
        match sealed.iter().find(|s| s.base_offset == base_offset) {
            Some(segment) => segment.mapped().map(Some),
            None => Ok(None),
        }
    }
}

impl Cleaned {
    /// Writes `batches` as the replacement of `segment` of the log in `dir`, to commit
    /// with [`PartitionLog::commit_clean`]. They must be whole, CRC-valid batches in
    /// offset order within the segment's range; they are stored byte for byte.
    pub fn replacement(
        dir: &Path,
        segment: SealedSegment,
        batches: Bytes,
        now_ms: i64,
    ) -> Result<Cleaned> {
        check_replacement(segment, &batches)?;
        let path = cleaned_path(dir, segment.base_offset);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&path)?;
            file.write_all(&batches)?;
            file.sync_all()
        };
        let cleaned = Cleaned {
            dir: dir.to_path_buf(),
            groups: vec![CleanedGroup {
                members: vec![(segment.base_offset, segment.size)],
                mark: CleanedMark {
                    at_ms: now_ms,
                    deletes: false,
                },
            }],
            cleaned_to: segment.next_offset,
            committed: false,
        };
        write().map_err(StorageError::io("writing", &path))?;
        Ok(cleaned)
    }
}

fn check_replacement(segment: SealedSegment, batches: &Bytes) -> Result<()> {
    let mut walker = BatchWalker::new(batches.clone());
    let (mut position, mut expected) = (0, segment.base_offset);
    for batch in walker.by_ref() {
        let batch_error = |source| StorageError::Batch { position, source };
        let batch = batch.map_err(batch_error)?;
        batch.validate_crc().map_err(batch_error)?;
        if batch.base_offset() < expected || batch.next_offset() > segment.next_offset {
            return Err(StorageError::ReplacementOutOfRange {
                base_offset: batch.base_offset(),
                segment_base: segment.base_offset,
                segment_end: segment.next_offset,
            });
        }
        expected = batch.next_offset();
        position += batch.len();
    }
    let rest = walker.into_remainder();
    if !rest.is_empty() {
        let source = RecordBatch::parse(rest).expect_err("the walker leaves only partial batches");
        return Err(StorageError::Batch { position, source });
    }
    Ok(())
}
