//! Fetch: long-polls mirror partitions and sends stored batches without copying them,
//! in full requests or incremental ones of a KIP-227 session (see `fetch_session`).
//!
//! Consumers read below the high watermark only; a follower (`replica_id` set) reads to
//! the log end, as in Kafka. On a node on its own the high watermark is the log end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::FetchRequest;
use shadowlink_protocol::batch::BatchWalker;
use shadowlink_protocol::fetch::{
    encode_fetch_response, FetchPartitionParts, FetchResponseParts, FetchTopicParts,
};
use shadowlink_protocol::request::RequestHeader;
use shadowlink_protocol::response::EncodeError;

use super::fetch_session::{CachedPartitionSeed, IdleScan, ReadInputs, Session, SessionRequest};
use super::{Reply, RequestContext};
use crate::authz::Operation;
use crate::errors::{epoch_error_code, fetch_session_error_code, storage_error_code};
use crate::mirror::appends::{AppendTally, Watcher};
use crate::mirror::MirrorPartition;
use crate::topic_partition::TopicPartition;
use shadowlink_storage::PartitionLog;
use tokio::sync::futures::Notified;

/// Fetch `isolation_level` 1 (KIP-98): only data below the last stable offset.
const READ_COMMITTED: i8 = 1;

/// Upper bound on how long one request may be held, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn handle(
    ctx: &RequestContext<'_>,
    header: &RequestHeader,
    request: FetchRequest,
) -> Result<Reply, EncodeError> {
    if let Some(cluster) = ctx.cluster.as_deref() {
        crate::cluster::record_follower_fetch(cluster, &ctx.store, &request);
    }
    let parts = match SessionRequest::of(request.session_id, request.session_epoch) {
        SessionRequest::Sessionless { close } => {
            crate::metrics::fetch_session_request("sessionless");
            if let Some(id) = close {
                ctx.sessions.close(id);
            }
            full(ctx, &request).await
        }
        SessionRequest::New { close } => {
            crate::metrics::fetch_session_request("full");
            if let Some(id) = close {
                ctx.sessions.close(id);
            }
            let mut parts = full(ctx, &request).await;
            parts.session_id = create_session(ctx, &request, &parts).unwrap_or(0);
            parts
        }
        SessionRequest::Incremental { id, epoch } => {
            crate::metrics::fetch_session_request("incremental");
            incremental(ctx, &request, id, epoch).await
        }
    };
    encode_fetch_response(header.api_version, header.correlation_id, parts).map(Reply::Chunks)
}

/// A full fetch: every requested partition is answered, in request order.
async fn full(ctx: &RequestContext<'_>, request: &FetchRequest) -> FetchResponseParts {
    let requested = || {
        request.topics.iter().flat_map(|t| {
            let name = t.topic.0.as_str();
            t.partitions.iter().map(move |p| (name, p))
        })
    };
    let mut named = Named::default();
    let watcher = named.watcher.clone();
    let tally = || named.tally(ctx, requested());
    let read = || read_all(ctx, request, requested());
    let parts = long_poll(ctx, request, &watcher, tally, read).await;
    let mut parts = parts.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|t| FetchTopicParts {
            name: t.topic.0.to_string(),
            partitions: parts.by_ref().take(t.partitions.len()).collect(),
            ..Default::default()
        })
        .collect();
    FetchResponseParts {
        topics,
        ..Default::default()
    }
}

/// A new session holding the partitions of a full request, with what `parts` answered.
fn create_session(
    ctx: &RequestContext<'_>,
    request: &FetchRequest,
    parts: &FetchResponseParts,
) -> Option<i32> {
    let answers = parts.topics.iter().flat_map(|t| t.partitions.iter());
    let requested = request.topics.iter().flat_map(|t| {
        let name = t.topic.0.as_str();
        t.partitions.iter().map(move |p| (name, p))
    });
    let seeds = requested
        .zip(answers)
        .map(|((topic, params), answer)| CachedPartitionSeed {
            key: TopicPartition::new(topic, params.partition),
            params: params.clone(),
            answer: answer.clone(),
        })
        .collect();
    ctx.sessions.create(seeds)
}

