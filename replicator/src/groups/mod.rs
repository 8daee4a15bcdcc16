//! Consumer groups (classic protocol): the coordinator, each group's membership state
//! machine and the committed-offset store.
//!
//! A node on its own coordinates every group (it is a one-broker cluster to clients). A
//! cluster node coordinates the groups the cluster places on it and keeps their committed
//! offsets in etcd first (`shared`), so they survive the node. Membership lives in memory, as in Kafka a restart makes members rejoin; committed
//! offsets are persisted and survive restarts, until the group has had no members and no
//! commit for `groups.offsets_retention`. Two callers share this state: the Kafka
//! API handlers in `server::groups` and the link's offset sync, which copies the source's
//! commits here.

mod coordinator;
mod error;
pub mod expiry;
mod group;
mod offsets;
mod shared;
#[cfg(test)]
mod tests;
mod types;

pub use coordinator::{Coordinator, ListedGroup};
pub use error::{GroupError, SyncCommitError};
pub use offsets::{Committed, TopicPartition, MAX_METADATA_BYTES};
pub use shared::{GroupOffsets, SharedError, SharedOffsets, Stored};
pub use types::{
    GroupConfig, GroupSummary, JoinOutcome, JoinRequest, JoinedMember, MemberSummary, Phase,
    SyncOutcome, SyncRequest,
};
