//! This node's copies of owned partitions, kept in the role the assignment gives them.
//!
//! The leader takes producers' writes in the assignment's epoch and nothing else writes
//! its log. Every other replica runs a [`Follower`]: it first truncates to where its
//! leader's log agrees with its own (OffsetForLeaderEpoch, KIP-101), then fetches from
//! the leader with its node id as `replica_id`, so the leader counts its position for
//! `acks=all`, and appends the fetched batches byte for byte. A follower is stopped,
//! and its last append finished, before its partition may lead. It connects with the
//! TLS and SASL of `[cluster.peer]`, as a link connects to its source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_storage::CheckedRecordSet;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Assignment, Cluster};
use crate::config::PeerClient;
use crate::mirror::{MirrorPartition, Store};
use crate::source::{SourceClient, SourceError};
use crate::topic_partition::TopicPartition;

/// How long a follower's fetch may wait at the leader for new data.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// Bounds a connect and each request beyond its wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_millis(200);
const RECONCILE_EVERY: Duration = Duration::from_millis(100);

/// A running follower: whom it follows, in which epoch, and how to stop it.
struct Running {
    leader: i32,
    epoch: i32,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops the follower once its current append, if any, is done.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Keeps every owned partition of this node in its role until `stopped`.
pub async fn run(
    cluster: Arc<Cluster>,
    store: Arc<Store>,
    peer: PeerClient,
    mut stopped: watch::Receiver<bool>,
) {
    let peer = Arc::new(peer);
    let mut followers: HashMap<TopicPartition, Running> = HashMap::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
        reconcile(&cluster, &store, &peer, &mut followers).await;
    }
    for (_, running) in followers.drain() {
        running.stop().await;
    }
}

