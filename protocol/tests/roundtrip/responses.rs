//! Response generators: each sets exactly the fields its version carries.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset as FetchEpochEndOffset, FetchableTopicResponse,
    LeaderIdAndEpoch as FetchLeader, NodeEndpoint as FetchNodeEndpoint, PartitionData, SnapshotId,
};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::*;

use super::Src;

pub fn api_versions(v: i16, s: &mut Src) -> ApiVersionsResponse {
    let mut m = ApiVersionsResponse::default();
    m.error_code = s.i16();
    m.api_keys = s.vec(4, |s| {
        ApiVersion::default()
            .with_api_key(s.i16())
            .with_min_version(s.i16())
            .with_max_version(s.i16())
    });
    if v >= 1 {
        m.throttle_time_ms = s.i32();
    }
    if v >= 3 {
        m.supported_features = s.vec(2, |s| {
            SupportedFeatureKey::default()
                .with_name(s.string())
                .with_min_version(s.i16())
                .with_max_version(s.i16())
        });
        m.finalized_features_epoch = s.i64();
        m.finalized_features = s.vec(2, |s| {
            FinalizedFeatureKey::default()
                .with_name(s.string())
                .with_max_version_level(s.i16())
                .with_min_version_level(s.i16())
        });
        m.zk_migration_ready = s.bool();
    }
    m
}

fn metadata_partition(v: i16, s: &mut Src) -> MetadataResponsePartition {
    let mut p = MetadataResponsePartition::default();
    p.error_code = s.i16();
    p.partition_index = s.i32();
    p.leader_id = BrokerId(s.i32());
    if v >= 7 {
        p.leader_epoch = s.i32();
    }
    p.replica_nodes = s.vec(3, |s| BrokerId(s.i32()));
    p.isr_nodes = s.vec(3, |s| BrokerId(s.i32()));
    if v >= 5 {
        p.offline_replicas = s.vec(2, |s| BrokerId(s.i32()));
    }
    p
}

pub fn metadata(v: i16, s: &mut Src) -> MetadataResponse {
    let mut m = MetadataResponse::default();
    m.brokers = s.vec(3, |s| {
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(s.i32());
        b.host = s.string();
        b.port = s.i32();
        if v >= 1 {
            b.rack = s.nullable(true);
        }
        b
    });
    if v >= 1 {
        m.controller_id = BrokerId(s.i32());
    }
    if v >= 2 {
        m.cluster_id = s.nullable(true);
    }
    if v >= 3 {
        m.throttle_time_ms = s.i32();
    }
    if (8..=10).contains(&v) {
        m.cluster_authorized_operations = s.i32();
    }
    if v >= 13 {
        m.error_code = s.i16();
    }
    m.topics = s.vec(3, |s| {
        let mut t = MetadataResponseTopic::default();
        t.error_code = s.i16();
        t.name = s.nullable(v >= 12).map(TopicName);
        if v >= 10 {
            t.topic_id = s.uuid();
        }
        if v >= 1 {
            t.is_internal = s.bool();
        }
        if v >= 8 {
            t.topic_authorized_operations = s.i32();
        }
        t.partitions = s.vec(3, |s| metadata_partition(v, s));
        t
    });
    m
}

fn fetch_partition(v: i16, s: &mut Src) -> PartitionData {
    let mut p = PartitionData::default();
    p.partition_index = s.i32();
    p.error_code = s.i16();
    p.high_watermark = s.i64();
    p.last_stable_offset = s.i64();
    if v >= 5 {
        p.log_start_offset = s.i64();
    }
    let aborted = s.vec(3, |s| {
        AbortedTransaction::default()
            .with_producer_id(ProducerId(s.i64()))
            .with_first_offset(s.i64())
    });
    p.aborted_transactions = if s.bool() { None } else { Some(aborted) };
    if v >= 11 {
        p.preferred_read_replica = BrokerId(s.i32());
    }
    if v >= 12 {
        p.diverging_epoch = FetchEpochEndOffset::default()
            .with_epoch(s.i32())
            .with_end_offset(s.i64());
        p.current_leader = FetchLeader::default()
            .with_leader_id(BrokerId(s.i32()))
            .with_leader_epoch(s.i32());
        p.snapshot_id = SnapshotId::default()
            .with_end_offset(s.i64())
            .with_epoch(s.i32());
    }
    p.records = Some(s.bytes());
    p
}

