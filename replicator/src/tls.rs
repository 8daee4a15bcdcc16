//! TLS with rustls: the Kafka listener's server side and each link's client side.
//!
//! Certificates, keys and CAs are PEM files named in the configuration. Everything is
//! loaded and checked when the configuration is validated, so a missing or unreadable
//! file stops the node at start with the key that names it, never at the first client.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{invalid, ConfigError, LinkTls, ListenerTls};

/// A byte stream to a peer, plain TCP or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

pub type BoxStream = Box<dyn Stream>;

/// How a link opens TLS connections to its source's brokers.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    /// Replaces the broker's host as the name its certificate must carry.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Runs the TLS handshake on `stream` to the broker at `addr` (host:port).
    pub async fn connect(&self, addr: &str, stream: TcpStream) -> std::io::Result<BoxStream> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => server_name(host_of(addr))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        };
        let stream = self.connector.connect(name, stream).await?;
        Ok(Box::new(stream))
    }
}

/// The listener's side of TLS.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// Runs the TLS handshake with a client; a client that stalls is dropped after
    /// `timeout` so it cannot hold a connection slot without ever speaking Kafka.
    /// Returns the stream and the subject of the client's verified certificate, if any.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> std::io::Result<(BoxStream, Option<String>)> {
        match tokio::time::timeout(timeout, self.acceptor.accept(stream)).await {
            Ok(stream) => {
                let stream = stream?;
                let (_, session) = stream.get_ref();
                let subject = session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| crate::tls_subject::subject(cert.as_ref()));
                Ok((Box::new(stream), subject))
            }
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A listener's TLS; `prefix` is its table's key, such as `kafka.tls` or
/// `kafka.listeners[0].tls`, and errors name keys under it.
pub fn server(prefix: &str, tls: &ListenerTls) -> Result<ServerTls, ConfigError> {
    let field = |name: &str| format!("{prefix}.{name}");
    let certs = load_certs(&field("cert"), &tls.cert)?;
    let key = load_key(&field("key"), &tls.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(prefix, e.to_string()))?;
    let builder = match &tls.ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(&field("ca"), ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if tls.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| invalid(field("ca"), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if tls.require_client_cert => {
            return Err(invalid(
                field("require_client_cert"),
                format!("needs `{prefix}.ca`, the CA client certificates are checked against"),
            ))
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid(field("key"), format!("does not fit the certificate: {e}")))?;
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

/// A link's TLS from `[links.tls]`; `prefix` is the table's key, such as `links[0].tls`.
pub fn client(prefix: &str, tls: &LinkTls) -> Result<ClientTls, ConfigError> {
    let key = |field: &str| format!("{prefix}.{field}");
    let roots = load_roots(&key("ca"), &tls.ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(prefix, e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(private)) => {
            let certs = load_certs(&key("cert"), cert)?;
            let private = load_key(&key("key"), private)?;
            builder
                .with_client_auth_cert(certs, private)
                .map_err(|e| invalid(key("key"), format!("does not fit the certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => return Err(invalid(key("key"), "is needed when `cert` is set")),
        (None, Some(_)) => return Err(invalid(key("cert"), "is needed when `key` is set")),
    };
    let server_name = match &tls.server_name {
        Some(name) => Some(server_name(name).map_err(|e| invalid(key("server_name"), e))?),
        None => None,
    };
    Ok(ClientTls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a DNS name or IP address"))
}

/// The host of `host:port`, without the brackets of an IPv6 literal.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_matches(['[', ']'])
}

fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(key, format!("cannot load {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        invalid(
            key,
            format!("cannot load a private key from {}: {e}", path.display()),
        )
    })
}

fn load_roots(key: &str, path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_of_an_address_drops_port_and_brackets() {
        assert_eq!(host_of("broker-1:9092"), "broker-1");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
    }
}
