//! Why a group request was refused, and the one mapping of those reasons to Kafka codes.

use kafka_protocol::ResponseError;

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
}

impl GroupError {
    /// The Kafka error code for this refusal.
    pub fn code(self) -> i16 {
        let error = match self {
            GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
            GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
            GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
            GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
            GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
            GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
            GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
            GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
            GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
            GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        };
        error.code()
    }
}

/// `0` for success, else the error's code: the shape every response field wants.
pub fn code_of(result: Result<(), GroupError>) -> i16 {
    result.err().map_or(0, GroupError::code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_kafka_protocol() {
        assert_eq!(GroupError::UnknownMemberId.code(), 25);
        assert_eq!(GroupError::IllegalGeneration.code(), 22);
        assert_eq!(GroupError::RebalanceInProgress.code(), 27);
        assert_eq!(GroupError::MemberIdRequired.code(), 79);
        assert_eq!(GroupError::FencedInstanceId.code(), 82);
        assert_eq!(code_of(Ok(())), 0);
    }
}
