//! A clustered shadow whose Kafka listener needs SASL/SCRAM over TLS: followers of
//! failed-over partitions reach their leader with `[cluster.peer]`, and say why they
//! cannot without it. A cluster failover reports each partition's records at risk, in
//! its answer and through `shadowlink failover`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use serde_json::Value;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::cluster::{log_bytes, records, routes, Region, Routes, PROBE, SETTLE};
use shadowlink_tests::etcd::Etcd;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::pki::Pki;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::produce;
use shadowlink_tests::{
    http_post, shadowlink, shadowlink_command, until, Client, Listener, Node, NodeConfig,
};

const TOPIC: &str = "a_secure";
const PARTITIONS: i32 = 3;
const MECHANISM: &str = "SCRAM-SHA-512";
/// The user followers authenticate as, and the one the test's producer uses.
const REPLICA: (&str, &str) = ("replica", "follow-the-leader-9");
const APP: (&str, &str) = ("app", "produce-it-7");

/// How followers are configured to reach their leader.
#[derive(Clone, Copy)]
enum Peer {
    /// No `[cluster.peer]`: plaintext to `[kafka]`.
    Unset,
    /// `[cluster.peer]` with the CA and the replica's credentials, to `[kafka]`.
    Kafka,
    /// The same, to a listener named `replication` whose users file alone holds the
    /// replica; `[kafka]`'s holds only the producer's user.
    Listener,
}

/// Certificates, users files and the replica's password file.
struct Secured {
    pki: Pki,
    /// Both users.
    users: PathBuf,
    clients: PathBuf,
    replicas: PathBuf,
    secret: PathBuf,
}

impl Secured {
    fn new() -> Result<Secured> {
        let pki = Pki::new()?;
        let (users, clients, replicas) = (
            pki.path("users.json"),
            pki.path("clients.json"),
            pki.path("replicas.json"),
        );
        for (file, user) in [
            (&users, REPLICA),
            (&users, APP),
            (&clients, APP),
            (&replicas, REPLICA),
        ] {
            add_user(file, user.0, user.1)?;
        }
        let secret = pki.path("replica-password");
        std::fs::write(&secret, format!("{}\n", REPLICA.1))?;
        Ok(Secured {
            pki,
            users,
            clients,
            replicas,
            secret,
        })
    }

    /// `[kafka]` needs SCRAM over TLS and a plaintext [`PROBE`] listener is added for the
    /// test's reads; `peer` says how followers reach their leader.
    fn node(&self, config: NodeConfig, peer: Peer) -> NodeConfig {
        let delay = Duration::from_millis(100);
        let kafka_users = match peer {
            Peer::Listener => &self.clients,
            Peer::Unset | Peer::Kafka => &self.users,
        };
        let (cert, key) = (self.pki.path("server.pem"), self.pki.path("server.key"));
        let mut config = (self.pki.listener(config, false))
            .kafka_sasl(&[MECHANISM], kafka_users, delay, false)
            .add_listener(Listener::new(PROBE));
        let listener = match peer {
            Peer::Unset => return config,
            Peer::Kafka => String::new(),
            Peer::Listener => {
                let replication = Listener::new("replication")
                    .tls(&cert, &key, None, false)
                    .sasl(&[MECHANISM], &self.replicas, delay, false);
                config = config.add_listener(replication);
                "listener = \"replication\", ".to_string()
            }
        };
        let (ca, secret) = (self.pki.ca(), &self.secret);
        let table = format!(
            "{{ {listener}tls = {{ ca = {ca:?} }}, sasl = {{ mechanism = \"{MECHANISM}\", \
             username = \"{}\", password_file = {secret:?} }} }}",
            REPLICA.0
        );
        config.cluster_entry("peer", &table)
    }

    /// librdkafka's settings for the producer's SASL_SSL.
    fn client_settings(&self) -> Vec<String> {
        let settings = [
            "security.protocol=SASL_SSL".to_string(),
            format!("sasl.mechanisms={MECHANISM}"),
            format!("sasl.username={}", APP.0),
            format!("sasl.password={}", APP.1),
            format!("ssl.ca.location={}", self.pki.ca().display()),
        ];
        settings
            .into_iter()
            .flat_map(|s| ["--config".into(), s])
            .collect()
    }
}

