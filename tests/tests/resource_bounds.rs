//! The node-wide budget for request bytes: frames that claim far more than they send
//! cost the node what arrived, not what they claim; over budget, reading waits and
//! resumes as bytes are given back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shadowlink_tests::{eventually, python, until, Client, Node, NodeConfig};

const MIB: usize = 1024 * 1024;

/// Connections opened by `claim_frames.py`, held open until [`Claims::close`] or drop.
struct Claims {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Claims {
    /// `connections` connections to `kafka`, each declaring a `claim`-byte frame and
    /// sending `send` bytes of it; returns once all have sent.
    fn open(kafka: SocketAddr, connections: usize, claim: usize, send: usize) -> Result<Claims> {
        let mut child = Client::Python
            .command(
                "claim_frames.py",
                &[
                    &kafka.to_string(),
                    &connections.to_string(),
                    "--claim",
                    &claim.to_string(),
                    "--send",
                    &send.to_string(),
                ],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().context("piped stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != format!("open {connections}") {
            let _ = child.kill();
            bail!("claim_frames.py printed {line:?}");
        }
        Ok(Claims { child, stdout })
    }

    /// Closes every connection and waits for the script to end.
    fn close(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        let status = self.child.wait()?;
        if !status.success() || rest.trim() != "closed" {
            bail!("claim_frames.py ended with {status}: {rest:?}");
        }
        Ok(())
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the unlabelled metric `name` on the node's admin listener.
fn metric(admin: SocketAddr, name: &str) -> Result<f64> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no {name} in /metrics"))?;
    Ok(value.trim().parse()?)
}

/// A `/proc/PID/status` field in bytes (`VmRSS`, `VmSize`).
fn proc_bytes(pid: u32, field: &str) -> Result<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix(" kB"))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kib.trim().parse::<usize>()? * 1024)
}

#[test]
fn ten_thousand_frames_claiming_100_mib_cost_what_arrived_and_a_consumer_is_still_served(
) -> Result<()> {
    // The budget admits one 100 MiB request (the default kafka.max_request_bytes).
    let budget = 101 * MIB;
    let config = NodeConfig::owner()
        .admin()
        .max_connections(10_100)
        .request_memory_bytes(budget)
        .topic("b_owned", 1);
    let node = Node::start(&config)?;
    let admin = node.admin.context("the node has an admin listener")?;
    let kafka = node.kafka.to_string();
    let produced = python("produce_owned.py", &["confluent", &kafka, "b_owned", "50"])?;
    assert_eq!(produced.trim(), "50");
    let pid = node.process.pid();
    let rss_before = proc_bytes(pid, "VmRSS")?;

    let claims = Claims::open(node.kafka, 10_000, 100 * MIB, 16)?;
    let connected = until(
        Duration::from_secs(60),
        || metric(admin, "shadowlink_kafka_client_connections"),
        |n| *n >= 10_000.0,
    )?;
    assert!(connected <= 10_100.0, "{connected}");
    let consumed = python("consume.py", &[&kafka, "b_owned", "50"])?;
    assert_eq!(consumed.trim(), "50", "a consumer among the stalled frames");
    let reserved = metric(admin, "shadowlink_kafka_request_bytes_reserved")?;
    assert!(
        reserved > 0.0 && reserved <= budget as f64,
        "{reserved} bytes reserved"
    );
    let rss = proc_bytes(pid, "VmRSS")?;
    assert!(
        rss < rss_before + budget,
        "RSS grew from {rss_before} to {rss} bytes, beyond the {budget}-byte budget"
    );
    // 10,000 claims of 100 MiB would map about 1 TB were the claimed sizes allocated.
    let mapped = proc_bytes(pid, "VmSize")?;
    assert!(mapped < 16 * 1024 * MIB, "{mapped} bytes mapped");

    claims.close()?;
    until(
        Duration::from_secs(30),
        || metric(admin, "shadowlink_kafka_request_bytes_reserved"),
        |r| *r == 0.0,
    )?;
    Ok(())
}

#[test]
fn over_budget_reading_waits_and_resumes_when_bytes_are_given_back() -> Result<()> {
    let (max_request, budget) = (100_000, 160 * 1024);
    let config = NodeConfig::owner()
        .admin()
        .max_request_bytes(max_request)
        .request_memory_bytes(budget);
    let node = Node::start(&config)?;
    let admin = node.admin.context("the node has an admin listener")?;
    let reserved = || metric(admin, "shadowlink_kafka_request_bytes_reserved");
    let sent = 90_000;

    let first = Claims::open(node.kafka, 1, max_request, sent)?;
    until(Duration::from_secs(30), reserved, |r| *r >= sent as f64)?;
    let second = Claims::open(node.kafka, 1, max_request, sent)?;
    // The second frame is read only as far as the budget allows, then waits.
    until(Duration::from_secs(30), reserved, |r| {
        *r > max_request as f64
    })?;
    let connections = metric(admin, "shadowlink_kafka_client_connections")?;
    assert_eq!(connections, 2.0, "the waiting connection stays open");
    let held = eventually(Duration::from_secs(2), || {
        let r = reserved()?;
        Ok((r > budget as f64 || r >= 2.0 * sent as f64).then_some(r))
    });
    assert!(held.is_err(), "both frames were buffered: {held:?}");

    first.close()?;
    // Its bytes given back, the second connection reads the rest of what it sent.
    until(Duration::from_secs(30), reserved, |r| {
        *r >= sent as f64 && *r <= max_request as f64 + 4.0
    })?;
    second.close()?;
    until(Duration::from_secs(30), reserved, |r| *r == 0.0)?;
    Ok(())
}
