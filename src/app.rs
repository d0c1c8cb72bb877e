//! The registry of apps, by id and by key, with their settings and limits: the static apps of
//! the config file, and [`AppDirectory`], which asks the `[app_store]` database for the rest.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::config::{AppConfig, Config, Limits};
use crate::store::{By, StoreApps};

/// One app as the server uses it.
pub struct App {
    /// REST id.
    pub id: String,
    /// Public key.
    pub key: String,
    secret: String,
    /// Disabled apps refuse connections and REST calls.
    pub enabled: bool,
    /// Whether `client-` events are relayed.
    pub client_events: bool,
    /// Per-app connection cap.
    pub max_connections: Option<usize>,
    /// Whether subscribers get `pusher_internal:subscription_count`.
    pub subscription_count: bool,
    /// Whether signed-in users get watchlist events.
    pub watchlist_events: bool,
    /// Deadline for signing in (authorized connections), if required.
    pub signin_timeout: Option<std::time::Duration>,
    /// Webhook receivers.
    pub webhooks: Vec<crate::config::WebhookConfig>,
    /// REST request rate limit, if configured.
    pub rest_limiter: Option<governor::DefaultDirectRateLimiter>,
    /// Effective limits (global merged with the app's overrides).
    pub limits: Limits,
}

impl App {
    /// Builds an app from its config section and the global limits.
    pub fn from_config(c: &AppConfig, global: &Limits) -> App {
        App {
            id: c.id.clone(),
            key: c.key.clone(),
            secret: c.secret.clone(),
            enabled: c.enabled,
            client_events: c.enable_client_messages,
            max_connections: c.max_connections,
            subscription_count: c.enable_subscription_count,
            watchlist_events: c.enable_watchlist_events,
            signin_timeout: c.signin_timeout.map(std::time::Duration::from_secs),
            webhooks: c.webhooks.clone(),
            rest_limiter: c
                .max_requests_per_second
                .and_then(std::num::NonZeroU32::new)
                .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n))),
            limits: global.merged(&c.limits),
        }
    }

    /// Whether any receiver wants this webhook event type.
    pub fn wants_webhook(&self, event: &str) -> bool {
        self.webhooks
            .iter()
            .any(|w| w.events.is_empty() || w.events.iter().any(|e| e == event))
    }

    /// The signing secret. Never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The answer of a lookup that may ask a database.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The app (possibly disabled).
    Found(Arc<App>),
    /// No such app (or its row is bad, which is logged).
    Unknown,
    /// The app store cannot be reached: WebSocket 4100, REST 503.
    Unavailable,
    /// This node's budget of uncached lookups is spent: WebSocket 4100, REST 503.
    Busy,
}

impl From<Option<Arc<App>>> for Lookup {
    fn from(a: Option<Arc<App>>) -> Lookup {
        a.map_or(Lookup::Unknown, Lookup::Found)
    }
}

/// Looks apps up by id (REST) and by key (WebSocket).
pub trait AppStore: Send + Sync {
    /// The app with this REST id, if known without asking a database (static or cached).
    fn by_id(&self, id: &str) -> Option<Arc<App>>;
    /// The app with this public key, if known without asking a database.
    fn by_key(&self, key: &str) -> Option<Arc<App>>;
    /// The app with this key, asking the app store when it is not known yet.
    fn find_by_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(std::future::ready(self.by_key(key).into()))
    }
    /// The app with this id, asking the app store when it is not known yet.
    fn find_by_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(std::future::ready(self.by_id(id).into()))
    }
    /// The app store, if one is configured.
    fn store(&self) -> Option<&Arc<StoreApps>> {
        None
    }
}

/// The static apps (found first) and, when configured, the app store for every other id and key.
#[derive(Debug)]
pub struct AppDirectory {
    statics: Arc<ReloadableApps>,
    store: Option<Arc<StoreApps>>,
}

