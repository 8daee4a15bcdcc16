//! Node configuration: one TOML file per shadowlink node.
//!
//! The key names are a contract with operators. Unknown keys are rejected (serde's
//! `deny_unknown_fields`), and every semantic check names the key it refers to, so a typo
//! fails at start instead of silently falling back to a default.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

mod cluster;
mod kafka;
mod links;
mod listeners;
mod load;
mod storage;

pub use cluster::{ClusterConfig, PeerClient};

pub use kafka::{AdminListener, KafkaListener, ListenerTls};
pub use links::{Link, LinkConfig, LinkTls, StartPosition};
pub use listeners::{KeyedListener, ListenerConfig, SecurityProtocol};
pub use storage::{GroupSettings, StorageSettings};

use links::validate_link;

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

fn default_node_id() -> i32 {
    1
}

impl Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id < 0 {
            return Err(invalid("node_id", "must be 0 or more"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.validate_listeners()?;
        self.validate_kafka_limits()?;
        if let Some(admin) = &self.admin {
            check_socket_addr("admin.listen", &admin.listen)?;
        }
        self.admin_token()?;
        crate::authz::Acl::new(&self.acls)?;
        self.validate_limits()?;
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
mod tests;
