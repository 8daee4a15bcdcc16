//! Authorization on the Kafka listener: `[[acls]]` rules for SASL users and a TLS client
//! certificate's subject, checked with confluent-kafka, kafka-python and kcat as a user
//! sees them: what is allowed works, what is not is refused with Kafka's error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, CreatePartitionsRequest,
    CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    InitProducerIdRequest, InitProducerIdResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::pki::Pki;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{eventually, python, shadowlink_command, Client, Node, NodeConfig, Ran};

const PASSWORD: &str = "wonder-land-7";
const LIBS: [&str; 2] = ["confluent", "kafka-python"];
/// The group id authz_client.py's assigned consumers carry without joining: librdkafka
/// still asks for its coordinator, which needs describe on the group.
const ASSIGNED_GROUP: &str = "authz-unused";

/// A users file with `alice`, `bob` and `carol`, all with `PASSWORD`.
fn add_users(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("users.json");
    for user in ["alice", "bob", "carol"] {
        let mut child = shadowlink_command(&["user", "add", "--user", user, "--file"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdin = stdin;
        stdin.write_all(format!("{PASSWORD}\n").as_bytes())?;
        drop(stdin);
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "user add {user}: {out:?}");
    }
    Ok(path)
}

/// A source owning `a_orders` (2 partitions, 100 records) and a node mirroring it over
/// SASL_PLAINTEXT that owns `b_owned` and `b_private`, with these rules: alice reads
/// `a_*` in groups `app-*` and writes `b_owned`; bob reads `a_*` but has no group;
/// carol may describe `b_owned` only; `User:CN=client.test` reads `a_orders`; everyone
/// may describe `ASSIGNED_GROUP`.
struct Cluster {
    node: Node,
    _source: Node,
    _dir: tempfile::TempDir,
}

fn cluster() -> Result<Cluster> {
    let dir = tempfile::tempdir()?;
    let users = add_users(dir.path())?;
    let source = Node::start(&NodeConfig::owner().topic("a_orders", 2))?;
    let produced = python(
        "produce.py",
        &[
            &source.kafka.to_string(),
            "a_orders",
            "100",
            "--partitions",
            "2",
        ],
    )?;
    ensure!(produced.trim() == "100", "produced {produced}");
    let config = NodeConfig::linked_to(source.kafka)
        .topic("b_owned", 2)
        .topic("b_private", 1)
        .kafka_sasl(
            &["SCRAM-SHA-256", "PLAIN"],
            &users,
            Duration::from_millis(100),
            true,
        )
        .acl("User:alice", &["read"], &["a_*"], &["app-*"], false)
        .acl("User:alice", &["write"], &["b_owned"], &[], false)
        .acl("User:bob", &["read"], &["a_*"], &[], false)
        .acl("User:carol", &["describe"], &["b_owned"], &[], false)
        .acl("*", &["describe"], &[], &[ASSIGNED_GROUP], false);
    let node = Node::start(&config)?;
    Ok(Cluster {
        node,
        _source: source,
        _dir: dir,
    })
}

/// Runs authz_client.py as `user`: what it prints, trimmed.
fn client(
    lib: &str,
    mode: &str,
    node: &Node,
    topic: &str,
    user: &str,
    extra: &[&str],
) -> Result<String> {
    let addr = node.kafka.to_string();
    let mut args = vec![lib, mode, &addr, topic, "--user", user];
    args.extend(extra);
    let mut command = Client::Python.command("authz_client.py", &args);
    command.env("SASL_PASSWORD", PASSWORD);
    let out = Ran::of(&mut command)?.stdout(&format!("authz_client.py {args:?}"))?;
    Ok(out.trim().to_string())
}

/// The mirror has all 100 records (alice reads them with confluent-kafka).
fn mirrored(node: &Node) -> Result<()> {
    eventually(Duration::from_secs(60), || {
        let read = client(
            "confluent",
            "consume",
            node,
            "a_orders",
            "alice",
            &["--count", "100", "--partitions", "2"],
        )?;
        Ok((read == "100").then_some(()))
    })
}

/// A user with the rights consumes the mirror in a group and produces to an owned topic,
/// with either client.
#[test]
fn an_allowed_user_consumes_a_mirror_and_produces_to_an_owned_topic() -> Result<()> {
    let cluster = cluster()?;
    let node = &cluster.node;
    mirrored(node)?;
    for lib in LIBS {
        let group = format!("app-{lib}");
        let args = ["--count", "100", "--group", &group];
        let read = client(lib, "group", node, "a_orders", "alice", &args)?;
        ensure!(read == "100", "{lib} read {read} of 100 in group {group}");
        let args = ["--count", "20", "--partitions", "2"];
        let written = client(lib, "produce", node, "b_owned", "alice", &args)?;
        ensure!(written == "20", "{lib} produced {written}");
    }
    let args = ["--count", "40", "--partitions", "2", "--group", "app-check"];
    let read = client("confluent", "group", node, "b_owned", "alice", &args)?;
    // alice may write b_owned but not read it.
    ensure!(read == "error: TOPIC_AUTHORIZATION_FAILED", "{read}");
    Ok(())
}

/// Without read on a topic, consuming it is refused with TOPIC_AUTHORIZATION_FAILED, and
/// without write, producing to it; each client reports it in its own words, kcat too.
#[test]
fn a_user_without_read_or_write_gets_topic_authorization_failed() -> Result<()> {
    let cluster = cluster()?;
    let node = &cluster.node;
    mirrored(node)?;
    // kafka-python logs the refused read rather than raising it.
    let expected = [
        (
            "confluent",
            "error: TOPIC_AUTHORIZATION_FAILED",
            "error: TOPIC_AUTHORIZATION_FAILED",
        ),
        (
            "kafka-python",
            "error: Topic b_private is not authorized for this client",
            "error: TopicAuthorizationFailedError",
        ),
    ];
    for (lib, read_refusal, write_refusal) in expected {
        // alice may join app-* groups, but not read b_private.
        let args = ["--count", "1", "--group", "app-private"];
        let read = client(lib, "group", node, "b_private", "alice", &args)?;
        ensure!(read == read_refusal, "{lib} consuming without read: {read}");
        let written = client(lib, "produce", node, "b_owned", "bob", &["--count", "5"])?;
        ensure!(
            written == write_refusal,
            "{lib} producing without write: {written}"
        );
        // bob's right to read the mirror is untouched.
        let args = ["--count", "100", "--partitions", "2"];
        let read = client(lib, "consume", node, "a_orders", "bob", &args)?;
        ensure!(read == "100", "{lib} as bob read {read}");
    }
    let out = Command::new("kcat")
        .args([
            "-b",
            &node.kafka.to_string(),
            "-C",
            "-t",
            "a_orders",
            "-e",
            "-o",
            "beginning",
        ])
        .args([
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-256",
        ])
        .args([
            "-X",
            "sasl.username=carol",
            "-X",
            &format!("sasl.password={PASSWORD}"),
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("Topic authorization failed"),
        "kcat as carol: {stderr}"
    );
    Ok(())
}

/// Reading a topic is not joining a group: without the group right, a subscribing
/// consumer is refused with GROUP_AUTHORIZATION_FAILED.
#[test]
fn a_user_without_the_group_right_gets_group_authorization_failed() -> Result<()> {
    let cluster = cluster()?;
    let node = &cluster.node;
    mirrored(node)?;
    let expected = [
        ("confluent", "error: GROUP_AUTHORIZATION_FAILED"),
        ("kafka-python", "error: GroupAuthorizationFailedError"),
    ];
    for (lib, refusal) in expected {
        let args = ["--count", "100", "--group", "app-bob"];
        let read = client(lib, "group", node, "a_orders", "bob", &args)?;
        ensure!(read == refusal, "{lib} as bob in group app-bob: {read}");
        let args = ["--count", "100", "--group", "other"];
        let read = client(lib, "group", node, "a_orders", "alice", &args)?;
        ensure!(read == refusal, "{lib} as alice in group other: {read}");
    }
    Ok(())
}

/// Listing topics shows each user only the topics it may describe; CreateTopics without
/// the create right is refused.
#[test]
fn metadata_lists_only_permitted_topics_and_create_topics_is_refused() -> Result<()> {
    let cluster = cluster()?;
    let node = &cluster.node;
    mirrored(node)?;
    for lib in LIBS {
        let listed = |user: &str| client(lib, "list", node, "-", user, &[]);
        let alice = listed("alice")?;
        ensure!(
            alice == "a_orders,b_owned",
            "{lib} lists for alice: {alice}"
        );
        let carol = listed("carol")?;
        ensure!(carol == "b_owned", "{lib} lists for carol: {carol}");
    }
    let created = client("confluent", "create", node, "b_new", "alice", &[])?;
    ensure!(created == "error: TOPIC_AUTHORIZATION_FAILED", "{created}");
    let listed = client("confluent", "list", node, "-", "alice", &[])?;
    ensure!(!listed.contains("b_new"), "{listed}");
    Ok(())
}

/// A mutual TLS client's principal is its certificate's subject: `User:CN=client.test`
/// may read the mirror and create topics, nothing else.
#[test]
fn a_tls_client_certificate_subject_is_authorized_by_its_rules() -> Result<()> {
    let pki = Pki::new()?;
    let source = Node::start(&NodeConfig::owner().topic("a_orders", 1))?;
    let produced = python("produce.py", &[&source.kafka.to_string(), "a_orders", "10"])?;
    ensure!(produced.trim() == "10", "produced {produced}");
    let config = NodeConfig::linked_to(source.kafka)
        .topic("b_owned", 1)
        .acl("User:CN=client.test", &["read"], &["a_orders"], &[], false)
        .acl("User:CN=client.test", &["create"], &[], &[], true);
    let node = Node::start(&pki.listener(config, true))?;
    let (addr, ca) = (node.kafka.to_string(), pki.ca().display().to_string());
    let cert = pki.path("client.pem").display().to_string();
    let key = pki.path("client.key").display().to_string();
    let run = |mode: &str, topic: &str, count: &str| {
        let args = [
            "confluent",
            mode,
            &addr,
            topic,
            "--count",
            count,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ];
        python("authz_client.py", &args).map(|out| out.trim().to_string())
    };
    eventually(Duration::from_secs(60), || {
        Ok((run("consume", "a_orders", "10")? == "10").then_some(()))
    })?;
    let written = run("produce", "b_owned", "5")?;
    ensure!(written == "error: TOPIC_AUTHORIZATION_FAILED", "{written}");
    let created = run("create", "b_new", "1")?;
    ensure!(created == "created", "{created}");
    Ok(())
}

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A raw client logged in as `user` with SASL/PLAIN.
fn raw(node: &Node, user: &str) -> Result<RawClient> {
    let mut client = RawClient::connect(node.kafka)?;
    client.authenticate_plain(user, PASSWORD)?;
    Ok(client)
}

/// Every API answers Kafka's codes, those the clients above stop short of too: per
/// partition for Fetch, ListOffsets, OffsetForLeaderEpoch, Produce and OffsetCommit, per
/// topic for DeleteTopics, per group for DescribeGroups, and for the request for
/// InitProducerId.
#[test]
fn each_api_refuses_with_kafkas_authorization_code() -> Result<()> {
    let cluster = cluster()?;
    let node = &cluster.node;
    mirrored(node)?;
    let mut carol = raw(node, "carol")?;
    let fetched = carol.read_batches("a_orders", 0, 0);
    let error = fetched.err().context("carol fetched a_orders")?.to_string();
    ensure!(error.ends_with("error 29"), "Fetch without read: {error}");
    let listed = carol.list_offset("a_orders", 0, -1);
    let error = listed.err().context("carol listed a_orders")?.to_string();
    ensure!(
        error.ends_with("error 29"),
        "ListOffsets without describe: {error}"
    );
    let (code, _, _) = carol.end_of_epoch("a_orders", 0, -1, 0)?;
    ensure!(code == 29, "OffsetForLeaderEpoch without describe: {code}");
    let batch = build_batch(0, 0, &[(None, Some(b"v".as_slice()))], 1_000);
    let (code, _) = carol.produce("b_owned", 0, batch.clone())?;
    ensure!(code == 29, "Produce without write: {code}");
    let request = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(name("b_owned"))]);
    let response: DeleteTopicsResponse = carol.call(ApiKey::DeleteTopics, 5, &request)?;
    let code = response.responses.first().context("no topic")?.error_code;
    ensure!(code == 29, "DeleteTopics without delete: {code}");
    let response: InitProducerIdResponse = carol.call(ApiKey::InitProducerId, 4, &request_id())?;
    ensure!(
        response.error_code == 31,
        "InitProducerId: {}",
        response.error_code
    );
    let transactional = request_id().with_transactional_id(Some(name("t-1").into()));
    let response: InitProducerIdResponse = carol.call(ApiKey::InitProducerId, 4, &transactional)?;
    let code = response.error_code;
    ensure!(code == 53, "InitProducerId with a transactional id: {code}");

    let mut bob = raw(node, "bob")?;
    let batches = bob.read_batches("a_orders", 0, 0)?;
    ensure!(
        !batches.is_empty(),
        "bob, who may read a_orders, fetched nothing"
    );
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(name("app-1"))]);
    let response: DescribeGroupsResponse = bob.call(ApiKey::DescribeGroups, 5, &request)?;
    let code = response.groups.first().context("no group")?.error_code;
    ensure!(code == 30, "DescribeGroups without describe: {code}");

    let mut alice = raw(node, "alice")?;
    let response: InitProducerIdResponse = alice.call(ApiKey::InitProducerId, 4, &request_id())?;
    ensure!(
        response.error_code == 0,
        "InitProducerId with write: {}",
        response.error_code
    );
    let commit = |topic: &str| {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])
    };
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name("app-commit")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![commit("a_orders"), commit("b_private")]);
    let response: OffsetCommitResponse = alice.call(ApiKey::OffsetCommit, 8, &request)?;
    let codes: Vec<i16> = response
        .topics
        .iter()
        .map(|t| t.partitions.first().map_or(-1, |p| p.error_code))
        .collect();
    ensure!(
        codes == [0, 29],
        "OffsetCommit to a readable and an unreadable topic: {codes:?}"
    );
    Ok(())
}

