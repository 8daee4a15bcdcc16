//! Metadata: this node leads every partition it holds, except those of topics it handed
//! over to a node that owns them now (see `switchover::peers`): clients are sent there,
//! as a Kafka broker that stopped leading a partition sends them to the new leader.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::Unserved;
use crate::mirror::MirrorTopic;
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
    let mut owners = Vec::new();
    let mut describe = |t: &MirrorTopic| describe(t, version, ctx, &mut owners);
    let topics = match wanted {
        None => ctx
            .store
            .topics()
            .iter()
            .map(|t| describe(t))
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
                    (Ok(()), Some(t)) => describe(&t),
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
    // The address of the listener the request came in on, as Kafka answers.
    let listener = ctx.listener;
    let broker = MetadataResponseBroker::default()
        .with_node_id(ctx.node_id.into())
        .with_host(StrBytes::from_string(listener.advertised_host.clone()))
        .with_port(listener.advertised_port);
    let mut brokers = vec![broker];
    if let Some(cluster) = &ctx.cluster {
        brokers.extend(crate::cluster::metadata_brokers(cluster));
    }
    for owner in owners {
        if !brokers.iter().any(|b| b.node_id.0 == owner.node_id) {
            brokers.push(
                MetadataResponseBroker::default()
                    .with_node_id(owner.node_id.into())
                    .with_host(StrBytes::from_string(owner.host))
                    .with_port(owner.port),
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

/// A topic's partitions as clients should route to them: to the node that owns a
/// handed-over partition now, to the leader the cluster's assignment names, or here.
fn describe(
    topic: &MirrorTopic,
    version: i16,
    ctx: &RequestContext,
    owners: &mut Vec<PeerBroker>,
) -> MetadataResponseTopic {
    let node_id = ctx.node_id;
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let mut route =
                crate::cluster::route(ctx.cluster.as_deref(), node_id, topic, p.partition);
            let mut epoch = route.leader_epoch.unwrap_or_else(|| p.leader_epoch());
            if let Some((owner, owner_epoch)) = ctx.peers.owner_elsewhere(topic, p.partition) {
                epoch = epoch.max(owner_epoch);
                route.leader = owner.node_id;
                route.replicas = vec![owner.node_id];
                route.isr = vec![owner.node_id];
                owners.push(owner);
            }
            let replicas: Vec<_> = route.replicas.into_iter().map(Into::into).collect();
            let isr: Vec<_> = route.isr.into_iter().map(Into::into).collect();
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(p.partition)
                .with_error_code(route.error_code)
                .with_leader_id(route.leader.into())
                .with_replica_nodes(replicas)
                .with_isr_nodes(isr);
            if version >= 7 {
                partition = partition.with_leader_epoch(epoch);
            }
            partition
        })
        .chain(super::offline::metadata_partitions(topic, version, node_id))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_partitions(partitions)
}
