//! Server side: response encoding.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::protocol::Message;

pub use crate::api::supported_versions;
pub use crate::encode::EncodeError;
use crate::encode::{check_version, encode_frame};

/// Kafka's UNSUPPORTED_VERSION error code.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// Encodes a complete response frame: size prefix, response header, body.
///
/// The header version follows the request's flexibility, except that ApiVersions always
/// answers with header v0 (KIP-511) so a client can read the error code before it knows
/// which versions the server speaks.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, EncodeError> {
    check_version(api_key, api_version)?;
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(api_version);
    encode_frame(api_key, api_version, (&header, header_version), body)
}

/// The KIP-511 reply to an ApiVersions request newer than we support: a v0 body with
/// error 35 that lists our ApiVersions range, so the client retries at a version we know.
pub fn api_versions_unsupported(correlation_id: i32) -> Bytes {
    let range = <ApiVersionsRequest as Message>::VERSIONS;
    let body = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(range.min)
            .with_max_version(range.max)]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // v0 of both header and body holds only fixed-width fields and one array of one entry,
    // so the encoder has no failure path here; fall back to the same bytes by hand anyway.
    encode_frame(ApiKey::ApiVersions, 0, (&header, 0), &body).unwrap_or_else(|_| {
        handwritten_api_versions_unsupported(correlation_id, range.min, range.max)
    })
}

fn handwritten_api_versions_unsupported(correlation_id: i32, min: i16, max: i16) -> Bytes {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&16i32.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&UNSUPPORTED_VERSION.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    out.extend_from_slice(&min.to_be_bytes());
    out.extend_from_slice(&max.to_be_bytes());
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED_FALLBACK: [u8; 20] = [
        0x00, 0x00, 0x00, 0x10, 0x12, 0x34, 0x56, 0x78, 0x00, 0x23, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x12, 0x00, 0x00, 0x00, 0x04,
    ];

    #[test]
    fn api_versions_fallback_matches_the_kip_511_bytes() {
        assert_eq!(
            &api_versions_unsupported(0x1234_5678)[..],
            &EXPECTED_FALLBACK
        );
        assert_eq!(
            &handwritten_api_versions_unsupported(0x1234_5678, 0, 4)[..],
            &EXPECTED_FALLBACK
        );
    }

    #[test]
    fn api_versions_response_uses_header_v0_even_when_flexible() {
        let frame =
            encode_response(ApiKey::ApiVersions, 3, 7, &ApiVersionsResponse::default()).unwrap();
        // size, corr, then straight into error_code: no tag byte after the correlation id.
        assert_eq!(&frame[4..8], &7i32.to_be_bytes());
        assert_eq!(&frame[8..10], &0i16.to_be_bytes());
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(size as usize, frame.len() - 4);
    }

    #[test]
    fn unsupported_versions_are_refused() {
        let err = encode_response(ApiKey::ApiVersions, 5, 1, &ApiVersionsResponse::default())
            .unwrap_err();
        assert_eq!(
            err,
            EncodeError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                version: 5
            }
        );
    }
}
