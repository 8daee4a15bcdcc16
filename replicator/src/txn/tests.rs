use std::collections::BTreeMap;
use std::sync::Arc;

use shadowlink_protocol::batch::{BatchWalker, ControlType};
use shadowlink_storage::LogConfig;

use super::*;
use crate::groups::{Committed, Coordinator};
use crate::mirror::Store;

struct Node {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    groups: Arc<Coordinator>,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), LogConfig::default()).unwrap());
    store
        .create_owned_topic("out", 2, BTreeMap::new(), 100)
        .unwrap();
    let groups = Arc::new(Coordinator::open(dir.path()).unwrap());
    Node { dir, store, groups }
}

impl Node {
    fn coordinator(&self) -> TxnCoordinator {
        TxnCoordinator::open(self.dir.path(), self.store.clone(), self.groups.clone()).unwrap()
    }

    /// `(producer id, epoch, control type)` of every marker in `out-partition`.
    fn markers(&self, partition: i32) -> Vec<(i64, i16, Option<ControlType>)> {
        let p = self.store.partition("out", partition).unwrap();
        let read = p.log().read(0, usize::MAX).unwrap();
        read.chunks
            .into_iter()
            .flat_map(|c| BatchWalker::new(c).map(Result::unwrap).collect::<Vec<_>>())
            .filter(|b| b.is_control())
            .map(|b| (b.producer_id(), b.producer_epoch(), b.control_type()))
            .collect()
    }
}

fn offset(offset: i64) -> Committed {
    Committed {
        offset,
        leader_epoch: -1,
        metadata: None,
    }
}

#[test]
fn init_bumps_the_epoch_and_fences_the_older_producer() {
    let node = node();
    let txns = node.coordinator();
    let (pid, epoch) = txns.init_producer_id("t", 60_000, None).unwrap();
    assert_eq!(epoch, 0);
    txns.add_partitions("t", pid, 0, vec![("out".into(), 0)])
        .unwrap();
    // A second producer of the id: the ongoing transaction is aborted in a new epoch,
    // and the newcomer gets the one after.
    assert_eq!(txns.init_producer_id("t", 60_000, None).unwrap(), (pid, 2));
    assert_eq!(node.markers(0), vec![(pid, 1, Some(ControlType::Abort))]);
    assert!(matches!(
        txns.end("t", pid, 0, true),
        Err(TxnError::Fenced { current: 2, .. })
    ));
    assert!(matches!(
        txns.verify_produce(pid, 0, "out", 0),
        Err(TxnError::Fenced { .. })
    ));
    assert!(matches!(
        txns.init_producer_id("t", 60_000, Some((pid, 0))),
        Err(TxnError::Fenced { .. })
    ));
    assert!(matches!(
        txns.init_producer_id("t", 0, None),
        Err(TxnError::InvalidTimeout(0))
    ));
}

#[test]
fn commit_writes_a_marker_per_partition_and_applies_staged_offsets() {
    let node = node();
    let txns = node.coordinator();
    let (pid, epoch) = txns.init_producer_id("t", 60_000, None).unwrap();
    let both = vec![("out".to_string(), 0), ("out".to_string(), 1)];
    txns.add_partitions("t", pid, epoch, both).unwrap();
    assert!(txns.verify_produce(pid, epoch, "out", 1).is_ok());
    assert!(txns.verify_produce(pid, epoch, "in", 0).is_err());
    txns.add_offsets("t", pid, epoch, "g").unwrap();
    let staged = vec![("out".to_string(), 0, offset(7))];
    txns.stage_offsets("t", pid, epoch, "g", staged).unwrap();
    assert!(node.groups.fetch_offset("g", "out", 0).is_none());
    assert_eq!(txns.unstable_offsets("g").len(), 1);
    txns.end("t", pid, epoch, true).unwrap();
    for p in 0..2 {
        assert_eq!(node.markers(p), vec![(pid, 0, Some(ControlType::Commit))]);
    }
    assert_eq!(node.groups.fetch_offset("g", "out", 0).unwrap().offset, 7);
    assert!(txns.unstable_offsets("g").is_empty());
    // A retry of the same decision succeeds and writes nothing; the opposite is refused.
    txns.end("t", pid, epoch, true).unwrap();
    assert_eq!(node.markers(0).len(), 1);
    assert!(matches!(
        txns.end("t", pid, epoch, false),
        Err(TxnError::InvalidState { .. })
    ));
}

#[test]
fn abort_drops_staged_offsets_and_timeouts_abort_in_a_new_epoch() {
    let node = node();
    let txns = node.coordinator();
    let (pid, epoch) = txns.init_producer_id("t", 1_000, None).unwrap();
    txns.add_offsets("t", pid, epoch, "g").unwrap();
    let staged = vec![("out".to_string(), 0, offset(3))];
    txns.stage_offsets("t", pid, epoch, "g", staged).unwrap();
    txns.end("t", pid, epoch, false).unwrap();
    assert!(node.groups.fetch_offset("g", "out", 0).is_none());

    txns.add_partitions("t", pid, epoch, vec![("out".into(), 1)])
        .unwrap();
    assert_eq!(txns.sweep(now_ms()), 0);
    assert_eq!(txns.sweep(now_ms() + 1_001), 1);
    assert_eq!(node.markers(1), vec![(pid, 1, Some(ControlType::Abort))]);
    assert!(matches!(
        txns.add_partitions("t", pid, epoch, vec![("out".into(), 1)]),
        Err(TxnError::Fenced { .. })
    ));
}

#[test]
fn state_survives_a_restart_and_a_decided_transaction_completes_on_open() {
    let node = node();
    let txns = node.coordinator();
    let (pid, epoch) = txns.init_producer_id("t", 60_000, None).unwrap();
    txns.add_partitions("t", pid, epoch, vec![("out".into(), 0)])
        .unwrap();
    drop(txns);
    // A crash after the decision was persisted, before any marker was written.
    let path = node.dir.path().join("transactions.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"ongoing\"", "\"prepare_commit\"")).unwrap();
    let txns = node.coordinator();
    assert_eq!(node.markers(0), vec![(pid, 0, Some(ControlType::Commit))]);
    assert_eq!(txns.init_producer_id("t", 60_000, None).unwrap(), (pid, 1));
}
