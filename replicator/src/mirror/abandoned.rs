//! Transactions a shadow partition still holds open when it fails over. Their markers
//! were to come from the source's coordinator, which is gone; until something ends them
//! the last stable offset stays at their first offset, and read_committed consumers
//! never pass it. Failover aborts each one with an ABORT marker in the partition's new
//! leader epoch, above every mirrored one, as a new Kafka leader's coordinator would.

use serde::{Deserialize, Serialize};
use shadowlink_protocol::batch::{BatchWalker, ControlType};
use shadowlink_storage::StorageError;

use super::{MirrorError, MirrorPartition};

/// Reads per step while measuring a transaction.
const SCAN_BYTES: usize = 1 << 20;

/// A transaction failover aborted, for the failover report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    /// The epoch of its newest batch, which the marker carries.
    pub producer_epoch: i16,
    pub first_offset: i64,
    pub marker_offset: i64,
    /// Records of the transaction stored in the partition, all now aborted.
    pub records: i64,
}

impl MirrorPartition {
    /// Aborts every transaction left open in the stored batches; the partition must be
    /// owned. Blocking. A partition with none writes nothing, so a repeated failover
    /// aborts nothing twice.
    pub fn abort_open_transactions(
        &self,
        now_ms: i64,
    ) -> Result<Vec<AbortedTransaction>, MirrorError> {
        let open = self.log().open_transactions();
        let mut aborted = Vec::with_capacity(open.len());
        for (producer_id, first_offset) in open {
            let (producer_epoch, records) = self.extent(producer_id, first_offset)?;
            let marker_offset = self
                .write_marker(producer_id, producer_epoch, ControlType::Abort, now_ms)
                .map_err(|source| MirrorError::Abort {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    producer_id,
                    source,
                })?;
            tracing::warn!(
                topic = %self.topic,
                partition = self.partition,
                producer_id,
                first_offset,
                marker_offset,
                records,
                "failover aborted a transaction left open by the source"
            );
            aborted.push(AbortedTransaction {
                producer_id,
                producer_epoch,
                first_offset,
                marker_offset,
                records,
            });
        }
        Ok(aborted)
    }

    /// The newest epoch and the record count of `producer_id`'s data batches from
    /// `first_offset` to the log end, read from the batch headers.
    fn extent(&self, producer_id: i64, first_offset: i64) -> Result<(i16, i64), StorageError> {
        let log = self.log();
        let end = log.log_end_offset();
        let (mut offset, mut epoch, mut records) = (first_offset, 0, 0);
        while offset < end {
            let before = offset;
            for chunk in log.read(offset, SCAN_BYTES)?.chunks {
                for batch in BatchWalker::new(chunk).map_while(Result::ok) {
                    if batch.last_offset() < offset {
                        continue;
                    }
                    offset = batch.next_offset();
                    let data = batch.is_transactional() && !batch.is_control();
                    if data && batch.producer_id() == producer_id {
                        epoch = epoch.max(batch.producer_epoch());
                        records += i64::from(batch.record_count());
                    }
                }
            }
            if offset == before {
                break;
            }
        }
        Ok((epoch, records))
    }
}
