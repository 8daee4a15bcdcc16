//! `shadowlink failover`: asks a node's admin listener to fail topics over and prints
//! the records each partition had at risk, known and possibly unseen. A cluster node's
//! answer also names each partition's leader, epoch and replicas.

use std::time::Duration;

use serde::Deserialize;

use super::auth::AdminToken;
use super::client::{post_json, StatusError};
use super::table::{row, table};
use crate::cluster::ClusterFailover;
use crate::failover::{summarize, FailoverRequest, PartitionOutcome, TopicOutcome};

/// A node's answer to a failover: a cluster node's, whose partitions carry their
/// leader and its report, or a single node's.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Cluster(Vec<ClusterFailover>),
    Node(Vec<TopicOutcome>),
}

/// How long the answer may take: a cluster node answers once the assignment carried the
/// failover out (it waits up to 30 s) and the leaders reported (up to 10 s more).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(45);

/// POSTs the failover of `request` for `link` to the node at `admin`.
pub fn request(
    admin: &str,
    token: Option<&AdminToken>,
    link: &str,
    request: &FailoverRequest,
) -> Result<Answer, StatusError> {
    post_json(
        admin,
        token,
        &format!("/v1/links/{link}/failover"),
        request,
        FAILOVER_TIMEOUT,
    )
}

const AT_RISK_COLUMNS: [&str; 7] = [
    "NEXT_OFFSET",
    "SRC_HWM",
    "RECORDS_AT_RISK",
    "SECONDS_AT_RISK",
    "UNCONFIRMED_MS",
    "RECORDS_PER_SECOND",
    "RECORDS_AT_RISK_MAX",
];

/// Prints either answer: one row per partition, then the totals in a sentence.
pub fn render_answer(answer: &Answer) -> String {
    match answer {
        Answer::Node(outcomes) => render(outcomes),
        Answer::Cluster(failovers) => render_cluster(failovers),
    }
}

/// One row per partition: where producers continue, what the source had beyond it, and
/// how much more it may have acknowledged unseen; then the totals in a sentence.
pub fn render(outcomes: &[TopicOutcome]) -> String {
    let mut header = vec!["TOPIC", "PARTITION", "STATE"];
    header.extend(AT_RISK_COLUMNS);
    let mut rows = vec![row(&header)];
    for t in outcomes {
        for p in &t.partitions {
            let mut cells = vec![t.topic.clone(), p.partition.to_string(), t.state.clone()];
            cells.extend(at_risk(Some(p)));
            rows.push(cells);
        }
    }
    let mut out = table(&rows);
    out.push_str(&totals(outcomes, 0));
    out
}

/// As [`render`], with each partition's leader, epoch and replicas; a partition whose
/// leader sent no report shows `?` and counts as never heard from.
fn render_cluster(failovers: &[ClusterFailover]) -> String {
    let mut header = vec!["TOPIC", "PARTITION", "STATE", "LEADER", "EPOCH", "REPLICAS"];
    header.extend(AT_RISK_COLUMNS);
    let mut rows = vec![row(&header)];
    let mut reported = Vec::new();
    let mut missing = 0;
    for t in failovers {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let replicas: Vec<String> = p.replicas.iter().map(i32::to_string).collect();
            let mut cells = vec![
                t.topic.clone(),
                p.partition.to_string(),
                t.state.clone(),
                p.leader.to_string(),
                p.leader_epoch.to_string(),
                replicas.join(","),
            ];
            let outcome = p.report.as_ref().map(|r| &r.outcome);
            cells.extend(at_risk(outcome));
            rows.push(cells);
            match outcome {
                Some(outcome) => partitions.push(outcome.clone()),
                None => missing += 1,
            }
        }
        reported.push(TopicOutcome {
            topic: t.topic.clone(),
            state: t.state.clone(),
            partitions,
        });
    }
    let mut out = table(&rows);
    out.push_str(&totals(&reported, missing));
    out
}

/// The cells of [`AT_RISK_COLUMNS`], `?` where unknown.
fn at_risk(p: Option<&PartitionOutcome>) -> Vec<String> {
    let unknown = || "?".to_string();
    let Some(p) = p else {
        return vec![unknown(); AT_RISK_COLUMNS.len()];
    };
    vec![
        p.dst_hwm.to_string(),
        p.src_hwm.map_or_else(unknown, |v| v.to_string()),
        p.records_at_risk.map_or_else(unknown, |v| v.to_string()),
        p.seconds_at_risk
            .map_or_else(unknown, |v| format!("{v:.1}")),
        p.unconfirmed.map_or_else(unknown, |u| {
            format!("{}", (u.seconds * 1000.0).ceil() as i64)
        }),
        p.unconfirmed
            .map_or_else(unknown, |u| format!("{:.0}", u.records_per_second)),
        p.records_at_risk_max
            .map_or_else(unknown, |v| v.to_string()),
    ]
}

