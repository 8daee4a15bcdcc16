//! Switchover: ownership of topics moves from the node that owns them (O) to the node
//! that mirrors them (M), with no record lost and every offset unchanged.
//!
//! The operator's `shadowlink switchover` drives both admin APIs; each node persists the
//! step it takes in the topic's own `topic.json`, which is the journal:
//!
//! 1. O **releases**: `switching_out`, persisted; producers get NOT_LEADER_OR_FOLLOWER
//!    (retriable). O answers each partition's log end, epoch and tail batches.
//! 2. M **takes**: waits until its mirror reaches O's log end, checks it holds the same
//!    tail batches (offsets and CRCs), then fails the topic over, persisted as
//!    `failing_over` then `failed_over`, in an epoch above O's and every mirrored one.
//! 3. O **demotes** its copy to a shadow of its link to M, persisted.
//!
//! Crashes: O killed after 1 restarts still refusing writes; M killed during 2 restarts
//! a shadow (nothing taken) or finishes its failover on open (`failing_over` resumes);
//! O seeing M above its epoch while `switching_out` demotes itself (its link does it,
//! see `failback::fence_if_taken_over`), so step 3 completes even without the CLI.
//! Re-running the same `switchover` resumes from the first step not yet done; `--abort`
//! before step 2 has completed resumes writes on O. At no step do both nodes take
//! writes: O stops before M starts, and M starts only on O's stopped log end.

pub mod peers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::mirror::{MirrorError, MirrorTopic, Store, TopicState};

/// How many of a partition's newest batches M compares with O's before taking over.
pub const TAIL_BATCHES: usize = 8;
/// How much of the newest segments is scanned for them (segment boundaries differ
/// between the nodes, so each side may find fewer; the shorter tail is compared).
const TAIL_SCAN_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    #[error("link {0} is not configured on this node")]
    UnknownLink(String),
    #[error("topic {0} does not exist on this node")]
    UnknownTopic(String),
    #[error("topic {topic} is not owned by this node, so it cannot hand it over")]
    NotOwned { topic: String },
    #[error("topic {topic} is not a shadow of link {link} here, so it cannot take it over")]
    NotShadowed { topic: String, link: String },
    #[error("{topic}-{partition} did not reach the owner's log end {log_end} within {waited:?} (at {at})")]
    Behind {
        topic: String,
        partition: i32,
        log_end: i64,
        at: i64,
        waited: Duration,
    },
    #[error("{topic}-{partition} differs from the owner's log: {detail}")]
    Differs {
        topic: String,
        partition: i32,
        detail: String,
    },
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// The topics a step applies to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Topics {
    pub topics: Vec<String>,
}

/// One partition as O stopped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedPartition {
    pub partition: i32,
    pub log_end: i64,
    pub leader_epoch: i32,
    /// `(base offset, CRC)` of the newest batches, oldest first.
    pub tail: Vec<(i64, u32)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Released {
    pub topic: String,
    pub partitions: Vec<ReleasedPartition>,
}

/// What M asks of itself: the released topics, and how long to wait for its mirror.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakeRequest {
    pub topics: Vec<Released>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Taken {
    pub topic: String,
    /// Per partition, the epoch producers write in on M from now on.
    pub leader_epochs: BTreeMap<i32, i32>,
    /// Per partition, the first offset producers get on M.
    pub next_offsets: BTreeMap<i32, i64>,
}

fn topic(store: &Store, name: &str) -> Result<Arc<MirrorTopic>, SwitchoverError> {
    store
        .topic(name)
        .ok_or_else(|| SwitchoverError::UnknownTopic(name.to_string()))
}

/// Step 1, on O: stops writes (persisted) and describes each partition's stopped log.
/// Blocking. A topic already demoted by an earlier run is answered from its log as is.
pub fn release(store: &Store, request: &Topics) -> Result<Vec<Released>, SwitchoverError> {
    let mut out = Vec::new();
    for name in &request.topics {
        let topic = topic(store, name)?;
        if !topic.switch_out(true)? && topic.meta().state != TopicState::Demoted {
            return Err(SwitchoverError::NotOwned {
                topic: name.clone(),
            });
        }
        let mut partitions = Vec::new();
        for p in topic.partitions() {
            let log = p.log();
            partitions.push(ReleasedPartition {
                partition: p.partition,
                log_end: log.log_end_offset(),
                leader_epoch: p.leader_epoch(),
                tail: tail(&log)?,
            });
        }
        out.push(Released {
            topic: name.clone(),
            partitions,
        });
    }
    Ok(out)
}

