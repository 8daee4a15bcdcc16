//! `shadowlink demo --nodes 3`: the real binary starts etcd, region A and a three-node
//! region B, kills a node that leads partitions with SIGKILL, and must verify every
//! record and the replacement replicas, report how long leadership took to move, and
//! leave no process behind.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use shadowlink_tests::{shadowlink, shadowlink_bin, shadowlink_command};

/// The number right after `label` in `line`, e.g. `12 records` after "VERIFIED: ".
fn number_after(line: &str, label: &str) -> Option<f64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Runs `shadowlink demo --nodes 3` to its end; returns its stdout.
fn run_demo() -> Result<String> {
    shadowlink_bin();
    let started = Instant::now();
    let mut child = shadowlink_command(&["demo", "--nodes", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start shadowlink demo --nodes 3")?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().context("stdout")?));
    let stderr = drain(Box::new(child.stderr.take().context("stderr")?));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            bail!("shadowlink demo --nodes 3 did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    ensure!(
        status.success(),
        "shadowlink demo --nodes 3 failed ({status}):\n{stdout}\n{stderr}"
    );
    Ok(stdout)
}

fn line<'a>(stdout: &'a str, prefix: &str) -> Result<&'a str> {
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .with_context(|| format!("no line starting {prefix:?} in:\n{stdout}"))
}

#[test]
fn a_three_node_region_survives_a_node_killed_under_load() -> Result<()> {
    let stdout = run_demo()?;
    let verified = line(&stdout, "VERIFIED: ")?;
    let records = number_after(verified, "VERIFIED: ").context("records")?;
    ensure!(records > 0.0, "nothing verified: {verified}");
    let replacements = number_after(verified, "bootstrap; ").context("replicas")?;
    ensure!(replacements >= 1.0, "no replacement replica: {verified}");
    ensure!(
        verified.contains("replacement replicas byte-identical to A"),
        "{verified}"
    );
    // Four partitions, each read back in full, and each replacement replica compared.
    let read_back = stdout
        .lines()
        .filter(|l| l.ends_with(", each once"))
        .count();
    ensure!(
        read_back == 4,
        "{read_back} partitions read back:\n{stdout}"
    );
    let compared = stdout
        .lines()
        .filter(|l| l.contains("(replacement): offsets 0.."))
        .count();
    ensure!(
        compared as f64 == replacements,
        "{compared} replicas compared, {replacements} reported:\n{stdout}"
    );
    let killed = line(&stdout, "killing node ")?;
    ensure!(killed.contains("with SIGKILL: it leads a_"), "{killed}");
    // The node is killed without revoking its lease: leadership moves when the 3 s lease
    // expires, not before, and not long after.
    let loss = line(&stdout, "NODE LOSS: ")?;
    let moved = number_after(loss, "leadership moved after ").context("moved")?;
    let read_again = number_after(loss, "the consumer read again after ").context("read")?;
    ensure!((2.0..15.0).contains(&moved), "{loss}");
    ensure!((moved - 0.5..15.0).contains(&read_again), "{loss}");
    // etcd and every node were stopped with the demo.
    for listener in listeners(&stdout)? {
        let gone = TcpStream::connect_timeout(&listener, Duration::from_millis(200)).is_err();
        ensure!(gone, "{listener} still answers after the demo ended");
    }
    Ok(())
}

/// etcd's and region B's Kafka addresses, as the demo printed them.
fn listeners(stdout: &str) -> Result<Vec<SocketAddr>> {
    let etcd = line(stdout, "etcd: http://")?
        .trim_start_matches("etcd: http://")
        .split_whitespace()
        .next()
        .context("etcd address")?;
    let mut out = vec![etcd.parse()?];
    for node in stdout.lines().filter(|l| l.starts_with("region B node ")) {
        let addr = node.split_whitespace().nth(5).context("node address")?;
        out.push(addr.parse()?);
    }
    ensure!(out.len() == 4, "not etcd and three nodes: {out:?}");
    Ok(out)
}

#[test]
fn two_nodes_are_refused_with_the_reason() -> Result<()> {
    let ran = shadowlink(&["demo", "--nodes", "2"])?;
    ensure!(!ran.success(), "demo --nodes 2 ran: {ran:?}");
    ensure!(
        format!("{ran:?}").contains("no node to place a replacement replica on"),
        "{ran:?}"
    );
    Ok(())
}
