//! Apps from PostgreSQL or MySQL (`[app_store]`): lookups by key and id with a positive and a
//! shorter negative cache per node, one query per id or key however many ask at once, a
//! per-node budget for uncached lookups, and a refresh of every cached app once per cache
//! period that applies changed, disabled and removed rows to open connections.

pub mod db;
pub mod row;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use tokio::sync::{watch, OnceCell};

use crate::app::{App, AppStore, Lookup, ReloadableApps};
use crate::config::{AppConfig, AppStoreConfig, Limits};
use crate::hub::Hub;
use crate::protocol::codes::CloseReason;
pub use db::{valid_table_name, By, Db, DbError};

/// After a failed query, uncached lookups answer "unavailable" at once for this long instead
/// of each waiting for the timeout; the background probe notices the recovery.
const FAST_FAIL: Duration = Duration::from_secs(1);

/// What the store counted, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Queries sent to the database (lookups, refreshes, probes).
    pub queries: AtomicU64,
    /// Queries that failed or timed out.
    pub errors: AtomicU64,
    /// Lookups answered from the positive cache.
    pub hits: AtomicU64,
    /// Lookups answered "unknown" from the negative cache.
    pub negative_hits: AtomicU64,
    /// Lookups refused because the per-node budget of uncached lookups was spent.
    pub over_budget: AtomicU64,
    /// Rows refused as bad (logged with the reason).
    pub bad_rows: AtomicU64,
}

#[derive(Default)]
struct Cache {
    /// The app and the settings it was built from (an unchanged row keeps its `App`, and with
    /// it its REST rate limiter's state).
    by_id: HashMap<String, (AppConfig, Arc<App>)>,
    key_to_id: HashMap<String, String>,
    /// Unknown ids and keys, until when they count as unknown.
    unknown: HashMap<(By, String), Instant>,
}

type Flight = Arc<OnceCell<Lookup>>;

/// The database-backed part of the app registry on one node.
pub struct StoreApps {
    db: Db,
    hub: Arc<Hub>,
    statics: Arc<ReloadableApps>,
    limits: Limits,
    negative_ttl: Duration,
    refresh_every: Duration,
    /// Read on every lookup and every inbound frame of a store app's connection; written on
    /// misses and refreshes.
    cache: RwLock<Cache>,
    flights: Mutex<HashMap<(By, String), Flight>>,
    budget: governor::DefaultDirectRateLimiter,
    up: AtomicBool,
    failed_at: Mutex<Option<Instant>>,
    /// Counters for `/metrics`.
    pub stats: StoreStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

impl StoreApps {
    /// Opens the (lazy) pool; nothing is queried yet.
    pub fn new(
        c: &AppStoreConfig,
        limits: Limits,
        hub: Arc<Hub>,
        statics: Arc<ReloadableApps>,
    ) -> Result<StoreApps, DbError> {
        let per_second =
            std::num::NonZeroU32::new(c.lookups_per_second).unwrap_or(std::num::NonZeroU32::MIN);
        Ok(StoreApps {
            db: Db::connect_lazy(c)?,
            hub,
            statics,
            limits,
            negative_ttl: Duration::from_secs(c.negative_ttl_seconds),
            refresh_every: Duration::from_secs(c.cache_ttl_seconds),
            cache: RwLock::default(),
            flights: Mutex::default(),
            budget: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            up: AtomicBool::new(true),
            failed_at: Mutex::new(None),
            stats: StoreStats::default(),
        })
    }

    /// Whether the last query succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Apps cached on this node.
    pub fn cached_count(&self) -> usize {
        read(&self.cache).by_id.len()
    }

    /// The cached app with this id or key, without asking the database.
    pub fn cached(&self, by: By, value: &str) -> Option<Arc<App>> {
        let c = read(&self.cache);
        match by {
            By::Id => c.by_id.get(value).map(|(_, a)| a.clone()),
            By::Key => c
                .key_to_id
                .get(value)
                .and_then(|id| c.by_id.get(id))
                .map(|(_, a)| a.clone()),
        }
    }

    fn succeeded(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("app store reachable again");
        }
    }

