//! One client connection: framing, dispatch, and ordered replies.
//!
//! Requests on a connection are answered one at a time in arrival order, which is what
//! Kafka clients rely on to match responses. Anything that breaks framing or decoding
//! closes this connection with a log line; the server and other connections carry on.
//! On a listener with SASL, the connection first authenticates (see `authenticate`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use shadowlink_protocol::request::{decode_body, parse_header, RequestError, RequestHeader};
use shadowlink_protocol::response::api_versions_unsupported;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::authenticate::{Authenticator, Principal, Step};
use super::budget::{FrameBuffer, Reservation};
use super::{apis, Listener, Reply, RequestContext, ServerContext};
use crate::authz::Grants;
use crate::tls::BoxStream;

/// Why a connection is being closed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] shadowlink_protocol::frame::FrameError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("cannot encode the response: {0}")]
    Encode(#[from] shadowlink_protocol::response::EncodeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("idle for longer than the idle timeout")]
    Idle,
    #[error("{api:?} before SASL authentication")]
    Unauthenticated { api: ApiKey },
    #[error("SASL authentication refused: {0}")]
    Authentication(String),
}

/// The largest frame read before authentication, as Kafka's
/// `sasl.server.max.receive.size`: an unauthenticated client cannot make the node
/// buffer a large request.
const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;

pub struct Connection {
    /// Plain TCP, or TLS when the listener has `tls`.
    stream: BoxStream,
    peer: SocketAddr,
    context: Arc<ServerContext>,
    /// The listener the client connected to.
    listener: Arc<Listener>,
    /// Reserved against the node's request budget as it grows.
    buf: FrameBuffer,
    /// Present until a listener with SASL has authenticated the client.
    authenticator: Option<Authenticator>,
    /// Who the requests speak for: the SASL user once authenticated, else the TLS
    /// client certificate's subject, else anonymous.
    principal: Principal,
    /// What the principal may do, taken from the node's rules when it is set.
    grants: Grants,
}

impl Connection {
    /// A connection from `peer` to `listener`; `principal` is who TLS proved it to be,
    /// if anyone.
    pub fn new(
        stream: BoxStream,
        peer: SocketAddr,
        context: Arc<ServerContext>,
        listener: Arc<Listener>,
        principal: Principal,
    ) -> Connection {
        Connection {
            stream,
            peer,
            buf: FrameBuffer::new(&context.request_budget, context.max_frame_bytes),
            authenticator: listener.sasl.clone().map(Authenticator::new),
            grants: context.acl.grants(&principal.to_string()),
            context,
            listener,
            principal,
        }
    }