/// InitProducerId of an idempotent producer: no transactional id.
fn request_id() -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
}

/// ConfigResource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Admin changes need their right on the topic (broker configs on the cluster), and
/// reading a group's offsets needs describe on the group and the topic.
#[test]
fn admin_and_offset_fetch_requests_refuse_with_kafkas_authorization_code() -> Result<()> {
    let cluster = cluster()?;
    let node = &cluster.node;
    let mut carol = raw(node, "carol")?;
    let request =
        CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(name("b_owned")))
            .with_count(4)]);
    let response: CreatePartitionsResponse = carol.call(ApiKey::CreatePartitions, 1, &request)?;
    let code = response.results.first().context("no result")?.error_code;
    ensure!(code == 29, "CreatePartitions without alter: {code}");
    let request = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(name("b_owned")))
        .with_partitions(vec![DeleteRecordsPartition::default().with_offset(1)])]);
    let response: DeleteRecordsResponse = carol.call(ApiKey::DeleteRecords, 1, &request)?;
    let topic = response.topics.first().context("no topic")?;
    let code = topic.partitions.first().context("no partition")?.error_code;
    ensure!(code == 29, "DeleteRecords without delete: {code}");
    let alter = |kind: i8, resource: &str| {
        AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(name(resource))
    };
    let request = AlterConfigsRequest::default()
        .with_resources(vec![alter(TOPIC, "b_owned"), alter(BROKER, "1")]);
    let response: AlterConfigsResponse = carol.call(ApiKey::AlterConfigs, 1, &request)?;
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    ensure!(
        codes == [29, 31],
        "AlterConfigs of a topic and the broker: {codes:?}"
    );
    let describe = |resource: &str| {
        DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(name(resource))
    };
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![describe("b_owned"), describe("b_private")]);
    let response: DescribeConfigsResponse = carol.call(ApiKey::DescribeConfigs, 1, &request)?;
    let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
    ensure!(
        codes == [0, 29],
        "DescribeConfigs of b_owned and b_private: {codes:?}"
    );

    let offsets = |topic: &str| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(name("app-1")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(name(topic)))
                .with_partition_indexes(vec![0])]))
    };
    let mut bob = raw(node, "bob")?;
    let response: OffsetFetchResponse = bob.call(ApiKey::OffsetFetch, 5, &offsets("a_orders"))?;
    ensure!(
        response.error_code == 30,
        "OffsetFetch without the group: {}",
        response.error_code
    );
    let mut alice = raw(node, "alice")?;
    let response: OffsetFetchResponse =
        alice.call(ApiKey::OffsetFetch, 5, &offsets("b_private"))?;
    let topic = response.topics.first().context("no topic")?;
    let code = topic.partitions.first().context("no partition")?.error_code;
    ensure!(code == 29, "OffsetFetch of an undescribable topic: {code}");
    Ok(())
}