    fn failed(&self, e: &DbError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.failed_at) = Some(Instant::now());
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(error = %e, "app store unreachable: cached apps keep working, others are refused");
        }
    }

    /// The app with this id or key: cached, else asked of the database once however many
    /// callers ask at the same time.
    pub async fn find(&self, by: By, value: &str) -> Lookup {
        if let Some(app) = self.cached(by, value) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Found(app);
        }
        let flight = {
            // Expired entries are overwritten by the query below and pruned by the refresh.
            let now = Instant::now();
            let known_unknown = read(&self.cache)
                .unknown
                .get(&(by, value.to_string()))
                .is_some_and(|until| *until > now);
            if known_unknown {
                self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Unknown;
            }
            lock(&self.flights)
                .entry((by, value.to_string()))
                .or_default()
                .clone()
        };
        let result = flight.get_or_init(|| self.query(by, value)).await.clone();
        let mut flights = lock(&self.flights);
        if flights
            .get(&(by, value.to_string()))
            .is_some_and(|f| Arc::ptr_eq(f, &flight))
        {
            flights.remove(&(by, value.to_string()));
        }
        result
    }

    /// A row as an app, refused if bad or if its id is a static app's (apps share state by id,
    /// so a row may not join a static app's channels).
    fn map_row(&self, r: &row::Row) -> Result<AppConfig, row::BadRow> {
        let config = row::app(r, &self.limits)?;
        if self.statics.by_id(&config.id).is_some() {
            return Err(row::BadRow(format!(
                "id {:?} is used by a static [[apps]] entry",
                config.id
            )));
        }
        Ok(config)
    }

    /// One database lookup, its answer cached.
    async fn query(&self, by: By, value: &str) -> Lookup {
        let recently_failed = lock(&self.failed_at).is_some_and(|t| t.elapsed() < FAST_FAIL);
        if !self.is_up() && recently_failed {
            return Lookup::Unavailable;
        }
        if self.budget.check().is_err() {
            self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
            return Lookup::Busy;
        }
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        let row = match self.db.find(by, value).await {
            Ok(r) => {
                self.succeeded();
                r
            }
            Err(e) => {
                self.failed(&e);
                return Lookup::Unavailable;
            }
        };
        let app = row.map(|r| self.map_row(&r));
        let mut c = write(&self.cache);
        match app {
            Some(Ok(config)) => {
                let app = Arc::new(App::from_config(&config, &self.limits));
                c.key_to_id.insert(app.key.clone(), app.id.clone());
                c.by_id.insert(app.id.clone(), (config, app.clone()));
                // Back after a removal: its new sockets must not be closed at once.
                self.hub.app(&app.id).set_closing(None);
                Lookup::Found(app)
            }
            Some(Err(reason)) => {
                self.stats.bad_rows.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?by, value, %reason, "app row refused");
                c.unknown
                    .insert((by, value.to_string()), Instant::now() + self.negative_ttl);
                Lookup::Unknown
            }
            None => {
                c.unknown
                    .insert((by, value.to_string()), Instant::now() + self.negative_ttl);
                Lookup::Unknown
            }
        }
    }

    /// Reads every cached app again in one query (per 500) and applies what changed: new
    /// settings and secrets are used from the next message, disabled apps' sockets close with
    /// 4003, removed (or now bad) apps' with 4001. A failed read keeps the cache as it is.
    pub async fn refresh(&self) {
        let hub = &self.hub;
        let ids: Vec<String> = read(&self.cache).by_id.keys().cloned().collect();
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        let rows = if ids.is_empty() {
            self.db.ping().await.map(|()| Vec::new())
        } else {
            self.db.find_ids(&ids).await
        };
        let rows = match rows {
            Ok(r) => {
                self.succeeded();
                r
            }
            Err(e) => return self.failed(&e),
        };
        let mut fresh: HashMap<String, Result<AppConfig, row::BadRow>> = HashMap::new();
        for r in &rows {
            match self.map_row(r) {
                Ok(config) => {
                    fresh.insert(config.id.clone(), Ok(config));
                }
                Err(reason) => {
                    let id = r
                        .values
                        .get("id")
                        .map(|v| v.to_string().trim_matches('"').to_string());
                    if let Some(id) = id {
                        fresh.insert(id, Err(reason));
                    }
                }
            }
        }
        let mut c = write(&self.cache);
        c.unknown.retain(|_, until| *until > Instant::now());
        for id in ids {
            let Some((old_config, old)) = c.by_id.get(&id).cloned() else {
                continue;
            };
            match fresh.remove(&id) {
                Some(Ok(config)) if config == old_config => {}
                Some(Ok(config)) => {
                    let app = Arc::new(App::from_config(&config, &self.limits));
                    if old.key != app.key {
                        c.key_to_id.remove(&old.key);
                    }
                    c.key_to_id.insert(app.key.clone(), id.clone());
                    let closing = if app.enabled {
                        None
                    } else {
                        Some(CloseReason::AppDisabled)
                    };
                    if old.enabled && !app.enabled {
                        tracing::info!(app = %id, "app disabled in the store: closing its sockets");
                    }
                    hub.app(&id).set_closing(closing);
                    c.by_id.insert(id, (config, app));
                }
                gone => {
                    match gone {
                        Some(Err(reason)) => {
                            self.stats.bad_rows.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(app = %id, %reason, "app row refused: closing its sockets");
                        }
                        _ => {
                            tracing::info!(app = %id, "app removed from the store: closing its sockets")
                        }
                    }
                    c.by_id.remove(&id);
                    c.key_to_id.remove(&old.key);
                    hub.app(&id).set_closing(Some(CloseReason::AppNotFound));
                }
            }
        }
    }

    /// Refreshes every cache period (every second while the store is unreachable, so
    /// readiness comes back soon) until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // At once: readiness and the metrics say whether the store is reachable from the start.
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = crate::state::shutdown_started(&mut shutdown) => return,
            }
            self.refresh().await;
            let wait = if self.is_up() {
                self.refresh_every
            } else {
                FAST_FAIL
            };
            next = tokio::time::Instant::now() + wait;
        }
    }
}

impl std::fmt::Debug for StoreApps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreApps")
            .field("up", &self.is_up())
            .field("cached", &self.cached_count())
            .finish_non_exhaustive()
    }
}
