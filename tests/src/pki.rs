//! Test certificates made at test time with rcgen: a CA, a server certificate for
//! 127.0.0.1 and localhost, and a client certificate with the subject `CN=client.test`.
//! No private key is committed.

use std::path::PathBuf;

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::NodeConfig;

/// A CA and one certificate it signed, as PEM files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate.
    pub fn new() -> Result<Pki> {
        let dir = tempfile::tempdir()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "shadowlink test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        std::fs::write(dir.path().join("ca.pem"), ca.pem())?;
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", vec!["client.test".to_string()]),
        ] {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(sans)?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name}.test"));
            let cert = params.signed_by(&key, &ca)?;
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem())?;
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())?;
        }
        Ok(Pki { dir })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A TLS-only listener with this PKI's server certificate.
    pub fn listener(&self, config: NodeConfig, client_ca: bool) -> NodeConfig {
        let ca = self.ca();
        config.kafka_tls(
            &self.path("server.pem"),
            &self.path("server.key"),
            client_ca.then_some(ca.as_path()),
            client_ca,
        )
    }
}
