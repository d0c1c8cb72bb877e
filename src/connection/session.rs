//! One connection's protocol state: its subscriptions, signed-in user and rate limit, and the
//! handling of every message it sends.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;

use crate::adapter::Join;
use crate::app::App;
use crate::auth;
use crate::broadcast::Broadcast;
use crate::hub::JoinRefused;
use crate::outbox::Outbox;
use crate::protocol::channel::{self, ChannelKind};
use crate::protocol::presence::{self, Member, PresenceLimits};
use crate::protocol::{outbound, Inbound, ProtocolError, SocketId};
use crate::state::State;

/// A user the connection signed in as.
#[derive(Debug, Clone)]
struct User {
    id: String,
    info: Option<Value>,
}

/// Per-connection protocol state.
pub struct Session {
    state: Arc<State>,
    app: Arc<App>,
    outbox: Arc<Outbox>,
    /// `socket_id` as text, for signatures.
    socket_id: String,
    /// Subscribed channels → the presence user id used there (presence channels only).
    subscriptions: HashMap<String, Option<String>>,
    user: Option<User>,
    /// Client-event rate limiter, created on the first client event.
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Session {
    /// State for a freshly established connection.
    pub fn new(state: Arc<State>, app: Arc<App>, outbox: Arc<Outbox>) -> Session {
        Session {
            socket_id: outbox.id.to_string(),
            state,
            app,
            outbox,
            subscriptions: HashMap::new(),
            user: None,
            limiter: None,
        }
    }

    fn id(&self) -> SocketId {
        self.outbox.id
    }

    fn reply(&self, frame: String) {
        self.outbox.push(frame.into());
    }

    /// Handles one text frame; protocol errors are answered with `pusher:error`.
    pub async fn handle_text(&mut self, text: &str) {
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
            tracing::debug!(app = %self.app.id, socket_id = %self.socket_id, error = %e.message(), "message rejected");
            let channel = e.channel().or(channel.as_deref().filter(|c| !c.is_empty()));
            self.reply(outbound::error(e.code(), &e.message(), channel));
        }
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
            Inbound::Signin { auth, user_data } => self.signin(&auth, user_data),
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
        if self.subscriptions.contains_key(&name) {
            return Err(ProtocolError::ExistingSubscription(name));
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
                self.verify(&auth, &auth::channel_string(&self.socket_id, &name))?;
                None
            }
            ChannelKind::Presence => {
                let auth = auth.ok_or_else(|| ProtocolError::AuthRequired(name.clone()))?;
                Some(self.presence_member(&name, &auth, channel_data.as_deref())?)
            }
            ChannelKind::ServerToUser => {
                let own = self.user.as_ref().map(|u| u.id.as_str());
                if own.is_none() || own != channel::server_to_user_id(&name) {
                    return Err(ProtocolError::ServerToUserDenied(name));
                }
                None
            }
        };
        let join = Join {
            app: &self.app.id,
            channel: &name,
            conn: &self.outbox,
            member: member.as_ref(),
            max_members: limits.max_presence_members,
        };
        let joined = self
            .state
            .adapter
            .subscribe(join)
            .await
            .map_err(|e| match e {
                JoinRefused::PresenceFull => ProtocolError::PresenceFull(name.clone()),
            })?;
        if let (true, Some(m)) = (joined.member_added, &member) {
            self.broadcast_internal(
                &name,
                "pusher_internal:member_added",
                presence::member_added_data(m),
            );
        }
        self.subscriptions.insert(name, member.map(|m| m.user_id));
        Ok(())
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
                self.verify(auth, &auth::presence_string(&self.socket_id, name, data))?;
                presence::parse_channel_data(data, limits)
                    .map_err(ProtocolError::InvalidChannelData)
            }
            (None, Some(user)) => {
                self.verify(auth, &auth::channel_string(&self.socket_id, name))?;
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

    /// Unsubscribes from one channel (no reply; unknown channels are ignored).
    pub async fn unsubscribe(&mut self, name: &str) {
        let Some(user_id) = self.subscriptions.remove(name) else {
            return;
        };
        let left = self
            .state
            .adapter
            .unsubscribe(&self.app.id, name, self.id(), user_id.as_deref())
            .await;
        if let Some(uid) = left.member_removed {
            self.broadcast_internal(
                name,
                "pusher_internal:member_removed",
                presence::member_removed_data(&uid),
            );
        }
    }

    /// Unsubscribes from everything (the connection is closing).
    pub async fn unsubscribe_all(&mut self) {
        let names: Vec<String> = self.subscriptions.keys().cloned().collect();
        for name in names {
            self.unsubscribe(&name).await;
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
        });
    }

    fn signin(&mut self, auth: &str, user_data: String) -> Result<(), ProtocolError> {
        self.verify(auth, &auth::signin_string(&self.socket_id, &user_data))?;
        let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(&user_data) else {
            return Err(ProtocolError::InvalidUserData(
                "user_data must be a JSON object".into(),
            ));
        };
        let id = match obj.remove("id") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                return Err(ProtocolError::InvalidUserData(
                    "user_data.id must be a non-empty string".into(),
                ))
            }
        };
        if id.chars().count() > self.app.limits.max_presence_user_id_len {
            return Err(ProtocolError::InvalidUserData(
                "user_data.id is too long".into(),
            ));
        }
        if let Some(current) = &self.user {
            if current.id != id {
                return Err(ProtocolError::InvalidUserData(format!(
                    "connection is already signed in as a different user ({})",
                    current.id
                )));
            }
        }
        self.user = Some(User {
            id,
            info: obj.remove("user_info"),
        });
        self.reply(outbound::signin_success(&user_data));
        Ok(())
    }

    fn client_event(
        &mut self,
        event: String,
        channel: String,
        data: Value,
    ) -> Result<(), ProtocolError> {
        if !self.app.client_events {
            return Err(ProtocolError::ClientEventsDisabled);
        }
        if !channel::classify(&channel).allows_client_events() {
            return Err(ProtocolError::ClientEventNotAllowed(channel));
        }
        let Some(user_id) = self.subscriptions.get(&channel) else {
            return Err(ProtocolError::NotSubscribed(channel));
        };
        let limits = &self.app.limits;
        if event.chars().count() > limits.max_event_name_len {
            return Err(ProtocolError::ClientEventTooLarge("event name is too long"));
        }
        let data = match data {
            Value::String(s) => s,
            other => other.to_string(),
        };
        if data.len() > limits.max_event_data_bytes {
            return Err(ProtocolError::ClientEventTooLarge("data is too large"));
        }
        let user_id = user_id.clone();
        let per_second = limits.client_events_per_second;
        let limiter = self.limiter.get_or_insert_with(|| {
            let n = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(n))
        });
        if limiter.check().is_err() {
            return Err(ProtocolError::RateLimited);
        }
        self.state.adapter.publish(Broadcast {
            app: self.app.id.clone(),
            channel,
            event,
            data,
            except: Some(self.id()),
            user_id,
        });
        Ok(())
    }
}
