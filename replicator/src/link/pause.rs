//! Paused links and topics: no fetches for them, the mirror stays as it is, lag keeps
//! being reported. Kept in `paused.json` in the data directory, so a restart does not
//! resume what an operator paused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use shadowlink_storage::{read_meta, write_meta, StorageError};

use super::offsets::{
    list_offsets_isolated as list, EARLIEST, LATEST, READ_COMMITTED, READ_UNCOMMITTED,
};
use super::{LinkRunner, TopicPartition};
use crate::mirror::{Store, TopicState};
use crate::status::SourceOffsets;

/// The file, in the data directory.
pub const FILE: &str = "paused.json";

/// What is paused of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPause {
    /// The whole link, topics discovered later included.
    #[serde(default)]
    pub all: bool,
    /// Single topics, while the link itself runs.
    #[serde(default)]
    pub topics: BTreeSet<String>,
}

impl LinkPause {
    pub fn is_paused(&self, topic: &str) -> bool {
        self.all || self.topics.contains(topic)
    }

    fn is_empty(&self) -> bool {
        !self.all && self.topics.is_empty()
    }
}

/// The body of `POST /v1/links/{name}/pause` and `/resume`: no topics means the link.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PauseRequest {
    #[serde(default)]
    pub topics: Vec<String>,
}

/// The answer to a pause or resume: what is paused of the link now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PauseAnswer {
    pub link: String,
    #[serde(flatten)]
    pub paused: LinkPause,
}

/// Why a pause or resume was refused.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("no link named {0:?} on this node")]
    UnknownLink(String),
    #[error("topic {topic:?} is not a shadow topic of link {link:?}")]
    NotInLink { link: String, topic: String },
    #[error("topic {topic:?} is failed over: it is written on this node, not mirrored")]
    FailedOver { topic: String },
    #[error(
        "link {0:?} is paused as a whole: resume the link, then pause the topics to keep paused"
    )]
    WholeLinkPaused(String),
    #[error("cannot save the pause state: {0}")]
    Storage(#[from] StorageError),
}

