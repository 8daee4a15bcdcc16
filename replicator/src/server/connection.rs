//! One client connection: framing, dispatch, and ordered replies.
//!
//! Requests on a connection are answered one at a time in arrival order, which is what
//! Kafka clients rely on to match responses. Anything that breaks framing or decoding
//! closes this connection with a log line; the server and other connections carry on.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use shadowlink_protocol::request::{parse_header, RequestError, RequestHeader};
use shadowlink_protocol::response::api_versions_unsupported;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::budget::{FrameBuffer, Reservation};
use super::{apis, Reply, ServerContext};
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
}

pub struct Connection {
    /// Plain TCP, or TLS when the listener has `[kafka.tls]`.
    stream: BoxStream,
    peer: SocketAddr,
    context: Arc<ServerContext>,
    /// Reserved against the node's request budget as it grows.
    buf: FrameBuffer,
}

impl Connection {
    pub fn new(stream: BoxStream, peer: SocketAddr, context: Arc<ServerContext>) -> Connection {
        Connection {
            stream,
            peer,
            buf: FrameBuffer::new(&context.request_budget, context.max_frame_bytes),
            context,
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
                tracing::debug!(peer = %self.peer, %error, "connection closed")
            }
            _ => tracing::warn!(peer = %self.peer, %error, "closing client connection"),
        }
    }

    /// The next complete frame and the budget its bytes hold, or `None` when the client
    /// closed cleanly.
    async fn read_frame(&mut self) -> Result<Option<(Bytes, Reservation)>, ConnectionError> {
        loop {
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
        let reply = self.dispatch(&header, body).await?;
        self.write(reply).await
    }

    async fn dispatch(
        &self,
        header: &RequestHeader,
        body: Bytes,
    ) -> Result<Reply, ConnectionError> {
        crate::metrics::count_kafka_request(header.api_key);
        apis::dispatch(&self.context, header, body).await
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
