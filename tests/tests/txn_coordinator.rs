//! The transaction coordinator of owned topics, seen by real clients: transactional
//! producers commit, abort and hang; zombies are fenced; read_committed consumers of the
//! node and of a mirror of it see exactly what was committed.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse, GroupId,
    InitProducerIdRequest, InitProducerIdResponse, OffsetFetchRequest, OffsetFetchResponse,
    TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_protocol::batch::{ControlType, RecordBatch};
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{consume_isolation, wait_identical};
use shadowlink_tests::{free_port, node_js, python, shadowlink, until, Client, Node, NodeConfig};

/// Every batch of partition 0, as stored.
fn batches(node: &Node, topic: &str) -> Result<Vec<RecordBatch>> {
    RawClient::connect(node.kafka)?
        .read_batches(topic, 0, 0)?
        .into_iter()
        .map(|(_, bytes)| Ok(RecordBatch::parse(bytes)?))
        .collect()
}

/// The log end offset of partition 0.
fn log_end(node: &Node, topic: &str) -> Result<i64> {
    Ok(batches(node, topic)?
        .last()
        .map_or(0, RecordBatch::next_offset))
}

/// The control type of every marker of partition 0, in offset order.
fn markers(node: &Node, topic: &str) -> Result<Vec<Option<ControlType>>> {
    Ok(batches(node, topic)?
        .iter()
        .filter(|b| b.is_control())
        .map(RecordBatch::control_type)
        .collect())
}

/// Values read from partition 0 by `client` (confluent or kafka-python) at `isolation`
/// until its position reaches `end`.
fn read_py(
    node: &Node,
    topic: &str,
    end: i64,
    client: &str,
    isolation: &str,
) -> Result<Vec<String>> {
    let read = consume_isolation(node, topic, end, client, isolation)?;
    Ok(read.into_iter().map(|(_, value)| value).collect())
}

