//! `shadowlink demo`: a reciprocal pair on loopback, in this process, with no external
//! software. Region A owns `a_*`, region B owns `b_*`, each links from the other; a
//! producer per region and a consumer per node run while the pair's lag is printed; then
//! region A stops, B fails `a_*` over and keeps writing them, and the closing
//! verification reads every partition back from B.

mod client;
mod pair;
mod report;
mod verify;
mod workload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::sync::watch;

use client::{DemoClient, Read};
use pair::{A_TOPICS, B_TOPICS, PARTITIONS};
use shadowlink::daemon::Daemon;
use shadowlink::failover::{fail_over, FailoverRequest};
use verify::Acked;
use workload::{finish, lock, spawn_consumer, spawn_producer, Shared, TopicPartition};

/// How long both regions run, and how long B runs alone after the failover.
const BOTH_RUN: Duration = Duration::from_secs(8);
const SURVIVOR_RUN: Duration = Duration::from_secs(3);

/// Runs the demo on its own runtime; `keep_running` stops after setup and serves until
/// SIGINT/SIGTERM. The data directory is removed once every task holding a log is gone.
pub fn run(keep_running: bool) -> anyhow::Result<()> {
    let dir = pair::TempDir::new()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let outcome = runtime.block_on(demo(dir.path(), keep_running));
    drop(runtime);
    drop(dir);
    outcome
}

async fn demo(dir: &std::path::Path, keep_running: bool) -> anyhow::Result<()> {
    let (a, b) = pair::start(dir).await?;
    println!(
        "region A: kafka {} (owns a_orders, a_shipments; link from-b shadows b_*)",
        a.kafka_addr
    );
    println!(
        "region B: kafka {} (owns b_inventory, b_payments; link from-a shadows a_*)",
        b.kafka_addr
    );
    pair::wait_linked(&a, &b).await?;
    if keep_running {
        return serve_until_signal(a, b).await;
    }
    let outcome = drill(a, &b).await;
    b.shutdown().await?;
    outcome
}

