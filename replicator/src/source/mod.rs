//! The Kafka client side: talking to a link's source cluster.

mod authenticate;
mod connection;
pub mod metadata;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use shadowlink_protocol::client;
use shadowlink_protocol::EncodeError;

pub use connection::{Connection, LostReason};

/// What can go wrong talking to a source broker. `Clone` because one failed connection
/// fails every request in flight on it; I/O causes are shared behind an `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost {
        addr: String,
        #[source]
        reason: LostReason,
    },
    #[error("{addr} does not support {api:?} in any version shadowlink can use")]
    Unsupported { addr: String, api: ApiKey },
    #[error("cannot encode {api:?} v{version}: {source}")]
    Encode {
        api: ApiKey,
        version: i16,
        #[source]
        source: EncodeError,
    },
    #[error("malformed {api:?} response from {addr}: {source}")]
    Decode {
        addr: String,
        api: ApiKey,
        #[source]
        source: client::ResponseError,
    },
    #[error("{addr} answered {api:?} with error code {code}")]
    Broker {
        addr: String,
        api: ApiKey,
        code: i16,
    },
    #[error("no broker of the source cluster is reachable: broker {node_id} is not in metadata")]
    UnknownBroker { node_id: i32 },
    /// Every known broker and bootstrap address failed; `last` is the last one's error.
    #[error("no broker of the source cluster is reachable: {}", match last {
        Some(e) => e.to_string(),
        None => "no addresses".to_string(),
    })]
    NoBroker { last: Option<Box<SourceError>> },
    #[error("request to {addr} timed out")]
    Timeout { addr: String },
    /// The source refused the link's SASL credentials, or the exchange failed.
    #[error("SASL authentication to {addr} failed: {reason}")]
    Authentication { addr: String, reason: String },
}

impl SourceError {
    /// A short, bounded name for the `error` label of `shadowlink_fetch_errors_total`
    /// (see `metrics::FETCH_ERROR_KINDS`).
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Connect { .. } => "connect",
            SourceError::ConnectionLost { .. } => "connection_lost",
            SourceError::Unsupported { .. } => "unsupported",
            SourceError::Encode { .. } => "encode",
            SourceError::Decode { .. } => "decode",
            SourceError::Broker { .. } => "broker_error",
            SourceError::UnknownBroker { .. } | SourceError::NoBroker { .. } => "no_broker",
            SourceError::Timeout { .. } => "timeout",
            SourceError::Authentication { .. } => "authentication",
        }
    }

    /// Whether the error means the source could not be reached at all, as opposed to a
    /// broker that answered with an error.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SourceError::Connect { .. }
                | SourceError::ConnectionLost { .. }
                | SourceError::UnknownBroker { .. }
                | SourceError::NoBroker { .. }
                | SourceError::Timeout { .. }
                | SourceError::Authentication { .. }
        )
    }
}

/// The highest request version shadowlink sends per API: the ones whose shapes the fetch
/// path handles (topic names, not ids, in Fetch).
fn our_max_version(api: ApiKey) -> i16 {
    match api {
        ApiKey::Fetch => 12,
        ApiKey::Metadata => 12,
        ApiKey::ListOffsets => 7,
        ApiKey::OffsetForLeaderEpoch => 4,
        ApiKey::DescribeConfigs => 4,
        ApiKey::ApiVersions => 3,
        // v1 carries the tokens in SaslAuthenticate (KIP-152).
        ApiKey::SaslHandshake => 1,
        ApiKey::SaslAuthenticate => 1,
        // `shadowlink demo`'s producers (topic names, not ids).
        ApiKey::Produce => 9,
        // Offset sync. FindCoordinator v4 batches keys; OffsetFetch v8+ is batched too,
        // and the request is built in whichever shape the negotiated version has.
        ApiKey::ListGroups => 4,
        ApiKey::FindCoordinator => 3,
        ApiKey::OffsetFetch => 9,
        _ => 0,
    }
}

/// How long a request may go unanswered when the client's owner set no other bound.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection plus the API versions negotiated on it.
#[derive(Clone)]
pub struct SourceClient {
    conn: Connection,
    client_id: String,
    versions: HashMap<ApiKey, i16>,
    request_timeout: Duration,
    /// When the source limits the SASL session (KIP-368), the time to stop using this
    /// connection: a fifth of the lifetime early, so requests sent before it reach the
    /// source while the session is still valid.
    retire_at: Option<Instant>,
}

