//! Test databases for the app store: a fresh database with a random name on the real PostgreSQL
//! (127.0.0.1:5432, user postgres, trust) or MariaDB (127.0.0.1:3306, root, no password),
//! dropped when the guard goes (also when the test fails), and a TCP relay the test can cut.
//! A server that does not answer fails the test with a message (`tests/db-servers` starts them).

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use herald::config::{AppStoreConfig, StoreDriver};
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pg,
    Maria,
}

impl Kind {
    pub fn port(self) -> u16 {
        match self {
            Kind::Pg => 5432,
            Kind::Maria => 3306,
        }
    }

    fn url(self, port: u16, db: &str) -> String {
        match self {
            Kind::Pg => format!("postgres://postgres@127.0.0.1:{port}/{db}"),
            Kind::Maria => format!("mysql://root@127.0.0.1:{port}/{db}"),
        }
    }

    fn admin_db(self) -> &'static str {
        match self {
            Kind::Pg => "postgres",
            Kind::Maria => "mysql",
        }
    }
}

/// A database of this test's own.
pub struct TestDb {
    pub kind: Kind,
    pub name: String,
}

async fn admin_exec(kind: Kind, sql: &str) -> Result<(), String> {
    let url = kind.url(kind.port(), kind.admin_db());
    match kind {
        Kind::Pg => {
            let mut c = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        }
        Kind::Maria => {
            let mut c = sqlx::MySqlConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

impl TestDb {
    pub async fn create(kind: Kind) -> TestDb {
        let name = format!("herald_test_{:016x}", rand::random::<u64>());
        if let Err(e) = admin_exec(kind, &format!("CREATE DATABASE {name}")).await {
            panic!(
                "{kind:?} on 127.0.0.1:{} is needed by the app store tests and did not answer \
                 ({e}); run tests/db-servers (as root) to install and start it",
                kind.port()
            );
        }
        TestDb { kind, name }
    }

    pub fn url(&self) -> String {
        self.kind.url(self.kind.port(), &self.name)
    }

    /// The URL through a relay on `port`.
    pub fn url_via(&self, port: u16) -> String {
        self.kind.url(port, &self.name)
    }

    pub fn store_config(&self) -> AppStoreConfig {
        AppStoreConfig {
            driver: match self.kind {
                Kind::Pg => StoreDriver::Postgres,
                Kind::Maria => StoreDriver::Mysql,
            },
            url: self.url(),
            ..AppStoreConfig::default()
        }
    }

    /// Runs statements in this database.
    pub async fn exec(&self, sql: &str) {
        match self.kind {
            Kind::Pg => {
                let mut c = sqlx::PgConnection::connect(&self.url()).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
            Kind::Maria => {
                let mut c = sqlx::MySqlConnection::connect(&self.url()).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
        }
    }

    /// One integer from a query in this database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.kind {
            Kind::Pg => {
                let mut c = sqlx::PgConnection::connect(&self.url()).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
            Kind::Maria => {
                let mut c = sqlx::MySqlConnection::connect(&self.url()).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// Soketi's `apps` table exactly as its docs create it for this database.
    pub async fn soketi_table(&self) {
        self.exec(match self.kind {
            Kind::Pg => {
                "CREATE TABLE IF NOT EXISTS apps (
                    id varchar(255) PRIMARY KEY,
                    \"key\" varchar(255) NOT NULL,
                    secret varchar(255) NOT NULL,
                    max_connections integer NOT NULL,
                    enable_client_messages smallint NOT NULL,
                    \"enabled\" smallint NOT NULL,
                    max_backend_events_per_sec integer NOT NULL,
                    max_client_events_per_sec integer NOT NULL,
                    max_read_req_per_sec integer NOT NULL,
                    webhooks json
                )"
            }
            Kind::Maria => {
                "CREATE TABLE IF NOT EXISTS `apps` (
                    `id` varchar(255) NOT NULL,
                    `key` varchar(255) NOT NULL,
                    `secret` varchar(255) NOT NULL,
                    `max_connections` integer(10) NOT NULL,
                    `enable_client_messages` tinyint(1) NOT NULL,
                    `enabled` tinyint(1) NOT NULL,
                    `max_backend_events_per_sec` integer(10) NOT NULL,
                    `max_client_events_per_sec` integer(10) NOT NULL,
                    `max_read_req_per_sec` integer(10) NOT NULL,
                    `webhooks` json,
                    PRIMARY KEY (`id`)
                )"
            }
        })
        .await;
    }

    /// Inserts a Soketi row (quoting `key` and `enabled` as each database needs).
    pub async fn insert_app(&self, id: &str, key: &str, secret: &str, extra: &str) {
        let (k, e) = match self.kind {
            Kind::Pg => ("\"key\"", "\"enabled\""),
            Kind::Maria => ("`key`", "`enabled`"),
        };
        let sql = format!(
            "INSERT INTO apps (id, {k}, secret, max_connections, enable_client_messages, {e}, \
             max_backend_events_per_sec, max_client_events_per_sec, max_read_req_per_sec, webhooks) \
             VALUES ('{id}', '{key}', '{secret}', {extra})"
        );
        self.exec(&sql).await;
    }

    /// `UPDATE apps SET … WHERE id = …`, quoting as needed (`key`, `enabled`).
    pub async fn update_app(&self, id: &str, set: &str) {
        let set = match self.kind {
            Kind::Pg => set
                .replace("`key`", "\"key\"")
                .replace("`enabled`", "\"enabled\""),
            Kind::Maria => set.to_string(),
        };
        self.exec(&format!("UPDATE apps SET {set} WHERE id = '{id}'"))
            .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (kind, name) = (self.kind, self.name.clone());
        // Drop runs inside the test's runtime: drop the database from a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let sql = match kind {
                Kind::Pg => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                Kind::Maria => format!("DROP DATABASE IF EXISTS {name}"),
            };
            if let Err(e) = rt.block_on(admin_exec(kind, &sql)) {
                eprintln!("could not drop test database {name}: {e}");
            }
        });
        let _ = done.join();
    }
}

/// A TCP relay to a database that the test can cut (open connections are reset, new ones
/// refused) and restore.
pub struct Relay {
    pub port: u16,
    open: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn to(target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let pipes: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (gate, list) = (open.clone(), pipes.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    continue;
                }
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(pipe.abort_handle());
            }
        });
        Relay {
            port,
            open,
            pipes,
            accept,
        }
    }

    /// The database is away: every open connection is dropped, new ones are closed at once.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for p in self.pipes.lock().unwrap().drain(..) {
            p.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
