//! State machine tests. Time is fake: every transition takes an explicit `now`, so
//! timeouts are tested by passing a later instant, never by sleeping.

use bytes::Bytes;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::oneshot::Receiver;
use tokio::time::{Duration, Instant};

use super::error::GroupError;
use super::group::{
    GroupConfig, GroupState, JoinOutcome, JoinRequest, Phase, Step, SyncOutcome, SyncRequest,
};
use super::offsets::{Committed, TopicPartition};
use super::Coordinator;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(5);

fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay: Duration::from_secs(3),
        ..GroupConfig::default()
    }
}

fn request(member_id: &str, v4: bool) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: String::new(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("cooperative-sticky".into(), Bytes::from_static(b"cs")),
            ("range".into(), Bytes::from_static(b"r")),
        ],
        require_known_member_id: v4,
    }
}

fn done<T: std::fmt::Debug>(step: Step<T>) -> T {
    match step {
        Step::Done(v) => v,
        Step::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn parked<T>(step: Step<T>) -> Receiver<T> {
    match step {
        Step::Wait(rx) => rx,
        Step::Done(_) => panic!("expected the request to wait"),
    }
}

fn ready<T>(rx: &mut Receiver<T>) -> T {
    rx.try_recv().expect("the parked request has its answer")
}

fn still_waiting<T>(rx: &mut Receiver<T>) {
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

/// KIP-394 handshake for a v4+ client: returns the member id it was given.
fn member_id(group: &mut GroupState, now: Instant) -> String {
    let refused = done(group.join(request("", true), now, &cfg()));
    assert_eq!(refused.error, Some(GroupError::MemberIdRequired));
    assert!(!refused.member_id.is_empty());
    refused.member_id
}

fn sync(member: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncRequest {
    SyncRequest {
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: None,
        assignments,
    }
}

/// One member joined, synced and stable at generation 1.
fn stable_single(now: Instant) -> (GroupState, String) {
    let mut group = GroupState::default();
    let a = member_id(&mut group, now);
    let joined = ready(&mut parked(group.join(request(&a, true), now, &cfg())));
    assert_eq!(joined.error, None);
    let assignment = vec![(a.clone(), Bytes::from_static(b"all"))];
    let synced = ready(&mut parked(group.sync(
        sync(&a, 1, assignment),
        now,
        &cfg(),
    )));
    assert_eq!(synced.assignment, Bytes::from_static(b"all"));
    (group, a)
}

/// Two members stable at generation 2, `a` leading.
fn stable_pair(t0: Instant) -> (GroupState, String, String) {
    let (mut group, a) = stable_single(t0);
    let b = member_id(&mut group, t0);
    let mut b_join = parked(group.join(request(&b, true), t0, &cfg()));
    assert_eq!(
        group.heartbeat(&a, None, 1, t0, &cfg()),
        Err(GroupError::RebalanceInProgress)
    );
    let a_joined = ready(&mut parked(group.join(request(&a, true), t0, &cfg())));
    let b_joined = ready(&mut b_join);
    assert_eq!((a_joined.generation_id, b_joined.generation_id), (2, 2));
    let assignments = vec![
        (a.clone(), Bytes::from_static(b"A")),
        (b.clone(), Bytes::from_static(b"B")),
    ];
    let mut b_sync = parked(group.sync(sync(&b, 2, vec![]), t0, &cfg()));
    ready(&mut parked(group.sync(
        sync(&a, 2, assignments),
        t0,
        &cfg(),
    )));
    assert_eq!(ready(&mut b_sync).assignment, Bytes::from_static(b"B"));
    (group, a, b)
}

#[test]
fn a_lone_member_needs_its_id_then_leads_generation_one_at_once() {
    let now = Instant::now();
    let mut group = GroupState::default();
    let a = member_id(&mut group, now);
    assert_eq!(group.phase(), Phase::Empty);
    // Every known member has joined, so the initial delay ends at once.
    let joined: JoinOutcome = ready(&mut parked(group.join(request(&a, true), now, &cfg())));
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, a);
    assert_eq!(joined.protocol_name.as_deref(), Some("cooperative-sticky"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, Bytes::from_static(b"cs"));
    assert_eq!(group.phase(), Phase::CompletingRebalance);
    assert_eq!(group.heartbeat(&a, None, 1, now, &cfg()), Ok(()));
    ready(&mut parked(group.sync(sync(&a, 1, vec![]), now, &cfg())));
    assert_eq!(group.phase(), Phase::Stable);
}

#[test]
fn a_second_member_triggers_a_rebalance_and_the_follower_waits_for_the_leader() {
    let (group, a, b) = stable_pair(Instant::now());
    let summary = group.summary();
    assert_eq!(summary.phase, Phase::Stable);
    let ids: Vec<&str> = summary
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, vec![a.as_str(), b.as_str()]);
}

#[test]
fn the_follower_gets_no_member_list_and_a_rejoin_without_changes_gets_the_same_answer() {
    let t0 = Instant::now();
    let (mut group, a) = stable_single(t0);
    let b = member_id(&mut group, t0);
    let mut b_join = parked(group.join(request(&b, true), t0, &cfg()));
    let a_joined = ready(&mut parked(group.join(request(&a, true), t0, &cfg())));
    let b_joined = ready(&mut b_join);
    assert_eq!(a_joined.members.len(), 2);
    assert!(b_joined.members.is_empty());
    assert_eq!(b_joined.leader, a);
    // CompletingRebalance: an unchanged rejoin is answered from the current generation.
    let again = done(group.join(request(&b, true), t0, &cfg()));
    assert_eq!(again.generation_id, b_joined.generation_id);
}

#[test]
fn the_initial_delay_waits_for_pending_members_and_ends_at_its_deadline() {
    let t0 = Instant::now();
    let mut group = GroupState::default();
    let a = member_id(&mut group, t0);
    let _b = member_id(&mut group, t0);
    let mut a_join = parked(group.join(request(&a, true), t0, &cfg()));
    group.tick(t0 + Duration::from_millis(2_900), &cfg());
    still_waiting(&mut a_join);
    assert_eq!(group.next_deadline(), Some(t0 + Duration::from_secs(3)));
    group.tick(t0 + Duration::from_secs(3), &cfg());
    let joined = ready(&mut a_join);
    assert_eq!((joined.generation_id, joined.members.len()), (1, 1));
}

#[test]
fn the_initial_delay_grows_with_each_arrival_up_to_the_rebalance_timeout() {
    let t0 = Instant::now();
    let mut group = GroupState::default();
    // v3 clients: no member id handshake, so nobody is pending; a third "known" member
    // is simulated by a pending id that never comes back.
    let _ghost = member_id(&mut group, t0);
    let mut a = parked(group.join(request("", false), t0, &cfg()));
    let t1 = t0 + Duration::from_millis(2_500);
    let mut b = parked(group.join(request("", false), t1, &cfg()));
    group.tick(t0 + Duration::from_millis(4_900), &cfg());
    still_waiting(&mut a);
    // t1 + 3 s exceeds the 5 s cap measured from t0.
    assert_eq!(group.next_deadline(), Some(t0 + REBALANCE));
    group.tick(t0 + REBALANCE, &cfg());
    assert_eq!(ready(&mut a).generation_id, 1);
    assert_eq!(ready(&mut b).generation_id, 1);
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance_without_it() {
    let t0 = Instant::now();
    let (mut group, a, b) = stable_pair(t0);
    let t1 = t0 + SESSION - Duration::from_millis(1);
    assert_eq!(group.heartbeat(&a, None, 2, t1, &cfg()), Ok(()));
    let t2 = t0 + SESSION;
    group.tick(t2, &cfg());
    assert_eq!(group.phase(), Phase::PreparingRebalance);
    assert_eq!(
        group.heartbeat(&b, None, 2, t2, &cfg()),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        group.heartbeat(&a, None, 2, t2, &cfg()),
        Err(GroupError::RebalanceInProgress)
    );
    let joined = ready(&mut parked(group.join(request(&a, true), t2, &cfg())));
    assert_eq!((joined.generation_id, joined.members.len()), (3, 1));
}

#[test]
fn members_that_do_not_rejoin_by_the_rebalance_timeout_are_dropped() {
    let t0 = Instant::now();
    let (mut group, a, b) = stable_pair(t0);
    assert_eq!(group.leave(&[(b.clone(), None)], t0, &cfg()), vec![Ok(())]);
    let c = member_id(&mut group, t0);
    let mut c_join = parked(group.join(request(&c, true), t0, &cfg()));
    // `a` keeps heartbeating but never rejoins.
    let t1 = t0 + Duration::from_secs(4);
    assert_eq!(
        group.heartbeat(&a, None, 2, t1, &cfg()),
        Err(GroupError::RebalanceInProgress)
    );
    still_waiting(&mut c_join);
    group.tick(t0 + REBALANCE, &cfg());
    let joined = ready(&mut c_join);
    assert_eq!(joined.leader, c);
    assert_eq!(
        group.heartbeat(&a, None, 2, t0 + REBALANCE, &cfg()),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn leaving_sends_the_others_back_to_join_and_the_last_leaver_empties_the_group() {
    let t0 = Instant::now();
    let (mut group, a, b) = stable_pair(t0);
    assert_eq!(group.leave(&[(a.clone(), None)], t0, &cfg()), vec![Ok(())]);
    assert_eq!(
        group.heartbeat(&b, None, 2, t0, &cfg()),
        Err(GroupError::RebalanceInProgress)
    );
    let joined = ready(&mut parked(group.join(request(&b, true), t0, &cfg())));
    assert_eq!(
        (joined.leader.as_str(), joined.generation_id),
        (b.as_str(), 3)
    );
    ready(&mut parked(group.sync(sync(&b, 3, vec![]), t0, &cfg())));
    assert_eq!(group.leave(&[(b.clone(), None)], t0, &cfg()), vec![Ok(())]);
    assert_eq!(group.phase(), Phase::Empty);
    assert!(!group.has_members());
    assert_eq!(
        group.leave(&[(b, None)], t0, &cfg()),
        vec![Err(GroupError::UnknownMemberId)]
    );
}

#[test]
fn heartbeats_name_unknown_members_and_stale_generations() {
    let t0 = Instant::now();
    let (mut group, a) = stable_single(t0);
    assert_eq!(
        group.heartbeat("nobody", None, 1, t0, &cfg()),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        group.heartbeat(&a, None, 7, t0, &cfg()),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        done(group.sync(sync(&a, 7, vec![]), t0, &cfg())).error,
        Some(GroupError::IllegalGeneration)
    );
    assert_eq!(
        done(group.join(request("nobody", true), t0, &cfg())).error,
        Some(GroupError::UnknownMemberId)
    );
}

#[test]
fn a_leader_that_never_syncs_expires_and_the_follower_is_told_to_rejoin() {
    let t0 = Instant::now();
    let (mut group, a) = stable_single(t0);
    let b = member_id(&mut group, t0);
    let mut b_join = parked(group.join(request(&b, true), t0, &cfg()));
    ready(&mut parked(group.join(request(&a, true), t0, &cfg())));
    ready(&mut b_join);
    let mut b_sync = parked(group.sync(sync(&b, 2, vec![]), t0, &cfg()));
    group.tick(t0 + SESSION, &cfg());
    let answer: SyncOutcome = ready(&mut b_sync);
    assert_eq!(answer.error, Some(GroupError::RebalanceInProgress));
}

#[test]
fn incompatible_protocols_and_bad_session_timeouts_are_refused() {
    let t0 = Instant::now();
    let (mut group, _a) = stable_single(t0);
    let mut other = request("", false);
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(
        done(group.join(other, t0, &cfg())).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    let mut short = request("", false);
    short.session_timeout = Duration::from_millis(10);
    assert_eq!(
        done(group.join(short, t0, &cfg())).error,
        Some(GroupError::InvalidSessionTimeout)
    );
}

#[test]
fn a_static_member_rejoining_fences_its_old_id() {
    let t0 = Instant::now();
    let mut group = GroupState::default();
    let mut first = request("", true);
    first.group_instance_id = Some("host-1".into());
    // KIP-345 members skip the KIP-394 handshake.
    let joined = ready(&mut parked(group.join(first.clone(), t0, &cfg())));
    let old = joined.member_id;
    assert!(old.starts_with("host-1-"));
    let rejoined = ready(&mut parked(group.join(first, t0, &cfg())));
    assert_ne!(rejoined.member_id, old);
    assert_eq!(
        group.heartbeat(&old, Some("host-1"), rejoined.generation_id, t0, &cfg()),
        Err(GroupError::FencedInstanceId)
    );
    let leave = group.leave(&[(String::new(), Some("host-1".into()))], t0, &cfg());
    assert_eq!(leave, vec![Ok(())]);
    assert!(!group.has_members());
}

#[test]
fn commits_need_the_current_generation_or_an_empty_group() {
    let t0 = Instant::now();
    let mut group = GroupState::default();
    assert_eq!(group.validate_commit("", None, -1, t0, &cfg()), Ok(()));
    let (mut group, a) = stable_single(t0);
    assert_eq!(
        group.validate_commit("", None, -1, t0, &cfg()),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(group.validate_commit(&a, None, 1, t0, &cfg()), Ok(()));
    assert_eq!(
        group.validate_commit(&a, None, 0, t0, &cfg()),
        Err(GroupError::IllegalGeneration)
    );
}

#[test]
fn pending_member_ids_lapse_after_a_session() {
    let t0 = Instant::now();
    let mut group = GroupState::default();
    let a = member_id(&mut group, t0);
    group.tick(t0 + SESSION, &cfg());
    assert_eq!(
        done(group.join(request(&a, true), t0 + SESSION, &cfg())).error,
        Some(GroupError::UnknownMemberId)
    );
}

fn coordinator(dir: &std::path::Path, initial_delay: Duration) -> Coordinator {
    let config = GroupConfig {
        initial_rebalance_delay: initial_delay,
        ..GroupConfig::default()
    };
    Coordinator::open_with(dir, config).unwrap()
}

#[tokio::test]
async fn parked_joins_are_answered_across_tasks() {
    let dir = tempfile::tempdir().unwrap();
    // A long initial delay: only the short-circuit on the last pending member can end it.
    let coordinator = std::sync::Arc::new(coordinator(dir.path(), Duration::from_secs(60)));
    let a = coordinator.join("g", request("", true)).await.member_id;
    let b = coordinator.join("g", request("", true)).await.member_id;
    let first = {
        let c = coordinator.clone();
        let a = a.clone();
        tokio::spawn(async move { c.join("g", request(&a, true)).await })
    };
    tokio::task::yield_now().await;
    assert!(!first.is_finished(), "a waits for the pending member b");
    let b_joined = coordinator.join("g", request(&b, true)).await;
    let a_joined = first.await.unwrap();
    assert_eq!((a_joined.generation_id, b_joined.generation_id), (1, 1));
    assert_eq!(a_joined.members.len() + b_joined.members.len(), 2);
    assert!(coordinator.has_active_members("g"));
    assert_eq!(coordinator.list_groups(), vec!["g".to_string()]);
}

/// The timer task ends the initial delay when a pending member never returns (20 ms here;
/// tokio's paused clock needs the `test-util` feature, which this crate does not enable).
#[tokio::test]
async fn the_timer_task_completes_a_join_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = coordinator(dir.path(), Duration::from_millis(20));
    let a = coordinator.join("g", request("", true)).await.member_id;
    let _ghost = coordinator.join("g", request("", true)).await.member_id;
    let joined = tokio::time::timeout(
        Duration::from_secs(10),
        coordinator.join("g", request(&a, true)),
    )
    .await
    .expect("the deadline fires");
    assert_eq!(joined.generation_id, 1);
}

#[tokio::test]
async fn committed_offsets_persist_and_node_commits_defer_to_members() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = coordinator(dir.path(), Duration::from_secs(60));
    let at = |offset| Committed {
        offset,
        leader_epoch: -1,
        metadata: None,
    };
    let entries = vec![
        (TopicPartition::new("t", 0), at(42)),
        (TopicPartition::new("t", 1), at(7)),
    ];
    assert_eq!(
        coordinator.commit("manual", "", None, -1, entries).await,
        Ok(())
    );
    assert_eq!(
        coordinator
            .commit("nobody-home", "m", None, 3, vec![])
            .await,
        Err(GroupError::IllegalGeneration)
    );
    coordinator
        .commit_offsets("synced", &[("t".into(), 0, 5)])
        .unwrap();
    let joined = coordinator.join("synced", request("", false)).await;
    assert_eq!(joined.error, None);
    assert!(matches!(
        coordinator.commit_offsets("synced", &[("t".into(), 0, 9)]),
        Err(super::SyncCommitError::ActiveMembers(group)) if group == "synced"
    ));
    drop(coordinator);
    let reopened = Coordinator::open(dir.path()).unwrap();
    assert_eq!(
        reopened.committed("manual"),
        vec![("t".into(), 0, 42), ("t".into(), 1, 7)]
    );
    assert_eq!(reopened.committed("synced"), vec![("t".into(), 0, 5)]);
    assert_eq!(
        reopened.list_groups(),
        vec!["manual".to_string(), "synced".to_string()]
    );
    assert!(!reopened.has_active_members("synced"));
}

#[tokio::test]
async fn groups_without_members_expire_once_their_offsets_are_older_than_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Duration::from_secs(60);
    let config = GroupConfig {
        offsets_retention: retention,
        ..GroupConfig::default()
    };
    let coordinator = Coordinator::open_with(dir.path(), config.clone()).unwrap();
    for group in ["idle", "busy"] {
        coordinator
            .commit_offsets(group, &[("t".into(), 0, 5)])
            .unwrap();
    }
    let joined = coordinator.join("busy", request("", false)).await;
    assert_eq!(joined.error, None);
    let now = std::time::SystemTime::now();
    assert_eq!(coordinator.expire(now).unwrap(), Vec::<String>::new());

    let later = now + retention + Duration::from_secs(1);
    assert_eq!(coordinator.expire(later).unwrap(), vec!["idle".to_string()]);
    assert!(coordinator.committed("idle").is_empty());
    assert_eq!(coordinator.list_groups(), vec!["busy".to_string()]);
    assert!(coordinator.describe("idle").is_none());

    // Removal is on disk too; a later commit starts the group afresh.
    let reopened = Coordinator::open_with(dir.path(), config.clone()).unwrap();
    assert_eq!(reopened.list_groups(), vec!["busy".to_string()]);
    coordinator
        .commit_offsets("idle", &[("t".into(), 0, 9)])
        .unwrap();
    assert_eq!(coordinator.committed("idle"), vec![("t".into(), 0, 9)]);
    let reopened = Coordinator::open_with(dir.path(), config).unwrap();
    assert_eq!(reopened.committed("idle"), vec![("t".into(), 0, 9)]);
}
