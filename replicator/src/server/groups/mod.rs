//! Consumer groups (classic protocol): the coordinator and its Kafka API handlers.
//!
//! This node is the coordinator of every group (it is a one-broker cluster to clients).
//! Membership lives in memory, as in Kafka a restart makes members rejoin; committed
//! offsets are persisted and survive restarts.

mod coordinator;
mod describe_groups;
mod error;
mod find_coordinator;
mod group;
mod heartbeat;
mod join_group;
mod leave_group;
mod list_groups;
mod offset_commit;
mod offset_fetch;
mod offsets;
mod sync_group;
#[cfg(test)]
mod tests;
mod types;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::{decode_body, RequestError, RequestHeader};

use super::connection::ConnectionError;
use super::{Reply, ServerContext};

pub use coordinator::{Coordinator, ListedGroup};
pub use error::GroupError;
pub use group::GroupConfig;

/// Group APIs this node answers, with the versions the handlers implement. Every API
/// starts at the lowest version the codec decodes: librdkafka before 2.11.1 enables its
/// balanced consumer only when the broker's ranges include v0 of the group APIs.
pub const HANDLED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
];

/// Handles one group API request.
pub async fn dispatch(
    ctx: &ServerContext,
    header: &RequestHeader,
    body: Bytes,
) -> Result<Reply, ConnectionError> {
    let reply = match header.api_key {
        ApiKey::FindCoordinator => {
            find_coordinator::handle(ctx, header, decode_body(header, body)?)?
        }
        ApiKey::JoinGroup => join_group::handle(ctx, header, decode_body(header, body)?).await?,
        ApiKey::SyncGroup => sync_group::handle(ctx, header, decode_body(header, body)?).await?,
        ApiKey::Heartbeat => heartbeat::handle(ctx, header, decode_body(header, body)?)?,
        ApiKey::LeaveGroup => leave_group::handle(ctx, header, decode_body(header, body)?)?,
        ApiKey::OffsetCommit => {
            offset_commit::handle(ctx, header, decode_body(header, body)?).await?
        }
        ApiKey::OffsetFetch => offset_fetch::handle(ctx, header, decode_body(header, body)?)?,
        ApiKey::ListGroups => list_groups::handle(ctx, header, decode_body(header, body)?)?,
        ApiKey::DescribeGroups => describe_groups::handle(ctx, header, decode_body(header, body)?)?,
        other => {
            return Err(RequestError::UnsupportedApi {
                api_key: other,
                version: header.api_version,
                correlation_id: header.correlation_id,
            }
            .into())
        }
    };
    Ok(reply)
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A wire millisecond count as a duration; negative values become zero.
fn millis(ms: i32) -> tokio::time::Duration {
    tokio::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// An optional wire string, with empty treated as absent (clients send either).
fn non_empty(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().filter(|s| !s.is_empty()).map(|s| s.to_string())
}
