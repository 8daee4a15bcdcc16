//! The node's Kafka listeners, as Kafka's `listeners` and `advertised.listeners`.
//!
//! `[kafka]` is the first listener, so a config written for one listener keeps working;
//! each `[[kafka.listeners]]` entry adds another with its own port, security protocol
//! and advertised address. Limits such as `max_connections` and the request memory
//! budget stay in `[kafka]` and hold for the node as a whole.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

use super::{check_host_port, check_socket_addr, invalid, Config, ConfigError, ListenerTls};
use crate::sasl::{ListenerSasl, ListenerSaslConfig};
use crate::tls::ServerTls;

/// `[[kafka.listeners]]`: one more Kafka listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Names the listener in `/v1/status` and logs; unique on the node.
    pub name: String,
    pub listen: String,
    /// What Metadata and FindCoordinator tell the clients of this listener to connect
    /// to; defaults to the address bound.
    #[serde(default)]
    pub advertised: Option<String>,
    /// When set, the listener speaks only TLS.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// When set, its clients must authenticate with SASL.
    #[serde(default)]
    pub sasl: Option<ListenerSaslConfig>,
}

/// Kafka's `security.protocol` of a listener, as its clients must set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener and the config key its settings sit under (`kafka` for the first,
/// `kafka.listeners[i]` for the others), which every error about it names.
#[derive(Debug, Clone)]
pub struct KeyedListener {
    pub key: String,
    pub config: ListenerConfig,
}

impl KeyedListener {
    pub fn protocol(&self) -> SecurityProtocol {
        match (self.config.tls.is_some(), self.config.sasl.is_some()) {
            (false, false) => SecurityProtocol::Plaintext,
            (true, false) => SecurityProtocol::Ssl,
            (false, true) => SecurityProtocol::SaslPlaintext,
            (true, true) => SecurityProtocol::SaslSsl,
        }
    }

    /// The listener's TLS, its files loaded, when its `tls` table is set.
    pub fn tls(&self) -> Result<Option<ServerTls>, ConfigError> {
        let prefix = format!("{}.tls", self.key);
        let tls = self.config.tls.as_ref();
        tls.map(|tls| crate::tls::server(&prefix, tls)).transpose()
    }

    /// The listener's SASL, its users file loaded, when its `sasl` table is set.
    pub fn sasl(&self) -> Result<Option<ListenerSasl>, ConfigError> {
        let tls = self.config.tls.is_some();
        let sasl = self.config.sasl.as_ref();
        sasl.map(|sasl| crate::sasl::listener(&self.key, sasl, tls))
            .transpose()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.config.name;
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if name.is_empty() || !name.chars().all(valid) {
            return Err(invalid(
                format!("{}.name", self.key),
                "must be non-empty and use only letters, digits, '-' and '_'",
            ));
        }
        check_socket_addr(&format!("{}.listen", self.key), &self.config.listen)?;
        if let Some(adv) = &self.config.advertised {
            check_host_port(&format!("{}.advertised", self.key), adv)?;
        }
        self.tls()?;
        self.sasl()?;
        Ok(())
    }
}

pub(super) fn default_name() -> String {
    "default".to_string()
}