impl SourceClient {
    /// Connects (over TLS when `tls` is given), negotiates versions with ApiVersions
    /// (KIP-511 fallback included) and, when `sasl` is given, authenticates.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        tls: Option<&crate::tls::ClientTls>,
        sasl: Option<&crate::sasl::ClientSasl>,
    ) -> Result<SourceClient, SourceError> {
        let conn = Connection::connect(addr, tls).await?;
        let mut client = SourceClient {
            conn,
            client_id: client_id.to_string(),
            versions: HashMap::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retire_at: None,
        };
        client.negotiate().await?;
        if let Some(sasl) = sasl {
            let started = Instant::now();
            if let Some(lifetime) = client.authenticate(sasl).await? {
                client.retire_at = Some(started + lifetime.mul_f64(0.8));
            }
        }
        Ok(client)
    }

    /// Bounds every later request on this client by `timeout`.
    pub fn with_request_timeout(mut self, timeout: Duration) -> SourceClient {
        self.request_timeout = timeout;
        self
    }

    pub fn addr(&self) -> &str {
        self.conn.addr()
    }

    /// Whether the connection failed or its SASL session is about to end: either way
    /// the next request needs a new connection.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed() || self.retire_at.is_some_and(|at| Instant::now() >= at)
    }

    async fn negotiate(&mut self) -> Result<(), SourceError> {
        let version = our_max_version(ApiKey::ApiVersions);
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("shadowlink"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let corr = self.conn.next_correlation_id();
        let frame = self.encode(ApiKey::ApiVersions, version, corr, &request)?;
        let response = self.conn.round_trip(corr, frame).await?;
        let (_, body) = client::decode_api_versions_response(response, version)
            .map_err(|e| self.decode_error(ApiKey::ApiVersions, e))?;
        if body.error_code != 0 {
            return Err(SourceError::Broker {
                addr: self.addr().to_string(),
                api: ApiKey::ApiVersions,
                code: body.error_code,
            });
        }
        for key in body.api_keys {
            let Ok(api) = ApiKey::try_from(key.api_key) else {
                continue;
            };
            let ours = our_max_version(api);
            let Some(range) = shadowlink_protocol::api::supported_versions(api) else {
                continue;
            };
            let top = ours.min(range.max).min(key.max_version);
            if top >= key.min_version.max(range.min) {
                self.versions.insert(api, top);
            }
        }
        Ok(())
    }

    /// The negotiated version of `api`, or an error naming what the broker lacks.
    pub fn version(&self, api: ApiKey) -> Result<i16, SourceError> {
        self.versions
            .get(&api)
            .copied()
            .ok_or_else(|| SourceError::Unsupported {
                addr: self.addr().to_string(),
                api,
            })
    }

    fn encode<T: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        corr: i32,
        body: &T,
    ) -> Result<Bytes, SourceError> {
        client::encode_request(api, version, corr, &self.client_id, body).map_err(|source| {
            SourceError::Encode {
                api,
                version,
                source,
            }
        })
    }

    fn decode_error(&self, api: ApiKey, source: client::ResponseError) -> SourceError {
        SourceError::Decode {
            addr: self.addr().to_string(),
            api,
            source,
        }
    }

    /// Sends `request` at the negotiated version and decodes the response.
    pub async fn send<Req, Resp>(&self, api: ApiKey, request: &Req) -> Result<Resp, SourceError>
    where
        Req: Encodable + Message,
        Resp: Decodable,
    {
        self.send_waiting(api, request, Duration::ZERO).await
    }

    /// [`send`](Self::send) for a request the broker may hold for `wait` before
    /// answering (a long-polling fetch). Unanswered past the request timeout plus
    /// `wait`, the connection is closed: responses come back in order, so one that is
    /// overdue leaves nothing behind it worth waiting for.
    pub async fn send_waiting<Req, Resp>(
        &self,
        api: ApiKey,
        request: &Req,
        wait: Duration,
    ) -> Result<Resp, SourceError>
    where
        Req: Encodable + Message,
        Resp: Decodable,
    {
        let version = self.version(api)?;
        let corr = self.conn.next_correlation_id();
        let frame = self.encode(api, version, corr, request)?;
        let deadline = self.request_timeout + wait;
        let round_trip = self.conn.round_trip(corr, frame);
        let Ok(response) = tokio::time::timeout(deadline, round_trip).await else {
            self.conn.close();
            return Err(SourceError::Timeout {
                addr: self.addr().to_string(),
            });
        };
        let response = response?;
        let (_, body) = client::decode_response::<Resp>(response, api, version)
            .map_err(|e| self.decode_error(api, e))?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn causes_are_kept_and_messages_read_as_before() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let connect = SourceError::Connect {
            addr: "src:9092".to_string(),
            source: Arc::new(refused),
        };
        let cause = connect
            .source()
            .and_then(|e| e.downcast_ref::<Arc<io::Error>>());
        assert_eq!(
            cause.map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
        let lost = SourceError::ConnectionLost {
            addr: "src:9092".to_string(),
            reason: LostReason::UnknownCorrelationId(7),
        };
        assert_eq!(
            lost.to_string(),
            "connection to src:9092 lost: response for unknown correlation id 7"
        );
        let none = SourceError::NoBroker { last: None };
        assert_eq!(
            none.to_string(),
            "no broker of the source cluster is reachable: no addresses"
        );
        let after = SourceError::NoBroker {
            last: Some(Box::new(connect)),
        };
        assert!(after
            .to_string()
            .ends_with(": cannot connect to src:9092: connection refused"));
        assert!(after.is_unreachable());
        assert_eq!(
            SourceError::UnknownBroker { node_id: 3 }.kind(),
            "no_broker"
        );
    }
}
