//! The link's side of KIP-227: one incremental fetch session per source broker.
//!
//! The first request of a session is a full fetch at epoch 0. When the broker answers
//! with a session id, later requests name only partitions whose fetch parameters changed
//! since they were last sent (after records arrived, a truncation, a new leader epoch),
//! plus the partitions to forget; the broker keeps reading all the others. A broker that
//! answers a session request with id 0 offers no sessions (tansu, or a Kafka whose cache
//! is full) and gets full fetches from then on. A lost session (FETCH_SESSION_ID_NOT_FOUND,
//! after a broker restart or an eviction) or a request out of step
//! (INVALID_FETCH_SESSION_EPOCH, a lost connection) starts over with a full fetch.
//!
//! The link tells the session which partitions it wants and with which parameters only
//! when that changes ([`BrokerSession::want`], [`BrokerSession::unwant`]), so planning
//! the next request of an idle session looks at no partition at all.

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::ResponseError;

use super::TopicPartition;

/// The fetch parameters of a partition that the broker keeps in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    fetch_offset: i64,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    partition_max_bytes: i32,
    /// Sent in a request that got no answer: the broker may not have it.
    unsure: bool,
}

impl Sent {
    fn of(p: &FetchPartition) -> Sent {
        Sent {
            fetch_offset: p.fetch_offset,
            current_leader_epoch: p.current_leader_epoch,
            last_fetched_epoch: p.last_fetched_epoch,
            partition_max_bytes: p.partition_max_bytes,
            unsure: false,
        }
    }

    fn same_parameters(&self, other: &Sent) -> bool {
        !self.unsure && self == other
    }
}

/// The session kept with one broker.
#[derive(Debug, Default)]
pub(super) struct BrokerSession {
    /// 0 until the broker hands out an id.
    id: i32,
    /// The epoch the next request carries; 0 asks for a full fetch opening a session.
    epoch: i32,
    /// The broker answered a session request without one: full fetches only.
    unsupported: bool,
    /// Partitions in the session, as last sent.
    sent: HashMap<TopicPartition, Sent>,
    /// The partitions the link wants fetched now, with their parameters.
    wanted: HashMap<TopicPartition, FetchPartition>,
    /// Partitions wanted, unwanted or changed since the last request was planned.
    changed: BTreeSet<TopicPartition>,
    /// The next request names every partition again (the last one got no answer).
    relist: bool,
}

/// What goes into the next request of a session.
#[derive(Debug)]
pub(super) struct Planned {
    pub session_id: i32,
    pub epoch: i32,
    /// Partitions to name in the request: all of them for a full fetch.
    pub listed: Vec<FetchPartition>,
    pub listed_keys: Vec<TopicPartition>,
    pub forgotten: Vec<TopicPartition>,
}

impl Planned {
    pub fn is_full(&self) -> bool {
        self.epoch == 0
    }
}

impl BrokerSession {
    /// Whether requests to this broker go through a session.
    pub fn offered(&self) -> bool {
        !self.unsupported
    }

    /// The link wants `key` fetched with `partition`'s parameters.
    pub fn want(&mut self, key: &TopicPartition, partition: FetchPartition) {
        let same = self
            .wanted
            .get(key)
            .is_some_and(|p| Sent::of(p) == Sent::of(&partition));
        if !same {
            self.wanted.insert(key.clone(), partition);
            self.changed.insert(key.clone());
        }
    }

    /// The link no longer fetches `key` from this broker: the next request forgets it.
    pub fn unwant(&mut self, key: &TopicPartition) {
        if self.wanted.remove(key).is_some() {
            self.changed.insert(key.clone());
        }
    }

    /// Whether any partition is wanted, so there is a request to send.
    pub fn has_wanted(&self) -> bool {
        !self.wanted.is_empty()
    }

    /// The partitions wanted now.
    pub fn wanted(&self) -> impl Iterator<Item = &TopicPartition> {
        self.wanted.keys()
    }

    /// Plans the next request: a full fetch naming every wanted partition, or the
    /// partitions whose parameters changed since they were sent and the ones to forget.
    pub fn plan(&mut self) -> Planned {
        let full = self.epoch == 0;
        if full {
            self.sent.clear();
        }
        let keys: Vec<TopicPartition> = match full || self.relist {
            true => {
                let gone = self.sent.keys().filter(|k| !self.wanted.contains_key(*k));
                self.wanted.keys().chain(gone).cloned().collect()
            }
            false => self.changed.iter().cloned().collect(),
        };
        self.changed.clear();
        self.relist = false;
        let (mut listed, mut listed_keys, mut forgotten) = (Vec::new(), Vec::new(), Vec::new());
        for key in keys {
            let Some(partition) = self.wanted.get(&key) else {
                if self.sent.remove(&key).is_some() {
                    forgotten.push(key);
                }
                continue;
            };
            let now = Sent::of(partition);
            let unchanged = self.sent.get(&key).is_some_and(|s| s.same_parameters(&now));
            if !unchanged || full {
                self.sent.insert(key.clone(), now);
                listed.push(partition.clone());
                listed_keys.push(key);
            }
        }
        Planned {
            session_id: self.id,
            epoch: self.epoch,
            listed,
            listed_keys,
            forgotten,
        }
    }

