//! `shadowlink verify`: fetches from the source, over the link's own connection
//! settings, the range each mirror partition holds and compares it batch by batch.
//!
//! The node runs it (it holds the link's addresses and credentials), one partition at a
//! time and one bounded fetch at a time, so a verification costs the source no more
//! than one more consumer. Fetches are read_uncommitted, as the link copies.

pub mod compare;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::config::Link;
use crate::link::kafka_error_name;
use crate::mirror::{MirrorPartition, Store, TopicState};
use crate::source::metadata::SourceCluster;
use crate::source::{SourceClient, SourceError};
use compare::{batches_in, compare_run, Mismatch, Tally};

/// Bytes asked for per fetch: the bound on what one step holds in memory.
const FETCH_BYTES: i32 = 1024 * 1024;
/// Fetches are only sent below the mirror's end, where the source has data at once;
/// the wait only bounds an answer from a source that lost it.
const FETCH_WAIT_MS: i32 = 100;

/// The body of `POST /v1/links/{name}/verify`: no topics means every shadow topic of the
/// link that is still mirrored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyRequest {
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub partition: Option<i32>,
}

/// A range of offsets, `from` included, `to` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

/// The verification of one partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionVerify {
    pub topic: String,
    pub partition: i32,
    pub mirror_start: i64,
    pub mirror_end: i64,
    pub source_start: Option<i64>,
    pub source_hwm: Option<i64>,
    /// What the mirror holds that the source deleted (retention): not compared, and not
    /// a mismatch.
    pub gone_at_source: Option<Range>,
    #[serde(flatten)]
    pub tally: Tally,
    /// Why the partition could not be verified to its end.
    pub error: Option<String>,
}

impl PartitionVerify {
    pub fn mismatch(&self) -> Option<&Mismatch> {
        self.tally.first_mismatch.as_ref()
    }
}

/// Every partition verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub link: String,
    pub partitions: Vec<PartitionVerify>,
}

impl VerifyReport {
    /// Partitions where the copies differ.
    pub fn mismatched(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.mismatch().is_some())
            .count()
    }

    /// Partitions that could not be verified to their end.
    pub fn failed(&self) -> usize {
        self.partitions.iter().filter(|p| p.error.is_some()).count()
    }
}

/// Why nothing could be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no link named {0:?} on this node")]
    UnknownLink(String),
    #[error("topic {topic:?} is not a shadow topic of link {link:?}")]
    NotInLink { link: String, topic: String },
    #[error("no topic verified has a partition {0}")]
    NoSuchPartition(i32),
    #[error("the source metadata cannot be read: {0}")]
    Source(#[from] SourceError),
}

impl VerifyError {
    pub fn is_bad_request(&self) -> bool {
        !matches!(self, VerifyError::Source(_))
    }
}

/// Verifies what `request` names of `link`'s mirror in `store`.
pub async fn verify(
    link: &Link,
    store: &Store,
    request: &VerifyRequest,
) -> Result<VerifyReport, VerifyError> {
    let name = &link.config.name;
    let partitions = selected(store, name, request)?;
    let mut cluster = SourceCluster::for_link(link);
    let view = cluster.refresh().await?.clone();
    let mut out = Vec::new();
    for (topic, mirror) in partitions {
        let leader = view
            .topics
            .get(&topic)
            .and_then(|t| t.partitions.get(&mirror.partition))
            .map(|p| p.leader);
        let mut report = PartitionVerify::new(&topic, &mirror);
        match leader {
            None => report.error = Some("the source has no such partition".into()),
            Some(leader) => match cluster.broker(leader).await {
                Ok(client) => verify_partition(&client, &mirror, &mut report).await,
                Err(e) => report.error = Some(e.to_string()),
            },
        }
        if let Some(m) = report.mismatch() {
            tracing::error!(link = %name, topic = %topic, partition = mirror.partition, offset = m.offset, what = %m.what, "mirror differs from the source");
        }
        out.push(report);
    }
    Ok(VerifyReport {
        link: name.clone(),
        partitions: out,
    })
}

