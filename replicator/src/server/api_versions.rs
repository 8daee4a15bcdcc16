//! ApiVersions: advertises exactly what the handlers implement.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::{supported_versions, EncodeError};

use super::apis::SERVED;
use super::{Reply, ServerContext};

/// The advertised range of `api`: the handler's range cut to what the codec can decode.
pub fn advertised(api: ApiKey) -> Option<(i16, i16)> {
    let served = SERVED.iter().find(|served| served.api == api)?;
    let codec = supported_versions(api)?;
    let (min, max) = (served.min.max(codec.min), served.max.min(codec.max));
    (min <= max).then_some((min, max))
}

pub fn handle(
    _ctx: &ServerContext,
    header: &RequestHeader,
    _request: ApiVersionsRequest,
) -> Result<Reply, EncodeError> {
    let api_keys = SERVED
        .iter()
        .filter_map(|served| {
            let (min, max) = advertised(served.api)?;
            Some(
                ApiVersion::default()
                    .with_api_key(served.api as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect();
    let mut response = ApiVersionsResponse::default().with_api_keys(api_keys);
    if header.api_version >= 3 {
        // No feature negotiation (KIP-584): an empty, never-finalized feature set.
        response = response.with_finalized_features_epoch(-1);
    }
    Reply::encode(header, &response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_fit_the_codec() {
        for served in SERVED {
            let api = served.api;
            let (min, max) = advertised(api).expect("every handled API is advertised");
            let codec = supported_versions(api).unwrap();
            assert!(min >= codec.min && max <= codec.max, "{api:?}");
        }
        assert_eq!(advertised(ApiKey::Fetch), Some((4, 12)));
        assert_eq!(advertised(ApiKey::Produce), Some((3, 12)));
        assert_eq!(advertised(ApiKey::CreateTopics), Some((2, 7)));
        assert_eq!(advertised(ApiKey::InitProducerId), Some((0, 5)));
        assert_eq!(advertised(ApiKey::EndTxn), Some((0, 3)));
        assert_eq!(advertised(ApiKey::AddPartitionsToTxn), Some((0, 3)));
        assert_eq!(advertised(ApiKey::WriteTxnMarkers), None);
    }
}
