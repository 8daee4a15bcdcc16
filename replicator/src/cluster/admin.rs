//! What a cluster node's admin API refuses until the cluster supports it.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Failover, fail-back and switchover make a partition writable or change its owner.
/// On a cluster node that needs leadership moved through etcd with its followers in
/// sync, which is not built: done on one node, writes would live on that node only.
const OWNERSHIP_CHANGES: [&str; 3] = ["/failover", "/failback", "/switchover"];

/// Middleware: on a cluster node (`clustered`), answers 409 to the requests that change
/// a topic's owner; everything else passes.
pub async fn refuse_ownership_changes(
    State(clustered): State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let changes_owner = OWNERSHIP_CHANGES.iter().any(|p| path.contains(p));
    if clustered && changes_owner {
        let why = "failover, fail-back and switchover are not available on a cluster node yet \
                   (see docs/cluster.md)\n";
        return (StatusCode::CONFLICT, why).into_response();
    }
    next.run(request).await
}
