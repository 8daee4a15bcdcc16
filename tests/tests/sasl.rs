//! SASL: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 on the listener over TLS (and over
//! plaintext only when asked for), with users written by `shadowlink user add`, served
//! to confluent-kafka, kafka-python, kafkajs and kcat; and a link authenticating to a
//! SASL_SSL source. Certificates are made at test time.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use shadowlink_protocol::batch::testing::build_batch;
use shadowlink_tests::fake::{FakeBroker, FakeLog};
use shadowlink_tests::pki::Pki;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{
    check_config, eventually, http_get, python, shadowlink, shadowlink_command, Client, Node,
    NodeConfig,
};

const USER: &str = "alice";
const PASSWORD: &str = "wonder-land-7";
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
const DELAY: Duration = Duration::from_millis(300);

/// The clients of the matrix.
#[derive(Clone, Copy, Debug)]
enum Lib {
    Confluent,
    KafkaPython,
    Kafkajs,
    Kcat,
}

const LIBS: [Lib; 4] = [Lib::Confluent, Lib::KafkaPython, Lib::Kafkajs, Lib::Kcat];

/// What a client is asked to do.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Produce,
    Consume,
    Connect,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::Connect => "connect",
        }
    }
}

/// Who connects, how, and with which secret.
struct Login<'a> {
    mechanism: &'a str,
    user: &'a str,
    password: &'a str,
    /// The CA for SASL_SSL; `None` is SASL_PLAINTEXT.
    ca: Option<&'a Path>,
}

impl<'a> Login<'a> {
    fn ssl(mechanism: &'a str, ca: &'a Path) -> Login<'a> {
        Login {
            mechanism,
            user: USER,
            password: PASSWORD,
            ca: Some(ca),
        }
    }
}

