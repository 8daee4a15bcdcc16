//! One consumer group's membership: the classic rebalance protocol as a synchronous state
//! machine. Every method takes `now`, so the coordinator decides when time passes (and
//! tests pass later instants instead of sleeping); waiting requests get their answer
//! through a oneshot channel.
//!
//! Empty → PreparingRebalance (collect JoinGroups) → CompletingRebalance (await the
//! leader's SyncGroup) → Stable; a join, leave or expired session sends a non-empty group
//! back to PreparingRebalance.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::error::GroupError;
pub use super::types::{
    GroupConfig, GroupSummary, JoinOutcome, JoinRequest, JoinedMember, MemberSummary, Phase, Step,
    SyncOutcome, SyncRequest,
};

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    /// Order of first join: the earliest surviving member leads.
    joined_at: u64,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    /// A member blocked in JoinGroup or SyncGroup cannot heartbeat, so its session does
    /// not run; the rebalance deadline or the leader's session bounds the wait instead.
    fn waiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }

    fn session_deadline(&self) -> Instant {
        self.last_seen + self.session_timeout
    }

    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}

/// Membership of one group.
pub struct GroupState {
    phase: Phase,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: HashMap<String, Member>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, with when they lapse.
    pending: HashMap<String, Instant>,
    /// KIP-345: group.instance.id → the member id that currently holds it.
    static_members: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// While the first rebalance out of Empty runs: the latest it may end.
    initial_join_cap: Option<Instant>,
    /// How far each member arriving during the initial delay pushes its end.
    initial_delay_step: Duration,
    next_join_order: u64,
    /// Whether a timer task is watching this group (owned by the coordinator).
    pub driver_running: bool,
}

impl Default for GroupState {
    fn default() -> Self {
        GroupState {
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: HashMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            initial_join_cap: None,
            initial_delay_step: Duration::ZERO,
            next_join_order: 0,
            driver_running: false,
        }
    }
}

