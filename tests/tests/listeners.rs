//! Several Kafka listeners on one node, as Kafka's `listeners`: a PLAINTEXT one on
//! loopback for local tools and a SASL_SSL one for everyone else. Each serves real
//! clients (confluent-kafka and kcat), each tells its clients its own address, and each
//! authenticates its own way under the node's one set of access rules.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::pki::Pki;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{
    python, shadowlink, shadowlink_command, status_json, Client, Listener, Node, NodeConfig,
};

const PASSWORD: &str = "wonder-land-7";
const MECHANISMS: [&str; 2] = ["SCRAM-SHA-256", "PLAIN"];
const DELAY: Duration = Duration::from_millis(200);
const TOPIC: &str = "orders";

/// A node owning `orders` (2 partitions) with a PLAINTEXT listener `internal` (the
/// `[kafka]` table) and a SASL_SSL listener `external` for the users alice and bob.
struct TwoListeners {
    node: Node,
    internal: SocketAddr,
    external: SocketAddr,
    pki: Pki,
    _dir: tempfile::TempDir,
}

impl TwoListeners {
    /// Starts the node with `config` plus the two listeners.
    fn start(config: NodeConfig) -> Result<TwoListeners> {
        let dir = tempfile::tempdir()?;
        let users = add_users(dir.path(), &["alice", "bob"])?;
        let pki = Pki::new()?;
        let external = Listener::new("external")
            .tls(
                &pki.path("server.pem"),
                &pki.path("server.key"),
                None,
                false,
            )
            .sasl(&MECHANISMS, &users, DELAY, false);
        let config = config
            .topic(TOPIC, 2)
            .listener_name("internal")
            .add_listener(external)
            .admin();
        let node = Node::start(&config)?;
        Ok(TwoListeners {
            internal: node.kafka,
            external: node.listener("external")?,
            node,
            pki,
            _dir: dir,
        })
    }

    /// confluent-kafka over SASL_SSL on the external listener as `user`.
    fn sasl_client(&self, mode: &str, user: &str, count: usize) -> Result<Output> {
        let (addr, ca) = (self.external.to_string(), self.pki.ca());
        let count = count.to_string();
        let args = [
            "confluent",
            mode,
            &addr,
            TOPIC,
            &count,
            "--mechanism",
            "SCRAM-SHA-256",
            "--user",
            user,
            "--partitions",
            "2",
            "--ca",
            ca.to_str().context("utf-8 path")?,
        ];
        let mut command = Client::Python.command("sasl_client.py", &args);
        Ok(command.env("SASL_PASSWORD", PASSWORD).output()?)
    }

    /// kcat on the internal listener as a PLAINTEXT client.
    fn kcat_internal(&self) -> Command {
        let mut command = Command::new("kcat");
        command.args(["-b", &self.internal.to_string()]);
        command
    }

    /// kcat on the external listener, over SASL_SSL as `user`.
    fn kcat_external(&self, user: &str) -> Command {
        let mut command = Command::new("kcat");
        command.args(["-b", &self.external.to_string()]);
        for setting in [
            "security.protocol=SASL_SSL".to_string(),
            "sasl.mechanisms=SCRAM-SHA-256".to_string(),
            format!("sasl.username={user}"),
            format!("sasl.password={PASSWORD}"),
            format!("ssl.ca.location={}", self.pki.ca().display()),
            "ssl.endpoint.identification.algorithm=https".to_string(),
        ] {
            command.args(["-X", &setting]);
        }
        command
    }
}

