//! CreateTopics: creates topics this node owns (writable by producers, one replica).
//!
//! Only the topic configs the node acts on or reports are accepted: `retention.ms` and
//! `retention.bytes` (enforced by the retention task), `max.message.bytes` (enforced on
//! Produce) and `cleanup.policy` (stored and reported; compaction is not implemented).

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::{encode_response, EncodeError};

use super::{Reply, ServerContext};
use crate::mirror::{validate_topic_name, OwnTopicError, Store};

/// ConfigSource DYNAMIC_TOPIC_CONFIG, for the configs echoed back (v5+).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

/// A topic creation that passed validation.
struct NewTopic {
    partitions: i32,
    configs: BTreeMap<String, String>,
}

/// A refused creation: the Kafka code and the message clients show.
type Refused = (i16, String);

pub async fn handle(
    ctx: &ServerContext,
    header: &RequestHeader,
    request: CreateTopicsRequest,
) -> Result<Reply, EncodeError> {
    let version = header.api_version;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let outcome = match validate(&ctx.store, topic) {
            Ok(new) if request.validate_only => Ok(new),
            Ok(new) => create(ctx, topic.name.as_str(), new).await,
            Err(refused) => Err(refused),
        };
        results.push(result(topic, outcome, version));
    }
    let response = CreateTopicsResponse::default().with_topics(results);
    let frame = encode_response(
        ApiKey::CreateTopics,
        version,
        header.correlation_id,
        &response,
    )?;
    Ok(Reply::Frame(frame))
}

fn validate(store: &Store, topic: &CreatableTopic) -> Result<NewTopic, Refused> {
    let name = topic.name.as_str();
    validate_topic_name(name)
        .map_err(|e| (ResponseError::InvalidTopicException.code(), e.to_string()))?;
    if store.topic(name).is_some() {
        let message = format!("topic {name} already exists");
        return Err((ResponseError::TopicAlreadyExists.code(), message));
    }
    if !topic.assignments.is_empty() {
        let message = "manual replica assignments are not supported".to_string();
        return Err((ResponseError::InvalidReplicaAssignment.code(), message));
    }
    // -1 asks for the broker default (KIP-464): one partition, one replica.
    let partitions = match topic.num_partitions {
        -1 => 1,
        n if n >= 1 => n,
        n => {
            let message = format!("a topic needs at least one partition, not {n}");
            return Err((ResponseError::InvalidPartitions.code(), message));
        }
    };
    if !matches!(topic.replication_factor, -1 | 1) {
        let message = format!(
            "replication factor {} is larger than the one node of this cluster",
            topic.replication_factor
        );
        return Err((ResponseError::InvalidReplicationFactor.code(), message));
    }
    let configs = validate_configs(topic)
        .map_err(|message| (ResponseError::InvalidConfig.code(), message))?;
    Ok(NewTopic {
        partitions,
        configs,
    })
}

fn validate_configs(topic: &CreatableTopic) -> Result<BTreeMap<String, String>, String> {
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = config.value.as_ref().map(|v| v.to_string()) else {
            continue; // null: keep the default
        };
        let name = config.name.as_str();
        let valid = match name {
            "retention.ms" | "retention.bytes" => value.parse::<i64>().is_ok_and(|v| v >= -1),
            "max.message.bytes" => value.parse::<i32>().is_ok_and(|v| v >= 0),
            "cleanup.policy" => value
                .split(',')
                .all(|p| matches!(p.trim(), "delete" | "compact")),
            _ => return Err(format!("config {name} is not supported by shadowlink")),
        };
        if !valid {
            return Err(format!("invalid value {value:?} for config {name}"));
        }
        configs.insert(name.to_string(), value);
    }
    Ok(configs)
}

async fn create(ctx: &ServerContext, name: &str, new: NewTopic) -> Result<NewTopic, Refused> {
    let store = ctx.store.clone();
    let (topic, configs) = (name.to_string(), new.configs.clone());
    let created = tokio::task::spawn_blocking(move || {
        store
            .create_owned_topic(&topic, new.partitions, configs)
            .map(|_| ())
    })
    .await;
    match created {
        Ok(Ok(())) => Ok(new),
        Ok(Err(e)) => Err((own_topic_error_code(&e), e.to_string())),
        Err(e) => Err((ResponseError::UnknownServerError.code(), e.to_string())),
    }
}

fn own_topic_error_code(error: &OwnTopicError) -> i16 {
    match error {
        OwnTopicError::InvalidName { .. } => ResponseError::InvalidTopicException.code(),
        OwnTopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        OwnTopicError::Exists(_) | OwnTopicError::Shadow { .. } => {
            ResponseError::TopicAlreadyExists.code()
        }
        OwnTopicError::Storage(e) => crate::errors::storage_error_code(e),
    }
}

fn result(
    topic: &CreatableTopic,
    outcome: Result<NewTopic, Refused>,
    version: i16,
) -> CreatableTopicResult {
    let result = CreatableTopicResult::default().with_name(topic.name.clone());
    match outcome {
        Err((code, message)) => {
            let result = result.with_error_code(code);
            // v5+ reports the partition count and replication factor; -1 on errors.
            let result = if version >= 5 {
                result.with_num_partitions(-1).with_replication_factor(-1)
            } else {
                result
            };
            result.with_error_message(Some(StrBytes::from_string(message)))
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
            result
                .with_num_partitions(new.partitions)
                .with_replication_factor(1)
                .with_configs(Some(configs))
        }
        Ok(_) => result,
    }
}
