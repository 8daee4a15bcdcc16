//! Property round trips for every message shadowlink serves or sends, at every version in
//! `supported_versions`: requests go client encode -> split_frame -> parse_header ->
//! decode_body, responses go encode_response -> split_frame -> decode_response, and the
//! decoded message must equal the one generated.
//!
//! Field values come from proptest (a vector of u64s read through [`Src`]); each generator
//! sets only the fields its version carries, because kafka-protocol refuses to encode a
//! non-default field the version lacks.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use proptest::prelude::*;
use shadowlink_protocol::api::supported_versions;
use shadowlink_protocol::client::{decode_response, encode_request};
use shadowlink_protocol::frame::{split_frame, DEFAULT_MAX_FRAME_BYTES};
use shadowlink_protocol::request::{decode_body, parse_header};
use shadowlink_protocol::response::encode_response;

#[path = "roundtrip/requests.rs"]
mod requests;
#[path = "roundtrip/responses.rs"]
mod responses;

/// Reads field values out of proptest-chosen words.
pub struct Src {
    words: Vec<u64>,
    next: usize,
}

impl Src {
    fn new(words: Vec<u64>) -> Self {
        Self { words, next: 0 }
    }

    fn u64(&mut self) -> u64 {
        let i = self.next;
        self.next += 1;
        // Cycle through the words, mixing in the position so repeats differ.
        self.words[i % self.words.len()].rotate_left((i / self.words.len()) as u32 * 7)
            ^ (i / self.words.len()) as u64
    }
    pub fn i8(&mut self) -> i8 {
        self.u64() as i8
    }
    pub fn i16(&mut self) -> i16 {
        self.u64() as i16
    }
    pub fn i32(&mut self) -> i32 {
        self.u64() as i32
    }
    pub fn i64(&mut self) -> i64 {
        self.u64() as i64
    }
    pub fn bool(&mut self) -> bool {
        self.u64() & 1 == 1
    }
    /// A small count for arrays, 0..=max.
    pub fn len(&mut self, max: usize) -> usize {
        (self.u64() % (max as u64 + 1)) as usize
    }
    pub fn string(&mut self) -> StrBytes {
        const ALPHABET: &[u8] = b"abcxyz-._0123456789";
        let n = self.len(12);
        let s: String = (0..n)
            .map(|_| ALPHABET[self.len(ALPHABET.len() - 1)] as char)
            .collect();
        StrBytes::from_string(s)
    }
    /// A string that may be null when the field is nullable at this version.
    pub fn nullable(&mut self, nullable: bool) -> Option<StrBytes> {
        if nullable && self.bool() {
            None
        } else {
            Some(self.string())
        }
    }
    pub fn bytes(&mut self) -> Bytes {
        let n = self.len(24);
        (0..n).map(|_| self.u64() as u8).collect::<Vec<_>>().into()
    }
    pub fn uuid(&mut self) -> uuid::Uuid {
        uuid::Uuid::from_u64_pair(self.u64(), self.u64())
    }
    pub fn vec<T>(&mut self, max: usize, mut f: impl FnMut(&mut Src) -> T) -> Vec<T> {
        let n = self.len(max);
        (0..n).map(|_| f(self)).collect()
    }
    pub fn topic(&mut self) -> TopicName {
        TopicName(self.string())
    }
    pub fn group(&mut self) -> GroupId {
        GroupId(self.string())
    }
}

fn frame_body(frame: Bytes) -> Bytes {
    let mut buf = BytesMut::from(&frame[..]);
    let body = split_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty());
    body
}

fn roundtrip_request<T>(key: ApiKey, version: i16, corr: i32, message: &T)
where
    T: Request + PartialEq + Debug,
{
    let frame = encode_request(key, version, corr, "shadowlink-test", message)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e} for {message:?}"));
    let (header, body) = parse_header(&frame_body(frame)).unwrap();
    assert_eq!(
        (header.api_key, header.api_version, header.correlation_id),
        (key, version, corr)
    );
    assert_eq!(header.client_id.as_deref(), Some("shadowlink-test"));
    let decoded: T = decode_body(&header, body).unwrap_or_else(|e| panic!("{e} for {message:?}"));
    assert_eq!(&decoded, message, "{key:?} v{version} request");
}

fn roundtrip_response<T>(key: ApiKey, version: i16, corr: i32, message: &T)
where
    T: Encodable + Decodable + PartialEq + Debug,
{
    let frame = encode_response(key, version, corr, message)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e} for {message:?}"));
    let (decoded_corr, decoded) = decode_response::<T>(frame_body(frame), key, version)
        .unwrap_or_else(|e| panic!("{e} for {message:?}"));
    assert_eq!(decoded_corr, corr);
    assert_eq!(&decoded, message, "{key:?} v{version} response");
}

/// One proptest per API: every case runs every supported version, request and response.
macro_rules! roundtrip {
    ($($test:ident: $key:ident => $req:ident, $resp:ident;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $(
                #[test]
                fn $test(words in prop::collection::vec(any::<u64>(), 1..48), corr in any::<i32>()) {
                    let range = supported_versions(ApiKey::$key).unwrap();
                    for version in range.min..=range.max {
                        let mut src = Src::new(words.clone());
                        let request = requests::$req(version, &mut src);
                        roundtrip_request(ApiKey::$key, version, corr, &request);
                        let response = responses::$resp(version, &mut src);
                        roundtrip_response(ApiKey::$key, version, corr, &response);
                    }
                }
            )*
        }
    };
}

roundtrip! {
    api_versions: ApiVersions => api_versions, api_versions;
    metadata: Metadata => metadata, metadata;
    fetch: Fetch => fetch, fetch;
    list_offsets: ListOffsets => list_offsets, list_offsets;
    produce: Produce => produce, produce;
    offset_commit: OffsetCommit => offset_commit, offset_commit;
    offset_fetch: OffsetFetch => offset_fetch, offset_fetch;
    find_coordinator: FindCoordinator => find_coordinator, find_coordinator;
    join_group: JoinGroup => join_group, join_group;
    sync_group: SyncGroup => sync_group, sync_group;
    heartbeat: Heartbeat => heartbeat, heartbeat;
    leave_group: LeaveGroup => leave_group, leave_group;
    describe_configs: DescribeConfigs => describe_configs, describe_configs;
    offset_for_leader_epoch: OffsetForLeaderEpoch => offset_for_leader_epoch, offset_for_leader_epoch;
}