/// An incremental fetch: the request's changes are applied to the session, the session
/// partitions that may have news are read, and only those with news are answered.
async fn incremental(
    ctx: &RequestContext<'_>,
    request: &FetchRequest,
    id: i32,
    epoch: i32,
) -> FetchResponseParts {
    let mut lease = match ctx.sessions.checkout(id, epoch) {
        Ok(lease) => lease,
        Err(e) => {
            tracing::debug!(error = %e, "incremental fetch refused");
            return FetchResponseParts {
                error_code: fetch_session_error_code(&e),
                ..Default::default()
            };
        }
    };
    let session = lease.session();
    session.forget(&request.forgotten_topics_data);
    for topic in &request.topics {
        for p in &topic.partitions {
            let key = TopicPartition::new(topic.topic.0.as_str(), p.partition);
            session.upsert(key, p.clone());
        }
    }
    // The session weighs and wakes at the appends to the partitions it has read; a
    // partition created meanwhile counts as a marker does, as for a full fetch.
    let watcher = session.watcher();
    let parts = long_poll(
        ctx,
        request,
        &watcher,
        || with_topology(watcher.tally(), ctx.store.topology()),
        || {
            let scan = idle_scan(ctx, request);
            if session.is_idle(&scan) {
                return Gathered::default();
            }
            session.prepare(&scan.inputs);
            let (gathered, quiet) = read_session(ctx, request, session);
            session.scanned(quiet.then_some(scan));
            gathered
        },
    )
    .await;
    let mut answered: Vec<(String, FetchPartitionParts)> = Vec::new();
    for (position, part) in parts {
        let cached = session.partition_mut(position);
        cached.answered(&part);
        answered.push((cached.key.topic.clone(), part));
    }
    session.rotate();
    FetchResponseParts {
        session_id: id,
        topics: group_by_topic(answered),
        ..Default::default()
    }
}

/// Reads the session partitions that may have news, from where the rotation starts, and
/// returns those with news by position, and whether every partition is quiet now.
fn read_session(
    ctx: &RequestContext<'_>,
    request: &FetchRequest,
    session: &mut Session,
) -> (Gathered<(usize, FetchPartitionParts)>, bool) {
    let budget = Budget::of(request);
    let mut gathered = Gathered::default();
    let mut quiet = true;
    let mut read = 0;
    for position in session.due(ctx.store.change_feed()) {
        let cached = session.partition_mut(position);
        if cached.is_quiet() {
            // Named by a change the read that made it quiet had seen already.
            session.still_quiet(position);
            continue;
        }
        let key = &cached.key;
        let held =
            (cached.held().cloned()).or_else(|| ctx.store.partition(&key.topic, key.partition));
        session.watch(position, held.as_ref());
        let cached = session.partition_mut(position);
        let topic = cached.key.topic.as_str();
        // Taken before the read: a change during it moves the count past this one.
        let changes = held.as_ref().map(|p| p.changes());
        let limit = budget.limit(&cached.params, &gathered);
        let part = read_partition(
            ctx,
            topic,
            &cached.params,
            budget.reader,
            limit,
            held.as_deref(),
        );
        read += 1;
        gathered.add(&part);
        let news = cached.has_news(&part);
        // Without a limit the read took no records, whether there were any or not.
        let silent = !news && part.error_code == 0 && limit.is_some();
        session.read(position, held, changes.filter(|_| silent));
        quiet &= silent;
        if news {
            gathered.parts.push((position, part));
        }
    }
    crate::metrics::fetch_session_partitions_read(read);
    (gathered, quiet)
}

/// What a read of a session's partitions depends on, as of now. The change count is
/// taken first: a change during the read leaves the count past it.
fn idle_scan(ctx: &RequestContext<'_>, request: &FetchRequest) -> IdleScan {
    IdleScan {
        changes: ctx.store.changes(),
        inputs: ReadInputs {
            isolation_level: request.isolation_level,
            follower: Reader::of(request).follower,
            // Both counts only grow, so their sum changes whenever either does.
            cluster_generation: (ctx.cluster.as_deref())
                .map(|c| c.generation().wrapping_add(c.serving_changes())),
            grants: ctx.grants.clone(),
            topology: ctx.store.topology(),
        },
    }
}

/// Consecutive partitions of one topic under one topic entry, as Kafka builds responses.
fn group_by_topic(parts: Vec<(String, FetchPartitionParts)>) -> Vec<FetchTopicParts> {
    let mut topics: Vec<FetchTopicParts> = Vec::new();
    for (name, part) in parts {
        match topics.last_mut() {
            Some(last) if last.name == name => last.partitions.push(part),
            _ => topics.push(FetchTopicParts {
                name,
                partitions: vec![part],
                ..Default::default()
            }),
        }
    }
    topics
}

/// What one read of a request's partitions found.
struct Gathered<P> {
    /// The answers to send, in reading order.
    parts: Vec<P>,
    bytes: usize,
    errors: bool,
}

impl<P> Default for Gathered<P> {
    fn default() -> Self {
        Gathered {
            parts: Vec::new(),
            bytes: 0,
            errors: false,
        }
    }
}

