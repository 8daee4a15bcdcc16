//! Consumer groups on the node's listener, with real clients: librdkafka (confluent-kafka
//! and kcat) and kafka-python join groups, rebalance, commit, and resume after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use shadowlink_tests::scenario::{create_topic, produce, wait_identical};
use shadowlink_tests::{eventually, python, Node, NodeConfig, Tansu};

type Record = (String, i32, i64);

/// Creates each `(topic, partitions, records)` at the source and waits until the node
/// mirrors it; `produce` spreads records round-robin, so partition p holds offsets
/// `0..records / partitions`.
fn mirrored(topics: &[(&str, i32, usize)]) -> Result<(Tansu, Node, BTreeSet<Record>)> {
    let source = Tansu::start()?;
    let mut expected = BTreeSet::new();
    for (topic, partitions, records) in topics {
        create_topic(source.addr, topic, *partitions, &[])?;
        produce(source.addr, topic, *records, "none", *partitions, 0)?;
        let per_partition = (*records / *partitions as usize) as i64;
        for p in 0..*partitions {
            expected.extend((0..per_partition).map(|o| (topic.to_string(), p, o)));
        }
    }
    let node = Node::start(&NodeConfig::linked_to(source.addr))?;
    for (topic, partitions, _) in topics {
        wait_identical(source.addr, node.kafka, topic, *partitions)?;
    }
    Ok((source, node, expected))
}

fn records(output: &Value) -> Result<Vec<Record>> {
    let list = output["records"]
        .as_array()
        .context("no records in the script output")?;
    list.iter()
        .map(|r| {
            Ok((
                r[0].as_str().context("topic")?.to_string(),
                i32::try_from(r[1].as_i64().context("partition")?)?,
                r[2].as_i64().context("offset")?,
            ))
        })
        .collect()
}

/// Every record exactly once.
fn exactly_once(got: &[Record], expected: &BTreeSet<Record>) -> Result<()> {
    let unique: BTreeSet<Record> = got.iter().cloned().collect();
    ensure!(
        unique.len() == got.len(),
        "{} records read, {} distinct: some were read twice",
        got.len(),
        unique.len()
    );
    let missing: Vec<&Record> = expected.difference(&unique).take(5).collect();
    let extra: Vec<&Record> = unique.difference(expected).take(5).collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    Ok(())
}

fn run_json(script: &str, args: &[&str]) -> Result<Value> {
    let out = python(script, args)?;
    serde_json::from_str(out.trim()).with_context(|| format!("{script} printed {out:?}"))
}

fn assignments(output: &Value, member: &str) -> Vec<usize> {
    output["assignments"][member]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|a| a.as_array().map_or(0, Vec::len))
                .collect()
        })
        .unwrap_or_default()
}

/// Two confluent-kafka members share six partitions of two topics: A alone, then A and B,
/// then B alone after A leaves; every record is read once in all.
fn confluent_pair(subscription: &[&str]) -> Result<()> {
    let topics = [("a_orders", 3, 900), ("a_events", 3, 900)];
    let (_source, node, expected) = mirrored(&topics)?;
    let addr = node.kafka.to_string();
    let args = [
        &[addr.as_str(), "pair-group", "pair"],
        subscription,
        &["--count", "1800"],
    ]
    .concat();
    let output = run_json("consume_group.py", &args)?;
    exactly_once(&records(&output)?, &expected)?;
    let (a, b) = (assignments(&output, "A"), assignments(&output, "B"));
    // A alone holds all six partitions, then shares them once B joins; B ends with all
    // six after A leaves.
    ensure!(a.first() == Some(&6), "A's assignments: {a:?}");
    ensure!(
        a.iter().any(|n| (1..6).contains(n)),
        "A never shared the partitions: {a:?}"
    );
    ensure!(
        b.iter().any(|n| (1..6).contains(n)),
        "B never shared the partitions: {b:?}"
    );
    ensure!(
        b.last() == Some(&6),
        "B did not take over after A left: {b:?}"
    );
    Ok(())
}

