//! The in-sync set of an owned partition, as its leader sees it: where each follower
//! has fetched to and when it last caught up, which gives the high watermark and the
//! set the leader proposes to the assigner.
//!
//! As in Kafka, a follower is caught up when it fetches at or beyond the leader's log
//! end as of that fetch, or at or beyond the log end as of its previous fetch (it then
//! was caught up at that previous fetch: writes keep arriving while it copies). One not
//! caught up for `replica_lag_time` leaves the set; one outside it rejoins once it has
//! fetched up to the high watermark and caught up within that time.
//!
//! A change takes effect only once the assigner has installed it (AlterPartition to the
//! controller in Kafka): until then the leader counts the larger of the installed and
//! the proposed set (KIP-497's maximal set), so neither a pending shrink nor a pending
//! expansion lets the high watermark pass a write a member may lack. One proposal is in
//! flight at a time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Assignment, Placement};

/// How long a proposal may stay unanswered before it is written again (its write may
/// have been lost with a connection to etcd).
const REPROPOSE_AFTER: Duration = Duration::from_secs(2);

/// A leader's request to the assigner to make `isr` the partition's in-sync set. Only
/// the leader the assignment names, in its epoch, may change the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrProposal {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// Why the assigner did not apply a proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsrRefusal {
    #[error("the partition is not an owned partition of the assignment")]
    NotOwned,
    #[error("proposed by node {leader} in epoch {epoch}, but the partition is led by {current_leader} in epoch {current_epoch}")]
    StaleLeader {
        leader: i32,
        epoch: i32,
        current_leader: i32,
        current_epoch: i32,
    },
    #[error("the set {0:?} must hold its leader and only replicas of the partition")]
    NotReplicas(Vec<i32>),
}

/// Applies `proposal` to `next`: refused unless it comes from the leader `next` names
/// in the epoch it gives, so a deposed leader cannot change the set.
pub fn apply(next: &mut Assignment, proposal: &IsrProposal) -> Result<(), IsrRefusal> {
    if !next.is_owned(&proposal.topic) {
        return Err(IsrRefusal::NotOwned);
    }
    let index = usize::try_from(proposal.partition).map_err(|_| IsrRefusal::NotOwned)?;
    let placement = next
        .topics
        .get_mut(&proposal.topic)
        .and_then(|p| p.get_mut(index))
        .ok_or(IsrRefusal::NotOwned)?;
    if placement.leader != proposal.leader || placement.leader_epoch != proposal.leader_epoch {
        return Err(IsrRefusal::StaleLeader {
            leader: proposal.leader,
            epoch: proposal.leader_epoch,
            current_leader: placement.leader,
            current_epoch: placement.leader_epoch,
        });
    }
    let members = &proposal.isr;
    let valid = members.contains(&placement.leader)
        && members.iter().all(|m| placement.replicas.contains(m));
    if !valid {
        return Err(IsrRefusal::NotReplicas(members.clone()));
    }
    placement.isr = in_replica_order(placement, members);
    Ok(())
}

fn in_replica_order(placement: &Placement, members: &[i32]) -> Vec<i32> {
    let replicas = placement.replicas.iter().copied();
    replicas.filter(|r| members.contains(r)).collect()
}

/// Whether two sets hold the same nodes, whatever their order.
fn same_set(a: &[i32], b: &[i32]) -> bool {
    a.len() == b.len() && a.iter().all(|m| b.contains(m))
}

/// A follower's last fetch from this leader, in the leader's epoch.
#[derive(Debug, Clone, Copy)]
struct Follower {
    offset: i64,
    fetched_at: Instant,
    /// The leader's log end when that fetch came in.
    leader_end: i64,
    caught_up_at: Instant,
}

/// What the leader of an owned partition tracks in one leader epoch.
#[derive(Debug)]
pub struct Led {
    epoch: i32,
    /// The log end when this node began leading the epoch: its high watermark starts
    /// there, as the records below were committed or mirrored before it led.
    floor: i64,
    high_watermark: i64,
    /// Members of the set that have not fetched in this epoch count as caught up now.
    started: Instant,
    followers: BTreeMap<i32, Follower>,
    /// The set proposed to the assigner and not yet installed, with when it was sent.
    proposed: Option<(Vec<i32>, Instant)>,
}

