//! Hand-built batches for tests in this and other crates. Not part of the stable API.

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
    BatchBuilder::new(base_offset)
        .leader_epoch(leader_epoch)
        .timestamp(timestamp)
        .producer(producer_id, 0, -1)
        .marker(commit)
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

    /// Sets the transactional attribute bit (0x10) that a transactional producer's
    /// batches carry.
    pub fn transactional(mut self) -> Self {
        self.attributes |= 0x10;
        self
    }

    /// Makes this an end-transaction marker: transactional and control bits, base
    /// sequence -1 and one control record (key `version 0, type`, ABORT = 0, COMMIT =
    /// 1; value `version 0, coordinator epoch 0`). Keeps the producer id and epoch.
    pub fn marker(mut self, commit: bool) -> Self {
        let key = [0u8, 0, 0, u8::from(commit)];
        let value = [0u8; 6];
        self.attributes |= 0x30;
        self.producer.2 = -1;
        self.records(&[(Some(&key[..]), Some(&value[..]))])
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
        let crc = super::crc32c(&buf[super::ATTRIBUTES_OFFSET..]);
        buf[super::CRC_OFFSET..super::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        buf.freeze()
    }
}

fn encode_record(out: &mut BytesMut, offset_delta: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
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

/// One uncompressed legacy message (`magic` 0 or 1) at `offset`, laid out as the protocol
/// guide gives it: offset, messageSize, crc, magic, attributes, timestamp (v1 only), key,
/// value, with the CRC-32 (IEEE) over magic to the end.
pub fn build_legacy_message(
    offset: i64,
    magic: i8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Bytes {
    encode_legacy(offset, magic, 0, timestamp, key, value)
}

/// A gzip-compressed legacy wrapper holding `records`, as a 0.10 producer (v1) or a 0.8
/// broker (v0) writes it. The wrapper's offset is `last_offset`, that of its last inner
/// message; inner offsets are relative (0..n) in v1 and absolute in v0. Inner message `i`
/// gets timestamp `timestamp + i`, and a v1 wrapper carries the largest (CreateTime).
pub fn build_gzip_wrapper(
    last_offset: i64,
    magic: i8,
    records: &[RecordRef<'_>],
    timestamp: i64,
) -> Bytes {
    let count = records.len() as i64;
    let mut inner = BytesMut::new();
    for (i, (key, value)) in records.iter().enumerate() {
        let i = i as i64;
        let offset = if magic == super::MAGIC_V0 {
            last_offset - count + 1 + i
        } else {
            i
        };
        inner.extend_from_slice(&encode_legacy(
            offset,
            magic,
            0,
            timestamp + i,
            *key,
            *value,
        ));
    }
    let compressed = gzip(&inner);
    let max_timestamp = timestamp + (count - 1).max(0);
    encode_legacy(
        last_offset,
        magic,
        1,
        max_timestamp,
        None,
        Some(&compressed),
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use kafka_protocol::compression::{Compressor, Gzip};
    let mut out = BytesMut::new();
    <Gzip as Compressor<BytesMut>>::compress(&mut out, |buf| {
        buf.extend_from_slice(data);
        Ok(())
    })
    .expect("gzip into memory does not fail");
    out.to_vec()
}

fn encode_legacy(
    offset: i64,
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i8(magic);
    body.put_i8(attributes);
    if magic == super::MAGIC_V1 {
        body.put_i64(timestamp);
    }
    for field in [key, value] {
        match field {
            None => body.put_i32(-1),
            Some(d) => {
                body.put_i32(d.len() as i32);
                body.extend_from_slice(d);
            }
        }
    }
    let mut buf = BytesMut::with_capacity(super::LOG_OVERHEAD + 4 + body.len());
    buf.put_i64(offset);
    buf.put_i32(4 + body.len() as i32);
    buf.put_u32(crc32fast::hash(&body));
    buf.extend_from_slice(&body);
    buf.freeze()
}

/// A v2 batch of one record per `(offset, timestamp)`, each valued `value(offset)`, in
/// leader epoch `epoch`, encoded (and compressed) by kafka-protocol's own encoder: for
/// tests that need per-record timestamps or a real codec.
pub fn build_stamped_batch(
    records: &[(i64, i64)],
    epoch: i32,
    compression: kafka_protocol::records::Compression,
    value: impl Fn(i64) -> Bytes,
) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, &(offset, timestamp))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: epoch,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: i as i32,
            timestamp,
            key: None,
            value: Some(value(offset)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodable records");
    buf.freeze()
}
