//! `[kafka]` and `[admin]`: the node's first Kafka listener with the limits every
//! listener shares, and the HTTP admin listener.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, listeners, Config, ConfigError, ListenerConfig};

/// `[kafka]`: the node's first Kafka-API listener, and the limits every listener shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaListener {
    /// Names this listener in `/v1/status` and logs.
    #[serde(default = "listeners::default_name")]
    pub name: String,
    pub listen: String,
    /// What Metadata tells clients to connect to; defaults to `listen`.
    #[serde(default)]
    pub advertised: Option<String>,
    /// Client connections accepted at once over all listeners; further ones are closed
    /// on accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The largest request frame accepted; a larger one closes its connection.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Bytes of request buffers all connections may hold at once; over it, reading waits.
    #[serde(default = "default_request_memory_bytes")]
    pub request_memory_bytes: usize,
    /// Partitions one CreateTopics request may create, over all its topics.
    #[serde(default = "default_max_partitions_per_request")]
    pub max_partitions_per_request: i64,
    /// KIP-227 fetch sessions held at once (Kafka's
    /// `max.incremental.fetch.session.cache.slots`); 0 serves only full fetches.
    #[serde(default = "default_fetch_session_slots")]
    pub fetch_session_slots: usize,
    /// When set, the listener speaks only TLS.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// When set, clients must authenticate with SASL.
    #[serde(default)]
    pub sasl: Option<crate::sasl::ListenerSaslConfig>,
    /// `[[kafka.listeners]]`: more listeners, each with its own port, security protocol
    /// and advertised address, as Kafka's `listeners`.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
}

/// A listener's `tls` table: its certificate and, for mutual TLS, the client CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain, the node's certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
    /// PEM CA certificates client certificates are verified against; a client that
    /// presents a certificate this CA did not sign is refused.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Refuse clients without a certificate (needs `ca`).
    #[serde(default)]
    pub require_client_cert: bool,
}

fn default_max_connections() -> usize {
    1024
}
fn default_idle_timeout() -> Duration {
    // Kafka's connections.max.idle.ms.
    Duration::from_secs(600)
}
fn default_max_request_bytes() -> usize {
    // Kafka's socket.request.max.bytes.
    100 * 1024 * 1024
}
fn default_request_memory_bytes() -> usize {
    256 * 1024 * 1024
}
fn default_max_partitions_per_request() -> i64 {
    1000
}
fn default_fetch_session_slots() -> usize {
    1000
}

/// The HTTP admin listener: `/metrics`, `/v1/status`, `/healthz`, `/readyz`, failover.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminListener {
    pub listen: String,
    /// A file holding the bearer token every request but the health probes must carry.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding that token, instead of `token_file`.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl Config {
    /// `[kafka]`'s limits on connections and requests, which hold for all listeners.
    pub(super) fn validate_kafka_limits(&self) -> Result<(), ConfigError> {
        if self.kafka.max_connections == 0 {
            return Err(invalid("kafka.max_connections", "must be at least 1"));
        }
        if self.kafka.idle_timeout < Duration::from_millis(100) {
            return Err(invalid("kafka.idle_timeout", "must be at least 100ms"));
        }
        if self.kafka.max_request_bytes < 1024 {
            return Err(invalid("kafka.max_request_bytes", "must be at least 1024"));
        }
        if self.kafka.request_memory_bytes < self.kafka.max_request_bytes + 1024 {
            return Err(invalid(
                "kafka.request_memory_bytes",
                "must exceed kafka.max_request_bytes by at least 1024, or a request of that size \
                 could never be read",
            ));
        }
        Ok(())
    }

    /// The admin API's bearer token, read from its file or environment variable.
    pub fn admin_token(&self) -> Result<Option<crate::admin::auth::AdminToken>, ConfigError> {
        let Some(admin) = &self.admin else {
            return Ok(None);
        };
        crate::admin::auth::load(admin, |name| std::env::var(name).ok())
    }

    /// The address Metadata advertises to the clients of the first listener.
    pub fn advertised(&self) -> &str {
        self.kafka
            .advertised
            .as_deref()
            .unwrap_or(&self.kafka.listen)
    }
}
