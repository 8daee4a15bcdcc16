//! The admin API as a client sees it: `shadowlink status` and `shadowlink failover` talk
//! to a node's admin listener over HTTP.

use std::path::Path;
use std::time::Duration;

use super::auth::{AdminToken, TOKEN_ENV};
use crate::status::StatusReport;

/// Where `shadowlink status` looks without `--admin`: the port the deploy examples use.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:9644";

/// Why a status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url} did not answer with a status report: {reason}")]
    Body { url: String, reason: String },
    #[error("cannot read the admin token: {0}")]
    Token(String),
}

/// The token the CLI sends: from `--token-file` when given, else from the
/// `SHADOWLINK_ADMIN_TOKEN` environment variable, else none.
pub fn token(file: Option<&Path>) -> Result<Option<AdminToken>, StatusError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StatusError::Token(format!("{}: {e}", path.display())))?;
        return AdminToken::new(&text)
            .map(Some)
            .ok_or_else(|| StatusError::Token(format!("{} holds no token", path.display())));
    }
    Ok(std::env::var(TOKEN_ENV)
        .ok()
        .and_then(|t| AdminToken::new(&t)))
}

/// `request` with the bearer token, when there is one.
pub(super) fn authorized<B>(
    request: ureq::RequestBuilder<B>,
    token: Option<&AdminToken>,
) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => request.header("authorization", format!("Bearer {}", t.as_str())),
        None => request,
    }
}

/// Fetches the raw JSON of `/v1/status` from the admin listener at `admin`
/// (`http://host:port`, or `host:port`).
pub fn fetch_json(admin: &str, token: Option<&AdminToken>) -> Result<String, StatusError> {
    let url = admin_url(admin, "/v1/status");
    answer_text(&url, authorized(agent().get(&url), token).call())
}

/// POSTs `request` as JSON to `path` on the admin listener at `admin` and parses the
/// JSON answer; `timeout` bounds the whole exchange (a verify reads a whole mirror).
pub(super) fn post_json<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    admin: &str,
    token: Option<&AdminToken>,
    path: &str,
    request: &Q,
    timeout: Duration,
) -> Result<A, StatusError> {
    let url = admin_url(admin, path);
    let body = serde_json::to_string(request).map_err(|e| StatusError::Http {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let answer = authorized(agent_with(timeout).post(&url), token)
        .header("content-type", "application/json")
        .send(body);
    let text = answer_text(&url, answer)?;
    serde_json::from_str(&text).map_err(|e| StatusError::Body {
        url: url.clone(),
        reason: e.to_string(),
    })
}

/// The body of an admin listener's answer to a request sent to `url`; a failed request
/// or a status other than success is an error carrying what the node said.
pub(super) fn answer_text(
    url: &str,
    answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, StatusError> {
    let http = |reason: String| StatusError::Http {
        url: url.to_string(),
        reason,
    };
    let mut response = answer.map_err(|e| http(e.to_string()))?;
    let code = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| http(e.to_string()))?;
    if !code.is_success() {
        return Err(http(format!("{code}: {}", text.trim())));
    }
    Ok(text)
}

/// `path` on the admin listener at `admin` (`http://host:port` or `host:port`).
pub(super) fn admin_url(admin: &str, path: &str) -> String {
    let base = if admin.contains("://") {
        admin.to_string()
    } else {
        format!("http://{admin}")
    };
    format!("{}{path}", base.trim_end_matches('/'))
}

pub(super) fn agent() -> ureq::Agent {
    agent_with(REQUEST_TIMEOUT)
}

/// How long an ordinary admin request may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn agent_with(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Parses what [`fetch_json`] returned.
pub fn parse(admin: &str, json: &str) -> Result<StatusReport, StatusError> {
    serde_json::from_str(json).map_err(|e| StatusError::Body {
        url: admin.to_string(),
        reason: e.to_string(),
    })
}
