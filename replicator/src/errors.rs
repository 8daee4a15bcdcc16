//! The one place where internal errors become Kafka error codes.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use shadowlink_storage::StorageError;
use tokio::task::JoinError;

use crate::cluster::CreateTopicError;
use crate::groups::GroupError;
use crate::mirror::owned::ProduceError;
use crate::mirror::producer_ids::ProducerIdError;
use crate::mirror::producer_state::SequenceError;
use crate::mirror::{EpochMismatch, OwnTopicError, Store};
use crate::server::SessionError;
use crate::txn::TxnError;

/// The Kafka error code a client sees for a storage failure.
pub fn storage_error_code(error: &StorageError) -> i16 {
    match error {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        _ => ResponseError::KafkaStorageError.code(),
    }
}

/// The code for work that failed inside the node (its task panicked or was cancelled):
/// nothing the client sent is at fault, and the node logs the cause.
pub fn task_failed_code(_: &JoinError) -> i16 {
    ResponseError::UnknownServerError.code()
}

/// The code for InitProducerId when no producer id can be handed out.
pub fn producer_id_error_code(_: &ProducerIdError) -> i16 {
    ResponseError::KafkaStorageError.code()
}

/// Why a topic or partition named in a request is not served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unserved {
    /// On disk but unreadable at start. KAFKA_STORAGE_ERROR, as Kafka answers for a
    /// partition whose log directory failed, so clients see a failure instead of a topic
    /// that silently vanished.
    Offline,
    Unknown,
}

impl Unserved {
    pub fn code(self) -> i16 {
        match self {
            Unserved::Offline => ResponseError::KafkaStorageError.code(),
            Unserved::Unknown => ResponseError::UnknownTopicOrPartition.code(),
        }
    }
}

/// Why the store does not serve `partition` of `topic`, or the whole topic for `None`.
pub fn unserved(store: &Store, topic: &str, partition: Option<i32>) -> Unserved {
    match store.offline_reason(topic, partition) {
        Some(_) => Unserved::Offline,
        None => Unserved::Unknown,
    }
}

/// Requests the node declines whatever the state of its topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declined {
    /// A negative ListOffsets timestamp that names no special offset.
    UnknownSpecialTimestamp,
    /// Produce with a null record set.
    NullRecords,
    /// FindCoordinator with a key type Kafka does not define.
    UnknownCoordinatorKey,
}

impl Declined {
    pub fn code(self) -> i16 {
        match self {
            Declined::UnknownSpecialTimestamp => ResponseError::UnsupportedVersion.code(),
            Declined::NullRecords => ResponseError::InvalidRecord.code(),
            Declined::UnknownCoordinatorKey => ResponseError::InvalidRequest.code(),
        }
    }
}

/// The Kafka error code for a group or offset request the coordinator refuses.
pub fn group_error_code(error: GroupError) -> i16 {
    let error = match error {
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
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
    };
    error.code()
}

/// `0` for success, else the refusal's code: the shape every group response field wants.
pub fn group_code(result: Result<(), GroupError>) -> i16 {
    result.err().map_or(0, group_error_code)
}

/// The Kafka error code for a request whose `current_leader_epoch` is not the
/// partition's (KIP-320): clients refresh metadata on either and retry.
pub fn epoch_error_code(error: &EpochMismatch) -> i16 {
    match error {
        EpochMismatch::Fenced { .. } => ResponseError::FencedLeaderEpoch.code(),
        EpochMismatch::Unknown { .. } => ResponseError::UnknownLeaderEpoch.code(),
    }
}

/// Why a partition cannot join a transaction: the node writes only its own topics, so a
/// shadow's partition is refused as Produce refuses it, with POLICY_VIOLATION.
pub fn txn_partition_refusal(store: &Store, topic: &str, partition: i32) -> Option<(i16, String)> {
    match store.topic(topic) {
        Some(t) if t.is_owned() && t.partition(partition).is_some() => None,
        Some(t) if t.is_owned() => {
            let code = unserved(store, topic, Some(partition)).code();
            Some((
                code,
                format!("{topic} has no partition {partition} served here"),
            ))
        }
        _ => {
            let refusal = topic_write_refusal(store, topic);
            Some((refusal.code(), refusal.to_string()))
        }
    }
}