/// Runs `command` to the end; its stdout, trimmed, or an error with all it printed.
fn output(command: &mut Command, what: impl Debug) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {what:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        bail!(
            "{what:?} failed ({}): {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Runs `lib` in `mode` against `node`: the count produced or consumed, `connected`,
/// or `refused: ...` as the client reports the refusal.
fn run(
    lib: Lib,
    mode: Mode,
    node: SocketAddr,
    topic: &str,
    count: usize,
    login: &Login,
) -> Result<String> {
    let addr = node.to_string();
    let count_text = count.to_string();
    let what = (lib, mode, login.mechanism, login.user);
    match lib {
        Lib::Confluent | Lib::KafkaPython => {
            let name = if matches!(lib, Lib::Confluent) {
                "confluent"
            } else {
                "kafka-python"
            };
            let ca = login.ca.map(|ca| ca.display().to_string());
            let mut args = vec![name, mode.name(), &addr, topic, &count_text];
            args.extend([
                "--mechanism",
                login.mechanism,
                "--user",
                login.user,
                "--partitions",
                "2",
            ]);
            if let Some(ca) = &ca {
                args.extend(["--ca", ca]);
            }
            let mut command = Client::Python.command("sasl_client.py", &args);
            output(command.env("SASL_PASSWORD", login.password), what)
        }
        Lib::Kafkajs => {
            let ca = login
                .ca
                .context("kafkajs runs over SASL_SSL")?
                .display()
                .to_string();
            let args = [
                mode.name(),
                &addr,
                topic,
                &count_text,
                login.mechanism,
                login.user,
                &ca,
                "2",
            ];
            let mut command = Client::Node.command("sasl_client.js", &args);
            output(command.env("SASL_PASSWORD", login.password), what)
        }
        Lib::Kcat => kcat(mode, &addr, topic, count, login),
    }
}

/// kcat with `login`'s security settings.
fn kcat(mode: Mode, addr: &str, topic: &str, count: usize, login: &Login) -> Result<String> {
    let mut command = Command::new("kcat");
    command.args(["-b", addr, "-t", topic]);
    let protocol = if login.ca.is_some() {
        "SASL_SSL"
    } else {
        "SASL_PLAINTEXT"
    };
    for setting in [
        format!("security.protocol={protocol}"),
        format!("sasl.mechanisms={}", login.mechanism),
        format!("sasl.username={}", login.user),
        format!("sasl.password={}", login.password),
    ] {
        command.args(["-X", &setting]);
    }
    if let Some(ca) = login.ca {
        command.args(["-X", &format!("ssl.ca.location={}", ca.display())]);
        command.args(["-X", "ssl.endpoint.identification.algorithm=https"]);
    }
    match mode {
        Mode::Produce => {
            command.args(["-P", "-c", &count.to_string()]);
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            let lines: String = (0..count).map(|i| format!("value-{i}\n")).collect();
            child
                .stdin
                .take()
                .context("stdin")?
                .write_all(lines.as_bytes())?;
            let out = child.wait_with_output()?;
            ensure!(
                out.status.success(),
                "kcat -P: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // kcat -P prints nothing; the owned topic's final count checks delivery.
            Ok(count.to_string())
        }
        Mode::Consume => {
            command.args(["-C", "-o", "beginning", "-e", "-q", "-f", "%p:%o\n"]);
            let out = output(&mut command, ("kcat -C", login.mechanism))?;
            Ok(out.lines().count().to_string())
        }
        Mode::Connect => {
            let out = command.args(["-L", "-m", "5"]).output()?;
            match out.status.success() {
                true => Ok("connected".to_string()),
                false => Ok(format!("refused: {}", String::from_utf8_lossy(&out.stderr))),
            }
        }
    }
}

/// A users file with `USER`, written by `shadowlink user add` reading the password from
/// standard input.
fn add_user(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("users.json");
    let mut child = shadowlink_command(&["user", "add", "--user", USER, "--file"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(path)
}

/// A SASL_SSL listener offering every mechanism to the users in `users`.
fn sasl_ssl(pki: &Pki, users: &Path, config: NodeConfig) -> NodeConfig {
    pki.listener(config, false)
        .kafka_sasl(&MECHANISMS, users, DELAY, false)
}

/// The value of the SASL authentication counter for `mechanism` and `result`.
fn authentications(node: &Node, mechanism: &str, result: &str) -> Result<u64> {
    let (_, body) = http_get(node.admin.context("no admin listener")?, "/metrics")?;
    let series = format!(
        "shadowlink_sasl_authentications_total{{mechanism=\"{mechanism}\",result=\"{result}\"}} "
    );
    let line = body.lines().find(|l| l.starts_with(&series));
    let value = line.with_context(|| format!("no series {series}"))?;
    Ok(value[series.len()..].trim().parse()?)
}

/// confluent-kafka, kafka-python, kafkajs and kcat each read a mirror and write an owned
/// topic over SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and the node counts
/// each success.
#[test]
fn every_client_consumes_a_mirror_and_produces_over_sasl_ssl_with_each_mechanism() -> Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let users = add_user(dir.path())?;
    let source = Node::start(&NodeConfig::owner().topic("a_orders", 2))?;
    let source_addr = source.kafka.to_string();
    let produced = python(
        "produce.py",
        &[&source_addr, "a_orders", "100", "--partitions", "2"],
    )?;
    ensure!(produced.trim() == "100", "produced {produced}");
    let config = NodeConfig::linked_to(source.kafka)
        .topic("b_owned", 2)
        .admin();
    let node = Node::start(&sasl_ssl(&pki, &users, config))?;
    let ca = pki.ca();
    eventually(Duration::from_secs(60), || {
        let login = Login::ssl("SCRAM-SHA-512", &ca);
        let read = run(
            Lib::Confluent,
            Mode::Consume,
            node.kafka,
            "a_orders",
            100,
            &login,
        )?;
        Ok((read == "100").then_some(()))
    })?;
    let mut owned = 0;
    for mechanism in MECHANISMS {
        let before = authentications(&node, mechanism, "success")?;
        for lib in LIBS {
            let login = Login::ssl(mechanism, &ca);
            let read = run(lib, Mode::Consume, node.kafka, "a_orders", 100, &login)?;
            ensure!(
                read == "100",
                "{lib:?} with {mechanism} read {read} of the mirror's 100"
            );
            let written = run(lib, Mode::Produce, node.kafka, "b_owned", 20, &login)?;
            ensure!(
                written == "20",
                "{lib:?} with {mechanism} produced {written}"
            );
            owned += 20;
        }
        let after = authentications(&node, mechanism, "success")?;
        ensure!(
            after >= before + 8,
            "{mechanism}: {before} then {after} successes"
        );
    }
    let login = Login::ssl("PLAIN", &ca);
    let read = run(
        Lib::Confluent,
        Mode::Consume,
        node.kafka,
        "b_owned",
        owned,
        &login,
    )?;
    ensure!(
        read == owned.to_string(),
        "the owned topic holds {read} of {owned}"
    );
    Ok(())
}

/// A wrong password and an unknown user are refused with SASL_AUTHENTICATION_FAILED as
/// each client reports it, and counted as failures.
#[test]
fn wrong_passwords_and_unknown_users_are_refused_as_each_client_reports_it() -> Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let users = add_user(dir.path())?;
    let node = Node::start(&sasl_ssl(
        &pki,
        &users,
        NodeConfig::owner().topic("t", 1).admin(),
    ))?;
    let ca = pki.ca();
    for lib in LIBS {
        let expected = match lib {
            Lib::Confluent => "_AUTHENTICATION",
            Lib::KafkaPython => "SaslAuthenticationFailedError",
            Lib::Kafkajs => "KafkaJSSASLAuthenticationError",
            Lib::Kcat => "SASL authentication error",
        };
        for (user, password) in [(USER, "not-the-password"), ("mallory", PASSWORD)] {
            let login = Login {
                mechanism: "SCRAM-SHA-256",
                user,
                password,
                ca: Some(&ca),
            };
            let out = run(lib, Mode::Connect, node.kafka, "t", 0, &login)?;
            ensure!(
                out.starts_with("refused")
                    && out.contains(expected)
                    && out.contains("Authentication failed"),
                "{lib:?} as {user:?}: {out}"
            );
            ensure!(
                !out.contains("unknown user"),
                "the refusal tells users apart: {out}"
            );
        }
        let login = Login::ssl("SCRAM-SHA-256", &ca);
        let out = run(lib, Mode::Connect, node.kafka, "t", 0, &login)?;
        ensure!(out == "connected", "{lib:?} with the right password: {out}");
    }
    let failures = authentications(&node, "SCRAM-SHA-256", "failure")?;
    ensure!(failures >= 8, "{failures} failures counted");
    ensure!(!node.process.logged(&[PASSWORD]), "the password was logged");
    Ok(())
}

/// SASL without TLS is a start-up error unless `allow_plaintext` asks for it; then
/// librdkafka and kafka-python authenticate over SASL_PLAINTEXT.
#[test]
fn sasl_plaintext_must_be_asked_for_and_then_serves_clients() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let users = add_user(dir.path())?;
    let implicit =
        NodeConfig::owner()
            .topic("t_plain", 2)
            .kafka_sasl(&MECHANISMS, &users, DELAY, false);
    let out = check_config(&implicit.render(Some(dir.path())))?;
    ensure!(
        !out.success() && out.stderr.contains("`kafka.sasl`"),
        "{out:?}"
    );
    let node = Node::start(&NodeConfig::owner().topic("t_plain", 2).kafka_sasl(
        &MECHANISMS,
        &users,
        DELAY,
        true,
    ))?;
    let login = Login {
        mechanism: "SCRAM-SHA-256",
        user: USER,
        password: PASSWORD,
        ca: None,
    };
    for lib in [Lib::Confluent, Lib::KafkaPython] {
        let written = run(lib, Mode::Produce, node.kafka, "t_plain", 30, &login)?;
        ensure!(written == "30", "{lib:?} produced {written}");
    }
    let read = run(
        Lib::KafkaPython,
        Mode::Consume,
        node.kafka,
        "t_plain",
        60,
        &login,
    )?;
    ensure!(read == "60", "read {read}");
    Ok(())
}

/// Reads the next response or sees the connection closed.
fn closed(client: &mut RawClient) -> bool {
    let request = MetadataRequest::default();
    client
        .call::<_, MetadataResponse>(ApiKey::Metadata, 4, &request)
        .is_err()
}

fn handshake(
    client: &mut RawClient,
    version: i16,
    mechanism: &'static str,
) -> Result<SaslHandshakeResponse> {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    client.call(ApiKey::SaslHandshake, version, &request)
}

fn authenticate(client: &mut RawClient, token: &'static [u8]) -> Result<SaslAuthenticateResponse> {
    let request =
        SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from_static(token));
    client.call(ApiKey::SaslAuthenticate, 1, &request)
}

/// The protocol rules, seen on the wire: before authentication only ApiVersions,
/// SaslHandshake and SaslAuthenticate are served; an unknown mechanism gets 33 with the
/// enabled list, a token without a handshake 34, a wrong password 58, each followed
/// by a close (a refused login's only after the delay); a v0 handshake takes a bare
/// token; once authenticated, a second handshake gets 34.
#[test]
fn the_listener_follows_kafkas_sasl_state_machine() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let users = add_user(dir.path())?;
    let delay = Duration::from_millis(800);
    let node = Node::start(&NodeConfig::owner().topic("t", 1).kafka_sasl(
        &MECHANISMS,
        &users,
        delay,
        true,
    ))?;

    let mut early = RawClient::connect(node.kafka)?;
    ensure!(
        closed(&mut early),
        "Metadata was served before authentication"
    );

    let mut unknown = RawClient::connect(node.kafka)?;
    let refused = handshake(&mut unknown, 1, "GSSAPI")?;
    ensure!(refused.error_code == 33, "GSSAPI: {refused:?}");
    let offered: Vec<&str> = refused.mechanisms.iter().map(|m| m.as_str()).collect();
    ensure!(offered == MECHANISMS, "offered {offered:?}");
    ensure!(closed(&mut unknown), "open after an unsupported mechanism");

    let mut early_token = RawClient::connect(node.kafka)?;
    let refused = authenticate(&mut early_token, b"\0alice\0x")?;
    ensure!(
        refused.error_code == 34 && refused.error_message.is_some(),
        "{refused:?}"
    );
    ensure!(
        closed(&mut early_token),
        "open after SaslAuthenticate out of order"
    );

    let mut wrong = RawClient::connect(node.kafka)?;
    ensure!(handshake(&mut wrong, 1, "PLAIN")?.error_code == 0);
    let started = Instant::now();
    let refused = authenticate(&mut wrong, b"\0alice\0not-the-password")?;
    ensure!(refused.error_code == 58, "{refused:?}");
    let message = refused
        .error_message
        .map(|m| m.to_string())
        .unwrap_or_default();
    ensure!(message.contains("Authentication failed"), "{message}");
    ensure!(closed(&mut wrong), "open after a failed authentication");
    let open_for = started.elapsed();
    ensure!(open_for >= delay, "closed {open_for:?} after the refusal");

    let mut legacy = RawClient::connect(node.kafka)?;
    ensure!(handshake(&mut legacy, 0, "PLAIN")?.error_code == 0);
    let answer = legacy.raw_token(format!("\0{USER}\0{PASSWORD}").as_bytes())?;
    ensure!(
        answer.is_empty(),
        "PLAIN answers an empty token, not {answer:?}"
    );
    let all = MetadataRequest::default().with_topics(None);
    let metadata: MetadataResponse = legacy.call(ApiKey::Metadata, 4, &all)?;
    ensure!(
        metadata
            .topics
            .iter()
            .any(|t| t.name.as_ref().map(|n| n.as_str()) == Some("t")),
        "{metadata:?}"
    );
    ensure!(
        handshake(&mut legacy, 1, "PLAIN")?.error_code == 34,
        "a second handshake was accepted"
    );
    Ok(())
}

