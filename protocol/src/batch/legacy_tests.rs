//! Legacy v0/v1 messages, alone and mixed with v2 batches in one record set.

use super::testing::{build_batch, build_gzip_wrapper, build_legacy_message, RecordRef};
use super::*;
use bytes::BytesMut;
use proptest::prelude::*;

/// A v0 message at offset 5 with key "k" and value "v", byte for byte from the protocol
/// guide; the CRC is zlib's CRC-32 of bytes 16.. (computed outside this crate).
const V0_FIXTURE: [u8; 28] = [
    0, 0, 0, 0, 0, 0, 0, 5, // offset
    0, 0, 0, 16, // messageSize
    0x1f, 0xec, 0xd7, 0x0a, // crc
    0, 0, // magic, attributes
    0, 0, 0, 1, b'k', // key
    0, 0, 0, 1, b'v', // value
];

/// A v1 message at offset 6, timestamp 1000, null key, value "vv".
const V1_FIXTURE: [u8; 36] = [
    0, 0, 0, 0, 0, 0, 0, 6, // offset
    0, 0, 0, 24, // messageSize
    0x5f, 0x28, 0x79, 0x47, // crc
    1, 0, // magic, attributes
    0, 0, 0, 0, 0, 0, 0x03, 0xe8, // timestamp
    0xff, 0xff, 0xff, 0xff, // null key
    0, 0, 0, 2, b'v', b'v', // value
];

fn mixed_set() -> (Bytes, Vec<Bytes>) {
    let records: [RecordRef<'_>; 3] = [
        (Some(b"a"), Some(b"1")),
        (None, Some(b"2")),
        (Some(b"c"), None),
    ];
    let entries = vec![
        build_legacy_message(0, MAGIC_V0, -1, Some(b"k0"), Some(b"v0")),
        build_gzip_wrapper(3, MAGIC_V0, &records, -1),
        build_legacy_message(4, MAGIC_V1, 500, None, Some(b"v4")),
        build_gzip_wrapper(7, MAGIC_V1, &records, 600),
        build_batch(8, 2, &[(Some(b"k8"), Some(b"v8")), (None, None)], 700),
    ];
    (entries.concat().into(), entries)
}

#[test]
fn the_builder_lays_out_v0_and_v1_as_the_protocol_guide() {
    let v0 = build_legacy_message(5, MAGIC_V0, -1, Some(b"k"), Some(b"v"));
    assert_eq!(&v0[..], &V0_FIXTURE[..]);
    let v1 = build_legacy_message(6, MAGIC_V1, 1000, None, Some(b"vv"));
    assert_eq!(&v1[..], &V1_FIXTURE[..]);
}

#[test]
fn a_v0_message_reads_as_a_one_offset_entry_without_epoch_or_timestamp() {
    let entry = RecordBatch::parse(Bytes::from_static(&V0_FIXTURE)).unwrap();
    assert!(entry.is_legacy());
    assert_eq!(entry.magic(), 0);
    assert_eq!(entry.len(), 28);
    assert_eq!(entry.batch_length(), 16);
    assert_eq!(entry.base_offset(), 5);
    assert_eq!(entry.last_offset_delta(), 0);
    assert_eq!((entry.last_offset(), entry.next_offset()), (5, 6));
    assert_eq!(entry.partition_leader_epoch(), -1);
    assert_eq!(entry.crc(), 0x1fec_d70a);
    assert!(entry.validate_crc().is_ok());
    assert_eq!(entry.compression(), Compression::None);
    assert_eq!(entry.timestamp_type(), TimestampType::NoTimestamp);
    assert_eq!((entry.base_timestamp(), entry.max_timestamp()), (-1, -1));
    assert_eq!(
        (
            entry.producer_id(),
            entry.producer_epoch(),
            entry.base_sequence()
        ),
        (-1, -1, -1)
    );
    assert_eq!(entry.record_count(), 1);
    assert_eq!(entry.control_type(), None);
}

#[test]
fn a_v1_message_carries_its_timestamp_and_timestamp_type() {
    let entry = RecordBatch::parse(Bytes::from_static(&V1_FIXTURE)).unwrap();
    assert_eq!(entry.magic(), 1);
    assert_eq!((entry.base_offset(), entry.next_offset()), (6, 7));
    assert_eq!(
        (entry.base_timestamp(), entry.max_timestamp()),
        (1000, 1000)
    );
    assert_eq!(entry.timestamp_type(), TimestampType::CreateTime);
    assert!(entry.validate_crc().is_ok());
    let mut log_append = BytesMut::from(&V1_FIXTURE[..]);
    log_append[17] = 0x08;
    let entry = RecordBatch::parse(log_append.freeze()).unwrap();
    assert_eq!(entry.timestamp_type(), TimestampType::LogAppendTime);
    assert!(
        entry.validate_crc().is_err(),
        "attributes are inside the CRC"
    );
}

