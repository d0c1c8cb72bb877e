//! The single-node adapter: everything is answered by this node's hub.

use std::sync::Arc;

use super::{Adapter, AdapterError, BoxFuture, Join};
use crate::broadcast::Broadcast;
use crate::hub::{ChannelStats, Hub, JoinRefused, Joined, Left};
use crate::protocol::SocketId;

/// Adapter for one node.
#[derive(Debug, Clone)]
pub struct LocalAdapter {
    hub: Arc<Hub>,
}

impl LocalAdapter {
    /// An adapter over this hub.
    pub fn new(hub: Arc<Hub>) -> Self {
        LocalAdapter { hub }
    }
}

impl Adapter for LocalAdapter {
    fn publish(&self, b: Broadcast) {
        self.hub.app(&b.app).deliver(&b);
    }

    fn subscribe<'a>(&'a self, j: Join<'a>) -> BoxFuture<'a, Result<Joined, JoinRefused>> {
        let r = self
            .hub
            .app(j.app)
            .subscribe(j.channel, j.conn, j.member, j.max_members);
        Box::pin(std::future::ready(r))
    }

    fn unsubscribe<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
        id: SocketId,
        user_id: Option<&'a str>,
    ) -> BoxFuture<'a, Left> {
        let r = self.hub.app(app).unsubscribe(channel, id, user_id);
        Box::pin(std::future::ready(r))
    }

    fn channels<'a>(
        &'a self,
        app: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ChannelStats)>, AdapterError>> {
        Box::pin(std::future::ready(Ok(self.hub.app(app).channels(prefix))))
    }

    fn channel<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelStats, AdapterError>> {
        Box::pin(std::future::ready(Ok(self
            .hub
            .app(app)
            .channel_stats(channel))))
    }

    fn users<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AdapterError>> {
        Box::pin(std::future::ready(Ok(self.hub.app(app).user_ids(channel))))
    }
}
