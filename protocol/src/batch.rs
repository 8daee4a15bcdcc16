//! Zero-copy view of a v2 (magic 2) record batch, and a walker over a record set.
//!
//! Record data stays opaque: a [`RecordBatch`] is one complete batch held as a `Bytes`
//! slice of whatever buffer it arrived in, and every accessor reads a fixed header field.
//! Nothing here decompresses or re-encodes, so a batch can be stored and served
//! byte-identical. Layout (all big-endian, offsets from the batch start):
//!
//! | off | size | field                |
//! |-----|------|----------------------|
//! | 0   | 8    | baseOffset           |
//! | 8   | 4    | batchLength          |
//! | 12  | 4    | partitionLeaderEpoch |
//! | 16  | 1    | magic                |
//! | 17  | 4    | crc (CRC-32C of 21..)|
//! | 21  | 2    | attributes           |
//! | 23  | 4    | lastOffsetDelta      |
//! | 27  | 8    | baseTimestamp        |
//! | 35  | 8    | maxTimestamp         |
//! | 43  | 8    | producerId           |
//! | 51  | 2    | producerEpoch        |
//! | 53  | 4    | baseSequence         |
//! | 57  | 4    | recordsCount         |
//! | 61  | ..   | records              |

use bytes::Bytes;

/// Size of the v2 batch header, i.e. the offset at which records start.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batchLength`: the header minus the log overhead.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only record format this crate understands.
pub const CURRENT_MAGIC: i8 = 2;

const BATCH_LENGTH_OFFSET: usize = 8;
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_FLAG: i16 = 0x08;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;
const DELETE_HORIZON_FLAG: i16 = 0x40;

/// Compression codec from attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Codec ids 5..=7 are not assigned by Kafka; kept so the header can still be read.
    Unknown(u8),
}

impl Compression {
    fn from_bits(bits: u8) -> Self {
        match bits {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }
}

/// Meaning of the batch timestamps, from attribute bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Type of the single record in a control batch (its key's `type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    Abort,
    Commit,
}

/// Why bytes are not exactly one well-formed v2 batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error(
        "the batch is truncated: {needed} bytes are needed but only {available} are available"
    )]
    Truncated { needed: usize, available: usize },
    #[error("the batch at offset {base_offset} has magic {magic}, but only magic 2 is supported")]
    BadMagic { base_offset: i64, magic: i8 },
    #[error(
        "the batch at offset {base_offset} declares batchLength {batch_length}, \
         below the minimum of {MIN_BATCH_LENGTH}"
    )]
    BadLength { base_offset: i64, batch_length: i32 },
    #[error(
        "the batch at offset {base_offset} is {batch_len} bytes long, \
         but {trailing} more bytes follow it"
    )]
    TrailingBytes {
        base_offset: i64,
        batch_len: usize,
        trailing: usize,
    },
    #[error(
        "the batch at offset {base_offset} has CRC {stored:#010x} \
         but its contents hash to {computed:#010x}"
    )]
    CrcMismatch {
        base_offset: i64,
        stored: u32,
        computed: u32,
    },
}

/// Exactly one complete v2 record batch, as an immutable zero-copy byte slice.
///
/// Construction checks the length framing and magic, so every accessor can read its
/// fixed-offset header field without further bounds checks failing.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

impl std::fmt::Debug for RecordBatch {
    // Record payloads are opaque and may be large; show the header only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("base_offset", &self.base_offset())
            .field("last_offset", &self.last_offset())
            .field("len", &self.len())
            .field("partition_leader_epoch", &self.partition_leader_epoch())
            .field("record_count", &self.record_count())
            .field("attributes", &self.attributes())
            .finish()
    }
}

/// Reads `batchLength` and checks it is plausible. `bytes` must hold at least 12 bytes.
fn checked_batch_length(bytes: &[u8]) -> Result<usize, BatchError> {
    let batch_length = read_i32(bytes, BATCH_LENGTH_OFFSET);
    if batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::BadLength {
            base_offset: read_i64(bytes, 0),
            batch_length,
        });
    }
    // Non-negative i32 always fits in usize on supported (>= 32-bit) targets.
    Ok(LOG_OVERHEAD + batch_length as usize)
}

