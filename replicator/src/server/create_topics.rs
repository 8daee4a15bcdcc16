//! CreateTopics: creates topics this node owns (writable by producers, one replica).
//!
//! Only the topic configs the node acts on or reports are accepted: `retention.ms` and
//! `retention.bytes` (enforced by the retention task), `max.message.bytes` (enforced on
//! Produce), and `cleanup.policy` with the compaction settings the cleaner follows.
//!
//! Names follow Kafka's rules, including its collision rule ('.' and '_' are one
//! character to metrics). A name one of the node's links would mirror is refused: the
//! link would otherwise find an owned topic where it expects its shadow, and the source's
//! topic of that name would never be mirrored. Partitions are capped per request and per
//! node ([`CreatePolicy`]).
//!
//! On a cluster node the topic is created for the whole cluster: validated as above, with
//! a replication factor up to the live nodes, then recorded in etcd (only if no topic of
//! that name is there) and answered once this node's assignment places it
//! (`cluster::topics`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::{Reply, RequestContext, ServerContext};
use crate::authz::Operation;
use crate::cluster::Cluster;
use crate::errors::CreateRefusal;
use crate::filter::TopicFilter;
use crate::mirror::{validate_topic_name, OwnTopicError};

/// ConfigSource DYNAMIC_TOPIC_CONFIG, for the configs echoed back (v5+).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

/// How long a cluster node waits for a topic's placement when the request gives no
/// timeout (librdkafka's default operation timeout is 0).
const CLUSTER_WAIT: Duration = Duration::from_secs(30);

/// A topic creation that passed validation.
struct NewTopic {
    partitions: i32,
    /// `None` for the cluster's default, on a cluster node.
    replication_factor: Option<usize>,
    configs: BTreeMap<String, String>,
}

/// What CreateTopics may create on this node.
#[derive(Debug, Clone)]
pub struct CreatePolicy {
    /// Each link's name and topic filter: a name a link mirrors is not created here.
    pub links: Vec<(String, TopicFilter)>,
    /// Partitions one request may create, over all its topics.
    pub max_partitions_per_request: i64,
    /// Partitions the node may hold, shadows included.
    pub max_partitions: i64,
}

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: CreateTopicsRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let duplicates = duplicate_names(&request);
    let mut results = Vec::with_capacity(request.topics.len());
    // Partitions this request created (or, with validate_only, would have).
    let mut requested = 0i64;
    for topic in &request.topics {
        let outcome = if duplicates.contains(topic.name.as_str()) {
            Err(CreateRefusal::Duplicate(topic.name.as_str().to_string()))
        } else {
            // Validated-only topics are not in the store, so the node total adds them.
            let pending = if request.validate_only { requested } else { 0 };
            match validate(ctx, topic, requested, pending) {
                Ok(new) if request.validate_only => Ok(new),
                Ok(new) => match ctx.cluster.as_deref() {
                    Some(cluster) => {
                        let name = topic.name.as_str();
                        create_in_cluster(ctx, cluster, name, new, request.timeout_ms).await
                    }
                    None => create(ctx, topic.name.as_str(), new).await,
                },
                Err(refused) => Err(refused),
            }
        };
        if let Ok(new) = &outcome {
            requested += i64::from(new.partitions);
        }
        results.push(result(topic, outcome, version));
    }
    let response = CreateTopicsResponse::default().with_topics(results);
    Reply::encode(header, &response)
}

/// Names given more than once: Kafka refuses every entry of such a name, since which
/// of them should win is not the broker's call.
fn duplicate_names(request: &CreateTopicsRequest) -> HashSet<&str> {
    let mut seen = HashSet::new();
    request
        .topics
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !seen.insert(*name))
        .collect()
}

/// Checks one topic of a request that already accepted `requested` partitions, of
/// which `pending` are not created.
fn validate(
    ctx: &RequestContext,
    topic: &CreatableTopic,
    requested: i64,
    pending: i64,
) -> Result<NewTopic, CreateRefusal> {
    let name = topic.name.as_str();
    // Kafka grants creation on the cluster (any name) or on the topic's own name.
    if ctx.cluster(Operation::Create).is_err() && ctx.topic(Operation::Create, name).is_err() {
        return Err(CreateRefusal::Unauthorized(name.to_string()));
    }
    validate_topic_name(name)?;
    ctx.store.check_new_name(name)?;
    let policy = &ctx.create_policy;
    if let Some((link, _)) = policy.links.iter().find(|(_, f)| f.matches(name)) {
        return Err(CreateRefusal::Mirrored {
            topic: name.to_string(),
            link: link.clone(),
        });
    }
    if let Some(cluster) = &ctx.cluster {
        check_cluster_name(cluster, name)?;
    }
    if !topic.assignments.is_empty() {
        return Err(CreateRefusal::ManualAssignment);
    }
    // -1 asks for the broker default (KIP-464): one partition, one replica.
    let partitions = match topic.num_partitions {
        -1 => 1,
        n if n >= 1 => n,
        n => return Err(OwnTopicError::InvalidPartitions(n).into()),
    };
    check_partition_limits(ctx, partitions, requested, pending)?;
    let replication_factor = replication_factor(ctx, topic.replication_factor)?;
    let configs = validate_configs(topic)?;
    Ok(NewTopic {
        partitions,
        replication_factor,
        configs,
    })
}

