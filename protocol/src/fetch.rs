//! Zero-copy Fetch response encoder, the serving hot path.
//!
//! kafka-protocol's `FetchResponse::encode` copies every record byte into the output buffer.
//! Here the small fields are written into a few header buffers and each stored record chunk
//! becomes its own chunk of a [`ChunkList`], so a response is sent with one vectored write
//! and record data is never copied. The byte layout is Kafka's `FetchResponse` schema,
//! pinned against `FetchResponse::encode` for every version by the tests in `fetch_tests.rs`.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset as FetchEpochEndOffset, FetchableTopicResponse,
    PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::{Message, StrBytes};
pub use uuid::Uuid;

pub use crate::chunk_list::ChunkList;
use crate::encode::{frame_size, EncodeError};

/// First Fetch version with flexible encoding (compact lengths, tagged fields).
const FLEXIBLE_FROM: i16 = 12;
/// First Fetch version that names topics by id only.
const TOPIC_ID_FROM: i16 = 13;

/// A Fetch response to encode. Mirrors `FetchResponse` with records as stored chunks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchResponseParts {
    pub throttle_time_ms: i32,
    /// v7+; must be 0 below.
    pub error_code: i16,
    /// v7+ (KIP-227); must be 0 below. shadowlink answers 0 to decline sessions.
    pub session_id: i32,
    pub topics: Vec<FetchTopicParts>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchTopicParts {
    /// Sent up to v12.
    pub name: String,
    /// Sent from v13.
    pub topic_id: Uuid,
    pub partitions: Vec<FetchPartitionParts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchPartitionParts {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    /// Always set it: librdkafka treats only -1 as "use the high watermark".
    pub last_stable_offset: i64,
    /// Sent from v5.
    pub log_start_offset: i64,
    /// `(producer_id, first_offset)` per aborted transaction overlapping the records.
    pub aborted_transactions: Vec<(i64, i64)>,
    /// v11+; must be -1 below.
    pub preferred_read_replica: i32,
    /// Stored record batches, concatenated on the wire. Empty means a zero-length record
    /// set, never null: librdkafka rejects a -1 MessageSetSize.
    pub records: Vec<Bytes>,
    /// v12+ (tagged field 0): `(epoch, end_offset)` where the fetcher's log stops
    /// agreeing with this one, given its last fetched epoch (KIP-320).
    pub diverging_epoch: Option<(i32, i64)>,
}

impl Default for FetchPartitionParts {
    /// The defaults of kafka-protocol's `PartitionData`.
    fn default() -> Self {
        Self {
            partition_index: 0,
            error_code: 0,
            high_watermark: 0,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: Vec::new(),
            preferred_read_replica: -1,
            records: Vec::new(),
            diverging_epoch: None,
        }
    }
}

/// Encodes a complete Fetch response frame (size prefix, response header, body) as chunks.
///
/// The first chunk holds the size prefix and response header; every non-empty record
/// chunk is a chunk of its own, shared with the caller's `Bytes` rather than copied.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    parts: FetchResponseParts,
) -> Result<ChunkList, EncodeError> {
    let range = <FetchResponse as Message>::VERSIONS;
    if version < range.min || version > range.max {
        return Err(EncodeError::UnsupportedVersion {
            api_key: ApiKey::Fetch,
            version,
        });
    }
    let mut w = Writer::new(version, estimate_header_bytes(&parts));
    w.buf.put_i32(0); // size prefix, patched in `finish`
    w.buf.put_i32(correlation_id);
    w.tags();
    w.buf.put_i32(parts.throttle_time_ms);
    if version >= 7 {
        w.buf.put_i16(parts.error_code);
        w.buf.put_i32(parts.session_id);
    } else if parts.error_code != 0 || parts.session_id != 0 {
        return Err(w.unavailable("error_code/session_id"));
    }
    w.array_len("topics", parts.topics.len())?;
    for topic in &parts.topics {
        w.topic(topic)?;
    }
    w.tags();
    w.finish()
}