#[test]
fn reserved_legacy_attribute_bits_are_not_v2_flags() {
    let mut bytes = BytesMut::from(&V1_FIXTURE[..]);
    bytes[17] = 0xf0;
    let entry = RecordBatch::parse(bytes.freeze()).unwrap();
    assert_eq!(entry.attributes(), 0xf0);
    assert!(!entry.is_transactional() && !entry.is_control() && !entry.has_delete_horizon());
    assert_eq!(entry.control_type(), None);
}

#[test]
fn a_gzip_v1_wrapper_reports_its_last_inner_offset_and_max_timestamp() {
    let records: [RecordRef<'_>; 4] = [
        (Some(b"k1"), Some(b"one")),
        (Some(b"k2"), Some(b"two")),
        (None, Some(b"three")),
        (Some(b"k4"), None),
    ];
    let bytes = build_gzip_wrapper(103, MAGIC_V1, &records, 2_000);
    let wrapper = RecordBatch::parse(bytes.clone()).unwrap();
    assert_eq!(wrapper.compression(), Compression::Gzip);
    assert_eq!(wrapper.base_offset(), 103);
    assert_eq!((wrapper.last_offset(), wrapper.next_offset()), (103, 104));
    assert_eq!(wrapper.max_timestamp(), 2_003);
    assert_eq!(wrapper.record_count(), -1, "unknown without decompressing");
    assert!(wrapper.validate_crc().is_ok());

    // The wrapper's value is the gzip'd inner message set, with relative offsets 0..4.
    let value = &bytes[LOG_OVERHEAD + 4 + 2 + 8 + 4 + 4..];
    let inner = gunzip(value);
    let offsets: Vec<i64> = BatchWalker::new(inner)
        .map(|m| m.unwrap().base_offset())
        .collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);
}