/// `shadowlink user add` takes the password from standard input or an environment
/// variable, never from the command line; the file holds no password, and the node
/// accepts both users without logging either password.
#[test]
fn user_add_writes_a_file_the_node_accepts_without_the_password() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let users = add_user(dir.path())?;
    let file = users.to_str().context("utf-8 path")?;
    let mut from_env = shadowlink_command(&["user", "add", "--file", file, "--user", "bob"]);
    from_env.args([
        "--mechanism",
        "SCRAM-SHA-512",
        "--password-env",
        "BOB_SECRET",
    ]);
    output(
        from_env.env("BOB_SECRET", "builder-of-things"),
        "user add bob",
    )?;
    let argv = shadowlink(&[
        "user",
        "add",
        "--file",
        file,
        "--user",
        "eve",
        "--password",
        "x",
    ])?;
    ensure!(
        !argv.success(),
        "a password on the command line was accepted"
    );
    let text = std::fs::read_to_string(&users)?;
    ensure!(
        !text.contains(PASSWORD) && !text.contains("builder-of-things"),
        "{text}"
    );
    ensure!(
        text.contains("SCRAM-SHA-512") && text.contains("stored_key"),
        "{text}"
    );

    let pki = Pki::new()?;
    let node = Node::start(&sasl_ssl(
        &pki,
        &users,
        NodeConfig::owner().topic("t_users", 2),
    ))?;
    let ca = pki.ca();
    let alice = Login::ssl("SCRAM-SHA-256", &ca);
    let bob = Login {
        mechanism: "SCRAM-SHA-512",
        user: "bob",
        password: "builder-of-things",
        ca: Some(&ca),
    };
    let bob_plain = Login {
        mechanism: "PLAIN",
        ..bob
    };
    for login in [&alice, &bob, &bob_plain] {
        let out = run(
            Lib::Confluent,
            Mode::Connect,
            node.kafka,
            "t_users",
            0,
            login,
        )?;
        ensure!(
            out == "connected",
            "{} with {}: {out}",
            login.user,
            login.mechanism
        );
    }
    // bob has no SCRAM-SHA-256 credential.
    let bob_256 = Login {
        mechanism: "SCRAM-SHA-256",
        ..bob
    };
    let out = run(
        Lib::Confluent,
        Mode::Connect,
        node.kafka,
        "t_users",
        0,
        &bob_256,
    )?;
    ensure!(out.starts_with("refused"), "bob with SCRAM-SHA-256: {out}");
    ensure!(
        !node.process.logged(&[PASSWORD]) && !node.process.logged(&["builder-of-things"]),
        "a password was logged"
    );
    Ok(())
}