    pub async fn run(mut self) {
        loop {
            let (frame, held) = match self.read_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => return self.close(e),
            };
            if let Err(e) = self.handle(frame).await {
                return self.close(e);
            }
            drop(held);
            self.buf.release_if_empty();
        }
    }

    fn close(&self, error: ConnectionError) {
        match error {
            ConnectionError::Io(_) | ConnectionError::Idle => {
                tracing::debug!(peer = %self.peer, principal = %self.principal, %error, "connection closed")
            }
            ConnectionError::Authentication(_) | ConnectionError::Unauthenticated { .. } => {
                tracing::info!(peer = %self.peer, %error, "closing unauthenticated connection")
            }
            _ => {
                let principal = &self.principal;
                tracing::warn!(peer = %self.peer, %principal, %error, "closing client connection")
            }
        }
    }

    /// The next complete frame and the budget its bytes hold, or `None` when the client
    /// closed cleanly.
    async fn read_frame(&mut self) -> Result<Option<(Bytes, Reservation)>, ConnectionError> {
        loop {
            let max = match self.authenticator {
                Some(_) => MAX_UNAUTHENTICATED_FRAME.min(self.context.max_frame_bytes),
                None => self.context.max_frame_bytes,
            };
            self.buf.set_max_frame_bytes(max);
            if let Some(frame) = self.buf.split()? {
                return Ok(Some(frame));
            }
            let (buf, stream) = (&mut self.buf, &mut self.stream);
            // Waiting for budget counts as idle too, so stalled partial frames give
            // theirs back after the idle timeout.
            let read = tokio::time::timeout(self.context.idle_timeout, async move {
                let room = buf.make_room().await?;
                Ok::<_, ConnectionError>(stream.read_buf(room).await?)
            });
            match read.await {
                Err(_) => return Err(ConnectionError::Idle),
                Ok(Ok(0)) if self.buf.is_empty() => return Ok(None),
                Ok(Ok(0)) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the client closed the connection mid-frame",
                    )
                    .into())
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    async fn handle(&mut self, frame: Bytes) -> Result<(), ConnectionError> {
        if let Some(auth) = self.authenticator.as_mut() {
            // After a v0 SaslHandshake the frame is a bare token, not a Kafka request.
            if auth.expects_raw_token() {
                let step = auth.raw_token(&frame);
                return self.follow(step).await;
            }
        }
        let (header, body) = match parse_header(&frame) {
            Ok(parsed) => parsed,
            // KIP-511: answer a too-new ApiVersions in v0 so the client can retry lower.
            Err(RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => {
                return self
                    .write(Reply::Frame(api_versions_unsupported(correlation_id)))
                    .await
            }
            Err(e) => return Err(e.into()),
        };
        if self.authenticator.is_some() {
            return self.authenticate(&header, body).await;
        }
        let reply = self.dispatch(&header, body).await?;
        self.write(reply).await
    }

    /// Serves a request before authentication: ApiVersions (once, before the
    /// handshake, with the full list, which librdkafka needs to pick SaslAuthenticate),
    /// SaslHandshake and SaslAuthenticate. Anything else closes the connection.
    async fn authenticate(
        &mut self,
        header: &RequestHeader,
        body: Bytes,
    ) -> Result<(), ConnectionError> {
        let Some(auth) = self.authenticator.as_mut() else {
            return Ok(());
        };
        let step = match header.api_key {
            ApiKey::ApiVersions if auth.take_api_versions() => {
                let reply = self.dispatch(header, body).await?;
                return self.write(reply).await;
            }
            ApiKey::SaslHandshake => {
                crate::metrics::count_kafka_request(header.api_key);
                auth.handshake(header, decode_body(header, body)?)
            }
            ApiKey::SaslAuthenticate => {
                crate::metrics::count_kafka_request(header.api_key);
                auth.authenticate(header, decode_body(header, body)?)
            }
            api => return Err(ConnectionError::Unauthenticated { api }),
        };
        self.follow(step).await
    }

    /// Carries out an authentication step: answer and go on, answer and serve from now
    /// on, or answer and close after the failed-authentication delay. As in Kafka, the
    /// refusal is written at once and only the close waits, so the client reads why it
    /// failed, and one connection cannot try credentials quickly.
    async fn follow(&mut self, step: Step) -> Result<(), ConnectionError> {
        match step {
            Step::Continue(reply) => self.write(reply).await,
            Step::Authenticated(reply, principal) => {
                tracing::info!(peer = %self.peer, %principal, "client authenticated");
                self.authenticator = None;
                self.grants = self.context.acl.grants(&principal.to_string());
                self.principal = principal;
                self.write(reply).await
            }
            Step::Refused(reply, error) => {
                if let Some(reply) = reply {
                    self.write(reply).await?;
                    self.stream.flush().await?;
                }
                if let Some(auth) = &self.authenticator {
                    tokio::time::sleep(auth.failed_delay()).await;
                }
                self.linger().await;
                Err(error)
            }
        }
    }

    async fn dispatch(
        &self,
        header: &RequestHeader,
        body: Bytes,
    ) -> Result<Reply, ConnectionError> {
        crate::metrics::count_kafka_request(header.api_key);
        let ctx = RequestContext {
            server: &self.context,
            listener: &self.listener,
            grants: &self.grants,
        };
        apis::dispatch(&ctx, header, body).await
    }

    /// Closes the sending side and drains what the client still sends for a moment, so
    /// the refusal just written is not lost to a reset: closing a socket with unread
    /// bytes makes the kernel send RST, which can discard the answer in flight.
    async fn linger(&mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 1024];
        let drain = async { while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }

    async fn write(&mut self, reply: Reply) -> Result<(), ConnectionError> {
        match reply {
            Reply::Frame(bytes) => self.stream.write_all(&bytes).await?,
            // Vectored write straight from the stored chunks: record bytes are not copied.
            Reply::Chunks(mut chunks) => self.stream.write_all_buf(&mut chunks).await?,
            Reply::None => {}
        }
        Ok(())
    }
}
