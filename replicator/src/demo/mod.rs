//! `shadowlink demo`: a reciprocal pair on loopback, in this process, with no external
//! software. Region A owns `a_*`, region B owns `b_*`, each links from the other; a
//! producer per region and a consumer per node run while the pair's lag is printed.
//! Then the drill: B is cut off from A (its link paused) while A keeps writing, A
//! stops, B fails `a_*` over and writes them; A returns, finds them fenced, fails them
//! back (saving what it wrote past the failover point) and follows B; a switchover
//! brings `a_*` home to A, which writes them again. The closing verification accounts
//! for every acknowledged record: on its final owner at its offset, or in the diverged
//! file.

mod account;
mod client;
mod closing;
#[cfg(feature = "cluster")]
mod cluster;
mod pair;
mod report;
mod verify;
mod wayback;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use closing::Drilled;
use pair::{A_TOPICS, B_TOPICS};
use shadowlink::config::Config;
use shadowlink::daemon::Daemon;
use shadowlink::failover::{fail_over, FailoverRequest};
use wayback::{FROM_A, FROM_B};
use workload::{lock, Ledgers, Task, TopicPartition};

/// How long both regions run, how long A writes cut off from B, how long B runs alone
/// after the failover, and how long A writes `a_*` again after the switchover.
const BOTH_RUN: Duration = Duration::from_secs(6);
const CUT_OFF_RUN: Duration = Duration::from_secs(2);
const SURVIVOR_RUN: Duration = Duration::from_secs(2);
const HOME_RUN: Duration = Duration::from_secs(2);

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

/// `demo --nodes N` (N > 1): region B as a cluster of N nodes surviving a node loss
/// (see `cluster`), in a build with the `cluster` feature.
pub fn run_cluster(nodes: usize, keep_running: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        !keep_running,
        "--keep-running leaves the two-node pair up; it does not combine with --nodes"
    );
    #[cfg(feature = "cluster")]
    return cluster::run(nodes);
    #[cfg(not(feature = "cluster"))]
    anyhow::bail!(
        "--nodes {nodes} needs cluster support, and this shadowlink was built without it: \
         build with `cargo build --release -p shadowlink --features cluster` (the etcd client \
         needs protoc; the demo needs etcd: `apt install etcd-server protobuf-compiler` or \
         scripts/install-test-deps)"
    )
}

async fn demo(dir: &Path, keep_running: bool) -> anyhow::Result<()> {
    let (a, b, a_config) = pair::start(dir).await?;
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
    let mut a = Some(a);
    let outcome = drill(&mut a, &b, &a_config).await;
    if let Some(a) = a {
        a.shutdown().await?;
    }
    b.shutdown().await?;
    outcome
}

/// Where the diverged files are copied: beside the demo's data directory, which is
/// removed at the end, so the user can read them afterwards.
fn diverged_out() -> PathBuf {
    std::env::temp_dir().join(format!("shadowlink-demo-{}-diverged", std::process::id()))
}

