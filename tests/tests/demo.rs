//! `shadowlink demo`, the README's first command: the real binary, no arguments, no
//! external software; it must verify every record and exit 0 well inside 90 s.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use serde_json::Value;
use shadowlink_tests::{shadowlink_bin, shadowlink_command};

/// The number right after `label` in `line`, e.g. `12 records` after "VERIFIED: ".
fn number_after(line: &str, label: &str) -> Option<u64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn demo_runs_the_drill_and_accounts_for_every_record() -> Result<()> {
    // Built before the clock starts: the promise is the demo's, not the build's.
    shadowlink_bin();
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
    check_accounting(&stdout)?;
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
    check_way_back(&stdout)?;
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "the demo took {:?}, over its 60 s promise",
        started.elapsed()
    );
    Ok(())
}

/// The closing summary: every acknowledged record on its final owner or in the diverged
/// file, none lost, some diverged (A wrote while cut off from B).
fn check_accounting(stdout: &str) -> Result<()> {
    let verified = stdout
        .lines()
        .find(|l| l.starts_with("VERIFIED: "))
        .with_context(|| format!("no verification summary in:\n{stdout}"))?;
    let number = |label: &str| {
        number_after(verified, label).with_context(|| format!("no {label:?} in {verified:?}"))
    };
    let acked = number("VERIFIED: ")?;
    let on_owner = number("acknowledged: ")?;
    let diverged = number("acknowledged offsets, ")?;
    let lost = number("diverged file, ")?;
    let shared = number("partitions; ")?;
    ensure!(on_owner > 0, "no record on its final owner: {verified}");
    ensure!(diverged > 0, "no record diverged: {verified}");
    ensure!(
        lost == 0 && acked == on_owner + diverged,
        "records unaccounted for: {verified}"
    );
    ensure!(shared > 0, "no record compared across A and B: {verified}");
    ensure!(
        verified.contains("offsets contiguous in 8 of 8 partitions"),
        "{verified}"
    );
    let files = diverged_files(stdout)?;
    let result = check_diverged_files(&files, diverged);
    for dir in files.iter().filter_map(|(path, _)| path.parent()) {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// The diverged files the demo names, with the record count it prints for each.
fn diverged_files(stdout: &str) -> Result<Vec<(PathBuf, u64)>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("diverged file: "))
        .map(|rest| {
            let (path, count) = rest.rsplit_once(" (").context("no record count")?;
            let count = number_after(count, "").context("record count")?;
            Ok((PathBuf::from(path), count))
        })
        .collect()
}

/// Each file holds as many records as printed, all written by A's first producer (keys
/// `a:{topic}-{partition}:{n}`) at their partition and offset; together, the diverged count.
fn check_diverged_files(files: &[(PathBuf, u64)], diverged: u64) -> Result<()> {
    ensure!(!files.is_empty(), "no diverged file named");
    let mut total = 0;
    for (path, count) in files {
        let lines = diverged_lines(path)?;
        ensure!(
            lines == *count,
            "{}: {lines} records, {count} printed",
            path.display()
        );
        total += lines;
    }
    ensure!(
        total == diverged,
        "the files hold {total} records, {diverged} accounted as diverged"
    );
    Ok(())
}

fn diverged_lines(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut lines = 0;
    for line in text.lines() {
        let record: Value = serde_json::from_str(line)?;
        let key = record["key"].as_str().context("key")?;
        let key = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(key)?)?;
        let partition = record["partition"].as_i64().context("partition")?;
        let topic = record["topic"].as_str().context("topic")?;
        ensure!(
            key.starts_with(&format!("a:{topic}-{partition}:")),
            "{line}: not a record of A's first producer"
        );
        ensure!(record["offset"].is_i64(), "{line}: no offset");
        lines += 1;
    }
    Ok(lines)
}

/// The way back as the demo prints it: A fenced and refusing writes, the fail-back
/// report, and a switchover that paused writes without putting a record at risk.
fn check_way_back(stdout: &str) -> Result<()> {
    ensure!(
        stdout.contains("a_orders, a_shipments: fenced_by_failover"),
        "A did not report a_* fenced:\n{stdout}"
    );
    ensure!(
        stdout.contains("a producer on A: a_orders-0: produce refused with error code"),
        "no refused write on the fenced A:\n{stdout}"
    );
    ensure!(
        stdout.contains("FAILOVER_POINT") && stdout.contains("now follow link from-b"),
        "no fail-back report:\n{stdout}"
    );
    let switchover = stdout
        .lines()
        .find(|l| l.starts_with("switchover of a_* back to A: "))
        .with_context(|| format!("no switchover summary in:\n{stdout}"))?;
    let paused = number_after(switchover, "writes paused for ").context("paused ms")?;
    ensure!(
        switchover.ends_with("records at risk 0"),
        "records at risk in the switchover: {switchover}"
    );
    ensure!(paused < 10_000, "writes paused {paused} ms: {switchover}");
    Ok(())
}
