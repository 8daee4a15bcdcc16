//! The records inside one stored v2 batch, as raw byte ranges, and the rebuild of a
//! batch that lost some of them.
//!
//! A record's offset and timestamp are deltas from its batch's base offset and base
//! timestamp. A rebuilt batch keeps the original header (base offset, lastOffsetDelta,
//! both timestamps, producer id, epoch and base sequence, attributes, partition leader
//! epoch), so every surviving record's bytes are copied unchanged; only the record
//! count, the length, the CRC and, for a compressed batch, the compressed payload
//! differ. Kafka's cleaner rebuilds the same way (`MemoryRecords.filterTo`), keeping the
//! last offset so the producer's last sequence is unchanged.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use shadowlink_protocol::batch::{Compression, RecordBatch, BATCH_HEADER_LEN, LOG_OVERHEAD};

/// Byte offsets of the header fields the rebuild changes.
const LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const COUNT_AT: usize = 57;
const COMPRESSION_BITS: u8 = 0x07;

/// One record of a batch: its offset, key and whether its value is null, and its
/// bytes in the (decompressed) payload.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    pub(crate) offset: i64,
    pub(crate) key: Option<Bytes>,
    pub(crate) is_tombstone: bool,
    /// The whole record, its length varint included.
    pub(crate) bytes: Bytes,
}

/// The records of a v2 batch, in order. An error names what is malformed.
pub(crate) fn records(batch: &RecordBatch) -> Result<Vec<RawRecord>, String> {
    let payload = payload(batch)?;
    let count = usize::try_from(batch.record_count()).map_err(|_| "negative record count")?;
    let mut reader = Reader {
        data: &payload,
        at: 0,
    };
    let mut out = Vec::with_capacity(count.min(payload.len()));
    for _ in 0..count {
        let start = reader.at;
        let length = usize::try_from(reader.varint()?).map_err(|_| "negative record length")?;
        let body_start = reader.at;
        let end = body_start
            .checked_add(length)
            .filter(|&e| e <= payload.len())
            .ok_or("a record is cut off")?;
        reader.skip(1)?; // attributes
        reader.varint()?; // timestamp delta
        let offset_delta = reader.varint()?;
        let key = reader.bytes(&payload)?;
        let value_len = reader.varint()?;
        out.push(RawRecord {
            offset: batch.base_offset() + offset_delta,
            key,
            is_tombstone: value_len < 0,
            bytes: payload.slice(start..end),
        });
        reader.at = end;
    }
    Ok(out)
}

/// The uncompressed record payload of a v2 batch.
fn payload(batch: &RecordBatch) -> Result<Bytes, String> {
    let mut body = batch.as_bytes().slice(BATCH_HEADER_LEN..);
    let take = |b: &mut Bytes| Ok(std::mem::take(b));
    let inflated = match batch.compression() {
        Compression::None => return Ok(body),
        Compression::Gzip => Gzip::decompress(&mut body, take),
        Compression::Snappy => Snappy::decompress(&mut body, take),
        Compression::Lz4 => Lz4::decompress(&mut body, take),
        Compression::Zstd => Zstd::decompress(&mut body, take),
        Compression::Unknown(codec) => return Err(format!("unknown compression codec {codec}")),
    };
    inflated.map_err(|e| format!("cannot decompress the records: {e}"))
}

fn compress(codec: Compression, raw: &[u8]) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    let put = |b: &mut BytesMut| {
        b.put_slice(raw);
        Ok(())
    };
    let done = match codec {
        Compression::None => {
            out.put_slice(raw);
            Ok(())
        }
        Compression::Gzip => Gzip::compress(&mut out, put),
        Compression::Snappy => Snappy::compress(&mut out, put),
        Compression::Lz4 => Lz4::compress(&mut out, put),
        Compression::Zstd => Zstd::compress(&mut out, put),
        Compression::Unknown(codec) => return Err(format!("unknown compression codec {codec}")),
    };
    done.map_err(|e| format!("cannot compress the records: {e}"))?;
    Ok(out.freeze())
}

