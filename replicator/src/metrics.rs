//! Prometheus metrics of the node, in one process-wide registry.
//!
//! A process runs one node, so a global registry is the simplest owner; tests that run
//! several nodes start several processes. Counters and histograms are updated where the
//! work happens (fetch loop, writers, the Kafka listener); gauges that describe state
//! (lag, topic state, link state) are recomputed from the status registry at each scrape,
//! so a topic that disappears also disappears from `/metrics`.

use std::sync::{LazyLock, Mutex};

use kafka_protocol::messages::ApiKey;
use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::status::{StatusReport, TopicStateName};

/// Every metric, registered once.
struct Metrics {
    registry: Registry,
    shadow_lag: IntGaugeVec,
    shadow_lag_seconds: GaugeVec,
    shadow_unconfirmed_seconds: GaugeVec,
    shadow_records_at_risk_max: IntGaugeVec,
    sync_progress: GaugeVec,
    topic_state: IntGaugeVec,
    link_connected: IntGaugeVec,
    bytes_fetched: IntCounterVec,
    bytes_written: IntCounterVec,
    records_written: IntCounterVec,
    fetch_errors: IntCounterVec,
    fetch_duration: HistogramVec,
    append_duration: HistogramVec,
    client_connections: IntGauge,
    kafka_requests: IntCounterVec,
    request_bytes_reserved: IntGauge,
    request_bytes_budget: IntGauge,
    sasl_authentications: IntCounterVec,
    fetch_sessions_active: IntGauge,
    fetch_session_requests: IntCounterVec,
    fetch_session_partitions_read: IntCounter,
    fetch_full_partitions_read: IntCounter,
    link_fetch_requests: IntCounterVec,
    verified_bytes: IntCounterVec,
    verify_mismatches: IntCounterVec,
    cleaner_runs: IntCounterVec,
    cleaner_bytes_reclaimed: IntCounterVec,
    compaction_check_bytes: IntCounterVec,
    compaction_segments_replaced: IntCounterVec,
}

/// Kinds of fetch failure that are zero-initialized for every link, so a dashboard or
/// alert sees `0` rather than no series before the first failure.
pub const FETCH_ERROR_KINDS: &[&str] = &[
    "connect",
    "connection_lost",
    "timeout",
    "no_broker",
    "decode",
    "broker_error",
    "unsupported",
    "encode",
    "corrupt_batch",
    "authentication",
];

/// Latency buckets from 0.5 ms to 30 s: fetches long-poll for up to 500 ms, appends
/// take microseconds to tens of milliseconds with fsync.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

fn register<T: Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn int_gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid"),
    )
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(
        r,
        GaugeVec::new(Opts::new(name, help), labels).expect("valid"),
    )
}

fn counters(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid"),
    )
}

fn histograms(r: &Registry, name: &str, help: &str) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    register(r, HistogramVec::new(opts, &["link"]).expect("valid"))
}