/// Adds `user` to the users file at `path` with `shadowlink user add`, the password on
/// standard input.
fn add_user(path: &Path, user: &str, password: &str) -> Result<()> {
    let mut child = shadowlink_command(&["user", "add", "--user", user, "--file"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(format!("{password}\n").as_bytes())?;
    drop(stdin);
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Fails link `from-a` over through node 1's admin API; returns the answer.
fn fail_over(node: &Node) -> Result<Value> {
    let admin = node.admin.context("admin")?;
    let (code, body) = http_post(admin, "/v1/links/from-a/failover", r#"{"all": true}"#)?;
    ensure!(code == 200, "failover answered {code}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// Each partition's leader epoch in a failover answer.
fn epochs(answer: &Value, topic: &str) -> Result<BTreeMap<i32, i32>> {
    let topic = (answer.as_array())
        .and_then(|t| t.iter().find(|t| t["topic"] == topic))
        .with_context(|| format!("the answer names no {topic}: {answer}"))?;
    let partitions = topic["partitions"].as_array().context("partitions")?;
    partitions
        .iter()
        .map(|p| {
            let index = p["partition"].as_i64().context("partition")?;
            let epoch = p["leader_epoch"].as_i64().context("leader_epoch")?;
            Ok((index as i32, epoch as i32))
        })
        .collect()
}

/// Waits until every node routes the region's topic in the failover's epochs.
fn owned(region: &Region, epochs: &BTreeMap<i32, i32>) -> Result<Routes> {
    let in_epochs = |r: &Routes| {
        r.partitions.len() == epochs.len()
            && (r.partitions.iter()).all(|(p, route)| epochs.get(p) == Some(&route.leader_epoch))
    };
    let probe = |id: i32| region.probe(id).and_then(|addr| routes(addr, TOPIC));
    until(SETTLE, || probe(1), in_epochs)?;
    region.settled(&[1, 2, 3])
}

/// Fails the region's topic over, writes to it with a SASL_SSL `acks=all` producer, and
/// checks that every acknowledged record is on the leader and that each follower's log
/// holds the leader's bytes.
fn replicated_after_failover(region: &Region, secured: &Secured) -> Result<()> {
    produce(region.source.addr, TOPIC, 300, "none", PARTITIONS, 0)?;
    let before = region.settled(&[1, 2, 3])?;
    for (p, route) in &before.partitions {
        let leader = region.probe(route.leader)?;
        let end = || RawClient::connect(leader)?.list_offset(TOPIC, *p, -1);
        until(SETTLE, end, |end| *end == 100)?;
    }
    let answer = fail_over(region.node(1)?)?;
    let owned = owned(region, &epochs(&answer, TOPIC)?)?;

    let mut args = vec![
        region.bootstrap(),
        TOPIC.to_string(),
        "--rate=100".into(),
        format!("--partitions={PARTITIONS}"),
        "--seconds=4".into(),
        "--key-prefix=secure-".into(),
    ];
    args.extend(secured.client_settings());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let producer = Client::Python
        .command("produce_through.py", &args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start produce_through.py")?;
    // acks=all is answered only once the follower fetched past the write.
    let acked = records(producer, "the SASL_SSL acks=all producer")?;
    ensure!(
        acked.len() >= 300,
        "only {} records acknowledged",
        acked.len()
    );
    for (p, route) in &owned.partitions {
        let written = acked.iter().filter(|r| r.0 == *p).count() as i64;
        ensure!(written > 0, "nothing acknowledged on partition {p}");
        let leader = region.node(route.leader)?;
        let end = RawClient::connect(region.probe(route.leader)?)?.list_offset(TOPIC, *p, -1)?;
        ensure!(
            end == 100 + written,
            "partition {p} ends at {end}, not 100 + {written}"
        );
        let follower = *(route.replicas.iter())
            .find(|n| **n != route.leader)
            .context("no follower")?;
        let follower = region.node(follower)?;
        let logs = || {
            Ok((
                log_bytes(leader, TOPIC, *p)?,
                log_bytes(follower, TOPIC, *p)?,
            ))
        };
        let (ours, theirs) = until(SETTLE, logs, |(a, b)| a == b)?;
        ensure!(!ours.is_empty() && ours == theirs, "partition {p} differs");
    }
    Ok(())
}

#[test]
fn followers_replicate_through_a_sasl_ssl_listener_with_the_peer_settings() -> Result<()> {
    let secured = Secured::new()?;
    let configure = |config| secured.node(config, Peer::Kafka);
    let region = Region::start_configured(TOPIC, PARTITIONS, 3, "3s", configure)?;
    replicated_after_failover(&region, &secured)
}

#[test]
fn followers_connect_to_the_listener_the_peer_settings_name() -> Result<()> {
    let secured = Secured::new()?;
    let configure = |config| secured.node(config, Peer::Listener);
    let region = Region::start_configured(TOPIC, PARTITIONS, 3, "3s", configure)?;
    replicated_after_failover(&region, &secured)
}

#[test]
fn without_the_peer_settings_a_follower_says_why_it_cannot_fetch() -> Result<()> {
    let secured = Secured::new()?;
    let configure = |config| secured.node(config, Peer::Unset);
    let region = Region::start_configured(TOPIC, PARTITIONS, 3, "3s", configure)?;
    produce(region.source.addr, TOPIC, 30, "none", PARTITIONS, 0)?;
    region.settled(&[1, 2, 3])?;
    let answer = fail_over(region.node(1)?)?;
    owned(&region, &epochs(&answer, TOPIC)?)?;
    let explained = || {
        let nodes = region.nodes.values();
        let said = nodes.clone().any(|n| {
            (n.process).logged(&["cannot follow the partition's leader", "`[cluster.peer]`"])
        });
        Ok(said)
    };
    until(SETTLE, explained, |said| *said)?;
    Ok(())
}

const AT_RISK: &str = "a_at_risk";
/// Records per batch, and batches the source holds of each partition.
const BATCH: i64 = 10;
const BATCHES: i64 = 6;
/// Batches the source serves of partition `p`: it holds more, past what it serves.
fn served(p: i32) -> i64 {
    2 + i64::from(p)
}

/// `BATCH` records from `base`.
fn batch(base: i64) -> Bytes {
    let values: Vec<String> = (base..base + BATCH).map(|o| format!("v-{o}")).collect();
    let records: Vec<_> = (values.iter())
        .map(|v| (None, Some(v.as_bytes())))
        .collect();
    build_batch(base, 0, &records, 1_000 + base)
}

#[test]
fn a_cluster_failover_reports_each_partitions_records_at_risk() -> Result<()> {
    let logs: Vec<FakeLog> = (0..PARTITIONS)
        .map(|p| {
            let batches = (0..BATCHES).map(|b| batch(b * BATCH)).collect();
            FakeLog {
                batches,
                served_before: Some(served(p) * BATCH),
                ..FakeLog::default()
            }
        })
        .collect();
    let source = FakeBroker::start([(AT_RISK.to_string(), logs)].into())?;
    let etcd = Etcd::start()?;
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let config = NodeConfig::linked_to(source.addr)
            .admin()
            .node_id(id)
            .cluster("region-b", &etcd.endpoint(), "3s", 2);
        nodes.insert(id, Node::start(&config)?);
    }
    // Every leader holds what the source served, and its link saw the source's end.
    let live: BTreeSet<i32> = nodes.keys().copied().collect();
    let seen = || (nodes.values()).map(|n| routes(n.kafka, AT_RISK)).collect();
    let agreed = |seen: &Vec<Routes>| {
        seen.windows(2).all(|w| w[0] == w[1]) && seen[0].settled(&live, 2, PARTITIONS)
    };
    let before = until(SETTLE, seen, agreed)?.remove(0);
    for (p, route) in &before.partitions {
        let leader = nodes[&route.leader].kafka;
        let end = || RawClient::connect(leader)?.list_offset(AT_RISK, *p, -1);
        until(SETTLE, end, |end| *end == served(*p) * BATCH)?;
    }
    let admin = nodes[&2].admin.context("admin")?.to_string();
    let cli = shadowlink(&["failover", "--admin", &admin, "--link", "from-a", "--all"])?;
    let printed = cli.stdout("shadowlink failover")?;
    let rows: Vec<Vec<&str>> = (printed.lines())
        .map(|l| l.split_whitespace().collect())
        .filter(|cells: &Vec<&str>| cells.first() == Some(&AT_RISK))
        .collect();
    ensure!(rows.len() == PARTITIONS as usize, "{printed}");
    let answer = fail_over(&nodes[&1])?;
    for p in 0..PARTITIONS {
        let (mirrored, known) = (served(p) * BATCH, BATCHES * BATCH);
        let at_risk = known - mirrored;
        let route = &before.partitions[&p];
        // TOPIC PARTITION STATE LEADER EPOCH REPLICAS NEXT_OFFSET SRC_HWM RECORDS_AT_RISK
        let row = &rows[p as usize];
        let expected = [mirrored.to_string(), known.to_string(), at_risk.to_string()];
        ensure!(row[3] == route.leader.to_string(), "{printed}");
        ensure!(row[6..9] == expected, "partition {p}: {row:?}\n{printed}");
        let topic = (answer.as_array())
            .and_then(|t| t.iter().find(|t| t["topic"] == AT_RISK))
            .context("topic")?;
        let report = &topic["partitions"][p as usize]["report"];
        ensure!(report["node_id"] == route.leader, "{report}");
        ensure!(report["dst_hwm"] == mirrored, "{report}");
        ensure!(report["src_hwm"] == known, "{report}");
        ensure!(report["records_at_risk"] == at_risk, "{report}");
        ensure!(report["seconds_at_risk"].as_f64().is_some(), "{report}");
    }
    let total: i64 = (0..PARTITIONS).map(|p| (BATCHES - served(p)) * BATCH).sum();
    let summed = format!("total: {total} known at risk");
    ensure!(printed.contains(&summed), "{printed}");
    Ok(())
}