impl<P> Gathered<P> {
    fn add(&mut self, part: &FetchPartitionParts) {
        // A fetcher told where its log diverges must hear it now, as of an error.
        self.errors |= part.error_code != 0 || part.diverging_epoch.is_some();
        self.bytes += part.records.iter().map(|r| r.len()).sum::<usize>();
    }
}

/// How often a fetch waiting for more than one byte reads again while appends arrive.
const GATHERING_RECHECK: Duration = Duration::from_millis(2);

/// Why a waiting fetch woke.
enum Woken {
    /// Something was appended to a partition the fetch, or its session, watches.
    Appended,
    /// A follower's progress moved a high watermark, which no byte count shows.
    Advanced,
    /// The wait is over.
    Deadline,
}

/// The partitions a full fetch names that the node holds, found again whenever the
/// node's topics change, each watched by the fetch's own watcher: a wait weighs the
/// appends to them alone and wakes at those alone, as Kafka's delayed fetch watches
/// only its own partitions.
#[derive(Default)]
struct Named {
    topology: Option<u64>,
    held: Vec<Arc<MirrorPartition>>,
    watcher: Arc<Watcher>,
}

impl Named {
    /// The totals of the appends to the named partitions; watches them first.
    fn tally<'a>(
        &mut self,
        ctx: &RequestContext<'_>,
        requested: impl Iterator<Item = (&'a str, &'a FetchPartition)>,
    ) -> AppendTally {
        let topology = ctx.store.topology();
        if self.topology != Some(topology) {
            self.unwatch();
            let held = requested.filter_map(|(topic, p)| ctx.store.partition(topic, p.partition));
            self.held = held.collect();
            for p in &self.held {
                p.watch(&self.watcher);
            }
            self.topology = Some(topology);
        }
        with_topology(self.watcher.tally(), topology)
    }

    fn unwatch(&mut self) {
        for p in self.held.drain(..) {
            p.unwatch(&self.watcher);
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        self.unwatch();
    }
}

/// `tally` with the node's topology folded into its markers: a partition created since
/// the last read counts as a marker does, since whatever it holds, the next read may
/// answer it.
fn with_topology(tally: AppendTally, topology: u64) -> AppendTally {
    AppendTally {
        markers: tally.markers.wrapping_add(topology),
        ..tally
    }
}

/// Reads until there is enough data, an error, or the request's wait is over, and
/// returns the last read's answers. `tally` sums the appends a read could find, and
/// `watcher` is woken after each of them.
async fn long_poll<P>(
    ctx: &RequestContext<'_>,
    request: &FetchRequest,
    watcher: &Watcher,
    mut tally: impl FnMut() -> AppendTally,
    mut read: impl FnMut() -> Gathered<P>,
) -> Vec<P> {
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let mut gathered = Gathered::default();
    // What `tally` said when the last read began; `None` before the first.
    let mut read_at = None;
    let mut woken = Woken::Appended;
    loop {
        // Register interest before reading (or deciding not to) so an append between
        // that and the wait still wakes us (a watcher also keeps a wake-up that came
        // while nobody waited).
        let notified = watcher.notified();
        let advanced = ctx.cluster.as_deref().map(|c| c.serving_changed());
        let tally = tally();
        let over = matches!(woken, Woken::Deadline) || Instant::now() >= deadline;
        let due = match read_at {
            None => true,
            Some(_) if matches!(woken, Woken::Advanced) => true,
            // The answer at the deadline holds whatever was appended before it; with
            // nothing appended the last read stands, so an idle session is read once.
            Some(at) if over => at != tally,
            Some(at) => may_reach(&at, &tally, gathered.bytes, min_bytes),
        };
        if due {
            read_at = Some(tally);
            gathered = read();
        }
        let now = Instant::now();
        if gathered.bytes >= min_bytes || gathered.errors || over || now >= deadline {
            return gathered.parts;
        }
        woken = wait_for_news(notified, advanced, deadline - now).await;
        if min_bytes > 1 && matches!(woken, Woken::Appended) {
            // Gathering toward `min_bytes` (a consumer's `fetch.min.bytes`): every append it
            // watches wakes this fetch. Appends arriving meanwhile are weighed together.
            let pause = GATHERING_RECHECK.min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }
}

/// Whether a read could now find `min_bytes`, when the last read, begun at `at`, found
/// `found`. Bytes appended since bound what a read would add, except
/// that a transaction marker may make earlier records readable at `read_committed`.
/// Kafka's delayed fetch likewise sums positions rather than reading, so a fetch
/// waiting for more than one byte costs a read per answer, not one per append.
fn may_reach(at: &AppendTally, now: &AppendTally, found: usize, min_bytes: usize) -> bool {
    let added = usize::try_from(now.bytes_since(at)).unwrap_or(usize::MAX);
    now.markers != at.markers || found.saturating_add(added) >= min_bytes
}

/// Waits up to `wait` for an append (`notified`) or, on a cluster, a high watermark to
/// move (`advanced`).
async fn wait_for_news(
    notified: Notified<'_>,
    advanced: Option<Notified<'_>>,
    wait: Duration,
) -> Woken {
    let advanced = async {
        match advanced {
            Some(advanced) => advanced.await,
            None => std::future::pending().await,
        }
    };
    let woken = async {
        tokio::select! {
            _ = notified => Woken::Appended,
            _ = advanced => Woken::Advanced,
        }
    };
    tokio::time::timeout(wait, woken)
        .await
        .unwrap_or(Woken::Deadline)
}

/// Reads `partitions` within the request's byte budgets.
fn read_all<'a>(
    ctx: &RequestContext<'_>,
    request: &FetchRequest,
    partitions: impl Iterator<Item = (&'a str, &'a FetchPartition)>,
) -> Gathered<FetchPartitionParts> {
    let budget = Budget::of(request);
    let mut gathered = Gathered::default();
    for (topic, p) in partitions {
        let limit = budget.limit(p, &gathered);
        let held = ctx.store.partition(topic, p.partition);
        let part = read_partition(ctx, topic, p, budget.reader, limit, held.as_deref());
        gathered.add(&part);
        gathered.parts.push(part);
    }
    crate::metrics::fetch_full_partitions_read(gathered.parts.len());
    gathered
}

