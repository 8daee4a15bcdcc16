//! Owned topics in the store: persistence, the shadow-to-owned transition, restarts.

use std::collections::BTreeMap;

use bytes::Bytes;
use shadowlink_protocol::batch::testing::BatchBuilder;
use shadowlink_protocol::batch::RecordBatch;
use shadowlink_storage::LogConfig;

use super::owned::{ProduceError, ProduceRequest, DEFAULT_MAX_MESSAGE_BYTES};
use super::*;

fn open(dir: &Path) -> Store {
    Store::open(dir, LogConfig::default()).unwrap()
}

fn request() -> ProduceRequest {
    ProduceRequest {
        acks: -1,
        api_version: 9,
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        in_transaction: false,
    }
}

/// A client batch: offsets and epoch as a producer sends them (0 and -1).
fn client_batch(producer: (i64, i16, i32), records: usize) -> Bytes {
    let values: Vec<_> = (0..records).map(|_| (None, Some(&b"v"[..]))).collect();
    BatchBuilder::new(0)
        .leader_epoch(-1)
        .producer(producer.0, producer.1, producer.2)
        .records(&values)
        .build()
}

fn shadow_meta(partitions: i32) -> TopicMeta {
    TopicMeta {
        link: "from-a".into(),
        source_topic_id: topic_id_hex(&[0; 16]),
        partitions,
        state: TopicState::Active,
        configs: BTreeMap::new(),
    }
}

fn stored(partition: &MirrorPartition) -> Vec<RecordBatch> {
    let read = partition.log().read(0, usize::MAX).unwrap();
    read.chunks
        .into_iter()
        .flat_map(|c| shadowlink_protocol::batch::BatchWalker::new(c).map(Result::unwrap))
        .collect()
}

#[test]
fn topic_json_without_ownership_still_loads_as_a_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let topic_dir = dir.path().join("topics/a_orders");
    std::fs::create_dir_all(&topic_dir).unwrap();
    let old = r#"{"link":"from-a","source_topic_id":"00","partitions":1,"state":"active","configs":{"retention.ms":"1000"}}"#;
    std::fs::write(topic_dir.join("topic.json"), old).unwrap();
    let store = open(dir.path());
    let topic = store.topic("a_orders").unwrap();
    assert!(!topic.is_owned());
    assert_eq!(topic.meta().link, "from-a");
    assert_eq!(topic.meta().configs["retention.ms"], "1000");
    let p = topic.partition(0).unwrap();
    assert!(matches!(
        p.produce(client_batch((-1, -1, -1), 1), &request()),
        Err(ProduceError::NotOwned)
    ));
}

#[test]
fn produced_batches_get_contiguous_offsets_and_survive_a_restart_with_their_producers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .create_owned_topic("b_payments", 2, BTreeMap::new(), i64::MAX)
        .unwrap();
    let p = store.topic("b_payments").unwrap().partition(1).unwrap();
    let first = p.produce(client_batch((5, 0, 0), 3), &request()).unwrap();
    let second = p.produce(client_batch((5, 0, 3), 2), &request()).unwrap();
    assert_eq!((first.base_offset, second.base_offset), (0, 3));
    let retry = p.produce(client_batch((5, 0, 0), 3), &request()).unwrap();
    assert!(retry.duplicate && retry.base_offset == 0);
    assert_eq!(p.log().log_end_offset(), 5);
    drop((p, store));

    let store = open(dir.path());
    let topic = store.topic("b_payments").unwrap();
    assert!(topic.is_owned());
    let p = topic.partition(1).unwrap();
    let retry = p.produce(client_batch((5, 0, 3), 2), &request()).unwrap();
    assert!(retry.duplicate && retry.base_offset == 3, "{retry:?}");
    assert!(matches!(
        p.produce(client_batch((5, 0, 9), 1), &request()),
        Err(ProduceError::Sequence(_))
    ));
    let next = p.produce(client_batch((5, 0, 5), 1), &request()).unwrap();
    assert_eq!(next.base_offset, 5);
    let offsets: Vec<_> = stored(&p).iter().map(RecordBatch::base_offset).collect();
    assert_eq!(offsets, vec![0, 3, 5]);
}