const PARTITION: &[&str] = &["link", "topic", "partition"];

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            shadow_lag: int_gauges(&r, "shadowlink_shadow_lag",
                "Records the mirror is behind: source high watermark minus mirror high watermark.",
                PARTITION),
            shadow_lag_seconds: gauges(&r, "shadowlink_shadow_lag_seconds",
                "Seconds since the partition was last confirmed to hold everything committed at the source; 0 while it is (the live RPO).",
                PARTITION),
            shadow_unconfirmed_seconds: gauges(&r, "shadowlink_shadow_unconfirmed_seconds",
                "The blind window: seconds of source writes no fetch response has vouched for, up to now or until the link lost the source.",
                PARTITION),
            shadow_records_at_risk_max: int_gauges(&r, "shadowlink_shadow_records_at_risk_max",
                "Upper estimate of records lost if the source were lost now: known beyond the mirror plus the blind window at the recent peak write rate.",
                PARTITION),
            sync_progress: gauges(&r, "shadowlink_initial_sync_progress_ratio",
                "Share (0..1) of a topic's first sync already copied; absent once the topic caught up.",
                &["link", "topic"]),
            topic_state: int_gauges(&r, "shadowlink_topic_state",
                "1 for the state a mirror topic is in, 0 for the others.",
                &["link", "topic", "state"]),
            link_connected: int_gauges(&r, "shadowlink_link_connected",
                "1 while the link reaches its source cluster.", &["link"]),
            bytes_fetched: counters(&r, "shadowlink_bytes_fetched_total",
                "Record bytes received from source brokers.", &["link"]),
            bytes_written: counters(&r, "shadowlink_bytes_written_total",
                "Record bytes appended to mirror logs.", &["link"]),
            records_written: counters(&r, "shadowlink_records_written_total",
                "Records appended to mirror logs, control records included.", &["link"]),
            fetch_errors: counters(&r, "shadowlink_fetch_errors_total",
                "Failed fetches from the source, by kind or Kafka error name.", &["link", "error"]),
            fetch_duration: histograms(&r, "shadowlink_fetch_duration_seconds",
                "Fetch round trips to source brokers, long-poll wait included."),
            append_duration: histograms(&r, "shadowlink_append_duration_seconds",
                "Time to append one fetched chunk to a mirror log."),
            client_connections: register(&r, IntGauge::new("shadowlink_kafka_client_connections",
                "Open client connections on the Kafka listener.").expect("valid")),
            kafka_requests: counters(&r, "shadowlink_kafka_requests_total",
                "Requests received on the Kafka listener, by API.", &["api"]),
            request_bytes_reserved: register(&r, IntGauge::new("shadowlink_kafka_request_bytes_reserved",
                "Bytes of client request buffers held against the node-wide budget.").expect("valid")),
            request_bytes_budget: register(&r, IntGauge::new("shadowlink_kafka_request_bytes_budget",
                "The node-wide budget for client request buffers (kafka.request_memory_bytes).").expect("valid")),
            sasl_authentications: counters(&r, "shadowlink_sasl_authentications_total",
                "SASL authentications on the Kafka listener, by mechanism (\"none\" for an unsupported one) and result.",
                &["mechanism", "result"]),
            fetch_sessions_active: register(&r, IntGauge::new("shadowlink_fetch_sessions_active",
                "KIP-227 fetch sessions the Kafka listener holds for its clients.").expect("valid")),
            fetch_session_requests: counters(&r, "shadowlink_fetch_session_requests_total",
                "Fetch requests on the Kafka listener: sessionless, full (opening a session) or incremental.",
                &["kind"]),
            fetch_session_partitions_read: register(&r, IntCounter::new("shadowlink_fetch_session_partitions_read_total",
                "Partitions the Kafka listener read to answer incremental fetches; an idle session reads none.").expect("valid")),
            fetch_full_partitions_read: register(&r, IntCounter::new("shadowlink_fetch_full_partitions_read_total",
                "Partitions the Kafka listener read to answer sessionless fetches and those opening a session.").expect("valid")),
            link_fetch_requests: counters(&r, "shadowlink_link_fetch_requests_total",
                "Fetch requests a link sent to its source: full or incremental (KIP-227).",
                &["link", "kind"]),
            verified_bytes: counters(&r, "shadowlink_verified_bytes_total",
                "Stored batch bytes checked: by the background scrubber (their CRC) or by verify (against the source).",
                &["check"]),
            verify_mismatches: counters(&r, "shadowlink_verify_mismatches_total",
                "Stored batches found damaged by the scrubber, or differing from the source in a verify.",
                &["check"]),
            cleaner_runs: counters(&r, "shadowlink_cleaner_runs_total",
                "Compaction passes committed on the node's compacted topics.", &["topic"]),
            cleaner_bytes_reclaimed: counters(&r, "shadowlink_cleaner_bytes_reclaimed_total",
                "Bytes compaction removed from the node's compacted topics.", &["topic"]),
            compaction_check_bytes: counters(&r, "shadowlink_compaction_check_bytes_total",
                "Record bytes re-fetched from the source to find what it compacted.", &["link"]),
            compaction_segments_replaced: counters(&r, "shadowlink_compaction_segments_replaced_total",
                "Mirror segments replaced by the source's compacted batches.", &["link"]),
            registry: r,
        }
    }
}

/// The checks that count verified bytes and mismatches.
const CHECKS: [&str; 2] = ["scrub", "verify"];

/// Declares the verification series, so each reads 0 from the start.
pub fn declare_checks() {
    for check in CHECKS {
        METRICS.verified_bytes.with_label_values(&[check]);
        METRICS.verify_mismatches.with_label_values(&[check]);
    }
}

/// Bytes of stored batches `check` (`scrub` or `verify`) found intact or not.
pub fn verified(check: &str, bytes: u64) {
    METRICS
        .verified_bytes
        .with_label_values(&[check])
        .inc_by(bytes);
}

/// Batches `check` found damaged or different from the source.
pub fn verify_mismatches(check: &str, batches: u64) {
    METRICS
        .verify_mismatches
        .with_label_values(&[check])
        .inc_by(batches);
}

