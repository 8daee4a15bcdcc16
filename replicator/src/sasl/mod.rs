//! SASL: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 on the Kafka listener (server side)
//! and on links (client side), and the configuration both read.
//!
//! Secrets never reach the TOML: the listener reads salted hashes from a users file,
//! a link reads its password from a file or an environment variable. Neither a
//! password nor a key is ever logged or shown in `/v1/status`.

pub mod scram;
pub mod users;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{invalid, ConfigError};
use scram::ScramHash;
pub use users::Users;

/// A SASL mechanism shadowlink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    /// The name on the wire and in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The SCRAM hash, for the SCRAM mechanisms.
    pub fn scram(self) -> Option<ScramHash> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha512 => Some(ScramHash::Sha512),
        }
    }
}

impl From<ScramHash> for Mechanism {
    fn from(hash: ScramHash) -> Mechanism {
        match hash {
            ScramHash::Sha256 => Mechanism::ScramSha256,
            ScramHash::Sha512 => Mechanism::ScramSha512,
            #[cfg(test)]
            ScramHash::Sha1 => Mechanism::Plain,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mechanism {
    type Err = String;

    fn from_str(name: &str) -> Result<Mechanism, String> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                format!("{name:?} is not a SASL mechanism shadowlink supports (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
            })
    }
}

impl TryFrom<String> for Mechanism {
    type Error = String;

    fn try_from(name: String) -> Result<Mechanism, String> {
        name.parse()
    }
}

/// `[kafka.sasl]`: clients must authenticate before anything but ApiVersions is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSaslConfig {
    /// Mechanisms offered, such as `["SCRAM-SHA-512", "PLAIN"]`.
    pub mechanisms: Vec<Mechanism>,
    /// The JSON file of SCRAM credentials `shadowlink user add` writes.
    pub users_file: PathBuf,
    /// Serve SASL without `[kafka.tls]` (SASL_PLAINTEXT): PLAIN then sends passwords in
    /// clear, so it must be asked for.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// After a failed authentication is answered, the connection closes only after this
    /// delay (Kafka's `connection.failed.authentication.delay.ms`).
    #[serde(default = "default_failed_delay", with = "humantime_serde")]
    pub failed_authentication_delay: Duration,
}

fn default_failed_delay() -> Duration {
    Duration::from_millis(500)
}

/// `[links.sasl]`: how a link authenticates to its source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSaslConfig {
    pub mechanism: Mechanism,
    pub username: String,
    /// A file whose content (without a trailing newline) is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Authenticate without `tls` (SASL_PLAINTEXT).
    #[serde(default)]
    pub allow_plaintext: bool,
}

/// The listener's SASL, its users loaded.
#[derive(Debug)]
pub struct ListenerSasl {
    pub mechanisms: Vec<Mechanism>,
    pub users: Users,
    pub failed_delay: Duration,
}

/// Checks a listener's `sasl` table and loads its users file; `prefix` is the
/// listener's key, such as `kafka` or `kafka.listeners[0]`, and `tls` whether the
/// listener has TLS.
pub fn listener(
    prefix: &str,
    config: &ListenerSaslConfig,
    tls: bool,
) -> Result<ListenerSasl, ConfigError> {
    if config.mechanisms.is_empty() {
        return Err(invalid(
            format!("{prefix}.sasl.mechanisms"),
            "needs at least one mechanism",
        ));
    }
    if !tls && !config.allow_plaintext {
        return Err(invalid(
            format!("{prefix}.sasl"),
            format!(
                "SASL without `{prefix}.tls` sends credentials in clear: configure TLS, \
                 or set `allow_plaintext = true` to accept that"
            ),
        ));
    }
    let users = Users::load(&config.users_file)
        .map_err(|e| invalid(format!("{prefix}.sasl.users_file"), e.to_string()))?;
    Ok(ListenerSasl {
        mechanisms: config.mechanisms.clone(),
        users,
        failed_delay: config.failed_authentication_delay,
    })
}