impl GroupState {
    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or("")
    }

    /// Handles a JoinGroup.
    pub fn join(&mut self, req: JoinRequest, now: Instant, cfg: &GroupConfig) -> Step<JoinOutcome> {
        self.tick(now, cfg);
        if let Err(error) = self.check_join(&req, cfg) {
            return Step::Done(JoinOutcome::failed(error, req.member_id));
        }
        if req.member_id.is_empty() {
            self.join_new(req, now, cfg)
        } else {
            self.join_known(req, now, cfg)
        }
    }

    fn check_join(&self, req: &JoinRequest, cfg: &GroupConfig) -> Result<(), GroupError> {
        if req.session_timeout < cfg.min_session_timeout
            || req.session_timeout > cfg.max_session_timeout
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let others: Vec<&Member> = self
            .members
            .iter()
            .filter(|(id, _)| **id != req.member_id)
            .map(|(_, m)| m)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let same_type = self.protocol_type.as_deref() == Some(req.protocol_type.as_str());
        let common = req.protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        });
        if same_type && common {
            Ok(())
        } else {
            Err(GroupError::InconsistentGroupProtocol)
        }
    }

    fn join_new(&mut self, req: JoinRequest, now: Instant, cfg: &GroupConfig) -> Step<JoinOutcome> {
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let member_id = new_member_id(prefix);
        if let Some(instance) = req.group_instance_id.clone() {
            // KIP-345: a static member restarting takes over its instance id; the old
            // member id is fenced. A rebalance follows, which is always correct if not
            // always necessary.
            if let Some(old) = self.static_members.get(&instance).cloned() {
                self.remove_member(&old, GroupError::FencedInstanceId);
            }
            self.static_members.insert(instance, member_id.clone());
        } else if req.require_known_member_id {
            // KIP-394: hand out the id first, so a client that times out and retries does
            // not leave a stray member behind for a whole session timeout.
            self.pending
                .insert(member_id.clone(), now + req.session_timeout);
            return Step::Done(JoinOutcome::failed(GroupError::MemberIdRequired, member_id));
        }
        self.add_member(&member_id, req, now);
        self.await_join(&member_id, now, cfg)
    }

    fn join_known(
        &mut self,
        req: JoinRequest,
        now: Instant,
        cfg: &GroupConfig,
    ) -> Step<JoinOutcome> {
        let member_id = req.member_id.clone();
        if let Err(error) = self.check_instance(&member_id, req.group_instance_id.as_deref()) {
            return Step::Done(JoinOutcome::failed(error, member_id));
        }
        if self.pending.remove(&member_id).is_some() {
            self.add_member(&member_id, req, now);
            return self.await_join(&member_id, now, cfg);
        }
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        let Some(member) = self.members.get_mut(&member_id) else {
            return Step::Done(JoinOutcome::failed(GroupError::UnknownMemberId, member_id));
        };
        let unchanged = member.protocols == req.protocols;
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_seen = now;
        match self.phase {
            // A member that already got this generation's answer and changed nothing gets
            // it again instead of forcing everyone through another rebalance.
            Phase::CompletingRebalance if unchanged => Step::Done(self.join_outcome(&member_id)),
            Phase::Stable if unchanged && !is_leader => Step::Done(self.join_outcome(&member_id)),
            _ => self.await_join(&member_id, now, cfg),
        }
    }

    /// KIP-345: a request naming an instance id must come from the member that holds it.
    fn check_instance(&self, member_id: &str, instance: Option<&str>) -> Result<(), GroupError> {
        match instance.and_then(|i| self.static_members.get(i)) {
            Some(holder) if holder != member_id => Err(GroupError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    fn add_member(&mut self, member_id: &str, req: JoinRequest, now: Instant) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let member = Member {
            instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            assignment: Bytes::new(),
            last_seen: now,
            joined_at: self.next_join_order,
            join_waiter: None,
            sync_waiter: None,
        };
        self.next_join_order += 1;
        self.members.insert(member_id.to_string(), member);
        // Kafka's initial delay grows with each member arriving in it, up to its cap.
        if let (Some(cap), Some(deadline)) =
            (self.initial_join_cap, self.rebalance_deadline.as_mut())
        {
            *deadline = (now + self.initial_delay_step).min(cap);
        }
    }

    /// Parks the member's JoinGroup until the rebalance completes.
    fn await_join(
        &mut self,
        member_id: &str,
        now: Instant,
        cfg: &GroupConfig,
    ) -> Step<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        match self.members.get_mut(member_id) {
            // A second JoinGroup from the same member replaces the first, whose sender is
            // dropped: that request gets REBALANCE_IN_PROGRESS and the client rejoins.
            Some(member) => member.join_waiter = Some(tx),
            None => {
                return Step::Done(JoinOutcome::failed(
                    GroupError::UnknownMemberId,
                    member_id.into(),
                ))
            }
        }
        if self.phase != Phase::PreparingRebalance {
            self.prepare_rebalance(now, cfg);
        }
        self.maybe_complete_join(now);
        Step::Wait(rx)
    }

    fn prepare_rebalance(&mut self, now: Instant, cfg: &GroupConfig) {
        if self.phase == Phase::CompletingRebalance {
            // Assignments of the generation being abandoned will never come.
            for member in self.members.values_mut() {
                send(
                    member.sync_waiter.take(),
                    SyncOutcome::failed(GroupError::RebalanceInProgress),
                );
                member.last_seen = now;
            }
        }
        let timeout = self.max_rebalance_timeout();
        let deadline = if self.phase == Phase::Empty {
            self.initial_join_cap = Some(now + timeout);
            self.initial_delay_step = cfg.initial_rebalance_delay;
            now + cfg.initial_rebalance_delay.min(timeout)
        } else {
            now + timeout
        };
        self.phase = Phase::PreparingRebalance;
        self.rebalance_deadline = Some(deadline);
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Completes the join phase once every known member (pending ids included) is waiting.
    fn maybe_complete_join(&mut self, now: Instant) {
        let all_joined =
            self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        if self.phase == Phase::PreparingRebalance && all_joined {
            self.complete_join(now);
        }
    }

    /// Starts the next generation with the members that rejoined and answers their JoinGroups.
    fn complete_join(&mut self, now: Instant) {
        let absent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in absent {
            self.remove_member(&id, GroupError::UnknownMemberId);
        }
        self.rebalance_deadline = None;
        self.initial_join_cap = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        let leader = self.choose_leader();
        self.protocol = Some(self.choose_protocol(&leader));
        self.leader = Some(leader);
        self.phase = Phase::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.join_outcome(&id);
            if let Some(member) = self.members.get_mut(&id) {
                member.assignment = Bytes::new();
                member.last_seen = now;
                send(member.join_waiter.take(), outcome);
            }
        }
    }

    /// The current leader if it survived, else the member that joined earliest.
    fn choose_leader(&self) -> String {
        if let Some(leader) = self
            .leader
            .as_ref()
            .filter(|l| self.members.contains_key(*l))
        {
            return leader.clone();
        }
        self.members
            .iter()
            .min_by_key(|(_, m)| m.joined_at)
            .map(|(id, _)| id.clone())
            .unwrap_or_default()
    }

    /// The first of the leader's protocols that every member supports. Joins were checked
    /// to share one, so the fallback to the leader's first is only a guard.
    fn choose_protocol(&self, leader: &str) -> String {
        let Some(preferred) = self.members.get(leader).map(|m| &m.protocols) else {
            return String::new();
        };
        preferred
            .iter()
            .map(|(name, _)| name)
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .or_else(|| preferred.first().map(|(name, _)| name))
            .cloned()
            .unwrap_or_default()
    }

    fn join_outcome(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if leader == member_id {
            let mut all: Vec<(&String, &Member)> = self.members.iter().collect();
            all.sort_by_key(|(_, m)| m.joined_at);
            all.into_iter()
                .map(|(id, m)| JoinedMember {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: Some(protocol),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Removes a member, answering its parked requests with `error`.
    fn remove_member(&mut self, member_id: &str, error: GroupError) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        send(
            member.join_waiter,
            JoinOutcome::failed(error, member_id.to_string()),
        );
        send(member.sync_waiter, SyncOutcome::failed(error));
    }

    /// After members went away: the rest must rebalance, or the running one may be done.
    fn after_departure(&mut self, now: Instant, cfg: &GroupConfig) {
        match self.phase {
            Phase::Stable | Phase::CompletingRebalance => self.prepare_rebalance(now, cfg),
            Phase::PreparingRebalance | Phase::Empty => {}
        }
        self.maybe_complete_join(now);
    }
}

/// Id generation, sync, heartbeat, leave, timers and summaries.
impl GroupState {
    /// Handles a SyncGroup.
    pub fn sync(&mut self, req: SyncRequest, now: Instant, cfg: &GroupConfig) -> Step<SyncOutcome> {
        self.tick(now, cfg);
        if let Err(error) = self.check_sync(&req) {
            return Step::Done(SyncOutcome::failed(error));
        }
        match self.phase {
            Phase::Empty => Step::Done(SyncOutcome::failed(GroupError::UnknownMemberId)),
            Phase::PreparingRebalance => {
                Step::Done(SyncOutcome::failed(GroupError::RebalanceInProgress))
            }
            Phase::Stable => Step::Done(self.sync_outcome(&req.member_id)),
            Phase::CompletingRebalance => self.await_sync(req, now),
        }
    }

    fn check_sync(&self, req: &SyncRequest) -> Result<(), GroupError> {
        self.check_instance(&req.member_id, req.group_instance_id.as_deref())?;
        if !self.members.contains_key(&req.member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if req.generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let type_differs = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref());
        let name_differs = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != self.protocol.as_ref());
        if type_differs || name_differs {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn await_sync(&mut self, req: SyncRequest, now: Instant) -> Step<SyncOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(member) = self.members.get_mut(&req.member_id) {
            member.sync_waiter = Some(tx);
            member.last_seen = now;
        }
        if self.leader.as_deref() == Some(req.member_id.as_str()) {
            let mut assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
            }
            for (id, member) in self.members.iter_mut() {
                member.assignment = assignments.remove(id).unwrap_or_default();
            }
            self.phase = Phase::Stable;
            let ids: Vec<String> = self.members.keys().cloned().collect();
            for id in ids {
                let outcome = self.sync_outcome(&id);
                if let Some(member) = self.members.get_mut(&id) {
                    member.last_seen = now;
                    send(member.sync_waiter.take(), outcome);
                }
            }
        }
        Step::Wait(rx)
    }

    fn sync_outcome(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Handles a Heartbeat: keeps the session alive and tells the member whether to rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
        cfg: &GroupConfig,
    ) -> Result<(), GroupError> {
        self.tick(now, cfg);
        self.check_instance(member_id, instance)?;
        let phase = self.phase;
        let current = self.generation;
        let member = self
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if generation != current {
            return Err(GroupError::IllegalGeneration);
        }
        member.last_seen = now;
        match phase {
            Phase::Empty => Err(GroupError::UnknownMemberId),
            Phase::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            Phase::CompletingRebalance | Phase::Stable => Ok(()),
        }
    }

    /// Handles a LeaveGroup for each `(member id, instance id)`; an empty member id with an
    /// instance id removes whoever holds that instance (KIP-345 admin removal).
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: Instant,
        cfg: &GroupConfig,
    ) -> Vec<Result<(), GroupError>> {
        self.tick(now, cfg);
        let results = leaving
            .iter()
            .map(|(member_id, instance)| {
                let id = self.resolve_leaving(member_id, instance.as_deref())?;
                if self.pending.remove(&id).is_some() {
                    return Ok(());
                }
                if !self.members.contains_key(&id) {
                    return Err(GroupError::UnknownMemberId);
                }
                self.remove_member(&id, GroupError::UnknownMemberId);
                Ok(())
            })
            .collect();
        self.after_departure(now, cfg);
        results
    }

    fn resolve_leaving(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<String, GroupError> {
        match (member_id.is_empty(), instance) {
            (true, Some(i)) => self
                .static_members
                .get(i)
                .cloned()
                .ok_or(GroupError::UnknownMemberId),
            (true, None) => Err(GroupError::UnknownMemberId),
            (false, _) => self
                .check_instance(member_id, instance)
                .map(|()| member_id.to_string()),
        }
    }

    /// Checks that an OffsetCommit may write: members commit in their own generation;
    /// a commit with no member and generation -1 is a manual one, allowed only while no
    /// member owns the group.
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
        cfg: &GroupConfig,
    ) -> Result<(), GroupError> {
        self.tick(now, cfg);
        if generation < 0 && member_id.is_empty() && instance.is_none() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        self.check_instance(member_id, instance)?;
        let member = self
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        member.last_seen = now;
        // The member has its JoinGroup answer but not yet its assignment.
        if self.phase == Phase::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Applies what time did: lapsed pending ids, expired sessions, the rebalance deadline.
    pub fn tick(&mut self, now: Instant, cfg: &GroupConfig) {
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.waiting() && m.session_deadline() <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            tracing::info!(member = %id, "group member session expired");
            self.remove_member(id, GroupError::UnknownMemberId);
        }
        if !expired.is_empty() {
            self.after_departure(now, cfg);
        }
        let due = self.rebalance_deadline.is_some_and(|d| d <= now);
        if self.phase == Phase::PreparingRebalance && due {
            self.complete_join(now);
        } else {
            self.maybe_complete_join(now);
        }
    }

    /// When `tick` next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| !m.waiting())
            .map(Member::session_deadline);
        let rebalance = self
            .rebalance_deadline
            .filter(|_| self.phase == Phase::PreparingRebalance);
        sessions
            .chain(self.pending.values().copied())
            .chain(rebalance)
            .min()
    }

    pub fn summary(&self) -> GroupSummary {
        // Like Kafka, metadata and assignments are shown only once they are settled.
        let stable = self.phase == Phase::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut members: Vec<(&String, &Member)> = self.members.iter().collect();
        members.sort_by_key(|(_, m)| m.joined_at);
        GroupSummary {
            phase: self.phase,
            protocol_type: self.protocol_type().to_string(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: members
                .into_iter()
                .map(|(id, m)| MemberSummary {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}

/// Delivers an answer to a parked request; a client that went away is no error.
fn send<T>(waiter: Option<oneshot::Sender<T>>, value: T) {
    if let Some(tx) = waiter {
        let _ = tx.send(value);
    }
}

/// `{prefix}-{random}`, the shape Kafka uses (client id or instance id, then a UUID).
fn new_member_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}
