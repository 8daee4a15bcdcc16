//! The server side of SASL on one connection (KIP-43, KIP-152), until it is authenticated.
//!
//! Before authentication only ApiVersions (once, before the handshake), SaslHandshake
//! and SaslAuthenticate are served, as Kafka's `SaslServerAuthenticator` does. After a
//! v0 handshake the tokens travel as bare size-prefixed frames with no Kafka header;
//! after v1 they travel in SaslAuthenticate requests. Every refusal is answered at once
//! and closes the connection after the configured delay.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::request::RequestHeader;

use super::connection::ConnectionError;
use super::{Reply, RequestContext};
use crate::errors::SaslRefusal;
use crate::sasl::scram::{ScramError, ScramServer, ScramServerFinal};
use crate::sasl::{ListenerSasl, Mechanism};

/// Who a connection speaks for, once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No SASL and no client certificate.
    Anonymous,
    /// A SASL user.
    User(String),
    /// The subject of a verified TLS client certificate.
    TlsSubject(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("User:ANONYMOUS"),
            Principal::User(user) => write!(f, "User:{user}"),
            Principal::TlsSubject(subject) => write!(f, "User:{subject}"),
        }
    }
}

/// Where the exchange stands.
enum Phase {
    /// Nothing but ApiVersions yet; `versions` once it has been answered.
    Start { versions: bool },
    /// SaslHandshake accepted `mechanism`; the next token opens the exchange.
    Handshaken { mechanism: Mechanism, raw: bool },
    /// SCRAM server-first sent; client-final is due.
    ScramFinal {
        mechanism: Mechanism,
        state: Box<ScramServerFinal>,
        raw: bool,
    },
    /// Refused: the reply is the last thing written.
    Closed,
}

/// What the connection does next.
pub enum Step {
    /// Write the reply and read the next frame.
    Continue(Reply),
    /// Write the reply; from now on the connection serves requests as `principal`.
    Authenticated(Reply, Principal),
    /// Write the reply if any, wait the failed-authentication delay, then close.
    Refused(Option<Reply>, ConnectionError),
}

/// The outcome of one token of an exchange.
enum Token {
    Challenge(Vec<u8>),
    Done(Vec<u8>, String),
    Failed(String),
}

/// One connection's authentication, from accept to success or refusal.
pub struct Authenticator {
    sasl: Arc<ListenerSasl>,
    phase: Phase,
}

impl Authenticator {
    pub fn new(sasl: Arc<ListenerSasl>) -> Authenticator {
        Authenticator {
            sasl,
            phase: Phase::Start { versions: false },
        }
    }

