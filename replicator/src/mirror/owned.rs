//! The write path of owned partitions: validate a client's batch, check its producer's
//! sequence, assign offsets, append.
//!
//! Offsets are assigned the way a Kafka leader does it for v2 batches that need no
//! conversion: only `baseOffset` (bytes 0..8) and `partitionLeaderEpoch` (12..16) are
//! overwritten. Both lie before the CRC-32C's range (byte 21 to the end), so the client's
//! CRC stays valid and nothing else is re-encoded. LogAppendTime topics would also need
//! `maxTimestamp` rewritten and the CRC recomputed; they are not supported (batches keep
//! the producer's CreateTime).

use bytes::Bytes;
use shadowlink_protocol::batch::{
    BatchError, BatchWalker, Compression, ControlType, EndTxnMarker, RecordBatch,
};
use shadowlink_storage::{CheckedRecordSet, PartitionLog, PendingSync, PersistMode, StorageError};

use super::producer_state::{ProducerBatch, ProducerStates, SequenceCheck, SequenceError};
use super::MirrorPartition;

/// Kafka's default `max.message.bytes`: 1 MiB of records plus the 12-byte log overhead.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024 + 12;
/// How much of an owned log's tail is read on open to rebuild producer state. Batches
/// older than that fall out of the duplicate window anyway unless a producer has been
/// idle for that long; such a producer is then accepted as unknown (KIP-360).
pub const PRODUCER_STATE_SCAN_BYTES: u64 = 64 * 1024 * 1024;

/// Per owned partition: the epoch it writes in and its producers.
#[derive(Debug)]
pub struct OwnedState {
    pub leader_epoch: i32,
    pub producers: ProducerStates,
    /// Set while the partition refuses writes although this node still owns it.
    pub refusal: Option<WriteStop>,
}

/// Why an owned partition takes no writes for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteStop {
    /// The peer named here took the topic over while this node was cut off: writing on
    /// would fork the log. Only fail-back ends it.
    Fenced { peer: String },
    /// Ownership is moving to another node (switchover): a producer retries and, once
    /// its Metadata names the new owner, carries on there.
    Moving,
}

/// How one partition's record set is to be written.
#[derive(Debug, Clone, Copy)]
pub struct ProduceRequest {
    pub acks: i16,
    pub api_version: i16,
    pub max_message_bytes: usize,
    /// The transaction coordinator has checked that this partition is in the
    /// producer's ongoing transaction; a transactional batch is refused without it.
    pub in_transaction: bool,
}

/// Where the batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// True when the batch was a retry of one already stored (nothing was written).
    pub duplicate: bool,
}

/// Why a record set was not written. Mapped to Kafka codes in `errors.rs`.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("the partition is a read-only shadow")]
    NotOwned,
    #[error(
        "the topic was failed over to {peer}, which writes it now: this node takes no \
         more writes for it until `shadowlink failback` makes it a shadow"
    )]
    Fenced { peer: String },
    #[error("the topic is moving to another node (switchover): retry")]
    Moving,
    #[error("the record set is corrupt: {0}")]
    Corrupt(BatchError),
    #[error("{0}")]
    InvalidRecord(String),
    #[error("compression codec {0:?} is not supported at this Produce version")]
    UnsupportedCompression(Compression),
    #[error("the batch is {size} bytes, above the topic's max.message.bytes of {max}")]
    TooLarge { size: usize, max: usize },
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The record set as exactly one valid client batch, its CRC checked here once: the log
/// stores it without hashing it again. Produce v3+ requests carry exactly one batch per
/// partition (Kafka refuses anything else with INVALID_RECORD).
pub fn validate_batch(
    records: Bytes,
    request: &ProduceRequest,
) -> Result<CheckedRecordSet, ProduceError> {
    let mut walker = BatchWalker::new(records);
    let batch = match walker.next() {
        Some(Ok(batch)) => batch,
        Some(Err(e @ BatchError::BadMagic { .. })) => {
            return Err(ProduceError::InvalidRecord(e.to_string()))
        }
        Some(Err(e)) => return Err(ProduceError::Corrupt(e)),
        None => {
            let rest = walker.into_remainder();
            return Err(match RecordBatch::parse(rest) {
                Err(e) => ProduceError::Corrupt(e),
                Ok(_) => ProduceError::InvalidRecord("the record set is empty".into()),
            });
        }
    };
    if walker.next().is_some() || !walker.remainder().is_empty() {
        return Err(ProduceError::InvalidRecord(
            "a Produce request must carry exactly one record batch per partition".into(),
        ));
    }
    if batch.len() > request.max_message_bytes {
        return Err(ProduceError::TooLarge {
            size: batch.len(),
            max: request.max_message_bytes,
        });
    }
    let checked = CheckedRecordSet::check(batch.as_bytes(), i64::MIN);
    let set = match (checked.set, checked.unreadable) {
        (_, Some(unreadable)) => return Err(ProduceError::Corrupt(unreadable.source)),
        (Some(set), None) => set,
        (None, None) => {
            return Err(ProduceError::InvalidRecord(
                "the record set is empty".into(),
            ))
        }
    };
    check_client_batch(&batch, request.api_version)?;
    if batch.is_transactional() && !request.in_transaction {
        return Err(ProduceError::InvalidRecord(
            "a transactional batch needs its partition added to the transaction".into(),
        ));
    }
    Ok(set)
}