/// The code of a whole Fetch whose KIP-227 session cannot serve it. A client that sent
/// a second request while its first one is still served is out of step with the
/// session's epochs, as Kafka's answer to pipelined session fetches says.
pub fn fetch_session_error_code(error: &SessionError) -> i16 {
    match error {
        SessionError::NotFound { .. } => ResponseError::FetchSessionIdNotFound.code(),
        SessionError::InvalidEpoch { .. } | SessionError::Busy { .. } => {
            ResponseError::InvalidFetchSessionEpoch.code()
        }
    }
}

/// Why a write to a topic (Produce, DeleteRecords, CreatePartitions, DeleteTopics,
/// config changes) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "topic {topic} is a read-only shadow of link {link}; to make it writable, fail it over: \
         shadowlink failover --link {link} --topic {topic}"
    )]
    Shadow { topic: String, link: String },
    #[error("unknown topic {topic}")]
    Unknown { topic: String },
    #[error("topic {topic} is owned by this node, which does not support this change to it")]
    Unsupported { topic: String },
    #[error("topic {topic} is offline on this node: {reason}")]
    Offline { topic: String, reason: String },
}

impl Refusal {
    /// POLICY_VIOLATION for shadow topics, as Redpanda answers: the write is not a
    /// transient failure, and clients must not retry it.
    pub fn code(&self) -> i16 {
        match self {
            Refusal::Shadow { .. } | Refusal::Unsupported { .. } => {
                ResponseError::PolicyViolation.code()
            }
            Refusal::Unknown { .. } => Unserved::Unknown.code(),
            Refusal::Offline { .. } => Unserved::Offline.code(),
        }
    }
}

/// Why a client may not change `topic` on this node with an admin request (DeleteRecords,
/// CreatePartitions, DeleteTopics, config changes), or produce to it. Owned topics accept
/// Produce (the caller checks ownership first) but none of those admin changes yet.
pub fn topic_write_refusal(store: &Store, topic: &str) -> Refusal {
    match store.topic(topic) {
        Some(t) if t.is_owned() => Refusal::Unsupported {
            topic: topic.to_string(),
        },
        Some(t) => Refusal::Shadow {
            topic: topic.to_string(),
            link: t.meta().link,
        },
        None => match store.offline_reason(topic, None) {
            Some(reason) => Refusal::Offline {
                topic: topic.to_string(),
                reason,
            },
            None => Refusal::Unknown {
                topic: topic.to_string(),
            },
        },
    }
}

/// ConfigResource type of a topic.
const TOPIC_RESOURCE: i8 = 2;

/// The error code and message answered to a config change of `resource_name`.
pub fn config_change_refusal(
    store: &Store,
    resource_type: i8,
    resource_name: &str,
) -> (i16, String) {
    if resource_type == TOPIC_RESOURCE {
        let refusal = topic_write_refusal(store, resource_name);
        let message = match &refusal {
            Refusal::Shadow { .. } => format!("{refusal}; its configs follow the source topic"),
            Refusal::Unknown { .. } | Refusal::Unsupported { .. } | Refusal::Offline { .. } => {
                refusal.to_string()
            }
        };
        return (refusal.code(), message);
    }
    (
        ResponseError::InvalidRequest.code(),
        "shadowlink has no dynamic configs besides those synced to shadow topics".to_string(),
    )
}