#[test]
fn a_shadow_made_writable_continues_at_its_end_in_a_newer_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.ensure_topic("a_orders", shadow_meta(1)).unwrap();
    let p = topic.partition(0).unwrap();
    // Mirrored: the source's offsets (with a gap) and epochs 2 then 7.
    let mirrored = BatchBuilder::new(10)
        .leader_epoch(2)
        .producer(90_000, 0, 0)
        .records(&[(None, None)])
        .build();
    p.append(mirrored).unwrap();
    p.append(
        BatchBuilder::new(20)
            .leader_epoch(7)
            .last_offset_delta(4)
            .build(),
    )
    .unwrap();
    assert!(store.allocate_producer_id().unwrap() > 90_000);

    let ownership = topic.make_writable().unwrap();
    assert_eq!(ownership.leader_epochs[&0], 8);
    assert_eq!(ownership.writable_from[&0], 25);
    assert_eq!(ownership.from_link.as_deref(), Some("from-a"));
    assert_eq!(
        topic.make_writable().unwrap(),
        ownership,
        "one way, idempotent"
    );
    assert_eq!(p.log().latest_epoch(), Some(8));
    // The link can no longer write it.
    assert!(p.append(BatchBuilder::new(25).build()).is_err());

    let produced = p
        .produce(client_batch((-1, -1, -1), 2), &request())
        .unwrap();
    assert_eq!(produced.base_offset, 25);
    let last = stored(&p).pop().unwrap();
    assert_eq!((last.base_offset(), last.partition_leader_epoch()), (25, 8));
    drop((p, topic, store));

    let store = open(dir.path());
    let topic = store.topic("a_orders").unwrap();
    assert_eq!(topic.ownership(), Some(ownership));
    assert_eq!(topic.meta().link, "from-a");
    let p = topic.partition(0).unwrap();
    assert_eq!(p.owned_epoch(), Some(8));
    assert_eq!(
        p.produce(client_batch((-1, -1, -1), 1), &request())
            .unwrap()
            .base_offset,
        27
    );
}

#[test]
fn an_epoch_begun_without_batches_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.ensure_topic("a_orders", shadow_meta(1)).unwrap();
    let p = topic.partition(0).unwrap();
    p.append(
        BatchBuilder::new(0)
            .leader_epoch(4)
            .records(&[(None, None)])
            .build(),
    )
    .unwrap();
    topic.make_writable().unwrap();
    drop((p, topic, store));
    // Recovery drops an epoch that starts at the log end; the ownership restores it.
    let store = open(dir.path());
    let p = store.topic("a_orders").unwrap().partition(0).unwrap();
    assert_eq!(p.log().latest_epoch(), Some(5));
}

#[test]
fn owned_topics_are_declared_once_grown_and_never_over_a_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.ensure_owned_topic("b_payments", 1).unwrap();
    let topic = store.ensure_owned_topic("b_payments", 3).unwrap();
    assert_eq!(topic.partitions().len(), 3);
    assert!(topic.partitions().iter().all(|p| p.is_owned()));
    assert_eq!(topic.ownership().unwrap().leader_epochs.len(), 3);
    assert!(matches!(
        store.create_owned_topic("b_payments", 1, BTreeMap::new(), i64::MAX),
        Err(OwnTopicError::Exists(_))
    ));
    store.ensure_topic("a_orders", shadow_meta(1)).unwrap();
    assert!(matches!(
        store.ensure_owned_topic("a_orders", 1),
        Err(OwnTopicError::Shadow { .. })
    ));
    for bad in ["", "..", "a/b", "../x", &"x".repeat(250)] {
        assert!(matches!(
            store.create_owned_topic(bad, 1, BTreeMap::new(), i64::MAX),
            Err(OwnTopicError::InvalidName { .. })
        ));
    }
    assert!(matches!(
        store.create_owned_topic("b_zero", 0, BTreeMap::new(), i64::MAX),
        Err(OwnTopicError::InvalidPartitions(0))
    ));
}

#[test]
fn a_shadow_with_an_offline_partition_is_not_made_writable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.ensure_topic("a_orders", shadow_meta(2)).unwrap();
    topic
        .partition(1)
        .unwrap()
        .append(BatchBuilder::new(0).leader_epoch(5).build())
        .unwrap();
    drop((topic, store));
    let log_start = dir.path().join("topics/a_orders/1/log-start-offset");
    std::fs::write(&log_start, b"?").unwrap();

    let store = open(dir.path());
    let topic = store.topic("a_orders").unwrap();
    assert!(topic.partition(1).is_none());
    let offline = store.offline();
    assert_eq!(offline.len(), 1);
    assert_eq!(
        (offline[0].topic.as_str(), offline[0].partition),
        ("a_orders", Some(1))
    );
    // Its epochs are unknown, so no epoch above them can be chosen.
    let refused = topic.make_writable().unwrap_err().to_string();
    assert!(refused.contains("a_orders-1 is offline"), "{refused}");
    assert!(
        refused.contains(&log_start.display().to_string()),
        "{refused}"
    );
    assert_eq!(topic.ownership(), None);
}

#[test]
fn only_written_partitions_are_queued_for_an_interval_sync_and_it_clears_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        persist: shadowlink_storage::PersistMode::Interval(Duration::from_millis(50)),
        ..LogConfig::default()
    };
    let store = Store::open(dir.path(), config).unwrap();
    let topic = store.ensure_topic("a_orders", shadow_meta(3)).unwrap();
    for p in topic.partitions() {
        p.log().read(0, usize::MAX).unwrap();
    }
    let queue = store.flushes();
    assert!(queue.is_empty(), "idle partitions owe no sync");
    let written = topic.partition(1).unwrap();
    written.append(one_record(0)).unwrap();
    written.append(one_record(1)).unwrap();
    assert_eq!(queue.len(), 1, "queued once however often written");
    let (taken, next) = queue.take_due(Instant::now());
    assert!(taken.is_empty(), "not due before the interval");
    let at = next.expect("a due time");
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
    let (taken, next) = queue.take_due(at);
    assert_eq!((taken.len(), next), (1, None));
    assert_eq!(
        (taken[0].topic.as_str(), taken[0].partition),
        ("a_orders", 1)
    );
    written.flush_if_due().unwrap();
    assert_eq!(written.log().sync_due_at(), None, "synced by its due time");
    assert!(queue.is_empty());
    written.append(one_record(2)).unwrap();
    assert_eq!(queue.len(), 1, "a later write queues it again");
}

