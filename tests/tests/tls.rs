//! TLS: a TLS-only Kafka listener served to librdkafka, mutual TLS, and a link that
//! mirrors over TLS byte-identical. Certificates are made at test time with rcgen.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use shadowlink_tests::pki::Pki;
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::{check_config, eventually, python, Link, Node, NodeConfig};

/// Runs `tls_client.py` against `node`, trusting `ca`, with a client certificate when
/// `client` names this PKI's.
fn tls_client(
    mode: &str,
    node: SocketAddr,
    topic: &str,
    count: usize,
    ca: &Path,
    client: Option<&Pki>,
) -> Result<String> {
    let ca = ca.display().to_string();
    let count = count.to_string();
    let addr = node.to_string();
    let mut args = vec![mode, &addr, topic, &count, "--ca", &ca, "--partitions", "2"];
    let (cert, key);
    if let Some(pki) = client {
        cert = pki.path("client.pem").display().to_string();
        key = pki.path("client.key").display().to_string();
        args.extend(["--cert", &cert, "--key", &key]);
    }
    Ok(python("tls_client.py", &args)?.trim().to_string())
}

/// A node whose listener is TLS-only serves librdkafka over `security.protocol=SSL`,
/// and a plaintext client on the same port gets no Kafka answer.
#[test]
fn librdkafka_produces_and_consumes_over_a_tls_only_listener() -> Result<()> {
    let pki = Pki::new()?;
    let node = Node::start(&pki.listener(NodeConfig::owner().topic("t_tls", 2), false))?;
    let produced = tls_client("produce", node.kafka, "t_tls", 300, &pki.ca(), None)?;
    ensure!(produced == "300", "produced {produced}");
    let consumed = tls_client("consume", node.kafka, "t_tls", 300, &pki.ca(), None)?;
    ensure!(consumed == "300", "consumed {consumed}");
    let plaintext = RawClient::connect(node.kafka);
    ensure!(
        plaintext.is_err(),
        "a plaintext client negotiated versions over TLS"
    );
    eventually(Duration::from_secs(10), || {
        Ok(node.process.logged(&["TLS handshake failed"]).then_some(()))
    })?;
    let consumed = tls_client("consume", node.kafka, "t_tls", 300, &pki.ca(), None)?;
    ensure!(
        consumed == "300",
        "after a bad handshake, consumed {consumed}"
    );
    Ok(())
}

/// With `require_client_cert`, a client without a certificate, or with one another CA
/// signed, is refused, and one with a certificate from the configured CA is served.
#[test]
fn mutual_tls_refuses_clients_without_a_trusted_certificate() -> Result<()> {
    let pki = Pki::new()?;
    let stranger = Pki::new()?;
    let node = Node::start(&pki.listener(NodeConfig::owner().topic("t_mtls", 2), true))?;
    let anonymous = tls_client("connect", node.kafka, "t_mtls", 0, &pki.ca(), None)?;
    ensure!(
        anonymous.starts_with("refused"),
        "without a certificate: {anonymous}"
    );
    let foreign = tls_client(
        "connect",
        node.kafka,
        "t_mtls",
        0,
        &pki.ca(),
        Some(&stranger),
    )?;
    ensure!(
        foreign.starts_with("refused"),
        "with a foreign certificate: {foreign}"
    );
    let produced = tls_client("produce", node.kafka, "t_mtls", 100, &pki.ca(), Some(&pki))?;
    ensure!(produced == "100", "produced {produced}");
    let consumed = tls_client("consume", node.kafka, "t_mtls", 100, &pki.ca(), Some(&pki))?;
    ensure!(consumed == "100", "consumed {consumed}");
    Ok(())
}

/// Every batch of `topic` on `mirror` (plaintext) equals the source's (TLS), byte for
/// byte, once the mirror has caught up.
fn batches_match(source: SocketAddr, ca: &Path, mirror: SocketAddr, topic: &str) -> Result<()> {
    for partition in 0..2 {
        let expected = RawClient::connect_tls(source, ca)?.read_batches(topic, partition, 0)?;
        ensure!(
            !expected.is_empty(),
            "{topic}-{partition} is empty at the source"
        );
        eventually(Duration::from_secs(30), || {
            let copied = RawClient::connect(mirror)?.read_batches(topic, partition, 0)?;
            Ok((copied == expected).then_some(()))
        })?;
    }
    Ok(())
}