pub fn fetch(v: i16, s: &mut Src) -> FetchResponse {
    let mut m = FetchResponse::default();
    m.throttle_time_ms = s.i32();
    if v >= 7 {
        m.error_code = s.i16();
        m.session_id = s.i32();
    }
    m.responses = s.vec(3, |s| {
        let mut t = FetchableTopicResponse::default();
        if v <= 12 {
            t.topic = s.topic()
        } else {
            t.topic_id = s.uuid()
        }
        t.partitions = s.vec(3, |s| fetch_partition(v, s));
        t
    });
    if v >= 16 {
        m.node_endpoints = s.vec(2, |s| {
            FetchNodeEndpoint::default()
                .with_node_id(BrokerId(s.i32()))
                .with_host(s.string())
                .with_port(s.i32())
                .with_rack(s.nullable(true))
        });
    }
    m
}

pub fn list_offsets(v: i16, s: &mut Src) -> ListOffsetsResponse {
    let mut m = ListOffsetsResponse::default();
    if v >= 2 {
        m.throttle_time_ms = s.i32();
    }
    m.topics = s.vec(3, |s| {
        let mut t = ListOffsetsTopicResponse::default();
        t.name = s.topic();
        t.partitions = s.vec(3, |s| {
            let mut p = ListOffsetsPartitionResponse::default();
            p.partition_index = s.i32();
            p.error_code = s.i16();
            p.timestamp = s.i64();
            p.offset = s.i64();
            if v >= 4 {
                p.leader_epoch = s.i32();
            }
            p
        });
        t
    });
    m
}

fn produce_partition(v: i16, s: &mut Src) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default();
    p.index = s.i32();
    p.error_code = s.i16();
    p.base_offset = s.i64();
    p.log_append_time_ms = s.i64();
    if v >= 5 {
        p.log_start_offset = s.i64();
    }
    if v >= 8 {
        p.record_errors = s.vec(2, |s| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(s.i32())
                .with_batch_index_error_message(s.nullable(true))
        });
        p.error_message = s.nullable(true);
    }
    if v >= 10 {
        p.current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(s.i32()))
            .with_leader_epoch(s.i32());
    }
    p
}

pub fn produce(v: i16, s: &mut Src) -> ProduceResponse {
    let mut m = ProduceResponse::default();
    m.throttle_time_ms = s.i32();
    m.responses = s.vec(3, |s| {
        let mut t = TopicProduceResponse::default();
        if v <= 12 {
            t.name = s.topic()
        } else {
            t.topic_id = s.uuid()
        }
        t.partition_responses = s.vec(3, |s| produce_partition(v, s));
        t
    });
    if v >= 10 {
        m.node_endpoints = s.vec(2, |s| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(s.i32()))
                .with_host(s.string())
                .with_port(s.i32())
                .with_rack(s.nullable(true))
        });
    }
    m
}

pub fn offset_commit(v: i16, s: &mut Src) -> OffsetCommitResponse {
    let mut m = OffsetCommitResponse::default();
    if v >= 3 {
        m.throttle_time_ms = s.i32();
    }
    m.topics = s.vec(3, |s| {
        OffsetCommitResponseTopic::default()
            .with_name(s.topic())
            .with_partitions(s.vec(3, |s| {
                OffsetCommitResponsePartition::default()
                    .with_partition_index(s.i32())
                    .with_error_code(s.i16())
            }))
    });
    m
}

pub fn offset_fetch(v: i16, s: &mut Src) -> OffsetFetchResponse {
    let mut m = OffsetFetchResponse::default();
    if v >= 3 {
        m.throttle_time_ms = s.i32();
    }
    if v <= 7 {
        if v >= 2 {
            m.error_code = s.i16();
        }
        m.topics = s.vec(3, |s| {
            let partitions = s.vec(3, |s| {
                let mut p = OffsetFetchResponsePartition::default();
                p.partition_index = s.i32();
                p.committed_offset = s.i64();
                if v >= 5 {
                    p.committed_leader_epoch = s.i32();
                }
                p.metadata = s.nullable(true);
                p.error_code = s.i16();
                p
            });
            OffsetFetchResponseTopic::default()
                .with_name(s.topic())
                .with_partitions(partitions)
        });
        return m;
    }
    m.groups = s.vec(3, |s| {
        let topics = s.vec(3, |s| {
            let partitions = s.vec(3, |s| {
                OffsetFetchResponsePartitions::default()
                    .with_partition_index(s.i32())
                    .with_committed_offset(s.i64())
                    .with_committed_leader_epoch(s.i32())
                    .with_metadata(s.nullable(true))
                    .with_error_code(s.i16())
            });
            OffsetFetchResponseTopics::default()
                .with_name(s.topic())
                .with_partitions(partitions)
        });
        OffsetFetchResponseGroup::default()
            .with_group_id(s.group())
            .with_topics(topics)
            .with_error_code(s.i16())
    });
    m
}