/// A request's byte budgets and who reads.
struct Budget {
    max_bytes: usize,
    reader: Reader,
}

impl Budget {
    fn of(request: &FetchRequest) -> Budget {
        Budget {
            max_bytes: request.max_bytes.max(0) as usize,
            reader: Reader::of(request),
        }
    }

    /// How many bytes partition `p` may take after what was `gathered`, or `None` when
    /// it may take no records.
    fn limit<P>(&self, p: &FetchPartition, gathered: &Gathered<P>) -> Option<usize> {
        let left = self.max_bytes.saturating_sub(gathered.bytes);
        let limit = (p.partition_max_bytes.max(0) as usize).min(left);
        // KIP-74: the first non-empty partition may exceed the budget by one batch.
        (limit > 0 || gathered.bytes == 0).then_some(limit)
    }
}

/// Who reads: a consumer at an isolation level, or a follower copying the log.
#[derive(Clone, Copy)]
struct Reader {
    isolation_level: i8,
    follower: bool,
}

impl Reader {
    fn of(request: &FetchRequest) -> Reader {
        Reader {
            isolation_level: request.isolation_level,
            follower: request.replica_id.0 >= 0 || request.replica_state.replica_id.0 >= 0,
        }
    }
}

/// Reads partition `request.partition` of `topic`, which is `held` (`None` when the node
/// does not hold it), taking no records without a `limit`.
fn read_partition(
    ctx: &RequestContext<'_>,
    topic: &str,
    request: &FetchPartition,
    reader: Reader,
    limit: Option<usize>,
    held: Option<&MirrorPartition>,
) -> FetchPartitionParts {
    let mut part = FetchPartitionParts {
        partition_index: request.partition,
        ..Default::default()
    };
    if let Err(denied) = ctx.topic(Operation::Read, topic) {
        part.error_code = denied.code();
        part.high_watermark = -1;
        part.last_stable_offset = -1;
        part.log_start_offset = -1;
        return part;
    }
    let Some(mirror) = held else {
        part.error_code = super::offline::partition_code(&ctx.store, topic, request.partition);
        return part;
    };
    let served = crate::cluster::check_served(ctx.cluster.as_deref(), topic, request.partition);
    if let Err(code) = served {
        part.error_code = code;
        part.high_watermark = -1;
        part.last_stable_offset = -1;
        part.log_start_offset = -1;
        return part;
    }
    // KIP-320: a consumer whose leader epoch is stale may be reading records a leader
    // change replaced; it must refresh metadata and validate its position first.
    if let Err(e) = mirror.check_leader_epoch(request.current_leader_epoch) {
        part.error_code = epoch_error_code(&e);
        part.high_watermark = -1;
        part.last_stable_offset = -1;
        part.log_start_offset = -1;
        return part;
    }
    let log = mirror.log();
    let high_watermark =
        crate::cluster::high_watermark(ctx.cluster.as_deref(), topic, request.partition, &log);
    part.high_watermark = high_watermark;
    // The LSO is derived from the stored batches (the mirror may hold part of a
    // transaction whose marker has not arrived), whatever the isolation level asked;
    // like Kafka's, it is never above the high watermark.
    part.last_stable_offset = log.last_stable_offset().min(high_watermark);
    part.log_start_offset = log.log_start_offset();
    // Below the log start the answer is OFFSET_OUT_OF_RANGE, diverging or not.
    let diverging = diverging_epoch(&log, mirror.leader_epoch(), request);
    if let Some(diverging) = diverging.filter(|_| request.fetch_offset >= part.log_start_offset) {
        part.diverging_epoch = Some(diverging);
        return part;
    }
    let Some(limit) = limit else {
        return part;
    };
    let visible = match reader.follower {
        true => i64::MAX,
        false => high_watermark,
    };
    if reader.isolation_level == READ_COMMITTED && !reader.follower {
        match log.read_committed(request.fetch_offset, limit.max(1)) {
            Ok(mut read) => {
                if visible < read.read.log_end_offset {
                    let (records, upper) = below(std::mem::take(&mut read.read.chunks), visible);
                    read.read.chunks = records;
                    read.aborted_transactions
                        .retain(|(_, first)| *first < upper);
                }
                part.records = read.read.chunks;
                part.aborted_transactions = read.aborted_transactions;
            }
            Err(e) => part.error_code = storage_error_code(&e),
        }
        return part;
    }
    match log.read(request.fetch_offset, limit.max(1)) {
        Ok(read) if visible >= read.log_end_offset => part.records = read.chunks,
        Ok(read) => part.records = below(read.chunks, visible).0,
        Err(e) => part.error_code = storage_error_code(&e),
    }
    part
}