/// A password kept out of `Debug` output and logs.
#[derive(Clone)]
pub struct Password(Vec<u8>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    pub fn new(bytes: Vec<u8>) -> Password {
        Password(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A link's SASL credentials, the password read.
#[derive(Debug, Clone)]
pub struct ClientSasl {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: Password,
}

/// Checks a link's `sasl` table and reads its password; `prefix` is the table's key,
/// such as `links[0].sasl`, and `tls` whether the link has TLS.
pub fn client(prefix: &str, config: &LinkSaslConfig, tls: bool) -> Result<ClientSasl, ConfigError> {
    let key = |field: &str| format!("{prefix}.{field}");
    if !tls && !config.allow_plaintext {
        return Err(invalid(
            prefix,
            "SASL without the link's `tls` sends credentials in clear: configure TLS, \
             or set `allow_plaintext = true` to accept that",
        ));
    }
    if config.username.is_empty() {
        return Err(invalid(key("username"), "must not be empty"));
    }
    let password = match (&config.password_file, &config.password_env) {
        (Some(path), None) => std::fs::read(path).map(trim_newline).map_err(|e| {
            invalid(
                key("password_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?,
        (None, Some(var)) => std::env::var_os(var)
            .map(|v| v.into_encoded_bytes())
            .ok_or_else(|| invalid(key("password_env"), format!("${var} is not set")))?,
        _ => {
            return Err(invalid(
                prefix,
                "needs exactly one of `password_file` and `password_env`",
            ))
        }
    };
    if password.is_empty() {
        return Err(invalid(prefix, "the password is empty"));
    }
    Ok(ClientSasl {
        mechanism: config.mechanism,
        username: config.username.clone(),
        password: Password::new(password),
    })
}

/// A password file's content without the newline an editor or `echo` leaves.
fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    bytes
}

/// A fresh SCRAM nonce: 24 random bytes in hex, so it never holds the `,` that ends a
/// SCRAM attribute.
pub fn nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn sasl_settings_that_cannot_work_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users.json");
        let base = "data_dir = \"d\"\n[kafka]\nlisten = \"127.0.0.1:9092\"\n";
        let listener = |extra: &str| {
            format!("{base}sasl = {{ mechanisms = [\"PLAIN\"], users_file = {users:?}{extra} }}\n")
        };
        let e = err_of(&listener(", allow_plaintext = true"));
        assert!(e.starts_with("`kafka.sasl.users_file`"), "{e}");
        super::Users::add_to_file(&users, "alice", b"pw", &[super::ScramHash::Sha256], 4096)
            .unwrap();
        assert!(Config::parse(&listener(", allow_plaintext = true")).is_ok());
        let e = err_of(&listener(""));
        assert!(
            e.starts_with("`kafka.sasl`") && e.contains("allow_plaintext"),
            "{e}"
        );
        let e = err_of(&listener(", allow_plaintext = true").replace("PLAIN", "GSSAPI"));
        assert!(e.contains("GSSAPI"), "{e}");

        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret-value\n").unwrap();
        let link = |sasl: &str| {
            format!(
                "{base}[[links]]\nname = \"a\"\nbootstrap = [\"h:9092\"]\ninclude = [\"*\"]\n\
                 sasl = {{ mechanism = \"SCRAM-SHA-512\", username = \"u\", allow_plaintext = true{sasl} }}\n"
            )
        };
        let e = err_of(&link(", password_env = \"SHADOWLINK_TEST_UNSET_SECRET\""));
        assert!(e.starts_with("`links[0].sasl.password_env`"), "{e}");
        let both = format!(", password_env = \"X\", password_file = {secret:?}");
        let e = err_of(&link(&both));
        assert!(
            e.starts_with("`links[0].sasl`") && e.contains("exactly one"),
            "{e}"
        );
        let config = Config::parse(&link(&format!(", password_file = {secret:?}"))).unwrap();
        let sasl = config.link_sasl(0).unwrap().unwrap();
        assert_eq!(sasl.password.bytes(), b"s3cret-value");
        assert!(!format!("{sasl:?}").contains("s3cret"), "{sasl:?}");
    }
}
