//! One cleaning pass over a snapshot of a log's sealed segments, run without the log:
//! build the offset map of the dirty section, then write the cleaned copy of every
//! segment up to the end of that section as `.cleaned` files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};

use bytes::Bytes;
use shadowlink_protocol::batch::{BatchWalker, RecordBatch};

use super::checkpoint::CleanedMark;
use super::records::{self, RawRecord};
use super::swap::cleaned_path;
use super::{CleanJob, Cleaned, CleanedGroup, SegmentSnap, Throttle};
use crate::error::{Result, StorageError};

/// Latest offset of every key in the dirty section (Kafka's `OffsetMap`).
type OffsetMap = HashMap<Box<[u8]>, i64>;

impl CleanJob {
    /// Builds the map, then writes the cleaned copies. The `.cleaned` files are
    /// removed again if the result is dropped without being committed.
    pub fn run(mut self, throttle: &mut Throttle) -> Result<Cleaned> {
        let (map, end) = self.build_map(throttle)?;
        self.segments.truncate(end);
        let last_batches = self.last_batch_of_producers()?;
        let mut cleaner = BatchCleaner {
            map,
            aborted: self.aborted_by_producer(),
            last_batches,
            open_txns: HashMap::new(),
            delete_retention_ms: self.config.delete_retention_ms,
        };
        let mut cleaned = Cleaned {
            dir: self.dir.clone(),
            groups: Vec::new(),
            cleaned_to: self.segments.last().map_or(0, |s| s.next_offset),
            committed: false,
        };
        for group in self.groups() {
            let written = self.write_group(&group, &mut cleaner, throttle)?;
            cleaned.groups.push(written);
        }
        Ok(cleaned)
    }

    /// The map over the dirty segments, and the end (exclusive segment index) of what
    /// it covers: it stops before a segment once it holds `max_map_keys` keys, as
    /// Kafka's cleaner stops when its map is full.
    fn build_map(&self, throttle: &mut Throttle) -> Result<(OffsetMap, usize)> {
        let mut map = OffsetMap::new();
        let aborted = self.aborted_by_producer();
        for i in self.dirty_from..self.segments.len() {
            if i > self.dirty_from && map.len() >= self.config.max_map_keys {
                return Ok((map, i));
            }
            let segment = &self.segments[i];
            throttle.spend(segment.size);
            for batch in walk(segment)? {
                if batch.is_legacy() || batch.is_control() || is_aborted(&aborted, &batch) {
                    continue;
                }
                for record in read_records(segment, &batch)? {
                    if let Some(key) = record.key {
                        map.insert(key.to_vec().into_boxed_slice(), record.offset);
                    }
                }
            }
        }
        Ok((map, self.segments.len()))
    }

    /// The last offset of each producer's last data batch in the whole log: that batch
    /// is kept, empty if need be, so the producer's sequence survives compaction.
    fn last_batch_of_producers(&self) -> Result<HashMap<i64, i64>> {
        let mut last = HashMap::new();
        let all = self.segments.iter().map(|s| &s.data).chain(&self.later);
        for data in all {
            for batch in BatchWalker::new(data.clone()) {
                let batch = batch.map_err(|e| self.corrupt(e.to_string()))?;
                if batch.producer_id() >= 0 && !batch.is_control() && !batch.is_legacy() {
                    last.insert(batch.producer_id(), batch.last_offset());
                }
            }
        }
        Ok(last)
    }

    fn aborted_by_producer(&self) -> HashMap<i64, Vec<(i64, i64)>> {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for &(producer_id, first, last) in &self.aborted {
            by_producer
                .entry(producer_id)
                .or_default()
                .push((first, last));
        }
        by_producer
    }

    /// Runs of consecutive segments to merge into one, as Kafka's `groupSegmentsBySize`:
    /// at most `segment_bytes` of input, offsets within the index's u32 range, and never
    /// across the boundary between cleaned and dirty segments (so each output segment
    /// has one first-cleaned time).
    fn groups(&self) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut size = 0u64;
        for (i, segment) in self.segments.iter().enumerate() {
            let fits = groups.last().is_some_and(|g| {
                let first = &self.segments[g[0]];
                size + segment.size <= self.segment_bytes
                    && segment.next_offset - first.base <= i64::from(u32::MAX)
                    && (g[0] < self.dirty_from) == (i < self.dirty_from)
            });
            if fits {
                size += segment.size;
                groups.last_mut().expect("checked").push(i);
            } else {
                size = segment.size;
                groups.push(vec![i]);
            }
        }
        groups
    }

    fn write_group(
        &self,
        group: &[usize],
        cleaner: &mut BatchCleaner,
        throttle: &mut Throttle,
    ) -> Result<CleanedGroup> {
        let first = &self.segments[group[0]];
        let path = cleaned_path(&self.dir, first.base);
        let file = File::create(&path).map_err(StorageError::io("creating", &path))?;
        let mut out = BufWriter::new(file);
        let (mut bytes, mut deletes) = (0u64, false);
        for &i in group {
            let segment = &self.segments[i];
            let horizon_passed = segment.cleaned.is_some_and(|m| {
                m.at_ms.saturating_add(cleaner.delete_retention_ms) <= self.now_ms
            });
            throttle.spend(segment.size);
            for batch in walk(segment)? {
                let kept = cleaner
                    .clean(&batch, horizon_passed)
                    .map_err(|e| self.corrupt(e))?;
                deletes |= kept.waits_for_horizon;
                if let Some(kept) = kept.bytes {
                    out.write_all(&kept)
                        .map_err(StorageError::io("writing", &path))?;
                    bytes += kept.len() as u64;
                }
            }
        }
        let file = out
            .into_inner()
            .map_err(|e| StorageError::io("writing", &path)(e.into_error()))?;
        file.sync_all()
            .map_err(StorageError::io("syncing", &path))?;
        throttle.spend(bytes);
        let at_ms = match group[0] >= self.dirty_from {
            true => self.now_ms,
            false => group
                .iter()
                .filter_map(|&i| self.segments[i].cleaned.map(|m| m.at_ms))
                .max()
                .unwrap_or(self.now_ms),
        };
        Ok(CleanedGroup {
            members: group.iter().map(|&i| member(&self.segments[i])).collect(),
            mark: CleanedMark { at_ms, deletes },
        })
    }

    fn corrupt(&self, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: self.dir.clone(),
            position: 0,
            reason: reason.into(),
        }
    }
}