#[test]
fn the_change_count_moves_with_every_change_a_fetch_can_see_and_not_with_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.ensure_topic("a_orders", shadow_meta(2)).unwrap();
    let p = topic.partition(0).unwrap();
    let moved = |change: &dyn Fn()| {
        let before = store.changes();
        change();
        store.changes() > before
    };
    assert!(!moved(&|| {
        let log = p.log();
        log.read(0, usize::MAX).unwrap();
        log.high_watermark();
        log.last_stable_offset();
    }));
    assert!(!moved(&|| assert!(p.check_leader_epoch(-1).is_ok())));
    assert!(moved(&|| {
        p.append(one_record(0)).unwrap();
    }));
    assert!(moved(&|| {
        topic.partition(1).unwrap().append(one_record(0)).unwrap();
    }));
    p.append(one_record(1)).unwrap();
    assert!(moved(&|| p.log().truncate_to(1).unwrap()));
    assert!(moved(&|| assert!(p.observe_source_epoch(3))));
    assert!(
        !moved(&|| assert!(p.observe_source_epoch(3))),
        "an epoch seen before changes nothing"
    );
    assert!(moved(&|| {
        topic.make_writable().unwrap();
    }));
    assert!(moved(&|| {
        p.produce(client_batch((-1, -1, -1), 1), &request())
            .unwrap();
    }));
}

#[test]
fn a_partition_counts_its_own_changes_and_the_store_counts_added_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.ensure_topic("a_orders", shadow_meta(2)).unwrap();
    let (p, other) = (topic.partition(0).unwrap(), topic.partition(1).unwrap());
    let before = (p.changes(), other.changes(), store.changes());
    other.append(one_record(0)).unwrap();
    assert_eq!(p.changes(), before.0, "another partition's append");
    assert!(other.changes() > before.1 && store.changes() > before.2);
    let seen = p.changes();
    p.log().read(0, usize::MAX).unwrap();
    assert_eq!(p.changes(), seen, "a read");
    assert!(p.observe_source_epoch(2));
    assert!(
        p.changes() > seen,
        "a new source epoch moves what clients are checked against"
    );
    let seen = p.changes();
    topic.make_writable().unwrap();
    assert!(p.changes() > seen);

    let topology = store.topology();
    store.ensure_topic("a_orders", shadow_meta(2)).unwrap();
    assert_eq!(store.topology(), topology, "nothing added");
    let added = |add: &dyn Fn()| {
        let before = store.topology();
        add();
        store.topology() > before
    };
    assert!(added(&|| {
        store.ensure_topic("a_more", shadow_meta(1)).unwrap();
    }));
    assert!(added(&|| {
        store.ensure_owned_topic("a_orders", 4).unwrap();
    }));
}

fn one_record(offset: i64) -> Bytes {
    BatchBuilder::new(offset)
        .records(&[(None, Some(&b"v"[..]))])
        .build()
}

#[tokio::test]
async fn a_watcher_wakes_at_appends_to_its_partition_alone_and_sees_them_counted() {
    use crate::mirror::appends::Watcher;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store
        .create_owned_topic("b_watched", 2, BTreeMap::new(), i64::MAX)
        .unwrap();
    let (watched, other) = (topic.partition(0).unwrap(), topic.partition(1).unwrap());
    let waiter = Arc::new(Watcher::default());
    watched.watch(&waiter);
    let quiet = || tokio::time::timeout(Duration::from_millis(50), waiter.notified());

    other
        .produce(client_batch((-1, -1, -1), 1), &request())
        .unwrap();
    assert!(
        quiet().await.is_err(),
        "woken by another partition's append"
    );
    assert_eq!(waiter.tally().bytes, 0);
    assert!(store.appended().tally().bytes > 0);

    let before = waiter.tally();
    let produced = client_batch((-1, -1, -1), 2);
    watched.produce(produced.clone(), &request()).unwrap();
    waiter.notified().await;
    let bytes = waiter.tally().bytes_since(&before);
    assert_eq!(bytes, produced.len() as u64);

    watched.unwatch(&waiter);
    watched
        .produce(client_batch((-1, -1, -1), 1), &request())
        .unwrap();
    assert!(quiet().await.is_err(), "woken after it stopped watching");
    assert_eq!(waiter.tally().bytes_since(&before), produced.len() as u64);
}