/// The totals over `outcomes`, `unreported` more partitions counted as unknown, then
/// the aborted transactions and whether the windows are still open.
fn totals(outcomes: &[TopicOutcome], unreported: usize) -> String {
    let mut summary = summarize(outcomes);
    summary.unknown_partitions += unreported;
    let mut out = format!("\ntotal: {summary}\n");
    out.push_str(&aborted_transactions(outcomes));
    let still_connected = outcomes
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.unconfirmed.is_some_and(|u| !u.ends_at_loss));
    if still_connected {
        out.push_str(
            "the link had not lost the source: windows run to the failover, and writes the \
             source accepts from now on are not counted\n",
        );
    }
    out
}

/// One line per transaction the failover aborted; nothing when there was none.
fn aborted_transactions(outcomes: &[TopicOutcome]) -> String {
    let mut out = String::new();
    for t in outcomes {
        for p in &t.partitions {
            for a in &p.aborted_transactions {
                out.push_str(&format!(
                    "aborted open transaction: {}-{} producer {} epoch {}: {} records from \
                     offset {}, ABORT marker at {}\n",
                    t.topic,
                    p.partition,
                    a.producer_id,
                    a.producer_epoch,
                    a.records,
                    a.first_offset,
                    a.marker_offset
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::PartitionOutcome;
    use crate::rpo::Unconfirmed;

    fn partition(partition: i32, unconfirmed: Option<Unconfirmed>) -> PartitionOutcome {
        PartitionOutcome {
            partition,
            dst_hwm: 998,
            src_hwm: unconfirmed.map(|_| 1000),
            records_at_risk: unconfirmed.map(|_| 2),
            seconds_at_risk: unconfirmed.map(|_| 0.1),
            unconfirmed,
            records_at_risk_max: unconfirmed.map(|u| 2 + u.records_max),
            aborted_transactions: Vec::new(),
        }
    }

    #[test]
    fn the_report_adds_the_unseen_writes_and_sums_them_up() {
        let window = Unconfirmed {
            seconds: 0.0032,
            ends_at_loss: true,
            records_per_second: 500.0,
            bytes_per_second: 50_000.0,
            records_max: 12,
            bytes_max: 1200,
        };
        let outcomes = [TopicOutcome {
            topic: "a_rpo".into(),
            state: "failed_over".into(),
            partitions: vec![
                partition(0, Some(window)),
                partition(1, Some(window)),
                partition(2, None),
            ],
        }];
        let text = render(&outcomes);
        assert!(
            text.contains("a_rpo  0          failed_over  998          1000     2                0.1              4               500                 14"),
            "{text}"
        );
        assert!(
            text.contains("a_rpo  2          failed_over  998          ?"),
            "{text}"
        );
        assert!(
            text.contains(
                "total: 4 known at risk; up to ~4 ms of writes unconfirmed (about 24 records, \
                 2400 bytes at the recent peak rate of 1000 records/s): at most 28 records \
                 lost; 1 partition(s) never heard from, unknown"
            ),
            "{text}"
        );
        assert!(!text.contains("had not lost the source"), "{text}");
        let connected = Unconfirmed {
            ends_at_loss: false,
            ..window
        };
        let outcomes = [TopicOutcome {
            partitions: vec![partition(0, Some(connected))],
            ..outcomes[0].clone()
        }];
        assert!(render(&outcomes).contains("had not lost the source"));
    }
    #[test]
    fn both_answers_print_each_partition_at_risk_and_a_cluster_its_leader() {
        let node = r#"[{"topic":"t","state":"failed_over","partitions":[
            {"partition":0,"dst_hwm":7,"src_hwm":10,"records_at_risk":3,
             "seconds_at_risk":1.5,"records_at_risk_max":null}]}]"#;
        let answer: Answer = serde_json::from_str(node).unwrap();
        assert!(matches!(answer, Answer::Node(_)), "{answer:?}");
        let text = render_answer(&answer);
        assert!(
            text.contains("t      0          failed_over  7            10       3"),
            "{text}"
        );
        assert!(!text.contains("LEADER"), "{text}");

        let cluster = r#"[{"topic":"t","state":"failed_over","partitions":[
            {"partition":0,"leader":2,"leader_epoch":5,"replicas":[2,3],
             "report":{"node_id":2,"leader_epoch":5,"partition":0,"dst_hwm":7,
                       "src_hwm":10,"records_at_risk":3,"seconds_at_risk":1.5,
                       "unconfirmed":{"seconds":0.002,"ends_at_loss":true,
                                      "records_per_second":0.0,"bytes_per_second":0.0,
                                      "records_max":0,"bytes_max":0},
                       "records_at_risk_max":3}},
            {"partition":1,"leader":3,"leader_epoch":4,"replicas":[3,1],"report":null}]}]"#;
        let answer: Answer = serde_json::from_str(cluster).unwrap();
        assert!(matches!(answer, Answer::Cluster(_)), "{answer:?}");
        let text = render_answer(&answer);
        let lines: Vec<Vec<&str>> = (text.lines())
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0][3..6], ["LEADER", "EPOCH", "REPLICAS"], "{text}");
        assert_eq!(
            lines[1][..9],
            ["t", "0", "failed_over", "2", "5", "2,3", "7", "10", "3"]
        );
        assert_eq!(lines[2][3..7], ["3", "4", "3,1", "?"], "{text}");
        assert!(
            text.contains("total: 3 known at risk")
                && text.contains("at most 3 records lost; 1 partition(s) never heard from"),
            "{text}"
        );
    }
}
