//! `shadowlink status` as text: a node's status report rendered as tables.

use std::fmt::Write;

use crate::scrub::ScrubReport;
use crate::status::{OfflineReport, PartitionReport, StatusReport, SyncProgress};

/// The text form: the node, a table of links, a table of partitions.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let ready = if report.ready { "ready" } else { "NOT READY" };
    let _ = writeln!(
        out,
        "node kafka={} uptime={} {ready}",
        report.kafka,
        duration(report.uptime_seconds as f64)
    );
    for reason in &report.not_ready {
        let _ = writeln!(out, "  - {reason}");
    }
    out.push('\n');
    if !report.listeners.is_empty() {
        let mut listeners = vec![row(&["LISTENER", "PROTOCOL", "ADDRESS", "ADVERTISED"])];
        for l in &report.listeners {
            listeners.push(vec![
                l.name.clone(),
                l.protocol.clone(),
                l.address.clone(),
                l.advertised.clone(),
            ]);
        }
        out.push_str(&table(&listeners));
        out.push('\n');
    }
    let mut links = vec![row(&["LINK", "STATE", "FOR", "SOURCE", "LAST_ERROR"])];
    for l in &report.links {
        let state = match l.paused {
            true => format!("{} (paused)", l.state),
            false => l.state.clone(),
        };
        links.push(vec![
            l.name.clone(),
            state,
            duration(l.state_seconds as f64),
            l.source.join(","),
            l.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&table(&links));
    out.push('\n');
    let mut parts = vec![row(&[
        "LINK",
        "TOPIC",
        "STATE",
        "PARTITION",
        "SRC_LSO",
        "SRC_HWM",
        "DST_HWM",
        "LAG",
        "LAG_SECONDS",
        "LAST_ERROR",
    ])];
    let mut syncs = Vec::new();
    for l in &report.links {
        for t in &l.topics {
            if let Some(sync) = &t.sync {
                syncs.push(sync_line(&t.name, sync));
            }
            let state = match t.paused {
                true => format!("{} (paused)", t.state),
                false => t.state.clone(),
            };
            for p in &t.partitions {
                parts.push(partition_row(&l.name, &t.name, &state, p));
            }
        }
    }
    out.push_str(&table(&parts));
    for line in syncs {
        let _ = writeln!(out, "\n{line}");
    }
    if !report.offline.is_empty() {
        out.push('\n');
        out.push_str(&offline_table(&report.offline));
    }
    if let Some(error) = &report.producer_ids_error {
        let _ = writeln!(out, "\nproducer ids cannot be allocated: {error}");
    }
    if let Some(scrub) = report.scrub.as_ref().filter(|s| s.bytes_per_second > 0) {
        out.push('\n');
        out.push_str(&scrub_lines(scrub));
    }
    out
}

/// The scrubber's progress, and every damaged batch it found.
fn scrub_lines(scrub: &ScrubReport) -> String {
    let mut out = format!(
        "scrub: {} bytes checked in {} full pass(es) at {} bytes/s, {} damaged batch(es)\n",
        scrub.verified_bytes,
        scrub.passes,
        scrub.bytes_per_second,
        scrub.mismatches.len()
    );
    if !scrub.mismatches.is_empty() {
        let mut rows = vec![row(&["DAMAGED_TOPIC", "PARTITION", "OFFSET", "ERROR"])];
        for m in &scrub.mismatches {
            rows.push(vec![
                m.topic.clone(),
                m.partition.to_string(),
                m.offset.to_string(),
                m.error.clone(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

/// What cannot be opened: these are served to clients as KAFKA_STORAGE_ERROR.
fn offline_table(offline: &[OfflineReport]) -> String {
    let mut rows = vec![row(&["OFFLINE_TOPIC", "PARTITION", "ERROR"])];
    for o in offline {
        rows.push(vec![
            o.topic.clone(),
            o.partition.map_or_else(|| "all".into(), |p| p.to_string()),
            o.error.clone(),
        ]);
    }
    table(&rows)
}

fn partition_row(link: &str, topic: &str, state: &str, p: &PartitionReport) -> Vec<String> {
    let offset = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
    vec![
        link.to_string(),
        topic.to_string(),
        state.to_string(),
        p.partition.to_string(),
        offset(p.src_lso),
        offset(p.src_hwm),
        p.dst_hwm.to_string(),
        offset(p.lag),
        p.lag_seconds
            .map_or_else(|| "-".to_string(), |s| format!("{s:.1}")),
        p.last_error.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn sync_line(topic: &str, s: &SyncProgress) -> String {
    let eta = s.eta_seconds.map_or_else(|| "unknown".into(), duration);
    format!(
        "{topic}: initial sync {:.1}% done, {:.0} records/s, {} to go, ETA {eta}",
        s.percent, s.records_per_second, s.remaining
    )
}

pub(super) fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Whole seconds in the largest two units: `42s`, `3m 5s`, `2h 10m`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::client::parse;
    use crate::status::{LinkReport, TopicReport};

    fn partition(partition: i32, src: i64, dst: i64, error: Option<&str>) -> PartitionReport {
        PartitionReport {
            partition,
            src_log_start: Some(0),
            src_lso: Some(src),
            src_hwm: Some(src),
            dst_log_start: 0,
            dst_hwm: dst,
            lag: Some(src - dst),
            lag_seconds: Some(if src > dst { 12.0 } else { 0.0 }),
            last_error: error.map(str::to_string),
            unconfirmed: None,
        }
    }

    fn report() -> StatusReport {
        StatusReport {
            kafka: "127.0.0.1:9192".into(),
            listeners: vec![],
            uptime_seconds: 125,
            ready: true,
            not_ready: vec![],
            links: vec![LinkReport {
                name: "from-a".into(),
                source: vec!["a-1:9092".into(), "a-2:9092".into()],
                state: "connected".into(),
                state_seconds: 61,
                last_error: None,
                topics: vec![
                    TopicReport {
                        name: "a_orders".into(),
                        state: "active".into(),
                        reason: None,
                        sync: None,
                        partitions: vec![partition(0, 1000, 1000, None)],
                        paused: false,
                    },
                    TopicReport {
                        name: "a_big".into(),
                        state: "syncing".into(),
                        reason: None,
                        sync: Some(crate::status::sync_progress(500, 2000, 10.0)),
                        partitions: vec![partition(0, 2000, 500, Some("timed out"))],
                        paused: false,
                    },
                ],
                paused: false,
                paused_topics: vec![],
            }],
            offline: vec![],
            producer_ids_error: None,
            scrub: None,
            compaction: vec![],
        }
    }

    #[test]
    fn renders_aligned_tables_and_sync_progress() {
        let text = render(&report());
        let expected = "\
node kafka=127.0.0.1:9192 uptime=2m 5s ready

LINK    STATE      FOR    SOURCE             LAST_ERROR
from-a  connected  1m 1s  a-1:9092,a-2:9092  -

LINK    TOPIC     STATE    PARTITION  SRC_LSO  SRC_HWM  DST_HWM  LAG   LAG_SECONDS  LAST_ERROR
from-a  a_orders  active   0          1000     1000     1000     0     0.0          -
from-a  a_big     syncing  0          2000     2000     500      1500  12.0         timed out

a_big: initial sync 25.0% done, 50 records/s, 1500 to go, ETA 30s
";
        assert_eq!(text, expected);
    }

    #[test]
    fn paused_links_and_topics_are_marked_in_their_state() {
        let mut r = report();
        r.links[0].topics[0].paused = true;
        let text = render(&r);
        assert!(
            text.contains("from-a  a_orders  active (paused)  0"),
            "{text}"
        );
        assert!(text.contains("from-a  a_big     syncing"), "{text}");
        r.links[0].paused = true;
        let text = render(&r);
        assert!(text.contains("from-a  connected (paused)  1m 1s"), "{text}");
    }

    #[test]
    fn the_scrubber_lists_the_damaged_batches_it_found() {
        let mut r = report();
        r.scrub = Some(ScrubReport {
            bytes_per_second: 4096,
            verified_bytes: 10_000,
            passes: 2,
            mismatches: vec![crate::scrub::ScrubMismatch {
                topic: "a_orders".into(),
                partition: 1,
                offset: 42,
                error: "CRC mismatch".into(),
            }],
        });
        let text = render(&r);
        let expected = "\n\
scrub: 10000 bytes checked in 2 full pass(es) at 4096 bytes/s, 1 damaged batch(es)
DAMAGED_TOPIC  PARTITION  OFFSET  ERROR
a_orders       1          42      CRC mismatch
";
        assert!(text.ends_with(expected), "{text}");
    }

    #[test]
    fn not_ready_names_its_reasons() {
        let mut r = report();
        r.ready = false;
        r.not_ready = vec!["link from-a is lost".into()];
        let text = render(&r);
        assert!(
            text.starts_with(
                "node kafka=127.0.0.1:9192 uptime=2m 5s NOT READY\n  - link from-a is lost\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn offline_topics_and_partitions_are_listed_with_their_errors() {
        let mut r = report();
        r.offline = vec![
            OfflineReport {
                topic: "a_gone".into(),
                partition: None,
                error: "/d/topics/a_gone/topic.json is bad".into(),
            },
            OfflineReport {
                topic: "a_orders".into(),
                partition: Some(2),
                error: "/d/topics/a_orders/2/log-start-offset is bad".into(),
            },
        ];
        let text = render(&r);
        let expected = "\n\
OFFLINE_TOPIC  PARTITION  ERROR
a_gone         all        /d/topics/a_gone/topic.json is bad
a_orders       2          /d/topics/a_orders/2/log-start-offset is bad
";
        assert!(text.ends_with(expected), "{text}");
    }

    #[test]
    fn the_json_form_round_trips() {
        let json = serde_json::to_string(&report()).unwrap();
        let back = parse("test", &json).unwrap();
        assert_eq!(render(&back), render(&report()));
        assert!(parse("test", "<html>").is_err());
    }
}
