//! The librdkafka side: a producer that loads the source, the consume→produce pipeline a
//! user would deploy instead of shadowlink (MirrorMaker 2's shape), and a plain consumer.
//! The pipeline and the consumer run as child processes of the benchmark so that their
//! CPU time is theirs alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Size of each record's value.
pub const VALUE_BYTES: usize = 1024;
/// Distinct values cycled through: about one lz4 batch's worth, so no value repeats
/// within lz4's 64 KiB window and the data compresses about 2:1, as real payloads do.
const DISTINCT_VALUES: usize = 1024;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(600);

/// Counts what the brokers acknowledged: per partition, the offset after the highest
/// acknowledged record, and the number of failed deliveries.
#[derive(Default)]
struct Deliveries {
    ends: Mutex<Vec<i64>>,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
                let p = m.partition() as usize;
                if ends.len() <= p {
                    ends.resize(p + 1, 0);
                }
                ends[p] = ends[p].max(m.offset() + 1);
            }
            Err((e, m)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    let error = format!("{e} (partition {})", m.partition());
                    *self.first_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                }
            }
        }
    }
}

/// A producer tuned for throughput: large lz4 batches, a linger to fill them, a deep queue.
fn producer(bootstrap: &str) -> Result<BaseProducer<Deliveries>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("acks", "all")
        .create_with_context(Deliveries::default())
        .context("creating the librdkafka producer")
}

/// A consumer tuned for throughput: large fetches and a deep prefetch queue.
fn consumer(bootstrap: &str, topic: &str, partitions: usize) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "shadowlink-baseline")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "8388608")
        .set("fetch.wait.max.ms", "100")
        .set("queued.min.messages", "1000000")
        .set("queued.max.messages.kbytes", "1048576")
        .create()
        .context("creating the librdkafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Sends `record`, serving delivery reports while librdkafka's queue is full.
fn send(producer: &BaseProducer<Deliveries>, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e).context("producing"),
        }
    }
}

/// Waits for every acknowledgement; fails if any record was not delivered.
fn finish(producer: &BaseProducer<Deliveries>) -> Result<Vec<i64>> {
    producer
        .flush(FLUSH_TIMEOUT)
        .context("flushing the producer")?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = producer
            .context()
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        bail!("{failed} records were not delivered, the first: {first:?}");
    }
    let ends = producer
        .context()
        .ends
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Ok(ends.clone())
}

/// Produces `records` values of [`VALUE_BYTES`] round-robin over `partitions`; returns
/// each partition's end offset as acknowledged.
pub fn load(bootstrap: &str, topic: &str, partitions: usize, records: u64) -> Result<Vec<i64>> {
    let values = values();
    let producer = producer(bootstrap)?;
    for i in 0..records {
        let value = &values[i as usize % DISTINCT_VALUES];
        let partition = (i % partitions as u64) as i32;
        send(
            &producer,
            BaseRecord::to(topic)
                .partition(partition)
                .payload(&value[..]),
        )?;
    }
    let mut ends = finish(&producer)?;
    ends.resize(partitions, 0);
    Ok(ends)
}

/// Half random, half text: lz4 compresses it about 2:1.
fn values() -> Vec<Vec<u8>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..DISTINCT_VALUES)
        .map(|i| {
            let mut value: Vec<u8> = (0..VALUE_BYTES / 2)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let text = format!("record {i} of the shadowlink baseline benchmark; ");
            value.extend(text.bytes().cycle().take(VALUE_BYTES - value.len()));
            value
        })
        .collect()
}

/// What a child process moved, printed on its last line for the parent.
pub struct Moved {
    pub records: u64,
    pub bytes: u64,
}

/// Reads every partition up to `ends` and hands each record to `each`.
fn drain(
    consumer: &BaseConsumer,
    ends: &[i64],
    mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<()>,
) -> Result<Moved> {
    let mut next = vec![0i64; ends.len()];
    let mut moved = Moved {
        records: 0,
        bytes: 0,
    };
    while next.iter().zip(ends).any(|(n, e)| n < e) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.context("consuming")?;
        let p = message.partition() as usize;
        if p >= next.len() || message.offset() < next[p] {
            continue;
        }
        next[p] = message.offset() + 1;
        moved.records += 1;
        moved.bytes += message.payload_len() as u64;
        each(&message)?;
    }
    Ok(moved)
}

/// The pipeline: consume every partition of `topic` on `from` up to `ends` and produce
/// each record, with its key, value and timestamp, to the same partition on `to`.
pub fn pipeline(from: &str, to: &str, topic: &str, ends: &[i64]) -> Result<Moved> {
    let consumer = consumer(from, topic, ends.len())?;
    let producer = producer(to)?;
    let moved = drain(&consumer, ends, |m| {
        let mut record = BaseRecord::to(topic).partition(m.partition());
        if let Some(value) = m.payload() {
            record = record.payload(value);
        }
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        send(&producer, record)?;
        producer.poll(Duration::ZERO);
        Ok(())
    })?;
    finish(&producer)?;
    Ok(moved)
}

/// A plain consumer reading every partition of `topic` up to `ends`.
pub fn consume(from: &str, topic: &str, ends: &[i64]) -> Result<Moved> {
    let consumer = consumer(from, topic, ends.len())?;
    drain(&consumer, ends, |_| Ok(()))
}
