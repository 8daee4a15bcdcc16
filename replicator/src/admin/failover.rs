//! `shadowlink failover`: asks a node's admin listener to fail topics over and prints
//! the records each partition had at risk, known and possibly unseen.

use super::auth::AdminToken;
use super::client::{post_json, StatusError, REQUEST_TIMEOUT};
use super::table::{row, table};
use crate::failover::{summarize, FailoverRequest, TopicOutcome};

/// POSTs the failover of `request` for `link` to the node at `admin`.
pub fn request(
    admin: &str,
    token: Option<&AdminToken>,
    link: &str,
    request: &FailoverRequest,
) -> Result<Vec<TopicOutcome>, StatusError> {
    post_json(
        admin,
        token,
        &format!("/v1/links/{link}/failover"),
        request,
        REQUEST_TIMEOUT,
    )
}

/// One row per partition: where producers continue, what the source had beyond it, and
/// how much more it may have acknowledged unseen; then the totals in a sentence.
pub fn render(outcomes: &[TopicOutcome]) -> String {
    let unknown = || "?".to_string();
    let mut rows = vec![row(&[
        "TOPIC",
        "PARTITION",
        "STATE",
        "NEXT_OFFSET",
        "SRC_HWM",
        "RECORDS_AT_RISK",
        "SECONDS_AT_RISK",
        "UNCONFIRMED_MS",
        "RECORDS_PER_SECOND",
        "RECORDS_AT_RISK_MAX",
    ])];
    for t in outcomes {
        for p in &t.partitions {
            rows.push(vec![
                t.topic.clone(),
                p.partition.to_string(),
                t.state.clone(),
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
            ]);
        }
    }
    let mut out = table(&rows);
    out.push_str(&format!("\ntotal: {}\n", summarize(outcomes)));
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
}