/// Room for every non-record byte, so the header buffer is allocated once.
fn estimate_header_bytes(parts: &FetchResponseParts) -> usize {
    let per_partition = |p: &FetchPartitionParts| 64 + 17 * p.aborted_transactions.len();
    32 + parts
        .topics
        .iter()
        .map(|t| 32 + t.name.len() + t.partitions.iter().map(per_partition).sum::<usize>())
        .sum::<usize>()
}

struct Writer {
    version: i16,
    /// Chunks finished so far, still mutable so the size prefix can be patched last.
    done: Vec<Piece>,
    buf: BytesMut,
}

enum Piece {
    Small(BytesMut),
    Records(Bytes),
}

impl Writer {
    fn new(version: i16, capacity: usize) -> Self {
        Self {
            version,
            done: Vec::new(),
            buf: BytesMut::with_capacity(capacity),
        }
    }

    fn flexible(&self) -> bool {
        self.version >= FLEXIBLE_FROM
    }

    fn unavailable(&self, field: &'static str) -> EncodeError {
        EncodeError::FieldUnavailable {
            api_key: ApiKey::Fetch,
            version: self.version,
            field,
        }
    }

    /// An empty tagged-field section, present only in flexible versions.
    fn tags(&mut self) {
        if self.flexible() {
            self.buf.put_u8(0);
        }
    }

    fn array_len(&mut self, field: &'static str, len: usize) -> Result<(), EncodeError> {
        if self.flexible() {
            let n = u32::try_from(len).ok().and_then(|n| n.checked_add(1));
            put_uvarint(&mut self.buf, n.ok_or(EncodeError::TooLong { field, len })?);
        } else {
            self.buf
                .put_i32(i32::try_from(len).map_err(|_| EncodeError::TooLong { field, len })?);
        }
        Ok(())
    }

    fn topic(&mut self, topic: &FetchTopicParts) -> Result<(), EncodeError> {
        if self.version < TOPIC_ID_FROM {
            let name = topic.name.as_bytes();
            if self.flexible() {
                self.array_len("topic name", name.len())?;
            } else {
                let len = i16::try_from(name.len()).map_err(|_| EncodeError::TooLong {
                    field: "topic name",
                    len: name.len(),
                })?;
                self.buf.put_i16(len);
            }
            self.buf.put_slice(name);
        } else {
            self.buf.put_slice(topic.topic_id.as_bytes());
        }
        self.array_len("partitions", topic.partitions.len())?;
        for partition in &topic.partitions {
            self.partition(partition)?;
        }
        self.tags();
        Ok(())
    }

    fn partition(&mut self, p: &FetchPartitionParts) -> Result<(), EncodeError> {
        self.buf.put_i32(p.partition_index);
        self.buf.put_i16(p.error_code);
        self.buf.put_i64(p.high_watermark);
        self.buf.put_i64(p.last_stable_offset);
        if self.version >= 5 {
            self.buf.put_i64(p.log_start_offset);
        }
        self.array_len("aborted_transactions", p.aborted_transactions.len())?;
        for &(producer_id, first_offset) in &p.aborted_transactions {
            self.buf.put_i64(producer_id);
            self.buf.put_i64(first_offset);
            self.tags();
        }
        if self.version >= 11 {
            self.buf.put_i32(p.preferred_read_replica);
        } else if p.preferred_read_replica != -1 {
            return Err(self.unavailable("preferred_read_replica"));
        }
        let records_len: usize = p.records.iter().map(Bytes::len).sum();
        let too_long = || EncodeError::TooLong {
            field: "records",
            len: records_len,
        };
        if self.flexible() {
            self.array_len("records", records_len)?;
        } else {
            self.buf
                .put_i32(i32::try_from(records_len).map_err(|_| too_long())?);
        }
        for chunk in p.records.iter().filter(|c| !c.is_empty()) {
            self.push_records(chunk.clone());
        }
        match (p.diverging_epoch, self.flexible()) {
            (None, _) => self.tags(),
            (Some(diverging), true) => self.diverging_epoch(diverging),
            (Some(_), false) => return Err(self.unavailable("diverging_epoch")),
        }
        Ok(())
    }

