//! Request generators: each sets exactly the fields its version carries.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ForgottenTopic, ReplicaState,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;

use super::Src;

pub fn api_versions(v: i16, s: &mut Src) -> ApiVersionsRequest {
    let mut m = ApiVersionsRequest::default();
    if v >= 3 {
        m.client_software_name = s.string();
        m.client_software_version = s.string();
    }
    m
}

pub fn metadata(v: i16, s: &mut Src) -> MetadataRequest {
    let mut m = MetadataRequest::default();
    let topics = s.vec(3, |s| {
        let mut t = MetadataRequestTopic::default();
        t.name = s.nullable(v >= 10).map(TopicName);
        if v >= 10 {
            t.topic_id = s.uuid();
        }
        t
    });
    // v0 has no null ("all topics" is the empty list there).
    m.topics = if v >= 1 && s.bool() {
        None
    } else {
        Some(topics)
    };
    if v >= 4 {
        m.allow_auto_topic_creation = s.bool();
    }
    if (8..=10).contains(&v) {
        m.include_cluster_authorized_operations = s.bool();
    }
    if v >= 8 {
        m.include_topic_authorized_operations = s.bool();
    }
    m
}

fn fetch_partition(v: i16, s: &mut Src) -> FetchPartition {
    let mut p = FetchPartition::default();
    p.partition = s.i32();
    p.fetch_offset = s.i64();
    p.partition_max_bytes = s.i32();
    if v >= 9 {
        p.current_leader_epoch = s.i32();
    }
    if v >= 12 {
        p.last_fetched_epoch = s.i32();
    }
    if v >= 5 {
        p.log_start_offset = s.i64();
    }
    if v >= 17 {
        p.replica_directory_id = s.uuid();
    }
    if v >= 18 {
        p.high_watermark = s.i64();
    }
    p
}

pub fn fetch(v: i16, s: &mut Src) -> FetchRequest {
    let mut m = FetchRequest::default();
    m.max_wait_ms = s.i32();
    m.min_bytes = s.i32();
    m.max_bytes = s.i32();
    m.isolation_level = s.i8();
    if v <= 14 {
        m.replica_id = BrokerId(s.i32());
    } else {
        m.replica_state = ReplicaState::default()
            .with_replica_id(BrokerId(s.i32()))
            .with_replica_epoch(s.i64());
    }
    if v >= 7 {
        m.session_id = s.i32();
        m.session_epoch = s.i32();
        m.forgotten_topics_data = s.vec(2, |s| {
            let mut t = ForgottenTopic::default();
            if v <= 12 {
                t.topic = s.topic()
            } else {
                t.topic_id = s.uuid()
            }
            t.partitions = s.vec(3, Src::i32);
            t
        });
    }
    if v >= 11 {
        m.rack_id = s.string();
    }
    if v >= 12 {
        m.cluster_id = s.nullable(true);
    }
    m.topics = s.vec(3, |s| {
        let mut t = FetchTopic::default();
        if v <= 12 {
            t.topic = s.topic()
        } else {
            t.topic_id = s.uuid()
        }
        t.partitions = s.vec(3, |s| fetch_partition(v, s));
        t
    });
    m
}

pub fn list_offsets(v: i16, s: &mut Src) -> ListOffsetsRequest {
    let mut m = ListOffsetsRequest::default();
    m.replica_id = BrokerId(s.i32());
    if v >= 2 {
        m.isolation_level = s.i8();
    }
    if v >= 10 {
        m.timeout_ms = s.i32();
    }
    m.topics = s.vec(3, |s| {
        let mut t = ListOffsetsTopic::default();
        t.name = s.topic();
        t.partitions = s.vec(3, |s| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = s.i32();
            p.timestamp = s.i64();
            if v >= 4 {
                p.current_leader_epoch = s.i32();
            }
            p
        });
        t
    });
    m
}

pub fn produce(v: i16, s: &mut Src) -> ProduceRequest {
    let mut m = ProduceRequest::default();
    m.transactional_id = s.nullable(true).map(TransactionalId);
    m.acks = s.i16();
    m.timeout_ms = s.i32();
    m.topic_data = s.vec(3, |s| {
        let mut t = TopicProduceData::default();
        if v <= 12 {
            t.name = s.topic()
        } else {
            t.topic_id = s.uuid()
        }
        t.partition_data = s.vec(3, |s| {
            PartitionProduceData::default()
                .with_index(s.i32())
                .with_records(Some(s.bytes()))
        });
        t
    });
    m
}

pub fn offset_commit(v: i16, s: &mut Src) -> OffsetCommitRequest {
    let mut m = OffsetCommitRequest::default();
    m.group_id = s.group();
    m.generation_id_or_member_epoch = s.i32();
    m.member_id = s.string();
    if v >= 7 {
        m.group_instance_id = s.nullable(true);
    }
    if v <= 4 {
        m.retention_time_ms = s.i64();
    }
    m.topics = s.vec(3, |s| {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = s.topic();
        t.partitions = s.vec(3, |s| {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = s.i32();
            p.committed_offset = s.i64();
            p.committed_metadata = s.nullable(true);
            if v >= 6 {
                p.committed_leader_epoch = s.i32();
            }
            p
        });
        t
    });
    m
}

