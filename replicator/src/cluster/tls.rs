//! How the node connects to etcd: TLS (etcd's `--cert-file`, and for its
//! `--client-cert-auth` this node's certificate) and an etcd user, through etcd-client's
//! rustls support. The files and the password were checked when the configuration was;
//! they are read again on every connection, so a renewed certificate is picked up by the
//! next reconnect.

use std::error::Error as _;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::config::{ClusterConfig, ConfigError};

/// Why the node could not even try to reach etcd.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The options of one connection to etcd.
pub fn connect_options(config: &ClusterConfig) -> Result<ConnectOptions, SetupError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(config.request_timeout)
        .with_keep_alive(Duration::from_secs(1), config.request_timeout);
    if let Some(tls) = &config.tls {
        let mut settings = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            settings = settings.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &tls.server_name {
            settings = settings.domain_name(name.clone());
        }
        options = options.with_tls(settings);
    }
    if let Some(user) = config.credentials()? {
        options = options.with_user(user.username, user.password);
    }
    Ok(options)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// An etcd-client error with every cause under it: its own text for a failed TLS
/// handshake is only "transport error", the certificate problem is a cause below.
pub fn describe(error: &etcd_client::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = e.source();
    }
    text
}