/// Checks the magic byte. `bytes` must hold at least 17 bytes.
fn check_magic(bytes: &[u8]) -> Result<(), BatchError> {
    let magic = bytes[MAGIC_OFFSET] as i8;
    if magic != CURRENT_MAGIC {
        return Err(BatchError::BadMagic {
            base_offset: read_i64(bytes, 0),
            magic,
        });
    }
    Ok(())
}

impl RecordBatch {
    /// Views `bytes` as exactly one batch. Checks framing and magic, not the CRC
    /// (see [`RecordBatch::validate_crc`]), because serving paths never need to hash.
    pub fn parse(bytes: Bytes) -> Result<RecordBatch, BatchError> {
        if bytes.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: LOG_OVERHEAD,
                available: bytes.len(),
            });
        }
        let total = checked_batch_length(&bytes)?;
        if bytes.len() < total {
            return Err(BatchError::Truncated {
                needed: total,
                available: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(BatchError::TrailingBytes {
                base_offset: read_i64(&bytes, 0),
                batch_len: total,
                trailing: bytes.len() - total,
            });
        }
        check_magic(&bytes)?;
        Ok(RecordBatch { bytes })
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Total size in bytes, `LOG_OVERHEAD + batchLength`.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a batch has at least a header. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn base_offset(&self) -> i64 {
        read_i64(&self.bytes, 0)
    }

    pub fn batch_length(&self) -> i32 {
        read_i32(&self.bytes, BATCH_LENGTH_OFFSET)
    }

    pub fn partition_leader_epoch(&self) -> i32 {
        read_i32(&self.bytes, PARTITION_LEADER_EPOCH_OFFSET)
    }

    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_OFFSET] as i8
    }

    pub fn crc(&self) -> u32 {
        read_i32(&self.bytes, CRC_OFFSET) as u32
    }

    pub fn attributes(&self) -> i16 {
        read_i16(&self.bytes, ATTRIBUTES_OFFSET)
    }

    pub fn compression(&self) -> Compression {
        Compression::from_bits((self.attributes() & COMPRESSION_MASK) as u8)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_FLAG != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_FLAG != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_FLAG != 0
    }

    pub fn has_delete_horizon(&self) -> bool {
        self.attributes() & DELETE_HORIZON_FLAG != 0
    }

    pub fn last_offset_delta(&self) -> i32 {
        read_i32(&self.bytes, LAST_OFFSET_DELTA_OFFSET)
    }

    pub fn base_timestamp(&self) -> i64 {
        read_i64(&self.bytes, BASE_TIMESTAMP_OFFSET)
    }

    pub fn max_timestamp(&self) -> i64 {
        read_i64(&self.bytes, MAX_TIMESTAMP_OFFSET)
    }

    pub fn producer_id(&self) -> i64 {
        read_i64(&self.bytes, PRODUCER_ID_OFFSET)
    }

    pub fn producer_epoch(&self) -> i16 {
        read_i16(&self.bytes, PRODUCER_EPOCH_OFFSET)
    }

    pub fn base_sequence(&self) -> i32 {
        read_i32(&self.bytes, BASE_SEQUENCE_OFFSET)
    }

    pub fn record_count(&self) -> i32 {
        read_i32(&self.bytes, RECORDS_COUNT_OFFSET)
    }

    /// `baseOffset + lastOffsetDelta`. This, not `recordsCount`, locates the end of the
    /// batch: compaction removes records but keeps `lastOffsetDelta`. Saturates instead
    /// of overflowing on hostile headers; storage rejects such batches separately.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }

    /// The offset the next batch may start at, `last_offset() + 1` (saturating).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// CRC-32C over everything from `attributes` to the end of the batch.
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[ATTRIBUTES_OFFSET..])
    }

    pub fn validate_crc(&self) -> Result<(), BatchError> {
        let computed = self.compute_crc();
        let stored = self.crc();
        if computed == stored {
            Ok(())
        } else {
            Err(BatchError::CrcMismatch {
                base_offset: self.base_offset(),
                stored,
                computed,
            })
        }
    }

    /// For a control batch, the type in its single record's key (`i16 version, i16 type`).
    ///
    /// Returns `None` when the batch is not a control batch, is compressed (Kafka never
    /// compresses control batches, so there is nothing sensible to inflate), the record
    /// is malformed, or the type is neither ABORT (0) nor COMMIT (1).
    pub fn control_type(&self) -> Option<ControlType> {
        if !self.is_control() || self.compression() != Compression::None {
            return None;
        }
        let key = control_record_key(&self.bytes[BATCH_HEADER_LEN..])?;
        match i16::from_be_bytes([key[2], key[3]]) {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// Returns the first 4 key bytes of the first record in `records`, if well-formed.
fn control_record_key(records: &[u8]) -> Option<&[u8]> {
    let mut cur = Cursor { buf: records };
    let length = cur.varint()?;
    if length < 0 {
        return None;
    }
    let _attributes = cur.take(1)?;
    let _timestamp_delta = cur.varlong()?;
    let _offset_delta = cur.varint()?;
    let key_length = cur.varint()?;
    if key_length < 4 {
        return None;
    }
    cur.take(4)
}

/// Minimal reader for Kafka's zigzag varints; every method fails with `None` on short input.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn unsigned(&mut self, max_bytes: usize) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        let raw = self.unsigned(5)? as u32;
        Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Option<i64> {
        let raw = self.unsigned(10)?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }
}

/// Iterates the complete batches of a record set (concatenated batches).
///
/// Each batch is a `Bytes::slice` of the input. Iteration ends when fewer than
/// [`LOG_OVERHEAD`] bytes or fewer than a whole batch remain: fetch responses may end with a
/// partial batch, which is not an error and stays in [`BatchWalker::remainder`]. A batch
/// with an impossible length or wrong magic yields one `Err` and ends iteration, because
/// framing after it cannot be trusted; the remainder then starts at that batch.
#[derive(Debug, Clone)]
pub struct BatchWalker {
    rest: Bytes,
    failed: bool,
}

impl BatchWalker {
    pub fn new(records: Bytes) -> Self {
        BatchWalker {
            rest: records,
            failed: false,
        }
    }

    /// The bytes not yet yielded as batches.
    pub fn remainder(&self) -> &Bytes {
        &self.rest
    }

    /// Consumes the walker, returning the unconsumed bytes.
    pub fn into_remainder(self) -> Bytes {
        self.rest
    }
}

impl Iterator for BatchWalker {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.len() < LOG_OVERHEAD {
            return None;
        }
        let total = match checked_batch_length(&self.rest) {
            Ok(total) => total,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if self.rest.len() < total {
            return None;
        }
        if let Err(e) = check_magic(&self.rest) {
            self.failed = true;
            return Some(Err(e));
        }
        let bytes = self.rest.split_to(total);
        Some(Ok(RecordBatch { bytes }))
    }
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

/// Hand-built batches for tests in this and other crates. Not part of the stable API.
#[doc(hidden)]
pub mod testing {
    use bytes::{BufMut, Bytes, BytesMut};

    /// A record's (key, value); `None` encodes as a null (length -1).
    pub type RecordRef<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
    /// Owned form of [`RecordRef`].
    pub type OwnedRecord = (Option<Vec<u8>>, Option<Vec<u8>>);

    /// Builds a valid uncompressed v2 batch with a correct CRC. Every record gets
    /// `timestamp`, offset deltas 0..n, no headers; producer fields are "none" (-1).
    pub fn build_batch(
        base_offset: i64,
        leader_epoch: i32,
        records: &[RecordRef<'_>],
        timestamp: i64,
    ) -> Bytes {
        BatchBuilder::new(base_offset)
            .leader_epoch(leader_epoch)
            .timestamp(timestamp)
            .records(records)
            .build()
    }

    /// Builds a COMMIT (`commit == true`) or ABORT control batch for `producer_id`.
    pub fn build_control_batch(
        base_offset: i64,
        leader_epoch: i32,
        producer_id: i64,
        commit: bool,
        timestamp: i64,
    ) -> Bytes {
        let key = [0u8, 0, 0, u8::from(commit)];
        let value = [0u8, 0, 0, 0, 0, 0];
        BatchBuilder::new(base_offset)
            .leader_epoch(leader_epoch)
            .timestamp(timestamp)
            .producer(producer_id, 0, -1)
            .attributes(0x30)
            .records(&[(Some(&key[..]), Some(&value[..]))])
            .build()
    }

    /// Builder for unusual batches: offset gaps (`last_offset_delta` beyond the record
    /// count, as after compaction), arbitrary attributes and producer fields.
    #[derive(Debug, Clone)]
    pub struct BatchBuilder {
        pub(super) base_offset: i64,
        pub(super) leader_epoch: i32,
        pub(super) attributes: i16,
        pub(super) timestamp: i64,
        pub(super) max_timestamp: Option<i64>,
        pub(super) last_offset_delta: Option<i32>,
        pub(super) producer: (i64, i16, i32),
        pub(super) records: Vec<OwnedRecord>,
    }

    impl BatchBuilder {
        pub fn new(base_offset: i64) -> Self {
            BatchBuilder {
                base_offset,
                leader_epoch: 0,
                attributes: 0,
                timestamp: 0,
                max_timestamp: None,
                last_offset_delta: None,
                producer: (-1, -1, -1),
                records: Vec::new(),
            }
        }

        pub fn leader_epoch(mut self, epoch: i32) -> Self {
            self.leader_epoch = epoch;
            self
        }

        /// Raw attributes; the compression bits are written as given but the records
        /// are never compressed, so only use non-zero codecs to test header parsing.
        pub fn attributes(mut self, attributes: i16) -> Self {
            self.attributes = attributes;
            self
        }

        /// Base timestamp, also used as every record's timestamp.
        pub fn timestamp(mut self, timestamp: i64) -> Self {
            self.timestamp = timestamp;
            self
        }

        /// Overrides the header's maxTimestamp (defaults to the base timestamp).
        pub fn max_timestamp(mut self, max_timestamp: i64) -> Self {
            self.max_timestamp = Some(max_timestamp);
            self
        }

        /// Overrides lastOffsetDelta (defaults to `records - 1`, or 0 when empty).
        pub fn last_offset_delta(mut self, delta: i32) -> Self {
            self.last_offset_delta = Some(delta);
            self
        }

        pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
            self.producer = (id, epoch, base_sequence);
            self
        }

        pub fn records(mut self, records: &[RecordRef<'_>]) -> Self {
            self.records = records
                .iter()
                .map(|(k, v)| (k.map(<[u8]>::to_vec), v.map(<[u8]>::to_vec)))
                .collect();
            self
        }

        pub fn build(&self) -> Bytes {
            let mut body = BytesMut::new();
            for (delta, (key, value)) in self.records.iter().enumerate() {
                encode_record(&mut body, delta as i64, key.as_deref(), value.as_deref());
            }
            let count = self.records.len() as i32;
            let last_delta = self.last_offset_delta.unwrap_or((count - 1).max(0));
            let (producer_id, producer_epoch, base_sequence) = self.producer;
            let mut buf = BytesMut::with_capacity(super::BATCH_HEADER_LEN + body.len());
            buf.put_i64(self.base_offset);
            buf.put_i32((super::BATCH_HEADER_LEN - super::LOG_OVERHEAD + body.len()) as i32);
            buf.put_i32(self.leader_epoch);
            buf.put_i8(super::CURRENT_MAGIC);
            buf.put_u32(0); // CRC, filled in below
            buf.put_i16(self.attributes);
            buf.put_i32(last_delta);
            buf.put_i64(self.timestamp);
            buf.put_i64(self.max_timestamp.unwrap_or(self.timestamp));
            buf.put_i64(producer_id);
            buf.put_i16(producer_epoch);
            buf.put_i32(base_sequence);
            buf.put_i32(count);
            buf.extend_from_slice(&body);
            let crc = crc32c::crc32c(&buf[super::ATTRIBUTES_OFFSET..]);
            buf[super::CRC_OFFSET..super::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            buf.freeze()
        }
    }

    fn encode_record(
        out: &mut BytesMut,
        offset_delta: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        let mut rec = BytesMut::new();
        rec.put_i8(0); // attributes
        put_varlong(&mut rec, 0); // timestampDelta
        put_varlong(&mut rec, offset_delta);
        put_nullable(&mut rec, key);
        put_nullable(&mut rec, value);
        put_varlong(&mut rec, 0); // header count
        put_varlong(out, rec.len() as i64);
        out.extend_from_slice(&rec);
    }

    fn put_nullable(out: &mut BytesMut, data: Option<&[u8]>) {
        match data {
            None => put_varlong(out, -1),
            Some(d) => {
                put_varlong(out, d.len() as i64);
                out.extend_from_slice(d);
            }
        }
    }

    /// Zigzag varint; varint and varlong share the encoding for values that fit.
    pub fn put_varlong(out: &mut BytesMut, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        out.put_u8(v as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{build_batch, build_control_batch, BatchBuilder, OwnedRecord, RecordRef};
    use super::*;
    use bytes::{BufMut, BytesMut};
    use proptest::prelude::*;

    fn sample_set() -> (Bytes, Vec<Bytes>) {
        let batches = vec![
            build_batch(0, 1, &[(Some(b"k"), Some(b"v")), (None, Some(b"v2"))], 100),
            build_batch(2, 1, &[(None, None)], 101),
            BatchBuilder::new(10)
                .leader_epoch(3)
                .last_offset_delta(4)
                .build(),
        ];
        let mut all = BytesMut::new();
        for b in &batches {
            all.extend_from_slice(b);
        }
        (all.freeze(), batches)
    }

    #[test]
    fn parses_hand_built_batch_fields() {
        let bytes = build_batch(42, 7, &[(Some(b"a"), Some(b"b")), (None, None)], 1_000);
        let batch = RecordBatch::parse(bytes.clone()).unwrap();
        assert_eq!(batch.base_offset(), 42);
        assert_eq!(batch.partition_leader_epoch(), 7);
        assert_eq!(batch.magic(), 2);
        assert_eq!(batch.batch_length() as usize + LOG_OVERHEAD, bytes.len());
        assert_eq!(batch.last_offset_delta(), 1);
        assert_eq!(batch.last_offset(), 43);
        assert_eq!(batch.next_offset(), 44);
        assert_eq!(batch.record_count(), 2);
        assert_eq!(batch.base_timestamp(), 1_000);
        assert_eq!(batch.max_timestamp(), 1_000);
        assert_eq!(batch.producer_id(), -1);
        assert_eq!(batch.compression(), Compression::None);
        assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
        assert!(!batch.is_control() && !batch.is_transactional() && !batch.has_delete_horizon());
        assert!(batch.validate_crc().is_ok());
        assert_eq!(batch.control_type(), None);
    }

    #[test]
    fn reads_batches_encoded_by_kafka_protocol() {
        use kafka_protocol::records::{
            Compression as KCompression, Record, RecordBatchEncoder, RecordEncodeOptions,
            TimestampType as KTimestampType,
        };
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 9,
                producer_id: 77,
                producer_epoch: 2,
                timestamp_type: KTimestampType::Creation,
                offset: 100 + i,
                sequence: i as i32,
                timestamp: 5_000 + i,
                key: None,
                value: Some(Bytes::from_static(b"value")),
                headers: Default::default(),
            })
            .collect();
        for (codec, expected) in [
            (KCompression::None, Compression::None),
            (KCompression::Gzip, Compression::Gzip),
            (KCompression::Lz4, Compression::Lz4),
        ] {
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression: codec,
            };
            RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
            let batch = RecordBatch::parse(buf.freeze()).unwrap();
            assert_eq!(batch.compression(), expected);
            assert_eq!(batch.base_offset(), 100);
            assert_eq!(batch.last_offset(), 102);
            assert_eq!(batch.partition_leader_epoch(), 9);
            assert_eq!(batch.producer_id(), 77);
            assert_eq!(batch.producer_epoch(), 2);
            assert_eq!(batch.base_sequence(), 0);
            assert_eq!(batch.record_count(), 3);
            assert_eq!(batch.base_timestamp(), 5_000);
            assert_eq!(batch.max_timestamp(), 5_002);
            assert!(batch.is_transactional());
            assert!(batch.validate_crc().is_ok());
        }
    }

    #[test]
    fn kafka_protocol_decodes_hand_built_batch() {
        use kafka_protocol::records::RecordBatchDecoder;
        let mut bytes = build_batch(5, 2, &[(Some(b"key"), Some(b"val")), (None, None)], 77);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].offset, 5);
        assert_eq!(set.records[1].offset, 6);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"key"[..]));
        assert_eq!(set.records[0].value.as_deref(), Some(&b"val"[..]));
        assert_eq!(set.records[1].key, None);
        assert_eq!(set.records[0].timestamp, 77);
        assert_eq!(set.records[0].partition_leader_epoch, 2);
    }

    #[test]
    fn control_batches_report_their_type() {
        let commit = RecordBatch::parse(build_control_batch(9, 1, 55, true, 10)).unwrap();
        let abort = RecordBatch::parse(build_control_batch(9, 1, 55, false, 10)).unwrap();
        assert!(commit.is_control() && commit.is_transactional());
        assert_eq!(commit.control_type(), Some(ControlType::Commit));
        assert_eq!(abort.control_type(), Some(ControlType::Abort));
        let garbage = BatchBuilder::new(0)
            .attributes(0x20)
            .records(&[(Some(b"x"), None)])
            .build();
        assert_eq!(RecordBatch::parse(garbage).unwrap().control_type(), None);
        let empty = BatchBuilder::new(0).attributes(0x20).build();
        assert_eq!(RecordBatch::parse(empty).unwrap().control_type(), None);
    }

    #[test]
    fn attribute_bits_decode() {
        let b = BatchBuilder::new(0).attributes(0x4c | 4).build();
        let batch = RecordBatch::parse(b).unwrap();
        assert_eq!(batch.compression(), Compression::Zstd);
        assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
        assert!(batch.has_delete_horizon());
        let b = BatchBuilder::new(0).attributes(6).build();
        assert_eq!(
            RecordBatch::parse(b).unwrap().compression(),
            Compression::Unknown(6)
        );
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let bytes = build_batch(3, 0, &[(None, Some(b"payload"))], 1);
        let mut copy = BytesMut::from(&bytes[..]);
        let last = copy.len() - 1;
        copy[last] ^= 0x01;
        let err = RecordBatch::parse(copy.freeze())
            .unwrap()
            .validate_crc()
            .unwrap_err();
        assert!(matches!(
            err,
            BatchError::CrcMismatch { base_offset: 3, .. }
        ));
        // The leader epoch sits outside the CRC, so rewriting it keeps the batch valid.
        let mut copy = BytesMut::from(&bytes[..]);
        copy[12..16].copy_from_slice(&99i32.to_be_bytes());
        assert!(RecordBatch::parse(copy.freeze())
            .unwrap()
            .validate_crc()
            .is_ok());
    }

    #[test]
    fn parse_rejects_bad_framing() {
        let bytes = build_batch(0, 0, &[(None, None)], 0);
        let short = bytes.slice(..bytes.len() - 1);
        assert!(matches!(
            RecordBatch::parse(short),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            RecordBatch::parse(bytes.slice(..5)),
            Err(BatchError::Truncated {
                needed: 12,
                available: 5
            })
        ));
        let mut long = BytesMut::from(&bytes[..]);
        long.put_u8(0);
        assert!(matches!(
            RecordBatch::parse(long.freeze()),
            Err(BatchError::TrailingBytes { trailing: 1, .. })
        ));
        let mut bad_len = BytesMut::from(&bytes[..]);
        bad_len[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            RecordBatch::parse(bad_len.freeze()),
            Err(BatchError::BadLength {
                batch_length: 48,
                ..
            })
        ));
        let mut bad_magic = BytesMut::from(&bytes[..]);
        bad_magic[16] = 1;
        assert!(matches!(
            RecordBatch::parse(bad_magic.freeze()),
            Err(BatchError::BadMagic { magic: 1, .. })
        ));
    }

    #[test]
    fn walker_yields_zero_copy_slices() {
        let (all, batches) = sample_set();
        let mut walker = BatchWalker::new(all.clone());
        let mut start = 0;
        for expected in &batches {
            let batch = walker.next().unwrap().unwrap();
            assert_eq!(batch.as_bytes(), expected);
            // Same memory as the input: a slice, not a copy.
            assert_eq!(batch.as_bytes().as_ptr(), all[start..].as_ptr());
            start += batch.len();
        }
        assert!(walker.next().is_none());
        assert!(walker.remainder().is_empty());
    }

    #[test]
    fn walker_stops_once_on_bad_magic_or_length() {
        let (all, batches) = sample_set();
        let mut bytes = BytesMut::from(&all[..]);
        bytes[batches[0].len() + 16] = 0;
        let mut walker = BatchWalker::new(bytes.freeze());
        assert!(walker.next().unwrap().is_ok());
        assert!(matches!(
            walker.next(),
            Some(Err(BatchError::BadMagic {
                base_offset: 2,
                magic: 0
            }))
        ));
        assert!(walker.next().is_none());
        assert_eq!(walker.remainder().len(), all.len() - batches[0].len());

        let mut bytes = BytesMut::from(&all[..]);
        bytes[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        let mut walker = BatchWalker::new(bytes.freeze());
        assert!(matches!(
            walker.next(),
            Some(Err(BatchError::BadLength {
                batch_length: -1,
                ..
            }))
        ));
        assert!(walker.next().is_none());
    }

    /// Walks `all[..cut]` and checks it yields exactly the batches wholly before `cut`.
    fn check_cut(all: &Bytes, batches: &[Bytes], cut: usize) {
        let input = all.slice(..cut);
        let mut walker = BatchWalker::new(input.clone());
        let got: Vec<Bytes> = walker.by_ref().map(|b| b.unwrap().into_bytes()).collect();
        let mut end = 0;
        let mut expected = Vec::new();
        for b in batches {
            if end + b.len() > cut {
                break;
            }
            expected.push(b.clone());
            end += b.len();
        }
        assert_eq!(got, expected, "cut at {cut}");
        assert_eq!(walker.remainder(), &input.slice(end..), "cut at {cut}");
    }

    #[test]
    fn record_set_cut_at_every_position() {
        let (all, batches) = sample_set();
        for cut in 0..=all.len() {
            check_cut(&all, &batches, cut);
        }
    }

    fn arb_batch(base: i64) -> impl Strategy<Value = (BatchBuilder, Vec<OwnedRecord>)> {
        let record = (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        );
        (
            any::<i32>(),
            0i16..0x80,
            any::<i64>(),
            any::<i64>(),
            proptest::collection::vec(record, 0..5),
            0i32..1000,
            (any::<i64>(), any::<i16>(), any::<i32>()),
        )
            .prop_map(move |(epoch, attrs, ts, max_ts, records, gap, producer)| {
                let builder = BatchBuilder::new(base)
                    .leader_epoch(epoch)
                    .attributes(attrs)
                    .timestamp(ts)
                    .max_timestamp(max_ts)
                    .last_offset_delta(records.len() as i32 + gap)
                    .producer(producer.0, producer.1, producer.2);
                (builder, records)
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let bytes = Bytes::from(data);
            if let Ok(batch) = RecordBatch::parse(bytes.clone()) {
                let _ = (batch.last_offset(), batch.next_offset(), batch.control_type(), batch.validate_crc());
            }
            let mut walker = BatchWalker::new(bytes.clone());
            let mut consumed = 0;
            for item in walker.by_ref() {
                match item {
                    Ok(batch) => {
                        consumed += batch.len();
                        let _ = (batch.control_type(), batch.compute_crc(), batch.next_offset());
                    }
                    Err(_) => break,
                }
            }
            prop_assert_eq!(consumed + walker.remainder().len(), bytes.len());
        }

        #[test]
        fn built_batches_round_trip_fields(base in any::<i64>(), (builder, records) in arb_batch(0)) {
            let refs: Vec<RecordRef<'_>> =
                records.iter().map(|(k, v)| (k.as_deref(), v.as_deref())).collect();
            let builder = BatchBuilder { base_offset: base, ..builder.records(&refs) };
            let bytes = builder.build();
            let batch = RecordBatch::parse(bytes.clone()).unwrap();
            prop_assert_eq!(batch.base_offset(), base);
            prop_assert_eq!(batch.partition_leader_epoch(), builder.leader_epoch);
            prop_assert_eq!(batch.attributes(), builder.attributes);
            prop_assert_eq!(batch.base_timestamp(), builder.timestamp);
            prop_assert_eq!(batch.max_timestamp(), builder.max_timestamp.unwrap());
            prop_assert_eq!(batch.last_offset_delta(), builder.last_offset_delta.unwrap());
            prop_assert_eq!(batch.producer_id(), builder.producer.0);
            prop_assert_eq!(batch.producer_epoch(), builder.producer.1);
            prop_assert_eq!(batch.base_sequence(), builder.producer.2);
            prop_assert_eq!(batch.record_count(), records.len() as i32);
            prop_assert!(batch.validate_crc().is_ok());
            prop_assert_eq!(batch.into_bytes(), bytes);
        }

        #[test]
        fn random_record_sets_cut_anywhere(
            sizes in proptest::collection::vec(0usize..4, 1..6),
            cut_seed in any::<prop::sample::Index>(),
        ) {
            let mut batches = Vec::new();
            let mut offset = 0;
            for n in sizes {
                let records = vec![(Some(&b"key"[..]), Some(&b"value"[..])); n];
                batches.push(build_batch(offset, 0, &records, 0));
                offset += n.max(1) as i64;
            }
            let all: Bytes = batches.concat().into();
            check_cut(&all, &batches, cut_seed.index(all.len() + 1));
        }
    }
}
