//! Verifying a mirror against its source: the admin route, run by the node, and the
//! `shadowlink verify` side that calls it and prints the result.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::AdminToken;
use super::client::{post_json, StatusError};
use super::table::{row, table};
use super::AdminState;
use crate::verify::{PartitionVerify, VerifyError, VerifyReport, VerifyRequest};

/// How long the CLI waits for a verification: it reads every mirrored byte once more.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// `POST /v1/links/{name}/verify`.
pub(super) async fn verify(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Json(request): Json<VerifyRequest>,
) -> Response {
    let Some(link) = state.links.iter().find(|l| l.config.name == name) else {
        let e = VerifyError::UnknownLink(name);
        return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response();
    };
    match crate::verify::verify(link, &state.store, &request).await {
        Ok(report) => Json(report).into_response(),
        Err(e) if e.is_bad_request() => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

/// POSTs `request` for `link` to the node at `admin` and waits for the report.
pub fn request(
    admin: &str,
    token: Option<&AdminToken>,
    link: &str,
    request: &VerifyRequest,
) -> Result<VerifyReport, StatusError> {
    post_json(
        admin,
        token,
        &format!("/v1/links/{link}/verify"),
        request,
        VERIFY_TIMEOUT,
    )
}

/// One row per partition, then the totals in a sentence.
pub fn render(report: &VerifyReport) -> String {
    let mut rows = vec![row(&[
        "TOPIC",
        "PARTITION",
        "FROM",
        "TO",
        "BATCHES",
        "BYTES",
        "MATCHED",
        "RESULT",
    ])];
    for p in &report.partitions {
        let from = p.gone_at_source.map_or(p.mirror_start, |g| g.to);
        rows.push(vec![
            p.topic.clone(),
            p.partition.to_string(),
            from.to_string(),
            p.mirror_end.to_string(),
            p.tally.batches.to_string(),
            p.tally.bytes.to_string(),
            p.tally.matched.to_string(),
            result(p),
        ]);
    }
    let mut out = table(&rows);
    let (differ, failed) = (report.mismatched(), report.failed());
    let total = report.partitions.len();
    let identical = report
        .partitions
        .iter()
        .filter(|p| p.mismatch().is_none() && p.error.is_none())
        .count();
    out.push_str(&format!(
        "\n{total} partition(s) of link {}: {identical} identical, {differ} differ, {failed} not verified\n",
        report.link,
    ));
    out
}

fn result(p: &PartitionVerify) -> String {
    let mut parts = Vec::new();
    if let Some(m) = p.mismatch() {
        parts.push(format!("MISMATCH at offset {}: {}", m.offset, m.what));
    }
    if let Some(e) = &p.error {
        parts.push(format!("NOT VERIFIED: {e}"));
    }
    if parts.is_empty() {
        parts.push("identical".into());
    }
    if let Some(g) = p.gone_at_source {
        parts.push(format!(
            "offsets {}..{} no longer at the source (retention)",
            g.from, g.to
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::compare::{Mismatch, Tally};
    use crate::verify::Range;

    fn partition(partition: i32, mismatch: Option<Mismatch>) -> PartitionVerify {
        PartitionVerify {
            topic: "a_orders".into(),
            partition,
            mirror_start: 0,
            mirror_end: 300,
            source_start: Some(100),
            source_hwm: Some(320),
            gone_at_source: Some(Range { from: 0, to: 100 }),
            tally: Tally {
                batches: 4,
                bytes: 4096,
                matched: 4 - u64::from(mismatch.is_some()),
                mismatched: u64::from(mismatch.is_some()),
                first_mismatch: mismatch,
            },
            error: None,
        }
    }

    #[test]
    fn the_table_names_each_result_and_the_range_gone_at_the_source() {
        let report = VerifyReport {
            link: "from-a".into(),
            partitions: vec![
                partition(0, None),
                partition(
                    1,
                    Some(Mismatch {
                        offset: 150,
                        what: "CRC: source 0x00000001, mirror 0x00000002".into(),
                    }),
                ),
            ],
        };
        let text = render(&report);
        let expected = "\
TOPIC     PARTITION  FROM  TO   BATCHES  BYTES  MATCHED  RESULT
a_orders  0          100   300  4        4096   4        identical; offsets 0..100 no longer at the source (retention)
a_orders  1          100   300  4        4096   3        MISMATCH at offset 150: CRC: source 0x00000001, mirror 0x00000002; offsets 0..100 no longer at the source (retention)

2 partition(s) of link from-a: 1 identical, 1 differ, 0 not verified
";
        assert_eq!(text, expected);
    }
}
