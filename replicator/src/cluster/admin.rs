//! A cluster node's admin API: failover goes through etcd, and what the cluster does
//! not support yet is refused.
//!
//! A failover's answer gives each partition's records at risk as its leader measured
//! them: only a replica fetched the partition from the source, so only its link saw the
//! source's log end, and the leader's log end is where producers continue. Each leader
//! publishes its report in etcd (`failovers.rs`); the node answering waits for them.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{Cluster, FailoverAsk};
use crate::failover::{FailoverRequest, PartitionOutcome};
use crate::mirror::Store;
use crate::topic_partition::TopicPartition;

/// Fail-back and switchover change a partition's owner between regions. On a cluster
/// node that would need the peer's side carried through etcd as well, which is not
/// built: done on one node, writes would live on that node only.
const OWNERSHIP_CHANGES: [&str; 2] = ["/failback", "/switchover"];

/// How long a failover request waits for the assignment that carries it out.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);

/// How long, once the assignment carried a failover out, its answer waits for the
/// leaders' reports; a partition whose leader did not report in time has none.
const REPORT_WAIT: Duration = Duration::from_secs(10);

/// What the admin middleware needs: the node's cluster view (`None` on its own) and
/// its topics, to resolve which ones a failover names.
#[derive(Clone)]
pub struct AdminGate {
    pub cluster: Option<Arc<Cluster>>,
    pub store: Arc<Store>,
}

/// One failed-over topic as the cluster placed it: who takes its writes now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFailover {
    pub topic: String,
    pub state: String,
    pub partitions: Vec<FailedOverPartition>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedOverPartition {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    /// The records at risk as the failover's leader measured them, as a single node's
    /// failover reports them; `None` when the leader did not report in time.
    pub report: Option<LeaderReport>,
}

/// One partition's records at risk, published in etcd by the node that led it when it
/// became owned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaderReport {
    pub node_id: i32,
    pub leader_epoch: i32,
    #[serde(flatten)]
    pub outcome: PartitionOutcome,
}

/// Failover reports on their way to etcd and back.
#[derive(Default)]
pub(super) struct Reports {
    /// Read from etcd, by partition.
    known: Mutex<BTreeMap<TopicPartition, LeaderReport>>,
    /// Failover answers waiting for reports: while any does, the session reads them.
    waiting: AtomicUsize,
    /// Partitions this node led when they became owned, reported since it started.
    published: Mutex<HashSet<TopicPartition>>,
}

/// Counts one answer waiting for reports while it lives.
struct Waiting<'a>(&'a Reports);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Cluster {
    /// Whether a failover answer waits for its leaders' reports.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(super) fn reports_wanted(&self) -> bool {
        self.reports.waiting.load(Ordering::Acquire) > 0
    }

    /// Keeps the reports read from etcd.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(super) fn reports_read(&self, reports: BTreeMap<TopicPartition, LeaderReport>) {
        let mut known = self.reports.known.lock().unwrap_or_else(|p| p.into_inner());
        *known = reports;
    }

    /// Owned partitions this node leads and has not reported yet, with their epochs.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(super) fn reports_due(&self) -> Vec<(TopicPartition, i32)> {
        let assignment = self.assignment();
        let published = (self.reports.published.lock()).unwrap_or_else(|p| p.into_inner());
        let owned = (assignment.topics.iter()).filter(|(t, _)| assignment.is_owned(t));
        let led = owned.flat_map(|(topic, placements)| {
            let placements = placements.iter().enumerate();
            let mine = placements.filter(|(_, p)| p.leader == self.node_id());
            mine.map(|(i, p)| {
                (
                    TopicPartition::new(topic.as_str(), i as i32),
                    p.leader_epoch,
                )
            })
        });
        led.filter(|(key, _)| !published.contains(key)).collect()
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(super) fn reported(&self, key: TopicPartition) {
        let mut published = (self.reports.published.lock()).unwrap_or_else(|p| p.into_inner());
        published.insert(key);
    }

    fn report(&self, topic: &str, partition: i32) -> Option<LeaderReport> {
        let known = self.reports.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(&TopicPartition::new(topic, partition)).cloned()
    }

    fn wait_for_reports(&self) -> Waiting<'_> {
        self.reports.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(&self.reports)
    }
}

/// Middleware: on a cluster node, carries a failover out through etcd and answers 409
/// to fail-back and switchover; everything else passes.
pub async fn refuse_ownership_changes(
    State(gate): State<AdminGate>,
    request: Request,
    next: Next,
) -> Response {
    let Some(cluster) = gate.cluster.clone() else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_string();
    let link = (path.strip_prefix("/v1/links/")).and_then(|p| p.strip_suffix("/failover"));
    if let (Some(link), &Method::POST) = (link, request.method()) {
        return fail_over(&cluster, &gate.store, link.to_string(), request).await;
    }
    if OWNERSHIP_CHANGES.iter().any(|p| path.contains(p)) {
        let why = "fail-back and switchover are not available on a cluster node yet \
                   (see docs/cluster.md)\n";
        return (StatusCode::CONFLICT, why).into_response();
    }
    next.run(request).await
}

/// Records the failover in etcd and answers once this node has installed the
/// assignment that carries it out, with each partition's new leader and epoch.
async fn fail_over(cluster: &Cluster, store: &Store, link: String, request: Request) -> Response {
    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await;
    let parsed = body
        .ok()
        .and_then(|b| serde_json::from_slice::<FailoverRequest>(&b).ok());
    let Some(asked) = parsed else {
        let why = "the body must be {\"all\": true} or {\"topics\": [...]}\n";
        return (StatusCode::BAD_REQUEST, why).into_response();
    };
    let topics = match crate::failover::chosen_topics(store, &link, &asked) {
        Ok(topics) if topics.is_empty() => {
            let why = format!("link {link} has no shadow topic on this node\n");
            return (StatusCode::BAD_REQUEST, why).into_response();
        }
        Ok(topics) => topics.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    cluster.request_failover(FailoverAsk {
        link: link.clone(),
        topics: topics.clone(),
    });
    let _waiting = cluster.wait_for_reports();
    let started = Instant::now();
    let mut carried_out: Option<Instant> = None;
    loop {
        let assignment = cluster.assignment();
        if topics.iter().all(|t| assignment.is_owned(t)) {
            let answer: Vec<ClusterFailover> = (topics.iter())
                .map(|t| placed(cluster, &assignment, t))
                .collect();
            let since = *carried_out.get_or_insert_with(Instant::now);
            if all_reported(&answer) || since.elapsed() > REPORT_WAIT {
                return Json(answer).into_response();
            }
        }
        if started.elapsed() > FAILOVER_WAIT {
            let why = format!(
                "the failover of link {link} is recorded but no assignment carried it out \
                 within {FAILOVER_WAIT:?}: is etcd reachable and an assigner elected?\n"
            );
            return (StatusCode::GATEWAY_TIMEOUT, why).into_response();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_reported(answer: &[ClusterFailover]) -> bool {
    let mut partitions = answer.iter().flat_map(|t| &t.partitions);
    partitions.all(|p| p.report.is_some())
}

fn placed(cluster: &Cluster, assignment: &super::Assignment, topic: &str) -> ClusterFailover {
    let placements = assignment
        .topics
        .get(topic)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let partitions = placements.iter().enumerate();
    ClusterFailover {
        topic: topic.to_string(),
        state: "failed_over".to_string(),
        partitions: partitions
            .map(|(i, p)| FailedOverPartition {
                partition: i as i32,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                report: cluster.report(topic, i as i32),
            })
            .collect(),
    }
}
