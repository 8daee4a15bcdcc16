//! The node's Kafka-API listener: serves mirror partitions to ordinary Kafka clients.

mod alter_configs;
mod api_versions;
mod connection;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_configs;
mod fetch;
pub mod groups;
mod incremental_alter_configs;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offline;
mod offset_for_leader_epoch;
mod produce;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use shadowlink_protocol::fetch::ChunkList;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::mirror::Store;

pub use create_topics::CreatePolicy;

/// This node's id in every Metadata answer; a node is a one-broker cluster to clients.
pub const NODE_ID: i32 = 1;

/// The APIs this listener answers. ApiVersions advertises exactly these, at the versions
/// both the codec and the handler support.
const HANDLED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::Metadata, 0, 12),
    // Topic ids are zero, so clients stay on the name-based versions.
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::DescribeConfigs, 1, 4),
    // v13 names topics by id only. Appends to owned topics; refused on shadow topics.
    (ApiKey::Produce, 3, 12),
    // Creates owned topics.
    (ApiKey::CreateTopics, 2, 7),
    // Idempotent producers only: no transactions.
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    // The rest are refused on shadow topics, per topic, with POLICY_VIOLATION.
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    // v6 names topics by id.
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
];

/// What handlers need from the node.
pub struct ServerContext {
    pub store: Arc<Store>,
    pub groups: Arc<groups::Coordinator>,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub cluster_id: String,
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
    pub create_policy: CreatePolicy,
}

/// A handler's answer: a frame to write, or a zero-copy chunk list.
pub enum Reply {
    Frame(Bytes),
    Chunks(ChunkList),
    /// No response at all (Produce with acks=0).
    None,
}

/// Limits that protect the node from misbehaving clients.
pub struct Limits {
    pub max_connections: usize,
}

/// Accepts connections until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    context: Arc<ServerContext>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.max_connections, "connection refused: too many clients");
            continue;
        };
        let context = context.clone();
        tokio::spawn(async move {
            let _connected = crate::metrics::ClientConnection::open();
            connection::Connection::new(stream, peer, context)
                .run()
                .await;
            drop(permit);
        });
    }
}

/// Splits `host:port` for Metadata.
pub fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((
        host.trim_matches(['[', ']']).to_string(),
        port.parse().ok()?,
    ))
}

/// Binds the listener; `addr` may use port 0.
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
