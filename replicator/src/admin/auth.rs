//! Bearer-token authentication of the admin API.
//!
//! Once `[admin] token_file` or `token_env` is set, every route but the health probes
//! needs `Authorization: Bearer <token>`. Failover is irreversible, so an admin listener
//! beyond loopback without a token is refused at start (see [`load`]).

use std::net::SocketAddr;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;

use crate::config::{invalid, AdminListener, ConfigError};

/// The environment variable the CLI reads a token from when `--token-file` is not given.
pub const TOKEN_ENV: &str = "SHADOWLINK_ADMIN_TOKEN";

/// Routes served without a token: orchestrators probe them without credentials.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// A shared secret. Its `Debug` form never shows it.
#[derive(Clone)]
pub struct AdminToken(Vec<u8>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token from its text: surrounding whitespace (a file's final newline) is not part
    /// of it, and an empty token is none.
    pub fn new(text: &str) -> Option<AdminToken> {
        let text = text.trim();
        (!text.is_empty()).then(|| AdminToken(text.as_bytes().to_vec()))
    }

    /// The token as the CLI sends it.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Compares in time independent of where the two differ, so a client cannot learn
    /// the token byte by byte from response times. Only the length can leak.
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.ct_eq(presented).into()
    }
}

/// Reads the token the admin table names; `env` looks up environment variables (the
/// process environment in the daemon, a map in tests). A listener not bound to loopback
/// needs one.
pub fn load(
    admin: &AdminListener,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<AdminToken>, ConfigError> {
    let token = match (&admin.token_file, &admin.token_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "admin.token_env",
                "set either admin.token_file or admin.token_env, not both",
            ))
        }
        (Some(path), None) => Some(from_file(path)?),
        (None, Some(name)) => Some(from_env(name, env)?),
        (None, None) => None,
    };
    let loopback = admin
        .listen
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if token.is_none() && !loopback {
        return Err(invalid(
            "admin.listen",
            format!(
                "{:?} is not a loopback address, and anyone who reaches it could fail topics \
                 over: set admin.token_file or admin.token_env, or listen on 127.0.0.1",
                admin.listen
            ),
        ));
    }
    Ok(token)
}

fn from_file(path: &Path) -> Result<AdminToken, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            "admin.token_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    AdminToken::new(&text).ok_or_else(|| {
        invalid(
            "admin.token_file",
            format!("{} holds no token", path.display()),
        )
    })
}

fn from_env(name: &str, env: impl Fn(&str) -> Option<String>) -> Result<AdminToken, ConfigError> {
    let text = env(name).ok_or_else(|| {
        invalid(
            "admin.token_env",
            format!("the environment variable {name} is not set"),
        )
    })?;
    AdminToken::new(&text).ok_or_else(|| {
        invalid(
            "admin.token_env",
            format!("the environment variable {name} is empty"),
        )
    })
}

/// Middleware: lets a request through when no token is configured, when it asks for a
/// health probe, or when it carries the token; answers 401 otherwise.
pub async fn require_token(
    State(token): State<Option<AdminToken>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if token.matches(presented.trim().as_bytes()) => next.run(request).await,
        Some(_) => unauthorized("the bearer token is not the admin token"),
        None => unauthorized("this request needs an Authorization: Bearer <token> header"),
    }
}

fn unauthorized(reason: &str) -> Response {
    let body = serde_json::json!({ "error": "unauthorized", "message": reason });
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(listen: &str, file: Option<&Path>, env: Option<&str>) -> AdminListener {
        AdminListener {
            listen: listen.into(),
            token_file: file.map(Path::to_path_buf),
            token_env: env.map(str::to_string),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_token_file_is_read_without_its_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let token = load(&admin("0.0.0.0:9644", Some(&path), None), no_env).unwrap();
        assert_eq!(token.unwrap().as_str(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        let e = load(&admin("127.0.0.1:9644", Some(&path), None), no_env).unwrap_err();
        assert!(e.to_string().starts_with("`admin.token_file`"), "{e}");
    }

    #[test]
    fn a_token_from_the_environment_names_the_variable_when_missing() {
        let env = |name: &str| (name == "ADMIN_TOKEN").then(|| "t0ken".to_string());
        let token = load(&admin("[::]:9644", None, Some("ADMIN_TOKEN")), env).unwrap();
        assert_eq!(token.unwrap().as_str(), "t0ken");
        let e = load(&admin("127.0.0.1:9644", None, Some("OTHER")), env).unwrap_err();
        assert!(
            e.to_string().starts_with("`admin.token_env`") && e.to_string().contains("OTHER"),
            "{e}"
        );
    }

    #[test]
    fn only_loopback_may_go_without_a_token() {
        assert!(load(&admin("127.0.0.1:9644", None, None), no_env)
            .unwrap()
            .is_none());
        assert!(load(&admin("[::1]:0", None, None), no_env)
            .unwrap()
            .is_none());
        for exposed in ["0.0.0.0:9644", "[::]:9644", "10.1.2.3:9644"] {
            let e = load(&admin(exposed, None, None), no_env).unwrap_err();
            assert!(
                e.to_string().starts_with("`admin.listen`") && e.to_string().contains("token"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_token_is_compared_whole_and_never_shown() {
        let token = AdminToken::new("abc").unwrap();
        assert!(token.matches(b"abc"));
        assert!(!token.matches(b"abd") && !token.matches(b"ab") && !token.matches(b"abcd"));
        assert_eq!(format!("{token:?}"), "AdminToken(..)");
    }
}
