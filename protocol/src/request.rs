//! Server side: request header parsing and body decoding.
//!
//! Every function here returns an error for any input instead of panicking. The header is
//! peeked by hand first because `decode_request_header_from_buffer` in kafka-protocol 0.18
//! panics on frames shorter than 4 bytes and loses the correlation id on unknown keys.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader as WireRequestHeader};
use kafka_protocol::protocol::{Decodable, Message, Request};

use crate::api::supported_versions;

/// Bytes of `api_key i16, api_version i16, correlation_id i32` common to every header version.
pub const FIXED_HEADER_LEN: usize = 8;

/// The request header, with the API key resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// Why a request frame could not be decoded.
///
/// Every variant produced from a frame of at least 8 bytes carries the correlation id, so
/// the server can still answer (UNSUPPORTED_VERSION) or log which request failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    #[error("the {len}-byte frame is too short to hold a request header")]
    Short { len: usize },
    #[error("request {correlation_id} names api key {api_key}, which is not a Kafka API")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error(
        "request {correlation_id} is {api_key:?} v{version}, an API this codec does not handle"
    )]
    UnsupportedApi {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error(
        "request {correlation_id} is {api_key:?} v{version}, a version this codec cannot decode"
    )]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    /// `correlation_id` is `None` only when the error comes from [`decode_request`], which is
    /// not given the header; [`decode_body`] fills it.
    #[error("{api_key:?} v{version} request is malformed: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: Option<i32>,
        reason: String,
    },
    #[error("{api_key:?} v{version} request has {len} bytes left over after decoding")]
    TrailingBytes {
        api_key: ApiKey,
        version: i16,
        correlation_id: Option<i32>,
        len: usize,
    },
}

impl RequestError {
    /// The correlation id of the failed request, when the frame held one.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            RequestError::Short { .. } => None,
            RequestError::UnknownApiKey { correlation_id, .. }
            | RequestError::UnsupportedApi { correlation_id, .. }
            | RequestError::UnsupportedVersion { correlation_id, .. } => Some(*correlation_id),
            RequestError::Malformed { correlation_id, .. }
            | RequestError::TrailingBytes { correlation_id, .. } => *correlation_id,
        }
    }

    fn with_correlation_id(self, id: i32) -> Self {
        match self {
            RequestError::Malformed {
                api_key,
                version,
                reason,
                ..
            } => RequestError::Malformed {
                api_key,
                version,
                correlation_id: Some(id),
                reason,
            },
            RequestError::TrailingBytes {
                api_key,
                version,
                len,
                ..
            } => RequestError::TrailingBytes {
                api_key,
                version,
                correlation_id: Some(id),
                len,
            },
            other => other,
        }
    }
}