#[test]
fn confluent_pair_rebalances_on_join_and_leave_and_reads_each_record_once() -> Result<()> {
    confluent_pair(&["--topics", "a_orders,a_events"])
}

/// A pattern subscription makes librdkafka ask Metadata for all topics, with the
/// malformed request of confluentinc/librdkafka#5049 that the node must still accept.
#[test]
fn confluent_pair_with_a_pattern_subscription() -> Result<()> {
    confluent_pair(&["--pattern", "^a_.*"])
}

#[test]
fn committed_offsets_survive_a_node_restart() -> Result<()> {
    let (_source, mut node, expected) = mirrored(&[("a_resume", 2, 400)])?;
    let addr = node.kafka.to_string();
    let args = ["single", "--topics", "a_resume"];
    let first = run_json(
        "consume_group.py",
        &[&[&addr, "resume-group"], &args[..], &["--count", "150"]].concat(),
    )?;
    let first = records(&first)?;
    ensure!(first.len() == 150, "first run read {} records", first.len());
    let files = std::fs::read_dir(node.data_dir.join("groups"))?.count();
    ensure!(files == 1, "{files} group files after one group committed");
    node.restart()?;
    let addr = node.kafka.to_string();
    let rest = ["--count", "250", "--idle", "3"];
    let second = run_json(
        "consume_group.py",
        &[&[&addr, "resume-group"], &args[..], &rest[..]].concat(),
    )?;
    let mut all = first;
    all.extend(records(&second)?);
    // A resume from anywhere but the committed offsets reads some record twice.
    exactly_once(&all, &expected)
}

#[test]
fn kafka_python_group_consumer_reads_everything_and_commits() -> Result<()> {
    let (_source, node, expected) = mirrored(&[("a_python", 3, 300)])?;
    let addr = node.kafka.to_string();
    let common = [addr.as_str(), "python-group", "--pattern", "^a_.*"];
    let output = run_json(
        "group_kafka_python.py",
        &[&common[..], &["--count", "300", "--idle", "1"]].concat(),
    )?;
    exactly_once(&records(&output)?, &expected)?;
    let committed: BTreeMap<String, Value> = serde_json::from_value(output["committed"].clone())?;
    let offsets: Vec<i64> = committed.values().filter_map(Value::as_i64).collect();
    ensure!(offsets == vec![100, 100, 100], "committed {committed:?}");
    // The same group again: everything is committed, so nothing is read.
    let again = run_json(
        "group_kafka_python.py",
        &[&common[..], &["--count", "0", "--idle", "4"]].concat(),
    )?;
    ensure!(records(&again)?.is_empty(), "re-read after commit: {again}");
    Ok(())
}

#[test]
fn kcat_balanced_consumer_reads_everything() -> Result<()> {
    let (_source, node, expected) = mirrored(&[("a_kcat", 2, 200)])?;
    let out = Command::new("timeout")
        .args([
            "60",
            "kcat",
            "-b",
            &node.kafka.to_string(),
            "-G",
            "kcat-group",
        ])
        .args([
            "-X",
            "auto.offset.reset=earliest",
            "-c",
            "200",
            "-f",
            "%t %p %o\\n",
            "-q",
        ])
        .arg("a_kcat")
        .output()
        .context("kcat runs")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "kcat failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let got: Vec<Record> = stdout
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            ensure!(parts.len() == 3, "unexpected kcat line {line:?}");
            Ok((parts[0].to_string(), parts[1].parse()?, parts[2].parse()?))
        })
        .collect::<Result<_>>()?;
    exactly_once(&got, &expected)
}

