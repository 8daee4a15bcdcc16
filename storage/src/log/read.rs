//! The read path: whole batches from an offset (KIP-74), and lookups by timestamp.

use super::{PartitionLog, ReadResult};
use crate::error::{Result, StorageError};

impl PartitionLog {
    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes`
    /// but always at least one batch (KIP-74). `offset == LEO` returns no chunks.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let (log_start, log_end) = (self.log_start_offset, self.log_end_offset());
        if offset < log_start || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start,
                log_end,
            });
        }
        let mut result = ReadResult {
            chunks: Vec::new(),
            log_start_offset: log_start,
            log_end_offset: log_end,
        };
        if offset == log_end {
            // Nothing to step over: a reader caught up (a consumer or a mirror long
            // polling at the end) costs no walk through the last index interval.
            return Ok(result);
        }
        let mut budget = max_bytes;
        let mut started = false;
        for segment in &self.segments[self.segment_index_for(offset)..] {
            let data = segment.mapped()?;
            let from = if started {
                0
            } else {
                match segment.locate(&data, offset)? {
                    Some((position, _)) => position,
                    None => continue, // offset falls in a gap after this segment's data
                }
            };
            let end = segment.take_batches(&data, from, budget, !started)?;
            if end > from {
                let chunk = data.slice(from as usize..end as usize);
                budget = budget.saturating_sub(chunk.len());
                result.chunks.push(chunk);
                started = true;
            }
            if end < segment.size || (started && budget == 0) {
                break;
            }
        }
        Ok(result)
    }

    /// Index of the segment that would contain `offset`: greatest base `<= offset`.
    pub(crate) fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// ListOffsets by time: `(offset, timestamp)` of the first record at or above the log
    /// start whose timestamp is `>= ts`. The time index finds the batch by its header's
    /// max timestamp; the exact record is then read from that batch.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        let start = self.log_start_offset;
        let from = self.segment_index_for(start);
        for segment in &self.segments[from..] {
            if segment.max.is_none_or(|m| m.timestamp < ts) {
                continue;
            }
            if let Some(found) = segment.find_timestamp(ts, start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// KIP-734 ListOffsets `-3`: `(timestamp, offset)` of the record at or above the log
    /// start with the largest timestamp, the earliest on ties.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let start = self.log_start_offset;
        let mut best: Option<(i64, usize, u64)> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.next_offset <= start {
                continue;
            }
            if let Some((ts, position)) = segment.max_timestamp_from(start)? {
                if best.is_none_or(|(b, _, _)| ts > b) {
                    best = Some((ts, i, position));
                }
            }
        }
        let Some((_, i, position)) = best else {
            return Ok(None);
        };
        let record = self.segments[i].max_record_at(position, start)?;
        Ok(record.map(|(offset, ts)| (ts, offset)))
    }
}
