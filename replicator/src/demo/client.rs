//! A tiny Kafka client for the demo: Produce one batch to one partition, Fetch one
//! partition, both at the versions negotiated by [`SourceClient`].

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use shadowlink::source::SourceClient;

/// One record read back: its offset and key (the demo's producers write each record's
/// unique name as both key and value).
pub type Read = (i64, Bytes);

/// A connection to one node.
pub struct DemoClient {
    inner: SourceClient,
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

impl DemoClient {
    pub async fn connect(addr: &str, client_id: &str) -> anyhow::Result<DemoClient> {
        let inner = SourceClient::connect(addr, client_id, None, None)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        Ok(DemoClient { inner })
    }

    /// Writes `keys` as one batch, each record's value its key (acks=all, no
    /// idempotence); returns the base offset the node assigned.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        keys: &[Bytes],
    ) -> anyhow::Result<i64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Sequences 0, 1, 2… keep the encoder from cutting one batch per record.
        let records: Vec<Record> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: now,
                key: Some(key.clone()),
                value: Some(key.clone()),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options)
            .map_err(|e| anyhow!("cannot encode a batch: {e}"))?;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(buf.freeze()))])]);
        let response: ProduceResponse = self.inner.send(ApiKey::Produce, &request).await?;
        let answer = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| anyhow!("{topic}-{partition}: empty produce response"))?;
        if answer.error_code != 0 {
            bail!(
                "{topic}-{partition}: produce refused with error code {}",
                answer.error_code
            );
        }
        Ok(answer.base_offset)
    }

    /// Reads records of one partition from `offset`; returns them and the high watermark.
    /// An unknown topic (a shadow not created yet) reads as empty.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> anyhow::Result<(Vec<Read>, i64)> {
        let fetched = fetch_partition(&self.inner, topic, partition, offset).await?;
        match fetched.error_code {
            0 => Ok((fetched.records, fetched.high_watermark)),
            // UNKNOWN_TOPIC_OR_PARTITION (3): a shadow topic not yet created.
            3 => Ok((Vec::new(), 0)),
            code => bail!("{topic}-{partition}: fetch answered error code {code}"),
        }
    }

    /// Every record of a partition from offset 0 up to its high watermark.
    pub async fn read_all(&self, topic: &str, partition: i32) -> anyhow::Result<Vec<Read>> {
        let mut out: Vec<Read> = Vec::new();
        loop {
            let next = out.last().map_or(0, |(o, _)| o + 1);
            let (records, hwm) = self.fetch(topic, partition, next).await?;
            if records.is_empty() {
                if next >= hwm {
                    return Ok(out);
                }
                bail!("{topic}-{partition}: no record at {next} below the high watermark {hwm}");
            }
            out.extend(records);
        }
    }
}

/// What a Fetch of one partition answered: its error code, and the records and high
/// watermark when there is none.
pub struct Fetched {
    pub error_code: i16,
    pub records: Vec<Read>,
    pub high_watermark: i64,
}

/// One Fetch of one partition from `offset` over `client`.
pub async fn fetch_partition(
    client: &SourceClient,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Fetched> {
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(50)
        .with_min_bytes(1)
        .with_max_bytes(8 * 1024 * 1024)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(4 * 1024 * 1024)])]);
    let response: FetchResponse = client.send(ApiKey::Fetch, &request).await?;
    let Some(data) = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
    else {
        bail!("{topic}-{partition}: empty fetch response");
    };
    let records = match (&data.records, data.error_code) {
        (Some(bytes), 0) => decode_batches(bytes.clone(), offset)?,
        _ => Vec::new(),
    };
    Ok(Fetched {
        error_code: data.error_code,
        records,
        high_watermark: data.high_watermark,
    })
}

/// Splits raw record batches (ignoring a truncated trailing one) and returns the records
/// at or above `from`.
pub fn decode_batches(mut raw: Bytes, from: i64) -> anyhow::Result<Vec<Read>> {
    let mut out = Vec::new();
    while raw.len() >= 12 {
        let length = i32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let total = 12 + usize::try_from(length).context("negative batch length")?;
        if raw.len() < total {
            break;
        }
        let mut batch = raw.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| anyhow!("cannot decode a record batch: {e}"))?;
        for record in set.records {
            if record.offset >= from && !record.control {
                out.push((record.offset, record.key.unwrap_or_default()));
            }
        }
    }
    Ok(out)
}
