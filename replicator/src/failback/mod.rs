//! Fail-back: a node that owned topics, was cut off while a peer failed them over, and
//! came back, follows the peer again without losing what it wrote meanwhile.
//!
//! Fencing needs no operator when the peer is reachable: a link that sees, at its
//! source, a topic this node owns in a leader epoch above this node's own for it knows
//! the source failed it over (failover starts an epoch above every mirrored one), and
//! fences the topic here at once: read-only, persisted. A node restarted while the
//! peer is unreachable cannot tell, and keeps writing until its link reaches the peer;
//! what it writes then diverges and is saved by fail-back like the rest, so the cost is
//! records that producers must replay from the diverged file, never records lost.
//!
//! `fail_back`, per partition: asks the peer OffsetForLeaderEpoch for the last epoch of
//! the local log (the failover point, as a Kafka follower finds where to truncate),
//! saves every record above that point to `{data_dir}/diverged/` (see [`diverged`]),
//! truncates to it and demotes the topic to a shadow of the link, which then fetches it
//! from the peer byte for byte from the point on.

mod diverged;
mod survivor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shadowlink_storage::{PartitionLog, StorageError};

use crate::config::{Link, LinkConfig};
use crate::mirror::{MirrorError, MirrorTopic, Store, TopicState};
use crate::source::metadata::TopicView;
pub use survivor::EpochEnd;