/// Splits a frame (without its size prefix) into its header and body.
///
/// The body is a zero-copy slice of `frame`. An ApiVersions request newer than we support is
/// rejected with `UnsupportedVersion` before its header or body is decoded: KIP-511 lets a
/// client send a version the server has never seen, and the server must still answer with
/// a v0 error 35 reply (see [`crate::response::api_versions_unsupported`]).
pub fn parse_header(frame: &Bytes) -> Result<(RequestHeader, Bytes), RequestError> {
    let Some(fixed) = frame.get(..FIXED_HEADER_LEN) else {
        return Err(RequestError::Short { len: frame.len() });
    };
    let raw_key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| RequestError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let Some(range) = supported_versions(api_key) else {
        return Err(RequestError::UnsupportedApi {
            api_key,
            version,
            correlation_id,
        });
    };
    if version < range.min || version > range.max {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let mut buf = frame.clone();
    let header_version = api_key.request_header_version(version);
    let wire = WireRequestHeader::decode(&mut buf, header_version).map_err(|e| {
        RequestError::Malformed {
            api_key,
            version,
            correlation_id: Some(correlation_id),
            reason: format!("the request header does not decode: {e}"),
        }
    })?;
    let header = RequestHeader {
        api_key,
        api_version: version,
        correlation_id,
        client_id: wire.client_id.map(|s| s.as_str().to_owned()),
    };
    Ok((header, buf))
}

/// Decodes a request body at `version`, requiring every byte to be consumed.
///
/// Errors carry no correlation id; prefer [`decode_body`] when the header is at hand.
pub fn decode_request<T: Request>(body: Bytes, version: i16) -> Result<T, RequestError> {
    let api_key = request_key::<T>();
    let malformed = |reason: String| RequestError::Malformed {
        api_key,
        version,
        correlation_id: None,
        reason,
    };
    let range = T::VERSIONS;
    if version < range.min || version > range.max {
        return Err(malformed(format!("version {version} is outside {range}")));
    }
    let mut buf = body;
    let message = T::decode(&mut buf, version).map_err(|e| malformed(e.to_string()))?;
    if buf.has_remaining() && !tolerates_trailing_bytes(api_key, version) {
        return Err(RequestError::TrailingBytes {
            api_key,
            version,
            correlation_id: None,
            len: buf.remaining(),
        });
    }
    Ok(message)
}

/// [`decode_request`] with the header's version, filling the correlation id into errors.
pub fn decode_body<T: Request>(header: &RequestHeader, body: Bytes) -> Result<T, RequestError> {
    decode_request(body, header.api_version)
        .map_err(|e| e.with_correlation_id(header.correlation_id))
}

/// librdkafka up to 2.16 writes the "all topics" list of a flexible Metadata request
/// (v9+) as a 4-byte array length, which a flexible decoder reads as a 1-byte null plus
/// 3 stray bytes (librdkafka#5049). The decoded request means what the client meant, and
/// Kafka ignores trailing bytes, so they are accepted here and nowhere else.
fn tolerates_trailing_bytes(api_key: ApiKey, version: i16) -> bool {
    api_key == ApiKey::Metadata && version >= 9
}

fn request_key<T: Request>() -> ApiKey {
    // Every `Request` impl in kafka-protocol names a key from the same generated table.
    ApiKey::try_from(T::KEY).unwrap_or(ApiKey::ApiVersions)
}

/// Whether an ApiVersions request of `version` must get the KIP-511 v0 fallback reply.
pub fn needs_api_versions_fallback(version: i16) -> bool {
    version > <ApiVersionsRequest as Message>::VERSIONS.max
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{FetchRequest, HeartbeatRequest, MetadataRequest};

    use super::*;
    use crate::client::encode_request;

    fn frame_of<T: kafka_protocol::protocol::Encodable>(key: ApiKey, v: i16, body: &T) -> Bytes {
        encode_request(key, v, 31, "tester", body)
            .unwrap()
            .slice(4..)
    }

    #[test]
    fn flexible_header_is_parsed_and_the_body_is_a_slice_of_the_frame() {
        let frame = frame_of(ApiKey::Fetch, 12, &FetchRequest::default());
        let (header, body) = parse_header(&frame).unwrap();
        assert_eq!(header.client_id.as_deref(), Some("tester"));
        assert_eq!(
            (header.api_key, header.api_version, header.correlation_id),
            (ApiKey::Fetch, 12, 31)
        );
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(frame_range.contains(&(body.as_ptr() as usize)));
        assert_eq!(body.as_ptr() as usize + body.len(), frame_range.end);
        decode_body::<FetchRequest>(&header, body).unwrap();
    }

    #[test]
    fn trailing_bytes_are_refused_with_the_correlation_id() {
        let mut raw = frame_of(ApiKey::Heartbeat, 4, &HeartbeatRequest::default()).to_vec();
        raw.extend_from_slice(&[1, 2, 3]);
        let (header, body) = parse_header(&Bytes::from(raw)).unwrap();
        let err = decode_body::<HeartbeatRequest>(&header, body.clone()).unwrap_err();
        let expected = RequestError::TrailingBytes {
            api_key: ApiKey::Heartbeat,
            version: 4,
            correlation_id: Some(31),
            len: 3,
        };
        assert_eq!(err, expected);
        let bare = decode_request::<HeartbeatRequest>(body, 4).unwrap_err();
        assert_eq!(bare.correlation_id(), None);
    }

    #[test]
    fn librdkafka_all_topics_metadata_decodes_as_all_topics() {
        // The body librdkafka 2.16 sends for "all topics" at Metadata v12: a 4-byte
        // array length where a flexible version has a 1-byte one (librdkafka#5049).
        let body = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0]);
        let request = decode_request::<MetadataRequest>(body.clone(), 12).unwrap();
        assert_eq!(request.topics, None);
        assert!(!request.allow_auto_topic_creation);
        // Before flexible versions the same bytes leave two over, which stays an error.
        assert!(matches!(
            decode_request::<MetadataRequest>(body, 4),
            Err(RequestError::TrailingBytes { len: 2, .. })
        ));
    }

    #[test]
    fn versions_outside_the_struct_range_are_refused() {
        let err = decode_request::<MetadataRequest>(Bytes::new(), 14).unwrap_err();
        assert!(matches!(
            err,
            RequestError::Malformed {
                api_key: ApiKey::Metadata,
                version: 14,
                ..
            }
        ));
        assert!(needs_api_versions_fallback(5));
        assert!(!needs_api_versions_fallback(4));
    }
}
