//! One client connection: framing, dispatch, and ordered replies.
//!
//! Requests on a connection are answered one at a time in arrival order, which is what
//! Kafka clients rely on to match responses. Anything that breaks framing or decoding
//! closes this connection with a log line; the server and other connections carry on.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use shadowlink_protocol::frame::split_frame;
use shadowlink_protocol::request::{decode_body, parse_header, RequestError, RequestHeader};
use shadowlink_protocol::response::api_versions_unsupported;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{
    alter_configs, api_versions, create_partitions, create_topics, delete_records, delete_topics,
    describe_configs, fetch, groups, incremental_alter_configs, init_producer_id, list_offsets,
    metadata, offset_for_leader_epoch, produce, Reply, ServerContext,
};

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
    stream: TcpStream,
    peer: SocketAddr,
    context: Arc<ServerContext>,
    buf: BytesMut,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr, context: Arc<ServerContext>) -> Connection {
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            peer,
            context,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    pub async fn run(mut self) {
        loop {
            let frame = match self.read_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => return self.close(e),
            };
            if let Err(e) = self.handle(frame).await {
                return self.close(e);
            }
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

    /// The next complete frame, or `None` when the client closed cleanly.
    async fn read_frame(&mut self) -> Result<Option<Bytes>, ConnectionError> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf, self.context.max_frame_bytes)? {
                return Ok(Some(frame));
            }
            let read = tokio::time::timeout(
                self.context.idle_timeout,
                self.stream.read_buf(&mut self.buf),
            );
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
                Ok(Err(e)) => return Err(e.into()),
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
        let ctx = &self.context;
        let handled = api_versions::advertised(header.api_key)
            .is_some_and(|(min, max)| (min..=max).contains(&header.api_version));
        if !handled {
            return Err(RequestError::UnsupportedVersion {
                api_key: header.api_key,
                version: header.api_version,
                correlation_id: header.correlation_id,
            }
            .into());
        }
        let reply = match header.api_key {
            ApiKey::ApiVersions => api_versions::handle(header, decode_body(header, body)?)?,
            ApiKey::Metadata => metadata::handle(ctx, header, decode_body(header, body)?)?,
            ApiKey::ListOffsets => list_offsets::handle(ctx, header, decode_body(header, body)?)?,
            ApiKey::Produce => produce::handle(ctx, header, decode_body(header, body)?).await?,
            ApiKey::CreateTopics => {
                create_topics::handle(ctx, header, decode_body(header, body)?).await?
            }
            ApiKey::InitProducerId => {
                init_producer_id::handle(ctx, header, decode_body(header, body)?).await?
            }
            ApiKey::OffsetForLeaderEpoch => {
                offset_for_leader_epoch::handle(ctx, header, decode_body(header, body)?)?
            }
            ApiKey::DeleteRecords => {
                delete_records::handle(ctx, header, decode_body(header, body)?)?
            }
            ApiKey::CreatePartitions => {
                create_partitions::handle(ctx, header, decode_body(header, body)?)?
            }
            ApiKey::DeleteTopics => delete_topics::handle(ctx, header, decode_body(header, body)?)?,
            ApiKey::AlterConfigs => alter_configs::handle(ctx, header, decode_body(header, body)?)?,
            ApiKey::IncrementalAlterConfigs => {
                incremental_alter_configs::handle(ctx, header, decode_body(header, body)?)?
            }
            ApiKey::DescribeConfigs => {
                describe_configs::handle(ctx, header, decode_body(header, body)?)?
            }
            ApiKey::Fetch => fetch::handle(ctx, header, decode_body(header, body)?).await?,
            api if groups::HANDLED.iter().any(|(key, _, _)| *key == api) => {
                groups::dispatch(ctx, header, body).await?
            }
            other => {
                return Err(RequestError::UnsupportedApi {
                    api_key: other,
                    version: header.api_version,
                    correlation_id: header.correlation_id,
                }
                .into())
            }
        };
        Ok(reply)
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
