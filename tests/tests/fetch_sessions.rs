//! KIP-227 incremental fetch sessions: the listener serves them to any client, and links
//! open them with sources that offer them, falling back to full fetches otherwise.

use std::time::Duration;

use anyhow::{bail, Result};
use shadowlink_tests::fetching::{
    answered, counter, fetch, forgetting, metric, send, SESSION_READS,
};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::{create_topic, padded_batch, produce, wait_identical};
use shadowlink_tests::{eventually, Node, NodeConfig, Tansu};

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// Produces one record to partition `p` of a 4-partition topic on `node`.
fn produce_to(node: &Node, topic: &str, p: usize) -> Result<()> {
    produce(node.kafka, topic, 1, "none", 4, p)
}

#[test]
fn a_session_answers_only_partitions_with_news_and_refuses_stale_epochs() -> Result<()> {
    let node = Node::start(&NodeConfig::owner().topic("s_data", 4))?;
    for p in 0..4 {
        produce_to(&node, "s_data", p)?;
    }
    let mut client = RawClient::connect(node.kafka)?;
    let all: Vec<(i32, i64)> = (0..4).map(|p| (p, 0)).collect();
    let opened = send(&mut client, &fetch(0, 0, "s_data", &all))?;
    assert_eq!(opened.error_code, 0);
    let id = opened.session_id;
    assert_ne!(id, 0, "a full fetch at epoch 0 opens a session");
    let full = answered(&opened);
    assert_eq!(full.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(full.values().all(|&(hw, bytes)| hw == 1 && bytes > 0));

    // Every partition moves to its end: nothing is new, so nothing is answered.
    let moved: Vec<(i32, i64)> = (0..4).map(|p| (p, 1)).collect();
    let quiet = send(&mut client, &fetch(id, 1, "s_data", &moved))?;
    assert_eq!((quiet.error_code, quiet.session_id), (0, id));
    assert!(answered(&quiet).is_empty(), "{:?}", answered(&quiet));

    // One partition gets a record: only it is answered, though the request names none.
    produce_to(&node, "s_data", 2)?;
    let news = send(&mut client, &fetch(id, 2, "s_data", &[]))?;
    let news = answered(&news);
    assert_eq!(news.keys().copied().collect::<Vec<_>>(), [2]);
    assert!(news[&2].0 == 2 && news[&2].1 > 0);

    // A forgotten partition is no longer read; the others still are.
    let request = forgetting(fetch(id, 3, "s_data", &[(2, 2)]), "s_data", vec![1]);
    assert!(answered(&send(&mut client, &request)?).is_empty());
    produce_to(&node, "s_data", 1)?;
    produce_to(&node, "s_data", 3)?;
    let after = answered(&send(&mut client, &fetch(id, 4, "s_data", &[]))?);
    assert_eq!(after.keys().copied().collect::<Vec<_>>(), [3]);

    // A replayed epoch and an unknown id fail the whole request, naming no partition.
    let stale = send(&mut client, &fetch(id, 4, "s_data", &[]))?;
    assert_eq!(stale.error_code, INVALID_FETCH_SESSION_EPOCH);
    assert!(stale.responses.is_empty() && stale.session_id == 0);
    let unknown_id = if id == i32::MAX { 1 } else { id + 1 };
    let unknown = send(&mut client, &fetch(unknown_id, 1, "s_data", &[]))?;
    assert_eq!(unknown.error_code, FETCH_SESSION_ID_NOT_FOUND);
    assert!(unknown.responses.is_empty());

    // The session survives both refusals; epoch -1 closes it.
    let alive = send(&mut client, &fetch(id, 5, "s_data", &[]))?;
    assert_eq!((alive.error_code, alive.session_id), (0, id));
    let closed = send(&mut client, &fetch(id, -1, "s_data", &[(0, 0)]))?;
    assert_eq!((closed.error_code, closed.session_id), (0, 0));
    assert_eq!(
        answered(&closed).len(),
        1,
        "a closing request is a full fetch"
    );
    let gone = send(&mut client, &fetch(id, 6, "s_data", &[]))?;
    assert_eq!(gone.error_code, FETCH_SESSION_ID_NOT_FOUND);
    Ok(())
}

#[test]
fn an_idle_session_reads_no_partition_until_one_changes_and_an_append_wakes_it() -> Result<()> {
    let node = Node::start(&NodeConfig::owner().topic("s_idle", 4).admin())?;
    for p in 0..4 {
        produce_to(&node, "s_idle", p)?;
    }
    let mut client = RawClient::connect(node.kafka)?;
    let all: Vec<(i32, i64)> = (0..4).map(|p| (p, 1)).collect();
    let id = send(&mut client, &fetch(0, 0, "s_idle", &all))?.session_id;
    assert_ne!(id, 0);
    // The first incremental request reads every partition; it finds nothing new.
    let first = send(&mut client, &fetch(id, 1, "s_idle", &[]))?;
    assert!(answered(&first).is_empty());
    let read = metric(&node, SESSION_READS)?;
    assert!(read >= 4.0, "{read}");

    // Nothing changed since: idle long polls read no partition at all.
    for epoch in 2..6 {
        let idle = send(&mut client, &fetch(id, epoch, "s_idle", &[]))?;
        assert_eq!((idle.error_code, idle.session_id), (0, id));
        assert!(answered(&idle).is_empty());
    }
    assert_eq!(metric(&node, SESSION_READS)?, read);

    // A record appended during a long poll is answered at once, not at its deadline.
    let long = fetch(id, 6, "s_idle", &[]).with_max_wait_ms(20_000);
    let started = std::time::Instant::now();
    let addr = node.kafka;
    let producer = std::thread::spawn(move || produce(addr, "s_idle", 1, "none", 4, 2));
    let woken = answered(&send(&mut client, &long)?);
    producer.join().expect("producer thread")?;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(woken.keys().copied().collect::<Vec<_>>(), [2]);
    assert!(woken[&2].0 == 2 && woken[&2].1 > 0);
    // Only the partition that changed was read: the others found nothing before.
    let woken_reads = metric(&node, SESSION_READS)? - read;
    assert!((1.0..4.0).contains(&woken_reads), "{woken_reads}");

    // Moving a partition's offset is a change to the session: it is read again.
    let after_news = send(&mut client, &fetch(id, 7, "s_idle", &[(2, 2)]))?;
    assert!(answered(&after_news).is_empty());
    let settled = metric(&node, SESSION_READS)?;
    let idle = send(&mut client, &fetch(id, 8, "s_idle", &[]))?;
    assert!(answered(&idle).is_empty());
    assert_eq!(metric(&node, SESSION_READS)?, settled);
    Ok(())
}

#[test]
fn the_session_cache_evicts_the_least_recently_used_session_at_its_bound() -> Result<()> {
    let config = NodeConfig::owner()
        .topic("s_bound", 4)
        .fetch_session_slots(2)
        .admin();
    let node = Node::start(&config)?;
    let mut client = RawClient::connect(node.kafka)?;
    let mut open = || -> Result<i32> {
        let response = send(&mut client, &fetch(0, 0, "s_bound", &[(0, 0)]))?;
        Ok(response.session_id)
    };
    let (first, second) = (open()?, open()?);
    assert!(first != 0 && second != 0 && first != second);
    let mut client = RawClient::connect(node.kafka)?;
    // The first session is used again, so the second is the least recently used.
    assert_eq!(
        send(&mut client, &fetch(first, 1, "s_bound", &[]))?.error_code,
        0
    );
    assert_eq!(metric(&node, "shadowlink_fetch_sessions_active")?, 2.0);
    let third = send(&mut client, &fetch(0, 0, "s_bound", &[(0, 0)]))?.session_id;
    assert!(third != 0, "a full cache makes room for a new session");
    let evicted = send(&mut client, &fetch(second, 1, "s_bound", &[]))?;
    assert_eq!(evicted.error_code, FETCH_SESSION_ID_NOT_FOUND);
    assert_eq!(
        send(&mut client, &fetch(first, 2, "s_bound", &[]))?.error_code,
        0
    );
    assert_eq!(
        send(&mut client, &fetch(third, 1, "s_bound", &[]))?.error_code,
        0
    );
    assert_eq!(metric(&node, "shadowlink_fetch_sessions_active")?, 2.0);

    // With no slot at all, a request for a session is served as a plain full fetch.
    let none = Node::start(
        &NodeConfig::owner()
            .topic("s_bound", 1)
            .fetch_session_slots(0),
    )?;
    let mut client = RawClient::connect(none.kafka)?;
    let full = send(&mut client, &fetch(0, 0, "s_bound", &[(0, 0)]))?;
    assert_eq!((full.error_code, full.session_id), (0, 0));
    assert_eq!(answered(&full).len(), 1);
    Ok(())
}

/// The link's request counter of `kind` (`full` or `incremental`) on a mirror node.
fn link_requests(node: &Node, kind: &str) -> Result<f64> {
    let series = format!("shadowlink_link_fetch_requests_total{{kind=\"{kind}\",link=\"from-a\"}}");
    metric(node, &series)
}

#[test]
fn a_link_fetches_through_a_session_and_adds_topics_created_later() -> Result<()> {
    let source = Node::start(&NodeConfig::owner().topic("a_one", 4).admin())?;
    produce(source.kafka, "a_one", 200, "lz4", 4, 0)?;
    let mirror = Node::start(&NodeConfig::linked_to(source.kafka).admin())?;
    let plain_link = NodeConfig::linked_to(source.kafka)
        .admin()
        .link(|l| l.fetch_sessions(false));
    let plain = Node::start(&plain_link)?;
    wait_identical(source.kafka, mirror.kafka, "a_one", 4)?;
    wait_identical(source.kafka, plain.kafka, "a_one", 4)?;
    // Idle, the mirror's requests are incremental; the other link opened no session.
    eventually(Duration::from_secs(10), || {
        Ok((link_requests(&mirror, "incremental")? >= 5.0).then_some(()))
    })?;
    assert_eq!(metric(&source, "shadowlink_fetch_sessions_active")?, 1.0);
    assert_eq!(link_requests(&plain, "incremental")?, 0.0);
    let full_before = link_requests(&mirror, "full")?;

    // A topic created now joins the open session as added partitions.
    create_topic(source.kafka, "a_late", 3, &[])?;
    produce(source.kafka, "a_late", 90, "zstd", 3, 0)?;
    produce(source.kafka, "a_one", 40, "none", 4, 200)?;
    wait_identical(source.kafka, mirror.kafka, "a_late", 3)?;
    wait_identical(source.kafka, mirror.kafka, "a_one", 4)?;
    wait_identical(source.kafka, plain.kafka, "a_late", 3)?;
    assert_eq!(link_requests(&mirror, "full")?, full_before);
    assert_eq!(metric(&source, "shadowlink_fetch_sessions_active")?, 1.0);
    Ok(())
}

#[test]
fn a_restarted_source_answers_session_not_found_and_the_link_opens_a_new_session() -> Result<()> {
    let listen = format!("127.0.0.1:{}", shadowlink_tests::free_port());
    let config = NodeConfig::owner()
        .listen(&listen)
        .topic("a_kept", 2)
        .admin();
    let mut source = Node::start(&config)?;
    produce(source.kafka, "a_kept", 100, "snappy", 2, 0)?;
    let mirror = Node::start(&NodeConfig::linked_to(source.kafka).admin())?;
    wait_identical(source.kafka, mirror.kafka, "a_kept", 2)?;
    eventually(Duration::from_secs(10), || {
        Ok((link_requests(&mirror, "incremental")? >= 2.0).then_some(()))
    })?;
    let not_found =
        "shadowlink_fetch_errors_total{error=\"fetch_session_id_not_found\",link=\"from-a\"}";
    let lost_before = counter(&mirror, not_found)?;

    source.restart()?;
    produce(source.kafka, "a_kept", 100, "snappy", 2, 100)?;
    wait_identical(source.kafka, mirror.kafka, "a_kept", 2)?;
    let lost = counter(&mirror, not_found)?;
    assert!(
        lost > lost_before,
        "the restarted source forgot the session"
    );
    eventually(Duration::from_secs(10), || {
        let active = metric(&source, "shadowlink_fetch_sessions_active")?;
        Ok((active == 1.0).then_some(()))
    })?;
    let incremental = link_requests(&mirror, "incremental")?;
    eventually(Duration::from_secs(10), || {
        Ok((link_requests(&mirror, "incremental")? > incremental).then_some(()))
    })?;
    Ok(())
}

#[test]
fn a_tansu_source_without_sessions_is_mirrored_with_full_fetches() -> Result<()> {
    let source = Tansu::start()?;
    create_topic(source.addr, "a_tansu", 2, &[])?;
    produce(source.addr, "a_tansu", 200, "gzip", 2, 0)?;
    let mirror = Node::start(&NodeConfig::linked_to(source.addr).admin())?;
    wait_identical(source.addr, mirror.kafka, "a_tansu", 2)?;
    produce(source.addr, "a_tansu", 50, "none", 2, 200)?;
    wait_identical(source.addr, mirror.kafka, "a_tansu", 2)?;
    if link_requests(&mirror, "full")? < 3.0 {
        bail!("the link should keep fetching in full");
    }
    assert_eq!(link_requests(&mirror, "incremental")?, 0.0);
    Ok(())
}

/// Sealed segments (`.log` files but the newest) of partition `p` of `topic`.
fn sealed_segments(node: &Node, topic: &str, p: i32) -> Result<usize> {
    let dir = node.data_dir.join("topics").join(topic).join(p.to_string());
    let mut logs = 0;
    for entry in std::fs::read_dir(dir)? {
        logs += usize::from(entry?.path().extension().is_some_and(|x| x == "log"));
    }
    Ok(logs.saturating_sub(1))
}

#[test]
fn retention_passes_with_nothing_to_delete_leave_an_idle_session_reading_nothing() -> Result<()> {
    let config = NodeConfig::owner()
        .admin()
        .segment_bytes(1024)
        .retention_interval(Duration::from_millis(100));
    let node = Node::start(&config)?;
    let limits = ["retention.ms=3600000", "retention.bytes=1000000"];
    create_topic(node.kafka, "s_kept", 2, &limits)?;
    let produced = [
        &node.kafka.to_string(),
        "s_kept",
        "40",
        "--partitions",
        "2",
        "--value-bytes",
        "100",
        "--batch-size",
        "1",
    ];
    shadowlink_tests::python("produce.py", &produced)?;
    // Every pass has sealed segments to weigh against the topic's limits.
    for p in 0..2 {
        assert!(sealed_segments(&node, "s_kept", p)? >= 2);
    }
    let mut client = RawClient::connect(node.kafka)?;
    let ends: Vec<(i32, i64)> = (0..2).map(|p| (p, 20)).collect();
    let id = send(&mut client, &fetch(0, 0, "s_kept", &ends))?.session_id;
    assert_ne!(id, 0);
    assert!(answered(&send(&mut client, &fetch(id, 1, "s_kept", &[]))?).is_empty());
    let read = metric(&node, SESSION_READS)?;

    // Ten long polls of 200 ms span about twenty retention passes.
    for epoch in 2..12 {
        let idle = send(&mut client, &fetch(id, epoch, "s_kept", &[]))?;
        assert_eq!((idle.error_code, idle.session_id), (0, id));
        assert!(answered(&idle).is_empty());
    }
    assert_eq!(metric(&node, SESSION_READS)?, read);
    for p in 0..2 {
        assert!(sealed_segments(&node, "s_kept", p)? >= 2, "nothing was due");
    }
    Ok(())
}

#[test]
fn a_session_reads_its_busy_partition_alone_and_still_sees_news_elsewhere() -> Result<()> {
    let node = Node::start(&NodeConfig::owner().topic("s_busy", 8).admin())?;
    let mut producer = RawClient::connect(node.kafka)?;
    let mut client = RawClient::connect(node.kafka)?;
    let all: Vec<(i32, i64)> = (0..8).map(|p| (p, 0)).collect();
    let id = send(&mut client, &fetch(0, 0, "s_busy", &all))?.session_id;
    assert_ne!(id, 0);
    assert!(answered(&send(&mut client, &fetch(id, 1, "s_busy", &[]))?).is_empty());
    let before = metric(&node, SESSION_READS)?;

    // A consumer following one busy partition: each answer carries its new record.
    let rounds = 10;
    for round in 0..rounds {
        assert_eq!(producer.produce("s_busy", 3, padded_batch("busy", 1))?.0, 0);
        let offset = i64::from(round);
        let news = answered(&send(
            &mut client,
            &fetch(id, 2 + round, "s_busy", &[(3, offset)]),
        )?);
        assert_eq!(news.keys().copied().collect::<Vec<_>>(), [3]);
        assert!(news[&3].0 == offset + 1 && news[&3].1 > 0, "{news:?}");
    }
    // Reading all 8 partitions per answer would be 80.
    let read = metric(&node, SESSION_READS)? - before;
    assert!(
        read <= f64::from(2 * rounds),
        "{read} partitions read in {rounds} answers"
    );

    // A partition left unread all along is answered as soon as it has a record.
    assert_eq!(producer.produce("s_busy", 6, padded_batch("late", 1))?.0, 0);
    let request = fetch(id, 2 + rounds, "s_busy", &[(3, i64::from(rounds))]);
    let late = answered(&send(&mut client, &request)?);
    assert_eq!(late.keys().copied().collect::<Vec<_>>(), [6]);
    assert!(late[&6].0 == 1 && late[&6].1 > 0, "{late:?}");
    Ok(())
}

#[test]
fn a_partition_the_byte_budget_left_unread_is_read_at_its_turn() -> Result<()> {
    let node = Node::start(&NodeConfig::owner().topic("s_budget", 3))?;
    let mut producer = RawClient::connect(node.kafka)?;
    for p in 0..3 {
        assert_eq!(producer.produce("s_budget", p, padded_batch("b", 1))?.0, 0);
    }
    let mut client = RawClient::connect(node.kafka)?;
    let all: Vec<(i32, i64)> = (0..3).map(|p| (p, 0)).collect();
    let opened = send(
        &mut client,
        &fetch(0, 0, "s_budget", &all).with_max_bytes(1),
    )?;
    let id = opened.session_id;
    assert_ne!(id, 0);
    // A budget of one byte takes one batch from the first partition of the rotation;
    // the others are told their high watermark, which does not move afterwards, so
    // their records stay unsent until their turn comes.
    for epoch in 1..=3 {
        let request = fetch(id, epoch, "s_budget", &[]).with_max_bytes(1);
        let news = answered(&send(&mut client, &request)?);
        assert_eq!(news.keys().copied().collect::<Vec<_>>(), [epoch - 1]);
        assert!(news[&(epoch - 1)].1 > 0, "{news:?}");
    }
    Ok(())
}

/// A batch of `records` records stamped now, so retention counts its age from now.
fn fresh_batch(records: usize) -> bytes::Bytes {
    use shadowlink_protocol::batch::testing::BatchBuilder;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let now = now.map_or(0, |d| d.as_millis() as i64);
    let value = [b'v'; 200];
    let values: Vec<_> = (0..records).map(|_| (None, Some(&value[..]))).collect();
    BatchBuilder::new(0)
        .leader_epoch(-1)
        .timestamp(now)
        .max_timestamp(now)
        .records(&values)
        .build()
}

#[test]
fn a_log_start_moved_by_retention_is_answered_to_a_quiet_session() -> Result<()> {
    let config = NodeConfig::owner()
        .admin()
        .segment_bytes(1024)
        .retention_interval(Duration::from_millis(100));
    let node = Node::start(&config)?;
    create_topic(node.kafka, "s_expiring", 2, &["retention.ms=4000"])?;
    let mut producer = RawClient::connect(node.kafka)?;
    for _ in 0..10 {
        assert_eq!(producer.produce("s_expiring", 0, fresh_batch(1))?.0, 0);
    }
    assert!(sealed_segments(&node, "s_expiring", 0)? >= 1);
    let mut client = RawClient::connect(node.kafka)?;
    let ends = [(0, 10), (1, 0)];
    let id = send(&mut client, &fetch(0, 0, "s_expiring", &ends))?.session_id;
    assert_ne!(id, 0);
    assert!(answered(&send(&mut client, &fetch(id, 1, "s_expiring", &[]))?).is_empty());

    // No record arrives: only the log start moves, once the sealed segments expire.
    let mut epoch = 2;
    let moved = eventually(Duration::from_secs(30), || {
        let response = send(&mut client, &fetch(id, epoch, "s_expiring", &[]))?;
        epoch += 1;
        let partitions = response.responses.iter().flat_map(|t| t.partitions.iter());
        let starts: Vec<_> = partitions
            .map(|p| {
                (
                    p.partition_index,
                    p.log_start_offset,
                    p.records.as_ref().map_or(0, |r| r.len()),
                )
            })
            .collect();
        Ok((!starts.is_empty()).then_some(starts))
    })?;
    assert_eq!(moved.len(), 1, "{moved:?}");
    let (partition, log_start, bytes) = moved[0];
    assert!(partition == 0 && log_start > 0 && bytes == 0, "{moved:?}");
    Ok(())
}

/// A partition with a slow disk leaves its session while its writer's queue is full; the
/// session's long poll for the caught-up rest must not keep it out for the whole wait each
/// time the queue drains.
#[test]
fn a_session_long_poll_does_not_keep_out_a_partition_whose_writer_is_behind() -> Result<()> {
    let source = Node::start(&NodeConfig::owner().topic("a_busy", 1).topic("a_quiet", 1))?;
    // 80 batches of one 1.1 KB record: one per response with partition_max_bytes 1024.
    let produced = [
        &source.kafka.to_string(),
        "a_busy",
        "80",
        "--value-bytes",
        "1100",
        "--batch-size",
        "1",
    ];
    shadowlink_tests::python("produce.py", &produced)?;
    let config = NodeConfig::linked_to(source.kafka)
        .admin()
        .persist("always")
        .fault_fsync_delay(Duration::from_millis(20))
        .link(|l| l.partition_max_bytes(1024));
    let mirror = Node::start(&config)?;
    let started = std::time::Instant::now();
    wait_identical(source.kafka, mirror.kafka, "a_busy", 1)?;
    // 80 fsyncs of 20 ms take about 1.8 s here; kept out for a 500 ms long poll each
    // time its queue of 4 drained, the partition took nearly 10 s.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "caught up in {took:?}");
    assert!(link_requests(&mirror, "incremental")? > 0.0);
    Ok(())
}

/// Fetch requests a mirror node's link `from-a` has sent, full and incremental.
fn link_fetches(node: &Node) -> Result<f64> {
    Ok(link_requests(node, "full")? + link_requests(node, "incremental")?)
}

/// `fetch_min_bytes` and `fetch_max_wait`, Kafka's `fetch.min.bytes` and
/// `fetch.max.wait.ms`: a link that asks for more bytes than a trickle of records brings
/// lets the source gather them for up to the wait, so it makes a fetch per wait instead
/// of one per record, and still copies every record.
#[test]
fn a_link_with_fetch_min_bytes_takes_a_trickle_of_records_in_fewer_fetches() -> Result<()> {
    const RECORDS: usize = 60;
    let wait = Duration::from_millis(300);
    let source = Node::start(&NodeConfig::owner().topic("a_trickle", 1))?;
    let mut client = RawClient::connect(source.kafka)?;
    let (code, _) = client.produce("a_trickle", 0, padded_batch("first", 1))?;
    assert_eq!(code, 0);
    let eager = Node::start(&NodeConfig::linked_to(source.kafka).admin())?;
    let gathering = NodeConfig::linked_to(source.kafka)
        .admin()
        .link(|l| l.fetch_min_bytes(1 << 20).fetch_max_wait(wait));
    let gathering = Node::start(&gathering)?;
    wait_identical(source.kafka, eager.kafka, "a_trickle", 1)?;
    wait_identical(source.kafka, gathering.kafka, "a_trickle", 1)?;

    let (eager_before, gathering_before) = (link_fetches(&eager)?, link_fetches(&gathering)?);
    let started = std::time::Instant::now();
    for i in 0..RECORDS {
        let (code, _) = client.produce("a_trickle", 0, padded_batch(&format!("r{i}"), 1))?;
        assert_eq!(code, 0);
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_identical(source.kafka, eager.kafka, "a_trickle", 1)?;
    wait_identical(source.kafka, gathering.kafka, "a_trickle", 1)?;
    let elapsed = started.elapsed();
    let eager_fetches = link_fetches(&eager)? - eager_before;
    let gathering_fetches = link_fetches(&gathering)? - gathering_before;

    // The eager link (1 byte, Kafka's default) is woken by nearly every record; the other
    // is answered once per wait, plus a few for the session's own bookkeeping.
    let waits = elapsed.as_secs_f64() / wait.as_secs_f64();
    println!("{RECORDS} records in {elapsed:?}: {eager_fetches} fetches by default, {gathering_fetches} with fetch_min_bytes");
    assert!(
        eager_fetches >= (RECORDS / 2) as f64,
        "the default link made {eager_fetches} fetches for {RECORDS} records"
    );
    assert!(
        gathering_fetches <= waits + 5.0,
        "{gathering_fetches} fetches in {elapsed:?} with a {wait:?} wait"
    );
    assert!(
        gathering_fetches * 3.0 < eager_fetches,
        "{gathering_fetches} vs {eager_fetches}"
    );
    Ok(())
}