/// A users file with `users`, all with `PASSWORD`, written by `shadowlink user add`.
fn add_users(dir: &Path, users: &[&str]) -> Result<PathBuf> {
    let path = dir.join("users.json");
    for user in users {
        let mut child = shadowlink_command(&["user", "add", "--user", user, "--file"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(format!("{PASSWORD}\n").as_bytes())?;
        drop(stdin);
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "user add {user}: {out:?}");
    }
    Ok(path)
}

fn stdout_of(out: &Output, what: &str) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(
        out.status.success(),
        "{what} failed ({}): {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// The broker addresses `kcat -L` lists, as `host:port`.
fn kcat_brokers(mut kcat: Command) -> Result<Vec<String>> {
    let out = kcat.args(["-L", "-m", "10"]).output()?;
    let listing = stdout_of(&out, "kcat -L")?;
    let brokers = listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("broker 1 at "))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    Ok(brokers)
}

/// `kcat -P` of `count` lines `value-i`; its output, whether or not it succeeded.
fn kcat_produce(mut kcat: Command, count: usize) -> Result<Output> {
    let mut child = kcat
        .args(["-P", "-t", TOPIC, "-p", "0", "-c", &count.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let lines: String = (0..count).map(|i| format!("value-{i}\n")).collect();
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(lines.as_bytes())?;
    drop(stdin);
    Ok(child.wait_with_output()?)
}

/// How many records `kcat -C` reads from the whole topic.
fn kcat_count(mut kcat: Command) -> Result<usize> {
    let args = [
        "-C",
        "-t",
        TOPIC,
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%p:%o\n",
    ];
    let out = kcat.args(args).output()?;
    Ok(stdout_of(&out, "kcat -C")?.lines().count())
}

/// What a raw Metadata and a raw FindCoordinator request on `client` give as the node's
/// address.
fn raw_addresses(client: &mut RawClient) -> Result<(String, String)> {
    let version = client.version(ApiKey::Metadata, 12)?;
    let metadata: MetadataResponse =
        client.call(ApiKey::Metadata, version, &MetadataRequest::default())?;
    let broker = metadata.brokers.first().context("no broker in Metadata")?;
    let advertised = format!("{}:{}", broker.host.as_str(), broker.port);
    let version = client.version(ApiKey::FindCoordinator, 3)?;
    let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let found: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, version, &request)?;
    let coordinator = format!("{}:{}", found.host.as_str(), found.port);
    Ok((advertised, coordinator))
}

/// Records written through either listener are read through the other, by
/// confluent-kafka and by kcat; and Metadata and FindCoordinator through each listener
/// (kcat -L, and raw requests) name that listener's own address, never the other's.
#[test]
fn each_listener_serves_real_clients_and_advertises_its_own_address() -> Result<()> {
    let setup = TwoListeners::start(NodeConfig::owner())?;
    let (internal, external) = (setup.internal.to_string(), setup.external.to_string());
    ensure!(internal != external, "{internal} and {external}");
    let args = [&internal as &str, TOPIC, "50", "--partitions", "2"];
    let produced = python("produce.py", &args)?;
    ensure!(produced.trim() == "50", "produced {produced} on internal");
    let read = stdout_of(&setup.sasl_client("consume", "alice", 50)?, "consume")?;
    ensure!(read == "50", "confluent read {read} of 50 on external");
    let written = stdout_of(&setup.sasl_client("produce", "alice", 20)?, "produce")?;
    ensure!(written == "20", "confluent produced {written} on external");
    let read = python("consume.py", &[&internal, TOPIC, "70", "--partitions", "2"])?;
    ensure!(
        read.trim() == "70",
        "confluent read {read} of 70 on internal"
    );

    let out = kcat_produce(setup.kcat_external("alice"), 10)?;
    stdout_of(&out, "kcat -P on external")?;
    let out = kcat_produce(setup.kcat_internal(), 5)?;
    stdout_of(&out, "kcat -P on internal")?;
    ensure!(kcat_count(setup.kcat_internal())? == 85, "kcat on internal");
    ensure!(
        kcat_count(setup.kcat_external("alice"))? == 85,
        "kcat on external"
    );

    let brokers = kcat_brokers(setup.kcat_internal())?;
    ensure!(brokers == [internal.clone()], "internal lists {brokers:?}");
    let brokers = kcat_brokers(setup.kcat_external("alice"))?;
    ensure!(brokers == [external.clone()], "external lists {brokers:?}");
    let mut plain = RawClient::connect(setup.internal)?;
    let answered = raw_addresses(&mut plain)?;
    ensure!(
        answered == (internal.clone(), internal.clone()),
        "internal: {answered:?}"
    );
    let mut secure = RawClient::connect_tls(setup.external, &setup.pki.ca())?;
    secure.authenticate_plain("alice", PASSWORD)?;
    let answered = raw_addresses(&mut secure)?;
    ensure!(
        answered == (external.clone(), external.clone()),
        "external: {answered:?}"
    );
    Ok(())
}

/// A client without credentials is refused on the SASL_SSL listener, over TLS and over
/// plain TCP, while the same client is served on the PLAINTEXT listener on loopback.
#[test]
fn the_sasl_ssl_listener_refuses_a_client_the_plaintext_one_serves() -> Result<()> {
    let setup = TwoListeners::start(NodeConfig::owner())?;
    let brokers = kcat_brokers(setup.kcat_internal())?;
    ensure!(brokers == [setup.internal.to_string()], "{brokers:?}");
    let ca = format!("ssl.ca.location={}", setup.pki.ca().display());
    let tls_only = ["-X", "security.protocol=SSL", "-X", &ca];
    let mut no_sasl = Command::new("kcat");
    no_sasl.args(["-b", &setup.external.to_string(), "-L", "-m", "5"]);
    let out = no_sasl.args(tls_only).output()?;
    ensure!(
        !out.status.success(),
        "TLS without SASL was served: {out:?}"
    );
    let mut plain = Command::new("kcat");
    plain.args(["-b", &setup.external.to_string(), "-L", "-m", "5"]);
    let out = plain.output()?;
    ensure!(!out.status.success(), "plain TCP was served: {out:?}");
    let raw = RawClient::connect_tls(setup.external, &setup.pki.ca())?;
    let mut raw = raw;
    let version = raw.version(ApiKey::Metadata, 12)?;
    let refused =
        raw.call::<_, MetadataResponse>(ApiKey::Metadata, version, &MetadataRequest::default());
    ensure!(
        refused.is_err(),
        "Metadata before SASL was answered: {refused:?}"
    );
    ensure!(
        setup
            .node
            .process
            .logged(&["closing unauthenticated connection", "Metadata"]),
        "the node did not log why it closed the connection"
    );
    Ok(())
}

/// One set of rules on both listeners, each principal as its listener authenticated it:
/// alice (SASL) may write and read `orders`; ANONYMOUS (the PLAINTEXT listener) may
/// only read it, in the group consume.py names; bob may do nothing. Each is served or
/// refused accordingly.
#[test]
fn acls_hold_on_every_listener_for_the_principal_it_authenticated() -> Result<()> {
    let config = NodeConfig::owner()
        .acl("User:alice", &["write", "read"], &[TOPIC], &[], false)
        .acl(
            "User:ANONYMOUS",
            &["read"],
            &[TOPIC],
            &["consume-py"],
            false,
        );
    let setup = TwoListeners::start(config)?;
    let internal = setup.internal.to_string();
    let written = stdout_of(&setup.sasl_client("produce", "alice", 30)?, "produce")?;
    ensure!(written == "30", "alice produced {written} on external");
    let read = python("consume.py", &[&internal, TOPIC, "30", "--partitions", "2"])?;
    ensure!(
        read.trim() == "30",
        "ANONYMOUS read {read} of 30 on internal"
    );

    let refused = setup.sasl_client("produce", "bob", 5)?;
    let said = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && said.contains("TOPIC_AUTHORIZATION_FAILED"),
        "bob on external: {said}"
    );
    let out = kcat_produce(setup.kcat_internal(), 5)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("Topic authorization failed"),
        "kcat as ANONYMOUS on internal: {stderr}"
    );
    let mut anonymous = RawClient::connect(setup.internal)?;
    let (code, _) = anonymous.produce(
        TOPIC,
        0,
        build_batch(0, 0, &[(None, Some(b"x".as_slice()))], 1_000),
    )?;
    ensure!(
        code == 29,
        "ANONYMOUS produce answered {code}, not TOPIC_AUTHORIZATION_FAILED"
    );
    let out = kcat_produce(setup.kcat_external("alice"), 5)?;
    stdout_of(&out, "kcat -P as alice on external")?;
    ensure!(
        kcat_count(setup.kcat_internal())? == 35,
        "kcat as ANONYMOUS"
    );
    let brokers = kcat_brokers(setup.kcat_external("bob"))?;
    ensure!(brokers == [setup.external.to_string()], "{brokers:?}");
    let out = setup
        .kcat_external("bob")
        .args(["-C", "-t", TOPIC, "-e"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("Topic authorization failed"),
        "kcat as bob on external: {stderr}"
    );
    Ok(())
}

/// `/v1/status` and `shadowlink status` list each listener with its protocol, bound
/// address and advertised address, and nothing of its certificates or users.
#[test]
fn status_lists_every_listener_with_its_protocol_and_address() -> Result<()> {
    let setup = TwoListeners::start(NodeConfig::owner())?;
    let status = status_json(&setup.node)?;
    let listeners = status["listeners"].as_array().context("no listeners")?;
    let seen: Vec<(String, String, String, String)> = listeners
        .iter()
        .map(|l| {
            let field = |k: &str| l[k].as_str().unwrap_or("").to_string();
            (
                field("name"),
                field("protocol"),
                field("address"),
                field("advertised"),
            )
        })
        .collect();
    let (internal, external) = (setup.internal.to_string(), setup.external.to_string());
    let expected = vec![
        (
            "internal".into(),
            "PLAINTEXT".into(),
            internal.clone(),
            internal.clone(),
        ),
        (
            "external".into(),
            "SASL_SSL".into(),
            external.clone(),
            external.clone(),
        ),
    ];
    ensure!(seen == expected, "{seen:?}");
    let text = status.to_string();
    ensure!(
        !text.contains("users.json") && !text.contains(".key") && !text.contains(".pem"),
        "status shows listener files: {text}"
    );
    let admin = setup.node.admin.context("admin")?.to_string();
    let ran = shadowlink(&["status", "--admin", &admin])?;
    let table = ran.stdout("shadowlink status")?;
    let row = |name: &str, protocol: &str, addr: &str| {
        table.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells == [name, protocol, addr, addr]
        })
    };
    ensure!(row("internal", "PLAINTEXT", &internal), "{table}");
    ensure!(row("external", "SASL_SSL", &external), "{table}");
    Ok(())
}
