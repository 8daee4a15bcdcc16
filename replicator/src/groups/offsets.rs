//! Committed offsets per (group, topic, partition), kept in memory and persisted as one
//! JSON file per group under `data_dir/groups/`.
//!
//! One file per group, rewritten whole on each commit, is acceptable because a group's
//! commits are small (one entry per partition it consumes) and infrequent (clients commit
//! every few seconds at most, by default every 5 s), so a rewrite of a few KB with an
//! fsync stays far below what the mirror logs write. `write_meta` replaces the file
//! atomically, so a crash leaves the previous or the new commit, never a torn file.
//!
//! Every method here blocks on disk; async callers go through `spawn_blocking`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use shadowlink_storage::{read_meta, sync_dir, write_meta, StorageError};

/// Kafka's default `offset.metadata.max.bytes`.
pub const MAX_METADATA_BYTES: usize = 4096;

pub use crate::topic_partition::TopicPartition;

/// One committed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    /// The leader epoch of the record before `offset` (KIP-320); -1 when unknown.
    pub leader_epoch: i32,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// What a group's file holds. The group id is stored inside because file names are
/// escaped (and shortened for long ids).
#[derive(Debug, Serialize, Deserialize)]
struct GroupFile {
    group: String,
    offsets: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    topic: String,
    partition: i32,
    #[serde(flatten)]
    committed: Committed,
}

struct GroupOffsets {
    /// Held across a whole commit so that file writes of one group never overlap or reorder.
    write: Mutex<()>,
    committed: Mutex<BTreeMap<TopicPartition, Committed>>,
    /// When the group last committed: the file's modification time after a restart,
    /// since the file is rewritten on every commit.
    changed: Mutex<SystemTime>,
    /// Set, under `write`, once the group expired and its file is gone; a commit that
    /// was waiting for `write` then starts over on a fresh slot.
    expired: AtomicBool,
}

impl GroupOffsets {
    fn new(committed: BTreeMap<TopicPartition, Committed>, changed: SystemTime) -> GroupOffsets {
        GroupOffsets {
            write: Mutex::new(()),
            committed: Mutex::new(committed),
            changed: Mutex::new(changed),
            expired: AtomicBool::new(false),
        }
    }
}

/// Committed offsets of every group on this node.
pub struct OffsetStore {
    dir: PathBuf,
    groups: Mutex<HashMap<String, Arc<GroupOffsets>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl OffsetStore {
    /// Opens `data_dir/groups`, creating it, and loads every group's file.
    pub fn open(data_dir: &Path) -> Result<OffsetStore, StorageError> {
        let dir = data_dir.join("groups");
        fs::create_dir_all(&dir).map_err(|source| io_error("creating", &dir, source))?;
        let mut groups = HashMap::new();
        let entries = fs::read_dir(&dir).map_err(|source| io_error("listing", &dir, source))?;
        for entry in entries {
            let path = entry
                .map_err(|source| io_error("listing", &dir, source))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            if let Some(file) = load_group_file(&path) {
                let offsets = file
                    .offsets
                    .into_iter()
                    .map(|e| (TopicPartition::new(e.topic, e.partition), e.committed))
                    .collect();
                let changed = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .unwrap_or_else(|_| SystemTime::now());
                groups.insert(file.group, Arc::new(GroupOffsets::new(offsets, changed)));
            }
        }
        tracing::info!(groups = groups.len(), dir = %dir.display(), "committed offsets loaded");
        Ok(OffsetStore {
            dir,
            groups: Mutex::new(groups),
        })
    }

    fn group(&self, group: &str) -> Arc<GroupOffsets> {
        lock(&self.groups)
            .entry(group.to_string())
            .or_insert_with(|| Arc::new(GroupOffsets::new(BTreeMap::new(), SystemTime::now())))
            .clone()
    }

    /// Stores `entries` for `group` durably, then makes them visible to readers. On error
    /// nothing changes, in memory or on disk.
    pub fn commit(
        &self,
        group: &str,
        entries: Vec<(TopicPartition, Committed)>,
    ) -> Result<(), StorageError> {
        self.update(group, |next| next.extend(entries.iter().cloned()))
    }

    /// Makes `group`'s offsets exactly `offsets`, durably (a cluster node's copy of what
    /// the shared store holds). A group never seen stays unseen when `offsets` is empty.
    pub fn replace(
        &self,
        group: &str,
        offsets: BTreeMap<TopicPartition, Committed>,
    ) -> Result<(), StorageError> {
        if offsets.is_empty() && !lock(&self.groups).contains_key(group) {
            return Ok(());
        }
        self.update(group, |next| next.clone_from(&offsets))
    }

    /// Writes the group's offsets as `change` leaves them, file first.
    fn update(
        &self,
        group: &str,
        change: impl Fn(&mut BTreeMap<TopicPartition, Committed>),
    ) -> Result<(), StorageError> {
        loop {
            let slot = self.group(group);
            let _writing = lock(&slot.write);
            if slot.expired.load(Ordering::Acquire) {
                // The group expired while this write waited; the next slot is a fresh one.
                continue;
            }
            let mut next = lock(&slot.committed).clone();
            change(&mut next);
            let file = GroupFile {
                group: group.to_string(),
                offsets: next
                    .iter()
                    .map(|(tp, committed)| FileEntry {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        committed: committed.clone(),
                    })
                    .collect(),
            };
            write_meta(&self.dir.join(file_name(group)), &file)?;
            *lock(&slot.committed) = next;
            *lock(&slot.changed) = SystemTime::now();
            return Ok(());
        }
    }

    /// Groups whose last commit was at or before `cutoff`.
    pub fn unchanged_since(&self, cutoff: SystemTime) -> Vec<String> {
        lock(&self.groups)
            .iter()
            .filter(|(_, slot)| *lock(&slot.changed) <= cutoff)
            .map(|(group, _)| group.clone())
            .collect()
    }

    /// Deletes `group`'s offsets, file first, if it has not committed since `cutoff`;
    /// whether it did. A commit racing with this lands either before (and the group
    /// stays) or after, in a new file.
    pub fn remove_unchanged(&self, group: &str, cutoff: SystemTime) -> Result<bool, StorageError> {
        let Some(slot) = lock(&self.groups).get(group).cloned() else {
            return Ok(false);
        };
        let _writing = lock(&slot.write);
        if slot.expired.load(Ordering::Acquire) || *lock(&slot.changed) > cutoff {
            return Ok(false);
        }
        let path = self.dir.join(file_name(group));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error("deleting", &path, source)),
        }
        sync_dir(&self.dir)?;
        slot.expired.store(true, Ordering::Release);
        lock(&self.groups).remove(group);
        Ok(true)
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        let slot = lock(&self.groups).get(group).cloned()?;
        let committed = lock(&slot.committed);
        committed
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    /// Everything committed for `group`, ordered by topic then partition.
    pub fn all(&self, group: &str) -> Vec<(TopicPartition, Committed)> {
        let Some(slot) = lock(&self.groups).get(group).cloned() else {
            return Vec::new();
        };
        let committed = lock(&slot.committed);
        committed
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Groups with at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        let groups: Vec<(String, Arc<GroupOffsets>)> = lock(&self.groups)
            .iter()
            .map(|(g, s)| (g.clone(), s.clone()))
            .collect();
        groups
            .into_iter()
            .filter(|(_, slot)| !lock(&slot.committed).is_empty())
            .map(|(g, _)| g)
            .collect()
    }
}