impl Led {
    pub fn new(epoch: i32, floor: i64, now: Instant) -> Led {
        Led {
            epoch,
            floor,
            high_watermark: floor,
            started: now,
            followers: BTreeMap::new(),
            proposed: None,
        }
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// Records a follower's fetch from `offset` while this log ends at `leader_end`.
    /// A fetch beyond the log end proves nothing (the follower's log diverged). Returns
    /// whether its position moved.
    pub fn record(&mut self, replica: i32, offset: i64, leader_end: i64, now: Instant) -> bool {
        if offset > leader_end {
            return false;
        }
        let caught_up_at = match self.followers.get(&replica) {
            _ if offset >= leader_end => now,
            Some(last) if offset >= last.leader_end => last.fetched_at,
            Some(last) => last.caught_up_at,
            None => self.started.min(now),
        };
        let moved = self
            .followers
            .get(&replica)
            .is_none_or(|f| f.offset != offset);
        let follower = Follower {
            offset,
            fetched_at: now,
            leader_end,
            caught_up_at,
        };
        self.followers.insert(replica, follower);
        moved
    }

    /// The high watermark: the lowest of this log's end and the positions of `members`
    /// (the set's other nodes; one that has not fetched counts at the epoch's start). It
    /// never moves back within the epoch.
    pub fn high_watermark(&mut self, leader_end: i64, members: &[i32]) -> i64 {
        let positions = members.iter().map(|m| self.position(*m));
        let lowest = positions.fold(leader_end, i64::min);
        self.high_watermark = self.high_watermark.max(lowest);
        self.high_watermark
    }

    /// Whether every one of `members` has fetched from `end` on.
    pub fn holds(&self, members: &[i32], end: i64) -> bool {
        let fetched = |m: &i32| self.followers.get(m).is_some_and(|f| f.offset >= end);
        members.iter().all(fetched)
    }

    fn position(&self, member: i32) -> i64 {
        self.followers.get(&member).map_or(self.floor, |f| f.offset)
    }

    fn caught_up_within(&self, member: i32, lag: Duration, now: Instant) -> bool {
        let since = self
            .followers
            .get(&member)
            .map_or(self.started, |f| f.caught_up_at);
        now.saturating_duration_since(since) < lag
    }

    /// The set the leader wants, from `placement`'s installed one: its members caught
    /// up within `lag` stay, and replicas outside it that fetched up to the high
    /// watermark and caught up within `lag` join. The leader is always in it.
    pub fn wanted(&self, placement: &Placement, lag: Duration, now: Instant) -> Vec<i32> {
        let hw = self.high_watermark.max(self.floor);
        let keeps = |r: &i32| {
            let member = placement.isr.contains(r);
            let joins = self.followers.get(r).is_some_and(|f| f.offset >= hw);
            *r == placement.leader || (self.caught_up_within(*r, lag, now) && (member || joins))
        };
        placement.replicas.iter().copied().filter(keeps).collect()
    }

    /// The members counted for the high watermark and `acks=all`: the installed set
    /// and the one in flight together.
    pub fn maximal(&self, installed: &[i32]) -> Vec<i32> {
        let mut members = installed.to_vec();
        if let Some((proposed, _)) = &self.proposed {
            let joining = proposed.iter().filter(|m| !installed.contains(m));
            members.extend(joining);
        }
        members
    }

    /// The set to send to the assigner now, if any: a change from `placement`'s set when
    /// nothing is in flight, or the one in flight again when it has gone unanswered. A
    /// proposal ends once installed, or once a member is no longer a replica (the
    /// assigner refuses it, and any earlier install of it lost that member since).
    pub fn propose(
        &mut self,
        placement: &Placement,
        lag: Duration,
        now: Instant,
    ) -> Option<Vec<i32>> {
        if let Some((proposed, _)) = &self.proposed {
            let installed = same_set(proposed, &placement.isr);
            let obsolete = proposed.iter().any(|m| !placement.replicas.contains(m));
            if installed || obsolete {
                self.proposed = None;
            }
        }
        if let Some((proposed, sent)) = &mut self.proposed {
            if now.saturating_duration_since(*sent) < REPROPOSE_AFTER {
                return None;
            }
            *sent = now;
            return Some(proposed.clone());
        }
        let wanted = self.wanted(placement, lag, now);
        if same_set(&wanted, &placement.isr) {
            return None;
        }
        self.proposed = Some((wanted.clone(), now));
        Some(wanted)
    }
}

/// Proposals go through etcd: the leader puts its set under `isr/<topic>/<partition>`,
/// and the assigner applies it in the transaction that deletes it, so a proposal is
/// applied at most once and only against the assignment it was checked with.
#[cfg(feature = "cluster")]
mod etcd {
    use etcd_client::{Client, Compare, CompareOp, GetOptions, TxnOp};

