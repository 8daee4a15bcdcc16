//! Unchanged Kafka clients follow a switchover: an application that knows only the old
//! owner's address keeps producing and consuming while its topic moves to the other node
//! of the pair, and sees no error, no duplicate and no gap. The old owner's Metadata
//! names the new owner leader once it really owns the topic, never a mere mirror, and a
//! link never fetches from its own node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_tests::fake::{FakeBroker, FakeLog, FakeTopics, FAKE_NODE};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::wait_identical;
use shadowlink_tests::{
    check_config, eventually, free_port, status_json, topic_state, Client, Link, Node, NodeConfig,
};

const PARTITIONS: i32 = 2;

/// Tests that run a pair under client load take turns: two such pairs at once on a small
/// machine slow the links enough to stretch every wait.
static ONE_PAIR_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_pair_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_PAIR_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Node `a` (broker 1) owns `a_*` topics and mirrors `b_*` from B; node `b` (broker 2)
/// the reverse.
struct Pair {
    a: Node,
    b: Node,
}

fn node_config(id: i32, port: u16, owns: &[&str], link_from: &str, peer: SocketAddr) -> NodeConfig {
    let mut config = NodeConfig::owner()
        .node_id(id)
        .listen(format!("127.0.0.1:{port}"))
        .admin();
    for topic in owns {
        config = config.topic(topic, PARTITIONS);
    }
    config.add_link(
        Link::new(&format!("from-{link_from}"), peer)
            .include(&[&format!("{link_from}_*")])
            .metadata_interval(Duration::from_millis(300)),
    )
}

fn start_pair(a_owns: &[&str]) -> Result<Pair> {
    let (port_a, port_b) = (free_port(), free_port());
    let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    let a = Node::start(&node_config(1, port_a, a_owns, "b", addr(port_b)))?;
    let b = Node::start(&node_config(2, port_b, &["b_payments"], "a", addr(port_a)))?;
    for topic in a_owns {
        eventually(Duration::from_secs(30), || {
            Ok((topic_state(&b, topic)?.as_deref() == Some("active")).then_some(()))
        })
        .with_context(|| format!("B never mirrored {topic}"))?;
    }
    Ok(Pair { a, b })
}

/// Runs `shadowlink switchover` of `topics` from `from` to `to`; per (topic, partition),
/// the offset and epoch producers continue at on the new owner.
fn switchover(
    (from, from_link): (&Node, &str),
    (to, to_link): (&Node, &str),
    topics: &[&str],
) -> Result<BTreeMap<(String, i32), (i64, i32)>> {
    let report = shadowlink_tests::switchover((from, from_link), (to, to_link), topics)?;
    ensure!(report.contains("records at risk: 0"), "{report}");
    let mut taken = BTreeMap::new();
    for line in report.lines() {
        // TOPIC PARTITION STATE LOG_END NEW_EPOCH RECORDS_AT_RISK
        let row: Vec<&str> = line.split_whitespace().collect();
        if row.get(2) == Some(&"switched_over") {
            let key = (row[0].to_string(), row[1].parse()?);
            taken.insert(key, (row[3].parse()?, row[4].parse()?));
        }
    }
    ensure!(
        taken.len() == topics.len() * PARTITIONS as usize,
        "{report}"
    );
    Ok(taken)
}

/// Brokers as (id, host:port), and each partition's (leader, epoch).
type Leaders = (Vec<(i32, String)>, Vec<(i32, i32)>);

/// Metadata v12 for `topic` from `node`: the brokers as (id, host:port) and each
/// partition's (leader, epoch).
fn leaders(node: SocketAddr, topic: &str) -> Result<Leaders> {
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    let response: MetadataResponse =
        RawClient::connect(node)?.call(ApiKey::Metadata, 12, &request)?;
    let brokers = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let t = response.topics.first().context("no topic in Metadata")?;
    ensure!(t.error_code == 0, "{topic}: error {}", t.error_code);
    let mut partitions: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.leader_id.0, p.leader_epoch))
        .collect();
    partitions.sort();
    Ok((brokers, partitions))
}

