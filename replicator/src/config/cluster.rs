//! `[cluster]`: several nodes of one region acting as one Kafka-API cluster, coordinated
//! through etcd (see `docs/cluster.md`). Absent, the node is a cluster of one and needs
//! no etcd.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError, LinkTls};
use crate::sasl::{ClientSasl, LinkSaslConfig};
use crate::tls::ClientTls;

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
    /// TLS to etcd (`https://` endpoints): the CA etcd's certificate must chain to and,
    /// for etcd's `--client-cert-auth`, this node's certificate and key.
    #[serde(default)]
    pub tls: Option<LinkTls>,
    /// An etcd user (etcd's `auth enable`); its password comes from `password_file` or
    /// `password_env`, never from this file.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// How long the data of a partition the assignment moved off this node is kept
    /// before it is removed: a node that returns within it, or a move undone, refetches
    /// nothing.
    #[serde(default = "default_retired_replica_grace", with = "humantime_serde")]
    pub retired_replica_grace: Duration,
    /// How long a follower of an owned partition may go without catching up to its
    /// leader's log end before the leader drops it from the in-sync set, as Kafka's
    /// `replica.lag.time.max.ms`.
    #[serde(default = "default_replica_lag_time", with = "humantime_serde")]
    pub replica_lag_time: Duration,
    /// `[cluster.peer]`: how this node reaches another node's Kafka listener when it
    /// follows that node's leadership of a failed-over partition.
    #[serde(default)]
    pub peer: PeerConfig,
}

/// The client side of a follower: the TLS and SASL the peers' Kafka listener requires,
/// with the keys and checks of a link's `tls` and `sasl`. The user needs `read` on the
/// failed-over topics where the leader has `[[acls]]` (Fetch and OffsetForLeaderEpoch).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The Kafka listener (its `name`) followers connect to, when nodes have several;
    /// the first, `[kafka]`, by default. Every node must have a listener of this name.
    #[serde(default)]
    pub listener: Option<String>,
    #[serde(default)]
    pub tls: Option<LinkTls>,
    #[serde(default)]
    pub sasl: Option<LinkSaslConfig>,
}

/// A follower's connection settings, files and password loaded.
#[derive(Debug, Clone, Default)]
pub struct PeerClient {
    pub tls: Option<ClientTls>,
    pub sasl: Option<ClientSasl>,
}