    /// Follows the broker's answer to a request planned at `epoch`.
    pub fn on_response(&mut self, epoch: i32, error_code: i16, session_id: i32) {
        if error_code == ResponseError::FetchSessionIdNotFound.code() {
            self.id = 0;
            return self.restart();
        }
        if error_code != 0 {
            // INVALID_FETCH_SESSION_EPOCH or any other failure of the whole request:
            // close this session and open a new one with a full fetch, as Kafka's
            // consumer does.
            return self.restart();
        }
        if epoch != 0 {
            // After i32::MAX comes 1: 0 and -1 are the initial and final epochs.
            self.epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        } else if session_id == 0 {
            self.unsupported = true;
            self.sent.clear();
        } else {
            self.id = session_id;
            self.epoch = 1;
        }
    }

    /// Closes the session at the next request, which is a full fetch opening another.
    fn restart(&mut self) {
        self.epoch = 0;
        self.sent.clear();
    }

    /// The request got no answer (connection lost, timeout). The next one keeps the
    /// epoch and names every partition again: a broker that applied the lost request
    /// answers INVALID_FETCH_SESSION_EPOCH, one that restarted since answers
    /// FETCH_SESSION_ID_NOT_FOUND, and one that never saw it goes on with the session.
    pub fn on_lost(&mut self) {
        for sent in self.sent.values_mut() {
            sent.unsure = true;
        }
        self.relist = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(offsets: &[(i32, i64)]) -> Vec<(TopicPartition, FetchPartition)> {
        offsets
            .iter()
            .map(|&(p, offset)| {
                let partition = FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offset);
                (TopicPartition::new("t", p), partition)
            })
            .collect()
    }

    /// Plans a request wanting exactly `offsets`, as the link's calls would.
    fn plan(session: &mut BrokerSession, offsets: &[(i32, i64)]) -> Planned {
        let wanted = wanted(offsets);
        let keep: Vec<TopicPartition> = wanted.iter().map(|(k, _)| k.clone()).collect();
        let gone: Vec<TopicPartition> = session
            .wanted()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in gone {
            session.unwant(&key);
        }
        for (key, partition) in wanted {
            session.want(&key, partition);
        }
        session.plan()
    }

    fn listed(planned: &Planned) -> Vec<(i32, i64)> {
        let offsets = planned.listed.iter().map(|p| (p.partition, p.fetch_offset));
        offsets.collect()
    }

    #[test]
    fn after_a_full_fetch_only_changed_partitions_are_sent_and_the_rest_forgotten() {
        let mut session = BrokerSession::default();
        let first = plan(&mut session, &[(0, 5), (1, 7), (2, 9)]);
        assert!(first.is_full());
        assert_eq!((first.session_id, listed(&first).len()), (0, 3));
        session.on_response(first.epoch, 0, 42);
        let second = plan(&mut session, &[(0, 5), (1, 8), (2, 9)]);
        assert_eq!((second.session_id, second.epoch), (42, 1));
        assert_eq!(listed(&second), [(1, 8)]);
        assert!(second.forgotten.is_empty());
        session.on_response(second.epoch, 0, 42);
        let third = plan(&mut session, &[(1, 8), (3, 0)]);
        assert_eq!((third.epoch, listed(&third)), (2, vec![(3, 0)]));
        let mut forgotten: Vec<i32> = third.forgotten.iter().map(|k| k.partition).collect();
        forgotten.sort();
        assert_eq!(forgotten, [0, 2]);
    }

    #[test]
    fn a_lost_session_starts_over_with_a_full_fetch() {
        let mut session = BrokerSession::default();
        let first = plan(&mut session, &[(0, 5)]);
        session.on_response(first.epoch, 0, 42);
        let second = plan(&mut session, &[(0, 5)]);
        session.on_response(
            second.epoch,
            ResponseError::FetchSessionIdNotFound.code(),
            0,
        );
        let third = plan(&mut session, &[(0, 5)]);
        assert_eq!(
            (third.session_id, third.epoch, listed(&third).len()),
            (0, 0, 1)
        );
        session.on_response(third.epoch, 0, 43);
        let fourth = plan(&mut session, &[(0, 5)]);
        let code = ResponseError::InvalidFetchSessionEpoch.code();
        session.on_response(fourth.epoch, code, 0);
        // Out of step: the session is closed and replaced by the next full fetch.
        let fifth = plan(&mut session, &[(0, 5)]);
        assert_eq!(
            (fifth.session_id, fifth.epoch, listed(&fifth).len()),
            (43, 0, 1)
        );
        session.on_response(fifth.epoch, 0, 44);
        // No answer: the same epoch again, naming every partition, forgetting the rest.
        let sixth = plan(&mut session, &[(0, 5), (1, 2)]);
        session.on_lost();
        let seventh = plan(&mut session, &[(0, 5)]);
        assert_eq!((seventh.session_id, seventh.epoch), (44, sixth.epoch));
        assert_eq!(listed(&seventh), [(0, 5)]);
        assert_eq!(seventh.forgotten, [TopicPartition::new("t", 1)]);
    }

    #[test]
    fn a_broker_without_sessions_gets_full_fetches() {
        let mut session = BrokerSession::default();
        assert!(session.offered());
        let first = plan(&mut session, &[(0, 5)]);
        session.on_response(first.epoch, 0, 0);
        assert!(!session.offered());
    }
}
