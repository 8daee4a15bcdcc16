//! Zero-copy view of one entry of a record set, and a walker over a record set.
//!
//! An entry is a v2 (magic 2) record batch or a legacy v0/v1 (magic 0/1) message, which
//! long-lived topics still hold ahead of the v2 batches written after an upgrade in place.
//! Record data stays opaque: a [`RecordBatch`] is one complete entry held as a `Bytes`
//! slice of whatever buffer it arrived in, and every accessor reads a fixed header field.
//! Nothing here decompresses or re-encodes, so an entry can be stored and served
//! byte-identical. v2 layout (all big-endian, offsets from the batch start):
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
//!
//! Legacy layout: the length field and the magic byte sit where they do in v2, so one
//! framing check covers every entry.
//!
//! | off | size | field                                      |
//! |-----|------|--------------------------------------------|
//! | 0   | 8    | offset                                     |
//! | 8   | 4    | messageSize                                |
//! | 12  | 4    | crc (CRC-32 IEEE of 16..)                  |
//! | 16  | 1    | magic                                      |
//! | 17  | 1    | attributes (codec 0-2, v1 timestamp type 3)|
//! | 18  | 8    | timestamp (v1 only)                        |
//! | ..  | 4+K  | key                                        |
//! | ..  | 4+V  | value                                      |
//!
//! A compressed legacy message is a wrapper whose value is a compressed message set, and
//! its offset is that of its *last* inner message (v1 inner offsets are relative, v0
//! absolute). Its first offset is only known after decompressing, which nothing on the
//! data path does. So the view reports a legacy entry's offset as its base offset with a
//! lastOffsetDelta of 0: `last_offset()` and `next_offset()` are exact, and the entry's
//! records lie in `(previous entry's last offset, base_offset()]`. That is all storage
//! (offsets increasing, indexes keyed by base offset), the link (skip entries whose last
//! offset is below the fetch offset) and serving (the first entry whose last offset
//! reaches the fetch offset) rely on; Kafka reads legacy entries the same way.

use bytes::Bytes;

/// Size of the v2 batch header, i.e. the offset at which records start.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength` (or `messageSize`) counts: offset (8) + length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal v2 `batchLength`: the header minus the log overhead.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// The v2 record batch format (Kafka 0.11+, KIP-98).
pub const CURRENT_MAGIC: i8 = 2;
/// The v0 message format (Kafka 0.8 to 0.9).
pub const MAGIC_V0: i8 = 0;
/// The v1 message format (Kafka 0.10, KIP-32 timestamps).
pub const MAGIC_V1: i8 = 1;
/// Smallest legal v0 `messageSize`: crc (4), magic, attributes, key and value lengths (4 each).
pub const MIN_V0_MESSAGE_SIZE: i32 = 14;
/// Smallest legal v1 `messageSize`: v0's plus the timestamp (8).
pub const MIN_V1_MESSAGE_SIZE: i32 = 22;
/// Smallest legal length field of any entry, checkable before the magic byte arrives.
pub const MIN_ENTRY_LENGTH: i32 = MIN_V0_MESSAGE_SIZE;

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

const LEGACY_CRC_OFFSET: usize = 12;
const LEGACY_ATTRIBUTES_OFFSET: usize = 17;
const LEGACY_TIMESTAMP_OFFSET: usize = 18;

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
    /// A v0 message, which has no timestamp.
    NoTimestamp,
}

/// Type of the single record in a control batch (its key's `type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    Abort,
    Commit,
}

/// Why bytes are not exactly one well-formed entry (v2 batch or legacy message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error(
        "the batch is truncated: {needed} bytes are needed but only {available} are available"
    )]
    Truncated { needed: usize, available: usize },
    #[error(
        "the batch at offset {base_offset} has magic {magic}, \
         but only magic 0, 1 and 2 are supported"
    )]
    BadMagic { base_offset: i64, magic: i8 },
    #[error(
        "the batch at offset {base_offset} declares length {batch_length}, \
         below the minimum of {minimum}"
    )]
    BadLength {
        base_offset: i64,
        batch_length: i32,
        minimum: i32,
    },
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

/// Exactly one complete entry of a record set, a v2 record batch or a legacy v0/v1
/// message, as an immutable zero-copy byte slice.
///
/// Construction checks the length framing and magic against that magic's minimum length,
/// so every accessor can read its fixed-offset header field without bounds checks
/// failing. Accessors answer for legacy entries as the module documentation describes:
/// the offset is the base offset, lastOffsetDelta is 0, and fields the format lacks
/// read as Kafka's "none" values (-1).
#[derive(Clone, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