fn member(segment: &SegmentSnap) -> (i64, u64) {
    (segment.base, segment.size)
}

fn segment_corrupt(segment: &SegmentSnap, reason: String) -> StorageError {
    StorageError::Corrupt {
        path: segment.path.clone(),
        position: 0,
        reason,
    }
}

fn walk(segment: &SegmentSnap) -> Result<Vec<RecordBatch>> {
    BatchWalker::new(segment.data.clone())
        .map(|b| b.map_err(|e| segment_corrupt(segment, e.to_string())))
        .collect()
}

fn read_records(segment: &SegmentSnap, batch: &RecordBatch) -> Result<Vec<RawRecord>> {
    records::records(batch).map_err(|e| {
        segment_corrupt(
            segment,
            format!("batch at offset {}: {e}", batch.base_offset()),
        )
    })
}

fn is_aborted(aborted: &HashMap<i64, Vec<(i64, i64)>>, batch: &RecordBatch) -> bool {
    batch.is_transactional()
        && aborted.get(&batch.producer_id()).is_some_and(|ranges| {
            let offset = batch.base_offset();
            ranges
                .iter()
                .any(|&(first, last)| first <= offset && offset <= last)
        })
}

/// What to write for one batch.
struct Kept {
    /// The batch's bytes (the original ones when nothing was removed), or `None`.
    bytes: Option<Bytes>,
    /// It keeps a tombstone or an empty transaction's marker until the horizon.
    waits_for_horizon: bool,
}

/// Kafka's per-record and per-batch retention rules for one pass.
struct BatchCleaner {
    map: OffsetMap,
    aborted: HashMap<i64, Vec<(i64, i64)>>,
    last_batches: HashMap<i64, i64>,
    /// Per producer in a transaction seen so far: whether any of its data is kept.
    open_txns: HashMap<i64, bool>,
    delete_retention_ms: i64,
}

impl BatchCleaner {
    fn clean(&mut self, batch: &RecordBatch, horizon_passed: bool) -> Result<Kept, String> {
        let whole = |waits| Kept {
            bytes: Some(batch.as_bytes().clone()),
            waits_for_horizon: waits,
        };
        if batch.is_legacy() {
            return Ok(whole(false));
        }
        if batch.is_control() {
            // A marker goes once its transaction has no data left and the horizon passed.
            let has_data = self.open_txns.remove(&batch.producer_id()).unwrap_or(false);
            return Ok(match (has_data, horizon_passed) {
                (true, _) => whole(false),
                (false, false) => whole(true),
                (false, true) => Kept {
                    bytes: None,
                    waits_for_horizon: false,
                },
            });
        }
        let all = records::records(batch)
            .map_err(|e| format!("batch at offset {}: {e}", batch.base_offset()))?;
        let kept: Vec<RawRecord> = match is_aborted(&self.aborted, batch) {
            true => Vec::new(),
            false => all
                .iter()
                .filter(|r| self.retains(r, horizon_passed))
                .cloned()
                .collect(),
        };
        let producer = batch.producer_id();
        let keep_empty =
            producer >= 0 && self.last_batches.get(&producer) == Some(&batch.last_offset());
        if batch.is_transactional() {
            let has_data = self.open_txns.entry(producer).or_insert(false);
            *has_data |= !kept.is_empty() || keep_empty;
        }
        let waits = kept.iter().any(|r| r.is_tombstone);
        let bytes = if kept.len() == all.len() {
            Some(batch.as_bytes().clone())
        } else if kept.is_empty() && !keep_empty {
            None
        } else {
            Some(records::rebuild(batch, &kept)?)
        };
        Ok(Kept {
            bytes,
            waits_for_horizon: waits,
        })
    }

    /// Kafka's `shouldRetainRecord`: a keyed record that is its key's latest, unless it
    /// is a tombstone past the horizon. Records without a key are dropped.
    fn retains(&self, record: &RawRecord, horizon_passed: bool) -> bool {
        let Some(key) = &record.key else {
            return false;
        };
        let latest = self.map.get(&key[..]).is_none_or(|&o| record.offset >= o);
        latest && !(record.is_tombstone && horizon_passed)
    }
}
