//! Why a group request was refused. `errors.rs` maps each reason to its Kafka code.

/// A group or offset request the coordinator refuses. Each variant is an answer the
/// client knows how to act on (rejoin, reset its member id, retry later, give up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("the coordinator does not know this member id")]
    UnknownMemberId,
    #[error("the request names a generation the group is not in")]
    IllegalGeneration,
    #[error("the group is rebalancing; the member must rejoin")]
    RebalanceInProgress,
    #[error("the member must join again with the member id it was given (KIP-394)")]
    MemberIdRequired,
    #[error("another member holds this group.instance.id (KIP-345)")]
    FencedInstanceId,
    #[error("the member's protocols are incompatible with the group's")]
    InconsistentGroupProtocol,
    #[error("the session timeout is outside the range the coordinator allows")]
    InvalidSessionTimeout,
    #[error("the topic or partition is not mirrored on this node")]
    UnknownTopicOrPartition,
    #[error("the offset metadata is longer than the coordinator keeps")]
    OffsetMetadataTooLarge,
    #[error("the coordinator cannot serve the request right now")]
    CoordinatorNotAvailable,
    #[error("another node of the cluster coordinates this group")]
    NotCoordinator,
}

/// Why the node did not write a group's offsets on its own behalf (offset sync).
#[derive(Debug, thiserror::Error)]
pub enum SyncCommitError {
    #[error("group {0} has active members, whose own commits take precedence")]
    ActiveMembers(String),
    #[error("group {group}: {reason}")]
    NotCommitted { group: String, reason: GroupError },
    #[error(transparent)]
    Storage(#[from] shadowlink_storage::StorageError),
}