/// Values kcat reads from partition 0 at read_committed, up to the end it sees.
fn read_kcat(node: &Node, topic: &str) -> Result<Vec<String>> {
    let out = Command::new("timeout")
        .args([
            "60",
            "kcat",
            "-C",
            "-b",
            &node.kafka.to_string(),
            "-t",
            topic,
        ])
        .args(["-p", "0", "-o", "beginning", "-e", "-q", "-f", "%s\\n"])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .context("kcat runs")?;
    if !out.status.success() {
        bail!("kcat failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Values kafkajs reads at read_committed (`readUncommitted: false`) in a new group,
/// once it has `expected` of them.
fn read_kafkajs(node: &Node, topic: &str, expected: usize, group: &str) -> Result<Vec<String>> {
    let out = node_js(
        "consume.js",
        &[&node.kafka.to_string(), topic, &expected.to_string(), group],
    )?;
    out.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line)?;
            let hex = record["value"].as_str().context("value")?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?;
            Ok(String::from_utf8(bytes)?)
        })
        .collect()
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn committed_aborted_and_abandoned_transactions_read_exactly_on_the_node_and_its_mirror(
) -> Result<()> {
    let topic = "a_txn";
    let a = Node::start(&NodeConfig::owner().topic(topic, 1))?;
    let b = Node::start(&NodeConfig::linked_to(a.kafka))?;
    let (aborted, committed, open) = (5, 7, 4);
    let out = python(
        "txn_produce.py",
        &[
            &a.kafka.to_string(),
            topic,
            "--id",
            "orders-tx",
            "--timeout-ms",
            "3000",
            "--abort",
            &aborted.to_string(),
            "--commit",
            &committed.to_string(),
            "--open",
            &open.to_string(),
        ],
    )?;
    assert_eq!(out.trim(), "done");
    // The abandoned transaction is aborted by its timeout: every record and one marker
    // per transaction.
    let end = (aborted + committed + open + 3) as i64;
    until(
        Duration::from_secs(30),
        || log_end(&a, topic),
        |e| *e == end,
    )?;
    assert_eq!(
        markers(&a, topic)?,
        [ControlType::Abort, ControlType::Commit, ControlType::Abort].map(Some)
    );
    wait_identical(a.kafka, b.kafka, topic, 1)?;

    let expected = values("committed", committed);
    let all = [
        values("aborted", aborted),
        values("committed", committed),
        values("open", open),
    ]
    .concat();
    for (name, node) in [("A", &a), ("B", &b)] {
        for client in ["confluent", "kafka-python"] {
            let got = read_py(node, topic, end, client, "read_committed")?;
            assert_eq!(got, expected, "{client} read_committed on {name}");
            let got = read_py(node, topic, end, client, "read_uncommitted")?;
            assert_eq!(got, all, "{client} read_uncommitted on {name}");
        }
        assert_eq!(read_kcat(node, topic)?, expected, "kcat on {name}");
        let group = format!("kafkajs-{name}");
        let got = read_kafkajs(node, topic, committed, &group)?;
        assert_eq!(got, expected, "kafkajs on {name}");
    }
    Ok(())
}

#[test]
fn a_second_producer_of_a_transactional_id_fences_the_first() -> Result<()> {
    let topic = "fenced";
    let node = Node::start(&NodeConfig::owner().topic(topic, 1))?;
    let out = python(
        "txn_zombie.py",
        &[&node.kafka.to_string(), topic, "--id", "zombie-tx"],
    )?;
    let outcome: Value = serde_json::from_str(out.trim())?;
    let error = &outcome["zombie_commit_error"];
    let name = error["name"]
        .as_str()
        .context("the zombie's commit failed")?;
    assert!(
        ["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"].contains(&name),
        "{outcome}"
    );
    assert_eq!(error["fatal"], Value::Bool(true), "{outcome}");
    let end = log_end(&node, topic)?;
    let got = read_py(&node, topic, end, "confluent", "read_committed")?;
    assert_eq!(got, values("fresh", 3));
    // The zombie's flushed record was aborted when the newer producer initialised; its
    // later record never reached the log.
    let stored = read_py(&node, topic, end, "confluent", "read_uncommitted")?;
    assert_eq!(
        stored,
        [vec!["zombie-0".to_string()], values("fresh", 3)].concat()
    );
    Ok(())
}

#[test]
fn consume_transform_produce_is_exactly_once_across_a_kill_9_of_the_node() -> Result<()> {
    let port = free_port();
    let config = NodeConfig::owner()
        .listen(format!("127.0.0.1:{port}"))
        .topic("ctp_in", 1)
        .topic("ctp_out", 1);
    let mut node = Node::start(&config)?;
    let bootstrap = node.kafka.to_string();
    let n = 300;
    let produced = python(
        "produce_owned.py",
        &["confluent", &bootstrap, "ctp_in", &n.to_string()],
    )?;
    assert_eq!(produced.trim(), n.to_string());
    let transform = Client::Python
        .command(
            "txn_transform.py",
            &[
                &bootstrap,
                "ctp_in",
                "ctp_out",
                &n.to_string(),
                "--id",
                "ctp-tx",
                "--group",
                "ctp",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Kill the node while the transformer is part way through.
    until(
        Duration::from_secs(60),
        || log_end(&node, "ctp_out"),
        |e| *e >= 60,
    )?;
    node.restart()?;
    assert_eq!(node.kafka.port(), port);
    let ran = transform.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&ran.stdout);
    if !ran.status.success() {
        bail!(
            "txn_transform.py failed: {stdout}{}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }
    eprintln!("transformer: {}", stdout.trim());

    let end = log_end(&node, "ctp_out")?;
    let got = read_py(&node, "ctp_out", end, "confluent", "read_committed")?;
    let expected: Vec<String> = (0..n).map(|i| format!("out-value-{i}")).collect();
    assert_eq!(got, expected);
    let offsets = python("group_admin.py", &[&bootstrap, "offsets", "ctp"])?;
    assert_eq!(offsets.trim(), format!("ctp_in 0 {n}"));
    Ok(())
}

/// A transactional batch of `producer_id` at `base`, written at the source in epoch 3.
fn source_batch(base: i64, producer_id: i64, sequence: i32, values: &[String]) -> Bytes {
    let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    BatchBuilder::new(base)
        .leader_epoch(3)
        .timestamp(1_700_000_000_000 + base)
        .producer(producer_id, 0, sequence)
        .transactional()
        .records(&records)
        .build()
}

/// Region A is lost between the records of a transaction and its marker: the scripted
/// source serves a committed transaction, then one of producer 1003 with no marker.
#[test]
fn failover_aborts_a_transaction_whose_marker_never_arrived_and_reports_it() -> Result<()> {
    let topic = "a_fo";
    let (committed, open) = (values("committed", 3), values("open", 4));
    let history = vec![
        source_batch(0, 1001, 0, &committed),
        BatchBuilder::new(3)
            .leader_epoch(3)
            .producer(1001, 0, -1)
            .marker(true)
            .build(),
        source_batch(4, 1003, 0, &open[..2]),
        source_batch(6, 1003, 2, &open[2..]),
    ];
    let source = FakeBroker::start(BTreeMap::from([(
        topic.to_string(),
        vec![FakeLog {
            batches: history,
            ..FakeLog::default()
        }],
    )]))?;
    let b = Node::start(&NodeConfig::linked_to(source.addr).admin())?;
    let admin = b.admin.context("B's admin listener")?.to_string();
    until(Duration::from_secs(30), || log_end(&b, topic), |e| *e == 8)?;

    // Region A is gone before the marker reached the mirror.
    drop(source);
    let report = shadowlink(&[
        "failover", "--admin", &admin, "--link", "from-a", "--topic", topic,
    ])?
    .stdout("failover")?;
    let line = "aborted open transaction: a_fo-0 producer 1003 epoch 0: 4 records from offset 4, \
                ABORT marker at 8";
    assert!(report.contains(line), "{report}");

    let marker = batches(&b, topic)?.pop().context("batches")?;
    assert_eq!(marker.base_offset(), 8);
    assert_eq!(marker.control_type(), Some(ControlType::Abort));
    assert_eq!(marker.producer_id(), 1003);
    assert!(
        marker.partition_leader_epoch() > 3,
        "{}",
        marker.partition_leader_epoch()
    );
    for client in ["confluent", "kafka-python"] {
        let got = read_py(&b, topic, 9, client, "read_committed")?;
        assert_eq!(got, committed, "{client} read_committed");
        let got = read_py(&b, topic, 9, client, "read_uncommitted")?;
        assert_eq!(
            got,
            [committed.clone(), open.clone()].concat(),
            "{client} read_uncommitted"
        );
    }
    Ok(())
}

#[test]
fn a_transaction_open_at_a_kill_9_is_aborted_by_its_timeout_after_the_restart() -> Result<()> {
    let topic = "restarted";
    let mut node = Node::start(&NodeConfig::owner().topic(topic, 1))?;
    let out = python(
        "txn_produce.py",
        &[
            &node.kafka.to_string(),
            topic,
            "--id",
            "crashed",
            "--timeout-ms",
            "8000",
            "--commit",
            "3",
            "--open",
            "2",
        ],
    )?;
    assert_eq!(out.trim(), "done");
    // Still open when the node dies: 3 records, their marker, then 2 records.
    assert_eq!(log_end(&node, topic)?, 6);
    node.restart()?;
    until(
        Duration::from_secs(30),
        || log_end(&node, topic),
        |e| *e == 7,
    )?;
    assert_eq!(
        markers(&node, topic)?,
        [ControlType::Commit, ControlType::Abort].map(Some)
    );
    let got = read_py(&node, topic, 7, "confluent", "read_committed")?;
    assert_eq!(got, values("committed", 3));
    Ok(())
}

/// The raw coordinator calls of one transactional id, for what clients do not show.
struct RawTxn {
    client: RawClient,
    id: TransactionalId,
    producer_id: i64,
    epoch: i16,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl RawTxn {
    fn init(node: &Node, id: &str) -> Result<RawTxn> {
        let mut client = RawClient::connect(node.kafka)?;
        let id = TransactionalId(str_bytes(id));
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(id.clone()))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let r: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request)?;
        ensure!(r.error_code == 0, "{r:?}");
        Ok(RawTxn {
            client,
            id,
            producer_id: r.producer_id.0,
            epoch: r.producer_epoch,
        })
    }

    fn add_offsets(&mut self, group: &str) -> Result<i16> {
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(self.id.clone())
            .with_producer_id(self.producer_id.into())
            .with_producer_epoch(self.epoch)
            .with_group_id(GroupId(str_bytes(group)));
        let r: AddOffsetsToTxnResponse = self.client.call(ApiKey::AddOffsetsToTxn, 3, &request)?;
        Ok(r.error_code)
    }

    /// TxnOffsetCommit v3 of `offset` for `topic`-0 by `member` of `generation`.
    fn commit_offset(
        &mut self,
        group: &str,
        topic: &str,
        offset: i64,
        member: (&str, i32),
    ) -> Result<i16> {
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(self.id.clone())
            .with_group_id(GroupId(str_bytes(group)))
            .with_producer_id(self.producer_id.into())
            .with_producer_epoch(self.epoch)
            .with_member_id(str_bytes(member.0))
            .with_generation_id(member.1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        let r: TxnOffsetCommitResponse = self.client.call(ApiKey::TxnOffsetCommit, 3, &request)?;
        let p = r
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("no partition")?;
        Ok(p.error_code)
    }

    /// AddPartitionsToTxn v3 of partition 0 of each topic: each partition's error code.
    fn add_partitions(&mut self, topics: &[&str]) -> Result<Vec<i16>> {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.id.clone())
            .with_v3_and_below_producer_id(self.producer_id.into())
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(
                topics
                    .iter()
                    .map(|t| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(vec![0])
                    })
                    .collect(),
            );
        let r: AddPartitionsToTxnResponse =
            self.client.call(ApiKey::AddPartitionsToTxn, 3, &request)?;
        Ok(r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect())
    }

    fn end(&mut self, commit: bool) -> Result<i16> {
        let request = EndTxnRequest::default()
            .with_transactional_id(self.id.clone())
            .with_producer_id(self.producer_id.into())
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        let r: EndTxnResponse = self.client.call(ApiKey::EndTxn, 3, &request)?;
        Ok(r.error_code)
    }
}

/// OffsetFetch v7 of `topic`-0 for `group`: (error code, committed offset).
fn fetch_offset(node: &Node, group: &str, topic: &str, require_stable: bool) -> Result<(i16, i64)> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(str_bytes(topic)))
            .with_partition_indexes(vec![0])]))
        .with_require_stable(require_stable);
    let r: OffsetFetchResponse =
        RawClient::connect(node.kafka)?.call(ApiKey::OffsetFetch, 7, &request)?;
    let p = r
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("no partition")?;
    Ok((p.error_code, p.committed_offset))
}

