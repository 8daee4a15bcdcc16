//! A small blocking Kafka client for tests: admin calls and raw record-batch reads, so a
//! test sees exactly the bytes a broker serves.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, FetchResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use shadowlink_protocol::batch::BatchWalker;
use shadowlink_protocol::client::{decode_api_versions_response, decode_response, encode_request};

/// A blocking byte stream: plain TCP or TLS over TCP.
trait Wire: Read + Write + Send {}
impl<T: Read + Write + Send> Wire for T {}

/// One blocking connection with negotiated versions.
pub struct RawClient {
    stream: Box<dyn Wire>,
    correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Result<RawClient> {
        Self::negotiate(Box::new(tcp(addr)?))
    }

    /// Connects over TLS, trusting the PEM CA at `ca` and checking the certificate
    /// names `addr`'s IP address.
    pub fn connect_tls(addr: SocketAddr, ca: &Path) -> Result<RawClient> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = ClientConnection::new(Arc::new(config), ServerName::from(addr.ip()))?;
        Self::negotiate(Box::new(StreamOwned::new(tls, tcp(addr)?)))
    }

    fn negotiate(stream: Box<dyn Wire>) -> Result<RawClient> {
        let mut client = RawClient {
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
        };
        let frame = client.round_trip(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())?;
        let (_, response) = decode_api_versions_response(frame, 3)?;
        for k in response.api_keys {
            client
                .versions
                .insert(k.api_key, (k.min_version, k.max_version));
        }
        Ok(client)
    }

    /// The highest version of `api` both the broker and `ours_max` allow.
    pub fn version(&self, api: ApiKey, ours_max: i16) -> Result<i16> {
        let (min, max) = self
            .versions
            .get(&(api as i16))
            .copied()
            .with_context(|| format!("the broker does not offer {api:?}"))?;
        let v = max.min(ours_max);
        if v < min {
            bail!("no common version of {api:?}");
        }
        Ok(v)
    }

    fn round_trip<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) -> Result<Bytes> {
        self.correlation_id += 1;
        let frame = encode_request(api, version, self.correlation_id, "shadowlink-tests", body)?;
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Sends `request` and decodes the response at the same version.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp> {
        let frame = self.round_trip(api, version, request)?;
        let (_, response) = decode_response(frame, api, version)?;
        Ok(response)
    }

    /// Authenticates with SASL/PLAIN through SaslHandshake v1 and SaslAuthenticate.
    pub fn authenticate_plain(&mut self, user: &str, password: &str) -> Result<()> {
        use kafka_protocol::messages::{
            SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
            SaslHandshakeResponse,
        };
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let response: SaslHandshakeResponse = self.call(ApiKey::SaslHandshake, 1, &handshake)?;
        if response.error_code != 0 {
            bail!("SaslHandshake PLAIN: error {}", response.error_code);
        }
        let token = Bytes::from(format!("\0{user}\0{password}"));
        let request = SaslAuthenticateRequest::default().with_auth_bytes(token);
        let response: SaslAuthenticateResponse =
            self.call(ApiKey::SaslAuthenticate, 1, &request)?;
        if response.error_code != 0 {
            bail!(
                "SaslAuthenticate: error {} {:?}",
                response.error_code,
                response.error_message
            );
        }
        Ok(())
    }

    /// Sends a bare size-prefixed SASL token, as after a SaslHandshake v0, and reads the
    /// bare answer.
    pub fn raw_token(&mut self, token: &[u8]) -> Result<Bytes> {
        let mut frame = (token.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(token);
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Reads a partition from `from` to its end as the broker serves it: a list of
    /// (base offset, complete batch bytes).
    pub fn read_batches(
        &mut self,
        topic: &str,
        partition: i32,
        from: i64,
    ) -> Result<Vec<(i64, Bytes)>> {
        let version = self.version(ApiKey::Fetch, 12)?;
        let mut out: Vec<(i64, Bytes)> = Vec::new();
        let mut offset = from;
        loop {
            let request = fetch_request(topic, partition, offset);
            let response: FetchResponse = self.call(ApiKey::Fetch, version, &request)?;
            let p = response
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .context("empty fetch response")?;
            if p.error_code != 0 {
                bail!(
                    "fetch {topic}-{partition} at {offset}: error {}",
                    p.error_code
                );
            }
            let records = p.records.clone().unwrap_or_default();
            let before = out.len();
            for batch in BatchWalker::new(records) {
                let batch = batch?;
                if batch.last_offset() >= offset {
                    offset = batch.next_offset();
                    out.push((batch.base_offset(), batch.into_bytes()));
                }
            }
            if out.len() == before {
                return Ok(out);
            }
        }
    }
}

impl RawClient {
    /// OffsetForLeaderEpoch v2 for one partition: (error code, epoch, end offset).
    pub fn end_of_epoch(
        &mut self,
        topic: &str,
        partition: i32,
        current: i32,
        epoch: i32,
    ) -> Result<(i16, i32, i64)> {
        use kafka_protocol::messages::offset_for_leader_epoch_request::{
            OffsetForLeaderPartition, OffsetForLeaderTopic,
        };
        use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
        let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)]),
        ]);
        let response: OffsetForLeaderEpochResponse =
            self.call(ApiKey::OffsetForLeaderEpoch, 2, &request)?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("empty OffsetForLeaderEpoch response")?;
        Ok((p.error_code, p.leader_epoch, p.end_offset))
    }

    /// Produce v9 of one complete batch with acks=all: (error code, base offset).
    pub fn produce(&mut self, topic: &str, partition: i32, batch: Bytes) -> Result<(i16, i64)> {
        let answer = self.produce_answer(topic, partition, batch)?;
        Ok((answer.error_code, answer.base_offset))
    }

    /// Produce v9 of one complete batch with acks=all: the partition's whole answer.
    pub fn produce_answer(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> Result<kafka_protocol::messages::produce_response::PartitionProduceResponse> {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let response: ProduceResponse = self.call(ApiKey::Produce, 9, &request)?;
        response
            .responses
            .into_iter()
            .next()
            .and_then(|t| t.partition_responses.into_iter().next())
            .context("empty Produce response")
    }

    /// ListOffsets for one partition: -2 earliest, -1 latest, or a timestamp.
    pub fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> Result<i64> {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
        let version = self.version(ApiKey::ListOffsets, 7)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let response: ListOffsetsResponse = self.call(ApiKey::ListOffsets, version, &request)?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("empty ListOffsets response")?;
        if p.error_code != 0 {
            bail!("ListOffsets {topic}-{partition}: error {}", p.error_code);
        }
        Ok(p.offset)
    }
}

fn tcp(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

fn fetch_request(topic: &str, partition: i32, offset: i64) -> FetchRequest {
    let partition = FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        // Large enough for any batch a test writes: a partial batch reads as the end.
        .with_partition_max_bytes(16 * 1024 * 1024);
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(64 * 1024 * 1024)
        .with_isolation_level(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![partition])])
}
