//! The demo's closing verification: every partition read back from its final owner
//! (`a_*` from A, home again; `b_*` from B), B's copy of `a_*`, every consumer's copy,
//! and the accounting of every acknowledged record by key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::anyhow;

use shadowlink::admin::switchover::Outcome;
use shadowlink::daemon::Daemon;

use super::account::{account, read_diverged, Accounts, Keys};
use super::client::{DemoClient, Read};
use super::pair::{A_TOPICS, B_TOPICS, PARTITIONS};
use super::verify::{self, Acked};
use super::workload::{lock, Ledger, Ledgers, TopicPartition};

/// What the drill did, as its reports said.
pub struct Drilled {
    /// Per `a_*` partition, where B's failover made it writable.
    pub failover_at: BTreeMap<TopicPartition, i64>,
    /// The failover's records and seconds at risk.
    pub at_risk: (i64, f64),
    /// The fail-back's diverged files, copied out of the data directory.
    pub diverged_files: Vec<PathBuf>,
    pub switchover: Outcome,
}

#[derive(Default)]
struct Checked {
    partitions: usize,
    shared: usize,
}

/// How much of a diverged file's first line is printed.
const SHOWN: usize = 160;

/// Reads everything back, checks it and prints the totals; an error names the first
/// record out of place, or the acknowledged records found nowhere.
pub async fn verify(
    a: &Daemon,
    b: &Daemon,
    ledgers: &Ledgers,
    drilled: &Drilled,
) -> anyhow::Result<()> {
    println!("verification: a_* read back from A (their owner again), b_* from B, B's copy of a_* too, all from offset 0");
    let owner = read_back(
        a,
        &A_TOPICS,
        read_back(b, &B_TOPICS, BTreeMap::new()).await?,
    )
    .await?;
    let b_copy = read_back(b, &A_TOPICS, BTreeMap::new()).await?;
    let checked = check_all(&owner, &b_copy, ledgers, &drilled.failover_at).map_err(fail)?;
    let mut diverged = Keys::new();
    let mut files = Vec::new();
    for file in &drilled.diverged_files {
        files.push((file, read_diverged(file, &mut diverged)?));
    }
    let owner: Keys = owner
        .into_iter()
        .map(|(tp, read)| (tp, read.into_iter().collect()))
        .collect();
    let accounts = {
        let acked = [&ledgers.acked_a, &ledgers.acked_b, &ledgers.acked_home].map(lock);
        let acked: Vec<&Keys> = acked.iter().map(|l| &l.acked).collect();
        account(&acked, &owner, &diverged).map_err(fail)?
    };
    if accounts.acked == 0 {
        return Err(fail("no record was acknowledged".into()));
    }
    print_totals(&accounts, &checked, drilled);
    for (file, records) in files {
        println!("diverged file: {} ({records} records)", file.display());
        if let Some(first) = std::fs::read_to_string(file)?.lines().next() {
            let shown: String = first.chars().take(SHOWN).collect();
            let more = if shown.len() < first.len() { "…" } else { "" };
            println!("  first line: {shown}{more}");
        }
    }
    Ok(())
}

fn print_totals(accounts: &Accounts, checked: &Checked, drilled: &Drilled) {
    let lost = accounts.acked - accounts.on_owner - accounts.diverged;
    println!(
        "VERIFIED: {} records acknowledged: {} on their final owner at their acknowledged offsets, {} in the diverged file, {lost} lost; offsets contiguous in {} of {} partitions; {} records identical on A and B at the same offsets",
        accounts.acked,
        accounts.on_owner,
        accounts.diverged,
        checked.partitions,
        checked.partitions,
        checked.shared,
    );
    let outcome = &drilled.switchover;
    println!(
        "switchover of a_* back to A: writes paused for {} ms, records at risk {}",
        outcome.paused_ms, outcome.records_at_risk
    );
    let (at_risk, seconds) = drilled.at_risk;
    println!(
        "RPO achieved: {lost} records lost (failover reported {at_risk} at risk, {seconds:.3} s; fail-back saved {} for replay)",
        accounts.diverged
    );
}

/// Every partition of `topics` on `node` from offset 0, added to `out`.
async fn read_back(
    node: &Daemon,
    topics: &[&str],
    mut out: BTreeMap<TopicPartition, Vec<Read>>,
) -> anyhow::Result<BTreeMap<TopicPartition, Vec<Read>>> {
    let client = DemoClient::connect(&node.kafka_addr.to_string(), "demo-verify").await?;
    for topic in topics {
        for p in 0..PARTITIONS {
            let read = client.read_all(topic, p).await?;
            out.insert(TopicPartition::new(*topic, p), read);
        }
    }
    Ok(out)
}