/// The offsets `group` committed on `node` for `topic`, by partition.
fn committed(node: SocketAddr, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>> {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};

    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_indexes((0..PARTITIONS).collect())]));
    let response: OffsetFetchResponse =
        RawClient::connect(node)?.call(ApiKey::OffsetFetch, 7, &request)?;
    ensure!(
        response.error_code == 0,
        "{group}: error {}",
        response.error_code
    );
    Ok(response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.committed_offset))
        .collect())
}

/// One client script run in the background: the application.
struct App {
    child: Child,
    what: &'static str,
}

impl App {
    fn start(client: Client, bootstrap: SocketAddr, topic: &str, seconds: u32) -> Result<App> {
        let (bootstrap, seconds, partitions) = (
            bootstrap.to_string(),
            seconds.to_string(),
            PARTITIONS.to_string(),
        );
        let group = format!("{topic}-readers");
        let (script, args, what) = match client {
            Client::Python => (
                "follow_switchover.py",
                vec![
                    bootstrap.as_str(),
                    topic,
                    &group,
                    "--rate",
                    "100",
                    "--seconds",
                    &seconds,
                    "--partitions",
                    &partitions,
                ],
                "confluent-kafka",
            ),
            Client::Node => (
                "follow_switchover.js",
                vec![
                    bootstrap.as_str(),
                    topic,
                    &group,
                    "100",
                    &seconds,
                    &partitions,
                ],
                "kafkajs",
            ),
        };
        let child = client
            .command(script, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(App { child, what })
    }

    /// What the application printed, once it finished.
    fn finish(self) -> Result<Value> {
        let out = self.child.wait_with_output()?;
        let printed = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "{} logged: {}",
            self.what,
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            out.status.success(),
            "{}: {printed}{}",
            self.what,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&printed).with_context(|| format!("{}: {printed}", self.what))
    }
}

/// (partition, offset, key) rows of one list in an application's output.
fn rows(out: &Value, list: &str) -> Result<Vec<(i32, i64, String)>> {
    let rows = out[list].as_array().with_context(|| list.to_string())?;
    rows.iter()
        .map(|r| {
            let partition = r[0].as_i64().context("partition")? as i32;
            let offset = r[1].as_i64().context("offset")?;
            let key = r[2].as_str().context("key")?.to_string();
            Ok((partition, offset, key))
        })
        .collect()
}

/// No error reached the application; every acknowledged record was consumed exactly once,
/// in offset order, with contiguous offsets from 0 in each partition.
fn check_application(what: &str, out: &Value) -> Result<Vec<(i32, i64, String)>> {
    for list in ["delivery_errors", "consume_errors"] {
        ensure!(
            out[list].as_array().is_some_and(|e| e.is_empty()),
            "{what}: {list} {}; client log: {}",
            out[list],
            out["client_errors"]
        );
    }
    let acked = rows(out, "acked")?;
    let consumed = rows(out, "consumed")?;
    let keys: BTreeSet<&String> = acked.iter().map(|(_, _, k)| k).collect();
    ensure!(
        keys.len() == acked.len(),
        "{what}: a key acknowledged twice"
    );
    let mut by_partition: BTreeMap<i32, Vec<(i64, &String)>> = BTreeMap::new();
    for (p, offset, key) in &consumed {
        by_partition.entry(*p).or_default().push((*offset, key));
    }
    for (p, read) in &by_partition {
        for (i, (offset, key)) in read.iter().enumerate() {
            ensure!(
                *offset == i as i64,
                "{what}: partition {p} read offset {offset} ({key}) where {i} was next"
            );
        }
    }
    let mut acked_sorted = acked.clone();
    acked_sorted.sort();
    let mut consumed_sorted = consumed.clone();
    consumed_sorted.sort();
    ensure!(
        acked_sorted == consumed_sorted,
        "{what}: {} acknowledged, {} consumed; client log: {}",
        acked.len(),
        consumed.len(),
        out["client_errors"]
    );
    Ok(acked)
}

/// Every batch `node` holds in `topic`-`partition` from `from` on is in `epoch`.
fn written_in_epoch(node: &Node, topic: &str, partition: i32, from: i64, epoch: i32) -> Result<()> {
    let batches = RawClient::connect(node.kafka)?.read_batches(topic, partition, from)?;
    ensure!(
        !batches.is_empty(),
        "{topic}-{partition}: nothing from {from}"
    );
    for (offset, bytes) in batches {
        let batch = RecordBatch::parse(bytes)?;
        ensure!(
            batch.partition_leader_epoch() == epoch,
            "{topic}-{partition} at {offset}: epoch {} where the owner writes {epoch}",
            batch.partition_leader_epoch()
        );
    }
    Ok(())
}

