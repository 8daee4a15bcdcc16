//! The assignment in force, kept in the node's data directory, so a node restarted while
//! etcd cannot be reached serves and mirrors what it did before instead of nothing.
//!
//! The file records where the assignment came from: etcd's cluster id and the revision
//! of the `assignment` key. Once etcd answers again, what it holds replaces the file's
//! copy unless it is older, by revision, than the copy from that same etcd.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shadowlink_storage::StorageError;
use tokio::sync::watch;

use super::{Assignment, Cluster};

const FILE: &str = "cluster-assignment.json";

/// Where an installed assignment was read: one etcd cluster's revision of the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// etcd's cluster id, from its response header: a revision means nothing across
    /// two etcd clusters (one restored from a backup, say).
    pub etcd_cluster: u64,
    /// The `assignment` key's mod revision.
    pub revision: i64,
}

impl Origin {
    /// Whether an assignment from `self` may replace one from `current`: a newer
    /// revision of the same etcd, or anything from another etcd.
    pub fn supersedes(&self, current: &Origin) -> bool {
        self.etcd_cluster != current.etcd_cluster || self.revision >= current.revision
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    origin: Origin,
    assignment: Assignment,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The assignment kept in `data_dir`, if there is one.
pub fn load(data_dir: &Path) -> Result<Option<(Origin, Assignment)>, StorageError> {
    let stored: Option<Stored> = shadowlink_storage::read_meta(&path(data_dir))?;
    Ok(stored.map(|s| (s.origin, s.assignment)))
}

/// Replaces the kept assignment; a crash leaves the old file or the new one.
pub fn save(data_dir: &Path, origin: Origin, assignment: &Assignment) -> Result<(), StorageError> {
    let stored = Stored {
        origin,
        assignment: assignment.clone(),
    };
    shadowlink_storage::write_meta(&path(data_dir), &stored)
}

/// Writes every assignment the node installs to `data_dir` until `stopped`, off the
/// async threads. A failed write is logged and retried with the next install: the node
/// still serves, only a restart during an etcd outage would miss the newest copy.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub async fn run(cluster: Arc<Cluster>, data_dir: PathBuf, mut stopped: watch::Receiver<bool>) {
    // What the node opened with is on disk already, or is nothing worth keeping.
    let mut saved = Some(cluster.installed().0);
    loop {
        let (origin, assignment) = cluster.installed();
        if saved != Some(origin) {
            let dir = data_dir.clone();
            let write = tokio::task::spawn_blocking(move || save(&dir, origin, &assignment));
            match write.await {
                Ok(Ok(())) => saved = Some(origin),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot keep the assignment on disk"),
                Err(e) => tracing::warn!(error = %e, "cannot keep the assignment on disk"),
            }
        }
        tokio::select! {
            _ = stopped.changed() => return,
            _ = cluster.installs.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Placement;

    fn one_partition(leader: i32) -> Assignment {
        let mut a = Assignment::default();
        a.brokers
            .insert(leader, format!("127.0.0.1:{}", 9000 + leader));
        let placement = Placement {
            leader,
            replicas: vec![leader],
            ..Default::default()
        };
        a.topics.insert("orders".into(), vec![placement]);
        a
    }

    #[test]
    fn a_kept_assignment_is_read_back_with_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let origin = Origin {
            etcd_cluster: 7,
            revision: 42,
        };
        save(dir.path(), origin, &one_partition(3)).unwrap();
        let (read, assignment) = load(dir.path()).unwrap().unwrap();
        assert_eq!((read, assignment), (origin, one_partition(3)));
    }

    #[test]
    fn a_node_opened_on_a_kept_assignment_serves_it_until_etcd_has_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Origin {
            etcd_cluster: 7,
            revision: 42,
        };
        save(dir.path(), kept, &one_partition(3)).unwrap();
        let cluster = Cluster::open(3, dir.path());
        assert_eq!(cluster.check_leader("orders", 0), Ok(()));
        let older = Origin {
            revision: 41,
            ..kept
        };
        cluster.install_at(one_partition(1), older);
        assert_eq!(cluster.assignment().topics["orders"][0].leader, 3);
        let newer = Origin {
            revision: 43,
            ..kept
        };
        cluster.install_at(one_partition(1), newer);
        assert_eq!(cluster.assignment().topics["orders"][0].leader, 1);
        let restored_etcd = Origin {
            etcd_cluster: 8,
            revision: 2,
        };
        cluster.install_at(one_partition(2), restored_etcd);
        assert_eq!(cluster.installed().0, restored_etcd);
        assert_eq!(cluster.assignment().topics["orders"][0].leader, 2);
    }

    #[test]
    fn a_node_without_a_kept_assignment_places_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::open(3, dir.path());
        assert!(cluster.assignment().topics.is_empty());
        assert!(cluster.not_ready().is_some());
    }
}