impl PauseError {
    /// A refusal of the request itself, as opposed to a failure of the node.
    pub fn is_bad_request(&self) -> bool {
        !matches!(self, PauseError::Storage(_))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PauseFile {
    links: BTreeMap<String, LinkPause>,
}

/// Every paused link and topic of the node, shared by the link runners and the admin API.
pub struct Pauses {
    path: PathBuf,
    links: Mutex<BTreeMap<String, LinkPause>>,
    /// Bumped on every change, so runners re-read only when something changed.
    generation: AtomicU64,
}

impl Pauses {
    /// Reads `paused.json` from `data_dir`; nothing is paused when it does not exist.
    pub fn open(data_dir: &Path) -> Result<Pauses, StorageError> {
        let path = data_dir.join(FILE);
        let file: PauseFile = read_meta(&path)?.unwrap_or_default();
        Ok(Pauses {
            path,
            links: Mutex::new(file.links),
            generation: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, LinkPause>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What is paused of `link`.
    pub fn of(&self, link: &str) -> LinkPause {
        self.lock().get(link).cloned().unwrap_or_default()
    }

    /// Pauses `topics` of `link`, or the whole link when `topics` is empty.
    pub fn pause(&self, link: &str, topics: &[String]) -> Result<LinkPause, PauseError> {
        self.change(link, |p| {
            if topics.is_empty() {
                p.all = true;
                p.topics.clear();
            } else if !p.all {
                p.topics.extend(topics.iter().cloned());
            }
            Ok(())
        })
    }

    /// Resumes `topics` of `link`, or everything of the link when `topics` is empty.
    pub fn resume(&self, link: &str, topics: &[String]) -> Result<LinkPause, PauseError> {
        self.change(link, |p| {
            if topics.is_empty() {
                *p = LinkPause::default();
            } else if p.all {
                return Err(PauseError::WholeLinkPaused(link.to_string()));
            } else {
                p.topics.retain(|t| !topics.contains(t));
            }
            Ok(())
        })
    }

    /// Applies `edit` to a copy, persists the result, and only then makes it current: a
    /// change the disk refused is not in effect either.
    fn change(
        &self,
        link: &str,
        edit: impl FnOnce(&mut LinkPause) -> Result<(), PauseError>,
    ) -> Result<LinkPause, PauseError> {
        let mut links = self.lock();
        let mut next = links.clone();
        let entry = next.entry(link.to_string()).or_default();
        edit(entry)?;
        let result = entry.clone();
        next.retain(|_, p| !p.is_empty());
        if next != *links {
            write_meta(
                &self.path,
                &PauseFile {
                    links: next.clone(),
                },
            )?;
            *links = next;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(result)
    }
}

/// Checks that every one of `topics` is a shadow topic of `link` that is still mirrored.
pub fn check_topics(store: &Store, link: &str, topics: &[String]) -> Result<(), PauseError> {
    for topic in topics {
        let not_in_link = || PauseError::NotInLink {
            link: link.to_string(),
            topic: topic.clone(),
        };
        let mirror = store.topic(topic).ok_or_else(not_in_link)?;
        let meta = mirror.meta();
        if meta.link != link {
            return Err(not_in_link());
        }
        let handed_over = matches!(meta.state, TopicState::FailingOver | TopicState::FailedOver);
        if handed_over || mirror.is_owned() {
            return Err(PauseError::FailedOver {
                topic: topic.clone(),
            });
        }
    }
    Ok(())
}

impl LinkRunner {
    /// Marks the partitions paused or resumed since the last call, logging each change.
    pub(super) fn apply_pauses(&mut self) {
        let generation = self.pauses.generation();
        if generation == self.pause_generation {
            return;
        }
        self.pause_generation = generation;
        let link = self.link.config.name.clone();
        let now = self.pauses.of(&link);
        let was = std::mem::replace(&mut self.paused, now.clone());
        if now.all != was.all {
            let state = if now.all {
                "link paused"
            } else {
                "link resumed"
            };
            tracing::info!(link = %link, "{state}");
        }
        for topic in now.topics.symmetric_difference(&was.topics) {
            let state = if now.topics.contains(topic) {
                "topic paused"
            } else {
                "topic resumed"
            };
            tracing::info!(link = %link, topic = %topic, "{state}");
        }
        for (key, state) in self.partitions.iter_mut() {
            state.paused = now.is_paused(&key.topic);
        }
        self.sweep = true;
    }

    /// Asks the source where each paused partition's log starts and ends, since no
    /// fetch response tells: the lag of a paused partition keeps being reported.
    pub(super) async fn list_paused_offsets(&mut self) {
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for (key, state) in &self.partitions {
            if state.paused && !state.absent {
                by_leader.entry(state.leader).or_default().push(key.clone());
            }
        }
        for (leader, keys) in by_leader {
            let cluster = &mut self.cluster;
            let start = list(cluster, leader, &keys, EARLIEST, READ_UNCOMMITTED).await;
            let hwm = list(cluster, leader, &keys, LATEST, READ_UNCOMMITTED).await;
            let lso = list(cluster, leader, &keys, LATEST, READ_COMMITTED).await;
            let found = |answers: &[(TopicPartition, Result<i64, _>)], key: &TopicPartition| {
                answers
                    .iter()
                    .find(|(k, _)| k == key)
                    .and_then(|(_, r)| r.as_ref().ok().copied())
            };
            let now = std::time::Instant::now();
            for key in &keys {
                let (Some(log_start), Some(high_watermark), Some(last_stable)) =
                    (found(&start, key), found(&hwm, key), found(&lso, key))
                else {
                    continue;
                };
                let source = SourceOffsets {
                    log_start,
                    high_watermark,
                    last_stable,
                };
                let to = self.partitions.get(key).and_then(|s| s.next_offset);
                self.status.on_listed(key, source, to, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pauses_survive_a_reopen_and_resume_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let pauses = Pauses::open(dir.path()).unwrap();
        assert_eq!(pauses.of("from-a"), LinkPause::default());
        let before = pauses.generation();
        pauses
            .pause("from-a", &topics(&["a_one", "a_two"]))
            .unwrap();
        pauses.pause("from-b", &[]).unwrap();
        assert!(pauses.generation() > before);

        let reopened = Pauses::open(dir.path()).unwrap();
        let a = reopened.of("from-a");
        assert!(a.is_paused("a_one") && a.is_paused("a_two") && !a.is_paused("a_three"));
        assert!(reopened.of("from-b").is_paused("anything"));

        reopened.resume("from-a", &topics(&["a_one"])).unwrap();
        reopened.resume("from-b", &[]).unwrap();
        let again = Pauses::open(dir.path()).unwrap();
        assert_eq!(again.of("from-a").topics, BTreeSet::from(["a_two".into()]));
        assert_eq!(again.of("from-b"), LinkPause::default());
    }

    #[test]
    fn a_whole_link_pause_covers_its_topics_and_resumes_only_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let pauses = Pauses::open(dir.path()).unwrap();
        pauses.pause("from-a", &topics(&["a_one"])).unwrap();
        let all = pauses.pause("from-a", &[]).unwrap();
        assert!(all.all && all.topics.is_empty());
        let refused = pauses.resume("from-a", &topics(&["a_one"]));
        assert!(matches!(refused, Err(PauseError::WholeLinkPaused(_))));
        assert!(pauses.of("from-a").all, "a refused resume changes nothing");
        assert_eq!(pauses.resume("from-a", &[]).unwrap(), LinkPause::default());
    }

    #[test]
    fn an_unchanged_state_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let pauses = Pauses::open(dir.path()).unwrap();
        let generation = pauses.generation();
        pauses.resume("from-a", &[]).unwrap();
        assert_eq!(pauses.generation(), generation);
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(Pauses::open(dir.path()).is_err());
    }
}