/// Kafka's `LogValidator` checks for batches written by clients.
fn check_client_batch(batch: &RecordBatch, api_version: i16) -> Result<(), ProduceError> {
    let invalid = |reason: &str| Err(ProduceError::InvalidRecord(reason.to_string()));
    // Produce v3+ carries only magic 2, as in Kafka; a legacy message also has no
    // partitionLeaderEpoch field for `assign_offsets` to overwrite (its CRC sits there).
    if batch.is_legacy() {
        return invalid("Produce v3 and later may carry only magic 2 record batches");
    }
    match batch.compression() {
        Compression::Unknown(_) => {
            return Err(ProduceError::UnsupportedCompression(batch.compression()))
        }
        // zstd needs Produce v7+ (KIP-110).
        Compression::Zstd if api_version < 7 => {
            return Err(ProduceError::UnsupportedCompression(Compression::Zstd))
        }
        _ => {}
    }
    if batch.record_count() <= 0 {
        return invalid("the batch has no records");
    }
    if i64::from(batch.last_offset_delta()) + 1 != i64::from(batch.record_count()) {
        return invalid("the batch's lastOffsetDelta does not match its record count");
    }
    if batch.is_control() {
        return invalid("clients may not write control batches");
    }
    if batch.producer_id() >= 0 && batch.base_sequence() < 0 {
        return invalid("an idempotent batch needs a non-negative base sequence");
    }
    Ok(())
}

/// Producer state from the newest batches of an owned log (bounded, see
/// [`PRODUCER_STATE_SCAN_BYTES`]).
pub fn rebuild_producer_states(log: &PartitionLog) -> Result<ProducerStates, StorageError> {
    let mut states = ProducerStates::default();
    log.for_each_tail_batch(PRODUCER_STATE_SCAN_BYTES, |batch| {
        if let Some(p) = ProducerBatch::of(batch) {
            states.record(&p, batch.base_offset());
        }
    })?;
    Ok(states)
}

impl MirrorPartition {
    /// Writes one client batch to this owned partition. Blocking: call it from
    /// `spawn_blocking`.
    ///
    /// Durability when this returns, by persist mode: `Always` fsyncs before returning
    /// (whatever the acks), so an acknowledged batch survives power loss; `Interval` and
    /// `Os` acknowledge once the batch is in the page cache (plus the interval's fsync
    /// when one falls due), so it survives a process crash but a power loss may take the
    /// last interval's (or, for `Os`, any recent) batches. The node is the only replica,
    /// so acks=all waits for nothing else. The fsync runs after the partition's locks
    /// are released: readers and Metadata never wait for the disk, and the next batch
    /// of any producer is checked and written meanwhile.
    pub fn produce(
        &self,
        records: Bytes,
        request: &ProduceRequest,
    ) -> Result<Produced, ProduceError> {
        let set = validate_batch(records, request)?;
        let (produced, sync) = self.write_owned(&set)?;
        if let Some(sync) = sync {
            sync.wait()?;
        }
        Ok(produced)
    }

