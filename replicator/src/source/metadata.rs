//! The source cluster as Metadata describes it, and connections to its brokers.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use super::{SourceClient, SourceError, DEFAULT_REQUEST_TIMEOUT};
use crate::sasl::ClientSasl;
use crate::tls::ClientTls;

/// One partition of a source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: i32,
    pub leader_epoch: i32,
    pub error_code: i16,
}

/// One source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    /// The topic id; all zeroes when the source does not report ids.
    pub id: [u8; 16],
    pub internal: bool,
    pub error_code: i16,
    pub partitions: BTreeMap<i32, PartitionView>,
}

/// Brokers and topics of a source cluster at one point in time.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub brokers: HashMap<i32, String>,
    pub topics: BTreeMap<String, TopicView>,
}

impl ClusterView {
    fn from_response(response: MetadataResponse) -> ClusterView {
        let brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let topics = response
            .topics
            .into_iter()
            .filter_map(|t| {
                let name = t.name?.0.to_string();
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let view = PartitionView {
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            error_code: p.error_code,
                        };
                        (p.partition_index, view)
                    })
                    .collect();
                let view = TopicView {
                    id: *t.topic_id.as_bytes(),
                    internal: t.is_internal,
                    error_code: t.error_code,
                    partitions,
                };
                Some((name, view))
            })
            .collect();
        ClusterView { brokers, topics }
    }
}

/// The brokers of one source cluster: bootstrap addresses, the last metadata seen and
/// one client per broker, reconnected on demand.
pub struct SourceCluster {
    bootstrap: Vec<String>,
    client_id: String,
    tls: Option<ClientTls>,
    sasl: Option<ClientSasl>,
    clients: HashMap<String, SourceClient>,
    /// Fetches get connections of their own: responses on a connection come back in
    /// order, so an admin request queued behind a long-polling fetch would wait for it,
    /// and a broker dropping a connection over an admin request would cut the fetches.
    fetch_clients: HashMap<String, SourceClient>,
    pub view: ClusterView,
    request_timeout: Duration,
    /// This node's own advertised addresses: a broker the source lists at one of them is
    /// never asked for metadata, so a link cannot take its own node's answer for the
    /// source's.
    own: Vec<String>,
}

impl SourceCluster {
    pub fn new(
        bootstrap: Vec<String>,
        client_id: String,
        tls: Option<ClientTls>,
        sasl: Option<ClientSasl>,
    ) -> SourceCluster {
        SourceCluster {
            bootstrap,
            client_id,
            tls,
            sasl,
            clients: HashMap::new(),
            fetch_clients: HashMap::new(),
            view: ClusterView::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            own: Vec::new(),
        }
    }

    /// This node's advertised addresses (`host:port`), skipped among known brokers.
    pub fn set_own_addresses(&mut self, own: Vec<String>) {
        self.own = own;
    }

    /// The source of `link`: its brokers, client id, TLS, SASL and request deadline.
    pub fn for_link(link: &crate::config::Link) -> SourceCluster {
        let config = &link.config;
        let mut cluster = SourceCluster::new(
            config.bootstrap.clone(),
            config.client_id.clone(),
            link.tls.clone(),
            link.sasl.clone(),
        );
        cluster.set_request_timeout(config.request_timeout);
        cluster
    }

    /// Bounds every connect and request to this cluster by `timeout`.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// The bound on every connect and request to this cluster.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// A connected client for `addr`, reusing a live one.
    pub async fn client(&mut self, addr: &str) -> Result<SourceClient, SourceError> {
        if let Some(c) = self.clients.get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let connect =
            SourceClient::connect(addr, &self.client_id, self.tls.as_ref(), self.sasl.as_ref());
        let client = tokio::time::timeout(self.request_timeout, connect)
            .await
            .map_err(|_| SourceError::Timeout {
                addr: addr.to_string(),
            })??
            .with_request_timeout(self.request_timeout);
        self.clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// How connections to this cluster's brokers are secured.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// How connections to this cluster's brokers authenticate.
    pub fn sasl(&self) -> Option<&ClientSasl> {
        self.sasl.as_ref()
    }

    /// The live fetch connection to `addr`, if there is one.
    pub fn fetch_client(&self, addr: &str) -> Option<SourceClient> {
        self.fetch_clients
            .get(addr)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// Keeps a fetch connection made by a fetch task for reuse.
    pub fn adopt_fetch_client(&mut self, addr: &str, client: SourceClient) {
        self.fetch_clients.insert(addr.to_string(), client);
    }

    /// Drops the connections to `addr`, so the next use reconnects.
    pub fn forget(&mut self, addr: &str) {
        self.clients.remove(addr);
        self.fetch_clients.remove(addr);
    }

    /// A client for broker `node_id`, as the last metadata located it.
    pub async fn broker(&mut self, node_id: i32) -> Result<SourceClient, SourceError> {
        let addr = self
            .view
            .brokers
            .get(&node_id)
            .cloned()
            .ok_or(SourceError::UnknownBroker { node_id })?;
        self.client(&addr).await
    }

    /// Refreshes metadata from any reachable broker: known brokers first, then bootstrap.
    pub async fn refresh(&mut self) -> Result<&ClusterView, SourceError> {
        let mut candidates: Vec<String> = (self.view.brokers.values())
            .filter(|addr| !self.own.contains(addr))
            .cloned()
            .collect();
        candidates.sort();
        candidates.extend(self.bootstrap.iter().cloned());
        // A bootstrap address is often a known broker too: a silent one is waited for
        // only once per refresh.
        let mut seen = std::collections::HashSet::new();
        candidates.retain(|addr| seen.insert(addr.clone()));
        let mut last = None;
        for addr in candidates {
            match self.metadata_from(&addr).await {
                Ok(view) => {
                    self.view = view;
                    return Ok(&self.view);
                }
                Err(e) => {
                    self.clients.remove(&addr);
                    last = Some(Box::new(e));
                }
            }
        }
        Err(SourceError::NoBroker { last })
    }

    async fn metadata_from(&mut self, addr: &str) -> Result<ClusterView, SourceError> {
        let client = self.client(addr).await?;
        // A null topic list asks for every topic (v1 and later).
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let response: MetadataResponse = tokio::time::timeout(
            self.request_timeout,
            client.send(ApiKey::Metadata, &request),
        )
        .await
        .map_err(|_| SourceError::Timeout {
            addr: addr.to_string(),
        })??;
        Ok(ClusterView::from_response(response))
    }
}