/// `batch` with only `kept` of its records, in the same codec. With none kept, the
/// header alone with zero records and no codec, as Kafka writes an empty batch it
/// retains for its producer's state (`DefaultRecordBatch.writeEmptyHeader`).
pub(crate) fn rebuild(batch: &RecordBatch, kept: &[RawRecord]) -> Result<Bytes, String> {
    let original = batch.as_bytes();
    let mut raw = BytesMut::with_capacity(kept.iter().map(|r| r.bytes.len()).sum());
    for record in kept {
        raw.put_slice(&record.bytes);
    }
    let codec = match kept.is_empty() {
        true => Compression::None,
        false => batch.compression(),
    };
    let body = compress(codec, &raw)?;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + body.len());
    out.put_slice(&original[..BATCH_HEADER_LEN]);
    out.put_slice(&body);
    let length = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| "batch too large")?;
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    out[COUNT_AT..COUNT_AT + 4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    if kept.is_empty() {
        out[ATTRIBUTES_AT + 1] &= !COMPRESSION_BITS;
    }
    let crc = shadowlink_protocol::batch::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.at + n > self.data.len() {
            return Err("a record is cut off".into());
        }
        self.at += n;
        Ok(())
    }

    /// A zigzag varint (Kafka's varint and varlong share the encoding).
    fn varint(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.data.get(self.at).ok_or("a varint is cut off")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("a varint is too long".into())
    }

    /// A length-prefixed byte string, `None` for length -1.
    fn bytes(&mut self, whole: &Bytes) -> Result<Option<Bytes>, String> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let start = self.at;
        self.skip(len as usize)?;
        Ok(Some(whole.slice(start..self.at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink_protocol::batch::testing::{build_stamped_batch, BatchBuilder};

    #[test]
    fn reads_keys_tombstones_and_offsets() {
        let batch = BatchBuilder::new(40)
            .producer(7, 1, 10)
            .records(&[
                (Some(b"a"), Some(b"1")),
                (None, Some(b"2")),
                (Some(b"b"), None),
            ])
            .build();
        let batch = RecordBatch::parse(batch).unwrap();
        let records = records(&batch).unwrap();
        let seen: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    r.key.as_deref().map(<[u8]>::to_vec),
                    r.is_tombstone,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (40, Some(b"a".to_vec()), false),
                (41, None, false),
                (42, Some(b"b".to_vec()), true)
            ]
        );
    }

    #[test]
    fn a_rebuilt_batch_keeps_its_header_and_the_survivors_bytes_in_every_codec() {
        use kafka_protocol::records::Compression as Codec;
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let stamps: Vec<(i64, i64)> = (100..105).map(|o| (o, 1000 + o)).collect();
            let bytes = build_stamped_batch(&stamps, 4, codec, |o| Bytes::from(o.to_string()));
            let batch = RecordBatch::parse(bytes).unwrap();
            let all = records(&batch).unwrap();
            let kept = vec![all[1].clone(), all[3].clone()];
            let rebuilt = RecordBatch::parse(rebuild(&batch, &kept).unwrap()).unwrap();
            rebuilt.validate_crc().unwrap();
            assert_eq!(rebuilt.compression(), batch.compression(), "{codec:?}");
            assert_eq!(rebuilt.base_offset(), 100);
            assert_eq!(rebuilt.last_offset(), 104);
            assert_eq!(rebuilt.base_timestamp(), batch.base_timestamp());
            assert_eq!(rebuilt.max_timestamp(), batch.max_timestamp());
            assert_eq!(rebuilt.partition_leader_epoch(), 4);
            assert_eq!(rebuilt.base_sequence(), batch.base_sequence());
            assert_eq!(rebuilt.record_count(), 2);
            let again = records(&rebuilt).unwrap();
            assert_eq!(
                again.iter().map(|r| r.offset).collect::<Vec<_>>(),
                [101, 103]
            );
            assert_eq!(again[0].bytes, kept[0].bytes);
            let decoded = kafka_protocol::records::RecordBatchDecoder::decode(
                &mut rebuilt.as_bytes().clone(),
            )
            .unwrap();
            let values: Vec<_> = decoded.records.iter().map(|r| r.value.clone()).collect();
            assert_eq!(values, [Some(Bytes::from("101")), Some(Bytes::from("103"))]);
        }
    }

    #[test]
    fn an_emptied_batch_is_a_header_without_codec() {
        let batch = BatchBuilder::new(5)
            .producer(3, 0, 0)
            .records(&[(Some(b"k"), Some(b"v"))])
            .build();
        let batch = RecordBatch::parse(batch).unwrap();
        let empty = RecordBatch::parse(rebuild(&batch, &[]).unwrap()).unwrap();
        empty.validate_crc().unwrap();
        assert_eq!(empty.len(), BATCH_HEADER_LEN);
        assert_eq!((empty.record_count(), empty.producer_id()), (0, 3));
        assert_eq!(empty.next_offset(), batch.next_offset());
    }

    #[test]
    fn a_malformed_record_is_an_error() {
        let mut raw = BatchBuilder::new(0)
            .records(&[(Some(b"key"), Some(b"v"))])
            .build()
            .to_vec();
        raw.truncate(raw.len() - 3);
        let len = (raw.len() - LOG_OVERHEAD) as i32;
        raw[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&len.to_be_bytes());
        let batch = RecordBatch::parse(raw.into()).unwrap();
        assert!(records(&batch).is_err());
    }
}