impl AppDirectory {
    /// Static apps, and the store if there is one.
    pub fn new(statics: Arc<ReloadableApps>, store: Option<Arc<StoreApps>>) -> AppDirectory {
        AppDirectory { statics, store }
    }
}

impl AppStore for AppDirectory {
    fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.statics
            .by_id(id)
            .or_else(|| self.store.as_ref()?.cached(By::Id, id))
    }

    fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.statics
            .by_key(key)
            .or_else(|| self.store.as_ref()?.cached(By::Key, key))
    }

    fn find_by_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            match (self.statics.by_key(key), &self.store) {
                (Some(app), _) => Lookup::Found(app),
                (None, Some(store)) => store.find(By::Key, key).await,
                (None, None) => Lookup::Unknown,
            }
        })
    }

    fn find_by_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            match (self.statics.by_id(id), &self.store) {
                (Some(app), _) => Lookup::Found(app),
                (None, Some(store)) => store.find(By::Id, id).await,
                (None, None) => Lookup::Unknown,
            }
        })
    }

    fn store(&self) -> Option<&Arc<StoreApps>> {
        self.store.as_ref()
    }
}

/// Apps fixed at startup from the config file.
#[derive(Debug, Default)]
pub struct StaticApps {
    by_id: HashMap<String, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
}

impl StaticApps {
    /// Indexes the config's apps.
    pub fn from_config(config: &Config) -> StaticApps {
        let mut s = StaticApps::default();
        for c in &config.apps {
            let app = Arc::new(App::from_config(c, &config.limits));
            s.by_id.insert(app.id.clone(), app.clone());
            s.by_key.insert(app.key.clone(), app);
        }
        s
    }
}

impl AppStore for StaticApps {
    fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.by_id.get(id).cloned()
    }

    fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.by_key.get(key).cloned()
    }
}

/// Apps that can be replaced at runtime (SIGHUP reload): lookups see the new set at once.
#[derive(Debug, Default)]
pub struct ReloadableApps {
    current: std::sync::RwLock<Arc<StaticApps>>,
}

impl ReloadableApps {
    /// Starts with the config's apps.
    pub fn from_config(config: &Config) -> ReloadableApps {
        ReloadableApps {
            current: std::sync::RwLock::new(Arc::new(StaticApps::from_config(config))),
        }
    }

    fn current(&self) -> Arc<StaticApps> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the apps; returns the ids that are gone.
    pub fn replace(&self, config: &Config) -> Vec<String> {
        let next = Arc::new(StaticApps::from_config(config));
        let mut w = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gone = w
            .by_id
            .keys()
            .filter(|id| !next.by_id.contains_key(*id))
            .cloned()
            .collect();
        *w = next;
        gone
    }
}

impl AppStore for ReloadableApps {
    fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.current().by_id(id)
    }

    fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.current().by_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_replaces_and_reports_removed_apps() {
        let mut c = Config::development();
        let apps = ReloadableApps::from_config(&c);
        assert!(apps.by_id("app-id").is_some());
        c.apps[0].id = "other".into();
        c.apps[0].secret = "new".into();
        assert_eq!(apps.replace(&c), vec!["app-id".to_string()]);
        assert!(apps.by_id("app-id").is_none());
        assert_eq!(
            apps.by_key("app-key").map(|a| a.secret().to_string()),
            Some("new".into())
        );
    }

    #[test]
    fn lookup_by_id_and_key() {
        let apps = StaticApps::from_config(&Config::development());
        assert_eq!(
            apps.by_id("app-id").map(|a| a.key.clone()),
            Some("app-key".into())
        );
        assert_eq!(
            apps.by_key("app-key").map(|a| a.id.clone()),
            Some("app-id".into())
        );
        assert!(apps.by_id("app-key").is_none());
        let app = apps.by_key("app-key").unwrap();
        assert_eq!(app.secret(), "app-secret");
        assert!(!format!("{app:?}").contains("app-secret"));
    }
}
