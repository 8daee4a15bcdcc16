//! `shadowlink failback`: asks a returning node's admin listener to follow its peer
//! again, and prints per partition the failover point and the records saved above it.

use super::auth::AdminToken;
use super::client::{post_json, StatusError, REQUEST_TIMEOUT};
use super::table::{row, table};
use crate::failback::{FailbackRequest, TopicFailback};

/// POSTs the fail-back of `request` for `link` to the node at `admin`.
pub fn request(
    admin: &str,
    token: Option<&AdminToken>,
    link: &str,
    request: &FailbackRequest,
) -> Result<Vec<TopicFailback>, StatusError> {
    post_json(
        admin,
        token,
        &format!("/v1/links/{link}/failback"),
        request,
        REQUEST_TIMEOUT,
    )
}

/// One row per partition, then where each topic's diverged records went and the total.
pub fn render(link: &str, outcomes: &[TopicFailback]) -> String {
    let mut rows = vec![row(&[
        "TOPIC",
        "PARTITION",
        "STATE",
        "FAILOVER_POINT",
        "LOG_END_BEFORE",
        "DIVERGED_RECORDS",
    ])];
    for t in outcomes {
        for p in &t.partitions {
            rows.push(vec![
                t.topic.clone(),
                p.partition.to_string(),
                t.state.clone(),
                p.failover_point.to_string(),
                p.log_end.to_string(),
                p.diverged_records.to_string(),
            ]);
        }
    }
    let mut out = table(&rows);
    let mut total = 0;
    for t in outcomes {
        let records: i64 = t.partitions.iter().map(|p| p.diverged_records).sum();
        total += records;
        if let Some(file) = &t.diverged_file {
            out.push_str(&format!(
                "{}: {records} diverged records saved to {file} (raw batches beside it)\n",
                t.topic
            ));
        }
    }
    out.push_str(&format!(
        "total: {total} diverged records saved; {} topic(s) now follow link {link}\n",
        outcomes.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failback::PartitionFailback;

    #[test]
    fn the_report_counts_each_partition_and_names_the_file() {
        let outcomes = [TopicFailback {
            topic: "a_orders".into(),
            state: "demoted".into(),
            partitions: vec![
                PartitionFailback {
                    partition: 0,
                    failover_point: 30,
                    log_end: 37,
                    diverged_records: 7,
                },
                PartitionFailback {
                    partition: 1,
                    failover_point: 30,
                    log_end: 30,
                    diverged_records: 0,
                },
            ],
            diverged_file: Some("/data/diverged/a_orders-1.jsonl".into()),
        }];
        let text = render("from-b", &outcomes);
        assert!(text.contains("a_orders  0          demoted  30"), "{text}");
        assert!(
            text.contains("a_orders: 7 diverged records saved to /data/diverged/a_orders-1.jsonl"),
            "{text}"
        );
        assert!(
            text.contains("total: 7 diverged records saved; 1 topic(s) now follow link from-b"),
            "{text}"
        );
    }
}