impl std::fmt::Debug for RecordBatch {
    // Record payloads are opaque and may be large; show the header only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("magic", &self.magic())
            .field("base_offset", &self.base_offset())
            .field("last_offset", &self.last_offset())
            .field("len", &self.len())
            .field("partition_leader_epoch", &self.partition_leader_epoch())
            .field("record_count", &self.record_count())
            .field("attributes", &self.attributes())
            .finish()
    }
}

/// The smallest legal length field for `magic`, or `None` for an unknown magic.
fn min_length(magic: i8) -> Option<i32> {
    match magic {
        MAGIC_V0 => Some(MIN_V0_MESSAGE_SIZE),
        MAGIC_V1 => Some(MIN_V1_MESSAGE_SIZE),
        CURRENT_MAGIC => Some(MIN_BATCH_LENGTH),
        _ => None,
    }
}

/// Checks the framing of the entry starting `bytes` and returns its total length.
/// `bytes` must hold at least [`LOG_OVERHEAD`] bytes. The magic byte, and the minimum
/// length it implies, are checked as soon as they have arrived, so a partial entry with
/// a hopeless header is refused without waiting for the rest.
fn checked_entry_len(bytes: &[u8]) -> Result<usize, BatchError> {
    let base_offset = read_i64(bytes, 0);
    let batch_length = read_i32(bytes, BATCH_LENGTH_OFFSET);
    let bad_length = |minimum| BatchError::BadLength {
        base_offset,
        batch_length,
        minimum,
    };
    if batch_length < MIN_ENTRY_LENGTH {
        return Err(bad_length(MIN_ENTRY_LENGTH));
    }
    if let Some(&byte) = bytes.get(MAGIC_OFFSET) {
        let magic = byte as i8;
        let minimum = min_length(magic).ok_or(BatchError::BadMagic { base_offset, magic })?;
        if batch_length < minimum {
            return Err(bad_length(minimum));
        }
    }
    // Non-negative i32 always fits in usize on supported (>= 32-bit) targets.
    Ok(LOG_OVERHEAD + batch_length as usize)
}