/// Everything after setup. `a` is region A's node: stopped half way, started again.
async fn drill(a: &mut Option<Daemon>, b: &Daemon, a_config: &Config) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let ledgers = Ledgers::default();
    let node_a = a.take().context("region A is not running")?;
    let (a_addr, b_addr) = (node_a.kafka_addr.to_string(), b.kafka_addr.to_string());
    let producer_b = Task::producer(&b_addr, "b", &B_TOPICS, &ledgers.acked_b);
    let consumer_b = Task::consumer(&b_addr, "b", &ledgers.seen_b);
    let (at_risk, failover_at) = first_life(node_a, b, t0, &ledgers).await?;

    let producer_f = Task::producer(&b_addr, "a-on-b", &A_TOPICS, &ledgers.acked_b);
    run_for(SURVIVOR_RUN, &[&producer_f, &producer_b], || {
        report::survivor(t0, &ledgers.acked_b, lock(&ledgers.seen_b).consumed_count())
    })
    .await;
    println!("region A comes back on its data dir, reaching B again");
    let node_a = a.insert(pair::restart(a_config).await?);
    wayback::wait_fenced(node_a).await?;
    println!("fail-back on A (`shadowlink failback --link {FROM_B}`):");
    let failed_back = wayback::fail_back(node_a).await?;
    let diverged_files = wayback::keep_diverged(&failed_back, &diverged_out())?;
    producer_f
        .finish()
        .await
        .context("producer of a_* on region B")?;
    println!("B's link from A resumed, then `shadowlink switchover` of a_* from B back to A:");
    wayback::pause(b, FROM_A, false).await?;
    let switchover = wayback::switch_back(node_a, b).await?;

    let producer_h = Task::producer(&a_addr, "a-home", &A_TOPICS, &ledgers.acked_home);
    run_for(HOME_RUN, &[&producer_h, &producer_b], || {
        let seen = lock(&ledgers.seen_b).consumed_count();
        report::home(t0, b, &ledgers.acked_home, &ledgers.acked_b, seen)
    })
    .await;
    producer_h.finish().await.context("region A's producer")?;
    producer_b.finish().await.context("region B's producer")?;
    consumer_b.finish().await.context("region B's consumer")?;
    wayback::wait_mirrored(node_a, b).await?;
    let drilled = Drilled {
        failover_at,
        at_risk,
        diverged_files,
        switchover,
    };
    closing::verify(node_a, b, &ledgers, &drilled).await?;
    println!("demo finished in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Region A's first life: both regions write, then B is cut off from A while A keeps
/// writing, then A stops and B fails `a_*` over. Returns the failover's records and
/// seconds at risk, and each partition's failover point.
async fn first_life(
    a: Daemon,
    b: &Daemon,
    t0: Instant,
    ledgers: &Ledgers,
) -> anyhow::Result<((i64, f64), BTreeMap<TopicPartition, i64>)> {
    let a_addr = a.kafka_addr.to_string();
    let producer_a = Task::producer(&a_addr, "a", &A_TOPICS, &ledgers.acked_a);
    let consumer_a = Task::consumer(&a_addr, "a", &ledgers.seen_a);
    let both = || {
        let seen = lock(&ledgers.seen_a).consumed_count() + lock(&ledgers.seen_b).consumed_count();
        report::both(t0, &a, b, &ledgers.acked_a, &ledgers.acked_b, seen)
    };
    println!("both regions producing; lag = records the other side has not mirrored yet");
    run_for(BOTH_RUN, &[&producer_a], both).await;
    println!("cutting B off from A: B's link {FROM_A} paused while A keeps writing a_*");
    wayback::pause(b, FROM_A, true).await?;
    run_for(CUT_OFF_RUN, &[&producer_a], both).await;
    println!("stopping region A (producer, consumer, node)");
    producer_a.finish().await.context("region A's producer")?;
    consumer_a.finish().await.context("region A's consumer")?;
    a.shutdown().await.context("stopping region A")?;
    let request = FailoverRequest {
        all: true,
        topics: vec![],
    };
    let outcomes = fail_over(&b.store, &b.status, FROM_A, &request)
        .map_err(|e| anyhow!("failover on B: {e}"))?;
    println!("failed a_* over to region B:");
    let at_risk = report::failover(&outcomes);
    let failover_at = outcomes
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (TopicPartition::new(t.topic.clone(), p.partition), p.dst_hwm))
        })
        .collect();
    Ok((at_risk, failover_at))
}

/// Prints `line` once a second for `duration`, or until one of `tasks` ends by itself
/// (its error is reported when it is finished).
async fn run_for(duration: Duration, tasks: &[&Task], line: impl Fn()) {
    let started = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        line();
        if tasks.iter().any(|t| t.is_finished()) {
            break;
        }
    }
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
    println!("`shadowlink failover --admin <B's admin> --link from-a --all` fails a_* over to B,");
    println!("`shadowlink failback` on A and `shadowlink switchover` bring them back. Ctrl-C stops both.");
    crate::wait_for_signal().await?;
    b.shutdown().await?;
    a.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nodes_do_not_combine_with_keep_running() {
        let error = super::run_cluster(3, true).unwrap_err().to_string();
        assert!(error.contains("--keep-running"), "{error}");
    }

    #[cfg(not(feature = "cluster"))]
    #[test]
    fn nodes_need_a_build_with_the_cluster_feature() {
        let error = super::run_cluster(3, false).unwrap_err().to_string();
        assert!(error.contains("--features cluster"), "{error}");
        assert!(error.contains("etcd-server"), "{error}");
    }
}