/// Why CreateTopics did not create a topic.
#[derive(Debug, thiserror::Error)]
pub enum CreateRefusal {
    #[error("topic {0} appears more than once in the request")]
    Duplicate(String),
    #[error("Authorization failed: not allowed to create topic {0}")]
    Unauthorized(String),
    #[error(
        "topic {topic} is mirrored by link {link} (its include matches the name), so this \
         node cannot also own it; create it on the link's source cluster, or exclude it \
         from the link"
    )]
    Mirrored { topic: String, link: String },
    #[error("manual replica assignments are not supported")]
    ManualAssignment,
    #[error(
        "one request may create at most {max} partitions (kafka.max_partitions_per_request); \
         this one asks for {wanted}"
    )]
    TooManyForRequest { max: i64, wanted: i64 },
    #[error("replication factor {0} is larger than the one node of this cluster")]
    ReplicationFactor(i16),
    #[error("replication factor {asked} must be from 1 to the {live} live nodes of the cluster")]
    ReplicationFactorAboveNodes { asked: i16, live: usize },
    #[error(transparent)]
    Cluster(#[from] CreateTopicError),
    #[error("config {0} is not supported by shadowlink")]
    UnsupportedConfig(String),
    #[error("invalid value {value:?} for config {name}")]
    InvalidConfig { name: String, value: String },
    #[error(transparent)]
    Topic(#[from] OwnTopicError),
    #[error(transparent)]
    Task(#[from] JoinError),
}

impl CreateRefusal {
    pub fn code(&self) -> i16 {
        match self {
            CreateRefusal::Duplicate(_) => ResponseError::InvalidRequest.code(),
            CreateRefusal::Unauthorized(_) => Denied::Topic.code(),
            CreateRefusal::Mirrored { .. } => ResponseError::PolicyViolation.code(),
            CreateRefusal::ManualAssignment => ResponseError::InvalidReplicaAssignment.code(),
            CreateRefusal::TooManyForRequest { .. } => ResponseError::InvalidPartitions.code(),
            CreateRefusal::ReplicationFactor(_)
            | CreateRefusal::ReplicationFactorAboveNodes { .. } => {
                ResponseError::InvalidReplicationFactor.code()
            }
            CreateRefusal::Cluster(CreateTopicError::Exists(_)) => {
                ResponseError::TopicAlreadyExists.code()
            }
            CreateRefusal::Cluster(CreateTopicError::NotPlaced { .. }) => {
                ResponseError::RequestTimedOut.code()
            }
            CreateRefusal::UnsupportedConfig(_) | CreateRefusal::InvalidConfig { .. } => {
                ResponseError::InvalidConfig.code()
            }
            CreateRefusal::Topic(e) => own_topic_error_code(e),
            CreateRefusal::Task(e) => task_failed_code(e),
        }
    }
}

/// The Kafka error code for an owned topic that was not created.
pub fn own_topic_error_code(error: &OwnTopicError) -> i16 {
    match error {
        OwnTopicError::InvalidName { .. } | OwnTopicError::Collides { .. } => {
            ResponseError::InvalidTopicException.code()
        }
        OwnTopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        OwnTopicError::TooManyPartitions { .. } => ResponseError::PolicyViolation.code(),
        OwnTopicError::Exists(_) | OwnTopicError::Shadow { .. } | OwnTopicError::Offline { .. } => {
            ResponseError::TopicAlreadyExists.code()
        }
        OwnTopicError::Storage(e) => storage_error_code(e),
    }
}

/// The Kafka error code a producer sees for a batch that was not written.
pub fn produce_error_code(error: &ProduceError) -> i16 {
    match error {
        ProduceError::NotOwned | ProduceError::Fenced { .. } => {
            ResponseError::PolicyViolation.code()
        }
        ProduceError::Moving => ResponseError::NotLeaderOrFollower.code(),
        ProduceError::Corrupt(_) => ResponseError::CorruptMessage.code(),
        ProduceError::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
        ProduceError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType.code(),
        ProduceError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        // Kafka 2.7+ answers a stale epoch on Produce with INVALID_PRODUCER_EPOCH, which
        // clients recover from (by bumping their epoch), rather than the fatal PRODUCER_FENCED.
        ProduceError::Sequence(SequenceError::StaleEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch.code()
        }
        ProduceError::Sequence(SequenceError::OutOfOrder { .. }) => {
            ResponseError::OutOfOrderSequenceNumber.code()
        }
        ProduceError::Storage(e) => storage_error_code(e),
    }
}

/// The Kafka error code for a transaction request the coordinator refuses, or for a
/// transactional Produce it does not verify. `api` and `version` matter for fencing:
/// Kafka answers INVALID_PRODUCER_EPOCH (47) where PRODUCER_FENCED (90) is unknown to
/// the client (InitProducerId below v4; AddPartitionsToTxn, AddOffsetsToTxn and EndTxn
/// below v2), and always on Produce and TxnOffsetCommit.
pub fn txn_error_code(error: &TxnError, api: ApiKey, version: i16) -> i16 {
    let code = match error {
        TxnError::EmptyTransactionalId => ResponseError::InvalidRequest,
        TxnError::InvalidTimeout(_) => ResponseError::InvalidTransactionTimeout,
        TxnError::ProducerIdMapping { .. } => ResponseError::InvalidProducerIdMapping,
        TxnError::Fenced { .. } => {
            let fenced_known = match api {
                ApiKey::InitProducerId => version >= 4,
                ApiKey::AddPartitionsToTxn | ApiKey::AddOffsetsToTxn | ApiKey::EndTxn => {
                    version >= 2
                }
                _ => false,
            };
            match fenced_known {
                true => ResponseError::ProducerFenced,
                false => ResponseError::InvalidProducerEpoch,
            }
        }
        // A marker that cannot be written yet leaves the transaction decided: the
        // client retries until the sweep has written it.
        TxnError::Concurrent(_) | TxnError::Marker(_) => ResponseError::ConcurrentTransactions,
        TxnError::InvalidState { .. } => ResponseError::InvalidTxnState,
        // KIP-890: Produce v11+ names a partition missing from the transaction abortable.
        TxnError::NotInTransaction { .. } if version >= 11 => ResponseError::TransactionAbortable,
        TxnError::NotInTransaction { .. } => ResponseError::InvalidTxnState,
        // The state was not persisted, so nothing changed: a retriable coordinator error.
        TxnError::Storage(_) => ResponseError::CoordinatorNotAvailable,
        TxnError::ProducerIds(e) => return producer_id_error_code(e),
    };
    code.code()
}

/// What the principal of a request was not granted (see `authz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Topic,
    Group,
    Cluster,
    /// Transactional ids are not named in rules: a principal that may write no topic
    /// may not open a transaction either.
    TransactionalId,
}

impl Denied {
    pub fn code(self) -> i16 {
        match self {
            Denied::Topic => ResponseError::TopicAuthorizationFailed.code(),
            Denied::Group => ResponseError::GroupAuthorizationFailed.code(),
            Denied::Cluster => ResponseError::ClusterAuthorizationFailed.code(),
            Denied::TransactionalId => ResponseError::TransactionalIdAuthorizationFailed.code(),
        }
    }

    /// The message Kafka answers with, naming the resource.
    pub fn message(self, name: &str) -> String {
        match self {
            Denied::Topic => format!("Not authorized to access topics: [{name}]"),
            Denied::Group => format!("Not authorized to access group: {name}"),
            Denied::Cluster => "Cluster authorization failed.".to_string(),
            Denied::TransactionalId => "Transactional Id authorization failed.".to_string(),
        }
    }
}

/// Why the listener refuses a SASL exchange; each refusal closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslRefusal {
    /// SaslHandshake or SaslAuthenticate out of order, or after authentication.
    IllegalState,
    /// A mechanism the listener does not offer.
    UnsupportedMechanism,
    /// Unknown user, wrong password or a malformed token.
    AuthenticationFailed,
}

