//! A connection's protocol handling without a socket: feed text frames, read what would be
//! written. For fuzzing the frame dispatch and for tests; the real adapter and hub are used.

use std::sync::Arc;

use tokio::sync::watch;

use super::session::Session;
use crate::adapter::local::LocalAdapter;
use crate::app::{AppStore, StaticApps};
use crate::config::Config;
use crate::hub::Hub;
use crate::outbox::Outbox;
use crate::protocol::SocketId;
use crate::state::{Phases, State};
use crate::webhooks::WebhookSink;

/// One socket-less connection of the config's first app.
pub struct Harness {
    session: Session,
    outbox: Arc<Outbox>,
    // Kept so the state's lifecycle channels stay open.
    _signals: (watch::Sender<bool>, watch::Sender<bool>),
}

impl Harness {
    /// A connection (socket id `1.1`) of the config's first app; `None` without apps.
    pub fn new(config: Config) -> Option<Harness> {
        let hub = Arc::new(Hub::default());
        let apps: Arc<dyn AppStore> = Arc::new(StaticApps::from_config(&config));
        let app = apps.by_id(&config.apps.first()?.id)?;
        let adapter = Arc::new(LocalAdapter::new(hub.clone()));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let (draining_tx, draining) = watch::channel(false);
        let (webhooks, _) = WebhookSink::new();
        let state = Arc::new(State::new(
            1,
            config,
            apps,
            hub,
            adapter,
            webhooks,
            Phases { shutdown, draining },
        ));
        let outbox = Arc::new(Outbox::new(
            SocketId { node: 1, seq: 1 },
            state.config.server.outbox_capacity,
        ));
        let session = Session::new(state, app, outbox.clone());
        Some(Harness {
            session,
            outbox,
            _signals: (shutdown_tx, draining_tx),
        })
    }

    /// Handles one inbound text frame.
    pub async fn feed(&mut self, text: &str) {
        self.session.handle_text(text).await;
    }

    /// Takes the frames queued for the client so far.
    pub fn written(&self) -> Vec<String> {
        std::iter::from_fn(|| self.outbox.pop())
            .map(|f| f.to_string())
            .collect()
    }

    /// Leaves every channel, as a closing connection does.
    pub async fn close(&mut self) {
        self.session.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn feeds_frames_and_reads_answers() {
        let mut h = Harness::new(Config::development()).unwrap();
        h.feed(r#"{"event":"pusher:ping"}"#).await;
        h.feed(r#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#)
            .await;
        h.feed("nonsense").await;
        let out = h.written();
        assert_eq!(out[0], r#"{"event":"pusher:pong","data":"{}"}"#);
        assert!(out[1].contains("subscription_succeeded"));
        // the development app counts subscriptions
        assert_eq!(
            out[2],
            r#"{"event":"pusher_internal:subscription_count","channel":"a","data":"{\"subscription_count\":1}"}"#
        );
        assert!(out[3].contains("pusher:error"));
        h.close().await;
    }
}