/// One pass over the assignment's owned topics: create or adopt each, lead or follow
/// each of their partitions held here, and stop followers of partitions no longer
/// followed.
async fn reconcile(
    cluster: &Arc<Cluster>,
    store: &Arc<Store>,
    peer: &Arc<PeerClient>,
    followers: &mut HashMap<TopicPartition, Running>,
) {
    let assignment = cluster.assignment();
    super::topics::create_copies(store, &assignment).await;
    let mut followed = Vec::new();
    for topic in assignment.roles.keys() {
        let Some(local) = store.topic(topic) else {
            continue;
        };
        let failed_over = !assignment.created.contains_key(topic);
        if failed_over
            && (!local.is_owned() || local.meta().state != crate::mirror::TopicState::FailedOver)
        {
            let adopting = local.clone();
            let adopted =
                tokio::task::spawn_blocking(move || crate::failover::adopt(&adopting)).await;
            let failed = match adopted {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(error) = failed {
                tracing::error!(topic = %topic, %error, "cannot take the failed-over topic over");
                continue;
            }
        }
        for p in local.partitions() {
            let key = TopicPartition::new(topic.as_str(), p.partition);
            if let Some(leader) = role(cluster, &assignment, &key) {
                followed.push(key.clone());
                let running = (&mut *followers, peer.clone());
                follow(cluster, &assignment, running, key, p, leader).await;
            } else {
                if let Some(running) = followers.remove(&key) {
                    running.stop().await;
                }
                settle(cluster, &assignment, &key, p).await;
            }
        }
    }
    let gone: Vec<TopicPartition> = (followers.keys())
        .filter(|k| !followed.contains(k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(running) = followers.remove(&key) {
            running.stop().await;
        }
    }
}

/// `Some(leader)` when this node is a replica that follows the partition's leader.
fn role(cluster: &Cluster, assignment: &Assignment, key: &TopicPartition) -> Option<i32> {
    let placement = assignment.placement(&key.topic, key.partition)?;
    let me = cluster.node_id();
    let follows = placement.leader >= 0 && placement.leader != me;
    (follows && placement.replicas.contains(&me)).then_some(placement.leader)
}

/// A partition this node leads starts taking writes in its epoch; one it neither leads
/// nor follows takes none.
async fn settle(
    cluster: &Cluster,
    assignment: &Assignment,
    key: &TopicPartition,
    partition: Arc<MirrorPartition>,
) {
    let placement = assignment.placement(&key.topic, key.partition);
    let leads = placement.filter(|p| p.leader == cluster.node_id());
    let Some(epoch) = leads.map(|p| p.leader_epoch) else {
        partition.follow();
        return;
    };
    if partition.owned_epoch() == Some(epoch) {
        return;
    }
    let led = tokio::task::spawn_blocking(move || partition.lead(epoch)).await;
    match led {
        Ok(Ok(aborted)) => {
            tracing::warn!(partition = %key, epoch, aborted = aborted.len(), "leading the partition: it takes writes here");
        }
        Ok(Err(e)) => {
            tracing::error!(partition = %key, epoch, error = %e, "cannot lead the partition")
        }
        Err(e) => tracing::error!(partition = %key, epoch, error = %e, "cannot lead the partition"),
    }
}

/// Keeps one follower running against `leader` in the partition's current epoch.
async fn follow(
    cluster: &Arc<Cluster>,
    assignment: &Assignment,
    (followers, peer): (&mut HashMap<TopicPartition, Running>, Arc<PeerClient>),
    key: TopicPartition,
    partition: Arc<MirrorPartition>,
    leader: i32,
) {
    let Some(placement) = assignment.placement(&key.topic, key.partition) else {
        return;
    };
    let epoch = placement.leader_epoch;
    let current = followers.get(&key);
    if current.is_some_and(|r| r.leader == leader && r.epoch == epoch && !r.task.is_finished()) {
        return;
    }
    if let Some(running) = followers.remove(&key) {
        running.stop().await;
    }
    partition.follow();
    let Some(addr) = cluster.peer_address(leader, assignment.brokers.get(&leader)) else {
        return;
    };
    let (stop, stopped) = watch::channel(false);
    let follower = Follower {
        key: key.clone(),
        partition,
        node_id: cluster.node_id(),
        addr,
        peer,
        epoch,
        client: None,
        failing: None,
        truncated: false,
    };
    tracing::info!(partition = %key, leader, epoch, "following the partition's leader");
    let task = tokio::spawn(follower.run(stopped));
    followers.insert(
        key,
        Running {
            leader,
            epoch,
            stop,
            task,
        },
    );
}

/// Copies one partition from its leader.
struct Follower {
    key: TopicPartition,
    partition: Arc<MirrorPartition>,
    node_id: i32,
    addr: String,
    peer: Arc<PeerClient>,
    epoch: i32,
    client: Option<SourceClient>,
    /// Why the last round failed, so each new reason is logged once.
    failing: Option<String>,
    /// The log was cut to where it agrees with the leader's in this epoch.
    truncated: bool,
}

/// What a fetch from the leader asks of the local log.
enum Step {
    Append(CheckedRecordSet),
    TruncateTo(i64),
    /// The leader's log starts past ours: start over, empty, at its log start.
    StartAt(i64),
    Wait,
}

/// Why a round with the leader failed; the follower retries after a pause.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The leader refused or dropped a connection made without `[cluster.peer]`
    /// settings: most likely its listener needs TLS or SASL.
    #[error("{0} (without `[cluster.peer]` TLS or SASL settings: does the leader's listener need them?)")]
    Unsecured(SourceError),
    #[error("the leader answered error {0}")]
    Leader(i16),
    #[error("the leader sent nothing for the partition")]
    Empty,
    #[error("the local log: {0}")]
    Local(String),
}

impl Follower {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        loop {
            if *stopped.borrow() {
                return;
            }
            let step = tokio::select! {
                _ = stopped.changed() => return,
                step = self.next_step() => step,
            };
            // Never cancelled half way: a partition may lead only once this is done.
            let applied = match step {
                Ok(step) => self.apply(step).await,
                Err(e) => Err(e),
            };
            let Err(e) = applied else {
                self.failing = None;
                continue;
            };
            self.failed(e);
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Logs a new reason for failing as a warning (a refused TLS handshake or password
    /// repeats every round), a repeated one at debug level.
    fn failed(&mut self, e: FollowError) {
        self.client = None;
        let why = e.to_string();
        if self.failing.as_ref() == Some(&why) {
            tracing::debug!(partition = %self.key, leader = %self.addr, error = %why, "following failed; retrying");
        } else {
            tracing::warn!(partition = %self.key, leader = %self.addr, error = %why, "cannot follow the partition's leader; retrying");
            self.failing = Some(why);
        }
    }

    async fn client(&mut self) -> Result<SourceClient, FollowError> {
        if let Some(client) = self.client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client_id = format!("shadowlink-replica-{}", self.node_id);
        let (tls, sasl) = (self.peer.tls.as_ref(), self.peer.sasl.as_ref());
        let connect = SourceClient::connect(&self.addr, &client_id, tls, sasl);
        let unsecured = self.peer.tls.is_none() && self.peer.sasl.is_none();
        let client = match tokio::time::timeout(REQUEST_TIMEOUT, connect).await {
            Ok(Ok(connected)) => connected.with_request_timeout(REQUEST_TIMEOUT),
            Ok(Err(e)) if unsecured => return Err(FollowError::Unsecured(e)),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                let addr = self.addr.clone();
                return Err(SourceError::Timeout { addr }.into());
            }
        };
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn next_step(&mut self) -> Result<Step, FollowError> {
        let client = self.client().await?;
        let (end, latest) = {
            let log = self.partition.log();
            (log.log_end_offset(), log.latest_epoch())
        };
        if !self.truncated {
            let Some(latest) = latest else {
                self.truncated = true;
                return Ok(Step::Wait);
            };
            let agreed = self.end_of_epoch(&client, latest).await?;
            self.truncated = true;
            if agreed < end {
                return Ok(Step::TruncateTo(agreed));
            }
        }
        let request = self.fetch_request(end, latest.unwrap_or(-1));
        let response: FetchResponse = client
            .send_waiting(ApiKey::Fetch, &request, MAX_WAIT)
            .await?;
        let p = (response.responses.into_iter())
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == self.key.partition)
            .ok_or(FollowError::Empty)?;
        let diverged = p.diverging_epoch.epoch;
        let ours = (diverged >= 0).then(|| self.partition.log().own_end_of_epoch(diverged));
        fetched(p, end, latest.unwrap_or(-1), ours)
    }

    /// Where the leader's log stops agreeing with an epoch this log ends in.
    async fn end_of_epoch(&self, client: &SourceClient, epoch: i32) -> Result<i64, FollowError> {
        let partition = OffsetForLeaderPartition::default()
            .with_partition(self.key.partition)
            .with_current_leader_epoch(self.epoch)
            .with_leader_epoch(epoch);
        let topic = OffsetForLeaderTopic::default()
            .with_topic(topic_name(&self.key.topic))
            .with_partitions(vec![partition]);
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(self.node_id.into())
            .with_topics(vec![topic]);
        let response: OffsetForLeaderEpochResponse =
            client.send(ApiKey::OffsetForLeaderEpoch, &request).await?;
        let answer = (response.topics.into_iter())
            .flat_map(|t| t.partitions)
            .find(|p| p.partition == self.key.partition)
            .ok_or(FollowError::Empty)?;
        if answer.error_code != 0 {
            return Err(FollowError::Leader(answer.error_code));
        }
        Ok(answer.end_offset)
    }

    fn fetch_request(&self, offset: i64, last_fetched_epoch: i32) -> FetchRequest {
        let partition = FetchPartition::default()
            .with_partition(self.key.partition)
            .with_current_leader_epoch(self.epoch)
            .with_fetch_offset(offset)
            .with_last_fetched_epoch(last_fetched_epoch)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(1024 * 1024);
        let topic = FetchTopic::default()
            .with_topic(topic_name(&self.key.topic))
            .with_partitions(vec![partition]);
        FetchRequest::default()
            .with_replica_id(self.node_id.into())
            .with_max_wait_ms(MAX_WAIT.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(8 * 1024 * 1024)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![topic])
    }

    async fn apply(&mut self, step: Step) -> Result<(), FollowError> {
        let partition = self.partition.clone();
        let key = self.key.clone();
        let done = tokio::task::spawn_blocking(move || match step {
            Step::Append(set) => partition.replicate(&set).map(|_| ()).map_err(|e| e.to_string()),
            Step::TruncateTo(offset) => {
                tracing::warn!(partition = %key, offset, "truncating to where the leader's log agrees");
                partition.log().truncate_to(offset).map_err(|e| e.to_string())
            }
            Step::StartAt(offset) => {
                let mut log = partition.log();
                log.truncate_fully_and_start_at(offset).map_err(|e| e.to_string())
            }
            Step::Wait => Ok(()),
        })
        .await;
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(FollowError::Local(e)),
            Err(e) => Err(FollowError::Local(e.to_string())),
        }
    }
}

/// What one partition of a fetch response asks of a log ending at `end` in epoch
/// `latest`, whose own end of the response's diverging epoch is `ours`.
fn fetched(
    p: PartitionData,
    end: i64,
    latest: i32,
    ours: Option<i64>,
) -> Result<Step, FollowError> {
    const OFFSET_OUT_OF_RANGE: i16 = 1;
    if p.error_code == OFFSET_OUT_OF_RANGE && p.log_start_offset > end {
        return Ok(Step::StartAt(p.log_start_offset));
    }
    if p.error_code != 0 {
        return Err(FollowError::Leader(p.error_code));
    }
    let (epoch, leader_end) = (p.diverging_epoch.epoch, p.diverging_epoch.end_offset);
    if epoch >= 0 && (leader_end < end || epoch < latest) {
        // KIP-320, as a Kafka follower: the lower of the two logs' ends of that epoch.
        let to = leader_end.min(ours.unwrap_or(i64::MAX)).min(end);
        return Ok(Step::TruncateTo(to.max(0)));
    }
    let records = p.records.unwrap_or_default();
    match CheckedRecordSet::check(&records, end).set {
        Some(set) => Ok(Step::Append(set)),
        None => Ok(Step::Wait),
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::EpochEndOffset;

    fn diverging(epoch: i32, end_offset: i64) -> PartitionData {
        let at = EpochEndOffset::default()
            .with_epoch(epoch)
            .with_end_offset(end_offset);
        PartitionData::default().with_diverging_epoch(at)
    }

    fn truncation(step: Result<Step, FollowError>) -> Option<i64> {
        match step {
            Ok(Step::TruncateTo(offset)) => Some(offset),
            _ => None,
        }
    }

    #[test]
    fn a_follower_truncates_to_the_lower_end_of_the_diverging_epoch() {
        // The leader's epoch 1 ends at 12, before this log's end at 15.
        assert_eq!(
            truncation(fetched(diverging(1, 12), 15, 1, Some(15))),
            Some(12)
        );
        // The leader never had epoch 3, and its epoch 2 runs past this log's end: this
        // log's own epoch 2 (or the one below) ends at 10, where epoch 3 began here.
        assert_eq!(
            truncation(fetched(diverging(2, 20), 15, 3, Some(10))),
            Some(10)
        );
        // In step: nothing to truncate.
        assert_eq!(truncation(fetched(diverging(-1, -1), 15, 3, None)), None);
        assert_eq!(truncation(fetched(diverging(3, 20), 15, 3, Some(15))), None);
    }
}
