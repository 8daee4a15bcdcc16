//! The Kafka API handlers of the group coordinator; the coordinator itself, with group
//! state and committed offsets, is the `groups` module at the crate root.

pub(super) mod describe_groups;
pub(super) mod find_coordinator;
pub(super) mod heartbeat;
pub(super) mod join_group;
pub(super) mod leave_group;
pub(super) mod list_groups;
pub(super) mod offset_commit;
pub(super) mod offset_fetch;
pub(super) mod sync_group;

use kafka_protocol::protocol::StrBytes;

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
