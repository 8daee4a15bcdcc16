//! Where followers reach the other nodes when `[cluster.peer] listener` names a listener
//! other than the first: each node puts that listener's advertised address under
//! `peers/<node id>` on its membership lease, and every node reads them. Without one,
//! followers use the address of `members/<node id>`, the first listener's.

use std::collections::BTreeMap;

use etcd_client::{Client, GetOptions, PutOptions};

use super::coordinator::{Session, SessionError};
use super::Cluster;

impl Session {
    /// Puts this node's peer address on its lease, when it has one.
    pub(super) async fn join_peers(
        &self,
        client: &mut Client,
        lease: i64,
    ) -> Result<(), SessionError> {
        let Some(address) = self.advertised.peer.clone() else {
            return Ok(());
        };
        let key = self.key(&format!("peers/{}", self.cluster.node_id()));
        let put = PutOptions::new().with_lease(lease);
        self.bounded(client.put(key, address, Some(put))).await?;
        Ok(())
    }

    /// Reads the other nodes' peer addresses, when this node follows over a named
    /// listener.
    pub(super) async fn read_peers(&self, client: &mut Client) -> Result<(), SessionError> {
        if self.advertised.peer.is_none() {
            return Ok(());
        }
        let prefix = self.key("peers/");
        let listed = client.get(prefix.clone(), Some(GetOptions::new().with_prefix()));
        let listed = self.bounded(listed).await?;
        let mut addresses = BTreeMap::new();
        for kv in listed.kvs() {
            let id = (kv.key_str().ok()).and_then(|k| k.strip_prefix(&prefix)?.parse::<i32>().ok());
            if let (Some(id), Ok(address)) = (id, kv.value_str()) {
                addresses.insert(id, address.to_string());
            }
        }
        let mut known = (self.cluster.peer_addresses.write()).unwrap_or_else(|p| p.into_inner());
        *known = addresses;
        Ok(())
    }
}

impl Cluster {
    /// Where a follower reaches node `leader`: its peer listener's address when it put
    /// one, else the address the assignment lists for clients.
    pub(super) fn peer_address(&self, leader: i32, listed: Option<&String>) -> Option<String> {
        let known = (self.peer_addresses.read()).unwrap_or_else(|p| p.into_inner());
        known.get(&leader).or(listed).cloned()
    }
}