/// Declares a link's series, so they read 0 from the start instead of being absent.
pub fn register_link(link: &str) {
    let m = &*METRICS;
    m.link_connected.with_label_values(&[link]);
    m.bytes_fetched.with_label_values(&[link]);
    m.bytes_written.with_label_values(&[link]);
    m.records_written.with_label_values(&[link]);
    for kind in FETCH_ERROR_KINDS {
        m.fetch_errors.with_label_values(&[link, kind]);
    }
    for kind in ["full", "incremental"] {
        m.link_fetch_requests.with_label_values(&[link, kind]);
    }
}

/// One Fetch request `link` sent: `full` or `incremental`.
pub fn link_fetch_request(link: &str, kind: &str) {
    METRICS
        .link_fetch_requests
        .with_label_values(&[link, kind])
        .inc();
}

/// One committed compaction pass over a partition of `topic`.
pub fn cleaner_pass(topic: &str, bytes_reclaimed: u64) {
    METRICS.cleaner_runs.with_label_values(&[topic]).inc();
    METRICS
        .cleaner_bytes_reclaimed
        .with_label_values(&[topic])
        .inc_by(bytes_reclaimed);
}

/// Record bytes `link` re-fetched to compare with its stored segments.
pub fn compaction_check_bytes(link: &str, bytes: usize) {
    METRICS
        .compaction_check_bytes
        .with_label_values(&[link])
        .inc_by(bytes as u64);
}

/// One mirror segment of `link` replaced by the source's compacted batches.
pub fn compaction_segment_replaced(link: &str) {
    METRICS
        .compaction_segments_replaced
        .with_label_values(&[link])
        .inc();
}

/// Fetch sessions held by the Kafka listener.
pub fn fetch_sessions_active() -> &'static IntGauge {
    &METRICS.fetch_sessions_active
}

/// One Fetch request on the Kafka listener: `sessionless`, `full` or `incremental`.
pub fn fetch_session_request(kind: &str) {
    METRICS
        .fetch_session_requests
        .with_label_values(&[kind])
        .inc();
}

/// `partitions` read for one incremental Fetch of a session.
pub fn fetch_session_partitions_read(partitions: usize) {
    METRICS
        .fetch_session_partitions_read
        .inc_by(partitions as u64);
}

/// `partitions` read for one sessionless Fetch, or one opening a session.
pub fn fetch_full_partitions_read(partitions: usize) {
    METRICS.fetch_full_partitions_read.inc_by(partitions as u64);
}

/// Record bytes received from the source by `link`.
pub fn bytes_fetched(link: &str, bytes: usize) {
    METRICS
        .bytes_fetched
        .with_label_values(&[link])
        .inc_by(bytes as u64);
}

/// One chunk appended to a mirror log of `link`.
pub fn appended(link: &str, bytes: usize, records: u64, seconds: f64) {
    let m = &*METRICS;
    m.bytes_written
        .with_label_values(&[link])
        .inc_by(bytes as u64);
    m.records_written.with_label_values(&[link]).inc_by(records);
    m.append_duration
        .with_label_values(&[link])
        .observe(seconds);
}

/// One Fetch round trip of `link`, successful or not.
pub fn fetch_round_trip(link: &str, seconds: f64) {
    METRICS
        .fetch_duration
        .with_label_values(&[link])
        .observe(seconds);
}

/// One failed fetch; `error` is a kind from [`FETCH_ERROR_KINDS`] or a Kafka error name.
pub fn fetch_error(link: &str, error: &str) {
    METRICS.fetch_errors.with_label_values(&[link, error]).inc();
}

/// Open connections on the Kafka listener.
pub fn client_connections() -> &'static IntGauge {
    &METRICS.client_connections
}

/// Bytes of client request buffers reserved against the budget.
pub fn request_bytes_reserved() -> &'static IntGauge {
    &METRICS.request_bytes_reserved
}

