//! Topic config sync: the source's settings that shape a topic's data, kept with its mirror.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::LinkRunner;

/// Configs copied from each source topic. Retention is enforced by the mirror itself, so
/// a mirror keeps no more and no less history than its source would.
pub const SYNCED_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "compression.type",
    // So a failed-over compacted topic is cleaned as its source cleaned it.
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "delete.retention.ms",
    "segment.ms",
];

/// DescribeConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;

impl LinkRunner {
    /// Reads the synced configs of every active mirror topic of this link from the source
    /// and stores the ones that changed.
    pub(super) async fn sync_configs(&mut self) {
        let topics: Vec<String> = self
            .store
            .topics()
            .into_iter()
            .filter(|t| self.fetches(t))
            .map(|t| t.name.clone())
            .collect();
        if topics.is_empty() {
            return;
        }
        let Some(broker) = self.cluster.view.brokers.keys().min().copied() else {
            return;
        };
        let response = match self.describe(broker, &topics).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(link = %self.link.config.name, error = %e, "topic config sync failed");
                if e.is_unreachable() {
                    self.status.set_lost(&e.to_string());
                }
                return;
            }
        };
        for result in response.results {
            let name = result.resource_name.to_string();
            if result.error_code != 0 {
                tracing::warn!(link = %self.link.config.name, topic = %name, code = result.error_code, "source refused DescribeConfigs");
                continue;
            }
            let configs: BTreeMap<String, String> = result
                .configs
                .into_iter()
                .filter(|c| SYNCED_CONFIGS.contains(&c.name.as_str()))
                .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
                .collect();
            self.apply_configs(&name, configs);
        }
    }

    async fn describe(
        &mut self,
        broker: i32,
        topics: &[String],
    ) -> Result<DescribeConfigsResponse, crate::source::SourceError> {
        let client = self.cluster.broker(broker).await?;
        let resources = topics
            .iter()
            .map(|t| {
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(StrBytes::from_string(t.clone()))
                    // Null asks for every config; the synced ones are picked out above.
                    // Some brokers (tansu 0.6) drop the connection on a key list.
                    .with_configuration_keys(None)
            })
            .collect();
        let request = DescribeConfigsRequest::default().with_resources(resources);
        client.send(ApiKey::DescribeConfigs, &request).await
    }

    fn apply_configs(&self, topic: &str, configs: BTreeMap<String, String>) {
        let Some(mirror) = self.store.topic(topic) else {
            return;
        };
        let mut meta = mirror.meta();
        if meta.configs == configs {
            return;
        }
        tracing::info!(link = %self.link.config.name, topic, ?configs, "topic configs synced from the source");
        meta.configs = configs;
        if let Err(e) = mirror.set_meta(meta) {
            tracing::error!(topic, error = %e, "cannot store synced topic configs");
        }
    }
}