    /// Appends the COMMIT or ABORT marker of `producer_id`'s transaction at the log end,
    /// in the partition's leader epoch, and waits for the fsync the persist mode owes.
    /// Returns the marker's offset. Blocking: call it from `spawn_blocking`.
    pub fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        timestamp: i64,
    ) -> Result<i64, ProduceError> {
        let marker = EndTxnMarker {
            producer_id,
            producer_epoch,
            control,
            coordinator_epoch: 0,
            timestamp,
        };
        let (offset, info, sync) = {
            let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
            let owned = owned.as_ref().ok_or(ProduceError::NotOwned)?;
            self.check_writes(owned)?;
            let mut log = self.log();
            let offset = log.log_end_offset();
            let (info, sync) = log.append_deferred(marker.encode(offset, owned.leader_epoch))?;
            (offset, info, sync)
        };
        self.count_append(info.bytes, true);
        if let Some(sync) = sync {
            sync.wait()?;
        }
        Ok(offset)
    }

    fn check_writes(&self, owned: &OwnedState) -> Result<(), ProduceError> {
        match &owned.refusal {
            None => Ok(()),
            Some(WriteStop::Fenced { peer }) => Err(ProduceError::Fenced { peer: peer.clone() }),
            Some(WriteStop::Moving) => Err(ProduceError::Moving),
        }
    }

    /// Checks the producer's sequence, assigns offsets and writes, as one step under the
    /// partition's locks; returns the fsync still owed before the write may be acked.
    fn write_owned(
        &self,
        set: &CheckedRecordSet,
    ) -> Result<(Produced, Option<PendingSync>), ProduceError> {
        let producer = ProducerBatch::of(&set.batches()[0]);
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        let owned = owned.as_mut().ok_or(ProduceError::NotOwned)?;
        self.check_writes(owned)?;
        let mut log = self.log();
        if log.poisoned().is_some() && self.heal_log(&mut log) {
            // The reopened log may hold less (or, when the write failed after the batch
            // was whole, more) than the sequences recorded: read them back from it.
            owned.producers = rebuild_producer_states(&log)?;
        }
        if let Some(p) = &producer {
            if let SequenceCheck::Duplicate { base_offset } = owned.producers.check(p)? {
                // A retry is acked no sooner than its original: it may still be syncing.
                let sync =
                    (log.config().persist == PersistMode::Always).then(|| log.pending_sync());
                let produced = Produced {
                    base_offset,
                    log_start_offset: log.log_start_offset(),
                    duplicate: true,
                };
                return Ok((produced, sync));
            }
        }
        let (info, sync) = log.append_as_leader(set, owned.leader_epoch)?;
        let base_offset = info.first_offset;
        let log_start_offset = log.log_start_offset();
        drop(log);
        if let Some(p) = &producer {
            owned.producers.record(p, base_offset);
        }
        self.count_append(set.len(), set.holds_control());
        let produced = Produced {
            base_offset,
            log_start_offset,
            duplicate: false,
        };
        Ok((produced, sync))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use shadowlink_protocol::batch::testing::BatchBuilder;

    fn request() -> ProduceRequest {
        ProduceRequest {
            acks: -1,
            api_version: 9,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            in_transaction: false,
        }
    }

    fn client_batch() -> Bytes {
        BatchBuilder::new(0)
            .leader_epoch(-1)
            .timestamp(1_700_000_000_000)
            .producer(42, 3, 17)
            .records(&[(Some(b"k"), Some(b"v1")), (None, Some(b"v2"))])
            .build()
    }

    #[test]
    fn a_flipped_byte_is_corrupt_and_an_oversized_batch_too_large() {
        let mut bytes = BytesMut::from(client_batch().as_ref());
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            validate_batch(bytes.freeze(), &request()),
            Err(ProduceError::Corrupt(BatchError::CrcMismatch { .. }))
        ));
        let small = ProduceRequest {
            max_message_bytes: 70,
            ..request()
        };
        assert!(matches!(
            validate_batch(client_batch(), &small),
            Err(ProduceError::TooLarge { max: 70, .. })
        ));
    }

    #[test]
    fn client_rules_are_enforced() {
        let two = [client_batch(), client_batch()].concat();
        let cases = [
            Bytes::from(two),
            BatchBuilder::new(0)
                .attributes(0x20)
                .records(&[(None, None)])
                .build(),
            BatchBuilder::new(0)
                .attributes(0x10)
                .records(&[(None, None)])
                .build(),
            BatchBuilder::new(0)
                .last_offset_delta(5)
                .records(&[(None, None)])
                .build(),
            BatchBuilder::new(0)
                .producer(1, 0, -1)
                .records(&[(None, None)])
                .build(),
            BatchBuilder::new(0).build(),
        ];
        for case in cases {
            assert!(
                matches!(
                    validate_batch(case, &request()),
                    Err(ProduceError::InvalidRecord(_))
                ),
                "accepted"
            );
        }
        let zstd = BatchBuilder::new(0)
            .attributes(4)
            .records(&[(None, None)])
            .build();
        let v6 = ProduceRequest {
            api_version: 6,
            ..request()
        };
        assert!(validate_batch(zstd.clone(), &request()).is_ok());
        assert!(matches!(
            validate_batch(zstd, &v6),
            Err(ProduceError::UnsupportedCompression(_))
        ));
        assert!(matches!(
            validate_batch(Bytes::from_static(&[0, 0, 0]), &request()),
            Err(ProduceError::Corrupt(_))
        ));
    }
}
