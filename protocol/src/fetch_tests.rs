use bytes::Buf;
use proptest::prelude::*;

use super::*;
use crate::client::decode_response;
use crate::response::encode_response;

fn partition(version: i16) -> impl Strategy<Value = FetchPartitionParts> {
    let chunks = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4);
    let aborted = prop::collection::vec((any::<i64>(), any::<i64>()), 0..3);
    let replica = if version >= 11 {
        any::<i32>().boxed()
    } else {
        Just(-1).boxed()
    };
    let diverging = if version >= 12 {
        prop::option::of(any::<(i32, i64)>()).boxed()
    } else {
        Just(None).boxed()
    };
    let fields = (any::<(i32, i16, i64, i64, i64)>(), aborted, replica, chunks);
    (fields, diverging).prop_map(
        move |(((index, error, hw, lso, log_start), aborted, replica, chunks), diverging)| {
            FetchPartitionParts {
                partition_index: index,
                error_code: error,
                high_watermark: hw,
                last_stable_offset: lso,
                // Not on the wire before v5, so it cannot survive a round trip there.
                log_start_offset: if version >= 5 { log_start } else { -1 },
                aborted_transactions: aborted,
                preferred_read_replica: replica,
                records: chunks.into_iter().map(Bytes::from).collect(),
                diverging_epoch: diverging,
            }
        },
    )
}

fn topic(version: i16) -> impl Strategy<Value = FetchTopicParts> {
    let partitions = prop::collection::vec(partition(version), 0..3);
    ("[a-z._-]{0,20}", any::<u128>(), partitions).prop_map(move |(name, id, partitions)| {
        FetchTopicParts {
            name: if version < TOPIC_ID_FROM {
                name
            } else {
                String::new()
            },
            topic_id: if version >= TOPIC_ID_FROM {
                Uuid::from_u128(id)
            } else {
                Uuid::nil()
            },
            partitions,
        }
    })
}

fn response() -> impl Strategy<Value = (i16, FetchResponseParts)> {
    (4i16..=18).prop_flat_map(|version| {
        let top = if version >= 7 {
            any::<(i16, i32)>().boxed()
        } else {
            Just((0, 0)).boxed()
        };
        let topics = prop::collection::vec(topic(version), 0..3);
        (Just(version), any::<i32>(), top, topics).prop_map(
            |(version, throttle, (error_code, session_id), topics)| {
                let parts = FetchResponseParts {
                    throttle_time_ms: throttle,
                    error_code,
                    session_id,
                    topics,
                };
                (version, parts)
            },
        )
    })
}

proptest! {
    #[test]
    fn hand_encoder_matches_the_crate_encoder((version, parts) in response(), corr in any::<i32>()) {
        let expected = encode_response(ApiKey::Fetch, version, corr, &parts.to_message()).unwrap();
        let response = encode_fetch_response(version, corr, parts.clone()).unwrap();
        prop_assert_eq!(response.remaining(), expected.len());
        prop_assert_eq!(response.to_contiguous(), expected.clone());
        let (decoded_corr, decoded) =
            decode_response::<FetchResponse>(expected.slice(4..), ApiKey::Fetch, version).unwrap();
        prop_assert_eq!(decoded_corr, corr);
        prop_assert_eq!(decoded, parts.to_message());
    }
}

fn sample_parts(chunks: Vec<Bytes>) -> FetchResponseParts {
    FetchResponseParts {
        throttle_time_ms: 5,
        error_code: 0,
        session_id: 0,
        topics: vec![FetchTopicParts {
            name: "orders".into(),
            topic_id: Uuid::from_u128(0x0102_0304),
            partitions: vec![
                FetchPartitionParts {
                    partition_index: 3,
                    high_watermark: 100,
                    last_stable_offset: 90,
                    log_start_offset: 0,
                    aborted_transactions: vec![(7, 12), (9, 40)],
                    records: chunks,
                    ..Default::default()
                },
                FetchPartitionParts {
                    partition_index: 4,
                    ..Default::default()
                },
            ],
        }],
    }
}

#[test]
fn every_version_matches_with_aborted_transactions_and_several_chunks() {
    let chunks = vec![
        Bytes::from(vec![1u8; 300]),
        Bytes::new(),
        Bytes::from(vec![2u8; 70]),
    ];
    for version in 4..=18 {
        let parts = sample_parts(chunks.clone());
        let expected = encode_response(ApiKey::Fetch, version, 99, &parts.to_message()).unwrap();
        let response = encode_fetch_response(version, 99, parts).unwrap();
        assert_eq!(response.to_contiguous(), expected, "Fetch v{version}");
    }
}

#[test]
fn record_chunks_are_shared_not_copied() {
    let chunks = vec![Bytes::from(vec![1u8; 300]), Bytes::from(vec![2u8; 70])];
    let response = encode_fetch_response(12, 1, sample_parts(chunks.clone())).unwrap();
    let pieces: Vec<&Bytes> = response.iter().collect();
    // header, chunk, chunk, trailer (tags + second partition)
    assert_eq!(pieces.len(), 4);
    assert_eq!(pieces[1].as_ptr(), chunks[0].as_ptr());
    assert_eq!(pieces[2].as_ptr(), chunks[1].as_ptr());
    assert_eq!(
        &pieces[0][..4],
        &(response.remaining() as i32 - 4).to_be_bytes()
    );
}

#[test]
fn empty_records_are_length_zero_not_null() {
    let parts = sample_parts(Vec::new());
    // A null record set would decode as `None`; the crate decodes length 0 as `Some(empty)`.
    for version in [4i16, 11, 12, 16] {
        let bytes = encode_fetch_response(version, 1, parts.clone())
            .unwrap()
            .to_contiguous();
        let (_, decoded) =
            decode_response::<FetchResponse>(bytes.slice(4..), ApiKey::Fetch, version).unwrap();
        for p in &decoded.responses[0].partitions {
            assert_eq!(p.records, Some(Bytes::new()), "v{version}");
        }
    }
}

#[test]
fn fields_a_version_cannot_carry_are_refused() {
    let mut parts = sample_parts(Vec::new());
    parts.topics[0].partitions[0].preferred_read_replica = 1;
    let err = encode_fetch_response(10, 1, parts).unwrap_err();
    assert!(matches!(
        err,
        EncodeError::FieldUnavailable {
            field: "preferred_read_replica",
            ..
        }
    ));
    let mut parts = sample_parts(Vec::new());
    parts.topics[0].partitions[0].diverging_epoch = Some((2, 40));
    let err = encode_fetch_response(11, 1, parts).unwrap_err();
    assert!(matches!(
        err,
        EncodeError::FieldUnavailable {
            field: "diverging_epoch",
            ..
        }
    ));
    let parts = FetchResponseParts {
        session_id: 3,
        ..Default::default()
    };
    assert!(matches!(
        encode_fetch_response(6, 1, parts),
        Err(EncodeError::FieldUnavailable { .. })
    ));
    assert!(matches!(
        encode_fetch_response(3, 1, FetchResponseParts::default()),
        Err(EncodeError::UnsupportedVersion { version: 3, .. })
    ));
}
