//! End-transaction markers: the control batch a transaction coordinator has written to
//! every partition of a transaction when it commits or aborts (KIP-98).
//!
//! The layout is Kafka's `MemoryRecords.withEndTransactionMarker`: an uncompressed
//! CreateTime batch with the transactional and control attribute bits, the producer's id
//! and epoch, base sequence -1, and exactly one record whose key is `version 0, type`
//! (ABORT = 0, COMMIT = 1) and whose value is `version 0, coordinator epoch`.

use bytes::{BufMut, Bytes, BytesMut};

use super::{ControlType, ATTRIBUTES_OFFSET, BATCH_HEADER_LEN, CRC_OFFSET};
use super::{CURRENT_MAGIC, LOG_OVERHEAD};

const TRANSACTIONAL_AND_CONTROL: i16 = 0x30;

/// Who ends which transaction, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub control: ControlType,
    pub coordinator_epoch: i32,
    /// The batch's timestamp (the coordinator's clock when it wrote the marker).
    pub timestamp: i64,
}

impl EndTxnMarker {
    /// The marker as one batch at `base_offset`, written in `leader_epoch`.
    pub fn encode(&self, base_offset: i64, leader_epoch: i32) -> Bytes {
        let kind: i16 = match self.control {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        };
        let mut record = BytesMut::with_capacity(20);
        record.put_i8(0); // record attributes
        record.put_u8(0); // timestampDelta, zigzag 0
        record.put_u8(0); // offsetDelta, zigzag 0
        record.put_u8(8); // key length 4, zigzag
        record.put_i16(0);
        record.put_i16(kind);
        record.put_u8(12); // value length 6, zigzag
        record.put_i16(0);
        record.put_i32(self.coordinator_epoch);
        record.put_u8(0); // no headers
        let mut buf = BytesMut::with_capacity(BATCH_HEADER_LEN + 1 + record.len());
        buf.put_i64(base_offset);
        buf.put_i32((BATCH_HEADER_LEN - LOG_OVERHEAD + 1 + record.len()) as i32);
        buf.put_i32(leader_epoch);
        buf.put_i8(CURRENT_MAGIC);
        buf.put_u32(0); // CRC, below
        buf.put_i16(TRANSACTIONAL_AND_CONTROL);
        buf.put_i32(0); // lastOffsetDelta
        buf.put_i64(self.timestamp);
        buf.put_i64(self.timestamp);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(-1); // baseSequence
        buf.put_i32(1); // one record
        buf.put_u8((record.len() as u8) << 1); // record length, zigzag
        buf.extend_from_slice(&record);
        let crc = super::crc32c(&buf[ATTRIBUTES_OFFSET..]);
        buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testing::BatchBuilder;
    use crate::batch::RecordBatch;

    #[test]
    fn a_marker_is_the_batch_kafka_writes() {
        for (control, commit) in [(ControlType::Commit, true), (ControlType::Abort, false)] {
            let marker = EndTxnMarker {
                producer_id: 42,
                producer_epoch: 3,
                control,
                coordinator_epoch: 0,
                timestamp: 1_700_000_000_000,
            };
            let batch = RecordBatch::parse(marker.encode(17, 5)).unwrap();
            let expected = BatchBuilder::new(17)
                .leader_epoch(5)
                .timestamp(1_700_000_000_000)
                .producer(42, 3, -1)
                .marker(commit)
                .build();
            assert_eq!(batch.as_bytes(), &expected);
            assert!(batch.validate_crc().is_ok());
            assert!(batch.is_control() && batch.is_transactional());
            assert_eq!(batch.control_type(), Some(control));
            assert_eq!((batch.base_offset(), batch.next_offset()), (17, 18));
        }
    }
}
