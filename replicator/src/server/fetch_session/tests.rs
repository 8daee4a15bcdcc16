//! Sessions and the session cache.

use super::*;

fn seed(topic: &str, partition: i32, hw: i64) -> CachedPartitionSeed {
    CachedPartitionSeed {
        key: TopicPartition::new(topic, partition),
        params: FetchPartition::default().with_partition(partition),
        answer: FetchPartitionParts {
            partition_index: partition,
            high_watermark: hw,
            ..Default::default()
        },
    }
}

#[test]
fn session_ids_and_epochs_mean_what_kip_227_says() {
    use SessionRequest::*;
    assert_eq!(SessionRequest::of(0, -1), Sessionless { close: None });
    assert_eq!(SessionRequest::of(5, -1), Sessionless { close: Some(5) });
    assert_eq!(SessionRequest::of(0, 0), New { close: None });
    assert_eq!(SessionRequest::of(5, 0), New { close: Some(5) });
    assert_eq!(SessionRequest::of(5, 3), Incremental { id: 5, epoch: 3 });
}

#[test]
fn epochs_advance_per_request_and_a_busy_session_refuses_a_second_one() {
    let cache = SessionCache::new(2);
    let id = cache.create(vec![seed("t", 0, 4)]).unwrap();
    let lease = cache.checkout(id, 1).unwrap();
    assert_eq!(
        cache.checkout(id, 2).unwrap_err(),
        SessionError::Busy { id }
    );
    drop(lease);
    let wrong = cache.checkout(id, 1).unwrap_err();
    assert_eq!(
        wrong,
        SessionError::InvalidEpoch {
            id,
            expected: 2,
            actual: 1
        }
    );
    drop(cache.checkout(id, 2).unwrap());
    cache.close(id);
    assert_eq!(
        cache.checkout(id, 3).unwrap_err(),
        SessionError::NotFound { id }
    );
}

#[test]
fn the_epoch_after_the_largest_is_one() {
    let cache = SessionCache::new(1);
    let id = cache.create(vec![]).unwrap();
    let mut lease = cache.checkout(id, 1).unwrap();
    lease.session().epoch = i32::MAX;
    drop(lease);
    drop(cache.checkout(id, i32::MAX).unwrap());
    assert!(cache.checkout(id, 1).is_ok());
}

#[test]
fn a_full_cache_evicts_the_least_recently_used_idle_session() {
    let cache = SessionCache::new(2);
    let first = cache.create(vec![]).unwrap();
    let second = cache.create(vec![]).unwrap();
    drop(cache.checkout(first, 1).unwrap());
    let third = cache.create(vec![]).unwrap();
    assert_eq!(cache.held(), 2);
    assert!(matches!(
        cache.checkout(second, 1),
        Err(SessionError::NotFound { .. })
    ));
    // Both remaining sessions busy: nothing can be evicted, so no session is made.
    let _a = cache.checkout(first, 2).unwrap();
    let _b = cache.checkout(third, 1).unwrap();
    assert_eq!(cache.create(vec![]), None);
    assert_eq!(SessionCache::new(0).create(vec![]), None);
}

#[test]
fn forgetting_keeps_the_index_of_the_partition_moved_into_the_gap() {
    let cache = SessionCache::new(1);
    let seeds = (0..3).map(|p| seed("t", p, 0)).collect();
    let id = cache.create(seeds).unwrap();
    let mut lease = cache.checkout(id, 1).unwrap();
    let session = lease.session();
    let forgotten = ForgottenTopic::default()
        .with_topic(kafka_protocol::messages::TopicName("t".into()))
        .with_partitions(vec![0]);
    session.forget(&[forgotten]);
    assert_eq!(session.partition_count(), 2);
    session.upsert(
        TopicPartition::new("t", 2),
        FetchPartition::default().with_fetch_offset(9),
    );
    assert_eq!(session.partition_count(), 2);
    let offsets: Vec<(i32, i64)> = (session.rotated())
        .map(|i| &session.partitions[i])
        .map(|p| (p.key.partition, p.params.fetch_offset))
        .collect();
    assert_eq!(offsets, vec![(2, 9), (1, 0)]);
    session.rotate();
    let order: Vec<i32> = (session.rotated())
        .map(|i| session.partitions[i].key.partition)
        .collect();
    assert_eq!(order, vec![1, 2]);
}

/// A store holding owned topic `t` of `partitions`, and the inputs of a read of it.
fn owned_topic(
    dir: &std::path::Path,
    partitions: i32,
) -> (
    crate::mirror::Store,
    Arc<crate::mirror::MirrorTopic>,
    ReadInputs,
) {
    let store = crate::mirror::Store::open(dir, Default::default()).unwrap();
    let topic = store.create_owned_topic("t", partitions, Default::default(), i64::MAX);
    let inputs = ReadInputs {
        isolation_level: 0,
        follower: false,
        cluster_generation: None,
        grants: Grants::everything(),
        topology: store.topology(),
    };
    (store, topic.unwrap(), inputs)
}

