//! One connection's protocol state: its subscriptions, signed-in user and rate limit, and the
//! handling of every message it sends.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::adapter::{Join, SignIn};
use crate::app::App;
use crate::auth;
use crate::broadcast::Broadcast;
use crate::hub::JoinRefused;
use crate::outbox::Outbox;
use crate::protocol::channel::{self, ChannelKind, SERVER_TO_USER_PREFIX};
use crate::protocol::presence::{self, Member, PresenceLimits, UserData};
use crate::protocol::{outbound, Inbound, ProtocolError, SocketId};
use crate::state::State;
use crate::webhooks::Emitted;

use super::subscriptions::{Subscription, Subscriptions};

/// Per-connection protocol state.
pub struct Session {
    state: Arc<State>,
    app: Arc<App>,
    outbox: Arc<Outbox>,
    subscriptions: Subscriptions,
    user: Option<Box<UserData>>,
    /// Signed in, or subscribed to a private/presence channel (authorized connections).
    authorized: bool,
    /// Client-event rate limiter, created on the first client event (boxed: most connections
    /// never send one, and this struct lives in every connection's task).
    limiter: Option<Box<DefaultDirectRateLimiter>>,
}

impl Session {
    /// State for a freshly established connection.
    pub fn new(state: Arc<State>, app: Arc<App>, outbox: Arc<Outbox>) -> Session {
        Session {
            state,
            app,
            outbox,
            subscriptions: Subscriptions::default(),
            user: None,
            authorized: false,
            limiter: None,
        }
    }

    fn id(&self) -> SocketId {
        self.outbox.id
    }

    /// `socket_id` as text, for signatures (built when needed: idle connections do not carry it).
    fn socket_id(&self) -> String {
        self.outbox.id.to_string()
    }

    fn reply(&self, frame: String) {
        self.outbox.push(frame.into());
    }

    /// How long the app gives a connection to sign in, if it requires it.
    pub fn signin_timeout(&self) -> Option<std::time::Duration> {
        self.app.signin_timeout
    }

    /// Whether the connection has signed in or subscribed to a private or presence channel.
    pub fn is_authorized(&self) -> bool {
        self.authorized
    }

    /// Handles one text frame; protocol errors are answered with `pusher:error`.
    pub async fn handle_text(&mut self, text: &str) {
        // Pick up a reloaded configuration (new secret, limits, settings) for this app.
        if let Some(current) = self.state.apps.by_id(&self.app.id) {
            if !Arc::ptr_eq(&current, &self.app) {
                self.app = current;
            }
        }
        let (result, channel) = match crate::protocol::inbound::parse(text) {
            Ok(msg) => {
                // Subscription errors name their channel so pusher-js routes them to it.
                let channel = match &msg {
                    Inbound::Subscribe { channel, .. } => Some(channel.clone()),
                    _ => None,
                };
                (self.handle(msg).await, channel)
            }
            Err(e) => (Err(e), None),
        };
        if let Err(e) = result {
            self.reject(&e, channel.as_deref());
        }
    }

    fn reject(&self, e: &ProtocolError, channel: Option<&str>) {
        tracing::debug!(app = %self.app.id, socket_id = %self.id(), error = %e.log_message(), "message rejected");
        let channel = e.channel().or(channel.filter(|c| !c.is_empty()));
        self.state.dashboard.emit(&self.app.id, "error", |d| {
            d.channel = channel.map(str::to_string);
            d.socket_id = Some(self.socket_id());
            d.code = e.code();
            d.detail = Some(e.log_message());
        });
        self.reply(outbound::error(e.code(), &e.message(), channel));
    }