impl Config {
    /// Every Kafka listener: `[kafka]` first, then each `[[kafka.listeners]]` entry.
    pub fn listeners(&self) -> Vec<KeyedListener> {
        let first = ListenerConfig {
            name: self.kafka.name.clone(),
            listen: self.kafka.listen.clone(),
            advertised: self.kafka.advertised.clone(),
            tls: self.kafka.tls.clone(),
            sasl: self.kafka.sasl.clone(),
        };
        let more = self
            .kafka
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| KeyedListener {
                key: format!("kafka.listeners[{i}]"),
                config: l.clone(),
            });
        std::iter::once(KeyedListener {
            key: "kafka".to_string(),
            config: first,
        })
        .chain(more)
        .collect()
    }

    /// Each listener valid on its own, names unique and ports distinct: as in Kafka,
    /// two listeners cannot share a port even on different addresses.
    pub(super) fn validate_listeners(&self) -> Result<(), ConfigError> {
        let mut names: HashMap<&str, &str> = HashMap::new();
        let mut ports: HashMap<u16, (&str, &str)> = HashMap::new();
        let listeners = self.listeners();
        for listener in &listeners {
            listener.validate()?;
            let (key, name) = (listener.key.as_str(), listener.config.name.as_str());
            if let Some(first) = names.insert(name, key) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("{name:?} is already the name of the listener at `{first}`"),
                ));
            }
            let port = listener
                .config
                .listen
                .parse::<SocketAddr>()
                .map(|a| a.port())
                .unwrap_or(0);
            // Port 0 asks the system for a free port, which is never a taken one.
            if port == 0 {
                continue;
            }
            if let Some((other, other_key)) = ports.insert(port, (name, key)) {
                return Err(invalid(
                    format!("{key}.listen"),
                    format!(
                        "port {port} is already the port of listener {other:?} \
                         (`{other_key}.listen`); every listener needs its own port"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    const BASE: &str = "data_dir = \"d\"\n[kafka]\nlisten = \"127.0.0.1:9192\"\n";

    fn err_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    fn users_file(dir: &Path) -> PathBuf {
        let users = dir.join("users.json");
        let hashes = [crate::sasl::scram::ScramHash::Sha256];
        crate::sasl::Users::add_to_file(&users, "alice", b"pw", &hashes, 4096).unwrap();
        users
    }

    fn external(body: &str) -> String {
        format!("{BASE}[[kafka.listeners]]\nname = \"external\"\n{body}")
    }

    #[test]
    fn the_kafka_table_alone_is_one_plaintext_listener_named_default() {
        let c = Config::parse(BASE).unwrap();
        let listeners = c.listeners();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].key, "kafka");
        assert_eq!(listeners[0].config.name, "default");
        assert_eq!(listeners[0].config.listen, "127.0.0.1:9192");
        assert_eq!(listeners[0].protocol(), SecurityProtocol::Plaintext);
    }

    #[test]
    fn more_listeners_keep_their_own_address_and_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let users = users_file(dir.path());
        let sasl = format!(
            "sasl = {{ mechanisms = [\"SCRAM-SHA-256\"], users_file = {users:?}, \
             allow_plaintext = true }}\n"
        );
        let text = external(&format!(
            "listen = \"0.0.0.0:9093\"\nadvertised = \"b.example.com:9093\"\n{sasl}"
        ));
        let text = text.replace(
            "listen = \"127.0.0.1:9192\"",
            "name = \"internal\"\nlisten = \"127.0.0.1:9192\"",
        );
        let c = Config::parse(&text).unwrap();
        let listeners = c.listeners();
        assert_eq!(listeners.len(), 2);
        assert_eq!(listeners[0].config.name, "internal");
        assert_eq!(listeners[0].protocol(), SecurityProtocol::Plaintext);
        assert_eq!(listeners[1].key, "kafka.listeners[0]");
        assert_eq!(listeners[1].config.name, "external");
        assert_eq!(
            listeners[1].config.advertised.as_deref(),
            Some("b.example.com:9093")
        );
        assert_eq!(listeners[1].protocol(), SecurityProtocol::SaslPlaintext);
        assert!(listeners[1].sasl().unwrap().is_some());
    }

    #[test]
    fn listener_mistakes_name_their_key() {
        let e = err_of(&external("listen = \"127.0.0.1:9093\"\n").replace("external", "default"));
        assert!(
            e.starts_with("`kafka.listeners[0].name`") && e.contains("`kafka`"),
            "{e}"
        );
        let e = err_of(&external("listen = \"127.0.0.1:9093\"\n").replace("external", "ex ternal"));
        assert!(e.starts_with("`kafka.listeners[0].name`"), "{e}");
        let e = err_of(&external("listen = \"10.0.0.1:9192\"\n"));
        assert!(
            e.starts_with("`kafka.listeners[0].listen`")
                && e.contains("port 9192")
                && e.contains("\"default\""),
            "{e}"
        );
        let e = err_of(&external("listen = \"outside:9093\"\n"));
        assert!(e.starts_with("`kafka.listeners[0].listen`"), "{e}");
        let e = err_of(&external(
            "listen = \"127.0.0.1:9093\"\nadvertised = \"nowhere\"\n",
        ));
        assert!(e.starts_with("`kafka.listeners[0].advertised`"), "{e}");
        let e = err_of(&external(
            "listen = \"127.0.0.1:9093\"\nmax_connections = 5\n",
        ));
        assert!(
            e.starts_with("`kafka.listeners[0].max_connections`") && e.contains("unknown field"),
            "{e}"
        );
        let e = err_of(&external("advertised = \"h:1\"\n"));
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn two_listeners_on_port_zero_do_not_conflict() {
        let text = external("listen = \"127.0.0.1:0\"\n").replace("9192", "0");
        assert!(Config::parse(&text).is_ok());
    }

    #[test]
    fn a_sasl_listener_needs_a_users_file_and_tls_or_consent() {
        let dir = tempfile::tempdir().unwrap();
        let listen = "listen = \"127.0.0.1:9093\"\n";
        let e = err_of(&external(&format!(
            "{listen}sasl = {{ mechanisms = [\"PLAIN\"] }}\n"
        )));
        assert!(
            e.contains("kafka.listeners[0]") && e.contains("users_file"),
            "{e}"
        );
        let missing = dir.path().join("missing.json");
        let sasl = |extra: &str| {
            external(&format!(
                "{listen}sasl = {{ mechanisms = [\"PLAIN\"], users_file = {missing:?}{extra} }}\n"
            ))
        };
        let e = err_of(&sasl(", allow_plaintext = true"));
        assert!(e.starts_with("`kafka.listeners[0].sasl.users_file`"), "{e}");
        let users = users_file(dir.path());
        let with_users =
            |extra: &str| sasl(extra).replace(&format!("{missing:?}"), &format!("{users:?}"));
        let e = err_of(&with_users(""));
        assert!(
            e.starts_with("`kafka.listeners[0].sasl`") && e.contains("`kafka.listeners[0].tls`"),
            "{e}"
        );
        let e = err_of(&with_users(", allow_plaintext = true").replace("[\"PLAIN\"]", "[]"));
        assert!(e.starts_with("`kafka.listeners[0].sasl.mechanisms`"), "{e}");
    }

    #[test]
    fn a_listener_tls_file_that_cannot_be_loaded_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let tls = format!("tls = {{ cert = {missing:?}, key = {missing:?} }}\n");
        let e = err_of(&external(&format!("listen = \"127.0.0.1:9093\"\n{tls}")));
        assert!(
            e.starts_with("`kafka.listeners[0].tls.cert`") && e.contains("missing.pem"),
            "{e}"
        );
    }
}