/// A SASL_SSL source (another node) with SCRAM-SHA-512: a link with the right password
/// from a file mirrors byte-identical; one with a wrong password from the environment
/// shows the source's refusal as its error in `/v1/status` and keeps retrying.
#[test]
fn a_link_mirrors_a_sasl_ssl_source_and_reports_a_wrong_password() -> Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let users = add_user(dir.path())?;
    let source_config = NodeConfig::owner().topic("a_orders", 2).admin().kafka_sasl(
        &["SCRAM-SHA-512", "PLAIN"],
        &users,
        DELAY,
        false,
    );
    let source = Node::start(&pki.listener(source_config, false))?;
    let ca = pki.ca();
    let login = Login::ssl("SCRAM-SHA-512", &ca);
    let written = run(
        Lib::Confluent,
        Mode::Produce,
        source.kafka,
        "a_orders",
        300,
        &login,
    )?;
    ensure!(written == "300", "produced {written}");

    let password_file = dir.path().join("link-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n"))?;
    let from_file = format!("password_file = {:?}", password_file.display().to_string());
    let mirror = Node::start(&NodeConfig::linked_to(source.kafka).link(|l| {
        l.tls(&ca, None)
            .sasl("SCRAM-SHA-512", USER, &from_file, false)
    }))?;
    for partition in 0..2 {
        let expected = sasl_batches(source.kafka, &ca, partition)?;
        ensure!(
            !expected.is_empty(),
            "a_orders-{partition} is empty at the source"
        );
        eventually(Duration::from_secs(30), || {
            let copied =
                RawClient::connect(mirror.kafka)?.read_batches("a_orders", partition, 0)?;
            Ok((copied == expected).then_some(()))
        })?;
    }
    ensure!(
        !mirror.process.logged(&[PASSWORD]),
        "the link's password was logged"
    );

    let wrong = NodeConfig::linked_to(source.kafka).admin().link(|l| {
        l.tls(&ca, None).sasl(
            "SCRAM-SHA-512",
            USER,
            "password_env = \"LINK_SECRET\"",
            false,
        )
    });
    let wrong = Node::start_with_env(&wrong, &[("LINK_SECRET", "not-the-password")])?;
    let admin = wrong.admin.context("no admin listener")?.to_string();
    eventually(Duration::from_secs(30), || {
        let out =
            shadowlink(&["status", "--admin", &admin, "--format", "json"])?.stdout("status")?;
        let seen = out.contains("SASL authentication to") && out.contains("Authentication failed");
        Ok(seen.then_some(out))
    })
    .and_then(|out| {
        ensure!(
            !out.contains("not-the-password"),
            "the password is in /v1/status: {out}"
        );
        Ok(())
    })?;
    let copied = RawClient::connect(wrong.kafka)?.read_batches("a_orders", 0, 0);
    ensure!(
        copied.as_ref().map_or(true, Vec::is_empty),
        "mirrored with a wrong password"
    );
    // The link keeps trying: the source counts further refused logins.
    let refused = authentications(&source, "SCRAM-SHA-512", "failure")?;
    eventually(Duration::from_secs(30), || {
        let now = authentications(&source, "SCRAM-SHA-512", "failure")?;
        Ok((now > refused).then_some(()))
    })
}

