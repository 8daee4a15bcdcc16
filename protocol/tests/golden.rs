//! Frames captured from real clients talking to tansu 0.6 (see tests/golden/README.md).
//! Requests go through the server path (split_frame, parse_header, decode_any), responses
//! through the client path (decode_response), and both are re-encoded and compared.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use shadowlink_protocol::api::{decode_any, RequestBody};
use shadowlink_protocol::batch::BatchWalker;
use shadowlink_protocol::client::{decode_api_versions_response, decode_response};
use shadowlink_protocol::frame::{split_frame, DEFAULT_MAX_FRAME_BYTES};
use shadowlink_protocol::request::parse_header;
use shadowlink_protocol::response::encode_response;

/// Responses whose bytes kafka-protocol cannot reproduce, and why. Each must still decode,
/// and re-decoding our re-encoding must give the same message.
const NON_CANONICAL_RESPONSES: &[(&str, &str)] = &[
    // tansu writes all four ApiVersions tagged fields at their defaults; the crate omits them.
    ("confluent-api_versions-v3", "default tagged fields written"),
    (
        "kafka-python-api_versions-v4",
        "default tagged fields written",
    ),
    // tansu writes Fetch v16's NodeEndpoints tagged field (tag 0) even when it is empty.
    (
        "confluent-fetch-v16",
        "empty node_endpoints tagged field written",
    ),
];

struct Golden {
    stem: String,
    api_key: ApiKey,
    version: i16,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn api_key_named(name: &str) -> ApiKey {
    match name {
        "produce" => ApiKey::Produce,
        "fetch" => ApiKey::Fetch,
        "list_offsets" => ApiKey::ListOffsets,
        "metadata" => ApiKey::Metadata,
        "offset_commit" => ApiKey::OffsetCommit,
        "offset_fetch" => ApiKey::OffsetFetch,
        "find_coordinator" => ApiKey::FindCoordinator,
        "join_group" => ApiKey::JoinGroup,
        "heartbeat" => ApiKey::Heartbeat,
        "leave_group" => ApiKey::LeaveGroup,
        "sync_group" => ApiKey::SyncGroup,
        "api_versions" => ApiKey::ApiVersions,
        "init_producer_id" => ApiKey::InitProducerId,
        other => panic!("golden file names unknown api {other}"),
    }
}

/// Every `<client>-<api>-v<version>` with both a request and a response file.
fn goldens() -> Vec<Golden> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix("-req.bin") else {
            continue;
        };
        let (rest, version) = stem.rsplit_once("-v").unwrap();
        let (_client, api) = rest.rsplit_once('-').unwrap();
        assert!(
            golden_dir().join(format!("{stem}-resp.bin")).exists(),
            "{stem} has no response"
        );
        out.push(Golden {
            stem: stem.to_owned(),
            api_key: api_key_named(api),
            version: version.parse().unwrap(),
        });
    }
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    assert!(out.len() >= 20, "only {} golden exchanges found", out.len());
    out
}

/// Reads a captured frame and splits it the way the server does; the file holds exactly one.
fn read_frame(stem: &str, kind: &str) -> (Bytes, Bytes) {
    let raw = std::fs::read(golden_dir().join(format!("{stem}-{kind}.bin"))).unwrap();
    let mut buf = BytesMut::from(&raw[..]);
    let frame = split_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty(), "{stem}-{kind} holds more than one frame");
    (Bytes::from(raw), frame)
}

#[test]
fn captured_requests_decode_and_reencode_identically() {
    for g in goldens() {
        let (raw, frame) = read_frame(&g.stem, "req");
        let (header, body) = parse_header(&frame).unwrap_or_else(|e| panic!("{}: {e}", g.stem));
        assert_eq!(
            (header.api_key, header.api_version),
            (g.api_key, g.version),
            "{}",
            g.stem
        );
        let request = decode_any(&header, body).unwrap_or_else(|e| panic!("{}: {e}", g.stem));
        let client_id = header
            .client_id
            .as_deref()
            .expect("every captured client sends a client id");
        let again = request
            .encode_request(header.api_version, header.correlation_id, client_id)
            .unwrap();
        assert_eq!(again, raw, "{} re-encodes differently", g.stem);
    }
}

fn roundtrip_response<T: Decodable + Encodable + PartialEq + Debug>(g: &Golden) -> (T, bool) {
    let (raw, frame) = read_frame(&g.stem, "resp");
    let (corr, message) = decode_response::<T>(frame, g.api_key, g.version)
        .unwrap_or_else(|e| panic!("{}: {e}", g.stem));
    let again = encode_response(g.api_key, g.version, corr, &message).unwrap();
    let identical = again == raw;
    let (corr2, message2) = decode_response::<T>(again.slice(4..), g.api_key, g.version).unwrap();
    assert_eq!(
        (corr2, &message2),
        (corr, &message),
        "{} does not survive re-encoding",
        g.stem
    );
    (message, identical)
}

macro_rules! by_key {
    ($g:expr, $($key:ident => $resp:ty),* $(,)?) => {
        match $g.api_key {
            $(ApiKey::$key => roundtrip_response::<$resp>($g).1,)*
            other => panic!("no response type listed for {other:?}"),
        }
    };
}