#[test]
fn offsets_committed_in_a_transaction_are_visible_only_once_it_commits() -> Result<()> {
    let topic = "consumed";
    let node = Node::start(&NodeConfig::owner().topic(topic, 1))?;
    let mut txn = RawTxn::init(&node, "offsets-tx")?;
    // One partition that cannot join fails the request; the rest are not attempted.
    assert_eq!(txn.add_partitions(&[topic, "missing"])?, [55, 3]);
    assert_eq!(txn.add_offsets("g")?, 0);
    // KIP-447: a member the group does not know is refused; a commit from outside any
    // generation (an assigned, not subscribed, consumer) is staged.
    assert_eq!(txn.commit_offset("g", topic, 10, ("ghost", 5))?, 22);
    assert_eq!(txn.commit_offset("g", topic, 10, ("", -1))?, 0);
    // Pending: invisible, and unstable to a read_committed consumer's OffsetFetch.
    assert_eq!(fetch_offset(&node, "g", topic, false)?, (0, -1));
    assert_eq!(fetch_offset(&node, "g", topic, true)?, (88, -1));
    assert_eq!(txn.end(true)?, 0);
    assert_eq!(fetch_offset(&node, "g", topic, true)?, (0, 10));

    // An aborted transaction's offsets are dropped.
    assert_eq!(txn.add_offsets("g")?, 0);
    assert_eq!(txn.commit_offset("g", topic, 20, ("", -1))?, 0);
    assert_eq!(txn.end(false)?, 0);
    assert_eq!(fetch_offset(&node, "g", topic, true)?, (0, 10));
    // The same decision again succeeds; the opposite one is INVALID_TXN_STATE.
    assert_eq!(txn.end(false)?, 0);
    assert_eq!(txn.end(true)?, 48);
    Ok(())
}

