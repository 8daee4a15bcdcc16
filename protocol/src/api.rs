//! The Kafka APIs this codec decodes and encodes, and the versions it accepts for each.
//!
//! Versions come from each request struct's `Message::VERSIONS`, never from
//! `ApiKey::valid_versions()`: in kafka-protocol 0.18 that table advertises OffsetCommit v10,
//! OffsetFetch v10 and InitProducerId v6, which the structs cannot decode (codegen drops
//! `latestVersionUnstable` versions from the structs only). Advertising them would invite a
//! client to send a request that then fails to decode.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

use crate::client::encode_request;
use crate::encode::EncodeError;
use crate::request::{decode_body, RequestError, RequestHeader};

/// Lists `(ApiKey variant, request struct)` for every API shadowlink serves or sends, and
/// expands `$callback!` with that list so every table below stays in step.
macro_rules! supported_apis {
    ($callback:ident) => {
        $callback! {
            Produce => ProduceRequest,
            Fetch => FetchRequest,
            ListOffsets => ListOffsetsRequest,
            Metadata => MetadataRequest,
            OffsetCommit => OffsetCommitRequest,
            OffsetFetch => OffsetFetchRequest,
            FindCoordinator => FindCoordinatorRequest,
            JoinGroup => JoinGroupRequest,
            Heartbeat => HeartbeatRequest,
            LeaveGroup => LeaveGroupRequest,
            SyncGroup => SyncGroupRequest,
            DescribeGroups => DescribeGroupsRequest,
            ListGroups => ListGroupsRequest,
            SaslHandshake => SaslHandshakeRequest,
            ApiVersions => ApiVersionsRequest,
            CreateTopics => CreateTopicsRequest,
            DeleteTopics => DeleteTopicsRequest,
            DeleteRecords => DeleteRecordsRequest,
            InitProducerId => InitProducerIdRequest,
            OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
            AddPartitionsToTxn => AddPartitionsToTxnRequest,
            AddOffsetsToTxn => AddOffsetsToTxnRequest,
            EndTxn => EndTxnRequest,
            TxnOffsetCommit => TxnOffsetCommitRequest,
            DescribeConfigs => DescribeConfigsRequest,
            AlterConfigs => AlterConfigsRequest,
            SaslAuthenticate => SaslAuthenticateRequest,
            CreatePartitions => CreatePartitionsRequest,
            IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        }
    };
}

macro_rules! define_tables {
    ($($key:ident => $req:ident),* $(,)?) => {
        /// Every API key this codec handles, in ApiKey order.
        pub const SUPPORTED_API_KEYS: &[ApiKey] = &[$(ApiKey::$key),*];

        /// The request versions this codec can decode (and the matching response versions it
        /// can encode) for `api_key`, or `None` for an API it does not handle.
        pub fn supported_versions(api_key: ApiKey) -> Option<VersionRange> {
            match api_key {
                $(ApiKey::$key => Some(<$req as Message>::VERSIONS),)*
                _ => None,
            }
        }

        /// A decoded request body of any supported API, for dispatching on the key.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)] // one per request; boxing would add an allocation per request
        pub enum RequestBody {
            $($key($req),)*
        }

        impl RequestBody {
            /// The API key of the decoded request.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(RequestBody::$key(_) => ApiKey::$key,)*
                }
            }

            /// Encodes the request as a complete frame, as a client would send it.
            pub fn encode_request(
                &self,
                version: i16,
                correlation_id: i32,
                client_id: &str,
            ) -> Result<Bytes, EncodeError> {
                match self {
                    $(RequestBody::$key(body) => {
                        encode_request(ApiKey::$key, version, correlation_id, client_id, body)
                    })*
                }
            }
        }

        /// Decodes `body` as the request named by `header`, consuming every byte.
        pub fn decode_any(header: &RequestHeader, body: Bytes) -> Result<RequestBody, RequestError> {
            match header.api_key {
                $(ApiKey::$key => decode_body(header, body).map(RequestBody::$key),)*
                other => Err(RequestError::UnsupportedApi {
                    api_key: other,
                    version: header.api_version,
                    correlation_id: header.correlation_id,
                }),
            }
        }
    };
}

supported_apis!(define_tables);

/// Whether `version` of `api_key` can be decoded and encoded by this codec.
pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    supported_versions(api_key).is_some_and(|r| (r.min..=r.max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_structs_not_the_api_key_table() {
        let commit = supported_versions(ApiKey::OffsetCommit).unwrap();
        assert_eq!((commit.min, commit.max), (2, 9));
        assert_eq!(ApiKey::OffsetCommit.valid_versions().max, 10);
        let fetch = supported_versions(ApiKey::OffsetFetch).unwrap();
        assert_eq!((fetch.min, fetch.max), (1, 9));
        let init = supported_versions(ApiKey::InitProducerId).unwrap();
        assert_eq!(init.max, 5);
    }

    #[test]
    fn unhandled_apis_have_no_versions() {
        assert!(supported_versions(ApiKey::DescribeAcls).is_none());
        assert!(!is_supported(ApiKey::DescribeAcls, 0));
        assert!(is_supported(ApiKey::ApiVersions, 4));
        assert!(!is_supported(ApiKey::ApiVersions, 5));
    }

    #[test]
    fn key_list_is_sorted_and_unique() {
        let raw: Vec<i16> = SUPPORTED_API_KEYS.iter().map(|k| *k as i16).collect();
        assert!(raw.windows(2).all(|w| w[0] < w[1]));
    }
}
