//! Node configuration: one TOML file per shadowlink node.
//!
//! The key names are a contract with operators. Unknown keys are rejected (serde's
//! `deny_unknown_fields`), and every semantic check names the key it refers to, so a typo
//! fails at start instead of silently falling back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::filter::{FilterError, GroupFilter, TopicFilter};

mod cluster;
mod listeners;

pub use cluster::{ClusterConfig, PeerClient};

pub use listeners::{KeyedListener, ListenerConfig, SecurityProtocol};

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("`{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole node configuration as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The broker id Metadata and FindCoordinator give this node. Clients key brokers by
    /// id, so nodes whose Metadata may name each other need different ids.
    #[serde(default = "default_node_id")]
    pub node_id: i32,
    pub kafka: KafkaListener,
    #[serde(default)]
    pub admin: Option<AdminListener>,
    #[serde(default)]
    pub storage: StorageSettings,
    #[serde(default)]
    pub groups: GroupSettings,
    #[serde(default)]
    pub links: Vec<LinkConfig>,
    /// Topics this node owns and accepts writes for; on a cluster node, topics the
    /// cluster owns, created once whichever node declares them first.
    #[serde(default)]
    pub topics: Vec<OwnedTopicConfig>,
    /// Who may do what on the Kafka listener; none means everything is allowed.
    #[serde(default)]
    pub acls: Vec<crate::authz::AclRule>,
    /// `[cluster]`: this node is one of several serving the region, coordinated by etcd.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// A topic this node owns: clients produce to it here, and other nodes may shadow it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedTopicConfig {
    pub name: String,
    pub partitions: i32,
}

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

/// `[links.tls]`: how a link verifies its source and, for mutual TLS, proves itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTls {
    /// PEM CA certificates the source brokers' certificates must chain to.
    pub ca: PathBuf,
    /// PEM client certificate chain presented to the source (with `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name source certificates must carry, instead of each broker's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn default_node_id() -> i32 {
    1
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

/// How mirror partitions are laid out and made durable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    pub segment_bytes: u64,
    /// `"always"` (fsync every append), `"os"` (page cache only) or a duration such as
    /// `"100ms"` (fsync at most that long after an append).
    pub persist: String,
    /// How often retention limits synced from the source are enforced.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// How often the node's compacted topics are checked for a compaction pass.
    #[serde(with = "humantime_serde")]
    pub cleaner_interval: Duration,
    /// Compaction's I/O budget, bytes read plus written per second; unset for none.
    pub cleaner_bytes_per_second: Option<u64>,
    /// Partitions the node may hold, shadows included, before CreateTopics is refused.
    /// Every partition keeps its segments mapped, so this bounds memory maps and files.
    pub max_partitions: i64,
    /// Segment files the node keeps open at once, across all its partitions; the least
    /// recently used are closed beyond it and reopened when needed. Unset, half the
    /// process's open-file limit, leaving the rest to client connections.
    pub max_open_files: Option<usize>,
    /// Fault injection for tests: every fsync of partition data first sleeps this long,
    /// as on a slow disk. Never set it in production.
    #[serde(with = "humantime_serde")]
    pub fault_fsync_delay: Duration,
    /// Fault injection for tests: in each partition log, the fsyncs after this many
    /// successful ones fail, as on a disk that lost its writeback. Never set it in
    /// production.
    pub fault_fsync_fail_after: Option<u64>,
    /// How fast the background scrubber re-reads stored batches to check their CRC;
    /// 0 turns it off.
    pub scrub_bytes_per_second: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            segment_bytes: 256 * 1024 * 1024,
            persist: "100ms".to_string(),
            retention_interval: Duration::from_secs(60),
            cleaner_interval: Duration::from_secs(15),
            cleaner_bytes_per_second: None,
            max_partitions: 10_000,
            max_open_files: None,
            fault_fsync_delay: Duration::ZERO,
            fault_fsync_fail_after: None,
            scrub_bytes_per_second: 4 * 1024 * 1024,
        }
    }
}