/// `(base offset, CRC)` of the log's newest [`TAIL_BATCHES`] batches, oldest first.
fn tail(log: &shadowlink_storage::PartitionLog) -> Result<Vec<(i64, u32)>, MirrorError> {
    let mut out = std::collections::VecDeque::new();
    log.for_each_tail_batch(TAIL_SCAN_BYTES, |b| {
        if out.len() == TAIL_BATCHES {
            out.pop_front();
        }
        out.push_back((b.base_offset(), b.crc()));
    })?;
    Ok(out.into())
}

/// Resumes writes on O for topics not yet taken over (`--abort`). Blocking.
pub fn abort(store: &Store, request: &Topics) -> Result<Vec<String>, SwitchoverError> {
    let mut resumed = Vec::new();
    for name in &request.topics {
        let topic = topic(store, name)?;
        if topic.meta().state == TopicState::SwitchingOut && topic.switch_out(false)? {
            resumed.push(name.clone());
        }
    }
    Ok(resumed)
}

/// Step 3, on O: demotes the released topics to shadows of `link` (the link to M).
/// Blocking; a topic demoted already is left as it is.
pub fn demote(store: &Store, link: &str, request: &Topics) -> Result<(), SwitchoverError> {
    for name in &request.topics {
        let topic = topic(store, name)?;
        if topic.is_owned() && topic.meta().state != TopicState::SwitchingOut {
            return Err(SwitchoverError::NotOwned {
                topic: name.clone(),
            });
        }
        topic.demote(link, &BTreeMap::new())?;
    }
    Ok(())
}

/// Step 2, on M: waits for the mirror to reach O's stopped log end, checks the tail,
/// and takes ownership above O's epoch. Blocking (it polls the logs).
pub fn take(
    store: &Store,
    link: &str,
    request: &TakeRequest,
) -> Result<Vec<Taken>, SwitchoverError> {
    let deadline = Instant::now() + Duration::from_millis(request.timeout_ms);
    let mut out = Vec::new();
    for released in &request.topics {
        let topic = topic(store, &released.topic)?;
        let meta = topic.meta();
        if meta.link != link {
            return Err(SwitchoverError::NotShadowed {
                topic: released.topic.clone(),
                link: link.to_string(),
            });
        }
        if !topic.is_owned() || meta.state == TopicState::FailingOver {
            catch_up(&topic, released, deadline)?;
            crate::failover::complete(&topic)?;
        }
        let ownership = topic
            .ownership()
            .ok_or_else(|| SwitchoverError::NotShadowed {
                topic: released.topic.clone(),
                link: link.to_string(),
            })?;
        out.push(Taken {
            topic: released.topic.clone(),
            leader_epochs: ownership.leader_epochs,
            next_offsets: ownership.writable_from,
        });
    }
    Ok(out)
}

fn catch_up(
    topic: &MirrorTopic,
    released: &Released,
    deadline: Instant,
) -> Result<(), SwitchoverError> {
    let started = Instant::now();
    for want in &released.partitions {
        let p = topic
            .partition(want.partition)
            .ok_or_else(|| SwitchoverError::Differs {
                topic: topic.name.clone(),
                partition: want.partition,
                detail: "the partition does not exist here".into(),
            })?;
        loop {
            let at = p.log().log_end_offset();
            if at >= want.log_end {
                break;
            }
            if Instant::now() >= deadline {
                return Err(SwitchoverError::Behind {
                    topic: topic.name.clone(),
                    partition: want.partition,
                    log_end: want.log_end,
                    at,
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (log_end, ours) = {
            let log = p.log();
            (log.log_end_offset(), tail(&log)?)
        };
        let common = ours.len().min(want.tail.len());
        let same_tail = ours[ours.len() - common..] == want.tail[want.tail.len() - common..];
        if log_end != want.log_end || !same_tail || (common == 0 && want.log_end > 0) {
            return Err(SwitchoverError::Differs {
                topic: topic.name.clone(),
                partition: want.partition,
                detail: format!(
                    "log end {} and tail {:?} here, {} and {:?} at the owner",
                    log_end, ours, want.log_end, want.tail
                ),
            });
        }
        // Above O's epoch even if this node's link never saw it in Metadata.
        p.observe_source_epoch(want.leader_epoch);
    }
    Ok(())
}