/// A link mirrors a TLS-only source over TLS, byte-identical; a link that does not trust
/// the source's CA logs the certificate error and mirrors nothing.
#[test]
fn a_link_mirrors_a_tls_source_and_refuses_an_untrusted_one() -> Result<()> {
    let pki = Pki::new()?;
    let source = Node::start(&pki.listener(NodeConfig::owner().topic("a_orders", 2), false))?;
    let produced = tls_client("produce", source.kafka, "a_orders", 400, &pki.ca(), None)?;
    ensure!(produced == "400", "produced {produced}");
    let mirror =
        Node::start(&NodeConfig::linked_to(source.kafka).link(|l: Link| l.tls(&pki.ca(), None)))?;
    batches_match(source.kafka, &pki.ca(), mirror.kafka, "a_orders")?;

    let stranger = Pki::new()?;
    let untrusting = Node::start(
        &NodeConfig::linked_to(source.kafka).link(|l: Link| l.tls(&stranger.ca(), None)),
    )?;
    eventually(Duration::from_secs(30), || {
        Ok(untrusting
            .process
            .logged(&["link lost", "from-a", "invalid peer certificate"])
            .then_some(()))
    })?;
    let copied = RawClient::connect(untrusting.kafka)?.read_batches("a_orders", 0, 0);
    ensure!(
        copied.as_ref().map_or(true, Vec::is_empty),
        "mirrored from an untrusted source: {copied:?}"
    );
    Ok(())
}

/// `server_name` replaces the broker's host in certificate checks: a name the source's
/// certificate does not carry is refused, one it carries works although the link
/// connects by IP address.
#[test]
fn a_link_checks_the_configured_server_name() -> Result<()> {
    let pki = Pki::new()?;
    let source = Node::start(&pki.listener(NodeConfig::owner().topic("a_names", 2), false))?;
    let produced = tls_client("produce", source.kafka, "a_names", 50, &pki.ca(), None)?;
    ensure!(produced == "50", "produced {produced}");
    let wrong = Node::start(
        &NodeConfig::linked_to(source.kafka).link(|l| l.tls(&pki.ca(), Some("elsewhere.test"))),
    )?;
    eventually(Duration::from_secs(30), || {
        Ok(wrong
            .process
            .logged(&["link lost", "not valid for name", "elsewhere.test"])
            .then_some(()))
    })?;
    let named = Node::start(
        &NodeConfig::linked_to(source.kafka).link(|l| l.tls(&pki.ca(), Some("localhost"))),
    )?;
    batches_match(source.kafka, &pki.ca(), named.kafka, "a_names")
}

/// A TLS file that cannot be loaded stops `check-config` and `run` with the key naming
/// it; a complete TLS config passes.
#[test]
fn an_unloadable_tls_file_is_a_start_up_error_naming_its_key() -> Result<()> {
    let pki = Pki::new()?;
    let data = Path::new("/tmp/unused");
    let good = pki.listener(NodeConfig::owner(), true);
    let out = check_config(&good.render(Some(data)))?;
    ensure!(out.success(), "a complete TLS config: {out:?}");
    let missing = pki.path("missing.key");
    let listener = NodeConfig::owner().kafka_tls(&pki.path("server.pem"), &missing, None, false);
    let out = check_config(&listener.render(Some(data)))?;
    ensure!(
        !out.success() && out.stderr.contains("`kafka.tls.key`"),
        "{out:?}"
    );
    ensure!(out.stderr.contains("missing.key"), "{out:?}");
    let linked = NodeConfig::linked_to("127.0.0.1:9092".parse()?).link(|l| l.tls(&missing, None));
    let out = check_config(&linked.render(Some(data)))?;
    ensure!(
        !out.success() && out.stderr.contains("`links[0].tls.ca`"),
        "{out:?}"
    );
    ensure!(
        Node::start(&listener).is_err(),
        "the node started without its key"
    );
    Ok(())
}
