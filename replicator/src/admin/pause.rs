//! Pausing and resuming a link or some of its topics: the admin routes, and the
//! `shadowlink pause` / `shadowlink resume` side that calls them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::AdminToken;
use super::client::{post_json, StatusError, REQUEST_TIMEOUT};
use super::AdminState;
use crate::link::pause::{check_topics, PauseAnswer, PauseError, PauseRequest};

/// `POST /v1/links/{name}/pause`.
pub(super) async fn pause(
    State(state): State<AdminState>,
    Path(link): Path<String>,
    Json(request): Json<PauseRequest>,
) -> Response {
    change(state, link, request, true).await
}

/// `POST /v1/links/{name}/resume`.
pub(super) async fn resume(
    State(state): State<AdminState>,
    Path(link): Path<String>,
    Json(request): Json<PauseRequest>,
) -> Response {
    change(state, link, request, false).await
}

async fn change(state: AdminState, link: String, request: PauseRequest, pause: bool) -> Response {
    // The state file is fsynced: off the async workers.
    let done = tokio::task::spawn_blocking(move || {
        if !state.links.iter().any(|l| l.config.name == link) {
            return Err(PauseError::UnknownLink(link));
        }
        let topics = &request.topics;
        let paused = match pause {
            true => {
                check_topics(&state.store, &link, topics)?;
                state.pauses.pause(&link, topics)?
            }
            false => state.pauses.resume(&link, topics)?,
        };
        Ok(PauseAnswer { link, paused })
    })
    .await;
    match done {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(e @ PauseError::UnknownLink(_))) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) if e.is_bad_request() => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// POSTs a pause (`pause` true) or resume of `topics` of `link`, or of the whole link
/// when `topics` is empty, to the node at `admin`.
pub fn request(
    admin: &str,
    token: Option<&AdminToken>,
    link: &str,
    topics: Vec<String>,
    pause: bool,
) -> Result<PauseAnswer, StatusError> {
    let action = if pause { "pause" } else { "resume" };
    post_json(
        admin,
        token,
        &format!("/v1/links/{link}/{action}"),
        &PauseRequest { topics },
        REQUEST_TIMEOUT,
    )
}

/// One line: what of the link is paused now.
pub fn render(answer: &PauseAnswer) -> String {
    let p = &answer.paused;
    if p.all {
        format!("link {}: paused\n", answer.link)
    } else if p.topics.is_empty() {
        format!("link {}: running, no topic paused\n", answer.link)
    } else {
        let topics: Vec<&str> = p.topics.iter().map(String::as_str).collect();
        format!(
            "link {}: running, topics paused: {}\n",
            answer.link,
            topics.join(", ")
        )
    }
}