/// `[groups]`: consumer groups this node coordinates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSettings {
    /// Kafka's `offsets.retention.minutes`: a group with no members whose offsets have
    /// not changed for this long expires, offsets and all.
    #[serde(with = "humantime_serde")]
    pub offsets_retention: Duration,
    /// Kafka's `offsets.retention.check.interval.ms`: how often groups are checked.
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            offsets_retention: Duration::from_secs(7 * 24 * 60 * 60),
            retention_check_interval: Duration::from_secs(600),
        }
    }
}

/// Where an empty mirror partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    Earliest,
    Latest,
}

/// One link: a source cluster and the topics taken from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub name: String,
    pub bootstrap: Vec<String>,
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default = "default_start")]
    pub start: StartPosition,
    #[serde(default = "default_metadata_interval", with = "humantime_serde")]
    pub metadata_interval: Duration,
    #[serde(default = "default_config_interval", with = "humantime_serde")]
    pub config_interval: Duration,
    /// How long a request to the source may go unanswered (a fetch also gets its
    /// long-poll wait on top) before its connection is dropped and the link reported lost:
    /// a black-holed network sends no FIN or RST, so only a deadline notices it.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Upper bound on one fetch response from the source.
    #[serde(default = "default_fetch_max_bytes")]
    pub fetch_max_bytes: i32,
    #[serde(default = "default_partition_max_bytes")]
    pub partition_max_bytes: i32,
    /// Fetch requests outstanding at once per source broker without a fetch session; a
    /// session has one request at a time (KIP-227).
    #[serde(default = "default_fetches_in_flight")]
    pub fetches_in_flight: usize,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// How often a topic's first sync logs its progress.
    #[serde(default = "default_progress_interval", with = "humantime_serde")]
    pub progress_interval: Duration,
    /// Consumer groups whose committed offsets are copied from the source (same filter
    /// syntax as topics); empty copies none.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "default_group_interval", with = "humantime_serde")]
    pub group_interval: Duration,
    /// Mirror the schema registry's `_schemas` topic too (on the non-primary site only).
    #[serde(default)]
    pub mirror_schemas: bool,
    /// When set, every connection to the source is TLS.
    #[serde(default)]
    pub tls: Option<LinkTls>,
    /// When set, every connection to the source authenticates with SASL.
    #[serde(default)]
    pub sasl: Option<crate::sasl::LinkSaslConfig>,
    /// Open KIP-227 fetch sessions with source brokers that offer them, so an idle
    /// request names only the partitions that moved; `false` sends full fetches only.
    #[serde(default = "default_fetch_sessions")]
    pub fetch_sessions: bool,
    /// How often shadows of compacted source topics are compared with the source, to
    /// take the source's compacted batches (see `link::compaction`).
    #[serde(
        default = "default_compaction_check_interval",
        with = "humantime_serde"
    )]
    pub compaction_check_interval: Duration,
}

fn default_start() -> StartPosition {
    StartPosition::Earliest
}
fn default_metadata_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_compaction_check_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_config_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_fetch_max_bytes() -> i32 {
    32 * 1024 * 1024
}
fn default_partition_max_bytes() -> i32 {
    4 * 1024 * 1024
}
fn default_fetches_in_flight() -> usize {
    4
}
fn default_fetch_sessions() -> bool {
    true
}
fn default_progress_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_group_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_client_id() -> String {
    "shadowlink".to_string()
}