/// Why a fail-back did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FailbackError {
    #[error("link {0} is not configured on this node")]
    UnknownLink(String),
    #[error("topic {topic} is neither owned here nor a shadow of link {link}")]
    NotOwned { topic: String, link: String },
    #[error("the peer of link {link} cannot be asked where its epochs end: {reason}")]
    Survivor { link: String, reason: String },
    #[error("topic {topic} does not exist at the source of link {link}")]
    NotAtSurvivor { topic: String, link: String },
    #[error("the peer cannot say where {topic}-{partition}'s epochs end (error code {error})")]
    EpochUnknown {
        topic: String,
        partition: i32,
        error: i16,
    },
    #[error("a diverged batch cannot be read: {0}")]
    Unreadable(String),
    #[error("cannot save the diverged records to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// Which topics to fail back: the named ones, or every topic the link fenced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailbackRequest {
    #[serde(default)]
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionFailback {
    pub partition: i32,
    /// The first offset the peer holds that this node's log did not share.
    pub failover_point: i64,
    /// The log end offset before the fail-back.
    pub log_end: i64,
    /// Records above the failover point, saved and then cut.
    pub diverged_records: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicFailback {
    pub topic: String,
    /// `demoted`, or `shadow` for a topic that already followed the link.
    pub state: String,
    pub partitions: Vec<PartitionFailback>,
    /// The `.jsonl` file of the diverged records (their raw batches sit beside it, with
    /// the `.batches` extension); `None` when nothing diverged.
    pub diverged_file: Option<String>,
}

/// The peer named in refusals and the status: the link and where it points.
fn peer(link: &LinkConfig) -> String {
    format!("link {} ({})", link.name, link.bootstrap.join(","))
}

/// Fences `topic` if the link's source holds it in a leader epoch above this node's: the
/// source failed it over. A topic handing itself over (switchover) is demoted instead:
/// its writes stopped before the source took it, so nothing diverged.
pub fn fence_if_taken_over(topic: &MirrorTopic, link: &LinkConfig, source: &TopicView) {
    let Some(ownership) = topic.ownership() else {
        return;
    };
    let taken = source.partitions.iter().any(|(index, p)| {
        let ours = ownership.leader_epochs.get(index).copied();
        p.error_code == 0 && ours.is_some_and(|ours| p.leader_epoch > ours)
    });
    if !taken {
        return;
    }
    let done = match topic.meta().state {
        TopicState::SwitchingOut => topic.demote(&link.name, &BTreeMap::new()),
        _ => topic.fence(&link.name, &peer(link)).map(|_| ()),
    };
    if let Err(e) = done {
        tracing::error!(topic = %topic.name, link = %link.name, error = %e, "cannot stop writes to a topic the peer took over");
    }
}

/// Fails the requested topics back to `link`'s source (see the module docs).
pub async fn fail_back(
    store: &Arc<Store>,
    links: &[Link],
    link: &str,
    request: &FailbackRequest,
) -> Result<Vec<TopicFailback>, FailbackError> {
    let link = links
        .iter()
        .find(|l| l.config.name == link)
        .ok_or_else(|| FailbackError::UnknownLink(link.to_string()))?;
    let name = &link.config.name;
    let topics: Vec<Arc<MirrorTopic>> = if request.topics.is_empty() {
        let fenced = |t: &Arc<MirrorTopic>| {
            let meta = t.meta();
            &meta.link == name && matches!(meta.state, TopicState::FencedByFailover { .. })
        };
        store.topics().into_iter().filter(fenced).collect()
    } else {
        let find = |topic: &String| {
            store.topic(topic).ok_or_else(|| FailbackError::NotOwned {
                topic: topic.clone(),
                link: name.clone(),
            })
        };
        request.topics.iter().map(find).collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for topic in topics {
        out.push(fail_back_topic(store, link, topic).await?);
    }
    Ok(out)
}

async fn fail_back_topic(
    store: &Arc<Store>,
    link: &Link,
    topic: Arc<MirrorTopic>,
) -> Result<TopicFailback, FailbackError> {
    let name = link.config.name.clone();
    if !topic.is_owned() {
        if topic.meta().link != name {
            return Err(FailbackError::NotOwned {
                topic: topic.name.clone(),
                link: name,
            });
        }
        return Ok(TopicFailback {
            topic: topic.name.clone(),
            state: "shadow".into(),
            partitions: Vec::new(),
            diverged_file: None,
        });
    }
    // Writes stop, durably, before anything is measured.
    topic.fence(&name, &peer(&link.config))?;
    let epochs: BTreeMap<i32, i32> = topic
        .partitions()
        .iter()
        .map(|p| {
            let epoch = p.log().latest_epoch();
            (p.partition, epoch.or(p.owned_epoch()).unwrap_or(0))
        })
        .collect();
    let ends = survivor::epoch_ends(link, &topic.name, &epochs).await?;
    let dir = store.diverged_dir();
    tokio::task::spawn_blocking(move || cut_and_demote(&topic, &name, &epochs, &ends, &dir))
        .await
        .map_err(|e| FailbackError::Unreadable(e.to_string()))?
}

/// Saves what lies above each failover point, then truncates and demotes. Blocking.
fn cut_and_demote(
    topic: &MirrorTopic,
    link: &str,
    epochs: &BTreeMap<i32, i32>,
    ends: &BTreeMap<i32, EpochEnd>,
    dir: &std::path::Path,
) -> Result<TopicFailback, FailbackError> {
    let mut diverged = diverged::Diverged::default();
    let mut partitions = Vec::new();
    let mut points = BTreeMap::new();
    for p in topic.partitions() {
        let log = p.log();
        let ours = epochs.get(&p.partition).copied().unwrap_or(0);
        let point = match ends.get(&p.partition) {
            Some(end) => failover_point(&log, ours, *end),
            None => log.log_end_offset(),
        };
        let records = diverged.add(&topic.name, p.partition, &log, point)?;
        points.insert(p.partition, point);
        partitions.push(PartitionFailback {
            partition: p.partition,
            failover_point: point,
            log_end: log.log_end_offset(),
            diverged_records: records,
        });
    }
    let diverged_file = if diverged.is_empty() {
        None
    } else {
        let stem = format!("{}-{}", topic.name, crate::txn::now_ms());
        let path = diverged.save(dir, &stem)?;
        Some(path.display().to_string())
    };
    topic.demote(link, &points)?;
    Ok(TopicFailback {
        topic: topic.name.clone(),
        state: "demoted".into(),
        partitions,
        diverged_file,
    })
}

/// Where the shared history ends, as a Kafka follower computes its truncation offset:
/// the peer's end of our last epoch when it holds that epoch, else the lower of the
/// peer's and our own end of the largest epoch it holds below ours.
pub fn failover_point(log: &PartitionLog, ours: i32, end: EpochEnd) -> i64 {
    let log_end = log.log_end_offset();
    if end.leader_epoch == ours {
        return end.end_offset.min(log_end);
    }
    let local = log
        .end_offset_for_epoch(end.leader_epoch)
        .map_or(log.log_start_offset(), |(_, offset)| offset);
    end.end_offset.min(local).min(log_end)
}
