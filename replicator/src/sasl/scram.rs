//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), as Kafka speaks it (KIP-84).
//!
//! Kafka's dialect: no channel binding (the GS2 flag is `n`), an authorization id, when
//! given, must equal the user, passwords are hashed as raw UTF-8 without SASLprep, and a
//! failure is SASL_AUTHENTICATION_FAILED rather than a server-final `e=` message. Both
//! sides live here: the listener verifies clients, and links authenticate to sources.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::digest::core_api::BlockSizeUser;
use hmac::{Mac, SimpleHmac};
use sha2::{Digest, Sha256, Sha512};

/// Kafka refuses SCRAM credentials with fewer iterations (`ScramMechanism.minIterations`).
pub const MIN_ITERATIONS: u32 = 4096;
/// An upper bound, so a hostile users file cannot make every login burn minutes of CPU.
pub const MAX_ITERATIONS: u32 = 1 << 20;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramHash {
    Sha256,
    Sha512,
    /// SCRAM-SHA-1, never offered: it runs the RFC 5802 test vectors through the same code.
    #[cfg(test)]
    Sha1,
}

/// Why a SCRAM exchange failed. Messages never contain a password or key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the authorization id differs from the user name")]
    AuthorizationId,
    #[error("SCRAM extensions such as delegation tokens are not supported")]
    Extension,
    #[error("unknown user")]
    UnknownUser,
    #[error("invalid credentials")]
    BadProof,
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    #[error("{0} iterations is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    #[error("the server's signature does not match: it does not know the password")]
    BadServerSignature,
    #[error("the server refused: {0}")]
    ServerError(String),
}

/// What a server stores for one user and mechanism (RFC 5802 section 3): enough to
/// verify a client, not enough to impersonate one.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential for `password` with `salt` and `iterations`.
    pub fn new(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> ScramCredential {
        let salted = hash.salted_password(password, salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN).
    pub fn matches(&self, hash: ScramHash, password: &[u8]) -> bool {
        let other = ScramCredential::new(hash, password, &self.salt, self.iterations);
        constant_time_eq(&other.stored_key, &self.stored_key)
    }
}

impl ScramHash {
    /// Bytes of this hash's output: the length of every key.
    pub fn key_len(self) -> usize {
        match self {
            ScramHash::Sha256 => 32,
            ScramHash::Sha512 => 64,
            #[cfg(test)]
            ScramHash::Sha1 => 20,
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => hi::<Sha256>(password, salt, iterations),
            ScramHash::Sha512 => hi::<Sha512>(password, salt, iterations),
            #[cfg(test)]
            ScramHash::Sha1 => hi::<sha1::Sha1>(password, salt, iterations),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => hmac::<Sha256>(key, data),
            ScramHash::Sha512 => hmac::<Sha512>(key, data),
            #[cfg(test)]
            ScramHash::Sha1 => hmac::<sha1::Sha1>(key, data),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
            #[cfg(test)]
            ScramHash::Sha1 => sha1::Sha1::digest(data).to_vec(),
        }
    }
}

/// `Hi()` of RFC 5802: PBKDF2 with HMAC of the mechanism's hash.
fn hi<D: Digest + BlockSizeUser + Clone + Sync>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0; <D as Digest>::output_size()];
    pbkdf2::pbkdf2::<SimpleHmac<D>>(password, salt, iterations, &mut out)
        .expect("HMAC accepts keys of any length");
    out
}

fn hmac<D: Digest + BlockSizeUser + Clone>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <SimpleHmac<D> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// `AuthMessage` of RFC 5802: what both proofs sign.
fn auth_message(client_first_bare: &str, server_first: &str, client_final_bare: &str) -> Vec<u8> {
    format!("{client_first_bare},{server_first},{client_final_bare}").into_bytes()
}

/// `=2C` and `=3D` stand for `,` and `=` in SCRAM names (RFC 5802 section 5.1).
fn unescape_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3);
        out.push(match code {
            Some("=2C") => ',',
            Some("=3D") => '=',
            _ => return Err(ScramError::Malformed("bad escape in a user name")),
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The value of attribute `key` (`r` for `r=...`), which must be `part`.
fn attribute(part: Option<&str>, key: char) -> Result<&str, ScramError> {
    let part = part.ok_or(ScramError::Malformed("a SCRAM attribute is missing"))?;
    let mut chars = part.chars();
    match (chars.next(), chars.next()) {
        (Some(k), Some('=')) if k == key => Ok(&part[2..]),
        _ => Err(ScramError::Malformed("unexpected SCRAM attribute")),
    }
}

fn decode64(text: &str, what: &'static str) -> Result<Vec<u8>, ScramError> {
    BASE64.decode(text).map_err(|_| ScramError::Malformed(what))
}

fn utf8(token: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(token).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// The parsed client-first message.
struct ClientFirst<'a> {
    gs2_header: &'a str,
    bare: &'a str,
    user: String,
    nonce: &'a str,
}

fn parse_client_first(text: &str) -> Result<ClientFirst<'_>, ScramError> {
    let mut parts = text.splitn(3, ',');
    match parts.next() {
        Some("n") => {}
        Some(flag) if flag == "y" || flag.starts_with("p=") => {
            return Err(ScramError::ChannelBinding)
        }
        _ => return Err(ScramError::Malformed("bad GS2 header")),
    }
    let authzid = parts
        .next()
        .ok_or(ScramError::Malformed("bad GS2 header"))?;
    let bare = parts
        .next()
        .ok_or(ScramError::Malformed("no client-first-bare"))?;
    let gs2_header = &text[..text.len() - bare.len()];
    let mut attributes = bare.split(',');
    let user = unescape_name(attribute(attributes.next(), 'n')?)?;
    let nonce = attribute(attributes.next(), 'r')?;
    if attributes.next().is_some() {
        return Err(ScramError::Extension);
    }
    if !authzid.is_empty() && unescape_name(attribute(Some(authzid), 'a')?)? != user {
        return Err(ScramError::AuthorizationId);
    }
    if user.is_empty() || nonce.is_empty() {
        return Err(ScramError::Malformed("empty user name or nonce"));
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        user,
        nonce,
    })
}

