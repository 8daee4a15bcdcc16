//! The way back from owning a topic: fenced when a peer took it over, paused while it
//! moves, demoted to a read-only shadow of a link.
//!
//! Every change is one atomic rewrite of `topic.json`, so a crash leaves the topic in
//! the state before or after it, never between: owned (perhaps fenced), or a shadow.
//! Demotion may first truncate each partition (`PartitionLog::truncate_to`); a crash
//! during that leaves the topic owned and fenced, with a shorter log, and the same
//! demotion runs again to the end.

use std::collections::BTreeMap;

use super::owned::WriteStop;
use super::{MirrorError, MirrorPartition, MirrorTopic, Store, TopicRecord, TopicState};

impl Store {
    /// Where fail-back saves the records it cuts: `{data_dir}/diverged`.
    pub fn diverged_dir(&self) -> std::path::PathBuf {
        self.root.with_file_name("diverged")
    }
}

impl MirrorPartition {
    fn set_write_stop(&self, stop: Option<WriteStop>) {
        if let Some(owned) = self.owned_state().as_mut() {
            owned.refusal = stop;
        }
    }

    /// Why writes are refused although the partition is owned, if they are.
    pub fn write_stop(&self) -> Option<WriteStop> {
        self.owned_state().as_ref().and_then(|o| o.refusal.clone())
    }

    fn disown(&self) {
        *self.owned_state() = None;
    }
}

impl MirrorTopic {
    /// Refuses writes to this owned topic because `link`'s source, `peer`, writes it in
    /// a newer leader epoch. Persisted (the topic then appears under `link`, fenced);
    /// returns false when the topic is not owned or was fenced already.
    pub fn fence(&self, link: &str, peer: &str) -> Result<bool, MirrorError> {
        let mut record = self.record();
        if record.owned.is_none()
            || matches!(record.meta.state, TopicState::FencedByFailover { .. })
        {
            return Ok(false);
        }
        let mut updated = record.clone();
        updated.meta.link = link.to_string();
        updated.meta.state = TopicState::FencedByFailover {
            peer: peer.to_string(),
        };
        self.write_record(&updated)?;
        *record = updated;
        drop(record);
        self.apply_write_stop();
        tracing::warn!(topic = %self.name, link, peer, "topic fenced: the peer took it over by failover; writes are refused until fail-back");
        Ok(true)
    }

    /// Installs the refusal the persisted state calls for (on open and after a change).
    pub(super) fn apply_write_stop(&self) {
        let stop = match self.meta().state {
            TopicState::FencedByFailover { peer } => WriteStop::Fenced { peer },
            TopicState::SwitchingOut => WriteStop::Moving,
            _ => return,
        };
        for p in self.partitions() {
            p.set_write_stop(Some(stop.clone()));
        }
    }

    /// Stops writes to this owned topic for a switchover (persisted: a restart keeps them
    /// stopped), or with `false` resumes them. Returns false for a topic not owned here.
    pub fn switch_out(&self, stop: bool) -> Result<bool, MirrorError> {
        let mut record = self.record();
        if record.owned.is_none() {
            return Ok(false);
        }
        let wanted = match (
            stop,
            record.owned.as_ref().and_then(|o| o.from_link.as_ref()),
        ) {
            (true, _) => TopicState::SwitchingOut,
            (false, Some(_)) => TopicState::FailedOver,
            (false, None) => TopicState::Active,
        };
        if record.meta.state != wanted {
            let mut updated = record.clone();
            updated.meta.state = wanted;
            self.write_record(&updated)?;
            *record = updated;
        }
        drop(record);
        let refusal = stop.then_some(WriteStop::Moving);
        for p in self.partitions() {
            p.set_write_stop(refusal.clone());
        }
        Ok(true)
    }