    /// The partition's tagged fields holding only DivergingEpoch (tag 0): an
    /// `EpochEndOffset` of epoch, end offset and its own empty tagged fields.
    fn diverging_epoch(&mut self, (epoch, end_offset): (i32, i64)) {
        const DIVERGING_EPOCH_TAG: u32 = 0;
        const SIZE: u32 = 4 + 8 + 1;
        put_uvarint(&mut self.buf, 1);
        put_uvarint(&mut self.buf, DIVERGING_EPOCH_TAG);
        put_uvarint(&mut self.buf, SIZE);
        self.buf.put_i32(epoch);
        self.buf.put_i64(end_offset);
        self.buf.put_u8(0);
    }

    fn push_records(&mut self, chunk: Bytes) {
        if !self.buf.is_empty() {
            self.done.push(Piece::Small(self.buf.split()));
        }
        self.done.push(Piece::Records(chunk));
    }

    fn finish(mut self) -> Result<ChunkList, EncodeError> {
        if !self.buf.is_empty() {
            self.done.push(Piece::Small(self.buf.split()));
        }
        let total: usize = self.done.iter().map(Piece::len).sum();
        let prefix = frame_size(total - 4)?.to_be_bytes();
        // The first piece is always the header buffer: it holds at least prefix + corr id.
        if let Some(Piece::Small(first)) = self.done.first_mut() {
            first[..4].copy_from_slice(&prefix);
        }
        Ok(self.done.into_iter().map(Piece::freeze).collect())
    }
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Small(b) => b.len(),
            Piece::Records(b) => b.len(),
        }
    }

    fn freeze(self) -> Bytes {
        match self {
            Piece::Small(b) => b.freeze(),
            Piece::Records(b) => b,
        }
    }
}

fn put_uvarint(buf: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

impl FetchResponseParts {
    /// The same response as kafka-protocol's message type, with record chunks copied into
    /// one buffer per partition. For tests, benchmarks and non-hot paths.
    pub fn to_message(&self) -> FetchResponse {
        FetchResponse::default()
            .with_throttle_time_ms(self.throttle_time_ms)
            .with_error_code(self.error_code)
            .with_session_id(self.session_id)
            .with_responses(
                self.topics
                    .iter()
                    .map(FetchTopicParts::to_message)
                    .collect(),
            )
    }
}

impl FetchTopicParts {
    fn to_message(&self) -> FetchableTopicResponse {
        FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_string(self.name.clone())))
            .with_topic_id(self.topic_id)
            .with_partitions(
                self.partitions
                    .iter()
                    .map(FetchPartitionParts::to_message)
                    .collect(),
            )
    }
}

impl FetchPartitionParts {
    fn to_message(&self) -> PartitionData {
        let len = self.records.iter().map(Bytes::len).sum();
        let mut records = BytesMut::with_capacity(len);
        self.records
            .iter()
            .for_each(|c| records.extend_from_slice(c));
        let aborted = self.aborted_transactions.iter().map(|&(pid, first)| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(pid))
                .with_first_offset(first)
        });
        PartitionData::default()
            .with_partition_index(self.partition_index)
            .with_error_code(self.error_code)
            .with_high_watermark(self.high_watermark)
            .with_last_stable_offset(self.last_stable_offset)
            .with_log_start_offset(self.log_start_offset)
            .with_aborted_transactions(Some(aborted.collect()))
            .with_preferred_read_replica(BrokerId(self.preferred_read_replica))
            .with_records(Some(records.freeze()))
            .with_diverging_epoch(self.diverging_epoch.map_or_else(
                FetchEpochEndOffset::default,
                |(epoch, end_offset)| {
                    FetchEpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset)
                },
            ))
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