#[test]
fn unchanged_clients_keep_producing_and_consuming_across_a_switchover() -> Result<()> {
    let _serial = one_pair_at_a_time();
    let topics = ["a_orders", "a_events"];
    let Pair { a, b } = start_pair(&topics)?;

    // Each application writes and reads through A throughout, knowing nothing of B.
    let confluent = App::start(Client::Python, a.kafka, "a_orders", 10)?;
    let kafkajs = App::start(Client::Node, a.kafka, "a_events", 10)?;
    for topic in topics {
        eventually(Duration::from_secs(30), || {
            let log_end = RawClient::connect(a.kafka)?.list_offset(topic, 1, -1)?;
            Ok((log_end > 50).then_some(()))
        })
        .with_context(|| format!("no records reached {topic} on A"))?;
    }
    let taken = switchover((&a, "from-b"), (&b, "from-a"), &topics)?;
    for (app, topic) in [(confluent, "a_orders"), (kafkajs, "a_events")] {
        let what = app.what;
        let out = app.finish()?;
        let acked = check_application(what, &out)?;
        // Records acknowledged after the switchover were written by B, as the owner.
        for p in 0..PARTITIONS {
            let (next, epoch) = taken[&(topic.to_string(), p)];
            let after = acked
                .iter()
                .filter(|(q, o, _)| *q == p && *o >= next)
                .count();
            ensure!(
                after > 0,
                "{what}: nothing acknowledged on {topic}-{p} after the switchover"
            );
            written_in_epoch(&b, topic, p, next, epoch)?;
        }
        wait_identical(b.kafka, a.kafka, topic, PARTITIONS)?;
        eprintln!("{what} reported: {}", out["client_errors"]);
        // The group committed every record where it started, on A.
        let group = format!("{topic}-readers");
        let committed = committed(a.kafka, &group, topic)?;
        for p in 0..PARTITIONS {
            let log_end = RawClient::connect(b.kafka)?.list_offset(topic, p, -1)?;
            ensure!(
                committed.get(&p) == Some(&log_end),
                "{what}: {group} committed {committed:?} on A, log end of {topic}-{p} {log_end}"
            );
        }
    }
    // A names B, at B's address, leader of what B owns now.
    let (brokers, partitions) = leaders(a.kafka, "a_orders")?;
    ensure!(brokers.contains(&(2, b.kafka.to_string())), "{brokers:?}");
    ensure!(
        partitions.iter().all(|(leader, _)| *leader == 2),
        "{partitions:?}"
    );
    Ok(())
}

/// Produces one batch to `topic`-0 with Produce v9: the error code and message.
fn raw_produce(node: SocketAddr, topic: &str) -> Result<(i16, String)> {
    let records = BatchBuilder::new(0)
        .records(&[(Some(&b"k"[..]), Some(&b"v"[..]))])
        .build();
    let p = RawClient::connect(node)?.produce_answer(topic, 0, records)?;
    let message = p.error_message.as_ref().map(|m| m.to_string());
    Ok((p.error_code, message.unwrap_or_default()))
}

/// A POST of a JSON body to a node's admin listener: status and body.
fn post(node: &Node, path: &str, body: &str) -> Result<(u16, String)> {
    shadowlink_tests::http_post(node.admin.context("admin listener")?, path, body)
}

