//! What the demo prints while it runs: the pair's lag, the failover's records at risk.

use std::time::Instant;

use shadowlink::daemon::Daemon;
use shadowlink::failover::{summarize, window, PartitionOutcome, TopicOutcome};

use super::workload::{lock, Shared};

/// Records a node holds for `link`'s shadow topics, and the link's lag in records
/// (`None` until the link has seen the source's offsets).
pub fn mirrored(node: &Daemon, link: &str) -> (i64, Option<i64>) {
    let report = node.status.report(&node.store);
    let partitions = report
        .links
        .iter()
        .filter(|l| l.name == link)
        .flat_map(|l| l.topics.iter())
        .flat_map(|t| t.partitions.iter());
    let (mut held, mut lag, mut known) = (0, 0, false);
    for p in partitions {
        held += p.dst_hwm;
        if let Some(l) = p.lag {
            lag += l;
            known = true;
        }
    }
    (held, known.then_some(lag))
}

fn lag_text(lag: Option<i64>) -> String {
    lag.map_or_else(|| "?".to_string(), |l| l.to_string())
}

/// One line: both directions while both regions run.
pub fn both(t0: Instant, a: &Daemon, b: &Daemon, acked_a: &Shared, acked_b: &Shared, seen: usize) {
    let (a_on_b, a_lag) = mirrored(b, "from-a");
    let (b_on_a, b_lag) = mirrored(a, "from-b");
    println!(
        "[{:>4.1}s] A→B: produced {:>5}  mirrored {:>5}  lag {:>3} | B→A: produced {:>5}  mirrored {:>5}  lag {:>3} | consumed {:>6}",
        t0.elapsed().as_secs_f64(),
        lock(acked_a).acked_count("a_"),
        a_on_b,
        lag_text(a_lag),
        lock(acked_b).acked_count("b_"),
        b_on_a,
        lag_text(b_lag),
        seen,
    );
}

/// One line after the failover: region B alone, writing both prefixes.
pub fn survivor(t0: Instant, acked_b: &Shared, seen: usize) {
    let ledger = lock(acked_b);
    println!(
        "[{:>4.1}s] region B alone: a_* written on B {:>5} | b_* produced {:>5} | consumed on B {:>6}",
        t0.elapsed().as_secs_f64(),
        ledger.acked_count("a_"),
        ledger.acked_count("b_"),
        seen,
    );
}

/// One line after the switchover: `a_*` written on A again, B mirroring them.
pub fn home(t0: Instant, b: &Daemon, acked_home: &Shared, acked_b: &Shared, seen: usize) {
    let (_, lag) = mirrored(b, "from-a");
    println!(
        "[{:>4.1}s] a_* home on A: written on A again {:>5}, lag on B {:>3} | b_* produced {:>5} | consumed on B {:>6}",
        t0.elapsed().as_secs_f64(),
        lock(acked_home).acked_count("a_"),
        lag_text(lag),
        lock(acked_b).acked_count("b_"),
        seen,
    );
}

/// The blind window of a partition as the demo prints it: writes the link never saw.
fn unconfirmed_text(p: &PartitionOutcome) -> String {
    match p.unconfirmed {
        Some(u) => format!(
            "up to ~{} of writes unconfirmed (about {} records)",
            window(u.seconds),
            u.records_max
        ),
        None => "the link never heard from the source".to_string(),
    }
}

/// Prints the failover's per-partition report and its total; returns (records at risk,
/// seconds at risk).
pub fn failover(outcomes: &[TopicOutcome]) -> (i64, f64) {
    let (mut records, mut seconds) = (0, 0.0_f64);
    for topic in outcomes {
        for p in &topic.partitions {
            let hwm = p.src_hwm.map_or_else(|| "?".to_string(), |h| h.to_string());
            let at_risk = p.records_at_risk.unwrap_or(0);
            let secs = p.seconds_at_risk.unwrap_or(0.0);
            println!(
                "  {}-{}: {}, writable from offset {}, last source high watermark {}, records at risk {} ({:.3} s), {}",
                topic.topic,
                p.partition,
                topic.state,
                p.dst_hwm,
                hwm,
                at_risk,
                secs,
                unconfirmed_text(p)
            );
            records += at_risk;
            seconds = seconds.max(secs);
        }
    }
    println!("  total: {}", summarize(outcomes));
    (records, seconds)
}
