//! The single-node adapter: everything is answered by this node's hub.

use std::sync::Arc;

use super::{Adapter, AdapterError, BoxFuture, Claim, Join, SignIn};
use crate::broadcast::Broadcast;
use crate::hub::{ChannelStats, CountUpdate, Hub, JoinRefused, JoinRequest, Joined, Left, Replay};
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

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl Adapter for LocalAdapter {
    fn publish(&self, b: Broadcast) {
        self.hub.app(&b.app).deliver(&b);
    }

    fn subscribe<'a>(&'a self, j: Join<'a>) -> BoxFuture<'a, Result<Joined, JoinRefused>> {
        ready(self.hub.app(j.app).subscribe(JoinRequest {
            channel: j.channel,
            conn: j.conn,
            member: j.member,
            max_members: j.max_members,
            announce: j.announce,
            presence_data: None,
            replay: Replay::Local,
        }))
    }

    fn unsubscribe<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
        id: SocketId,
        user_id: Option<&'a str>,
    ) -> BoxFuture<'a, Left> {
        ready(self.hub.app(app).unsubscribe(channel, id, user_id))
    }

    fn announce_count(&self, app: &str, channel: &str, _count: Option<usize>) {
        if let CountUpdate::Later(wait) = self.hub.app(app).announce_count(channel, None) {
            let hub = self.hub.clone();
            let (app, channel) = (app.to_string(), channel.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                // The interval has passed, so this one goes out.
                let _ = hub.app(&app).announce_count(&channel, None);
            });
        }
    }

    fn sign_in<'a>(&'a self, s: SignIn<'a>) -> BoxFuture<'a, ()> {
        self.hub
            .app(s.app)
            .users()
            .sign_in(s.user, s.conn, s.watchlist, s.watchlist_events);
        ready(())
    }

    fn sign_out<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
        id: SocketId,
        watchlist: &'a [String],
    ) -> BoxFuture<'a, ()> {
        self.hub.app(app).users().sign_out(user, id, watchlist);
        ready(())
    }

    fn terminate_user<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.hub.app(app).users().terminate(user);
        ready(Ok(()))
    }

    fn cached<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, u64)>, AdapterError>> {
        ready(Ok(self.hub.app(app).cached(channel)))
    }

    fn claim_webhook<'a>(
        &'a self,
        app: &'a str,
        claim: Claim<'a>,
        _queued: &'a [String],
    ) -> BoxFuture<'a, bool> {
        let hub = self.hub.app(app);
        // Read channel state first: the announced lock is never held while taking a shard lock.
        let r = match claim {
            Claim::Occupied(c) => hub.announced().occupied(c),
            Claim::Vacated(c) => {
                let empty = !hub.channel_stats(c).occupied();
                hub.announced().vacated(c, empty)
            }
            Claim::MemberAdded(c, u) => hub.announced().member_added(c, u),
            Claim::MemberRemoved(c, u) => {
                let gone = !hub.has_member(c, u);
                hub.announced().member_removed(c, u, gone)
            }
            Claim::CacheMiss(c) => hub.announced().cache_miss(c),
        };
        ready(r)
    }

    fn channels<'a>(
        &'a self,
        app: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ChannelStats)>, AdapterError>> {
        ready(Ok(self.hub.app(app).channels(prefix)))
    }

    fn channel<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelStats, AdapterError>> {
        ready(Ok(self.hub.app(app).channel_stats(channel)))
    }

    fn users<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AdapterError>> {
        ready(Ok(self.hub.app(app).user_ids(channel)))
    }

    fn connections<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<usize, AdapterError>> {
        ready(Ok(self.hub.app(app).connection_count()))
    }
}
