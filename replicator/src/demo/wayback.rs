//! The way back, as an operator takes it: each step calls the admin API through the
//! client `shadowlink pause`, `resume`, `failback` and `switchover` use, and prints
//! their report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;

use shadowlink::admin::switchover::{Outcome, Side};
use shadowlink::admin::{failback, pause, switchover};
use shadowlink::daemon::Daemon;
use shadowlink::failback::{FailbackRequest, TopicFailback};
use shadowlink::mirror::TopicState;

use super::client::DemoClient;
use super::pair::{A_TOPICS, PARTITIONS};

/// B's link from A, and A's link from B.
pub const FROM_A: &str = "from-a";
pub const FROM_B: &str = "from-b";

/// The switchover's bounds: the CLI's defaults.
const CATCH_UP: Duration = Duration::from_secs(8);
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(60);

fn admin(node: &Daemon) -> anyhow::Result<String> {
    node.admin_addr
        .map(|a| a.to_string())
        .context("the node has no admin listener")
}

/// Runs a blocking admin request off the runtime's workers.
async fn blocking<T: Send + 'static>(
    request: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(request)
        .await
        .context("an admin request panicked")?
}

/// Each line of a report, indented under the demo's step.
fn indented(report: &str) -> String {
    report.lines().map(|l| format!("  {l}\n")).collect()
}

/// Pauses (`pause` true) or resumes the whole of `link` on `node`.
pub async fn pause(node: &Daemon, link: &'static str, pause: bool) -> anyhow::Result<()> {
    let admin = admin(node)?;
    let answer = blocking(move || Ok(pause::request(&admin, None, link, Vec::new(), pause)?))
        .await
        .with_context(|| format!("cannot pause or resume link {link}"))?;
    print!("{}", indented(&pause::render(&answer)));
    Ok(())
}

/// Waits until A's link to B has fenced every `a_*` topic (B holds them in a newer
/// epoch), then shows a producer refused.
pub async fn wait_fenced(a: &Daemon) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let fenced = |topic: &str| {
        a.store
            .topic(topic)
            .is_some_and(|t| matches!(t.meta().state, TopicState::FencedByFailover { .. }))
    };
    while !A_TOPICS.iter().all(|t| fenced(t)) {
        if Instant::now() > deadline {
            bail!("region A did not fence a_* within 20 s of coming back");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("  {}: fenced_by_failover (read-only)", A_TOPICS.join(", "));
    let client = DemoClient::connect(&a.kafka_addr.to_string(), "demo-fenced").await?;
    let probe = [Bytes::from_static(b"refused")];
    match client.produce(A_TOPICS[0], 0, &probe).await {
        Ok(offset) => bail!(
            "region A accepted a write to the fenced {} at offset {offset}",
            A_TOPICS[0]
        ),
        Err(e) => println!("  a producer on A: {e:#}"),
    }
    Ok(())
}

/// Fails every fenced topic of A's link back to B: the divergent records are saved,
/// A's copy is cut to the failover point and follows B.
pub async fn fail_back(a: &Daemon) -> anyhow::Result<Vec<TopicFailback>> {
    let admin = admin(a)?;
    let request = FailbackRequest::default();
    let outcomes = blocking(move || Ok(failback::request(&admin, None, FROM_B, &request)?))
        .await
        .context("fail-back on region A")?;
    print!("{}", indented(&failback::render(FROM_B, &outcomes)));
    Ok(outcomes)
}

/// Copies each diverged file (the `.jsonl` and its `.batches`) to `out`, which outlives
/// the demo's data directory; returns the copies of the `.jsonl` files.
pub fn keep_diverged(outcomes: &[TopicFailback], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut kept = Vec::new();
    for file in outcomes.iter().filter_map(|t| t.diverged_file.as_deref()) {
        let lines = PathBuf::from(file);
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        for from in [lines.clone(), lines.with_extension("batches")] {
            let to = out.join(from.file_name().context("a diverged file without a name")?);
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
            if from == lines {
                kept.push(to);
            }
        }
    }
    Ok(kept)
}

/// Moves `a_*` from B back to A with a switchover: B stops taking writes, A catches up
/// and takes them over, B's copy follows A again.
pub async fn switch_back(a: &Daemon, b: &Daemon) -> anyhow::Result<Outcome> {
    let (from, to) = (admin(b)?, admin(a)?);
    let topics: Vec<String> = A_TOPICS.iter().map(|t| t.to_string()).collect();
    let outcome = blocking(move || {
        let from = Side {
            admin: &from,
            token: None,
            link: FROM_A,
        };
        let to = Side {
            admin: &to,
            token: None,
            link: FROM_B,
        };
        Ok(switchover::run(
            &from,
            &to,
            &topics,
            CATCH_UP,
            SWITCHOVER_TIMEOUT,
        )?)
    })
    .await
    .context("switchover of a_* from B to A")?;
    print!("{}", indented(&switchover::render(&outcome)));
    Ok(outcome)
}

/// Waits until B's copy of every `a_*` partition reaches A's log end.
pub async fn wait_mirrored(a: &Daemon, b: &Daemon) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let log_end = |node: &Daemon, topic: &str, p: i32| {
        node.store
            .partition(topic, p)
            .map_or(-1, |p| p.log().log_end_offset())
    };
    let caught_up = || {
        A_TOPICS
            .iter()
            .all(|t| (0..PARTITIONS).all(|p| log_end(b, t, p) >= log_end(a, t, p)))
    };
    while !caught_up() {
        if Instant::now() > deadline {
            bail!("region B did not mirror a_* from A again within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