    /// Makes this owned topic a read-only shadow of `link`, first cutting each partition
    /// named in `truncate` at that offset. Writes stop before anything is cut, and the
    /// ownership goes in one rewrite of `topic.json` once every cut is done, so producers
    /// never write to a half-demoted topic. A shadow of `link` already is left as it is.
    pub fn demote(&self, link: &str, truncate: &BTreeMap<i32, i64>) -> Result<(), MirrorError> {
        let meta = self.meta();
        if !self.is_owned() {
            if meta.link == link {
                return Ok(());
            }
            return Err(MirrorError::NotOwned {
                topic: self.name.clone(),
                link: meta.link,
            });
        }
        if let Some((p, reason)) = self.offline.iter().next() {
            return Err(MirrorError::PartitionOffline {
                topic: self.name.clone(),
                partition: *p,
                reason: reason.clone(),
            });
        }
        for p in self.partitions() {
            if p.write_stop().is_none() {
                p.set_write_stop(Some(WriteStop::Moving));
            }
            if let Some(&offset) = truncate.get(&p.partition) {
                p.log().truncate_to(offset)?;
            }
        }
        let mut record = self.record();
        let mut updated = TopicRecord {
            meta: record.meta.clone(),
            owned: None,
        };
        updated.meta.link = link.to_string();
        updated.meta.state = TopicState::Demoted;
        self.write_record(&updated)?;
        *record = updated;
        drop(record);
        for p in self.partitions() {
            p.disown();
        }
        tracing::warn!(topic = %self.name, link, "topic demoted: a read-only shadow of the link again");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use shadowlink_protocol::batch::testing::BatchBuilder;
    use shadowlink_storage::LogConfig;

    use super::super::owned::{ProduceError, ProduceRequest, DEFAULT_MAX_MESSAGE_BYTES};
    use super::*;

    fn request() -> ProduceRequest {
        ProduceRequest {
            acks: -1,
            api_version: 9,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            in_transaction: false,
        }
    }

    fn batch(records: usize) -> Bytes {
        let values: Vec<_> = (0..records).map(|_| (None, Some(&b"v"[..]))).collect();
        BatchBuilder::new(0)
            .leader_epoch(-1)
            .records(&values)
            .build()
    }

    fn owned_with_records(dir: &std::path::Path) -> Store {
        let store = Store::open(dir, LogConfig::default()).unwrap();
        store
            .create_owned_topic("a_orders", 1, BTreeMap::new(), i64::MAX)
            .unwrap();
        let p = store.partition("a_orders", 0).unwrap();
        for _ in 0..3 {
            p.produce(batch(2), &request()).unwrap();
        }
        store
    }

    #[test]
    fn a_fenced_topic_refuses_writes_naming_the_peer_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = owned_with_records(dir.path());
        let topic = store.topic("a_orders").unwrap();
        assert!(topic.fence("from-b", "link from-b (b:9092)").unwrap());
        assert!(!topic.fence("from-b", "link from-b (b:9092)").unwrap());
        drop((topic, store));

        let store = Store::open(dir.path(), LogConfig::default()).unwrap();
        let topic = store.topic("a_orders").unwrap();
        assert!(topic.is_owned());
        assert_eq!(topic.meta().link, "from-b");
        let refused = topic.partition(0).unwrap().produce(batch(1), &request());
        let Err(e @ ProduceError::Fenced { .. }) = refused else {
            panic!("{refused:?}");
        };
        assert!(
            e.to_string()
                .contains("failed over to link from-b (b:9092)"),
            "{e}"
        );
    }

    #[test]
    fn demotion_cuts_the_log_and_leaves_a_shadow_of_the_link_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = owned_with_records(dir.path());
        let topic = store.topic("a_orders").unwrap();
        topic.demote("from-b", &BTreeMap::from([(0, 4)])).unwrap();
        topic.demote("from-b", &BTreeMap::new()).unwrap();
        assert!(matches!(
            topic.demote("elsewhere", &BTreeMap::new()),
            Err(MirrorError::NotOwned { .. })
        ));
        drop((topic, store));

        let store = Store::open(dir.path(), LogConfig::default()).unwrap();
        let topic = store.topic("a_orders").unwrap();
        let p = topic.partition(0).unwrap();
        assert!(!topic.is_owned() && !p.is_owned());
        assert_eq!(
            (topic.meta().link, topic.meta().state),
            ("from-b".to_string(), TopicState::Demoted)
        );
        assert_eq!(p.log().log_end_offset(), 4);
        assert!(matches!(
            p.produce(batch(1), &request()),
            Err(ProduceError::NotOwned)
        ));
        let mirrored = BatchBuilder::new(4)
            .leader_epoch(1)
            .records(&[(None, None)])
            .build();
        p.append(mirrored).unwrap();
        assert_eq!(p.log().log_end_offset(), 5);
    }

    #[test]
    fn a_topic_switching_out_refuses_writes_as_retriable_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let store = owned_with_records(dir.path());
        let topic = store.topic("a_orders").unwrap();
        assert!(topic.switch_out(true).unwrap());
        drop((topic, store));

        let store = Store::open(dir.path(), LogConfig::default()).unwrap();
        let topic = store.topic("a_orders").unwrap();
        let p = topic.partition(0).unwrap();
        assert!(matches!(
            p.produce(batch(1), &request()),
            Err(ProduceError::Moving)
        ));
        assert!(topic.switch_out(false).unwrap());
        assert_eq!(topic.meta().state, TopicState::Active);
        assert_eq!(p.produce(batch(1), &request()).unwrap().base_offset, 6);
    }
}