#[test]
fn a_node_that_demoted_its_copy_never_names_a_mere_mirror_leader() -> Result<()> {
    let _serial = one_pair_at_a_time();
    let Pair { a, b } = start_pair(&["a_orders"])?;
    ensure!(raw_produce(a.kafka, "a_orders")?.0 == 0);
    eventually(Duration::from_secs(30), || {
        let mirrored = RawClient::connect(b.kafka)?.list_offset("a_orders", 0, -1)?;
        Ok((mirrored == 1).then_some(()))
    })?;

    // A started before B: its link to B retries until B listens. Only a connected link
    // sees who leads at B, which is what A's answers below are made of.
    eventually(Duration::from_secs(30), || {
        let link = &status_json(&a)?["links"][0];
        Ok((link["state"] == "connected").then_some(()))
    })?;

    // A hands a_orders over without B ever taking it: both hold it as a shadow of the
    // other, and B's Metadata names B, as a mirror's does, in the epoch it copied.
    let topics = r#"{"topics":["a_orders"]}"#;
    let (code, body) = post(&a, "/v1/switchover/release", topics)?;
    ensure!(code == 200, "release: {code} {body}");
    let (code, body) = post(&a, "/v1/links/from-b/switchover/demote", topics)?;
    ensure!(code == 200, "demote: {code} {body}");
    ensure!(
        topic_state(&a, "a_orders")?.is_some(),
        "A does not follow B"
    );

    // Across several of A's link refreshes, A keeps naming itself: B does not own it.
    // Producers are told to retry, as while a new owner is on its way.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        let (brokers, partitions) = leaders(a.kafka, "a_orders")?;
        ensure!(brokers == [(1, a.kafka.to_string())], "{brokers:?}");
        ensure!(
            partitions.iter().all(|(leader, _)| *leader == 1),
            "{partitions:?}"
        );
        let (code, message) = raw_produce(a.kafka, "a_orders")?;
        ensure!(
            code == 6 && message.contains("not yet seen leading it"),
            "{code}: {message}"
        );
    }
    let status = status_json(&b)?;
    let errors: Vec<&Value> = status["links"][0]["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["partitions"].as_array().into_iter().flatten())
        .filter(|p| !p["last_error"].is_null())
        .collect();
    ensure!(errors.is_empty(), "B's link: {errors:?}");
    Ok(())
}

#[test]
fn a_link_never_fetches_from_a_source_broker_that_is_its_own_node() -> Result<()> {
    let batch = BatchBuilder::new(0)
        .leader_epoch(0)
        .records(&[(None, Some(&b"v"[..]))])
        .build();
    let log = FakeLog {
        batches: vec![batch],
        ..FakeLog::default()
    };
    let fake = FakeBroker::start(FakeTopics::from([("a_orders".to_string(), vec![log])]))?;
    // The node advertises itself as the fake's broker: same id, same address. Its link
    // must take that broker for itself and not fetch.
    let config = NodeConfig::linked_to(fake.addr)
        .node_id(FAKE_NODE)
        .advertised(fake.addr)
        .admin();
    let node = Node::start(&config)?;
    let mut status = Value::Null;
    let error = eventually(Duration::from_secs(30), || {
        status = status_json(&node)?;
        let partition = &status["links"][0]["topics"][0]["partitions"][0];
        Ok(partition["last_error"].as_str().map(str::to_string))
    })
    .with_context(|| format!("no error in the status: {status}"))?;
    ensure!(
        error.contains(&format!(
            "the source names this node (broker {FAKE_NODE} at {})",
            fake.addr
        )) && error.contains("a link never fetches from its own node"),
        "{error}"
    );
    // Still nothing fetched after several refreshes.
    std::thread::sleep(Duration::from_secs(1));
    ensure!(RawClient::connect(node.kafka)?.list_offset("a_orders", 0, -1)? == 0);
    Ok(())
}

#[test]
fn node_id_names_the_node_in_metadata_and_find_coordinator() -> Result<()> {
    let node = Node::start(&NodeConfig::owner().node_id(5).topic("a_orders", 1))?;
    let (brokers, partitions) = leaders(node.kafka, "a_orders")?;
    ensure!(brokers == [(5, node.kafka.to_string())], "{brokers:?}");
    ensure!(partitions == [(5, 0)], "{partitions:?}");
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_key(StrBytes::from_static_str("readers"));
    let found: FindCoordinatorResponse =
        RawClient::connect(node.kafka)?.call(ApiKey::FindCoordinator, 3, &request)?;
    ensure!(found.error_code == 0 && found.node_id.0 == 5, "{found:?}");
    ensure!(found.port == i32::from(node.kafka.port()));

    let refused =
        check_config("data_dir = \"/tmp/x\"\nnode_id = -1\n[kafka]\nlisten = \"127.0.0.1:0\"\n")?;
    ensure!(!refused.success(), "{refused:?}");
    ensure!(refused.stderr.contains("node_id"), "{}", refused.stderr);
    Ok(())
}
