//! What a handler knows of one request beyond its body: the node, the listener it came
//! in on, and what the connection's principal was granted. Handlers that check nothing
//! take the `ServerContext` it dereferences to.

use std::ops::Deref;

use crate::authz::{Grants, Operation, Resource};
use crate::errors::Denied;

use super::{Listener, ServerContext};

pub struct RequestContext<'a> {
    pub server: &'a ServerContext,
    pub listener: &'a Listener,
    pub grants: &'a Grants,
}

impl Deref for RequestContext<'_> {
    type Target = ServerContext;

    fn deref(&self) -> &ServerContext {
        self.server
    }
}

impl RequestContext<'_> {
    /// `Ok` when `operation` on `topic` is granted, else TOPIC_AUTHORIZATION_FAILED.
    pub fn topic(&self, operation: Operation, topic: &str) -> Result<(), Denied> {
        match self.grants.allows(operation, Resource::Topic(topic)) {
            true => Ok(()),
            false => Err(Denied::Topic),
        }
    }

    /// `Ok` when `operation` on `group` is granted, else GROUP_AUTHORIZATION_FAILED.
    pub fn group(&self, operation: Operation, group: &str) -> Result<(), Denied> {
        match self.grants.allows(operation, Resource::Group(group)) {
            true => Ok(()),
            false => Err(Denied::Group),
        }
    }

    /// `Ok` when `operation` on the cluster is granted, else CLUSTER_AUTHORIZATION_FAILED.
    pub fn cluster(&self, operation: Operation) -> Result<(), Denied> {
        match self.grants.allows(operation, Resource::Cluster) {
            true => Ok(()),
            false => Err(Denied::Cluster),
        }
    }
}