    use super::{apply, IsrProposal};
    use crate::cluster::coordinator::{Session, SessionError};
    use crate::cluster::failovers::Handled;
    use crate::cluster::Assignment;

    impl Session {
        /// Puts the in-sync sets this node, as leader, wants changed.
        pub(in crate::cluster) async fn propose_isr(
            &self,
            client: &mut Client,
        ) -> Result<(), SessionError> {
            let lag = self.config.replica_lag_time;
            for proposal in self.cluster.isr_proposals(&self.store, lag) {
                let (topic, partition) = (&proposal.topic, proposal.partition);
                let key = self.key(&format!("isr/{topic}/{partition}"));
                let value = serde_json::to_vec(&proposal)?;
                self.bounded(client.put(key, value, None)).await?;
                tracing::info!(%topic, partition, isr = ?proposal.isr, epoch = proposal.leader_epoch, "in-sync set change proposed");
            }
            Ok(())
        }

        /// `next` with every recorded in-sync set change from its partition's current
        /// leader applied; the others are dropped.
        pub(in crate::cluster) async fn isr_changes_requested(
            &self,
            client: &mut Client,
            mut next: Assignment,
        ) -> Result<(Assignment, Handled), SessionError> {
            let prefix = self.key("isr/");
            let listed = client.get(prefix, Some(GetOptions::new().with_prefix()));
            let listed = self.bounded(listed).await?;
            let mut handled = Handled::default();
            for kv in listed.kvs() {
                let key = kv.key_str()?.to_string();
                let revision = kv.mod_revision();
                let guard = Compare::mod_revision(key.clone(), CompareOp::Equal, revision);
                handled.compares.push(guard);
                handled.deletes.push(TxnOp::delete(key, None));
                let proposal: IsrProposal = match serde_json::from_slice(kv.value()) {
                    Ok(proposal) => proposal,
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable in-sync set proposal dropped");
                        continue;
                    }
                };
                let (topic, partition) = (&proposal.topic, proposal.partition);
                match apply(&mut next, &proposal) {
                    Ok(()) => {
                        tracing::info!(%topic, partition, isr = ?proposal.isr, "in-sync set changed")
                    }
                    Err(e) => {
                        tracing::warn!(%topic, partition, error = %e, "in-sync set proposal refused")
                    }
                }
            }
            Ok((next, handled))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_secs(2);

    fn placement(replicas: &[i32], isr: &[i32]) -> Placement {
        Placement {
            leader: replicas[0],
            replicas: replicas.to_vec(),
            leader_epoch: 5,
            isr: isr.to_vec(),
        }
    }

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn the_high_watermark_is_the_lowest_member_position_and_never_moves_back() {
        let t = Instant::now();
        let mut led = Led::new(5, 100, t);
        // A member that has not fetched in the epoch holds the watermark at its start.
        assert_eq!(led.high_watermark(110, &[2]), 100);
        led.record(2, 104, 110, t);
        assert_eq!(led.high_watermark(110, &[2]), 104);
        assert_eq!(led.high_watermark(110, &[]), 110);
        led.record(2, 102, 110, t);
        assert_eq!(led.high_watermark(110, &[2]), 110, "moved back");
        // A fetch beyond the leader's end is not a position.
        assert!(!led.record(3, 120, 110, t));
        assert_eq!(led.high_watermark(130, &[2, 3]), 110);
        assert!(!led.holds(&[3], 111));
    }

    #[test]
    fn a_follower_that_stops_catching_up_leaves_after_the_lag() {
        let t = Instant::now();
        let p = placement(&[1, 2, 3], &[1, 2, 3]);
        let mut led = Led::new(5, 0, t);
        led.record(2, 10, 10, t);
        led.record(3, 10, 10, t);
        // Node 3 keeps fetching at the end as of its previous fetch while writes arrive.
        led.record(3, 10, 14, at(t, 1500));
        led.record(3, 14, 18, at(t, 2500));
        let now = at(t, 2600);
        assert_eq!(led.wanted(&p, LAG, now), vec![1, 3]);
        assert_eq!(led.propose(&p, LAG, now), Some(vec![1, 3]));
        // In flight: the watermark still counts node 2, and nothing else is proposed.
        assert_eq!(led.maximal(&p.isr), vec![1, 2, 3]);
        assert!(!led.holds(&led.maximal(&p.isr)[1..], 11));
        assert_eq!(led.propose(&p, LAG, at(t, 2700)), None);
        let shrunk = placement(&[1, 2, 3], &[1, 3]);
        assert_eq!(led.propose(&shrunk, LAG, at(t, 2800)), None);
        assert_eq!(led.maximal(&shrunk.isr), vec![1, 3]);
    }