/// A server waiting for the client-first message.
pub struct ScramServer {
    hash: ScramHash,
}

/// A server that has sent server-first and waits for client-final.
pub struct ScramServerFinal {
    hash: ScramHash,
    user: String,
    credential: ScramCredential,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    pub fn new(hash: ScramHash) -> ScramServer {
        ScramServer { hash }
    }

    /// Answers client-first with server-first. `lookup` finds the user's credential;
    /// `server_nonce` is appended to the client's nonce.
    pub fn first(
        self,
        token: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<(ScramServerFinal, Vec<u8>), ScramError> {
        let first = parse_client_first(utf8(token)?)?;
        let credential = lookup(&first.user).ok_or(ScramError::UnknownUser)?;
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        let state = ScramServerFinal {
            hash: self.hash,
            user: first.user,
            credential,
            gs2_header: first.gs2_header.to_string(),
            client_first_bare: first.bare.to_string(),
            server_first,
            nonce,
        };
        Ok((state, reply))
    }
}

impl ScramServerFinal {
    /// The user the client claims to be.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks client-final's proof; on success, the authenticated user and server-final.
    pub fn finish(self, token: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let text = utf8(token)?;
        let (bare, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final has no proof"))?;
        let mut attributes = bare.split(',');
        let binding = decode64(attribute(attributes.next(), 'c')?, "bad channel binding")?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        // Kafka's ScramSaslServer checks only that the nonce ends with the one it sent:
        // librdkafka 2.0 (kcat's) repeats its own nonce in front of it.
        if !attribute(attributes.next(), 'r')?.ends_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        if attributes.next().is_some() {
            return Err(ScramError::Extension);
        }
        let proof = decode64(proof, "bad proof encoding")?;
        let signed = auth_message(&self.client_first_bare, &self.server_first, bare);
        let client_signature = self.hash.hmac(&self.credential.stored_key, &signed);
        if proof.len() != client_signature.len() {
            return Err(ScramError::BadProof);
        }
        let client_key = xor(&proof, &client_signature);
        if !constant_time_eq(&self.hash.digest(&client_key), &self.credential.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = self.hash.hmac(&self.credential.server_key, &signed);
        let reply = format!("v={}", BASE64.encode(server_signature)).into_bytes();
        Ok((self.user, reply))
    }
}

/// A client about to send client-first.
pub struct ScramClient {
    hash: ScramHash,
    password: Vec<u8>,
    client_first_bare: String,
    nonce: String,
}

/// A client that has sent client-final and waits for the server's signature.
pub struct ScramClientVerify {
    expected: Vec<u8>,
}

impl ScramClient {
    pub fn new(hash: ScramHash, user: &str, password: &[u8], nonce: &str) -> ScramClient {
        ScramClient {
            hash,
            password: password.to_vec(),
            client_first_bare: format!("n={},r={nonce}", escape_name(user)),
            nonce: nonce.to_string(),
        }
    }

    /// client-first, with no channel binding and no authorization id.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers server-first with client-final.
    pub fn respond(self, token: &[u8]) -> Result<(ScramClientVerify, Vec<u8>), ScramError> {
        let server_first = utf8(token)?;
        if let Some(error) = server_first.strip_prefix("e=") {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let mut attributes = server_first.split(',');
        let nonce = attribute(attributes.next(), 'r')?;
        let salt = decode64(attribute(attributes.next(), 's')?, "bad salt encoding")?;
        let iterations: u32 = attribute(attributes.next(), 'i')?
            .parse()
            .map_err(|_| ScramError::Malformed("bad iteration count"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let salted = self.hash.salted_password(&self.password, &salt, iterations);
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let stored_key = self.hash.digest(&client_key);
        let final_bare = format!("c=biws,r={nonce}");
        let signed = auth_message(&self.client_first_bare, server_first, &final_bare);
        let proof = xor(&client_key, &self.hash.hmac(&stored_key, &signed));
        let server_key = self.hash.hmac(&salted, b"Server Key");
        let verify = ScramClientVerify {
            expected: self.hash.hmac(&server_key, &signed),
        };
        let reply = format!("{final_bare},p={}", BASE64.encode(proof)).into_bytes();
        Ok((verify, reply))
    }
}

impl ScramClientVerify {
    /// Checks server-final: only a server that knows the credential can sign it.
    pub fn finish(self, token: &[u8]) -> Result<(), ScramError> {
        let text = utf8(token)?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let signature = decode64(attribute(Some(text), 'v')?, "bad signature encoding")?;
        if constant_time_eq(&signature, &self.expected) {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
