//! KIP-227 incremental fetch sessions, served to consumers and downstream nodes.
//!
//! A full Fetch with `(session_id 0, epoch 0)` creates a session holding the requested
//! partitions with the parameters each was asked for. Later requests of that session name
//! only partitions whose parameters changed, plus the ones to forget; the node answers only
//! partitions with news: records, a moved high watermark, last stable offset or log start,
//! or an error. An idle client with thousands of partitions then costs a request and a
//! response of a few bytes per long poll, and no read at all: a read that found nothing is
//! remembered with the node's change count ([`IdleScan`]), and is not repeated until
//! something changed. A busy one costs a read of the partitions that may have news only:
//! a partition whose last read had nothing to tell is remembered with its own change
//! count, and is read again once that count moves, its parameters change, or anything
//! the whole read depends on ([`ReadInputs`]) does. It is not even looked at: the node's
//! change feed names the partitions that changed, and only those, the new ones and the
//! ones not quiet are read ([`due`]).
//!
//! The cache holds at most `slots` sessions (Kafka's
//! `max.incremental.fetch.session.cache.slots`). A new session that finds it full evicts
//! the least recently used session not serving a request, or, with none, gets no session
//! (id 0) and is served as a plain full fetch.

mod due;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use kafka_protocol::messages::fetch_request::{FetchPartition, ForgottenTopic};
use shadowlink_protocol::fetch::FetchPartitionParts;

use crate::authz::Grants;
use crate::mirror::appends::Watcher;
use crate::mirror::change_feed::ChangeFeed;
use crate::mirror::MirrorPartition;
use crate::topic_partition::TopicPartition;

/// What a request's `(session_id, session_epoch)` asks for (KIP-227).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRequest {
    /// A full fetch with no session afterwards; `close` names a session to drop first.
    Sessionless { close: Option<i32> },
    /// A full fetch that creates a session; `close` names a session it replaces.
    New { close: Option<i32> },
    /// An incremental fetch of session `id`, which must be at `epoch`.
    Incremental { id: i32, epoch: i32 },
}

/// Epoch 0 starts a session, -1 ends one (`FetchMetadata.INITIAL_EPOCH`, `FINAL_EPOCH`).
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

impl SessionRequest {
    pub fn of(session_id: i32, session_epoch: i32) -> SessionRequest {
        let close = (session_id != 0).then_some(session_id);
        match session_epoch {
            INITIAL_EPOCH => SessionRequest::New { close },
            FINAL_EPOCH => SessionRequest::Sessionless { close },
            epoch => SessionRequest::Incremental {
                id: session_id,
                epoch,
            },
        }
    }
}

/// Why an incremental request cannot be served; the whole request fails with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("fetch session {id} is not in the cache")]
    NotFound { id: i32 },
    #[error("fetch session {id} expects epoch {expected}, the request carries {actual}")]
    InvalidEpoch { id: i32, expected: i32, actual: i32 },
    #[error("fetch session {id} is already serving a request")]
    Busy { id: i32 },
}

/// A session partition: the parameters last requested and what the node last answered.
#[derive(Clone)]
pub struct CachedPartition {
    pub key: TopicPartition,
    pub params: FetchPartition,
    /// -1 until answered, and again after an error, so the next response includes it.
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    /// The partition as last looked up, valid while the session's [`ReadInputs`] are.
    held: Option<Arc<MirrorPartition>>,
    /// The partition's change count before its last read, when that read had nothing to
    /// tell the client: no records (though it could read some), no error, no moved offset.
    quiet_at: Option<u64>,
    /// The partition whose appends wake the session (see [`Session::watch`]).
    watched: Option<Arc<MirrorPartition>>,
}

impl std::fmt::Debug for CachedPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedPartition")
            .field("key", &self.key)
            .field("high_watermark", &self.high_watermark)
            .field("held", &self.held.is_some())
            .field("quiet_at", &self.quiet_at)
            .finish()
    }
}

impl CachedPartition {
    fn new(key: TopicPartition, params: FetchPartition) -> CachedPartition {
        CachedPartition {
            key,
            params,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            held: None,
            quiet_at: None,
            watched: None,
        }
    }

    /// The partition as last looked up, if it was found.
    pub fn held(&self) -> Option<&Arc<MirrorPartition>> {
        self.held.as_ref()
    }