    async fn handle(&mut self, msg: Inbound) -> Result<(), ProtocolError> {
        match msg {
            Inbound::Ping => {
                self.reply(outbound::pong());
                Ok(())
            }
            Inbound::Pong => Ok(()),
            Inbound::Subscribe {
                channel,
                auth,
                channel_data,
            } => self.subscribe(channel, auth, channel_data).await,
            Inbound::Unsubscribe { channel } => {
                self.unsubscribe(&channel).await;
                Ok(())
            }
            Inbound::Signin { auth, user_data } => self.signin(&auth, user_data).await,
            Inbound::ClientEvent {
                event,
                channel,
                data,
            } => self.client_event(event, channel, data),
        }
    }

    async fn subscribe(
        &mut self,
        name: String,
        auth: Option<String>,
        channel_data: Option<String>,
    ) -> Result<(), ProtocolError> {
        let limits = self.app.limits;
        let ty = channel::validate(&name, limits.max_channel_name_len)
            .map_err(|e| ProtocolError::InvalidChannel(name.clone(), e))?;
        if let Some(sub) = self.subscriptions.get_mut(&name) {
            if !sub.implicit {
                return Err(ProtocolError::ExistingSubscription(name));
            }
            // The user channel joined at sign-in: confirm it now.
            sub.implicit = false;
            self.reply(outbound::subscription_succeeded(&name, "{}"));
            return Ok(());
        }
        let max = limits.max_channels_per_connection;
        if max > 0 && self.subscriptions.len() >= max {
            return Err(ProtocolError::TooManyChannels(max));
        }
        let auth = auth.filter(|a| !a.is_empty());
        let member = match ty.kind {
            ChannelKind::Public => None,
            ChannelKind::Private | ChannelKind::Encrypted => {
                let auth = auth.ok_or_else(|| ProtocolError::AuthRequired(name.clone()))?;
                self.verify(&auth, &auth::channel_string(&self.socket_id(), &name))?;
                None
            }
            ChannelKind::Presence => {
                let auth = auth.ok_or_else(|| ProtocolError::AuthRequired(name.clone()))?;
                Some(self.presence_member(&name, &auth, channel_data.as_deref())?)
            }
            // The user's own channel is joined at sign-in (handled above); anything else is not theirs.
            ChannelKind::ServerToUser => return Err(ProtocolError::ServerToUserDenied(name)),
        };
        let join = Join {
            app: &self.app.id,
            channel: &name,
            conn: &self.outbox,
            member: member.as_ref(),
            max_members: limits.max_presence_members,
            announce: true,
        };
        let joined = self
            .state
            .adapter
            .subscribe(join)
            .await
            .map_err(|e| match e {
                JoinRefused::PresenceFull => ProtocolError::PresenceFull(name.clone()),
            })?;
        if let (true, false, Some(m)) = (joined.member_added, joined.member_announced, &member) {
            self.broadcast_internal(
                &name,
                "pusher_internal:member_added",
                presence::member_added_data(m),
            );
        }
        self.authorized |= ty.needs_auth();
        self.announce_count(&name, joined.count);
        self.state.dashboard.emit(&self.app.id, "subscribed", |e| {
            e.channel = Some(name.clone());
            e.socket_id = Some(self.socket_id());
        });
        if joined.occupied {
            self.webhook(Emitted::Occupied(name.clone()));
        }
        if let (true, Some(m)) = (joined.member_added, &member) {
            self.webhook(Emitted::MemberAdded(name.clone(), m.user_id.clone()));
        }
        if joined.cache_miss {
            self.webhook(Emitted::CacheMiss(name.clone()));
        }
        if !ty.is_presence() {
            self.webhook(Emitted::SubscriptionCount(name.clone()));
        }
        let user_id = member.map(|m| m.user_id);
        self.subscriptions.insert(
            name,
            Subscription {
                user_id,
                implicit: false,
            },
        );
        Ok(())
    }

    fn announce_count(&self, name: &str, count: Option<usize>) {
        let kind = channel::classify(name).kind;
        if self.app.subscription_count
            && !matches!(kind, ChannelKind::Presence | ChannelKind::ServerToUser)
        {
            self.state.adapter.announce_count(&self.app.id, name, count);
        }
    }