/// -1 asks for the default: one replica on a node on its own, the cluster's
/// `replication_factor` on a cluster node, where at most every live node holds one.
fn replication_factor(ctx: &ServerContext, asked: i16) -> Result<Option<usize>, CreateRefusal> {
    let Some(cluster) = &ctx.cluster else {
        return match asked {
            -1 | 1 => Ok(None),
            n => Err(CreateRefusal::ReplicationFactor(n)),
        };
    };
    let live = cluster.live_nodes();
    match usize::try_from(asked) {
        _ if asked == -1 => Ok(None),
        Ok(n) if n >= 1 && n <= live => Ok(Some(n)),
        _ => Err(CreateRefusal::ReplicationFactorAboveNodes { asked, live }),
    }
}

/// A name the cluster already placed, or one colliding with it, is taken even before
/// this node holds its copy.
fn check_cluster_name(cluster: &Cluster, name: &str) -> Result<(), CreateRefusal> {
    let key = |n: &str| n.replace('.', "_");
    let assignment = cluster.assignment();
    match assignment.topics.keys().find(|t| key(t) == key(name)) {
        Some(existing) if existing == name => Err(OwnTopicError::Exists(name.to_string()).into()),
        Some(existing) => Err(OwnTopicError::Collides {
            name: name.to_string(),
            existing: existing.clone(),
        }
        .into()),
        None => Ok(()),
    }
}

fn check_partition_limits(
    ctx: &ServerContext,
    partitions: i32,
    requested: i64,
    pending: i64,
) -> Result<(), CreateRefusal> {
    let policy = &ctx.create_policy;
    let wanted = requested + i64::from(partitions);
    if wanted > policy.max_partitions_per_request {
        return Err(CreateRefusal::TooManyForRequest {
            max: policy.max_partitions_per_request,
            wanted,
        });
    }
    let held = ctx.store.partition_count() + pending;
    if held + i64::from(partitions) > policy.max_partitions {
        return Err(OwnTopicError::TooManyPartitions {
            requested: partitions,
            held,
            max: policy.max_partitions,
        }
        .into());
    }
    Ok(())
}

fn validate_configs(topic: &CreatableTopic) -> Result<BTreeMap<String, String>, CreateRefusal> {
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = config.value.as_ref().map(|v| v.to_string()) else {
            continue; // null: keep the default
        };
        let name = config.name.as_str();
        let valid = match name {
            "retention.ms" | "retention.bytes" => value.parse::<i64>().is_ok_and(|v| v >= -1),
            "max.message.bytes" => value.parse::<i32>().is_ok_and(|v| v >= 0),
            "min.compaction.lag.ms"
            | "max.compaction.lag.ms"
            | "delete.retention.ms"
            | "segment.ms" => value.parse::<i64>().is_ok_and(|v| v >= 0),
            "min.cleanable.dirty.ratio" => {
                value.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v))
            }
            "cleanup.policy" => value
                .split(',')
                .all(|p| matches!(p.trim(), "delete" | "compact")),
            _ => return Err(CreateRefusal::UnsupportedConfig(name.to_string())),
        };
        if !valid {
            return Err(CreateRefusal::InvalidConfig {
                name: name.to_string(),
                value,
            });
        }
        configs.insert(name.to_string(), value);
    }
    Ok(configs)
}

async fn create(ctx: &ServerContext, name: &str, new: NewTopic) -> Result<NewTopic, CreateRefusal> {
    let store = ctx.store.clone();
    let (topic, configs) = (name.to_string(), new.configs.clone());
    let max_partitions = ctx.create_policy.max_partitions;
    let created = tokio::task::spawn_blocking(move || {
        store
            .create_owned_topic(&topic, new.partitions, configs, max_partitions)
            .map(|_| ())
    })
    .await;
    created??;
    Ok(new)
}

/// Records the topic in etcd and waits for its placement (`timeout_ms`, or
/// [`CLUSTER_WAIT`] when the request gives none).
async fn create_in_cluster(
    ctx: &ServerContext,
    cluster: &Cluster,
    name: &str,
    mut new: NewTopic,
    timeout_ms: i32,
) -> Result<NewTopic, CreateRefusal> {
    let wait = match u64::try_from(timeout_ms) {
        Ok(ms) if ms > 0 => Duration::from_millis(ms).min(CLUSTER_WAIT),
        _ => CLUSTER_WAIT,
    };
    let spec = crate::cluster::TopicSpec {
        partitions: new.partitions,
        replication_factor: new.replication_factor,
        configs: new.configs.clone(),
    };
    cluster.create_topic(&ctx.store, name, spec, wait).await?;
    let placed = cluster.assignment();
    let replicas = placed.placement(name, 0).map(|p| p.replicas.len());
    new.replication_factor = replicas.or(new.replication_factor);
    Ok(new)
}

fn result(
    topic: &CreatableTopic,
    outcome: Result<NewTopic, CreateRefusal>,
    version: i16,
) -> CreatableTopicResult {
    let result = CreatableTopicResult::default().with_name(topic.name.clone());
    match outcome {
        Err(refusal) => {
            let result = result.with_error_code(refusal.code());
            // v5+ reports the partition count and replication factor; -1 on errors.
            let result = if version >= 5 {
                result.with_num_partitions(-1).with_replication_factor(-1)
            } else {
                result
            };
            result.with_error_message(Some(StrBytes::from_string(refusal.to_string())))
        }
        Ok(new) if version >= 5 => {
            let configs = new
                .configs
                .into_iter()
                .map(|(name, value)| {
                    CreatableTopicConfigs::default()
                        .with_name(StrBytes::from_string(name))
                        .with_value(Some(StrBytes::from_string(value)))
                        .with_config_source(DYNAMIC_TOPIC_CONFIG)
                })
                .collect();
            let replication_factor = new.replication_factor.unwrap_or(1);
            result
                .with_num_partitions(new.partitions)
                .with_replication_factor(i16::try_from(replication_factor).unwrap_or(i16::MAX))
                .with_configs(Some(configs))
        }
        Ok(_) => result,
    }
}
