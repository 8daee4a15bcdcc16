//! Metadata: this node leads every partition it holds, except those of topics it handed
//! over (demoted by fail-back or a switchover): their leader is the broker its link sees
//! leading them at the source, so clients follow the topic to its owner.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext, ServerContext};
use crate::authz::Operation;
use crate::errors::Unserved;
use crate::mirror::{MirrorTopic, TopicState};
use crate::switchover::peers::PeerBroker;

pub fn handle(
    ctx: &RequestContext,
    header: &RequestHeader,
    request: MetadataRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    // v0 asks for every topic with an empty list; v1+ with null.
    let wanted: Option<Vec<String>> = request.topics.and_then(|topics| {
        (version >= 1 || !topics.is_empty()).then(|| {
            topics
                .into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect()
        })
    });
    // As in Kafka, a topic the principal may not describe is left out of a listing of
    // all topics, and named, it answers TOPIC_AUTHORIZATION_FAILED whether or not it
    // exists, so its existence is not given away.
    let described = |name: &str| ctx.topic(Operation::Describe, name).is_ok();
    let mut peers = Vec::new();
    let topics = match wanted {
        None => ctx
            .store
            .topics()
            .iter()
            .map(|t| describe(ctx, t, version, &mut peers))
            .chain(super::offline::metadata_topics(&ctx.store))
            .filter(|t| t.name.as_ref().is_none_or(|n| described(n.0.as_str())))
            .collect(),
        Some(names) => names
            .iter()
            .map(
                |name| match (ctx.topic(Operation::Describe, name), ctx.store.topic(name)) {
                    (Err(denied), _) => MetadataResponseTopic::default()
                        .with_name(Some(topic_name(name)))
                        .with_error_code(denied.code()),
                    (Ok(()), Some(t)) => describe(ctx, &t, version, &mut peers),
                    (Ok(()), None) => super::offline::metadata_topic(&ctx.store, name)
                        .unwrap_or_else(|| {
                            MetadataResponseTopic::default()
                                .with_name(Some(topic_name(name)))
                                .with_error_code(Unserved::Unknown.code())
                        }),
                },
            )
            .collect(),
    };
    let broker = MetadataResponseBroker::default()
        .with_node_id(ctx.node_id.into())
        .with_host(StrBytes::from_string(ctx.advertised_host.clone()))
        .with_port(ctx.advertised_port);
    let mut brokers = vec![broker];
    for peer in peers {
        if !brokers.iter().any(|b| b.node_id.0 == peer.node_id) {
            brokers.push(
                MetadataResponseBroker::default()
                    .with_node_id(peer.node_id.into())
                    .with_host(StrBytes::from_string(peer.host))
                    .with_port(peer.port),
            );
        }
    }
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(ctx.node_id.into())
        .with_topics(topics);
    if version >= 2 {
        response = response.with_cluster_id(Some(StrBytes::from_string(ctx.cluster_id.clone())));
    }
    Reply::encode(header, &response)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The broker leading a handed-over topic's partition at its new owner, when that is
/// another node (the two nodes of a pair need distinct `kafka.node_id`s).
pub(super) fn owner_elsewhere(
    ctx: &ServerContext,
    topic: &MirrorTopic,
    partition: i32,
) -> Option<(PeerBroker, i32)> {
    let meta = topic.meta();
    if meta.state != TopicState::Demoted {
        return None;
    }
    ctx.peers
        .leader(&meta.link, &topic.name, partition)
        .filter(|(broker, _)| broker.node_id != ctx.node_id)
}

fn describe(
    ctx: &ServerContext,
    topic: &MirrorTopic,
    version: i16,
    peers: &mut Vec<PeerBroker>,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let mut epoch = p.leader_epoch();
            let mut leader = ctx.node_id;
            if let Some((broker, peer_epoch)) = owner_elsewhere(ctx, topic, p.partition) {
                (leader, epoch) = (broker.node_id, epoch.max(peer_epoch));
                peers.push(broker);
            }
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(p.partition)
                .with_leader_id(leader.into())
                .with_replica_nodes(vec![leader.into()])
                .with_isr_nodes(vec![leader.into()]);
            if version >= 7 {
                partition = partition.with_leader_epoch(epoch);
            }
            partition
        })
        .chain(super::offline::metadata_partitions(topic, version))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_partitions(partitions)
}