    /// Whether another read would find what the last one did, which had nothing to tell.
    pub fn is_quiet(&self) -> bool {
        match (&self.held, self.quiet_at) {
            (Some(partition), Some(at)) => partition.changes() == at,
            _ => false,
        }
    }

    /// Records a read of `held` (`None` when it is missing): `quiet_at` is its change
    /// count taken before the read if the read had nothing to tell, else `None`.
    pub fn read(&mut self, held: Option<Arc<MirrorPartition>>, quiet_at: Option<u64>) {
        self.quiet_at = held.as_ref().and(quiet_at);
        self.held = held;
    }

    /// How the change feed names the partition, when it was looked up.
    fn feed_id(&self) -> Option<usize> {
        self.held.as_ref().map(|p| p.feed_id())
    }

    /// Whether an incremental response must carry `part`: Kafka's
    /// `CachedPartition.maybeUpdateResponseData`, with the last stable offset added
    /// because a mirror's LSO moves when a marker arrives, without new records visible
    /// to a read_committed fetch.
    pub fn has_news(&self, part: &FetchPartitionParts) -> bool {
        part.error_code != 0
            || part.diverging_epoch.is_some()
            || !part.records.iter().all(|r| r.is_empty())
            || part.high_watermark != self.high_watermark
            || part.last_stable_offset != self.last_stable_offset
            || part.log_start_offset != self.log_start_offset
    }

    /// Remembers what a response told the client about this partition.
    pub fn answered(&mut self, part: &FetchPartitionParts) {
        if part.error_code != 0 {
            self.high_watermark = -1;
            self.last_stable_offset = -1;
            self.log_start_offset = -1;
        } else {
            self.high_watermark = part.high_watermark;
            self.last_stable_offset = part.last_stable_offset;
            self.log_start_offset = part.log_start_offset;
        }
    }
}

/// What a read of any session partition depends on besides that partition itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadInputs {
    /// Read committed stops at the last stable offset, read uncommitted at the end.
    pub isolation_level: i8,
    /// A follower reads past the high watermark.
    pub follower: bool,
    /// Which partitions this node leads, and their high watermarks, in a cluster.
    pub cluster_generation: Option<u64>,
    /// Which topics the client may read.
    pub grants: Grants,
    /// [`crate::mirror::Store::topology`]: partitions held from a lookup are current.
    pub topology: u64,
}

/// A read of every session partition that found no records and no error, and what it
/// depended on besides the partitions' logs. While all of it is the same, and the session
/// is asked for nothing new, another read would find the same: every answer it would
/// carry has been sent (`CachedPartition::answered`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleScan {
    /// [`crate::mirror::Store::changes`] taken before the read.
    pub changes: u64,
    pub inputs: ReadInputs,
}

/// One client's session: its partitions in a stable order and the next epoch expected.
#[derive(Debug)]
pub struct Session {
    pub id: i32,
    epoch: i32,
    partitions: Vec<CachedPartition>,
    index: HashMap<TopicPartition, usize>,
    /// Where the next read starts, so a busy partition cannot starve the ones after it
    /// of the response's byte budget (KIP-74).
    rotation: usize,
    last_used: Instant,
    /// The last read, if it found nothing and the partitions have not changed since.
    idle: Option<IdleScan>,
    /// What the partitions' `held` and `quiet_at` were recorded under.
    inputs: Option<ReadInputs>,
    /// The partitions the next read must look at.
    due: due::DueReads,
    /// Counts and wakes at each append to a partition the session watches: what its
    /// requests weigh and wait on.
    watcher: Arc<Watcher>,
}

impl Session {
    fn new(id: i32) -> Session {
        Session {
            id,
            epoch: 1,
            partitions: Vec::new(),
            index: HashMap::new(),
            rotation: 0,
            last_used: Instant::now(),
            idle: None,
            inputs: None,
            due: Default::default(),
            watcher: Arc::default(),
        }
    }

    /// What a request of the session weighs and waits on: the appends to the partitions
    /// the session watches, a wake-up being kept for the next wait when none is waiting.
    pub fn watcher(&self) -> Arc<Watcher> {
        self.watcher.clone()
    }