/// Reads one group file. A file that does not decode is renamed aside, not deleted and
/// not fatal: the node still serves, that group's consumers fall back to their reset
/// policy, and an operator can inspect what was there.
fn load_group_file(path: &Path) -> Option<GroupFile> {
    match read_meta::<GroupFile>(path) {
        Ok(file) => file,
        Err(error) => {
            let aside = path.with_extension("json.corrupt");
            tracing::error!(%error, aside = %aside.display(), "group offsets file unreadable; moved aside");
            if let Err(e) = fs::rename(path, &aside) {
                tracing::error!(error = %e, "cannot move the unreadable offsets file aside");
            }
            None
        }
    }
}

/// `g-{escaped}.json`: letters, digits, `-` and `_` as is, every other byte as `%XX`, so
/// no group id can name a path outside the directory. Ids whose escaped form would
/// exceed common file-name limits keep a prefix plus a hash of the whole id.
fn file_name(group: &str) -> String {
    let mut escaped = String::with_capacity(group.len());
    for byte in group.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    if escaped.len() > 180 {
        let cut = escaped
            .char_indices()
            .map(|(i, _)| i)
            .take_while(|i| *i <= 160)
            .last()
            .unwrap_or(0);
        escaped = format!("{}~{:016x}", &escaped[..cut], fnv1a(group.as_bytes()));
    }
    format!("g-{escaped}.json")
}

/// FNV-1a 64: stable across Rust releases, unlike `DefaultHasher`, so names never move.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: 3,
            metadata: Some("m".into()),
        }
    }

    #[test]
    fn commits_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        store
            .commit(
                "g1",
                vec![
                    (TopicPartition::new("t", 0), at(5)),
                    (TopicPartition::new("t", 1), at(7)),
                ],
            )
            .unwrap();
        store
            .commit("g1", vec![(TopicPartition::new("t", 0), at(9))])
            .unwrap();
        store
            .commit("odd/../name", vec![(TopicPartition::new("u", 2), at(1))])
            .unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g1", "t", 0), Some(at(9)));
        assert_eq!(store.get("g1", "t", 1), Some(at(7)));
        assert_eq!(store.get("odd/../name", "u", 2), Some(at(1)));
        let mut groups = store.groups();
        groups.sort();
        assert_eq!(groups, vec!["g1".to_string(), "odd/../name".to_string()]);
    }

    #[test]
    fn file_names_stay_inside_the_directory_and_short() {
        assert_eq!(file_name("a.b/c"), "g-a%2Eb%2Fc.json");
        assert_eq!(file_name(""), "g-.json");
        let long = "é".repeat(500);
        let name = file_name(&long);
        assert!(name.len() < 200, "{name}");
        assert_ne!(name, file_name(&"é".repeat(501)));
    }

    #[test]
    fn an_unreadable_file_is_moved_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("groups")).unwrap();
        fs::write(dir.path().join("groups/g-x.json"), b"{broken").unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        assert!(store.groups().is_empty());
        assert!(dir.path().join("groups/g-x.json.corrupt").exists());
    }
}
