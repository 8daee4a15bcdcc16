//! `shadowlink switchover`: drives a planned move of topics from their owner (O) to the
//! node mirroring them (M) through both admin APIs (the steps and the journal are in
//! [`crate::switchover`]). Every step is idempotent, so a run that a crash interrupted is
//! finished by running it again; a node that does not answer is retried until the
//! deadline.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::auth::AdminToken;
use super::client::{admin_url, agent, authorized};
use super::table::{row, table};
use crate::switchover::{Released, TakeRequest, Taken, Topics};

/// One node's side: its admin listener, token and its link to the other node.
pub struct Side<'a> {
    pub admin: &'a str,
    pub token: Option<&'a AdminToken>,
    pub link: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchoverRunError {
    #[error("{url} refused: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url} did not answer within {waited:?}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        waited: Duration,
    },
    #[error(
        "the new owner could not take over ({reason}); writes resumed on the old owner, \
         nothing moved"
    )]
    RolledBack { reason: String },
}

/// What the switchover did, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub released: Vec<Released>,
    pub taken: Vec<Taken>,
    /// From the owner's release to the new owner's take-over: producers were refused
    /// (retriably) for at most this long.
    pub paused_ms: u64,
    /// Records the old owner acknowledged that the new owner does not hold: always 0,
    /// since the new owner takes over only on the old owner's stopped log end.
    pub records_at_risk: i64,
}

/// POSTs `body` to `path`, retrying unanswered requests until `deadline`.
fn post<B: Serialize, R: DeserializeOwned>(
    side: &Side<'_>,
    path: &str,
    body: &B,
    deadline: Instant,
) -> Result<R, SwitchoverRunError> {
    let url = admin_url(side.admin, path);
    let started = Instant::now();
    let body = serde_json::to_string(body).unwrap_or_default();
    loop {
        let answer = authorized(agent().post(&url), side.token)
            .header("content-type", "application/json")
            .send(body.as_str());
        let reason = match answer {
            Ok(mut response) => {
                let code = response.status();
                let text = response.body_mut().read_to_string().unwrap_or_default();
                if code.is_success() {
                    return serde_json::from_str(&text).map_err(|e| SwitchoverRunError::Refused {
                        url: url.clone(),
                        reason: format!("unreadable answer: {e}"),
                    });
                }
                if code.is_client_error() || code.as_u16() == 409 {
                    return Err(SwitchoverRunError::Refused {
                        url,
                        reason: format!("{code}: {}", text.trim()),
                    });
                }
                format!("{code}: {}", text.trim())
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(SwitchoverRunError::Unreachable {
                url,
                reason,
                waited: started.elapsed(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs (or resumes) the switchover of `topics` from `from` to `to`.
pub fn run(
    from: &Side<'_>,
    to: &Side<'_>,
    topics: &[String],
    catch_up: Duration,
    deadline: Duration,
) -> Result<Outcome, SwitchoverRunError> {
    let deadline = Instant::now() + deadline;
    let topics = Topics {
        topics: topics.to_vec(),
    };
    let paused = Instant::now();
    let released: Vec<Released> = post(from, "/v1/switchover/release", &topics, deadline)?;
    let take = TakeRequest {
        topics: released.clone(),
        timeout_ms: catch_up.as_millis() as u64,
    };
    let take_path = format!("/v1/links/{}/switchover/take", to.link);
    let taken: Vec<Taken> = match post(to, &take_path, &take, deadline) {
        Ok(taken) => taken,
        Err(SwitchoverRunError::Refused { reason, .. }) => {
            let _: Vec<String> = post(from, "/v1/switchover/abort", &topics, deadline)?;
            return Err(SwitchoverRunError::RolledBack { reason });
        }
        Err(e) => return Err(e),
    };
    let paused_ms = paused.elapsed().as_millis() as u64;
    let demote_path = format!("/v1/links/{}/switchover/demote", from.link);
    let _: Topics = post(from, &demote_path, &topics, deadline)?;
    Ok(Outcome {
        released,
        taken,
        paused_ms,
        records_at_risk: 0,
    })
}

/// One row per partition: the offset and epoch producers continue at on the new owner.
pub fn render(outcome: &Outcome) -> String {
    let mut rows = vec![row(&[
        "TOPIC",
        "PARTITION",
        "STATE",
        "LOG_END",
        "NEW_EPOCH",
        "RECORDS_AT_RISK",
    ])];
    for t in &outcome.taken {
        for (partition, epoch) in &t.leader_epochs {
            let next = t.next_offsets.get(partition).copied().unwrap_or(0);
            rows.push(vec![
                t.topic.clone(),
                partition.to_string(),
                "switched_over".to_string(),
                next.to_string(),
                epoch.to_string(),
                "0".to_string(),
            ]);
        }
    }
    let mut out = table(&rows);
    out.push_str(&format!(
        "writes paused for {} ms; records at risk: {}\n",
        outcome.paused_ms, outcome.records_at_risk
    ));
    out
}
