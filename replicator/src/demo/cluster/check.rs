//! The closing checks of the cluster demo, once the producer has stopped: the consumer
//! read every acknowledged record exactly once at its offset, and every replacement
//! replica holds A's bytes, compared batch by batch by the replica's own node against A
//! (`shadowlink verify`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};

use shadowlink::admin::{client, verify as admin_verify};
use shadowlink::verify::{PartitionVerify, VerifyRequest};

use super::super::verify::{self, Acked};
use super::super::workload::{lock, Shared, TopicPartition};
use super::consumer::{self, SharedReads};
use super::nodes::{NodeProcess, LINK};
use super::SETTLE;

/// What the node loss measured.
pub struct Measured {
    pub victim: i32,
    /// From the kill until every surviving node named new leaders.
    pub moved: Duration,
    /// From the kill until the consumer had read every moved partition again.
    pub read_again: Duration,
    pub killed_at: Instant,
    /// Per partition the victim held, the node that replaced it.
    pub replacements: BTreeMap<TopicPartition, i32>,
}

/// The bytes and batches the replacement replicas were compared over.
#[derive(Default)]
struct Compared {
    batches: u64,
    bytes: u64,
}

/// Waits for the consumer and the replacement replicas to reach A's end, then checks
/// them; the error names the first partition out of place.
pub async fn closing(
    region: &[NodeProcess],
    acked: &Shared,
    reads: &SharedReads,
    measured: Measured,
) -> anyhow::Result<()> {
    let acked: BTreeMap<TopicPartition, Acked> = lock(acked).acked.clone();
    let end = |tp: &TopicPartition| {
        let last = acked.get(tp).and_then(|a| a.keys().next_back());
        last.map_or(0, |offset| offset + 1)
    };
    wait_until("the consumer read A's end", || async {
        let reads = consumer::lock(reads);
        Ok(acked.keys().all(|tp| reads.next(tp) >= end(tp)))
    })
    .await?;
    wait_until("the replacement replicas reached A's end", || async {
        for (tp, node) in &measured.replacements {
            if replica_end(node_admin(region, *node)?, tp).await? < end(tp) {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    println!(
        "producer stopped; the consumer and the replacement replicas hold A's last record {:.2} s after the kill",
        measured.killed_at.elapsed().as_secs_f64()
    );
    println!("verification: every record A acknowledged, read back from region B; each replacement replica against A");
    let total = check_reads(&acked, reads).map_err(fail)?;
    let compared = check_replacements(region, &measured.replacements, &end).await?;
    let bootstrap = region.first().map_or(0, |n| n.id);
    println!(
        "VERIFIED: {total} records acknowledged by A, each read from region B exactly once at its offset through node {bootstrap}'s bootstrap; {} replacement replicas byte-identical to A ({} batches, {} bytes compared)",
        measured.replacements.len(),
        compared.batches,
        compared.bytes,
    );
    println!(
        "NODE LOSS: node {} killed; leadership moved after {:.2} s, the consumer read again after {:.2} s",
        measured.victim,
        measured.moved.as_secs_f64(),
        measured.read_again.as_secs_f64(),
    );
    Ok(())
}

/// Every partition as read: exactly its acknowledged records at their offsets.
fn check_reads(
    acked: &BTreeMap<TopicPartition, Acked>,
    reads: &SharedReads,
) -> Result<usize, String> {
    if acked.values().all(|a| a.is_empty()) {
        return Err("no record was acknowledged".into());
    }
    let reads = consumer::lock(reads);
    let mut total = 0;
    for (tp, expected) in acked {
        let read = reads.consumed.get(tp).map_or(&[][..], Vec::as_slice);
        let n = verify::check_exact(&tp.to_string(), read, expected)?;
        println!(
            "  {tp}: {n} records read at offsets 0..{}, each once",
            n.saturating_sub(1)
        );
        total += n;
    }
    Ok(total)
}

/// Asks each replacement's node to compare its copy with A's, batch by batch.
async fn check_replacements(
    region: &[NodeProcess],
    replacements: &BTreeMap<TopicPartition, i32>,
    end: &impl Fn(&TopicPartition) -> i64,
) -> anyhow::Result<Compared> {
    ensure!(
        !replacements.is_empty(),
        "verification FAILED: no replacement replica was placed"
    );
    let mut compared = Compared::default();
    for (tp, node) in replacements {
        let admin = node_admin(region, *node)?.to_string();
        let request = VerifyRequest {
            topics: vec![tp.topic.clone()],
            partition: Some(tp.partition),
        };
        let report = tokio::task::spawn_blocking(move || {
            admin_verify::request(&admin, None, LINK, &request)
        })
        .await??;
        let verified = report
            .partitions
            .first()
            .context("an empty verify report")?;
        identical(verified, end(tp)).map_err(|why| fail(format!("{tp} on node {node}: {why}")))?;
        println!(
            "  {tp} on node {node} (replacement): offsets 0..{}, {} batches, {} bytes identical to A",
            verified.mirror_end - 1,
            verified.tally.batches,
            verified.tally.bytes
        );
        compared.batches += verified.tally.batches;
        compared.bytes += verified.tally.bytes;
    }
    Ok(compared)
}

/// The whole of A's partition, `0..end`, compared batch for batch with no difference.
fn identical(verified: &PartitionVerify, end: i64) -> Result<(), String> {
    if let Some(error) = &verified.error {
        return Err(format!("not verified: {error}"));
    }
    if let Some(m) = verified.mismatch() {
        return Err(format!("differs from A at offset {}: {}", m.offset, m.what));
    }
    let whole = verified.mirror_start == 0
        && verified.mirror_end == end
        && verified.source_hwm == Some(end)
        && verified.tally.batches > 0
        && verified.tally.matched == verified.tally.batches;
    if !whole {
        return Err(format!(
            "holds {}..{} of A's 0..{end} ({} of {} batches matched)",
            verified.mirror_start,
            verified.mirror_end,
            verified.tally.matched,
            verified.tally.batches
        ));
    }
    Ok(())
}

fn node_admin(region: &[NodeProcess], id: i32) -> anyhow::Result<&str> {
    let node = region.iter().find(|n| n.id == id);
    Ok(node
        .with_context(|| format!("no node {id}"))?
        .admin
        .as_str())
}

/// The end of `tp`'s copy on the node whose admin listener is `admin`.
async fn replica_end(admin: &str, tp: &TopicPartition) -> anyhow::Result<i64> {
    let admin = admin.to_string();
    let report = tokio::task::spawn_blocking(move || {
        let json = client::fetch_json(&admin, None)?;
        client::parse(&admin, &json)
    })
    .await??;
    let partition = report
        .links
        .iter()
        .filter(|l| l.name == LINK)
        .flat_map(|l| l.topics.iter())
        .filter(|t| t.name == tp.topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition == tp.partition);
    Ok(partition.map_or(0, |p| p.dst_hwm))
}

async fn wait_until<F, Fut>(what: &str, check: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("verification FAILED: not within {SETTLE:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fail(reason: String) -> anyhow::Error {
    anyhow!("verification FAILED: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink::verify::compare::{Mismatch, Tally};

    fn verified(start: i64, end: i64, batches: u64, matched: u64) -> PartitionVerify {
        PartitionVerify {
            topic: "a_orders".into(),
            partition: 0,
            mirror_start: start,
            mirror_end: end,
            source_start: Some(0),
            source_hwm: Some(10),
            gone_at_source: None,
            tally: Tally {
                batches,
                bytes: 100 * batches,
                matched,
                mismatched: batches - matched,
                first_mismatch: None,
            },
            error: None,
        }
    }

    #[test]
    fn a_replica_is_identical_only_when_all_of_a_matched() {
        assert_eq!(identical(&verified(0, 10, 2, 2), 10), Ok(()));
        // Short of A's end, starting past 0, or with a batch unmatched: not identical.
        assert!(identical(&verified(0, 8, 2, 2), 10).is_err());
        assert!(identical(&verified(5, 10, 1, 1), 10).is_err());
        assert!(identical(&verified(0, 10, 2, 1), 10).is_err());
        assert!(identical(&verified(0, 10, 0, 0), 10).is_err());
        let mut differs = verified(0, 10, 2, 1);
        differs.tally.first_mismatch = Some(Mismatch {
            offset: 5,
            what: "CRC".into(),
        });
        let error = identical(&differs, 10).unwrap_err();
        assert!(error.contains("offset 5"), "{error}");
        let mut failed = verified(0, 10, 2, 2);
        failed.error = Some("the source has no such partition".into());
        assert!(identical(&failed, 10).is_err());
    }
}