    /// Has appends to `held`, the partition at `position` as now looked up, wake the
    /// session from now on; with `None` (no longer held) stops watching what it was.
    /// Called before the partition is read: an append after the read's look at it
    /// wakes the next wait.
    pub fn watch(&mut self, position: usize, held: Option<&Arc<MirrorPartition>>) {
        let cached = &mut self.partitions[position];
        let same = match (&cached.watched, held) {
            (Some(watched), Some(held)) => Arc::ptr_eq(watched, held),
            (watched, held) => watched.is_none() && held.is_none(),
        };
        if same {
            return;
        }
        if let Some(old) = cached.watched.take() {
            old.unwatch(&self.watcher);
        }
        if let Some(held) = held {
            held.watch(&self.watcher);
            cached.watched = Some(held.clone());
        }
    }

    /// Whether the last read found nothing, under the same `scan`, so reading again
    /// would too.
    pub fn is_idle(&self, scan: &IdleScan) -> bool {
        self.idle.as_ref() == Some(scan)
    }

    /// Records what the last read of every partition found: nothing (`Some`), or news.
    pub fn scanned(&mut self, idle: Option<IdleScan>) {
        self.idle = idle;
    }

    /// Readies the partitions for a read under `inputs`: what was recorded under other
    /// inputs is forgotten, so every partition is looked up and read again.
    pub fn prepare(&mut self, inputs: &ReadInputs) {
        if self.inputs.as_ref() == Some(inputs) {
            return;
        }
        for p in &mut self.partitions {
            p.read(None, None);
        }
        self.due.all(self.partitions.len());
        self.inputs = Some(inputs.clone());
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// Adds a partition, or updates the parameters of one already in the session.
    pub fn upsert(&mut self, key: TopicPartition, params: FetchPartition) {
        self.idle = None;
        match self.index.get(&key) {
            Some(&i) => {
                let cached = &mut self.partitions[i];
                cached.params = params;
                cached.quiet_at = None;
                self.due.add(i);
            }
            None => {
                self.due.add(self.partitions.len());
                self.index.insert(key.clone(), self.partitions.len());
                self.partitions.push(CachedPartition::new(key, params));
            }
        }
    }

    /// Drops the partitions of `forgotten`.
    pub fn forget(&mut self, forgotten: &[ForgottenTopic]) {
        if !forgotten.is_empty() {
            self.idle = None;
        }
        for topic in forgotten {
            for &partition in &topic.partitions {
                let key = TopicPartition::new(topic.topic.0.as_str(), partition);
                let Some(i) = self.index.remove(&key) else {
                    continue;
                };
                let last = self.partitions.len() - 1;
                let gone = self.partitions.swap_remove(i);
                let moved = self.partitions.get(i);
                if let Some(moved) = moved {
                    self.index.insert(moved.key.clone(), i);
                }
                let moved_id = moved.and_then(CachedPartition::feed_id);
                self.due.removed(i, gone.feed_id(), last, moved_id);
                if let Some(watched) = gone.watched {
                    watched.unwatch(&self.watcher);
                }
            }
        }
    }

    fn start(&self) -> usize {
        self.rotation
            .checked_rem(self.partitions.len())
            .unwrap_or(0)
    }

    /// The positions of the session partitions, from where this request's read starts.
    pub fn rotated(&self) -> impl Iterator<Item = usize> {
        let start = self.start();
        (start..self.partitions.len()).chain(0..start)
    }

    /// The positions of the partitions this request's read must look at, from where it
    /// starts: the ones not known quiet, and the quiet ones `feed` named since the last
    /// read. Take it before reading.
    pub fn due(&mut self, feed: &ChangeFeed) -> Vec<usize> {
        self.due.catch_up(feed, self.partitions.len());
        self.due.positions_from(self.start())
    }

    /// The partition at `position` (see [`Self::rotated`]).
    pub fn partition_mut(&mut self, position: usize) -> &mut CachedPartition {
        &mut self.partitions[position]
    }

    /// Records a read of the partition at `position` ([`CachedPartition::read`]).
    pub fn read(
        &mut self,
        position: usize,
        held: Option<Arc<MirrorPartition>>,
        quiet_at: Option<u64>,
    ) {
        let cached = &mut self.partitions[position];
        cached.read(held, quiet_at);
        let quiet = cached.quiet_at.and(cached.feed_id());
        self.due.read(position, quiet);
    }

    /// Records that the partition at `position`, due, was quiet still.
    pub fn still_quiet(&mut self, position: usize) {
        let quiet = self.partitions[position].feed_id();
        self.due.read(position, quiet);
    }

    /// Moves the next read's start one partition further on.
    pub fn rotate(&mut self) {
        self.rotation = self.rotation.wrapping_add(1);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for p in &mut self.partitions {
            if let Some(watched) = p.watched.take() {
                watched.unwatch(&self.watcher);
            }
        }
    }
}

enum Slot {
    Idle(Box<Session>),
    /// Lent to a request; the lease puts it back.
    Busy,
}

struct Inner {
    sessions: HashMap<i32, Slot>,
    next_id: i32,
}

/// The node's sessions, bounded in number.
pub struct SessionCache {
    slots: usize,
    inner: Mutex<Inner>,
}

impl SessionCache {
    pub fn new(slots: usize) -> Arc<SessionCache> {
        crate::metrics::fetch_sessions_active().set(0);
        Arc::new(SessionCache {
            slots,
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                // Random, so a client holding an id from before a restart is not handed
                // a stranger's session.
                next_id: fastrand::i32(1..i32::MAX),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops session `id`, if the cache holds it.
    pub fn close(&self, id: i32) {
        let mut inner = self.lock();
        inner.sessions.remove(&id);
        publish(&inner);
    }

    /// Creates a session holding `partitions`, evicting the least recently used idle
    /// session when the cache is full. `None` when no slot can be had.
    pub fn create(&self, partitions: Vec<CachedPartitionSeed>) -> Option<i32> {
        let mut inner = self.lock();
        if self.slots == 0 {
            return None;
        }
        if inner.sessions.len() >= self.slots {
            let lru = inner
                .sessions
                .iter()
                .filter_map(|(id, slot)| match slot {
                    Slot::Idle(s) => Some((s.last_used, *id)),
                    Slot::Busy => None,
                })
                .min()?;
            inner.sessions.remove(&lru.1);
            tracing::debug!(session = lru.1, "fetch session evicted");
        }
        let id = loop {
            let id = inner.next_id;
            inner.next_id = if id == i32::MAX { 1 } else { id + 1 };
            if !inner.sessions.contains_key(&id) {
                break id;
            }
        };
        let mut session = Session::new(id);
        for seed in partitions {
            session.upsert(seed.key.clone(), seed.params);
            if let Some(&i) = session.index.get(&seed.key) {
                session.partitions[i].answered(&seed.answer);
            }
        }
        inner.sessions.insert(id, Slot::Idle(Box::new(session)));
        publish(&inner);
        Some(id)
    }

    /// Lends session `id` to an incremental request at `epoch`, moving the session to
    /// its next epoch.
    pub fn checkout(self: &Arc<Self>, id: i32, epoch: i32) -> Result<Lease, SessionError> {
        let mut inner = self.lock();
        let slot = inner
            .sessions
            .get_mut(&id)
            .ok_or(SessionError::NotFound { id })?;
        let Slot::Idle(session) = slot else {
            return Err(SessionError::Busy { id });
        };
        if session.epoch != epoch {
            return Err(SessionError::InvalidEpoch {
                id,
                expected: session.epoch,
                actual: epoch,
            });
        }
        let Slot::Idle(mut session) = std::mem::replace(slot, Slot::Busy) else {
            return Err(SessionError::Busy { id });
        };
        // After i32::MAX comes 1: 0 and -1 are the initial and final epochs.
        session.epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        Ok(Lease {
            cache: self.clone(),
            session: *session,
        })
    }

    /// Sessions held, idle or serving.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().sessions.len()
    }
}

fn publish(inner: &Inner) {
    crate::metrics::fetch_sessions_active().set(inner.sessions.len() as i64);
}

/// A partition of a new session with the full response's answer for it.
pub struct CachedPartitionSeed {
    pub key: TopicPartition,
    pub params: FetchPartition,
    pub answer: FetchPartitionParts,
}

/// A session lent to one request. Dropping it puts the session back, unless the
/// session was closed or evicted meanwhile.
pub struct Lease {
    cache: Arc<SessionCache>,
    session: Session,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("session", &self.session.id)
            .finish()
    }
}

impl Lease {
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // An empty session allocates nothing; it stands in for the one moved back.
        let id = self.session.id;
        let mut session = std::mem::replace(&mut self.session, Session::new(id));
        session.last_used = Instant::now();
        let mut inner = self.cache.lock();
        if let Some(slot) = inner.sessions.get_mut(&session.id) {
            *slot = Slot::Idle(Box::new(session));
        }
    }
}

#[cfg(test)]
mod tests;