impl RecordBatch {
    /// Views `bytes` as exactly one entry. Checks framing and magic, not the CRC
    /// (see [`RecordBatch::validate_crc`]), because serving paths never need to hash.
    pub fn parse(bytes: Bytes) -> Result<RecordBatch, BatchError> {
        if bytes.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: LOG_OVERHEAD,
                available: bytes.len(),
            });
        }
        let total = checked_entry_len(&bytes)?;
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

    /// The first offset of a v2 batch; a legacy entry's offset (see the module docs).
    pub fn base_offset(&self) -> i64 {
        read_i64(&self.bytes, 0)
    }

    /// `batchLength` of a v2 batch, `messageSize` of a legacy message.
    pub fn batch_length(&self) -> i32 {
        read_i32(&self.bytes, BATCH_LENGTH_OFFSET)
    }

    /// Whether this is a v0 or v1 message rather than a v2 batch.
    pub fn is_legacy(&self) -> bool {
        self.magic() != CURRENT_MAGIC
    }

    /// -1 for legacy entries: leader epochs arrived with v2 (KIP-101).
    pub fn partition_leader_epoch(&self) -> i32 {
        if self.is_legacy() {
            return -1;
        }
        read_i32(&self.bytes, PARTITION_LEADER_EPOCH_OFFSET)
    }

    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_OFFSET] as i8
    }

    pub fn crc(&self) -> u32 {
        let at = if self.is_legacy() {
            LEGACY_CRC_OFFSET
        } else {
            CRC_OFFSET
        };
        read_i32(&self.bytes, at) as u32
    }

    /// The attributes as stored; a legacy message's single byte is widened unsigned.
    pub fn attributes(&self) -> i16 {
        if self.is_legacy() {
            return i16::from(self.bytes[LEGACY_ATTRIBUTES_OFFSET]);
        }
        read_i16(&self.bytes, ATTRIBUTES_OFFSET)
    }

    pub fn compression(&self) -> Compression {
        Compression::from_bits((self.attributes() & COMPRESSION_MASK) as u8)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.magic() == MAGIC_V0 {
            TimestampType::NoTimestamp
        } else if self.attributes() & TIMESTAMP_TYPE_FLAG != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Bits 4 and up of a legacy message's attributes are reserved, so the flags below
    /// are false for legacy entries whatever those bits hold.
    fn v2_flag(&self, flag: i16) -> bool {
        !self.is_legacy() && self.attributes() & flag != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.v2_flag(TRANSACTIONAL_FLAG)
    }

    pub fn is_control(&self) -> bool {
        self.v2_flag(CONTROL_FLAG)
    }

    pub fn has_delete_horizon(&self) -> bool {
        self.v2_flag(DELETE_HORIZON_FLAG)
    }

    /// 0 for a legacy entry, whose base offset is already its last offset.
    pub fn last_offset_delta(&self) -> i32 {
        if self.is_legacy() {
            return 0;
        }
        read_i32(&self.bytes, LAST_OFFSET_DELTA_OFFSET)
    }

    /// A v1 message's timestamp (a compressed wrapper's is its inner maximum, or the
    /// log append time); -1 for v0, which has none.
    pub fn base_timestamp(&self) -> i64 {
        match self.magic() {
            MAGIC_V0 => -1,
            MAGIC_V1 => read_i64(&self.bytes, LEGACY_TIMESTAMP_OFFSET),
            _ => read_i64(&self.bytes, BASE_TIMESTAMP_OFFSET),
        }
    }

    /// Like [`RecordBatch::base_timestamp`] for legacy entries, which carry one timestamp.
    pub fn max_timestamp(&self) -> i64 {
        if self.is_legacy() {
            return self.base_timestamp();
        }
        read_i64(&self.bytes, MAX_TIMESTAMP_OFFSET)
    }

    /// -1 (no producer) for legacy entries, which predate idempotence.
    pub fn producer_id(&self) -> i64 {
        if self.is_legacy() {
            return -1;
        }
        read_i64(&self.bytes, PRODUCER_ID_OFFSET)
    }

    pub fn producer_epoch(&self) -> i16 {
        if self.is_legacy() {
            return -1;
        }
        read_i16(&self.bytes, PRODUCER_EPOCH_OFFSET)
    }

    pub fn base_sequence(&self) -> i32 {
        if self.is_legacy() {
            return -1;
        }
        read_i32(&self.bytes, BASE_SEQUENCE_OFFSET)
    }

    /// `recordsCount` of a v2 batch. A legacy message counts 1 when uncompressed; a
    /// compressed wrapper reports -1, since counting its messages means decompressing.
    pub fn record_count(&self) -> i32 {
        if !self.is_legacy() {
            read_i32(&self.bytes, RECORDS_COUNT_OFFSET)
        } else if self.compression() == Compression::None {
            1
        } else {
            -1
        }
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

    /// CRC-32C from `attributes` to the end of a v2 batch; CRC-32 (IEEE) from `magic` to
    /// the end of a legacy message.
    pub fn compute_crc(&self) -> u32 {
        if self.is_legacy() {
            crc32fast::hash(&self.bytes[MAGIC_OFFSET..])
        } else {
            crc32c(&self.bytes[ATTRIBUTES_OFFSET..])
        }
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

/// Iterates the complete entries of a record set: v2 batches and legacy messages, in any
/// mix, concatenated.
///
/// Each entry is a `Bytes::slice` of the input. Iteration ends when fewer than
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
        let total = match checked_entry_len(&self.rest) {
            Ok(total) => total,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if self.rest.len() < total {
            return None;
        }
        let bytes = self.rest.split_to(total);
        Some(Ok(RecordBatch { bytes }))
    }
}

/// [`RecordBatch::last_offset`] of the stored entry that `header` begins, read from its
/// header alone, or `None` when `header` is too short to hold what is needed or the magic
/// byte is unknown. For stepping over entries already checked when they were stored,
/// without viewing each as a [`RecordBatch`].
pub fn peek_last_offset(header: &[u8]) -> Option<i64> {
    let magic = *header.get(MAGIC_OFFSET)? as i8;
    let base_offset = read_i64(header.get(..LOG_OVERHEAD)?, 0);
    let delta = match magic {
        CURRENT_MAGIC => read_i32(
            header.get(..LAST_OFFSET_DELTA_OFFSET + 4)?,
            LAST_OFFSET_DELTA_OFFSET,
        ),
        MAGIC_V0 | MAGIC_V1 => 0,
        _ => return None,
    };
    Some(base_offset.saturating_add(i64::from(delta)))
}

/// CRC-32C (Castagnoli), the checksum of a v2 batch from its attributes to its end.
/// `crc-fast` folds by carry-less multiplication, with AVX-512 where the CPU has it:
/// about twice the speed of the `crc32` instruction loop on 16 KiB and larger inputs
/// (BENCHMARKS.md, "CRC-32C by carry-less multiplication").
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
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

mod marker;
pub use marker::EndTxnMarker;

/// Hand-built batches for tests in this and other crates. Not part of the stable API.
#[doc(hidden)]
pub mod testing;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod legacy_tests;