/// KIP-320: where the fetcher's log stops agreeing with this one, given the epoch of
/// the last batch it fetched. It truncates there before fetching on, so a mirror of this
/// partition never keeps records a leader change here replaced.
fn diverging_epoch(log: &PartitionLog, ours: i32, request: &FetchPartition) -> Option<(i32, i64)> {
    let fetched = request.last_fetched_epoch;
    if fetched < 0 {
        return None;
    }
    let (epoch, end) = super::offset_for_leader_epoch::epoch_end(log, ours, fetched)?;
    (epoch < fetched || end < request.fetch_offset).then_some((epoch, end))
}

/// The whole batches of `chunks` that end below `limit`, sliced out of the stored bytes
/// as they are, and the offset after the last one kept (`i64::MIN` when none is).
fn below(chunks: Vec<Bytes>, limit: i64) -> (Vec<Bytes>, i64) {
    let mut kept = Vec::with_capacity(chunks.len());
    let mut upper = i64::MIN;
    for chunk in chunks {
        let mut end = 0;
        let mut cut = false;
        for batch in BatchWalker::new(chunk.clone()) {
            let Ok(batch) = batch else { break };
            if batch.last_offset() >= limit {
                cut = true;
                break;
            }
            end += batch.len();
            upper = batch.next_offset();
        }
        if end > 0 {
            kept.push(chunk.slice(..end));
        }
        if cut || end < chunk.len() {
            break;
        }
    }
    (kept, upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowlink_protocol::batch::testing::build_batch;

    /// Two records at `base`, then one at `base + 2`: batches ending at `base + 1` and
    /// `base + 2`, in one chunk.
    fn chunk(base: i64) -> Bytes {
        let two = build_batch(base, 0, &[(None, Some(b"a")), (None, Some(b"b"))], 1);
        let one = build_batch(base + 2, 0, &[(None, Some(b"c"))], 1);
        [two, one].concat().into()
    }

    #[test]
    fn a_consumer_read_stops_at_the_first_batch_reaching_the_high_watermark() {
        let chunks = vec![chunk(10), chunk(13)];
        let whole: usize = chunks.iter().map(Bytes::len).sum();
        let (all, upper) = below(chunks.clone(), 16);
        assert_eq!(
            (all.iter().map(Bytes::len).sum::<usize>(), upper),
            (whole, 16)
        );
        // Offset 14 is inside the batch 13-14: it is kept whole or not at all.
        let (cut, upper) = below(chunks.clone(), 14);
        assert_eq!(upper, 13);
        assert_eq!(cut, vec![chunks[0].clone()]);
        let (first, upper) = below(chunks.clone(), 12);
        assert_eq!(upper, 12);
        assert!(chunks[0].starts_with(&first[0]) && first.len() == 1);
        let (none, upper) = below(chunks, 10);
        assert!(none.is_empty() && upper == i64::MIN);
    }
}