/// The partitions `request` names, in topic and partition order.
fn selected(
    store: &Store,
    link: &str,
    request: &VerifyRequest,
) -> Result<Vec<(String, Arc<MirrorPartition>)>, VerifyError> {
    let topics = match request.topics.is_empty() {
        true => store
            .topics()
            .into_iter()
            .filter(|t| t.meta().link == link && mirrored(&t.meta().state) && !t.is_owned())
            .collect(),
        false => request
            .topics
            .iter()
            .map(|name| {
                store
                    .topic(name)
                    .filter(|t| t.meta().link == link)
                    .ok_or_else(|| VerifyError::NotInLink {
                        link: link.to_string(),
                        topic: name.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut out = Vec::new();
    for topic in topics {
        for p in topic.partitions() {
            if request.partition.is_none_or(|want| want == p.partition) {
                out.push((topic.name.clone(), p));
            }
        }
    }
    if let (true, Some(p)) = (out.is_empty(), request.partition) {
        return Err(VerifyError::NoSuchPartition(p));
    }
    out.sort_by(|a, b| (&a.0, a.1.partition).cmp(&(&b.0, b.1.partition)));
    Ok(out)
}

fn mirrored(state: &TopicState) -> bool {
    !matches!(state, TopicState::FailingOver | TopicState::FailedOver)
}

impl PartitionVerify {
    fn new(topic: &str, mirror: &MirrorPartition) -> PartitionVerify {
        let log = mirror.log();
        PartitionVerify {
            topic: topic.to_string(),
            partition: mirror.partition,
            mirror_start: log.log_start_offset(),
            mirror_end: log.log_end_offset(),
            source_start: None,
            source_hwm: None,
            gone_at_source: None,
            tally: Tally::default(),
            error: None,
        }
    }
}

/// What one source fetch returned.
struct SourceChunk {
    error_code: i16,
    log_start: i64,
    high_watermark: i64,
    records: Bytes,
}

/// Compares the mirror's range with the source's, fetch by fetch.
async fn verify_partition(
    client: &SourceClient,
    mirror: &Arc<MirrorPartition>,
    report: &mut PartitionVerify,
) {
    let end = report.mirror_end;
    let mut offset = report.mirror_start;
    while offset < end {
        let chunk = match fetch(client, &report.topic, report.partition, offset).await {
            Ok(chunk) => chunk,
            Err(e) => {
                report.error = Some(e.to_string());
                return;
            }
        };
        report.source_start = Some(chunk.log_start);
        report.source_hwm = Some(chunk.high_watermark);
        if offset < chunk.log_start {
            // Retention at the source: what it deleted can no longer be compared.
            let to = chunk.log_start.min(end);
            report.gone_at_source = Some(Range { from: offset, to });
            offset = to;
            continue;
        }
        if chunk.error_code != 0 {
            let name = kafka_error_name(chunk.error_code);
            report.error = Some(format!("the source answered Fetch at {offset} with {name}"));
            return;
        }
        match step(mirror, &chunk, offset, end, &mut report.tally).await {
            Ok(next) if next > offset => offset = next,
            Ok(_) => return,
            Err(why) => {
                report.error = Some(why);
                return;
            }
        }
    }
}

/// Compares one fetched chunk with the mirror; the offset to go on from.
async fn step(
    mirror: &Arc<MirrorPartition>,
    chunk: &SourceChunk,
    offset: i64,
    end: i64,
    tally: &mut Tally,
) -> Result<i64, String> {
    let (source, unreadable) = batches_in(std::slice::from_ref(&chunk.records), offset, end);
    if source.is_empty() {
        if let Some(e) = unreadable {
            return Err(format!("the source sent an unreadable batch: {e}"));
        }
        if chunk.high_watermark <= offset {
            let what = format!(
                "the source's log ends at {}; the mirror holds offsets up to {end}",
                chunk.high_watermark
            );
            tally.mismatched += 1;
            tally
                .first_mismatch
                .get_or_insert(Mismatch { offset, what });
            return Ok(offset);
        }
    }
    let wanted: usize = source.iter().map(|b| b.len()).sum();
    let held = read_mirror(mirror, offset, wanted.max(1)).await?;
    let (stored, _) = batches_in(&held, offset, end);
    let before = (tally.bytes, tally.mismatched);
    let step = compare_run(&source, &stored, offset, tally);
    crate::metrics::verified("verify", tally.bytes - before.0);
    crate::metrics::verify_mismatches("verify", tally.mismatched - before.1);
    Ok(match step.aligned {
        true => step.next_offset,
        false => offset,
    })
}

/// Whole stored batches from `offset`, at most about `max_bytes`, read off the async
/// workers: the slices are of memory-mapped files, and touching them may wait on disk.
async fn read_mirror(
    mirror: &Arc<MirrorPartition>,
    offset: i64,
    max_bytes: usize,
) -> Result<Vec<Bytes>, String> {
    let mirror = mirror.clone();
    let read = tokio::task::spawn_blocking(move || mirror.log().read(offset, max_bytes))
        .await
        .map_err(|e| e.to_string())?;
    read.map(|r| r.chunks)
        .map_err(|e| format!("the mirror cannot be read at {offset}: {e}"))
}

async fn fetch(
    client: &SourceClient,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<SourceChunk, SourceError> {
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(FETCH_BYTES)])]);
    let response: FetchResponse = client.send(ApiKey::Fetch, &request).await?;
    let p = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .cloned();
    let Some(p) = p else {
        tracing::debug!(
            topic,
            partition,
            ?response,
            "no such partition in the source's Fetch answer"
        );
        return Err(SourceError::Broker {
            addr: client.addr().to_string(),
            api: ApiKey::Fetch,
            code: if response.error_code != 0 {
                response.error_code
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            },
        });
    };
    let out_of_range = p.error_code == ResponseError::OffsetOutOfRange.code();
    // A fetch below the source's log start names no log start on every broker, so the
    // range gone at the source is then found with ListOffsets.
    let log_start = match out_of_range && p.log_start_offset <= offset {
        true => earliest(client, topic, partition).await?,
        false => p.log_start_offset,
    };
    Ok(SourceChunk {
        error_code: p.error_code,
        log_start,
        high_watermark: p.high_watermark,
        records: p.records.unwrap_or_default(),
    })
}

async fn earliest(client: &SourceClient, topic: &str, partition: i32) -> Result<i64, SourceError> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-2)])]);
    let response: ListOffsetsResponse = client.send(ApiKey::ListOffsets, &request).await?;
    let p = response
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .next();
    match p {
        Some(p) if p.error_code == 0 => Ok(p.offset),
        other => Err(SourceError::Broker {
            addr: client.addr().to_string(),
            api: ApiKey::ListOffsets,
            code: other.map_or(ResponseError::UnknownTopicOrPartition.code(), |p| {
                p.error_code
            }),
        }),
    }
}