    /// Whether the next frame is a bare token (after a v0 SaslHandshake).
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self.phase,
            Phase::Handshaken { raw: true, .. } | Phase::ScramFinal { raw: true, .. }
        )
    }

    /// Whether an ApiVersions request may be answered now: once, before the handshake.
    pub fn take_api_versions(&mut self) -> bool {
        match &mut self.phase {
            Phase::Start { versions } if !*versions => {
                *versions = true;
                true
            }
            _ => false,
        }
    }

    /// How long a refused connection stays open, answered, before it closes.
    pub fn failed_delay(&self) -> std::time::Duration {
        self.sasl.failed_delay
    }

    fn offered(&self) -> Vec<StrBytes> {
        self.sasl
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect()
    }

    /// Answers SaslHandshake: v0 switches to bare tokens, v1 to SaslAuthenticate.
    pub fn handshake(&mut self, header: &RequestHeader, request: SaslHandshakeRequest) -> Step {
        let answer = |code: i16, mechanisms| {
            let response = SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(mechanisms);
            Reply::encode(header, &response)
        };
        if !matches!(self.phase, Phase::Start { .. }) {
            self.phase = Phase::Closed;
            return refuse(
                answer(SaslRefusal::IllegalState.code(), self.offered()),
                "SaslHandshake out of order",
            );
        }
        let wanted = request.mechanism.as_str();
        let mechanism = wanted
            .parse::<Mechanism>()
            .ok()
            .filter(|m| self.sasl.mechanisms.contains(m));
        let Some(mechanism) = mechanism else {
            self.phase = Phase::Closed;
            crate::metrics::sasl_authentication(None, false);
            let reason = format!("unsupported SASL mechanism {wanted:?}");
            return refuse(
                answer(SaslRefusal::UnsupportedMechanism.code(), self.offered()),
                &reason,
            );
        };
        self.phase = Phase::Handshaken {
            mechanism,
            raw: header.api_version == 0,
        };
        match answer(0, self.offered()) {
            Ok(reply) => Step::Continue(reply),
            Err(e) => Step::Refused(None, e.into()),
        }
    }

    /// Answers SaslAuthenticate with the next challenge, success or
    /// SASL_AUTHENTICATION_FAILED.
    pub fn authenticate(
        &mut self,
        header: &RequestHeader,
        request: SaslAuthenticateRequest,
    ) -> Step {
        let answer = |code: i16, message: Option<String>, bytes: Vec<u8>| {
            let response = SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
                .with_auth_bytes(Bytes::from(bytes));
            Reply::encode(header, &response)
        };
        if !matches!(
            self.phase,
            Phase::Handshaken { raw: false, .. } | Phase::ScramFinal { raw: false, .. }
        ) {
            self.phase = Phase::Closed;
            let message = "SaslAuthenticate before a SaslHandshake v1".to_string();
            return refuse(
                answer(
                    SaslRefusal::IllegalState.code(),
                    Some(message.clone()),
                    vec![],
                ),
                &message,
            );
        }
        match self.token(&request.auth_bytes) {
            Token::Challenge(bytes) => continue_with(answer(0, None, bytes)),
            Token::Done(bytes, user) => match answer(0, None, bytes) {
                Ok(reply) => Step::Authenticated(reply, Principal::User(user)),
                Err(e) => Step::Refused(None, e.into()),
            },
            Token::Failed(reason) => {
                let message = Some(reason.clone());
                refuse(
                    answer(SaslRefusal::AuthenticationFailed.code(), message, vec![]),
                    &reason,
                )
            }
        }
    }

    /// Handles a bare token after a v0 handshake; a refusal closes without an answer.
    pub fn raw_token(&mut self, frame: &[u8]) -> Step {
        let frame_of = |bytes: Vec<u8>| {
            let mut out = Vec::with_capacity(4 + bytes.len());
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&bytes);
            Reply::Frame(Bytes::from(out))
        };
        match self.token(frame) {
            Token::Challenge(bytes) => Step::Continue(frame_of(bytes)),
            Token::Done(bytes, user) => Step::Authenticated(frame_of(bytes), Principal::User(user)),
            Token::Failed(reason) => Step::Refused(None, ConnectionError::Authentication(reason)),
        }
    }

    /// Runs one token through the mechanism the handshake chose.
    fn token(&mut self, token: &[u8]) -> Token {
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        let (mechanism, outcome) = match phase {
            Phase::Handshaken {
                mechanism: Mechanism::Plain,
                ..
            } => (Mechanism::Plain, self.plain(token)),
            Phase::Handshaken { mechanism, raw } => {
                (mechanism, self.scram_first(mechanism, token, raw))
            }
            Phase::ScramFinal {
                mechanism, state, ..
            } => {
                let user = state.user().to_string();
                let outcome = state.finish(token);
                let outcome = outcome.map(|(user, reply)| Token::Done(reply, user));
                (mechanism, outcome.map_err(|e| (Some(user), cause(e))))
            }
            Phase::Start { .. } | Phase::Closed => {
                return Token::Failed("no SASL exchange in progress".into())
            }
        };
        match outcome {
            Ok(Token::Done(bytes, user)) => {
                crate::metrics::sasl_authentication(Some(mechanism), true);
                Token::Done(bytes, user)
            }
            Ok(token) => token,
            Err((user, cause)) => {
                crate::metrics::sasl_authentication(Some(mechanism), false);
                let user = user.map(|u| format!(" for user {u:?}")).unwrap_or_default();
                Token::Failed(format!(
                    "Authentication failed{user} with SASL mechanism {mechanism}: {cause}"
                ))
            }
        }
    }

    fn plain(&self, token: &[u8]) -> Result<Token, (Option<String>, String)> {
        let (user, password) = parse_plain(token).map_err(|e| (None, e.to_string()))?;
        if self.sasl.users.check_plain(user, password) {
            Ok(Token::Done(Vec::new(), user.to_string()))
        } else {
            Err((Some(user.to_string()), "invalid credentials".to_string()))
        }
    }

    fn scram_first(
        &mut self,
        mechanism: Mechanism,
        token: &[u8],
        raw: bool,
    ) -> Result<Token, (Option<String>, String)> {
        let Some(hash) = mechanism.scram() else {
            return Err((None, "not a SCRAM mechanism".into()));
        };
        let nonce = crate::sasl::nonce().map_err(|e| (None, format!("no random nonce: {e}")))?;
        let users = &self.sasl.users;
        let (state, reply) = ScramServer::new(hash)
            .first(token, |user| users.scram(user, hash), &nonce)
            .map_err(|e| (None, cause(e)))?;
        self.phase = Phase::ScramFinal {
            mechanism,
            state: Box::new(state),
            raw,
        };
        Ok(Token::Challenge(reply))
    }
}

