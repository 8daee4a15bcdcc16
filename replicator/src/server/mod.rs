//! The node's Kafka-API listeners: serve shadow (read-only mirror) and owned topics to
//! ordinary Kafka clients, one handler module per API. `apis` is the table of what is
//! served; `connection` owns framing and answers requests in order. Every listener
//! shares the node's `ServerContext`; a `Listener` holds what is its own.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod api_versions;
mod apis;
mod authenticate;
mod authorize;
mod budget;
mod connection;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_configs;
mod end_txn;
mod fetch;
mod fetch_session;
mod groups;
mod incremental_alter_configs;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offline;
mod offset_for_leader_epoch;
mod produce;
mod txn_offset_commit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::protocol::Encodable;
use shadowlink_protocol::fetch::ChunkList;
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::{encode_response, EncodeError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::config::SecurityProtocol;
use crate::groups::Coordinator;
use crate::mirror::Store;
use crate::tls::{BoxStream, ServerTls};
use crate::txn::TxnCoordinator;

pub use authenticate::Principal;
pub use authorize::RequestContext;
pub use budget::RequestBudget;
pub use create_topics::CreatePolicy;
pub use fetch_session::{SessionCache, SessionError};

/// What handlers need from the node, the same on every listener.
pub struct ServerContext {
    pub store: Arc<Store>,
    pub groups: Arc<Coordinator>,
    pub txns: Arc<TxnCoordinator>,
    pub cluster_id: String,
    /// The broker id this node gives itself in Metadata and FindCoordinator.
    pub node_id: i32,
    pub max_frame_bytes: usize,
    /// What every connection's read buffer is reserved against.
    pub request_budget: RequestBudget,
    pub idle_timeout: Duration,
    pub create_policy: CreatePolicy,
    /// KIP-227 incremental fetch sessions.
    pub sessions: Arc<SessionCache>,
    /// Who may do what; each connection takes the grants of its principal.
    pub acl: crate::authz::Acl,
    /// Where the owners of topics this node handed over are.
    pub peers: Arc<crate::switchover::peers::Peers>,
    /// Where each partition is served when this node is one of a cluster; `None` for a
    /// node on its own, which leads everything it holds.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// One Kafka listener: how its clients connect and prove who they are, and the address
/// Metadata gives them. As in Kafka, a client is only ever told the address of the
/// listener it came in on, so one bootstrapped inside is never sent outside.
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub advertised_host: String,
    pub advertised_port: i32,
    /// When set, the listener speaks only TLS.
    pub tls: Option<ServerTls>,
    /// When set, clients must authenticate before anything but ApiVersions is served.
    pub sasl: Option<Arc<crate::sasl::ListenerSasl>>,
}

/// A handler's answer: a frame to write, or a zero-copy chunk list.
pub enum Reply {
    Frame(Bytes),
    Chunks(ChunkList),
    /// No response at all (Produce with acks=0).
    None,
}

impl Reply {
    /// `response` encoded as the answer to the request `header` describes.
    pub fn encode<T: Encodable>(
        header: &RequestHeader,
        response: &T,
    ) -> Result<Reply, EncodeError> {
        let frame = encode_response(
            header.api_key,
            header.api_version,
            header.correlation_id,
            response,
        )?;
        Ok(Reply::Frame(frame))
    }
}

/// Limits that protect the node from misbehaving clients, shared by its listeners.
#[derive(Clone)]
pub struct Limits {
    max_connections: usize,
    slots: Arc<Semaphore>,
}

impl Limits {
    /// At most `max_connections` clients at once, over every listener that shares these.
    pub fn new(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            slots: Arc::new(Semaphore::new(max_connections)),
        }
    }
}

/// Runs the TLS handshake when the listener has TLS. A failed handshake closes only
/// this connection, with a log line naming the client. The principal is the verified
/// client certificate's subject, else anonymous.
async fn secure(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&ServerTls>,
    timeout: Duration,
) -> Option<(BoxStream, Principal)> {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return Some((Box::new(stream), Principal::Anonymous));
    };
    match tls.accept(stream, timeout).await {
        Ok((stream, subject)) => {
            let principal = subject.map_or(Principal::Anonymous, Principal::TlsSubject);
            tracing::debug!(%peer, %principal, "TLS client connected");
            Some((stream, principal))
        }
        Err(error) => {
            tracing::info!(%peer, %error, "TLS handshake failed; connection closed");
            None
        }
    }
}

/// Accepts connections on `socket` for `listener` until `stop` turns true.
pub async fn serve(
    socket: TcpListener,
    context: Arc<ServerContext>,
    listener: Arc<Listener>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = socket.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limits.slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, listener = %listener.name, limit = limits.max_connections, "connection refused: too many clients");
            continue;
        };
        let (context, listener) = (context.clone(), listener.clone());
        let mut stopped = stop.clone();
        tokio::spawn(async move {
            let _connected = crate::metrics::ClientConnection::open();
            let served = async {
                let timeout = context.idle_timeout;
                let tls = listener.tls.as_ref();
                if let Some((stream, principal)) = secure(stream, peer, tls, timeout).await {
                    connection::Connection::new(stream, peer, context, listener, principal)
                        .run()
                        .await;
                }
            };
            // A stopped node closes its open connections too: in a process that goes
            // on (a node started again on the same data directory), they would keep
            // answering from logs the new node has since changed.
            tokio::select! {
                _ = served => {}
                _ = stopped.wait_for(|stop| *stop) => {}
            }
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

/// Binds the listener; `addr` may use port 0. The listener's metric series exist from
/// here on.
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    apis::declare_metrics();
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn context(dir: &std::path::Path) -> ServerContext {
        // Far beyond the test's wait: only the stop may close the connection.
        super::apis::tests::context_idle_for(dir, Duration::from_secs(600))
    }

    #[tokio::test]
    async fn stopping_the_node_closes_open_connections() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, addr) = bind("127.0.0.1:0").await.unwrap();
        let listener = Arc::new(Listener {
            name: "default".into(),
            protocol: SecurityProtocol::Plaintext,
            advertised_host: "127.0.0.1".into(),
            advertised_port: i32::from(addr.port()),
            tls: None,
            sasl: None,
        });
        let (stop, stopped) = watch::channel(false);
        let context = Arc::new(context(dir.path()));
        let served = tokio::spawn(serve(socket, context, listener, Limits::new(4), stopped));
        let mut client = TcpStream::connect(addr).await.unwrap();
        // ApiVersions v0 answered: the connection is being served.
        let request = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
        client.write_all(&request).await.unwrap();
        let length = client.read_i32().await.unwrap();
        let mut answer = vec![0u8; usize::try_from(length).unwrap()];
        client.read_exact(&mut answer).await.unwrap();
        stop.send(true).unwrap();
        served.await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "the connection is still open after the stop: {read:?}"
        );
    }
}