    fn presence_member(
        &self,
        name: &str,
        auth: &str,
        channel_data: Option<&str>,
    ) -> Result<Member, ProtocolError> {
        let limits = PresenceLimits {
            max_user_id_len: self.app.limits.max_presence_user_id_len,
            max_user_info_bytes: self.app.limits.max_presence_user_info_bytes,
        };
        match (channel_data, &self.user) {
            (Some(data), _) => {
                self.verify(auth, &auth::presence_string(&self.socket_id(), name, data))?;
                presence::parse_channel_data(data, limits)
                    .map_err(ProtocolError::InvalidChannelData)
            }
            (None, Some(user)) => {
                self.verify(auth, &auth::channel_string(&self.socket_id(), name))?;
                Ok(Member {
                    user_id: user.id.clone(),
                    user_info: user.info.clone(),
                })
            }
            (None, None) => Err(ProtocolError::InvalidChannelData(
                "channel_data is required unless the connection is signed in".into(),
            )),
        }
    }

    fn verify(&self, auth: &str, signed: &str) -> Result<(), ProtocolError> {
        auth::verify_auth(&self.app.key, self.app.secret(), auth, signed)
    }

    /// Unsubscribes from one channel (no reply; unknown channels are ignored). The user's own
    /// `#server-to-user-` channel stays joined while signed in.
    pub async fn unsubscribe(&mut self, name: &str) {
        if let Some(sub) = self.subscriptions.get_mut(name) {
            if name.starts_with(SERVER_TO_USER_PREFIX) && self.user.is_some() {
                sub.implicit = true;
                return;
            }
        }
        self.leave(name).await;
    }

    async fn leave(&mut self, name: &str) {
        let Some(sub) = self.subscriptions.remove(name) else {
            return;
        };
        let left = self
            .state
            .adapter
            .unsubscribe(&self.app.id, name, self.id(), sub.user_id.as_deref())
            .await;
        if let Some(uid) = left.member_removed {
            if !left.member_announced {
                self.broadcast_internal(
                    name,
                    "pusher_internal:member_removed",
                    presence::member_removed_data(&uid),
                );
            }
            self.webhook(Emitted::MemberRemoved(name.to_string(), uid));
        }
        if left.was_subscribed && !left.vacated {
            self.announce_count(name, left.count);
        }
        self.state
            .dashboard
            .emit(&self.app.id, "unsubscribed", |e| {
                e.channel = Some(name.to_string());
                e.socket_id = Some(self.socket_id());
            });
        if left.vacated {
            self.webhook(Emitted::Vacated(name.to_string()));
        }
        if left.was_subscribed && !channel::classify(name).is_presence() {
            self.webhook(Emitted::SubscriptionCount(name.to_string()));
        }
    }

    /// Records a webhook event (nothing for `#server-to-user-` channels or unwanted types).
    fn webhook(&self, event: Emitted) {
        if !event.channel().starts_with(SERVER_TO_USER_PREFIX) {
            self.state.webhooks.emit(&self.app, event);
        }
    }

    /// Leaves everything and signs out (the connection is closing).
    pub async fn close(&mut self) {
        let names = self.subscriptions.names();
        for name in names {
            self.leave(&name).await;
        }
        if let Some(user) = self.user.take() {
            let watchlist = if self.app.watchlist_events {
                user.watchlist.as_slice()
            } else {
                &[]
            };
            self.state
                .adapter
                .sign_out(&self.app.id, &user.id, self.id(), watchlist)
                .await;
        }
    }

    fn broadcast_internal(&self, channel: &str, event: &str, data: String) {
        self.state.adapter.publish(Broadcast {
            app: self.app.id.clone(),
            channel: channel.to_string(),
            event: event.to_string(),
            data,
            except: Some(self.id()),
            user_id: None,
            cache_ttl: None,
        });
    }