/// ListGroups, DescribeGroups and OffsetFetch as confluent-kafka's AdminClient uses them,
/// on a live kcat member and after it left.
#[test]
fn admin_client_lists_describes_and_reads_offsets_of_groups() -> Result<()> {
    let (_source, node, _expected) = mirrored(&[("a_admin", 2, 100)])?;
    let addr = node.kafka.to_string();
    let mut kcat = Command::new("kcat")
        .args([
            "-b",
            &addr,
            "-G",
            "admin-group",
            "-X",
            "auto.offset.reset=earliest",
            "-q",
            "-u",
            "-f",
            "%p %o\\n",
        ])
        .arg("a_admin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("kcat runs")?;
    // One line per record consumed: SIGTERM only once all 100 are in, so the commits kcat
    // makes on the way out cover everything.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = kcat.stdout.take().context("kcat stdout")?;
    std::thread::spawn(move || {
        use std::io::BufRead;
        let read = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(100)
            .count();
        let _ = tx.send(read);
    });
    let consumed = rx.recv_timeout(Duration::from_secs(30)).unwrap_or(0);
    let live = eventually(Duration::from_secs(30), || {
        let described = run_json("group_admin.py", &[&addr, "describe", "admin-group"])?;
        Ok((described["state"] == "STABLE").then_some(described))
    });
    // SIGTERM: kcat closes its consumer, which commits and leaves the group.
    Command::new("kill")
        .args(["-TERM", &kcat.id().to_string()])
        .status()?;
    let exited = kcat.wait()?;
    let live = live?;
    ensure!(consumed == 100, "kcat consumed {consumed} of 100 records");
    ensure!(exited.success(), "kcat exited with {exited}");
    let partitions = &live["members"][0]["partitions"];
    ensure!(
        live["members"].as_array().map(Vec::len) == Some(1),
        "{live}"
    );
    ensure!(
        *partitions == serde_json::json!([["a_admin", 0], ["a_admin", 1]]),
        "{live}"
    );
    eventually(Duration::from_secs(15), || {
        let listed = python("group_admin.py", &[&addr, "list"])?;
        Ok(listed
            .lines()
            .any(|l| l == "admin-group EMPTY")
            .then_some(()))
    })?;
    let offsets = python("group_admin.py", &[&addr, "offsets", "admin-group"])?;
    ensure!(
        offsets.lines().collect::<Vec<_>>() == ["a_admin 0 50", "a_admin 1 50"],
        "{offsets}"
    );
    Ok(())
}

/// Error paths and old/new versions straight on the wire.
#[test]
fn group_apis_answer_old_and_new_versions_on_the_wire() -> Result<()> {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use shadowlink_tests::raw::RawClient;

    let s = |v: &str| StrBytes::from_string(v.to_string());
    let (_source, node, _expected) = mirrored(&[("a_wire", 2, 10)])?;
    let mut c = RawClient::connect(node.kafka)?;

    let found: FindCoordinatorResponse = c.call(
        ApiKey::FindCoordinator,
        0,
        &FindCoordinatorRequest::default().with_key(s("g")),
    )?;
    ensure!(
        found.error_code == 0 && found.port == i32::from(node.kafka.port()),
        "{found:?}"
    );
    let txn = FindCoordinatorRequest::default()
        .with_key(s("t"))
        .with_key_type(1);
    let found: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 1, &txn)?;
    ensure!(
        found.error_code == 0 && found.port == i32::from(node.kafka.port()),
        "this node coordinates transactions: {found:?}"
    );
    let batched = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g1"), s("g2")]);
    let found: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &batched)?;
    ensure!(
        found.coordinators.len() == 2 && found.coordinators[1].key == s("g2"),
        "{found:?}"
    );

    // KIP-394: v4 hands out an id first; v0 joins at once.
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s("wire")))
        .with_session_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range"))
        ]);
    let refused: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        4,
        &join.clone().with_rebalance_timeout_ms(5_000),
    )?;
    ensure!(
        refused.error_code == 79 && !refused.member_id.is_empty(),
        "{refused:?}"
    );
    let joined: JoinGroupResponse = c.call(ApiKey::JoinGroup, 0, &join)?;
    ensure!(
        joined.error_code == 0 && joined.leader == joined.member_id && joined.members.len() == 1
    );
    let me = joined.member_id.clone();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("wire")))
        .with_generation_id(joined.generation_id)
        .with_member_id(me.clone())
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(me.clone())
            .with_assignment(bytes::Bytes::from_static(b"plan"))]);
    let synced: SyncGroupResponse = c.call(ApiKey::SyncGroup, 0, &sync)?;
    ensure!(
        synced.error_code == 0 && synced.assignment.as_ref() == b"plan",
        "{synced:?}"
    );
    let beat = HeartbeatRequest::default()
        .with_group_id(GroupId(s("wire")))
        .with_generation_id(joined.generation_id)
        .with_member_id(me.clone());
    let hb: HeartbeatResponse = c.call(ApiKey::Heartbeat, 0, &beat)?;
    ensure!(hb.error_code == 0);
    let stale: HeartbeatResponse =
        c.call(ApiKey::Heartbeat, 4, &beat.clone().with_generation_id(99))?;
    ensure!(stale.error_code == 22, "{stale:?}");
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("wire")))
        .with_member_id(me);
    let left: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 0, &leave)?;
    ensure!(left.error_code == 0);
    let gone: HeartbeatResponse = c.call(ApiKey::Heartbeat, 0, &beat)?;
    ensure!(gone.error_code == 25, "{gone:?}");

    // Manual commits: the unknown topic is refused, the mirrored one stored.
    let partition = |p, offset| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(p)
            .with_committed_offset(offset)
    };
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("wire")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("a_wire")))
                .with_partitions(vec![partition(0, 5)]),
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("nope")))
                .with_partitions(vec![partition(0, 1)]),
        ]);
    let committed: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 2, &commit)?;
    let codes: Vec<i16> = committed
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    ensure!(codes == vec![0, 3], "{committed:?}");
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("wire")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("a_wire")))
            .with_partition_indexes(vec![0, 1])]));
    let fetched: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 1, &fetch)?;
    let got: Vec<(i64, i16)> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| (p.committed_offset, p.error_code))
        .collect();
    ensure!(got == vec![(5, 0), (-1, 0)], "{fetched:?}");
    let groups = vec![
        // Null topics: everything the group committed.
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("wire")))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("never-seen")))
            .with_topics(None),
    ];
    let fetched: OffsetFetchResponse = c.call(
        ApiKey::OffsetFetch,
        8,
        &OffsetFetchRequest::default().with_groups(groups),
    )?;
    let all = &fetched.groups[0].topics;
    ensure!(
        all.len() == 1 && all[0].partitions[0].committed_offset == 5,
        "{fetched:?}"
    );
    ensure!(
        fetched.groups[1].error_code == 0 && fetched.groups[1].topics.is_empty(),
        "{fetched:?}"
    );
    Ok(())
}

/// KIP-345: a static member does not leave on close; the same instance id coming back
/// replaces it at once and resumes from its commits.
#[test]
fn a_static_member_restarts_and_resumes_from_its_commits() -> Result<()> {
    let (_source, node, expected) = mirrored(&[("a_static", 2, 200)])?;
    let addr = node.kafka.to_string();
    let run = |count: &str, idle: &str| {
        let args = [
            "single",
            "--topics",
            "a_static",
            "--instance-id",
            "host-1",
            "--count",
            count,
            "--idle",
            idle,
        ];
        run_json(
            "consume_group.py",
            &[&[addr.as_str(), "static-group"], &args[..]].concat(),
        )
    };
    let mut all = records(&run("120", "0")?)?;
    let started = std::time::Instant::now();
    all.extend(records(&run("80", "2")?)?);
    // Well within the old member's 6 s session: it was replaced, not waited out.
    ensure!(
        started.elapsed() < Duration::from_secs(20),
        "rejoin took {:?}",
        started.elapsed()
    );
    exactly_once(&all, &expected)
}
