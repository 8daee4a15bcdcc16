//! `[[links]]`: the source clusters a node mirrors, the topics and groups taken from
//! each, and how it connects to them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{check_host_port, invalid, Config, ConfigError};
use crate::filter::{FilterError, GroupFilter, TopicFilter};

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
    /// Upper bound per partition in one fetch response (1 MiB unless set).
    #[serde(default)]
    pub partition_max_bytes: Option<i32>,
    /// Fetch requests outstanding at once per source broker without a fetch session, for
    /// partitions that had records last time. A request that may wait for data goes
    /// alone, and a session has one request at a time (KIP-227).
    #[serde(default = "default_fetches_in_flight")]
    pub fetches_in_flight: usize,
    /// Kafka's `fetch.min.bytes`: the source answers a long poll once this many bytes are
    /// ready or `fetch_max_wait` has passed. Above 1, a busy link makes fewer, larger
    /// fetches, and a record that arrives alone waits up to `fetch_max_wait`.
    #[serde(default = "default_fetch_min_bytes")]
    pub fetch_min_bytes: i32,
    /// Kafka's `fetch.max.wait.ms`: the longest a long poll waits at the source.
    #[serde(default = "default_fetch_max_wait", with = "humantime_serde")]
    pub fetch_max_wait: Duration,
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
/// A response's record sets are written while the receiving thread still has them in its
/// cache, and a partition's first write starts sooner: with 4 MiB per partition (32 MiB
/// responses) the copy into the page cache ran from memory at a fraction of the speed,
/// with either `persist`. Measured in BENCHMARKS.md ("Smaller responses").
fn default_partition_max_bytes() -> i32 {
    1024 * 1024
}
fn default_fetches_in_flight() -> usize {
    4
}
/// The longest `fetch_max_wait`: a long poll keeps a request out that long, and a
/// request deadline waits for it on top of `request_timeout`.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(10);
fn default_fetch_min_bytes() -> i32 {
    1
}
fn default_fetch_max_wait() -> Duration {
    Duration::from_millis(500)
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
    /// `config.partition_max_bytes`, or its default.
    pub partition_max_bytes: i32,
}

impl Config {
    /// The validated links, filters compiled.
    pub fn links(&self) -> Vec<Link> {
        self.links
            .iter()
            .map(|config| Link {
                partition_max_bytes: (config.partition_max_bytes)
                    .unwrap_or_else(default_partition_max_bytes),
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
}

pub(super) fn validate_link(i: usize, link: &LinkConfig) -> Result<(), ConfigError> {
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
    validate_link_limits(i, link)
}

/// The intervals and sizes of link `i`, which must leave the source room to answer.
fn validate_link_limits(i: usize, link: &LinkConfig) -> Result<(), ConfigError> {
    let key = |field: &str| format!("links[{i}].{field}");
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
    if link.fetch_max_bytes < 1024 || link.partition_max_bytes.is_some_and(|b| b < 1024) {
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
    if link.fetch_min_bytes < 1 || link.fetch_min_bytes > link.fetch_max_bytes {
        return Err(invalid(
            key("fetch_min_bytes"),
            "must be at least 1 and at most fetch_max_bytes",
        ));
    }
    if link.fetch_max_wait < Duration::from_millis(1) || link.fetch_max_wait > MAX_FETCH_WAIT {
        return Err(invalid(
            key("fetch_max_wait"),
            "must be between 1ms and 10s",
        ));
    }
    Ok(())
}
