//! The listener's users: a JSON file of SCRAM credentials, written by `shadowlink user add`.
//!
//! Only salted hashes are stored (salt, iterations, StoredKey, ServerKey per mechanism,
//! as Kafka keeps them in ZooKeeper or KRaft), so the file lets the node verify a
//! password but not recover one. SASL/PLAIN is checked against the same credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::scram::{ScramCredential, ScramHash, MAX_ITERATIONS, MIN_ITERATIONS};
use super::Mechanism;

/// Why a users file cannot be used. Messages name the file and user, never a key.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write users file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("users file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot draw random bytes for a salt: {0}")]
    Random(String),
}

/// One stored credential, as written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCredential {
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

/// The file: user name, then mechanism name, then credential.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: BTreeMap<String, BTreeMap<String, StoredCredential>>,
}

/// The users a listener accepts, loaded and checked.
#[derive(Debug, Default, Clone)]
pub struct Users {
    users: BTreeMap<String, BTreeMap<ScramHash, ScramCredential>>,
}

impl Users {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| UsersError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let file: UsersFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut users = BTreeMap::new();
        for (user, mechanisms) in file.users {
            let mut credentials = BTreeMap::new();
            for (name, stored) in mechanisms {
                let hash = scram_hash(&name).ok_or_else(|| {
                    invalid(format!("user {user:?}: {name:?} is not a SCRAM mechanism"))
                })?;
                let credential = decode(hash, &stored)
                    .map_err(|reason| invalid(format!("user {user:?}, {name}: {reason}")))?;
                credentials.insert(hash, credential);
            }
            users.insert(user, credentials);
        }
        Ok(Users { users })
    }

    /// The credential of `user` for SCRAM with `hash`.
    pub fn scram(&self, user: &str, hash: ScramHash) -> Option<ScramCredential> {
        self.users.get(user)?.get(&hash).cloned()
    }

    /// Whether `password` is `user`'s (SASL/PLAIN), checked against the strongest SCRAM
    /// credential stored for the user.
    pub fn check_plain(&self, user: &str, password: &[u8]) -> bool {
        let Some(credentials) = self.users.get(user) else {
            return false;
        };
        match credentials.iter().next_back() {
            Some((hash, credential)) => credential.matches(*hash, password),
            None => false,
        }
    }

    /// Adds or replaces `user`'s credentials for `mechanisms` in the file at `path`
    /// (created when missing), keeping every other entry. The file is replaced by a
    /// rename, readable by its owner only.
    pub fn add_to_file(
        path: &Path,
        user: &str,
        password: &[u8],
        mechanisms: &[ScramHash],
        iterations: u32,
    ) -> Result<(), UsersError> {
        let invalid = |reason: String| UsersError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let mut file: UsersFile = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => UsersFile::default(),
            Err(source) => {
                return Err(UsersError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let entry = file.users.entry(user.to_string()).or_default();
        for hash in mechanisms {
            let mut salt = [0u8; 32];
            getrandom::fill(&mut salt).map_err(|e| UsersError::Random(e.to_string()))?;
            let credential = ScramCredential::new(*hash, password, &salt, iterations);
            entry.insert(
                Mechanism::from(*hash).name().to_string(),
                encode(&credential),
            );
        }
        let text = serde_json::to_string_pretty(&file).map_err(|e| invalid(e.to_string()))?;
        write_private(path, text.as_bytes()).map_err(|source| UsersError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn scram_hash(mechanism: &str) -> Option<ScramHash> {
    match mechanism.parse::<Mechanism>().ok()? {
        Mechanism::ScramSha256 => Some(ScramHash::Sha256),
        Mechanism::ScramSha512 => Some(ScramHash::Sha512),
        Mechanism::Plain => None,
    }
}

fn encode(credential: &ScramCredential) -> StoredCredential {
    StoredCredential {
        salt: BASE64.encode(&credential.salt),
        iterations: credential.iterations,
        stored_key: BASE64.encode(&credential.stored_key),
        server_key: BASE64.encode(&credential.server_key),
    }
}

fn decode(hash: ScramHash, stored: &StoredCredential) -> Result<ScramCredential, String> {
    let bytes = |field: &str, text: &str| {
        BASE64
            .decode(text)
            .map_err(|_| format!("`{field}` is not base64"))
    };
    let credential = ScramCredential {
        salt: bytes("salt", &stored.salt)?,
        iterations: stored.iterations,
        stored_key: bytes("stored_key", &stored.stored_key)?,
        server_key: bytes("server_key", &stored.server_key)?,
    };
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&credential.iterations) {
        return Err(format!(
            "`iterations` must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
        ));
    }
    if credential.salt.is_empty() {
        return Err("`salt` is empty".to_string());
    }
    if credential.stored_key.len() != hash.key_len()
        || credential.server_key.len() != hash.key_len()
    {
        return Err(format!("keys must be {} bytes", hash.key_len()));
    }
    Ok(credential)
}

/// Writes `bytes` to a new file beside `path` with mode 0600, then renames it over
/// `path`, so a reader sees the old file or the new one, never a part.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_users_load_and_verify_without_the_password_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        let both = [ScramHash::Sha256, ScramHash::Sha512];
        Users::add_to_file(&path, "alice", b"wonderland", &both, 4096).unwrap();
        Users::add_to_file(&path, "bob", b"builder", &[ScramHash::Sha256], 4096).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("wonderland") && !text.contains("builder"),
            "{text}"
        );
        let users = Users::load(&path).unwrap();
        assert!(users.check_plain("alice", b"wonderland"));
        assert!(!users.check_plain("alice", b"builder"));
        assert!(users.check_plain("bob", b"builder"));
        assert!(!users.check_plain("carol", b"builder"));
        assert!(users.scram("alice", ScramHash::Sha512).is_some());
        assert!(users.scram("bob", ScramHash::Sha512).is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_file_names_the_user_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        Users::add_to_file(&path, "alice", b"pw", &[ScramHash::Sha256], 4096).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("4096", "10")).unwrap();
        let e = Users::load(&path).unwrap_err().to_string();
        assert!(e.contains("\"alice\"") && e.contains("iterations"), "{e}");
        std::fs::write(&path, text.replace("SCRAM-SHA-256", "PLAIN")).unwrap();
        let e = Users::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a SCRAM mechanism"), "{e}");
    }
}
