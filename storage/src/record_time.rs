//! Record-level timestamps inside one stored batch, for ListOffsets by time and KIP-734
//! max timestamp. The batch header only carries its maximum, so the exact record is
//! found by decoding a scratch copy of the records (decompressing them if needed); the
//! stored bytes are never changed.

use kafka_protocol::records::RecordBatchDecoder;
use shadowlink_protocol::batch::{RecordBatch, TimestampType};

/// `(offset, timestamp)` of every record in `batch`, in offset order.
fn record_times(batch: &RecordBatch) -> Result<Vec<(i64, i64)>, String> {
    // A legacy (v0/v1) entry is one message, or a compressed wrapper whose own offset
    // and timestamp are those of its last inner message and its newest.
    if batch.is_legacy() {
        return Ok(vec![(batch.last_offset(), batch.max_timestamp())]);
    }
    let mut bytes = batch.as_bytes().clone();
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| e.to_string())?;
    // With LogAppendTime the broker stamped the batch, not the records: every record's
    // timestamp is the batch's max timestamp, whatever its delta says.
    let append_time = batch.timestamp_type() == TimestampType::LogAppendTime;
    Ok(set
        .records
        .iter()
        .map(|r| match append_time {
            true => (r.offset, batch.max_timestamp()),
            false => (r.offset, r.timestamp),
        })
        .collect())
}

/// The first record at offset `>= min_offset` whose timestamp is `>= target`.
pub(crate) fn first_at_or_after(
    batch: &RecordBatch,
    target: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, String> {
    Ok(record_times(batch)?
        .into_iter()
        .find(|&(offset, ts)| offset >= min_offset && ts >= target))
}

/// The record at offset `>= min_offset` with the largest timestamp, the earliest on ties.
pub(crate) fn max_record(
    batch: &RecordBatch,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, String> {
    let mut best: Option<(i64, i64)> = None;
    for (offset, ts) in record_times(batch)? {
        if offset >= min_offset && best.is_none_or(|(_, b)| ts > b) {
            best = Some((offset, ts));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::records::Compression;
    use shadowlink_protocol::batch::testing::{build_stamped_batch, BatchBuilder};

    fn encoded(stamps: &[i64], compression: Compression) -> RecordBatch {
        let records: Vec<(i64, i64)> = (100..).zip(stamps.iter().copied()).collect();
        let bytes = build_stamped_batch(&records, 3, compression, |_| Bytes::from_static(b"v"));
        RecordBatch::parse(bytes).unwrap()
    }

    #[test]
    fn finds_the_exact_record_in_every_codec() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for codec in codecs {
            let batch = encoded(&[10, 30, 20, 40, 40], codec);
            assert_eq!(first_at_or_after(&batch, 15, 0), Ok(Some((101, 30))));
            assert_eq!(first_at_or_after(&batch, 15, 102), Ok(Some((102, 20))));
            assert_eq!(first_at_or_after(&batch, 25, 102), Ok(Some((103, 40))));
            assert_eq!(first_at_or_after(&batch, 41, 0), Ok(None));
            assert_eq!(max_record(&batch, 0), Ok(Some((103, 40))));
            assert_eq!(max_record(&batch, 104), Ok(Some((104, 40))));
            assert_eq!(max_record(&batch, 105), Ok(None));
        }
    }

    #[test]
    fn log_append_time_stamps_every_record_with_the_batch_maximum() {
        let batch = BatchBuilder::new(7)
            .timestamp(5)
            .max_timestamp(900)
            .attributes(0x08)
            .records(&[(None, Some(b"a")), (None, Some(b"b"))])
            .build();
        let batch = RecordBatch::parse(batch).unwrap();
        assert_eq!(first_at_or_after(&batch, 100, 8), Ok(Some((8, 900))));
        assert_eq!(max_record(&batch, 0), Ok(Some((7, 900))));
    }

    #[test]
    fn a_malformed_batch_is_an_error() {
        let mut raw = encoded(&[1, 2], Compression::None).as_bytes().to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        let batch = RecordBatch::parse(raw.into()).unwrap();
        assert!(first_at_or_after(&batch, 0, 0).is_err());
    }
}