/// Checks every partition read back from its final owner against what was
/// acknowledged, and every other copy against the owner's, offset by offset.
fn check_all(
    owner: &BTreeMap<TopicPartition, Vec<Read>>,
    b_copy: &BTreeMap<TopicPartition, Vec<Read>>,
    ledgers: &Ledgers,
    failover_at: &BTreeMap<TopicPartition, i64>,
) -> Result<Checked, String> {
    let (acked_a, acked_b, home) = (
        lock(&ledgers.acked_a),
        lock(&ledgers.acked_b),
        lock(&ledgers.acked_home),
    );
    let (seen_a, seen_b) = (lock(&ledgers.seen_a), lock(&ledgers.seen_b));
    let empty = Acked::new();
    let mut checked = Checked::default();
    for topic in A_TOPICS.iter().chain(B_TOPICS.iter()) {
        for p in 0..PARTITIONS {
            let tp = TopicPartition::new(*topic, p);
            let name = tp.to_string();
            let read = copy(owner, &tp);
            let of = |l: &Ledger| l.acked.get(&tp).unwrap_or(&empty).clone();
            let at = failover_at.get(&tp).copied();
            let line = match at {
                Some(at) => {
                    let acked = [of(&acked_a), of(&acked_b), of(&home)];
                    check_moved(&name, &read, &copy(b_copy, &tp), &acked, at)?
                }
                None => {
                    let n = verify::check_exact(&name, &read, &of(&acked_b))?;
                    format!("{n} records on B at offsets 0..{}, each once", last(n))
                }
            };
            let copies = Copies {
                a: copy(&seen_a.consumed, &tp),
                b: copy(&seen_b.consumed, &tp),
            };
            checked.shared += check_consumers(&name, &read, &copies, &of(&acked_a), at)?;
            println!("  {name}: {line}");
            checked.partitions += 1;
        }
    }
    Ok(checked)
}

/// An `a_*` partition: A's records below the failover point, B's from there, A's again
/// after the switchover, exactly; B's copy the same.
fn check_moved(
    name: &str,
    read: &[Read],
    b_copy: &[Read],
    [on_a, on_b, home]: &[Acked; 3],
    at: i64,
) -> Result<String, String> {
    let (mut expected, past) = verify::after_failover(on_a, at, on_b);
    expected.extend(home.iter().map(|(o, k)| (*o, k.clone())));
    let n = verify::check_exact(name, read, &expected)?;
    let as_read: Acked = read.iter().cloned().collect();
    verify::check_exact(&format!("{name} (B's copy)"), b_copy, &as_read)?;
    Ok(format!(
        "{n} records on A at offsets 0..{}, each once ({} from A up to the failover point, {} written on B, {} on A after the switchover); B's copy identical; {past} written on A past the failover point",
        last(n),
        on_a.range(..at).count(),
        on_b.len(),
        home.len(),
    ))
}

/// What each region's consumer read of one partition.
struct Copies {
    a: Vec<Read>,
    b: Vec<Read>,
}

/// A's consumer read A's copy until A stopped: the owner's where they share history
/// (below the failover point for `a_*`), A's own acknowledgements beyond it. B's
/// consumer read B's copy throughout, which is always a prefix of the final owner's.
/// Returns how many records A's consumer read identical to the final owner's.
fn check_consumers(
    name: &str,
    read: &[Read],
    copies: &Copies,
    on_a: &Acked,
    failover_at: Option<i64>,
) -> Result<usize, String> {
    let as_read: Acked = read.iter().cloned().collect();
    let limit = failover_at.unwrap_or(i64::MAX);
    let shared: Vec<Read> = copies
        .a
        .iter()
        .filter(|(o, _)| *o < limit)
        .cloned()
        .collect();
    let n = verify::check_prefix(&format!("{name} (A's copy)"), &shared, &as_read)?;
    if failover_at.is_some() {
        let name = format!("{name} (A's copy vs A's acknowledgements)");
        verify::check_prefix(&name, &copies.a, on_a)?;
    }
    verify::check_prefix(&format!("{name} (B's consumer)"), &copies.b, &as_read)?;
    Ok(n)
}

fn last(n: usize) -> usize {
    n.saturating_sub(1)
}

fn copy(consumed: &BTreeMap<TopicPartition, Vec<Read>>, tp: &TopicPartition) -> Vec<Read> {
    consumed.get(tp).cloned().unwrap_or_default()
}

fn fail(reason: String) -> anyhow::Error {
    anyhow!("verification FAILED: {reason}")
}