/// An etcd user and its password, read when the configuration is checked.
#[derive(Clone)]
pub struct EtcdCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
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
fn default_retired_replica_grace() -> Duration {
    Duration::from_secs(600)
}
fn default_replica_lag_time() -> Duration {
    Duration::from_secs(30)
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
        let scheme = match self.tls {
            Some(_) => "https://",
            None => "http://",
        };
        if let Some(bad) = self.endpoints.iter().find(|e| !e.starts_with(scheme)) {
            let why = match self.tls {
                Some(_) => "with `cluster.tls` every endpoint must be an https:// URL",
                None => "must be an http:// URL, or https:// with `cluster.tls`",
            };
            return Err(invalid("cluster.endpoints", format!("{bad:?}: {why}")));
        }
        if let Some(tls) = &self.tls {
            crate::tls::client("cluster.tls", tls)?;
        }
        self.credentials()?;
        self.peer_client()?;
        if self.retired_replica_grace < Duration::from_secs(1) {
            return Err(invalid(
                "cluster.retired_replica_grace",
                "must be at least 1s",
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
        // Followers poll at least twice a second; a shorter lag drops healthy ones.
        if self.replica_lag_time < Duration::from_secs(1) {
            return Err(invalid("cluster.replica_lag_time", "must be at least 1s"));
        }
        Ok(())
    }

    /// The etcd user and its password, read from its file or environment variable;
    /// `None` without `username`.
    pub fn credentials(&self) -> Result<Option<EtcdCredentials>, ConfigError> {
        let Some(username) = &self.username else {
            return match (&self.password_file, &self.password_env) {
                (None, None) => Ok(None),
                _ => Err(invalid("cluster.username", "is needed with a password")),
            };
        };
        if username.is_empty() {
            return Err(invalid("cluster.username", "must not be empty"));
        }
        if self.tls.is_none() {
            return Err(invalid(
                "cluster.username",
                "would send the etcd password in clear: configure `cluster.tls`",
            ));
        }
        let password = match (&self.password_file, &self.password_env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| {
                    invalid(
                        "cluster.password_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?,
            (None, Some(var)) => std::env::var(var)
                .map_err(|e| invalid("cluster.password_env", format!("${var}: {e}")))?,
            _ => {
                return Err(invalid(
                    "cluster",
                    "`username` needs exactly one of `password_file` and `password_env`",
                ))
            }
        };
        if password.is_empty() {
            return Err(invalid("cluster", "the etcd password is empty"));
        }
        Ok(Some(EtcdCredentials {
            username: username.clone(),
            password,
        }))
    }

    /// The TLS and SASL followers connect to their leaders with, loaded from
    /// `[cluster.peer]`.
    pub fn peer_client(&self) -> Result<PeerClient, ConfigError> {
        let peer = &self.peer;
        let tls = (peer.tls.as_ref())
            .map(|tls| crate::tls::client("cluster.peer.tls", tls))
            .transpose()?;
        let sasl = (peer.sasl.as_ref())
            .map(|sasl| crate::sasl::client("cluster.peer.sasl", sasl, tls.is_some()))
            .transpose()?;
        Ok(PeerClient { tls, sasl })
    }

    /// `peer.listener` must name one of this node's listeners.
    pub(super) fn check_peer_listener(
        &self,
        listeners: &[super::KeyedListener],
    ) -> Result<(), ConfigError> {
        let Some(name) = &self.peer.listener else {
            return Ok(());
        };
        if listeners.iter().any(|l| l.config.name == *name) {
            return Ok(());
        }
        let names: Vec<&str> = listeners.iter().map(|l| l.config.name.as_str()).collect();
        Err(invalid(
            "cluster.peer.listener",
            format!("{name:?} is not a listener of this node (it has {names:?})"),
        ))
    }

    /// The lease TTL etcd is asked for, in whole seconds.
    pub fn lease_seconds(&self) -> i64 {
        self.lease_ttl.as_secs().max(2) as i64
    }
}

// A `[cluster]` section parses only in a build with the `cluster` feature.
#[cfg(all(test, feature = "cluster"))]
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
    fn a_cluster_node_declares_owned_topics_for_the_cluster() {
        let owned = "[[topics]]\nname = \"orders\"\npartitions = 3\n\
                     [cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\n";
        let c = with(owned).unwrap();
        assert_eq!(
            (c.topics[0].name.as_str(), c.topics[0].partitions),
            ("orders", 3)
        );
        assert!(c.cluster.is_some());
        let twice = format!("{owned}[[topics]]\nname = \"orders\"\npartitions = 1\n");
        assert!(with(&twice).unwrap_err().contains("declared twice"));
    }

    const ETCD_TLS: &str = "[cluster]\nname = \"b\"\nendpoints = [\"https://e:2379\"]\n";

    #[test]
    fn tls_to_etcd_needs_https_endpoints_and_readable_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let no_ca = format!("{ETCD_TLS}tls = {{ ca = {missing:?} }}\n");
        let err = with(&no_ca).unwrap_err();
        assert!(
            err.contains("cluster.tls.ca") && err.contains("missing-ca.pem"),
            "{err}"
        );
        let plain = "[cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\n";
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let mixed = format!("{plain}tls = {{ ca = {ca:?} }}\n");
        assert!(with(&mixed).unwrap_err().contains("https://"), "{mixed}");
        let https_without_tls = with(ETCD_TLS).unwrap_err();
        assert!(
            https_without_tls.contains("cluster.endpoints"),
            "{https_without_tls}"
        );
        let key = dir.path().join("client.key");
        std::fs::write(&key, "garbage").unwrap();
        let bad_key = format!("{ETCD_TLS}tls = {{ ca = {ca:?}, cert = {ca:?}, key = {key:?} }}\n");
        let err = with(&bad_key).unwrap_err();
        assert!(err.contains("cluster.tls."), "{err}");
    }

    #[test]
    fn an_etcd_password_comes_from_a_file_or_the_environment_and_needs_tls() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let parsed = with("[cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\n");
        let mut cluster = parsed.unwrap().cluster.unwrap();
        cluster.tls = Some(crate::config::LinkTls {
            ca: dir.path().join("ca.pem"),
            cert: None,
            key: None,
            server_name: None,
        });
        cluster.username = Some("root".into());
        let err = |c: &super::ClusterConfig| c.credentials().unwrap_err().to_string();
        assert!(
            err(&cluster).contains("exactly one of"),
            "{}",
            err(&cluster)
        );
        cluster.password_file = Some(secret.clone());
        let credentials = cluster.credentials().unwrap().unwrap();
        assert_eq!(
            (credentials.username.as_str(), credentials.password.as_str()),
            ("root", "s3cret")
        );
        assert!(!format!("{credentials:?}").contains("s3cret"));
        cluster.password_file = None;
        cluster.password_env = Some("SHADOWLINK_TEST_UNSET_ETCD".into());
        assert!(
            err(&cluster).contains("cluster.password_env"),
            "{}",
            err(&cluster)
        );
        let plain = format!(
            "[cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\n\
             username = \"root\"\npassword_file = {secret:?}\n"
        );
        let refused = with(&plain).unwrap_err();
        assert!(refused.contains("in clear"), "{refused}");
    }

    const PEER: &str = "[cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\n";

    #[test]
    fn followers_authenticate_with_the_peer_sasl_and_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("peer-secret");
        std::fs::write(&secret, "replicate-me\n").unwrap();
        let sasl = format!(
            "[cluster.peer]\nsasl = {{ mechanism = \"SCRAM-SHA-512\", username = \"replica\", \
             password_file = {secret:?}, allow_plaintext = true }}\n"
        );
        let cluster = with(&format!("{PEER}{sasl}")).unwrap().cluster.unwrap();
        let peer = cluster.peer_client().unwrap();
        let sasl = peer.sasl.expect("the peer's SASL");
        assert_eq!(sasl.username, "replica");
        assert_eq!(sasl.password.bytes(), b"replicate-me");
        assert!(peer.tls.is_none());
        let none = with(PEER).unwrap().cluster.unwrap().peer_client().unwrap();
        assert!(none.tls.is_none() && none.sasl.is_none());
    }

    #[test]
    fn peer_settings_that_cannot_work_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "pw").unwrap();
        let peer = |table: &str| with(&format!("{PEER}[cluster.peer]\n{table}\n")).unwrap_err();
        let clear = peer(&format!(
            "sasl = {{ mechanism = \"PLAIN\", username = \"u\", password_file = {secret:?} }}"
        ));
        assert!(
            clear.starts_with("`cluster.peer.sasl`") && clear.contains("in clear"),
            "{clear}"
        );
        let unset = peer(
            "sasl = { mechanism = \"PLAIN\", username = \"u\", allow_plaintext = true, \
             password_env = \"SHADOWLINK_TEST_UNSET_PEER\" }",
        );
        assert!(
            unset.starts_with("`cluster.peer.sasl.password_env`"),
            "{unset}"
        );
        let missing = dir.path().join("missing-ca.pem");
        let no_ca = peer(&format!("tls = {{ ca = {missing:?} }}"));
        assert!(
            no_ca.starts_with("`cluster.peer.tls.ca`") && no_ca.contains("missing-ca.pem"),
            "{no_ca}"
        );
        let mechanism = peer("sasl = { mechanism = \"GSSAPI\", username = \"u\" }");
        assert!(mechanism.contains("GSSAPI"), "{mechanism}");
        let typo = peer("listner = \"internal\"");
        assert!(typo.contains("listner"), "{typo}");
    }

    #[test]
    fn the_peer_listener_must_be_one_of_the_nodes_listeners() {
        let internal = "[[kafka.listeners]]\nname = \"internal\"\nlisten = \"127.0.0.1:9193\"\n";
        let named = |name: &str| format!("{internal}{PEER}[cluster.peer]\nlistener = \"{name}\"\n");
        let cluster = with(&named("internal")).unwrap().cluster.unwrap();
        assert_eq!(cluster.peer.listener.as_deref(), Some("internal"));
        let err = with(&named("replication")).unwrap_err();
        assert!(
            err.starts_with("`cluster.peer.listener`")
                && err.contains("\"replication\"")
                && err.contains("\"internal\""),
            "{err}"
        );
    }

    #[test]
    fn the_retired_replica_grace_defaults_to_ten_minutes_and_is_checked() {
        let base = "[cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\n";
        let c = with(base).unwrap().cluster.unwrap();
        assert_eq!(c.retired_replica_grace, std::time::Duration::from_secs(600));
        let short = format!("{base}retired_replica_grace = \"100ms\"\n");
        assert!(with(&short)
            .unwrap_err()
            .contains("cluster.retired_replica_grace"));
    }

    #[test]
    fn the_replica_lag_time_defaults_to_thirty_seconds_and_is_checked() {
        let base = "[cluster]\nname = \"b\"\nendpoints = [\"http://e:2379\"]\n";
        let c = with(base).unwrap().cluster.unwrap();
        assert_eq!(c.replica_lag_time, std::time::Duration::from_secs(30));
        let set = format!("{base}replica_lag_time = \"2s\"\n");
        let c = with(&set).unwrap().cluster.unwrap();
        assert_eq!(c.replica_lag_time, std::time::Duration::from_secs(2));
        let short = format!("{base}replica_lag_time = \"100ms\"\n");
        assert!(with(&short)
            .unwrap_err()
            .contains("cluster.replica_lag_time"));
    }
}

#[cfg(all(test, not(feature = "cluster")))]
mod without_the_feature {
    #[test]
    fn a_cluster_section_is_refused_naming_the_feature() {
        let toml = r#"
data_dir = "/var/lib/shadowlink"
[kafka]
listen = "127.0.0.1:9192"
[cluster]
name = "region-b"
endpoints = ["http://127.0.0.1:2379"]
"#;
        let error = crate::config::Config::parse(toml).unwrap_err().to_string();
        assert!(error.contains("--features cluster"), "{error}");
    }
}