/// What a client is told about a failed SCRAM step: an unknown user and a wrong
/// password read alike, so the answer does not reveal which users exist.
fn cause(error: ScramError) -> String {
    match error {
        ScramError::UnknownUser | ScramError::BadProof => "invalid credentials".to_string(),
        other => other.to_string(),
    }
}

fn continue_with(reply: Result<Reply, shadowlink_protocol::response::EncodeError>) -> Step {
    match reply {
        Ok(reply) => Step::Continue(reply),
        Err(e) => Step::Refused(None, e.into()),
    }
}

fn refuse(reply: Result<Reply, shadowlink_protocol::response::EncodeError>, reason: &str) -> Step {
    Step::Refused(
        reply.ok(),
        ConnectionError::Authentication(reason.to_string()),
    )
}

/// Why a PLAIN message is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlainError {
    #[error("a PLAIN message is `authzid NUL user NUL password` in UTF-8")]
    Malformed,
    #[error("the PLAIN user and password must not be empty")]
    Empty,
    #[error("the PLAIN authorization id differs from the user")]
    AuthorizationId,
}

/// Splits PLAIN's `authzid NUL user NUL password` (RFC 4616) as Kafka's
/// `PlainSaslServer` does: the authorization id, when given, must be the user.
pub fn parse_plain(token: &[u8]) -> Result<(&str, &[u8]), PlainError> {
    let mut parts = token.splitn(3, |b| *b == 0);
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed)?;
    if user.is_empty() || password.is_empty() {
        return Err(PlainError::Empty);
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(PlainError::AuthorizationId);
    }
    Ok((user, password))
}

/// The answers to SaslHandshake and SaslAuthenticate once the connection is past
/// authentication, or on a listener without SASL: SaslRefusal::IllegalState.code(), since
/// re-authentication (KIP-368) is not offered.
pub mod after {
    use super::*;

    pub fn handshake(
        ctx: &RequestContext,
        header: &RequestHeader,
        _request: SaslHandshakeRequest,
    ) -> Result<Reply, ConnectionError> {
        let mechanisms = ctx
            .listener
            .sasl
            .iter()
            .flat_map(|sasl| sasl.mechanisms.iter())
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let response = SaslHandshakeResponse::default()
            .with_error_code(SaslRefusal::IllegalState.code())
            .with_mechanisms(mechanisms);
        Ok(Reply::encode(header, &response)?)
    }

    pub fn authenticate(
        ctx: &RequestContext,
        header: &RequestHeader,
        _request: SaslAuthenticateRequest,
    ) -> Result<Reply, ConnectionError> {
        let message = match ctx.listener.sasl {
            Some(_) => "already authenticated; re-authentication is not offered",
            None => "this listener does not use SASL",
        };
        let response = SaslAuthenticateResponse::default()
            .with_error_code(SaslRefusal::IllegalState.code())
            .with_error_message(Some(StrBytes::from_static_str(message)));
        Ok(Reply::encode(header, &response)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages_follow_kafka() {
        assert_eq!(parse_plain(b"\0alice\0pw"), Ok(("alice", &b"pw"[..])));
        assert_eq!(
            parse_plain(b"alice\0alice\0p\0w"),
            Ok(("alice", &b"p\0w"[..]))
        );
        assert_eq!(
            parse_plain(b"bob\0alice\0pw"),
            Err(PlainError::AuthorizationId)
        );
        assert_eq!(parse_plain(b"\0\0pw"), Err(PlainError::Empty));
        assert_eq!(parse_plain(b"\0alice\0"), Err(PlainError::Empty));
        assert_eq!(parse_plain(b"alice:pw"), Err(PlainError::Malformed));
    }
}
