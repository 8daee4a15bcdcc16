//! A Fetch's wait (`min_bytes`, `max_wait_ms`): how long the node holds a fetch, what it
//! weighs while it waits, and what wakes it, with and without a fetch session.

use std::time::Duration;

use anyhow::Result;
use shadowlink_tests::fetching::{
    answered, fetch, metric, send, trickle, FULL_READS, SESSION_READS,
};
use shadowlink_tests::raw::RawClient;
use shadowlink_tests::scenario::padded_batch;
use shadowlink_tests::{Node, NodeConfig};

/// A Fetch's `min_bytes`: the node holds it while records trickle in until that many
/// bytes are there, then answers before its wait is over; one asking for more than ever
/// comes answers at the end of its wait with what there is.
#[test]
fn a_fetch_waits_for_its_min_bytes_while_records_trickle_in() -> Result<()> {
    let node = Node::start(&NodeConfig::owner().topic("a_gather", 1))?;
    let batch = |i: usize| padded_batch(&format!("r{i}"), 1);
    let batch_len = batch(0).len();
    let all_bytes: usize = (0..10).map(|i| batch(i).len()).sum();
    let producing = trickle(&node, "a_gather", 10, 1, Duration::from_millis(50));
    let mut client = RawClient::connect(node.kafka)?;
    let gather = |min_bytes: usize, wait_ms: i32| {
        fetch(0, -1, "a_gather", &[(0, 0)])
            .with_min_bytes(min_bytes as i32)
            .with_max_wait_ms(wait_ms)
    };
    let started = std::time::Instant::now();
    let answer = send(&mut client, &gather(4 * batch_len, 5_000))?;
    let took = started.elapsed();
    let (_, bytes) = answered(&answer)[&0];
    assert!(
        bytes >= 4 * batch_len,
        "{bytes} bytes, asked for {}",
        4 * batch_len
    );
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    producing.join().expect("the producer thread")?;

    let started = std::time::Instant::now();
    let answer = send(&mut client, &gather(100 * batch_len, 300))?;
    let took = started.elapsed();
    let (high_watermark, bytes) = answered(&answer)[&0];
    assert_eq!((high_watermark, bytes), (10, all_bytes));
    assert!(
        took >= Duration::from_millis(250),
        "answered after {took:?}"
    );
    Ok(())
}

