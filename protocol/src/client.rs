//! Client side: encoding requests to a source broker and decoding its responses.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader as WireRequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes, VersionRange};

use crate::api::supported_versions;
pub use crate::encode::EncodeError;
use crate::encode::{check_version, encode_frame};
use crate::response::UNSUPPORTED_VERSION;

/// Why a response frame from a broker could not be decoded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    #[error("the {len}-byte response frame is too short to hold a response header")]
    Short { len: usize },
    #[error("{api_key:?} v{version} is not a version this codec can decode")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("{api_key:?} v{version} response is malformed: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("{api_key:?} v{version} response has {len} bytes left over after decoding")]
    TrailingBytes {
        api_key: ApiKey,
        version: i16,
        len: usize,
    },
}

/// Encodes a complete request frame: size prefix, request header (v1 or flexible v2, as
/// the API and version require), body.
pub fn encode_request<T: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &T,
) -> Result<Bytes, EncodeError> {
    check_version(api_key, api_version)?;
    let header = WireRequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    let header_version = api_key.request_header_version(api_version);
    encode_frame(api_key, api_version, (&header, header_version), body)
}

/// Decodes a response frame (without its size prefix) to the request sent at
/// `api_key`/`api_version`, requiring every byte to be consumed. Returns the correlation
/// id so the caller can match it to the request.
pub fn decode_response<T: Decodable>(
    frame: Bytes,
    api_key: ApiKey,
    api_version: i16,
) -> Result<(i32, T), ResponseError> {
    match supported_versions(api_key) {
        Some(r) if (r.min..=r.max).contains(&api_version) => {}
        _ => {
            return Err(ResponseError::UnsupportedVersion {
                api_key,
                version: api_version,
            })
        }
    }
    if frame.len() < 4 {
        return Err(ResponseError::Short { len: frame.len() });
    }
    let malformed = |reason: String| ResponseError::Malformed {
        api_key,
        version: api_version,
        reason,
    };
    let mut buf = frame;
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::decode(&mut buf, header_version)
        .map_err(|e| malformed(format!("the response header does not decode: {e}")))?;
    let body = T::decode(&mut buf, api_version).map_err(|e| malformed(e.to_string()))?;
    if buf.has_remaining() {
        return Err(ResponseError::TrailingBytes {
            api_key,
            version: api_version,
            len: buf.remaining(),
        });
    }
    Ok((header.correlation_id, body))
}

/// Decodes an ApiVersions response, reading the body as v0 when the broker answered with
/// UNSUPPORTED_VERSION. KIP-511: a broker that does not know the requested version replies
/// in v0 (header v0 for every version), so decoding at the requested version would fail or
/// misread. kafka-protocol 0.18 has no client-side fallback for this.
pub fn decode_api_versions_response(
    frame: Bytes,
    requested_version: i16,
) -> Result<(i32, ApiVersionsResponse), ResponseError> {
    // Header v0 is the 4-byte correlation id; error_code is the first body field in every version.
    let error_code = frame.get(4..6).map(|b| i16::from_be_bytes([b[0], b[1]]));
    let version = if error_code == Some(UNSUPPORTED_VERSION) {
        0
    } else {
        requested_version
    };
    decode_response(frame, ApiKey::ApiVersions, version)
}

/// The highest version both sides support, or `None` when the ranges do not overlap.
pub fn negotiate(ours: VersionRange, theirs: (i16, i16)) -> Option<i16> {
    let (their_min, their_max) = theirs;
    let low = ours.min.max(their_min);
    let high = ours.max.min(their_max);
    (low <= high).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::api_versions_unsupported;

    #[test]
    fn negotiate_picks_the_highest_common_version() {
        let ours = VersionRange { min: 4, max: 16 };
        assert_eq!(negotiate(ours, (0, 17)), Some(16));
        assert_eq!(negotiate(ours, (0, 12)), Some(12));
        assert_eq!(negotiate(ours, (5, 5)), Some(5));
        assert_eq!(negotiate(ours, (0, 3)), None);
        assert_eq!(negotiate(ours, (17, 18)), None);
        assert_eq!(negotiate(ours, (9, 2)), None);
    }

    #[test]
    fn kip_511_reply_is_read_as_v0_whatever_version_was_requested() {
        let frame = api_versions_unsupported(42).slice(4..);
        let (corr, resp) = decode_api_versions_response(frame, 4).unwrap();
        assert_eq!(corr, 42);
        assert_eq!(resp.error_code, UNSUPPORTED_VERSION);
        assert_eq!(resp.api_keys.len(), 1);
        assert_eq!(
            (resp.api_keys[0].min_version, resp.api_keys[0].max_version),
            (0, 4)
        );
    }

    #[test]
    fn short_and_trailing_frames_are_errors() {
        let short = decode_response::<ApiVersionsResponse>(
            Bytes::from_static(&[0, 0]),
            ApiKey::ApiVersions,
            0,
        );
        assert_eq!(short.unwrap_err(), ResponseError::Short { len: 2 });
        let mut padded = api_versions_unsupported(1).slice(4..).to_vec();
        padded.push(0);
        let err = decode_api_versions_response(Bytes::from(padded), 3).unwrap_err();
        assert_eq!(
            err,
            ResponseError::TrailingBytes {
                api_key: ApiKey::ApiVersions,
                version: 0,
                len: 1
            }
        );
    }
}