/// FindCoordinator for a group and for a transactional id.
fn find_coordinator(key_type: i8, keys: &[&str]) -> FindCoordinatorRequest {
    let keys = keys.iter().map(|k| name(k)).collect();
    FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(keys)
}

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

/// As in Kafka, the coordinator is named only to a principal that may describe the
/// group, or the transactional id (here: who may write some topic, as for
/// InitProducerId); others get GROUP_AUTHORIZATION_FAILED or
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED, per key when keys are batched (KIP-699).
#[test]
fn find_coordinator_needs_describe_on_the_group_or_transactional_id() -> Result<()> {
    let cluster = cluster()?;
    let node = &cluster.node;
    let mut alice = raw(node, "alice")?;
    let request = find_coordinator(GROUP_KEY, &["app-1", "other", ASSIGNED_GROUP]);
    let response: FindCoordinatorResponse = alice.call(ApiKey::FindCoordinator, 4, &request)?;
    let answers: Vec<(i16, i32)> = response
        .coordinators
        .iter()
        .map(|c| (c.error_code, c.port))
        .collect();
    let port = i32::from(node.kafka.port());
    ensure!(
        answers == [(0, port), (30, -1), (0, port)],
        "alice's groups: {answers:?}"
    );
    let request = find_coordinator(TRANSACTION_KEY, &["t-1"]);
    let response: FindCoordinatorResponse = alice.call(ApiKey::FindCoordinator, 4, &request)?;
    let code = response.coordinators.first().context("no key")?.error_code;
    ensure!(code == 0, "alice, who may write b_owned, for t-1: {code}");

    let mut bob = raw(node, "bob")?;
    let single = |key_type: i8, key: &str| {
        FindCoordinatorRequest::default()
            .with_key_type(key_type)
            .with_key(name(key))
    };
    let response: FindCoordinatorResponse =
        bob.call(ApiKey::FindCoordinator, 3, &single(GROUP_KEY, "app-1"))?;
    let message = response.error_message.as_deref().unwrap_or("").to_string();
    ensure!(
        (response.error_code, response.port) == (30, -1) && message.contains("app-1"),
        "bob for app-1: {} {message}",
        response.error_code
    );
    let response: FindCoordinatorResponse =
        bob.call(ApiKey::FindCoordinator, 3, &single(TRANSACTION_KEY, "t-1"))?;
    ensure!(
        response.error_code == 53,
        "bob, who may write nothing, for t-1: {}",
        response.error_code
    );
    let response: FindCoordinatorResponse = bob.call(
        ApiKey::FindCoordinator,
        3,
        &single(GROUP_KEY, ASSIGNED_GROUP),
    )?;
    ensure!(
        response.error_code == 0,
        "bob for {ASSIGNED_GROUP}: {}",
        response.error_code
    );
    Ok(())
}