    #[test]
    fn a_member_that_never_fetches_in_the_epoch_leaves_after_the_lag() {
        let t = Instant::now();
        let p = placement(&[1, 2], &[1, 2]);
        let mut led = Led::new(5, 0, t);
        assert_eq!(led.propose(&p, LAG, at(t, 1900)), None);
        assert_eq!(led.propose(&p, LAG, at(t, 2100)), Some(vec![1]));
    }

    #[test]
    fn a_follower_rejoins_once_at_the_high_watermark_and_caught_up() {
        let t = Instant::now();
        let p = placement(&[1, 2], &[1]);
        let mut led = Led::new(5, 0, t);
        assert_eq!(led.high_watermark(50, &[]), 50);
        // Behind the watermark: not yet.
        led.record(2, 30, 50, at(t, 100));
        assert_eq!(led.propose(&p, LAG, at(t, 100)), None);
        led.record(2, 50, 60, at(t, 200));
        let proposed = led.propose(&p, LAG, at(t, 200));
        assert_eq!(proposed, Some(vec![1, 2]));
        // While the expansion is in flight, the joining replica holds the watermark.
        let maximal = led.maximal(&p.isr);
        assert_eq!(maximal, vec![1, 2]);
        assert_eq!(led.high_watermark(60, &maximal[1..]), 50);
        // Unanswered, it is sent again after a while, unchanged.
        assert_eq!(led.propose(&p, LAG, at(t, 1000)), None);
        assert_eq!(led.propose(&p, LAG, at(t, 2300)), Some(vec![1, 2]));
    }

    #[test]
    fn a_stopped_follower_at_the_watermark_does_not_rejoin_without_fetching() {
        let t = Instant::now();
        let p = placement(&[1, 2], &[1]);
        let mut led = Led::new(5, 0, t);
        led.record(2, 40, 40, t);
        assert_eq!(led.high_watermark(40, &[]), 40);
        assert_eq!(led.propose(&p, LAG, at(t, 3000)), None);
    }

    #[test]
    fn a_proposal_losing_a_replica_is_dropped() {
        let t = Instant::now();
        let mut led = Led::new(5, 0, t);
        led.record(2, 0, 0, t);
        let p = placement(&[1, 2], &[1]);
        assert_eq!(led.propose(&p, LAG, t), Some(vec![1, 2]));
        // Node 2 was lost and replaced by node 3 before the assigner saw the proposal.
        let replaced = placement(&[1, 3], &[1]);
        assert_eq!(led.maximal(&replaced.isr), vec![1, 2]);
        assert_eq!(led.propose(&replaced, LAG, at(t, 100)), None);
        assert_eq!(led.maximal(&replaced.isr), vec![1]);
    }

    fn owned(placement: Placement) -> Assignment {
        let mut a = Assignment::default();
        a.topics.insert("orders".into(), vec![placement]);
        a.roles.insert("orders".into(), super::super::Role::Owned);
        a
    }

    fn proposal(leader: i32, leader_epoch: i32, isr: &[i32]) -> IsrProposal {
        IsrProposal {
            topic: "orders".into(),
            partition: 0,
            leader,
            leader_epoch,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn the_assigner_applies_only_the_current_leaders_proposal() {
        let mut a = owned(placement(&[1, 2, 3], &[1, 2, 3]));
        assert_eq!(apply(&mut a, &proposal(1, 5, &[3, 1])), Ok(()));
        assert_eq!(a.topics["orders"][0].isr, vec![1, 3]);
        let deposed = apply(&mut a, &proposal(1, 4, &[1]));
        assert!(matches!(deposed, Err(IsrRefusal::StaleLeader { .. })));
        let other = apply(&mut a, &proposal(2, 5, &[2]));
        assert!(matches!(other, Err(IsrRefusal::StaleLeader { .. })));
        let outsider = apply(&mut a, &proposal(1, 5, &[1, 4]));
        assert!(matches!(outsider, Err(IsrRefusal::NotReplicas(_))));
        let leaderless = apply(&mut a, &proposal(1, 5, &[2, 3]));
        assert!(matches!(leaderless, Err(IsrRefusal::NotReplicas(_))));
        assert_eq!(a.topics["orders"][0].isr, vec![1, 3]);
        let mut shadow = a.clone();
        shadow.roles.clear();
        let refused = apply(&mut shadow, &proposal(1, 5, &[1]));
        assert_eq!(refused, Err(IsrRefusal::NotOwned));
    }
}