pub fn offset_fetch(v: i16, s: &mut Src) -> OffsetFetchRequest {
    let mut m = OffsetFetchRequest::default();
    if v >= 7 {
        m.require_stable = s.bool();
    }
    if v <= 7 {
        m.group_id = s.group();
        let topics = s.vec(3, |s| {
            OffsetFetchRequestTopic::default()
                .with_name(s.topic())
                .with_partition_indexes(s.vec(3, Src::i32))
        });
        m.topics = if v >= 2 && s.bool() {
            None
        } else {
            Some(topics)
        };
        return m;
    }
    m.groups = s.vec(3, |s| {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = s.group();
        if v >= 9 {
            g.member_id = s.nullable(true);
            g.member_epoch = s.i32();
        }
        let topics = s.vec(3, |s| {
            OffsetFetchRequestTopics::default()
                .with_name(s.topic())
                .with_partition_indexes(s.vec(3, Src::i32))
        });
        g.topics = if s.bool() { None } else { Some(topics) };
        g
    });
    m
}

pub fn find_coordinator(v: i16, s: &mut Src) -> FindCoordinatorRequest {
    let mut m = FindCoordinatorRequest::default();
    if v <= 3 {
        m.key = s.string();
    } else {
        m.coordinator_keys = s.vec(3, Src::string);
    }
    if v >= 1 {
        m.key_type = s.i8();
    }
    m
}

pub fn join_group(v: i16, s: &mut Src) -> JoinGroupRequest {
    let mut m = JoinGroupRequest::default();
    m.group_id = s.group();
    m.session_timeout_ms = s.i32();
    if v >= 1 {
        m.rebalance_timeout_ms = s.i32();
    }
    m.member_id = s.string();
    if v >= 5 {
        m.group_instance_id = s.nullable(true);
    }
    m.protocol_type = s.string();
    m.protocols = s.vec(3, |s| {
        JoinGroupRequestProtocol::default()
            .with_name(s.string())
            .with_metadata(s.bytes())
    });
    if v >= 8 {
        m.reason = s.nullable(true);
    }
    m
}

pub fn sync_group(v: i16, s: &mut Src) -> SyncGroupRequest {
    let mut m = SyncGroupRequest::default();
    m.group_id = s.group();
    m.generation_id = s.i32();
    m.member_id = s.string();
    if v >= 3 {
        m.group_instance_id = s.nullable(true);
    }
    if v >= 5 {
        m.protocol_type = s.nullable(true);
        m.protocol_name = s.nullable(true);
    }
    m.assignments = s.vec(3, |s| {
        SyncGroupRequestAssignment::default()
            .with_member_id(s.string())
            .with_assignment(s.bytes())
    });
    m
}

pub fn heartbeat(v: i16, s: &mut Src) -> HeartbeatRequest {
    let mut m = HeartbeatRequest::default();
    m.group_id = s.group();
    m.generation_id = s.i32();
    m.member_id = s.string();
    if v >= 3 {
        m.group_instance_id = s.nullable(true);
    }
    m
}

pub fn leave_group(v: i16, s: &mut Src) -> LeaveGroupRequest {
    let mut m = LeaveGroupRequest::default();
    m.group_id = s.group();
    if v <= 2 {
        m.member_id = s.string();
    } else {
        m.members = s.vec(3, |s| {
            let mut member = MemberIdentity::default();
            member.member_id = s.string();
            member.group_instance_id = s.nullable(true);
            if v >= 5 {
                member.reason = s.nullable(true);
            }
            member
        });
    }
    m
}

pub fn describe_configs(v: i16, s: &mut Src) -> DescribeConfigsRequest {
    let mut m = DescribeConfigsRequest::default();
    m.include_synonyms = s.bool();
    if v >= 3 {
        m.include_documentation = s.bool();
    }
    m.resources = s.vec(3, |s| {
        let keys = s.vec(3, Src::string);
        DescribeConfigsResource::default()
            .with_resource_type(s.i8())
            .with_resource_name(s.string())
            .with_configuration_keys(if s.bool() { None } else { Some(keys) })
    });
    m
}

pub fn offset_for_leader_epoch(v: i16, s: &mut Src) -> OffsetForLeaderEpochRequest {
    let mut m = OffsetForLeaderEpochRequest::default();
    if v >= 3 {
        m.replica_id = BrokerId(s.i32());
    }
    m.topics = s.vec(3, |s| {
        OffsetForLeaderTopic::default()
            .with_topic(s.topic())
            .with_partitions(s.vec(3, |s| {
                OffsetForLeaderPartition::default()
                    .with_partition(s.i32())
                    .with_current_leader_epoch(s.i32())
                    .with_leader_epoch(s.i32())
            }))
    });
    m
}