#[test]
fn captured_responses_decode_and_reencode() {
    for g in goldens() {
        let identical = by_key!(&g,
            Produce => ProduceResponse, Fetch => FetchResponse, ListOffsets => ListOffsetsResponse,
            Metadata => MetadataResponse, OffsetCommit => OffsetCommitResponse,
            OffsetFetch => OffsetFetchResponse, FindCoordinator => FindCoordinatorResponse,
            JoinGroup => JoinGroupResponse, Heartbeat => HeartbeatResponse,
            LeaveGroup => LeaveGroupResponse, SyncGroup => SyncGroupResponse,
            ApiVersions => ApiVersionsResponse, InitProducerId => InitProducerIdResponse,
        );
        let expected = !NON_CANONICAL_RESPONSES
            .iter()
            .any(|(stem, _)| *stem == g.stem);
        assert_eq!(
            identical, expected,
            "{}: byte-identical re-encoding was {identical}",
            g.stem
        );
    }
}

#[test]
fn captured_api_versions_responses_read_through_the_kip_511_helper() {
    for g in goldens()
        .iter()
        .filter(|g| g.api_key == ApiKey::ApiVersions)
    {
        let (_, frame) = read_frame(&g.stem, "resp");
        let (_, resp) = decode_api_versions_response(frame, g.version).unwrap();
        assert_eq!(resp.error_code, 0, "{}", g.stem);
        let fetch = resp
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Fetch as i16)
            .unwrap();
        assert!(
            fetch.max_version >= 12,
            "{}: tansu advertises Fetch up to 17",
            g.stem
        );
    }
}

/// Walks a record set, requiring whole v2 batches with valid CRCs and nothing left over.
fn walk(stem: &str, records: &Bytes) -> usize {
    let mut walker = BatchWalker::new(records.clone());
    let mut count = 0;
    for batch in walker.by_ref() {
        let batch = batch.unwrap_or_else(|e| panic!("{stem}: {e}"));
        batch
            .validate_crc()
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert!(batch.record_count() > 0 && batch.next_offset() > batch.base_offset());
        count += 1;
    }
    assert!(
        walker.remainder().is_empty(),
        "{stem}: a partial batch is left over"
    );
    count
}

#[test]
fn captured_record_sets_walk_as_whole_batches() {
    let mut produced = 0;
    let mut fetched = 0;
    for g in goldens() {
        if g.api_key == ApiKey::Produce {
            let (_, frame) = read_frame(&g.stem, "req");
            let (header, body) = parse_header(&frame).unwrap();
            let RequestBody::Produce(req) = decode_any(&header, body).unwrap() else {
                unreachable!()
            };
            for partition in req.topic_data.iter().flat_map(|t| &t.partition_data) {
                produced += walk(&g.stem, partition.records.as_ref().unwrap());
            }
        }
        if g.api_key == ApiKey::Fetch {
            let (_, frame) = read_frame(&g.stem, "resp");
            let (_, resp) =
                decode_response::<FetchResponse>(frame, ApiKey::Fetch, g.version).unwrap();
            for partition in resp.responses.iter().flat_map(|t| &t.partitions) {
                fetched += walk(&g.stem, partition.records.as_ref().unwrap());
            }
        }
    }
    assert!(
        produced >= 2 && fetched >= 2,
        "walked {produced} produced and {fetched} fetched batches"
    );
}

/// The zero-copy encoder, fed the decoded fields of a real broker's Fetch response (records
/// split into one chunk per batch), reproduces that response byte for byte.
#[test]
fn zero_copy_fetch_encoder_reproduces_captured_fetch_responses() {
    use shadowlink_protocol::fetch::{
        encode_fetch_response, FetchPartitionParts, FetchResponseParts, FetchTopicParts,
    };
    let mut compared = 0;
    for g in goldens().iter().filter(|g| g.api_key == ApiKey::Fetch) {
        let (raw, frame) = read_frame(&g.stem, "resp");
        let (corr, resp) =
            decode_response::<FetchResponse>(frame, ApiKey::Fetch, g.version).unwrap();
        let topics = resp.responses.iter().map(|t| FetchTopicParts {
            name: t.topic.0.as_str().to_owned(),
            topic_id: t.topic_id,
            partitions: t
                .partitions
                .iter()
                .map(|p| FetchPartitionParts {
                    partition_index: p.partition_index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    last_stable_offset: p.last_stable_offset,
                    log_start_offset: p.log_start_offset,
                    aborted_transactions: p
                        .aborted_transactions
                        .iter()
                        .flatten()
                        .map(|a| (a.producer_id.0, a.first_offset))
                        .collect(),
                    preferred_read_replica: p.preferred_read_replica.0,
                    records: BatchWalker::new(p.records.clone().unwrap_or_default())
                        .map(|b| b.unwrap().into_bytes())
                        .collect(),
                    diverging_epoch: (p.diverging_epoch.epoch >= 0)
                        .then_some((p.diverging_epoch.epoch, p.diverging_epoch.end_offset)),
                })
                .collect(),
        });
        let parts = FetchResponseParts {
            throttle_time_ms: resp.throttle_time_ms,
            error_code: resp.error_code,
            session_id: resp.session_id,
            topics: topics.collect(),
        };
        let ours = encode_fetch_response(g.version, corr, parts)
            .unwrap()
            .to_contiguous();
        if NON_CANONICAL_RESPONSES
            .iter()
            .any(|(stem, _)| *stem == g.stem)
        {
            // Only tansu's empty node_endpoints tag (3 bytes) differs.
            assert_eq!(ours.len() + 3, raw.len(), "{}", g.stem);
            assert_eq!(
                ours[4..ours.len() - 1],
                raw[4..ours.len() - 1],
                "{}",
                g.stem
            );
        } else {
            assert_eq!(ours, raw, "{}", g.stem);
        }
        compared += 1;
    }
    assert!(compared >= 2);
}
