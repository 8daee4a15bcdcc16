//! A cluster node's admin API: failover goes through etcd, and what the cluster does
//! not support yet is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{Cluster, FailoverAsk};
use crate::failover::FailoverRequest;
use crate::mirror::Store;

/// Fail-back and switchover change a partition's owner between regions. On a cluster
/// node that would need the peer's side carried through etcd as well, which is not
/// built: done on one node, writes would live on that node only.
const OWNERSHIP_CHANGES: [&str; 2] = ["/failback", "/switchover"];

/// How long a failover request waits for the assignment that carries it out.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);

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
    let started = Instant::now();
    loop {
        let assignment = cluster.assignment();
        if topics.iter().all(|t| assignment.is_owned(t)) {
            let report: Vec<ClusterFailover> =
                topics.iter().map(|t| placed(&assignment, t)).collect();
            return Json(report).into_response();
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

fn placed(assignment: &super::Assignment, topic: &str) -> ClusterFailover {
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
            })
            .collect(),
    }
}
