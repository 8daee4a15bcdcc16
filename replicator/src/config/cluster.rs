//! `[cluster]`: several nodes of one region acting as one Kafka-API cluster, coordinated
//! through etcd (see `docs/cluster.md`). Absent, the node is a cluster of one and needs
//! no etcd.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Names the cluster: every key lives under `/shadowlink/<name>/`, so several
    /// regions can share one etcd.
    pub name: String,
    /// etcd client URLs, such as `http://10.0.0.5:2379`.
    pub endpoints: Vec<String>,
    /// How long a node may go silent before it counts as lost and its partitions move.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Nodes each partition is placed on; capped by the number of live nodes.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: usize,
    /// How long a request to etcd may take before coordination counts as unavailable.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_replication_factor() -> usize {
    2
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(2)
}

impl ClusterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(invalid(
                "cluster.name",
                "must be non-empty ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        if self.endpoints.is_empty() {
            return Err(invalid("cluster.endpoints", "must name at least one etcd"));
        }
        if let Some(bad) = self.endpoints.iter().find(|e| !e.starts_with("http://")) {
            return Err(invalid(
                "cluster.endpoints",
                format!("{bad:?} is not an http:// URL (TLS to etcd is not supported yet)"),
            ));
        }
        // etcd grants leases in whole seconds, with a floor of about its election timeout.
        if self.lease_ttl < Duration::from_secs(2) {
            return Err(invalid("cluster.lease_ttl", "must be at least 2s"));
        }
        if self.replication_factor < 1 {
            return Err(invalid("cluster.replication_factor", "must be at least 1"));
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err(invalid("cluster.request_timeout", "must be at least 100ms"));
        }
        Ok(())
    }

    /// The lease TTL etcd is asked for, in whole seconds.
    pub fn lease_seconds(&self) -> i64 {
        self.lease_ttl.as_secs().max(2) as i64
    }
}

/// Owned topics need a leader that waits for its followers before acknowledging
/// (`acks=all` over replicas), which a cluster does not have yet: one node taking writes
/// that no other node holds would lose them with that node.
pub(super) fn refuse_owned_topics(topics: &[super::OwnedTopicConfig]) -> Result<(), ConfigError> {
    match topics.is_empty() {
        true => Ok(()),
        false => Err(invalid(
            "topics",
            "owned topics are not supported on a cluster node yet (their writes would live on \
             one node only); remove `[[topics]]` or the `[cluster]` section",
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const NODE: &str = r#"
data_dir = "/var/lib/shadowlink"
node_id = 2
[kafka]
listen = "127.0.0.1:9192"
"#;

    fn with(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{NODE}{extra}")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_cluster_section_parses_with_its_defaults() {
        let c = with("[cluster]\nname = \"region-b\"\nendpoints = [\"http://127.0.0.1:2379\"]\n")
            .unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.replication_factor, 2);
        assert_eq!(cluster.lease_seconds(), 10);
        assert!(with("").unwrap().cluster.is_none());
    }

    #[test]
    fn cluster_mistakes_name_their_key() {
        let no_etcd = with("[cluster]\nname = \"b\"\nendpoints = []\n").unwrap_err();
        assert!(no_etcd.contains("cluster.endpoints"), "{no_etcd}");
        let short =
            "[cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\nlease_ttl = \"500ms\"\n";
        assert!(with(short).unwrap_err().contains("cluster.lease_ttl"));
        let bad_name = "[cluster]\nname = \"a/b\"\nendpoints = [\"http://e:2379\"]\n";
        assert!(with(bad_name).unwrap_err().contains("cluster.name"));
    }

    #[test]
    fn a_cluster_node_refuses_owned_topics() {
        let owned = "[[topics]]\nname = \"orders\"\npartitions = 1\n\
                     [cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\n";
        let err = with(owned).unwrap_err();
        assert!(
            err.contains("`topics`") && err.contains("not supported on a cluster node"),
            "{err}"
        );
    }
}
