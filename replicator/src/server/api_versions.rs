//! ApiVersions: advertises exactly what the handlers implement.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::{encode_response, supported_versions, EncodeError};

use super::{groups, Reply, HANDLED};

/// The advertised range of `api`: the handler's range cut to what the codec can decode.
pub fn advertised(api: ApiKey) -> Option<(i16, i16)> {
    let (_, min, max) = all_handled().find(|(key, _, _)| *key == api)?;
    let codec = supported_versions(api)?;
    let (min, max) = ((*min).max(codec.min), (*max).min(codec.max));
    (min <= max).then_some((min, max))
}

/// Every handled API: the node's own and the group coordinator's.
fn all_handled() -> impl Iterator<Item = &'static (ApiKey, i16, i16)> {
    HANDLED.iter().chain(groups::HANDLED)
}

pub fn handle(header: &RequestHeader, _request: ApiVersionsRequest) -> Result<Reply, EncodeError> {
    let api_keys = all_handled()
        .filter_map(|(api, _, _)| {
            let (min, max) = advertised(*api)?;
            Some(
                ApiVersion::default()
                    .with_api_key(*api as i16)
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
    let frame = encode_response(
        ApiKey::ApiVersions,
        header.api_version,
        header.correlation_id,
        &response,
    )?;
    Ok(Reply::Frame(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_fit_the_codec() {
        for (api, _, _) in all_handled() {
            let (min, max) = advertised(*api).expect("every handled API is advertised");
            let codec = supported_versions(*api).unwrap();
            assert!(min >= codec.min && max <= codec.max, "{api:?}");
        }
        assert_eq!(advertised(ApiKey::Fetch), Some((4, 12)));
        assert_eq!(advertised(ApiKey::Produce), Some((3, 12)));
        assert_eq!(advertised(ApiKey::CreateTopics), Some((2, 7)));
        assert_eq!(advertised(ApiKey::InitProducerId), Some((0, 5)));
        assert_eq!(advertised(ApiKey::EndTxn), None);
    }
}
