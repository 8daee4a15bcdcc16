//! `shadowlink demo`, the README's first command: the real binary, no arguments, no
//! external software; it must verify every record and exit 0 well inside 90 s.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use shadowlink_tests::shadowlink_command;

/// The number right after `label` in `line`, e.g. `12 records` after "VERIFIED: ".
fn number_after(line: &str, label: &str) -> Option<u64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn demo_runs_the_pair_fails_over_and_verifies_every_record() -> Result<()> {
    let started = Instant::now();
    let mut child = shadowlink_command(&["demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start shadowlink demo")?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("shadowlink demo did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    ensure!(
        status.success(),
        "shadowlink demo failed ({status}):\n{stdout}\n{stderr}"
    );
    let verified = stdout
        .lines()
        .find(|l| l.starts_with("VERIFIED: "))
        .with_context(|| format!("no verification summary in:\n{stdout}"))?;
    let acked = number_after(verified, "VERIFIED: ").context("acknowledged count")?;
    let once = number_after(verified, "acknowledged, ").context("present count")?;
    let shared = number_after(verified, "partitions; ").context("shared count")?;
    ensure!(acked > 0, "no record acknowledged: {verified}");
    ensure!(once > 0, "no record present: {verified}");
    ensure!(shared > 0, "no record compared across A and B: {verified}");
    ensure!(
        verified.contains("offsets contiguous in 8 of 8 partitions"),
        "{verified}"
    );
    ensure!(
        stdout.lines().any(|l| l.starts_with("RPO achieved: ")),
        "no RPO line in:\n{stdout}"
    );
    ensure!(
        stdout.contains("failed_over, writable from offset"),
        "no failover report in:\n{stdout}"
    );
    // The report bounds what the link could not see, not only what it knew.
    let total = stdout
        .lines()
        .find(|l| l.starts_with("  total: "))
        .with_context(|| format!("no failover total in:\n{stdout}"))?;
    ensure!(
        total.contains(" of writes unconfirmed (about ") && total.contains(": at most "),
        "no bound on unconfirmed writes in {total:?}"
    );
    ensure!(
        stdout
            .lines()
            .filter(|l| l.contains("failed_over, writable from offset"))
            .all(|l| l.contains(" s), up to ~") && l.ends_with(" records)")),
        "a partition without its unconfirmed writes in:\n{stdout}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "the demo took {:?}, over its 60 s promise",
        started.elapsed()
    );
    Ok(())
}