/// The batches of `a_orders` `partition` as the SASL_SSL source serves them.
fn sasl_batches(source: SocketAddr, ca: &Path, partition: i32) -> Result<Vec<(i64, bytes::Bytes)>> {
    let mut client = RawClient::connect_tls(source, ca)?;
    client.authenticate_plain(USER, PASSWORD)?;
    client.read_batches("a_orders", partition, 0)
}

/// A verified TLS client certificate makes the connection's principal its subject; a
/// SASL login replaces it with the user.
#[test]
fn the_principal_is_the_tls_subject_or_the_sasl_user() -> Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let users = add_user(dir.path())?;
    let mutual = pki.listener(NodeConfig::owner().topic("t_mtls", 2), true);
    let debug = [("RUST_LOG", "info,shadowlink::server=debug")];
    let node = Node::start_with_env(&mutual, &debug)?;
    let (addr, ca_path) = (node.kafka.to_string(), pki.ca().display().to_string());
    let cert = pki.path("client.pem").display().to_string();
    let key = pki.path("client.key").display().to_string();
    let args = [
        "connect", &addr, "t_mtls", "0", "--ca", &ca_path, "--cert", &cert, "--key", &key,
    ];
    let out = python("tls_client.py", &args)?;
    ensure!(out.trim() == "connected", "{out}");
    eventually(Duration::from_secs(10), || {
        let seen = node
            .process
            .logged(&["TLS client connected", "principal=User:CN="]);
        Ok(seen.then_some(()))
    })?;

    let node = Node::start(&sasl_ssl(&pki, &users, NodeConfig::owner().topic("t", 1)))?;
    let ca = pki.ca();
    let login = Login::ssl("SCRAM-SHA-512", &ca);
    let out = run(Lib::Confluent, Mode::Connect, node.kafka, "t", 0, &login)?;
    ensure!(out == "connected", "{out}");
    eventually(Duration::from_secs(10), || {
        let seen = node
            .process
            .logged(&["client authenticated", "principal=User:alice"]);
        Ok(seen.then_some(()))
    })
}