pub fn find_coordinator(v: i16, s: &mut Src) -> FindCoordinatorResponse {
    let mut m = FindCoordinatorResponse::default();
    if v >= 1 {
        m.throttle_time_ms = s.i32();
    }
    if v <= 3 {
        m.error_code = s.i16();
        if v >= 1 {
            m.error_message = s.nullable(true);
        }
        m.node_id = BrokerId(s.i32());
        m.host = s.string();
        m.port = s.i32();
    } else {
        m.coordinators = s.vec(3, |s| {
            Coordinator::default()
                .with_key(s.string())
                .with_node_id(BrokerId(s.i32()))
                .with_host(s.string())
                .with_port(s.i32())
                .with_error_code(s.i16())
                .with_error_message(s.nullable(true))
        });
    }
    m
}

pub fn join_group(v: i16, s: &mut Src) -> JoinGroupResponse {
    let mut m = JoinGroupResponse::default();
    if v >= 2 {
        m.throttle_time_ms = s.i32();
    }
    m.error_code = s.i16();
    m.generation_id = s.i32();
    if v >= 7 {
        m.protocol_type = s.nullable(true);
    }
    m.protocol_name = s.nullable(v >= 7);
    m.leader = s.string();
    if v >= 9 {
        m.skip_assignment = s.bool();
    }
    m.member_id = s.string();
    m.members = s.vec(3, |s| {
        let mut member = JoinGroupResponseMember::default();
        member.member_id = s.string();
        if v >= 5 {
            member.group_instance_id = s.nullable(true);
        }
        member.metadata = s.bytes();
        member
    });
    m
}

pub fn sync_group(v: i16, s: &mut Src) -> SyncGroupResponse {
    let mut m = SyncGroupResponse::default();
    if v >= 1 {
        m.throttle_time_ms = s.i32();
    }
    m.error_code = s.i16();
    if v >= 5 {
        m.protocol_type = s.nullable(true);
        m.protocol_name = s.nullable(true);
    }
    m.assignment = s.bytes();
    m
}

pub fn heartbeat(v: i16, s: &mut Src) -> HeartbeatResponse {
    let mut m = HeartbeatResponse::default();
    if v >= 1 {
        m.throttle_time_ms = s.i32();
    }
    m.error_code = s.i16();
    m
}

pub fn leave_group(v: i16, s: &mut Src) -> LeaveGroupResponse {
    let mut m = LeaveGroupResponse::default();
    if v >= 1 {
        m.throttle_time_ms = s.i32();
    }
    m.error_code = s.i16();
    if v >= 3 {
        m.members = s.vec(3, |s| {
            MemberResponse::default()
                .with_member_id(s.string())
                .with_group_instance_id(s.nullable(true))
                .with_error_code(s.i16())
        });
    }
    m
}

pub fn describe_configs(v: i16, s: &mut Src) -> DescribeConfigsResponse {
    let mut m = DescribeConfigsResponse::default();
    m.throttle_time_ms = s.i32();
    m.results = s.vec(3, |s| {
        let configs = s.vec(3, |s| {
            let mut c = DescribeConfigsResourceResult::default();
            c.name = s.string();
            c.value = s.nullable(true);
            c.read_only = s.bool();
            c.config_source = s.i8();
            c.is_sensitive = s.bool();
            c.synonyms = s.vec(2, |s| {
                DescribeConfigsSynonym::default()
                    .with_name(s.string())
                    .with_value(s.nullable(true))
                    .with_source(s.i8())
            });
            if v >= 3 {
                c.config_type = s.i8();
                c.documentation = s.nullable(true);
            }
            c
        });
        DescribeConfigsResult::default()
            .with_error_code(s.i16())
            .with_error_message(s.nullable(true))
            .with_resource_type(s.i8())
            .with_resource_name(s.string())
            .with_configs(configs)
    });
    m
}

pub fn offset_for_leader_epoch(_v: i16, s: &mut Src) -> OffsetForLeaderEpochResponse {
    let mut m = OffsetForLeaderEpochResponse::default();
    m.throttle_time_ms = s.i32();
    m.topics = s.vec(3, |s| {
        OffsetForLeaderTopicResult::default()
            .with_topic(s.topic())
            .with_partitions(s.vec(3, |s| {
                EpochEndOffset::default()
                    .with_error_code(s.i16())
                    .with_partition(s.i32())
                    .with_leader_epoch(s.i32())
                    .with_end_offset(s.i64())
            }))
    });
    m
}