/// Everything after setup; region A is shut down half way.
async fn drill(a: Daemon, b: &Daemon) -> anyhow::Result<()> {
    let a_ref = &a;
    let t0 = Instant::now();
    let (acked_a, acked_b): (Shared, Shared) = Default::default();
    let (seen_a, seen_b): (Shared, Shared) = Default::default();
    let (stop_pa, stop_pa_rx) = watch::channel(false);
    let (stop_pb, stop_pb_rx) = watch::channel(false);
    let (stop_ca, stop_ca_rx) = watch::channel(false);
    let (stop_cb, stop_cb_rx) = watch::channel(false);
    let (a_addr, b_addr) = (a_ref.kafka_addr.to_string(), b.kafka_addr.to_string());
    let producer_a = spawn_producer(a_addr.clone(), "a", &A_TOPICS, acked_a.clone(), stop_pa_rx);
    let producer_b = spawn_producer(
        b_addr.clone(),
        "b",
        &B_TOPICS,
        acked_b.clone(),
        stop_pb_rx.clone(),
    );
    let consumer_a = spawn_consumer(a_addr, "a", seen_a.clone(), stop_ca_rx);
    let consumer_b = spawn_consumer(b_addr.clone(), "b", seen_b.clone(), stop_cb_rx);
    println!("both regions producing; lag = records the other side has not mirrored yet");
    while t0.elapsed() < BOTH_RUN {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seen = lock(&seen_a).consumed_count() + lock(&seen_b).consumed_count();
        report::both(t0, a_ref, b, &acked_a, &acked_b, seen);
        if producer_a.is_finished() || producer_b.is_finished() {
            break;
        }
    }

    println!("stopping region A (producer, consumer, node)");
    finish(&stop_pa, producer_a)
        .await
        .context("region A's producer")?;
    finish(&stop_ca, consumer_a)
        .await
        .context("region A's consumer")?;
    a.shutdown().await.context("stopping region A")?;
    let outcomes = fail_over(
        &b.store,
        &b.status,
        "from-a",
        &FailoverRequest {
            all: true,
            topics: vec![],
        },
    )
    .map_err(|e| anyhow!("failover on B: {e}"))?;
    println!("failed a_* over to region B:");
    let (at_risk, seconds) = report::failover(&outcomes);
    let failover_at: BTreeMap<TopicPartition, i64> = outcomes
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (TopicPartition::new(t.topic.clone(), p.partition), p.dst_hwm))
        })
        .collect();

    let (stop_pf, stop_pf_rx) = watch::channel(false);
    let producer_f = spawn_producer(
        b_addr.clone(),
        "a-on-b",
        &A_TOPICS,
        acked_b.clone(),
        stop_pf_rx,
    );
    let t1 = Instant::now();
    while t1.elapsed() < SURVIVOR_RUN {
        tokio::time::sleep(Duration::from_secs(1)).await;
        report::survivor(t0, &acked_b, lock(&seen_b).consumed_count());
    }
    finish(&stop_pf, producer_f)
        .await
        .context("producer of a_* on region B")?;
    finish(&stop_pb, producer_b)
        .await
        .context("region B's producer")?;
    finish(&stop_cb, consumer_b)
        .await
        .context("region B's consumer")?;

    println!("verification: every partition read back from region B from offset 0");
    let client = DemoClient::connect(&b_addr, "demo-verify").await?;
    let mut on_b: BTreeMap<TopicPartition, Vec<Read>> = BTreeMap::new();
    for topic in A_TOPICS.iter().chain(B_TOPICS.iter()) {
        for p in 0..PARTITIONS {
            on_b.insert(
                TopicPartition::new(*topic, p),
                client.read_all(topic, p).await?,
            );
        }
    }
    let checked = check_all(&on_b, &acked_a, &acked_b, &seen_a, &seen_b, &failover_at)?;
    println!(
        "VERIFIED: {} records acknowledged, {} present exactly once on B at their offsets, {} lost; offsets contiguous in {} of {} partitions; {} records identical on A and B at the same offsets",
        checked.acked,
        checked.acked - checked.lost,
        checked.lost,
        checked.partitions,
        checked.partitions,
        checked.shared,
    );
    println!(
        "RPO achieved: {} records lost (failover reported {at_risk} at risk), {seconds:.3} s",
        checked.lost
    );
    println!("demo finished in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

struct Checked {
    acked: usize,
    lost: usize,
    partitions: usize,
    shared: usize,
}

/// Checks every partition read back from B against what was acknowledged, and
/// every consumer's copy against B's, offset by offset.
fn check_all(
    read_back: &BTreeMap<TopicPartition, Vec<Read>>,
    acked_a: &Shared,
    acked_b: &Shared,
    seen_a: &Shared,
    seen_b: &Shared,
    failover_at: &BTreeMap<TopicPartition, i64>,
) -> anyhow::Result<Checked> {
    let (acked_a, acked_b) = (lock(acked_a), lock(acked_b));
    let (seen_a, seen_b) = (lock(seen_a), lock(seen_b));
    let empty = Acked::new();
    let mut checked = Checked {
        acked: 0,
        lost: 0,
        partitions: 0,
        shared: 0,
    };
    for topic in A_TOPICS.iter().chain(B_TOPICS.iter()) {
        for p in 0..PARTITIONS {
            let tp = TopicPartition::new(*topic, p);
            let name = format!("{topic}-{p}");
            let read = read_back.get(&tp).cloned().unwrap_or_default();
            let on_a = acked_a.acked.get(&tp).unwrap_or(&empty);
            let on_b = acked_b.acked.get(&tp).unwrap_or(&empty);
            let (expected, lost, from_a) = match failover_at.get(&tp) {
                Some(&at) => {
                    let (expected, lost) = verify::after_failover(on_a, at, on_b);
                    (expected, lost, on_a.range(..at).count())
                }
                None => (on_b.clone(), 0, 0),
            };
            let n = verify::check_exact(&name, &read, &expected).map_err(fail)?;
            let as_read: Acked = read.iter().cloned().collect();
            // A's consumer read A's copy (a_* local, b_* shadow): compare where B holds
            // the same history, i.e. below the failover point for a_*.
            let limit = failover_at.get(&tp).copied().unwrap_or(i64::MAX);
            let a_copy: Vec<Read> = copy(&seen_a.consumed, &tp)
                .into_iter()
                .filter(|(o, _)| *o < limit)
                .collect();
            checked.shared +=
                verify::check_prefix(&format!("{name} (A's copy)"), &a_copy, &as_read)
                    .map_err(fail)?;
            if failover_at.contains_key(&tp) {
                // Beyond the failover point A's copy holds what A acknowledged.
                let name = format!("{name} (A's copy vs A's acknowledgements)");
                verify::check_prefix(&name, &copy(&seen_a.consumed, &tp), on_a).map_err(fail)?;
            }
            verify::check_prefix(
                &format!("{name} (B's consumer)"),
                &copy(&seen_b.consumed, &tp),
                &as_read,
            )
            .map_err(fail)?;
            println!(
                "  {name}: {n} records, offsets 0..{} contiguous, each once{}",
                n.saturating_sub(1),
                if failover_at.contains_key(&tp) {
                    format!("; {from_a} from A at identical offsets, {} written on B after failover, {lost} lost", on_b.len())
                } else {
                    String::new()
                }
            );
            checked.acked += on_a.len() + on_b.len();
            checked.lost += lost;
            checked.partitions += 1;
        }
    }
    if checked.acked == 0 {
        return Err(anyhow!("verification FAILED: no record was acknowledged"));
    }
    Ok(checked)
}

fn copy(consumed: &BTreeMap<TopicPartition, Vec<Read>>, tp: &TopicPartition) -> Vec<Read> {
    consumed.get(tp).cloned().unwrap_or_default()
}

fn fail(reason: String) -> anyhow::Error {
    anyhow!("verification FAILED: {reason}")
}

async fn serve_until_signal(a: Daemon, b: Daemon) -> anyhow::Result<()> {
    for (region, node, link) in [("A", &a, "from-b"), ("B", &b, "from-a")] {
        let admin = node
            .admin_addr
            .map_or_else(String::new, |x| format!("http://{x}"));
        println!(
            "region {region}: bootstrap {}  admin {admin}  (link {link})",
            node.kafka_addr
        );
    }
    println!("the pair is up and idle (no demo producers): produce to a_* on A and b_* on B with your own clients,");
    println!("read any topic on either node; `shadowlink status --admin <admin>` shows the lag,");
    println!("`shadowlink failover --admin <B's admin> --link from-a --all` fails a_* over to B. Ctrl-C stops both.");
    crate::wait_for_signal().await?;
    b.shutdown().await?;
    a.shutdown().await?;
    Ok(())
}