/// A link after validation: filters compiled, addresses checked.
#[derive(Debug, Clone)]
pub struct Link {
    pub config: LinkConfig,
    pub filter: TopicFilter,
    pub groups: GroupFilter,
    /// Built from `config.tls` by [`Config::link_tls`] when the node starts.
    pub tls: Option<crate::tls::ClientTls>,
    /// Built from `config.sasl` by [`Config::link_sasl`] when the node starts.
    pub sasl: Option<crate::sasl::ClientSasl>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id < 0 {
            return Err(invalid("node_id", "must be 0 or more"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.validate_listeners()?;
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
        if let Some(admin) = &self.admin {
            check_socket_addr("admin.listen", &admin.listen)?;
        }
        self.admin_token()?;
        crate::authz::Acl::new(&self.acls)?;
        self.persist_mode()?;
        if self.storage.segment_bytes < 1024 {
            return Err(invalid("storage.segment_bytes", "must be at least 1024"));
        }
        if self.storage.retention_interval < Duration::from_millis(100) {
            return Err(invalid(
                "storage.retention_interval",
                "must be at least 100ms",
            ));
        }
        if self.kafka.max_partitions_per_request < 1 {
            return Err(invalid(
                "kafka.max_partitions_per_request",
                "must be at least 1",
            ));
        }
        if self.groups.offsets_retention < Duration::from_secs(1) {
            return Err(invalid("groups.offsets_retention", "must be at least 1s"));
        }
        if self.groups.retention_check_interval < Duration::from_millis(100) {
            return Err(invalid(
                "groups.retention_check_interval",
                "must be at least 100ms",
            ));
        }
        if self.storage.cleaner_interval < Duration::from_millis(100) {
            return Err(invalid(
                "storage.cleaner_interval",
                "must be at least 100ms",
            ));
        }
        if self.storage.max_partitions < 1 {
            return Err(invalid("storage.max_partitions", "must be at least 1"));
        }
        if self.storage.max_open_files == Some(0) {
            return Err(invalid("storage.max_open_files", "must be at least 1"));
        }
        validate_owned_topics(&self.topics)?;
        let mut names = std::collections::HashSet::new();
        for (i, link) in self.links.iter().enumerate() {
            validate_link(i, link)?;
            self.link_tls(i)?;
            self.link_sasl(i)?;
            if !names.insert(link.name.as_str()) {
                return Err(invalid(
                    format!("links[{i}].name"),
                    format!("duplicate link name {:?}", link.name),
                ));
            }
        }
        if let Some(cluster) = &self.cluster {
            if !cfg!(feature = "cluster") {
                return Err(invalid(
                    "cluster",
                    "this shadowlink was built without cluster support: \
                     build it with `--features cluster` (needs protoc)",
                ));
            }
            cluster.validate()?;
            cluster.check_peer_listener(&self.listeners())?;
        }
        self.check_owned_not_mirrored()
    }

    /// A topic declared in `[[topics]]` must not also be mirrored by a link: the node
    /// would hold it as owned while the link's source has a topic of that name that is
    /// never copied, and a failover of the link would find it already owned.
    fn check_owned_not_mirrored(&self) -> Result<(), ConfigError> {
        for (i, topic) in self.topics.iter().enumerate() {
            for (j, link) in self.links().iter().enumerate() {
                if link.filter.matches(&topic.name) {
                    return Err(invalid(
                        format!("topics[{i}].name"),
                        format!(
                            "{:?} is also mirrored by link {:?} (links[{j}].include matches it); \
                             a node cannot own a topic a link mirrors: add it to links[{j}].exclude",
                            topic.name, link.config.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The validated links, filters compiled.
    pub fn links(&self) -> Vec<Link> {
        self.links
            .iter()
            .map(|config| Link {
                filter: TopicFilter::new(&config.include, &config.exclude)
                    .expect("filters were validated at load")
                    .with_schemas(config.mirror_schemas),
                groups: GroupFilter::new(&config.groups).expect("filters were validated at load"),
                tls: None,
                sasl: None,
                config: config.clone(),
            })
            .collect()
    }

    /// The admin API's bearer token, read from its file or environment variable.
    pub fn admin_token(&self) -> Result<Option<crate::admin::auth::AdminToken>, ConfigError> {
        let Some(admin) = &self.admin else {
            return Ok(None);
        };
        crate::admin::auth::load(admin, |name| std::env::var(name).ok())
    }

    /// The TLS of link `i`, its files loaded, when its `tls` table is set.
    pub fn link_tls(&self, i: usize) -> Result<Option<crate::tls::ClientTls>, ConfigError> {
        let Some(tls) = self.links.get(i).and_then(|l| l.tls.as_ref()) else {
            return Ok(None);
        };
        crate::tls::client(&format!("links[{i}].tls"), tls).map(Some)
    }

    /// The SASL credentials of link `i`, its password read, when its `sasl` table is set.
    pub fn link_sasl(&self, i: usize) -> Result<Option<crate::sasl::ClientSasl>, ConfigError> {
        let Some(link) = self.links.get(i) else {
            return Ok(None);
        };
        let prefix = format!("links[{i}].sasl");
        let tls = link.tls.is_some();
        let sasl = link.sasl.as_ref();
        sasl.map(|sasl| crate::sasl::client(&prefix, sasl, tls))
            .transpose()
    }

    /// The address Metadata advertises to the clients of the first listener.
    pub fn advertised(&self) -> &str {
        self.kafka
            .advertised
            .as_deref()
            .unwrap_or(&self.kafka.listen)
    }

    /// The storage persist mode parsed from `storage.persist`.
    pub fn persist_mode(&self) -> Result<shadowlink_storage::PersistMode, ConfigError> {
        use shadowlink_storage::PersistMode;
        match self.storage.persist.as_str() {
            "always" => Ok(PersistMode::Always),
            "os" => Ok(PersistMode::Os),
            other => humantime::parse_duration(other)
                .map(PersistMode::Interval)
                .map_err(|_| {
                    invalid(
                        "storage.persist",
                        format!("{other:?} is not \"always\", \"os\" or a duration like \"100ms\""),
                    )
                }),
        }
    }
}

/// A TOML or type error, named by the dotted key on the line it points at
/// (`links[1].fetch_max_bytes`), with toml's own rendering when no key can be found.
fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let found = error.span().and_then(|span| key_at(text, span.start));
    match found {
        Some((key, line)) => invalid(key, format!("{} (line {line})", error.message().trim())),
        None => ConfigError::Syntax(error.to_string()),
    }
}

/// The dotted key of the `key = value` line holding byte `at`, and its line number.
fn key_at(text: &str, at: usize) -> Option<(String, usize)> {
    let line_start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..line_start].matches('\n').count() + 1;
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
        return None;
    }
    // The innermost table header above the line; `[[links]]` counts its occurrences.
    let mut table = String::new();
    let mut arrays: std::collections::HashMap<String, usize> = Default::default();
    for header in text[..line_start].lines().map(str::trim) {
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let name = name.trim().to_string();
            let n = arrays
                .entry(name.clone())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            table = format!("{name}[{n}]");
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = name.trim().to_string();
        }
    }
    let dotted = if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    };
    Some((dotted, line_no))
}

fn validate_owned_topics(topics: &[OwnedTopicConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, t) in topics.iter().enumerate() {
        crate::mirror::validate_topic_name(&t.name)
            .map_err(|e| invalid(format!("topics[{i}].name"), e.to_string()))?;
        if t.partitions < 1 {
            return Err(invalid(
                format!("topics[{i}].partitions"),
                "must be at least 1",
            ));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(invalid(
                format!("topics[{i}].name"),
                format!("{:?} is declared twice", t.name),
            ));
        }
    }
    Ok(())
}

fn validate_link(i: usize, link: &LinkConfig) -> Result<(), ConfigError> {
    let key = |field: &str| format!("links[{i}].{field}");
    if link.name.is_empty()
        || !link
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            key("name"),
            "must be non-empty and use only letters, digits, '-' and '_'",
        ));
    }
    if link.bootstrap.is_empty() {
        return Err(invalid(key("bootstrap"), "needs at least one host:port"));
    }
    for (j, addr) in link.bootstrap.iter().enumerate() {
        check_host_port(&format!("links[{i}].bootstrap[{j}]"), addr)?;
    }
    if link.include.is_empty() {
        return Err(invalid(
            key("include"),
            "needs at least one filter (\"*\" mirrors every non-internal topic)",
        ));
    }
    TopicFilter::new(&link.include, &link.exclude).map_err(|e| match e {
        FilterError::Include(pos, e) => {
            invalid(format!("links[{i}].include[{pos}]"), e.to_string())
        }
        FilterError::Exclude(pos, e) => {
            invalid(format!("links[{i}].exclude[{pos}]"), e.to_string())
        }
    })?;
    GroupFilter::new(&link.groups).map_err(|e| match e {
        FilterError::Include(pos, e) | FilterError::Exclude(pos, e) => {
            invalid(format!("links[{i}].groups[{pos}]"), e.to_string())
        }
    })?;
    if link.metadata_interval < Duration::from_millis(100) {
        return Err(invalid(key("metadata_interval"), "must be at least 100ms"));
    }
    if link.compaction_check_interval < Duration::from_millis(100) {
        return Err(invalid(
            key("compaction_check_interval"),
            "must be at least 100ms",
        ));
    }
    if link.request_timeout < Duration::from_millis(100) {
        return Err(invalid(key("request_timeout"), "must be at least 100ms"));
    }
    if link.group_interval < Duration::from_millis(100) {
        return Err(invalid(key("group_interval"), "must be at least 100ms"));
    }
    if link.progress_interval < Duration::from_millis(100) {
        return Err(invalid(key("progress_interval"), "must be at least 100ms"));
    }
    if link.fetch_max_bytes < 1024 || link.partition_max_bytes < 1024 {
        return Err(invalid(
            key("fetch_max_bytes"),
            "fetch_max_bytes and partition_max_bytes must be at least 1024",
        ));
    }
    if link.fetches_in_flight == 0 || link.fetches_in_flight > 64 {
        return Err(invalid(
            key("fetches_in_flight"),
            "must be between 1 and 64",
        ));
    }
    Ok(())
}

fn check_socket_addr(key: &str, value: &str) -> Result<(), ConfigError> {
    value.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
        invalid(
            key,
            format!("{value:?} is not an IP address and port such as \"127.0.0.1:9192\""),
        )
    })
}