#[test]
fn a_mirror_copies_past_a_transaction_open_at_its_source_and_failover_aborts_it() -> Result<()> {
    let topic = "a_hanging";
    let a = Node::start(&NodeConfig::owner().topic(topic, 1))?;
    let b = Node::start(&NodeConfig::linked_to(a.kafka).admin())?;
    let admin = b.admin.context("B's admin listener")?.to_string();
    // Offsets 0-2 committed, 3 its marker, 4-7 a transaction left open well past the
    // test, then 8-12 from an idempotent producer outside any transaction.
    let out = python(
        "txn_produce.py",
        &[
            &a.kafka.to_string(),
            topic,
            "--id",
            "hangs",
            "--timeout-ms",
            "600000",
            "--commit",
            "3",
            "--open",
            "4",
        ],
    )?;
    assert_eq!(out.trim(), "done");
    let plain = python(
        "produce_owned.py",
        &["confluent", &a.kafka.to_string(), topic, "5"],
    )?;
    assert_eq!(plain.trim(), "5");
    // The source's last stable offset stays at 4; the mirror copies to its end anyway.
    wait_identical(a.kafka, b.kafka, topic, 1)?;
    assert_eq!(log_end(&b, topic)?, 13);
    // The mirror's own last stable offset holds at the open transaction.
    let got = read_py(&b, topic, 4, "confluent", "read_committed")?;
    assert_eq!(
        got,
        values("committed", 3),
        "read_committed before failover"
    );

    drop(a);
    let report = shadowlink(&[
        "failover", "--admin", &admin, "--link", "from-a", "--topic", topic,
    ])?
    .stdout("failover")?;
    assert!(
        report.contains("4 records from offset 4, ABORT marker at 13"),
        "{report}"
    );
    assert_eq!(
        markers(&b, topic)?,
        [ControlType::Commit, ControlType::Abort].map(Some)
    );
    let plain: Vec<String> = (0..5).map(|i| format!("value-{i}")).collect();
    let committed = [values("committed", 3), plain.clone()].concat();
    let all = [values("committed", 3), values("open", 4), plain].concat();
    for client in ["confluent", "kafka-python"] {
        let got = read_py(&b, topic, 14, client, "read_committed")?;
        assert_eq!(got, committed, "{client} read_committed");
        let got = read_py(&b, topic, 14, client, "read_uncommitted")?;
        assert_eq!(got, all, "{client} read_uncommitted");
    }
    Ok(())
}