fn append(p: &MirrorPartition) {
    use crate::mirror::owned::{ProduceRequest, DEFAULT_MAX_MESSAGE_BYTES};
    let records = [(None, Some(&b"v"[..]))];
    let batch = shadowlink_protocol::batch::testing::BatchBuilder::new(0)
        .leader_epoch(-1)
        .records(&records)
        .build();
    let request = ProduceRequest {
        acks: 1,
        api_version: 9,
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        in_transaction: false,
    };
    p.produce(batch, &request).unwrap();
}

#[tokio::test]
async fn a_session_wakes_at_appends_to_the_partitions_it_watches_until_they_go() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, topic, _) = owned_topic(dir.path(), 2);
    let (mine, other) = (topic.partition(0).unwrap(), topic.partition(1).unwrap());
    let woken = |watcher: Arc<Watcher>| async move {
        let wait = std::time::Duration::from_millis(50);
        tokio::time::timeout(wait, watcher.notified()).await.is_ok()
    };
    let mut session = Session::new(1);
    session.upsert(TopicPartition::new("t", 0), FetchPartition::default());
    session.watch(0, Some(&mine));
    session.watch(0, Some(&mine));
    append(&other);
    assert!(
        !woken(session.watcher()).await,
        "woken by a partition it lacks"
    );
    append(&mine);
    assert!(woken(session.watcher()).await);
    let forgotten = ForgottenTopic::default()
        .with_topic(kafka_protocol::messages::TopicName("t".into()))
        .with_partitions(vec![0]);
    session.forget(&[forgotten]);
    append(&mine);
    assert!(
        !woken(session.watcher()).await,
        "woken by a forgotten partition"
    );

    session.upsert(TopicPartition::new("t", 1), FetchPartition::default());
    session.watch(0, Some(&other));
    session.watch(0, None);
    append(&other);
    assert!(
        !woken(session.watcher()).await,
        "woken by a partition no longer held"
    );
    session.watch(0, Some(&other));
    let watcher = session.watcher();
    drop(session);
    append(&other);
    assert!(!woken(watcher).await, "a dropped session still watched");
}

#[test]
fn a_quiet_partition_is_read_again_after_a_change_a_new_request_or_new_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, topic, inputs) = owned_topic(dir.path(), 1);
    let partition = topic.partition(0).unwrap();
    let key = TopicPartition::new("t", 0);
    let mut session = Session::new(1);
    session.upsert(key.clone(), FetchPartition::default());
    session.prepare(&inputs);
    let quiet_read = |session: &mut Session| {
        let cached = session.partition_mut(0);
        assert!(!cached.is_quiet());
        cached.read(Some(partition.clone()), Some(partition.changes()));
        assert!(cached.is_quiet());
    };
    quiet_read(&mut session);
    assert!(partition.observe_source_epoch(4));
    quiet_read(&mut session);
    session.upsert(key, FetchPartition::default().with_fetch_offset(1));
    quiet_read(&mut session);
    session.prepare(&inputs);
    assert!(session.partition_mut(0).is_quiet(), "the same inputs");
    session.prepare(&ReadInputs {
        isolation_level: 1,
        ..inputs.clone()
    });
    let cached = session.partition_mut(0);
    assert!(!cached.is_quiet() && cached.held().is_none());
    cached.read(None, Some(partition.changes()));
    assert!(!cached.is_quiet(), "a missing partition is always read");
}

#[test]
fn a_read_looks_only_at_partitions_not_quiet_or_changed_since() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic, inputs) = owned_topic(dir.path(), 3);
    let mut session = Session::new(1);
    for p in 0..3 {
        session.upsert(TopicPartition::new("t", p), FetchPartition::default());
    }
    session.prepare(&inputs);
    let feed = store.change_feed();
    assert_eq!(session.due(feed), [0, 1, 2]);
    for p in 0..3 {
        let partition = topic.partition(p).unwrap();
        session.read(
            p as usize,
            Some(partition.clone()),
            Some(partition.changes()),
        );
    }
    assert!(session.due(feed).is_empty(), "every partition is quiet");
    assert!(topic.partition(1).unwrap().observe_source_epoch(4));
    assert_eq!(session.due(feed), [1]);
    session.upsert(TopicPartition::new("t", 2), FetchPartition::default());
    assert_eq!(session.due(feed), [1, 2], "new parameters");
}

#[test]
fn news_is_records_errors_or_moved_offsets() {
    let mut cached = CachedPartition::new(TopicPartition::new("t", 0), Default::default());
    let mut part = FetchPartitionParts {
        high_watermark: 5,
        last_stable_offset: 5,
        log_start_offset: 0,
        ..Default::default()
    };
    assert!(cached.has_news(&part));
    cached.answered(&part);
    assert!(!cached.has_news(&part));
    part.last_stable_offset = 4;
    assert!(cached.has_news(&part));
    part.last_stable_offset = 5;
    part.records = vec![bytes::Bytes::from_static(b"x")];
    assert!(cached.has_news(&part));
    part.records.clear();
    part.error_code = 6;
    assert!(cached.has_news(&part));
    cached.answered(&part);
    part.error_code = 0;
    assert!(cached.has_news(&part));
}