/// A fetch gathering toward its `min_bytes` weighs what the node appended since its last
/// read, as Kafka's delayed fetch sums positions, and reads again only once that may be
/// enough or its wait is over: a trickle of appends during the wait costs a read per
/// answer, not one per append, and the answer still holds every record.
#[test]
fn a_fetch_gathering_bytes_reads_its_partitions_per_answer_not_per_append() -> Result<()> {
    const BATCHES: usize = 40;
    let node = Node::start(&NodeConfig::owner().topic("a_weigh", 4).admin())?;
    let all_bytes: usize = (0..BATCHES)
        .map(|i| padded_batch(&format!("r{i}"), 1).len())
        .sum();
    let mut client = RawClient::connect(node.kafka)?;
    let from = |offset| (0..4).map(|p| (p, offset)).collect::<Vec<(i32, i64)>>();
    let opening = fetch(0, 0, "a_weigh", &from(0)).with_max_wait_ms(0);
    let id = send(&mut client, &opening)?.session_id;
    assert_ne!(id, 0);
    let before = metric(&node, SESSION_READS)?;

    // More than the trickle brings: answered at the end of the wait, with everything (the
    // wait leaves the 40 acknowledged appends, 20 ms apart, several seconds to spare).
    let producing = trickle(&node, "a_weigh", BATCHES, 4, Duration::from_millis(20));
    let gathering = fetch(id, 1, "a_weigh", &[])
        .with_min_bytes(4 << 20)
        .with_max_wait_ms(6_000);
    let answer = send(&mut client, &gathering)?;
    producing.join().expect("the producer thread")?;
    let bytes: usize = answered(&answer).values().map(|(_, bytes)| bytes).sum();
    assert_eq!(bytes, all_bytes, "{:?}", answered(&answer));
    let read = metric(&node, SESSION_READS)? - before;
    // The first read and the one at the deadline, of at most the four partitions each;
    // reading on each append's wake-up would read at least one partition per batch.
    println!("{BATCHES} appends during the wait, {read} partition reads");
    assert!(read <= 8.0, "{read} partition reads for {BATCHES} appends");

    // Once the appends may reach `min_bytes`, it reads and answers before the deadline.
    let started = std::time::Instant::now();
    let producing = trickle(&node, "a_weigh", BATCHES, 4, Duration::from_millis(20));
    let quarter = all_bytes / 4;
    let reachable = fetch(id, 2, "a_weigh", &from((BATCHES / 4) as i64))
        .with_min_bytes(quarter as i32)
        .with_max_wait_ms(20_000);
    let answer = send(&mut client, &reachable)?;
    let took = started.elapsed();
    producing.join().expect("the producer thread")?;
    let bytes: usize = answered(&answer).values().map(|(_, bytes)| bytes).sum();
    assert!(bytes >= quarter, "{bytes} of {quarter}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    Ok(())
}

/// A sessionless fetch gathering toward its `min_bytes` weighs only the appends to the
/// partitions it names: appends to another topic of the node, each enough on its own,
/// wake it without making it read again; an append to its own partitions answers it.
#[test]
fn a_sessionless_gathering_fetch_weighs_only_the_partitions_it_names() -> Result<()> {
    const BATCHES: usize = 40;
    let config = NodeConfig::owner().topic("a_quiet", 4).topic("a_busy", 4);
    let node = Node::start(&config.admin())?;
    let batch_bytes = padded_batch("r0", 1).len() as i32;
    let mut client = RawClient::connect(node.kafka)?;
    let quiet: Vec<(i32, i64)> = (0..4).map(|p| (p, 0)).collect();
    let before = metric(&node, FULL_READS)?;

    let producing = trickle(&node, "a_busy", BATCHES, 4, Duration::from_millis(20));
    let waiting = fetch(0, -1, "a_quiet", &quiet)
        .with_min_bytes(batch_bytes)
        .with_max_wait_ms(3_000);
    let started = std::time::Instant::now();
    let answer = send(&mut client, &waiting)?;
    let took = started.elapsed();
    producing.join().expect("the producer thread")?;
    let found: usize = answered(&answer).values().map(|(_, bytes)| bytes).sum();
    assert_eq!((found, answer.session_id), (0, 0));
    assert!(
        took >= Duration::from_millis(2_500),
        "answered after {took:?}"
    );
    let read = metric(&node, FULL_READS)? - before;
    // The first read of its four partitions, and none at the deadline: nothing was
    // appended to them. Weighing the node's appends would read them after each batch.
    println!("{BATCHES} appends to another topic during the wait, {read} partition reads");
    assert_eq!(
        read, 4.0,
        "{read} partition reads for {BATCHES} appends elsewhere"
    );

    let producing = trickle(&node, "a_quiet", 1, 4, Duration::from_millis(200));
    let started = std::time::Instant::now();
    let answer = send(&mut client, &waiting.clone().with_max_wait_ms(20_000))?;
    let took = started.elapsed();
    producing.join().expect("the producer thread")?;
    let found: usize = answered(&answer).values().map(|(_, bytes)| bytes).sum();
    assert_eq!(found, batch_bytes as usize);
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    Ok(())
}

/// A session waiting for its first byte is answered by the append to its partition that
/// brings it, every time: the session watches its partitions, and the append is counted
/// before it wakes the session to weigh it.
#[test]
fn a_waiting_session_is_answered_by_each_append_to_its_partition() -> Result<()> {
    const ROUNDS: usize = 40;
    let node = Node::start(&NodeConfig::owner().topic("a_wake", 1))?;
    let mut client = RawClient::connect(node.kafka)?;
    let opened = send(&mut client, &fetch(0, 0, "a_wake", &[(0, 0)]))?;
    assert_ne!(opened.session_id, 0);
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        let producing = trickle(&node, "a_wake", 1, 1, Duration::from_millis(20));
        // From the log end: nothing to answer until the record arrives.
        let at = [(0, round as i64)];
        let waiting = fetch(opened.session_id, round as i32 + 1, "a_wake", &at);
        let waiting = waiting.with_max_wait_ms(5_000);
        let started = std::time::Instant::now();
        let answer = send(&mut client, &waiting)?;
        slowest = slowest.max(started.elapsed());
        producing.join().expect("the producer thread")?;
        let found: usize = answered(&answer).values().map(|(_, bytes)| bytes).sum();
        assert!(found > 0, "round {round}: answered without the record");
    }
    println!("{ROUNDS} rounds, the slowest answered after {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "a round waited {slowest:?}"
    );
    Ok(())
}

/// A session gathering toward its `min_bytes` weighs the appends to its own partitions
/// alone: appends elsewhere on the node, enough on their own, make it read nothing more
/// when its own small appends wake it; it reads at its deadline and answers them all.
#[test]
fn a_gathering_session_weighs_only_the_appends_to_its_own_partitions() -> Result<()> {
    const MINE: usize = 4;
    let node = Node::start(
        &NodeConfig::owner()
            .topic("a_mine", 1)
            .topic("a_busy", 4)
            .admin(),
    )?;
    let batch_bytes = padded_batch("r0", 1).len();
    let mut client = RawClient::connect(node.kafka)?;
    let opening = fetch(0, 0, "a_mine", &[(0, 0)]).with_max_wait_ms(0);
    let id = send(&mut client, &opening)?.session_id;
    assert_ne!(id, 0);
    let before = metric(&node, SESSION_READS)?;

    // Ten appends elsewhere between two of its own, each more than its `min_bytes`
    // lacks after the last read.
    let busy = trickle(&node, "a_busy", 60, 4, Duration::from_millis(20));
    let mine = trickle(&node, "a_mine", MINE, 1, Duration::from_millis(200));
    let waiting = fetch(id, 1, "a_mine", &[])
        .with_min_bytes((MINE + 1) as i32 * batch_bytes as i32)
        .with_max_wait_ms(3_000);
    let started = std::time::Instant::now();
    let answer = send(&mut client, &waiting)?;
    let took = started.elapsed();
    busy.join().expect("the busy producer")?;
    mine.join().expect("the session's producer")?;
    let found: usize = answered(&answer).values().map(|(_, bytes)| bytes).sum();
    assert_eq!(found, MINE * batch_bytes);
    assert!(
        took >= Duration::from_millis(2_500),
        "answered after {took:?}"
    );
    let read = metric(&node, SESSION_READS)? - before;
    // Its partition once at the start and once at the deadline. Weighing the node's
    // appends would read it again at each of its own appends' wake-ups.
    println!("{MINE} appends of its own and 60 elsewhere: {read} partition reads");
    assert_eq!(read, 2.0, "{read} partition reads");
    Ok(())
}