/// A source that limits SASL sessions (KIP-368, as Kafka's `connections.max.reauth.ms`)
/// closes a connection at its first request after the session ended. The link moves to
/// a new connection, logged in again, before that happens, so it never loses the
/// source.
#[test]
fn a_link_logs_in_again_before_the_source_session_ends() -> Result<()> {
    let records = vec![(None, Some(b"v".as_slice())); 5];
    let batches: Vec<bytes::Bytes> = (0..4)
        .map(|i| build_batch(i * 5, 0, &records, 1_000 + i))
        .collect();
    let log = FakeLog {
        batches: batches.clone(),
        ..FakeLog::default()
    };
    let topics = BTreeMap::from([("a_session".to_string(), vec![log])]);
    let source = FakeBroker::start_with_session(topics, Some(Duration::from_secs(3)))?;
    let password = "password_env = \"SESSION_SECRET\"";
    let config = NodeConfig::linked_to(source.addr)
        .admin()
        .link(|l| l.sasl("PLAIN", USER, password, true));
    let node = Node::start_with_env(&config, &[("SESSION_SECRET", PASSWORD)])?;
    eventually(Duration::from_secs(30), || {
        let copied = RawClient::connect(node.kafka)?.read_batches("a_session", 0, 0)?;
        let copied: Vec<bytes::Bytes> = copied.into_iter().map(|(_, b)| b).collect();
        Ok((copied == batches).then_some(()))
    })?;
    let first = source.logins();
    // Two session lifetimes at least: every connection has been replaced twice.
    eventually(Duration::from_secs(30), || {
        Ok((source.logins() >= first + 4).then_some(()))
    })?;
    let (_, body) = http_get(node.admin.context("no admin listener")?, "/metrics")?;
    let lost = body.lines().find(|l| {
        l.starts_with("shadowlink_fetch_errors_total{") && l.contains("\"connection_lost\"")
    });
    let lost = lost.context("no connection_lost series")?;
    ensure!(
        lost.ends_with(" 0"),
        "fetches lost their connection: {lost}"
    );
    ensure!(
        !node.process.logged(&["link lost"]),
        "the link lost its source"
    );
    Ok(())
}
