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
    bad_magic[16] = 3;
    assert!(matches!(
        RecordBatch::parse(bad_magic.freeze()),
        Err(BatchError::BadMagic { magic: 3, .. })
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
    bytes[batches[0].len() + 16] = 0xff;
    let mut walker = BatchWalker::new(bytes.freeze());
    assert!(walker.next().unwrap().is_ok());
    assert!(matches!(
        walker.next(),
        Some(Err(BatchError::BadMagic {
            base_offset: 2,
            magic: -1
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
pub(super) fn check_cut(all: &Bytes, batches: &[Bytes], cut: usize) {
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

proptest! {
    /// The fast CRC-32C is the reference one for every length and alignment, including
    /// the short tails and unaligned starts a batch's attributes offset makes.
    #[test]
    fn the_fast_crc32c_is_the_reference_crc32c(
        bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        skip in 0usize..64,
    ) {
        let part = &bytes[skip.min(bytes.len())..];
        prop_assert_eq!(crc32c(part), ::crc32c::crc32c(part));
    }
}