impl SaslRefusal {
    pub fn code(self) -> i16 {
        match self {
            SaslRefusal::IllegalState => ResponseError::IllegalSaslState.code(),
            SaslRefusal::UnsupportedMechanism => ResponseError::UnsupportedSaslMechanism.code(),
            SaslRefusal::AuthenticationFailed => ResponseError::SaslAuthenticationFailed.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink_protocol::batch::BatchError;

    #[test]
    fn group_refusals_map_to_kafka_codes() {
        assert_eq!(group_error_code(GroupError::UnknownMemberId), 25);
        assert_eq!(group_error_code(GroupError::IllegalGeneration), 22);
        assert_eq!(group_error_code(GroupError::RebalanceInProgress), 27);
        assert_eq!(group_error_code(GroupError::MemberIdRequired), 79);
        assert_eq!(group_error_code(GroupError::FencedInstanceId), 82);
        assert_eq!(group_code(Ok(())), 0);
        assert_eq!(Declined::UnknownCoordinatorKey.code(), 42);
    }

    #[test]
    fn produce_errors_map_to_kafka_codes() {
        let stale = SequenceError::StaleEpoch {
            producer_id: 1,
            epoch: 0,
            current: 1,
        };
        let gap = SequenceError::OutOfOrder {
            producer_id: 1,
            first_seq: 5,
            expected: 3,
        };
        let crc = BatchError::CrcMismatch {
            base_offset: 0,
            stored: 1,
            computed: 2,
        };
        let cases = [
            (ProduceError::Corrupt(crc), 2),
            (ProduceError::TooLarge { size: 2, max: 1 }, 10),
            (ProduceError::Sequence(gap), 45),
            (ProduceError::Sequence(stale), 47),
            (ProduceError::InvalidRecord(String::new()), 87),
            (ProduceError::NotOwned, 44),
            (ProduceError::Storage(StorageError::Poisoned), 56),
        ];
        for (error, code) in cases {
            assert_eq!(produce_error_code(&error), code, "{error}");
        }
    }

    #[test]
    fn transaction_refusals_map_to_kafka_codes_per_api_and_version() {
        let fenced = || TxnError::Fenced {
            transactional_id: "t".into(),
            producer_id: 1,
            epoch: 0,
            current: 1,
        };
        let cases = [
            (fenced(), ApiKey::InitProducerId, 3, 47),
            (fenced(), ApiKey::InitProducerId, 4, 90),
            (fenced(), ApiKey::EndTxn, 1, 47),
            (fenced(), ApiKey::EndTxn, 2, 90),
            (fenced(), ApiKey::AddPartitionsToTxn, 3, 90),
            (fenced(), ApiKey::Produce, 9, 47),
            (fenced(), ApiKey::TxnOffsetCommit, 3, 47),
            (TxnError::InvalidTimeout(0), ApiKey::InitProducerId, 4, 50),
            (TxnError::Concurrent("t".into()), ApiKey::EndTxn, 3, 51),
            (
                TxnError::EmptyTransactionalId,
                ApiKey::InitProducerId,
                4,
                42,
            ),
        ];
        for (error, api, version, code) in cases {
            assert_eq!(
                txn_error_code(&error, api, version),
                code,
                "{error} {api:?} v{version}"
            );
        }
        let missing = || TxnError::NotInTransaction {
            producer_id: 1,
            topic: "t".into(),
            partition: 0,
        };
        assert_eq!(txn_error_code(&missing(), ApiKey::Produce, 10), 48);
        assert_eq!(txn_error_code(&missing(), ApiKey::Produce, 11), 120);
    }

    #[test]
    fn create_refusals_map_to_kafka_codes() {
        let mirrored = CreateRefusal::Mirrored {
            topic: "a_orders".into(),
            link: "from-a".into(),
        };
        let cases = [
            (CreateRefusal::Duplicate("t".into()), 42),
            (CreateRefusal::Unauthorized("t".into()), 29),
            (mirrored, 44),
            (CreateRefusal::ManualAssignment, 39),
            (CreateRefusal::TooManyForRequest { max: 1, wanted: 2 }, 37),
            (CreateRefusal::ReplicationFactor(3), 38),
            (CreateRefusal::UnsupportedConfig("x".into()), 40),
            (OwnTopicError::Exists("t".into()).into(), 36),
            (OwnTopicError::InvalidPartitions(0).into(), 37),
            (
                OwnTopicError::InvalidName {
                    name: "a b".into(),
                    reason: "it has a space",
                }
                .into(),
                17,
            ),
        ];
        for (refusal, code) in cases {
            assert_eq!(refusal.code(), code, "{refusal}");
        }
    }

    #[test]
    fn declined_and_unserved_requests_map_to_kafka_codes() {
        let declined = [
            (Declined::UnknownSpecialTimestamp, 35),
            (Declined::NullRecords, 87),
        ];
        for (declined, code) in declined {
            assert_eq!(declined.code(), code, "{declined:?}");
        }
        assert_eq!(Unserved::Offline.code(), 56);
        assert_eq!(Unserved::Unknown.code(), 3);
    }

    #[test]
    fn sasl_refusals_map_to_kafka_codes() {
        assert_eq!(SaslRefusal::IllegalState.code(), 34);
        assert_eq!(SaslRefusal::UnsupportedMechanism.code(), 33);
        assert_eq!(SaslRefusal::AuthenticationFailed.code(), 58);
    }

    #[test]
    fn authorization_refusals_map_to_kafka_codes() {
        assert_eq!(Denied::Topic.code(), 29);
        assert_eq!(Denied::Group.code(), 30);
        assert_eq!(Denied::Cluster.code(), 31);
        assert_eq!(Denied::TransactionalId.code(), 53);
    }
}
