//! The admin HTTP listener: Prometheus metrics, JSON status and health probes.
//!
//! With `[admin] token_file` or `token_env` set, every route but `/healthz` and
//! `/readyz` needs `Authorization: Bearer <token>` and answers 401 with a JSON error
//! without it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /v1/status` | [`StatusReport`](crate::status::StatusReport) as JSON |
//! | `GET /healthz` | 200 while the process serves requests |
//! | `GET /readyz` | 200 when every link is connected and no topic failed, else 503 with the reasons |
//! | `POST /v1/links/{name}/failover` | body `{"all": true}` or `{"topics": [...]}`: fails them over, answers the records at risk per partition |
//! | `POST /v1/links/{name}/pause` | body `{}` or `{"topics": [...]}`: stops fetching them, answers what of the link is paused |
//! | `POST /v1/links/{name}/resume` | the same body: fetching continues where it stopped |
//! | `POST /v1/links/{name}/verify` | body `{}`, `{"topics": [...]}`, `"partition": P`: compares the mirror with the source, answers per partition |
//! | `POST /v1/switchover/release` | body `{"topics": [...]}`: stops writes to owned topics (persisted), answers their log ends and tails |
//! | `POST /v1/switchover/abort` | body `{"topics": [...]}`: resumes writes to released topics |
//! | `POST /v1/links/{name}/switchover/take` | body: the release answer and `timeout_ms`: catches up, checks the tail, takes ownership |
//! | `POST /v1/links/{name}/switchover/demote` | body `{"topics": [...]}`: makes released topics shadows of the link |
//! | `POST /v1/links/{name}/failback` | body `{"topics": [...]}` (none: every topic the link fenced): saves the diverged records, truncates, demotes; answers the counts per partition and the file |

pub mod auth;
pub mod client;
pub mod failback;
pub mod failover;
pub mod pause;
pub mod switchover;
pub mod table;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Path;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Link;
use crate::failback::{fail_back, FailbackError, FailbackRequest};
use crate::failover::{fail_over, FailoverError, FailoverRequest};
use crate::link::pause::Pauses;
use crate::mirror::Store;
use crate::scrub::Scrub;
use crate::status::Status;
use crate::switchover::{self as steps, SwitchoverError, TakeRequest, Topics};

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub status: Arc<Status>,
    pub store: Arc<Store>,
    /// The bearer token requests must carry; none leaves the API open (loopback only).
    pub token: Option<auth::AdminToken>,
    pub pauses: Arc<Pauses>,
    /// The links, with their source addresses and credentials, for the requests that
    /// talk to a link's source (verify, switchover, failback).
    pub links: Arc<Vec<Link>>,
    pub scrub: Arc<Scrub>,
    /// The node's cluster, when it is one of several: failover goes through etcd there.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The admin routes, separate from the socket so tests can drive them directly.
pub fn router(state: AdminState) -> Router {
    let token = state.token.clone();
    let gate = crate::cluster::AdminGate {
        cluster: state.cluster.clone(),
        store: state.store.clone(),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/links/{name}/failover", post(failover))
        .route("/v1/links/{name}/pause", post(pause::pause))
        .route("/v1/links/{name}/resume", post(pause::resume))
        .route("/v1/links/{name}/verify", post(verify::verify))
        .route("/v1/links/{name}/failback", post(failback))
        .route("/v1/switchover/release", post(release))
        .route("/v1/switchover/abort", post(abort))
        .route("/v1/links/{name}/switchover/take", post(take))
        .route("/v1/links/{name}/switchover/demote", post(demote))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            gate,
            crate::cluster::refuse_ownership_changes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
}

/// Binds the admin listener; `addr` may use port 0.
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, state: AdminState, mut stop: watch::Receiver<bool>) {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "admin listener failed");
    }
}

/// Reports are built on the blocking pool: they lock every partition log briefly, and
/// a slow disk must not stall the runtime's workers.
async fn report(state: &AdminState) -> Option<crate::status::StatusReport> {
    let (status, store) = (state.status.clone(), state.store.clone());
    let mut report = tokio::task::spawn_blocking(move || status.report(&store))
        .await
        .ok()?;
    crate::status::mark_paused(&mut report, &state.pauses);
    report.scrub = Some(state.scrub.report());
    Some(report)
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "status unavailable\n").into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let Some(report) = report(&state).await else {
        return unavailable();
    };
    let body = crate::metrics::render(&report);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

async fn status(State(state): State<AdminState>) -> Response {
    let Some(report) = report(&state).await else {
        return unavailable();
    };
    match serde_json::to_string_pretty(&report) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn failover(
    State(state): State<AdminState>,
    Path(link): Path<String>,
    Json(request): Json<FailoverRequest>,
) -> Response {
    let (status, store) = (state.status.clone(), state.store.clone());
    let done =
        tokio::task::spawn_blocking(move || fail_over(&store, &status, &link, &request)).await;
    match done {
        Ok(Ok(outcomes)) => Json(outcomes).into_response(),
        Ok(Err(e @ FailoverError::Mirror(_))) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn failback(
    State(state): State<AdminState>,
    Path(link): Path<String>,
    Json(request): Json<FailbackRequest>,
) -> Response {
    match fail_back(&state.store, &state.links, &link, &request).await {
        Ok(outcomes) => Json(outcomes).into_response(),
        Err(e @ (FailbackError::UnknownLink(_) | FailbackError::NotOwned { .. })) => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Err(e @ (FailbackError::Survivor { .. } | FailbackError::NotAtSurvivor { .. })) => {
            (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Runs a switchover step on the blocking pool and answers its result.
async fn step<T: serde::Serialize + Send + 'static>(
    job: impl FnOnce() -> Result<T, SwitchoverError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(job).await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(e @ (SwitchoverError::Behind { .. } | SwitchoverError::Differs { .. }))) => {
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        Ok(Err(e @ SwitchoverError::Mirror(_))) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn release(State(state): State<AdminState>, Json(request): Json<Topics>) -> Response {
    step(move || steps::release(&state.store, &request)).await
}

async fn abort(State(state): State<AdminState>, Json(request): Json<Topics>) -> Response {
    step(move || steps::abort(&state.store, &request)).await
}

/// The refusal of a switchover step naming a link the node does not have.
fn unknown_link(state: &AdminState, link: &str) -> Option<Response> {
    (!state.status.has_link(link)).then(|| {
        let refusal = SwitchoverError::UnknownLink(link.to_string());
        (StatusCode::BAD_REQUEST, format!("{refusal}\n")).into_response()
    })
}

async fn take(
    State(state): State<AdminState>,
    Path(link): Path<String>,
    Json(request): Json<TakeRequest>,
) -> Response {
    if let Some(refused) = unknown_link(&state, &link) {
        return refused;
    }
    step(move || steps::take(&state.store, &link, &request)).await
}

async fn demote(
    State(state): State<AdminState>,
    Path(link): Path<String>,
    Json(request): Json<Topics>,
) -> Response {
    if let Some(refused) = unknown_link(&state, &link) {
        return refused;
    }
    step(move || steps::demote(&state.store, &link, &request).map(|()| request)).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let Some(report) = report(&state).await else {
        return unavailable();
    };
    if report.ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = format!("not ready: {}\n", report.not_ready.join("; "));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}