    async fn signin(&mut self, auth: &str, raw: String) -> Result<(), ProtocolError> {
        self.verify(auth, &auth::signin_string(&self.socket_id(), &raw))?;
        let limits = &self.app.limits;
        let user = presence::parse_user_data(
            &raw,
            limits.max_presence_user_id_len,
            limits.max_watchlist_size,
        )
        .map_err(ProtocolError::InvalidUserData)?;
        if let Some(current) = &self.user {
            if current.id != user.id {
                return Err(ProtocolError::InvalidUserData(format!(
                    "connection is already signed in as a different user ({})",
                    current.id
                )));
            }
            self.reply(outbound::signin_success(&raw));
            return Ok(());
        }
        self.authorized = true;
        // Join the user's own channel now, so `sendToUser` reaches every signed-in socket
        // whether or not the client library subscribes to it explicitly. The success goes out
        // once the join is done (the reply may be written at once): a `sendToUser` the
        // client's backend makes on seeing it must reach this socket, also through another
        // node.
        let own = format!("{SERVER_TO_USER_PREFIX}{}", user.id);
        let join = Join {
            app: &self.app.id,
            channel: &own,
            conn: &self.outbox,
            member: None,
            max_members: 0,
            announce: false,
        };
        if self.state.adapter.subscribe(join).await.is_ok() {
            self.subscriptions.insert(
                own,
                Subscription {
                    user_id: None,
                    implicit: true,
                },
            );
        }
        self.reply(outbound::signin_success(&raw));
        let watchlist_events = self.app.watchlist_events;
        let sign_in = SignIn {
            app: &self.app.id,
            user: &user.id,
            conn: &self.outbox,
            watchlist: if watchlist_events {
                &user.watchlist
            } else {
                &[]
            },
            watchlist_events,
        };
        self.state.adapter.sign_in(sign_in).await;
        if watchlist_events && user.watchlist_truncated {
            self.reject(
                &ProtocolError::WatchlistTruncated(limits.max_watchlist_size),
                None,
            );
        }
        self.user = Some(Box::new(user));
        Ok(())
    }

    fn client_event(
        &mut self,
        event: String,
        channel: String,
        data: String,
    ) -> Result<(), ProtocolError> {
        if !self.app.client_events {
            return Err(ProtocolError::ClientEventsDisabled(channel));
        }
        if !channel::classify(&channel).allows_client_events() {
            return Err(ProtocolError::ClientEventNotAllowed(channel));
        }
        let Some(sub) = self.subscriptions.get(&channel) else {
            return Err(ProtocolError::NotSubscribed(channel));
        };
        let limits = &self.app.limits;
        if event.chars().count() > limits.max_event_name_len {
            return Err(ProtocolError::ClientEventTooLarge("event name is too long"));
        }
        if data.len() > limits.max_event_data_bytes {
            return Err(ProtocolError::ClientEventTooLarge("data is too large"));
        }
        let user_id = sub.user_id.clone();
        let per_second = limits.client_events_per_second;
        let limiter = self.limiter.get_or_insert_with(|| {
            let n = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
            Box::new(RateLimiter::direct(Quota::per_second(n)))
        });
        if limiter.check().is_err() {
            return Err(ProtocolError::RateLimited);
        }
        if self.app.wants_webhook("client_event") {
            self.webhook(Emitted::ClientEvent {
                channel: channel.clone(),
                event: event.clone(),
                data: data.clone(),
                socket_id: self.socket_id(),
                user_id: user_id.clone(),
            });
        }
        self.state
            .metrics
            .broadcasts_client
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state
            .metrics
            .app(&self.app.id)
            .client_events
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state
            .dashboard
            .emit(&self.app.id, "client_event", |e| {
                e.channel = Some(channel.clone());
                e.event = Some(event.clone());
                e.socket_id = Some(self.socket_id());
                e.detail = Some(data.clone());
            });
        self.state.adapter.publish(Broadcast {
            app: self.app.id.clone(),
            channel,
            event,
            data,
            except: Some(self.id()),
            user_id,
            cache_ttl: None,
        });
        Ok(())
    }
}