fn check_host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    let valid = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{value:?} is not host:port such as \"broker-1:9092\""),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
data_dir = "data/b"
[kafka]
listen = "127.0.0.1:9192"
[admin]
listen = "127.0.0.1:9644"
[[links]]
name = "from-a"
bootstrap = ["127.0.0.1:9092"]
include = ["a_*"]
exclude = ["a_scratch"]
start = "earliest"
"#;

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.advertised(), "127.0.0.1:9192");
        let links = c.links();
        assert_eq!(links.len(), 1);
        assert!(links[0].filter.matches("a_orders"));
        assert!(!links[0].filter.matches("a_scratch"));
        assert_eq!(links[0].config.metadata_interval, Duration::from_secs(10));
    }

    fn err_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err_of(&GOOD.replace("start = ", "strat = \"x\"\nstart = "));
        assert!(e.contains("strat"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = err_of(&GOOD.replace("\"earliest\"", "\"middle\""));
        assert!(e.contains("start") || e.contains("middle"), "{e}");
        let e = err_of(&GOOD.replace("127.0.0.1:9192", "nowhere"));
        assert!(e.contains("kafka.listen"), "{e}");
        let e = err_of(&GOOD.replace("[\"127.0.0.1:9092\"]", "[]"));
        assert!(e.contains("links[0].bootstrap"), "{e}");
        let e = err_of(&GOOD.replace("[\"a_*\"]", "[\"a*b\"]"));
        assert!(e.contains("links[0].include[0]"), "{e}");
        let e = err_of(&format!("{GOOD}\n[storage]\npersist = \"sometimes\"\n"));
        assert!(e.contains("storage.persist"), "{e}");
    }

    #[test]
    fn type_errors_and_unknown_keys_name_the_dotted_key() {
        let e = err_of(&format!("{GOOD}\n[storage]\nsegment_bytes = \"big\"\n"));
        assert!(
            e.starts_with("`storage.segment_bytes`: invalid type"),
            "{e}"
        );
        let second = GOOD
            .split("[[links]]")
            .nth(1)
            .unwrap()
            .replace("from-a", "from-c");
        let e = err_of(&format!(
            "{GOOD}\n[[links]]{second}fetch_max_bytes = \"x\"\n"
        ));
        assert!(e.starts_with("`links[1].fetch_max_bytes`"), "{e}");
        let e = err_of(&GOOD.replace("[admin]\nlisten", "[admin]\nlisen"));
        assert!(e.starts_with("`admin.lisen`: unknown field"), "{e}");
    }

    #[test]
    fn an_owned_topic_a_link_mirrors_names_both() {
        let owned = "[[topics]]\nname = \"a_orders\"\npartitions = 3\n";
        let e = err_of(&format!("{GOOD}{owned}"));
        assert!(
            e.starts_with("`topics[0].name`") && e.contains("\"from-a\"") && e.contains("a_orders"),
            "{e}"
        );
        let excluded = GOOD.replace("[\"a_scratch\"]", "[\"a_scratch\", \"a_orders\"]");
        assert!(Config::parse(&format!("{excluded}{owned}")).is_ok());
    }

    #[test]
    fn partition_limits_default_and_are_checked() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.kafka.max_partitions_per_request, 1000);
        assert_eq!(c.storage.max_partitions, 10_000);
        let e = err_of(&GOOD.replace("[admin]", "max_partitions_per_request = 0\n[admin]"));
        assert!(e.contains("kafka.max_partitions_per_request"), "{e}");
        let e = err_of(&format!("{GOOD}\n[storage]\nmax_partitions = 0\n"));
        assert!(e.contains("storage.max_partitions"), "{e}");
        assert_eq!(c.storage.max_open_files, None);
        let e = err_of(&format!("{GOOD}\n[storage]\nmax_open_files = 0\n"));
        assert!(e.contains("storage.max_open_files"), "{e}");
    }

    #[test]
    fn tls_files_that_cannot_be_loaded_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let listener = |cert: &Path, extra: &str| {
            let tls = format!("tls = {{ cert = {cert:?}, key = {missing:?}{extra} }}\n[admin]");
            GOOD.replace("[admin]", &tls)
        };
        let e = err_of(&listener(&missing, ""));
        assert!(
            e.starts_with("`kafka.tls.cert`") && e.contains("missing.pem"),
            "{e}"
        );
        let e = err_of(&listener(&junk, ""));
        assert!(
            e.starts_with("`kafka.tls.cert`") && e.contains("no PEM"),
            "{e}"
        );
        let link = |tls: &str| GOOD.replace("start = ", &format!("tls = {{ {tls} }}\nstart = "));
        let e = err_of(&link(&format!("ca = {missing:?}")));
        assert!(e.starts_with("`links[0].tls.ca`"), "{e}");
        let e = err_of(&link(&format!("ca = {junk:?}, strict = true")));
        assert!(e.contains("strict"), "{e}");
    }

    #[test]
    fn duplicate_link_names_are_rejected() {
        let second = GOOD.split("[[links]]").nth(1).unwrap();
        let e = err_of(&format!("{GOOD}\n[[links]]{second}"));
        assert!(e.contains("links[1].name"), "{e}");
    }
}
