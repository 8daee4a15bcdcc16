//! Consumer-offset sync: committed offsets of the source's groups, copied to this node so
//! that after a failover a group resumes where it had committed on the source.
//!
//! Offsets need no translation because mirrors keep the source's offsets; each is only
//! clamped to the mirror's high watermark, so a group never starts past what the mirror
//! holds. Groups with members on this node are left alone: their own commits win.

use std::collections::BTreeSet;

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, ListGroupsRequest,
    ListGroupsResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::LinkRunner;
use crate::source::SourceError;

/// (topic, partition, offset) as OffsetFetch reports and the coordinator stores them.
type Offsets = Vec<(String, i32, i64)>;

impl LinkRunner {
    /// One sync round over every source group that matches the link's group filter.
    pub(super) async fn sync_group_offsets(&mut self) {
        if self.link.groups.is_empty() {
            return;
        }
        let groups = match self.source_groups().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(link = %self.name(), error = %e, "consumer group listing failed");
                if e.is_unreachable() {
                    self.status.set_lost(&e.to_string());
                }
                return;
            }
        };
        let wanted: Vec<String> = groups
            .into_iter()
            .filter(|g| self.link.groups.matches(g))
            .collect();
        for group in wanted {
            if let Err(e) = self.sync_group(&group).await {
                tracing::warn!(link = %self.name(), group = %group, error = %e, "consumer offset sync failed");
            }
        }
    }

    /// Group ids known to any source broker (each broker lists the groups it coordinates).
    async fn source_groups(&mut self) -> Result<BTreeSet<String>, SourceError> {
        let brokers: Vec<i32> = self.cluster.view.brokers.keys().copied().collect();
        let mut groups = BTreeSet::new();
        for broker in brokers {
            let client = self.cluster.broker(broker).await?;
            let response: ListGroupsResponse = client
                .send(ApiKey::ListGroups, &ListGroupsRequest::default())
                .await?;
            groups.extend(
                response
                    .groups
                    .into_iter()
                    .map(|g| g.group_id.0.to_string()),
            );
        }
        Ok(groups)
    }

    async fn sync_group(&mut self, group: &str) -> Result<(), SourceError> {
        // On a cluster node only the group's coordinator writes its offsets, compared
        // with what etcd holds.
        if self.groups.load(group).await.is_err() {
            return Ok(());
        }
        let committed = self.source_offsets(group).await?;
        let wanted = self.clamp_to_mirrors(committed);
        let current: BTreeSet<_> = self.groups.committed(group).into_iter().collect();
        let changed: Offsets = wanted
            .into_iter()
            .filter(|o| !current.contains(o))
            .collect();
        if changed.is_empty() || self.groups.has_active_members(group) {
            return Ok(());
        }
        let count = changed.len();
        match self.groups.sync_offsets(group, changed).await {
            Ok(()) => {
                tracing::debug!(link = %self.name(), group, partitions = count, "consumer offsets synced")
            }
            Err(e) => {
                tracing::debug!(link = %self.name(), group, error = %e, "consumer offsets not synced")
            }
        }
        Ok(())
    }

    /// The group's committed offsets at its source coordinator.
    async fn source_offsets(&mut self, group: &str) -> Result<Offsets, SourceError> {
        let any = self.cluster.view.brokers.keys().min().copied();
        let Some(any) = any else {
            return Ok(Vec::new());
        };
        let client = self.cluster.broker(any).await?;
        let request =
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
        let found: FindCoordinatorResponse = client.send(ApiKey::FindCoordinator, &request).await?;
        if found.error_code != 0 {
            return Err(SourceError::Broker {
                addr: client.addr().to_string(),
                api: ApiKey::FindCoordinator,
                code: found.error_code,
            });
        }
        let client = self
            .cluster
            .client(&format!("{}:{}", found.host.as_str(), found.port))
            .await?;
        let batched = client.version(ApiKey::OffsetFetch)? >= 8;
        let response: OffsetFetchResponse = client
            .send(ApiKey::OffsetFetch, &offset_fetch(group, batched))
            .await?;
        offsets_of(response, batched).map_err(|code| SourceError::Broker {
            addr: client.addr().to_string(),
            api: ApiKey::OffsetFetch,
            code,
        })
    }

    /// Keeps offsets of this link's active mirrors, each clamped to the mirror's end.
    fn clamp_to_mirrors(&self, offsets: Offsets) -> Offsets {
        offsets
            .into_iter()
            .filter_map(|(topic, partition, offset)| {
                let mirror = self.store.topic(&topic).filter(|m| self.fetches(m))?;
                let high_watermark = mirror.partition(partition)?.log().high_watermark();
                Some((topic, partition, offset.min(high_watermark)))
            })
            .collect()
    }
}

/// OffsetFetch for every partition `group` committed: a null topic list (v2+), in the
/// batched `groups` form from v8 on.
fn offset_fetch(group: &str, batched: bool) -> OffsetFetchRequest {
    let id = GroupId(StrBytes::from_string(group.to_string()));
    if batched {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(id)
            .with_topics(None)])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(id)
            .with_topics(None)
    }
}

/// The committed offsets in a response, or the group's error code.
fn offsets_of(response: OffsetFetchResponse, batched: bool) -> Result<Offsets, i16> {
    let committed = |topic: String, partition: i32, offset: i64, error: i16| {
        (error == 0 && offset >= 0).then_some((topic, partition, offset))
    };
    if !batched {
        if response.error_code != 0 {
            return Err(response.error_code);
        }
        return Ok(response
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.0.to_string();
                t.partitions.into_iter().filter_map(move |p| {
                    committed(
                        topic.clone(),
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                    )
                })
            })
            .collect());
    }
    let mut out = Vec::new();
    for group in response.groups {
        if group.error_code != 0 {
            return Err(group.error_code);
        }
        for t in group.topics {
            let topic = t.name.0.to_string();
            out.extend(t.partitions.into_iter().filter_map(|p| {
                committed(
                    topic.clone(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )
            }));
        }
    }
    Ok(out)
}