#[test]
fn a_gzip_v0_wrapper_holds_absolute_inner_offsets() {
    let records: [RecordRef<'_>; 2] = [(None, Some(b"x")), (None, Some(b"y"))];
    let bytes = build_gzip_wrapper(41, MAGIC_V0, &records, -1);
    let wrapper = RecordBatch::parse(bytes.clone()).unwrap();
    assert_eq!((wrapper.base_offset(), wrapper.next_offset()), (41, 42));
    assert_eq!(wrapper.max_timestamp(), -1);
    let inner = gunzip(&bytes[LOG_OVERHEAD + 4 + 2 + 4 + 4..]);
    let offsets: Vec<i64> = BatchWalker::new(inner)
        .map(|m| m.unwrap().base_offset())
        .collect();
    assert_eq!(offsets, vec![40, 41]);
}

fn gunzip(data: &[u8]) -> Bytes {
    use kafka_protocol::compression::{Decompressor, Gzip};
    let mut input = Bytes::copy_from_slice(data);
    <Gzip as Decompressor<Bytes>>::decompress(&mut input, |out| Ok(out.clone())).unwrap()
}

#[test]
fn legacy_crcs_are_crc32_ieee_over_magic_to_end() {
    let mut bytes = BytesMut::from(&V0_FIXTURE[..]);
    bytes[27] ^= 0x01;
    let err = RecordBatch::parse(bytes.freeze())
        .unwrap()
        .validate_crc()
        .unwrap_err();
    assert!(matches!(
        err,
        BatchError::CrcMismatch {
            base_offset: 5,
            stored: 0x1fec_d70a,
            ..
        }
    ));
    // The offset and size sit outside the CRC, as in v2.
    let mut bytes = BytesMut::from(&V0_FIXTURE[..]);
    bytes[0..8].copy_from_slice(&77i64.to_be_bytes());
    assert!(RecordBatch::parse(bytes.freeze())
        .unwrap()
        .validate_crc()
        .is_ok());
}

#[test]
fn each_magic_has_its_own_minimum_length() {
    // A v1 header needs 22 bytes after the length field; 21 is too short.
    let mut short = BytesMut::from(&V1_FIXTURE[..]);
    short[8..12].copy_from_slice(&21i32.to_be_bytes());
    assert!(matches!(
        RecordBatch::parse(short.freeze()),
        Err(BatchError::BadLength {
            batch_length: 21,
            minimum: 22,
            ..
        })
    ));
    // Below the v0 minimum is refused before the magic byte is even read.
    let mut tiny = BytesMut::from(&V0_FIXTURE[..12]);
    tiny[8..12].copy_from_slice(&13i32.to_be_bytes());
    assert!(matches!(
        BatchWalker::new(tiny.freeze()).next(),
        Some(Err(BatchError::BadLength { minimum: 14, .. }))
    ));
    // A partial entry with an unknown magic fails at once instead of waiting.
    let mut unknown = BytesMut::from(&V0_FIXTURE[..17]);
    unknown[16] = 3;
    assert!(matches!(
        BatchWalker::new(unknown.freeze()).next(),
        Some(Err(BatchError::BadMagic { magic: 3, .. }))
    ));
}

#[test]
fn a_mixed_record_set_walks_as_zero_copy_entries_with_increasing_offsets() {
    let (all, entries) = mixed_set();
    let mut walker = BatchWalker::new(all.clone());
    let mut start = 0;
    let mut next = 0;
    for expected in &entries {
        let entry = walker.next().unwrap().unwrap();
        assert_eq!(entry.as_bytes(), expected);
        assert_eq!(entry.as_bytes().as_ptr(), all[start..].as_ptr());
        assert!(entry.validate_crc().is_ok(), "{entry:?}");
        assert!(entry.base_offset() >= next);
        next = entry.next_offset();
        start += entry.len();
    }
    assert_eq!(next, 10);
    assert!(walker.next().is_none() && walker.remainder().is_empty());
}

#[test]
fn a_mixed_record_set_cut_at_every_position() {
    let (all, entries) = mixed_set();
    for cut in 0..=all.len() {
        super::tests::check_cut(&all, &entries, cut);
    }
}

fn arb_legacy() -> impl Strategy<Value = (i64, i8, i64, Option<Vec<u8>>, Option<Vec<u8>>)> {
    (
        0i64..i64::MAX,
        prop::sample::select(vec![MAGIC_V0, MAGIC_V1]),
        any::<i64>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
    )
}

proptest! {
    #[test]
    fn built_legacy_messages_round_trip((offset, magic, ts, key, value) in arb_legacy()) {
        let bytes = build_legacy_message(offset, magic, ts, key.as_deref(), value.as_deref());
        let entry = RecordBatch::parse(bytes.clone()).unwrap();
        prop_assert_eq!(entry.magic(), magic);
        prop_assert_eq!(entry.base_offset(), offset);
        prop_assert_eq!(entry.last_offset(), offset);
        prop_assert_eq!(entry.max_timestamp(), if magic == MAGIC_V0 { -1 } else { ts });
        prop_assert!(entry.validate_crc().is_ok());
        prop_assert_eq!(entry.into_bytes(), bytes);
    }

    #[test]
    fn random_mixed_sets_cut_anywhere(
        kinds in proptest::collection::vec(0u8..4, 1..8),
        cut_seed in any::<prop::sample::Index>(),
    ) {
        let records: [RecordRef<'_>; 2] = [(Some(b"key"), Some(b"value")), (None, Some(b"v"))];
        let mut entries = Vec::new();
        let mut offset = 0i64;
        for kind in kinds {
            let entry = match kind {
                0 => build_legacy_message(offset, MAGIC_V0, -1, Some(b"k"), None),
                1 => build_legacy_message(offset, MAGIC_V1, offset, None, Some(b"v")),
                2 => build_gzip_wrapper(offset + 1, MAGIC_V1, &records, offset),
                _ => build_batch(offset, 0, &records, offset),
            };
            offset = RecordBatch::parse(entry.clone()).unwrap().next_offset();
            entries.push(entry);
        }
        let all: Bytes = entries.concat().into();
        super::tests::check_cut(&all, &entries, cut_seed.index(all.len() + 1));
    }
}

/// The last offset read from a header alone is the parsed entry's, for every format.
#[test]
fn a_peeked_last_offset_is_the_parsed_entrys() {
    let records: [RecordRef<'_>; 3] = [(None, Some(b"a")), (None, Some(b"b")), (None, Some(b"c"))];
    let entries = [
        build_batch(40, 3, &records, 1_000),
        testing::BatchBuilder::new(50)
            .last_offset_delta(9)
            .records(&records)
            .build(),
        build_legacy_message(61, MAGIC_V0, -1, Some(b"k"), Some(b"v")),
        build_legacy_message(62, MAGIC_V1, 1_000, None, Some(b"v")),
        build_gzip_wrapper(65, MAGIC_V1, &records, 1_000),
        build_gzip_wrapper(68, MAGIC_V0, &records, 1_000),
    ];
    for entry in entries {
        let parsed = RecordBatch::parse(entry.clone()).unwrap();
        assert_eq!(peek_last_offset(&entry), Some(parsed.last_offset()));
    }
    let v2 = build_batch(7, 0, &records, 1_000);
    assert_eq!(peek_last_offset(&v2[..LAST_OFFSET_DELTA_OFFSET + 3]), None);
    assert_eq!(peek_last_offset(&v2[..MAGIC_OFFSET]), None);
    let mut unknown = v2.to_vec();
    unknown[MAGIC_OFFSET] = 3;
    assert_eq!(peek_last_offset(&unknown), None);
}