/// The budget client request buffers are reserved against.
pub fn request_budget(bytes: usize) {
    METRICS
        .request_bytes_budget
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// Counts one open Kafka client connection for as long as it lives; dropping it (when
/// the connection task ends, however it ends) uncounts it.
pub struct ClientConnection(());

impl ClientConnection {
    pub fn open() -> ClientConnection {
        METRICS.client_connections.inc();
        ClientConnection(())
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        METRICS.client_connections.dec();
    }
}

/// One SASL authentication on the listener that succeeded or failed.
pub fn sasl_authentication(mechanism: Option<crate::sasl::Mechanism>, success: bool) {
    let mechanism = mechanism.map_or("none", |m| m.name());
    let result = if success { "success" } else { "failure" };
    METRICS
        .sasl_authentications
        .with_label_values(&[mechanism, result])
        .inc();
}

/// Declares the SASL series of the listener's mechanisms, so each reads 0 from the start.
pub fn declare_sasl(mechanisms: &[crate::sasl::Mechanism]) {
    for mechanism in mechanisms {
        for result in ["success", "failure"] {
            METRICS
                .sasl_authentications
                .with_label_values(&[mechanism.name(), result]);
        }
    }
}

/// The request counter of `api` (an `ApiKey`'s name, as `format!("{api:?}")` writes it).
pub fn kafka_requests(api: &str) -> IntCounter {
    METRICS.kafka_requests.with_label_values(&[api])
}

/// Counts one request received on the Kafka listener.
pub fn count_kafka_request(api: ApiKey) {
    kafka_requests(&format!("{api:?}")).inc();
}

/// Declares the request counter of each of `apis` (the listener's table of served
/// APIs), so each reads 0 from the start instead of being absent.
pub fn declare_kafka_apis(apis: impl IntoIterator<Item = ApiKey>) {
    for api in apis {
        kafka_requests(&format!("{api:?}"));
    }
}

/// The `api` label of every request counter declared or counted so far.
#[cfg(test)]
pub(crate) fn kafka_request_series() -> std::collections::BTreeSet<String> {
    let families = METRICS.kafka_requests.collect();
    let metrics = families.iter().flat_map(|family| family.get_metric());
    let labels = metrics.flat_map(|metric| metric.get_label());
    labels.map(|label| label.value().to_string()).collect()
}

/// Replaces every state gauge with what `report` says.
fn apply_report(report: &StatusReport) {
    let m = &*METRICS;
    m.shadow_lag.reset();
    m.shadow_lag_seconds.reset();
    m.shadow_unconfirmed_seconds.reset();
    m.shadow_records_at_risk_max.reset();
    m.sync_progress.reset();
    m.topic_state.reset();
    for link in &report.links {
        m.link_connected
            .with_label_values(&[link.name.as_str()])
            .set(i64::from(link.state == "connected"));
        for topic in &link.topics {
            for state in TopicStateName::ALL {
                let on = topic.state == state.as_str();
                m.topic_state
                    .with_label_values(&[&link.name, &topic.name, state.as_str()])
                    .set(i64::from(on));
            }
            if let Some(sync) = &topic.sync {
                m.sync_progress
                    .with_label_values(&[&link.name, &topic.name])
                    .set(sync.percent / 100.0);
            }
            for p in &topic.partitions {
                let labels = [&link.name, &topic.name, &p.partition.to_string()];
                let labels = labels.map(|s| s.as_str());
                if let Some(lag) = p.lag {
                    m.shadow_lag.with_label_values(&labels).set(lag);
                }
                if let Some(seconds) = p.lag_seconds {
                    m.shadow_lag_seconds.with_label_values(&labels).set(seconds);
                }
                if let Some(u) = p.unconfirmed {
                    m.shadow_unconfirmed_seconds
                        .with_label_values(&labels)
                        .set(u.seconds);
                }
                if let Some(max) = p.records_at_risk_max() {
                    m.shadow_records_at_risk_max
                        .with_label_values(&labels)
                        .set(max);
                }
            }
        }
    }
}

/// The text exposition of every metric, state gauges refreshed from `report`.
pub fn render(report: &StatusReport) -> String {
    // Two scrapes at once must not interleave one's reset with the other's gather.
    static RENDER: Mutex<()> = Mutex::new(());
    let _one_at_a_time = RENDER.lock().unwrap_or_else(|p| p.into_inner());
    apply_report(report);
    let mut out = Vec::new();
    let families = METRICS.registry.gather();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_metrics_count_connections_and_requests_by_api() {
        let before = client_connections().get();
        let connection = ClientConnection::open();
        assert_eq!(client_connections().get(), before + 1);
        drop(connection);
        assert_eq!(client_connections().get(), before);
        let fetches = kafka_requests("Fetch").get();
        count_kafka_request(ApiKey::Fetch);
        assert_eq!(kafka_requests("Fetch").get(), fetches + 1);
        declare_kafka_apis([ApiKey::JoinGroup]);
        let empty = StatusReport {
            kafka: String::new(),
            listeners: vec![],
            uptime_seconds: 0,
            ready: true,
            not_ready: vec![],
            links: vec![],
            offline: vec![],
            producer_ids_error: None,
            scrub: None,
            compaction: vec![],
        };
        let text = render(&empty);
        assert!(
            text.contains("shadowlink_kafka_requests_total{api=\"JoinGroup\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE shadowlink_kafka_client_connections gauge"),
            "{text}"
        );
    }
}
