//! The client side of SASL: a link authenticating to a source broker with SaslHandshake
//! v1 and SaslAuthenticate (KIP-152), PLAIN or SCRAM.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{SourceClient, SourceError};
use crate::sasl::scram::ScramClient;
use crate::sasl::ClientSasl;

impl SourceClient {
    /// Authenticates this fresh connection as `sasl`'s user. A SCRAM server must also
    /// prove it knows the credential, so a link never mirrors from an impostor that
    /// merely accepts any password. Returns how long the login lasts, when the source
    /// limits it (KIP-368: after that it closes the connection at the next request).
    pub(super) async fn authenticate(
        &self,
        sasl: &ClientSasl,
    ) -> Result<Option<Duration>, SourceError> {
        if self.version(ApiKey::SaslHandshake)? < 1 {
            return Err(SourceError::Unsupported {
                addr: self.addr().to_string(),
                api: ApiKey::SaslAuthenticate,
            });
        }
        let mechanism = StrBytes::from_static_str(sasl.mechanism.name());
        let request = SaslHandshakeRequest::default().with_mechanism(mechanism);
        let handshake: SaslHandshakeResponse = self.send(ApiKey::SaslHandshake, &request).await?;
        if handshake.error_code != 0 {
            let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(self.refused(format!(
                "the source does not offer {} (error code {}; it offers {offered:?})",
                sasl.mechanism, handshake.error_code
            )));
        }
        let Some(hash) = sasl.mechanism.scram() else {
            let mut token = vec![0];
            token.extend_from_slice(sasl.username.as_bytes());
            token.push(0);
            token.extend_from_slice(sasl.password.bytes());
            return Ok(lifetime(&self.sasl_round(token).await?));
        };
        let nonce =
            crate::sasl::nonce().map_err(|e| self.refused(format!("no random nonce: {e}")))?;
        let client = ScramClient::new(hash, &sasl.username, sasl.password.bytes(), &nonce);
        let server_first = self.sasl_round(client.first()).await?;
        let (verify, client_final) = client
            .respond(&server_first.auth_bytes)
            .map_err(|e| self.refused(e.to_string()))?;
        let server_final = self.sasl_round(client_final).await?;
        verify
            .finish(&server_final.auth_bytes)
            .map_err(|e| self.refused(e.to_string()))?;
        Ok(lifetime(&server_final))
    }

    /// Sends one token; the server's answer, or its refusal as an error.
    async fn sasl_round(&self, token: Vec<u8>) -> Result<SaslAuthenticateResponse, SourceError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let response: SaslAuthenticateResponse =
            self.send(ApiKey::SaslAuthenticate, &request).await?;
        if response.error_code != 0 {
            let message = response
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            return Err(self.refused(format!("error code {}: {message}", response.error_code)));
        }
        Ok(response)
    }

    fn refused(&self, reason: String) -> SourceError {
        SourceError::Authentication {
            addr: self.addr().to_string(),
            reason,
        }
    }
}

/// The session lifetime the last SaslAuthenticate answer grants; 0 means unlimited.
fn lifetime(response: &SaslAuthenticateResponse) -> Option<Duration> {
    u64::try_from(response.session_lifetime_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}
