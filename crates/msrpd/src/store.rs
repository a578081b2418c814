//! The user store: accounts and their Digest HA1 hashes, in SQLite (sqlx, runtime queries).
//!
//! The realm of an account is its domain: `alice@example.com` authenticates in realm
//! `example.com`, as the relay picks the realm from the AUTH To-Path host (RFC 4976 §5.1).

use std::path::Path;
use std::str::FromStr;

use msrp_relay::digest::{Algorithm, ha1};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqlStr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database {0}: {1}")]
    Open(String, sqlx::Error),
    #[error("database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} is not USER@DOMAIN")]
    BadAccount(String),
    #[error("{0} exists already")]
    Exists(String),
    #[error("no such user: {0}")]
    NotFound(String),
    #[error(
        "{0} is empty (0 bytes): a truncated or wiped database would start as an empty account store; \
         restore it from a backup, or remove the file to start afresh"
    )]
    EmptyFile(String),
}

/// `user@domain`, split and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub domain: String,
}

impl FromStr for Account {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadAccount(s.to_owned());
        let (user, domain) = s.split_once('@').ok_or_else(bad)?;
        let ok = |p: &str| !p.is_empty() && !p.contains(|c: char| c.is_whitespace() || c.is_control() || c == ':');
        if !ok(user) || !ok(domain) || domain.contains('@') {
            return Err(bad());
        }
        Ok(Account { user: user.to_owned(), domain: domain.to_ascii_lowercase() })
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.user, self.domain)
    }
}

fn migrator() -> Migrator {
    let step = |version, name: &str, sql| {
        Migration::new(version, name.to_owned().into(), MigrationType::Simple, SqlStr::from_static(sql), false)
    };
    Migrator::with_migrations(vec![
        step(1, "subscriber", include_str!("../migrations/0001_subscriber.sql")),
        step(2, "chat_history", include_str!("../migrations/0002_chat_history.sql")),
    ])
}

/// A pool over the user database, migrated to the current schema.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating when missing) the database at `url` and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or(path);
            // SQLite takes a 0-byte file for an empty database, and the migration would
            // quietly make it a store without accounts (issue 11): refused instead.
            if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
                return Err(StoreError::EmptyFile(path.to_owned()));
            }
            if let Some(dir) = Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open(url.to_owned(), sqlx::Error::Io(e)))?;
            }
            if !Path::new(path).exists() {
                tracing::info!(database = path, "creating a new, empty user store");
            }
        }
        let options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
        // Errors name the database (sqlx's "unable to open database file" names nothing).
        let named = |e: sqlx::Error| StoreError::Open(url.to_owned(), e);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(named)?;
        migrator().run(&pool).await.map_err(|e| StoreError::Open(url.to_owned(), e.into()))?;
        Ok(Store { pool })
    }

    pub async fn add(&self, account: &Account, password: &str) -> Result<(), StoreError> {
        let (md5, sha) = hashes(account, password);
        let now = unix_now();
        let result = sqlx::query(
            "INSERT INTO subscriber (username, domain, ha1, ha1_sha256, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&account.user)
        .bind(&account.domain)
        .bind(md5)
        .bind(sha)
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Exists(account.to_string())),
            other => other.map(|_| ()).map_err(StoreError::from),
        }
    }

    pub async fn set_password(&self, account: &Account, password: &str) -> Result<(), StoreError> {
        let (md5, sha) = hashes(account, password);
        let done = sqlx::query("UPDATE subscriber SET ha1 = ?, ha1_sha256 = ? WHERE username = ? AND domain = ?")
            .bind(md5)
            .bind(sha)
            .bind(&account.user)
            .bind(&account.domain)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound(account.to_string())) } else { Ok(()) }
    }

    pub async fn remove(&self, account: &Account) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM subscriber WHERE username = ? AND domain = ?")
            .bind(&account.user)
            .bind(&account.domain)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound(account.to_string())) } else { Ok(()) }
    }

    pub async fn exists(&self, account: &Account) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM subscriber WHERE username = ? AND domain = ?")
            .bind(&account.user)
            .bind(&account.domain)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn list(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query("SELECT username, domain FROM subscriber ORDER BY domain, username")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| Account { user: r.get(0), domain: r.get(1) }).collect())
    }

    /// The stored HA1 (lowercase hex) of `user` in `realm` for `alg`, if the account exists.
    pub async fn ha1(&self, user: &str, realm: &str, alg: Algorithm) -> Result<Option<String>, StoreError> {
        let sql = match alg {
            Algorithm::Md5 => "SELECT ha1 FROM subscriber WHERE username = ? AND domain = ?",
            Algorithm::Sha256 => "SELECT ha1_sha256 FROM subscriber WHERE username = ? AND domain = ?",
        };
        let row = sqlx::query(sql).bind(user).bind(realm.to_ascii_lowercase()).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// The store as the relay sees it: HA1 lookups, remembered for `ttl` (AUTH load would
/// otherwise be one SQLite query per handshake; profiled at ~70 % of its CPU). A password
/// change or removal therefore takes effect within `ttl`.
#[derive(Debug)]
pub struct CachedCredentials {
    store: Store,
    ttl: std::time::Duration,
    cache: std::sync::Mutex<std::collections::HashMap<CacheKey, (Option<String>, std::time::Instant)>>,
}

/// (user, lower-cased realm, algorithm).
type CacheKey = (String, String, Algorithm);

/// Most cached lookups before the cache is emptied (bounded memory under a flood of names).
const CACHE_CAPACITY: usize = 100_000;

impl CachedCredentials {
    pub fn new(store: Store, ttl: std::time::Duration) -> Self {
        CachedCredentials { store, ttl, cache: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

impl msrp_relay::CredentialStore for CachedCredentials {
    fn ha1<'a>(
        &'a self,
        user: &'a str,
        realm: &'a str,
        alg: Algorithm,
    ) -> msrp_relay::BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let key = (user.to_owned(), realm.to_ascii_lowercase(), alg);
            if !self.ttl.is_zero()
                && let Ok(cache) = self.cache.lock()
                && let Some((value, at)) = cache.get(&key)
                && at.elapsed() < self.ttl
            {
                return Ok(value.clone());
            }
            let value = self.store.ha1(user, realm, alg).await.map_err(|e| e.to_string())?;
            if !self.ttl.is_zero()
                && let Ok(mut cache) = self.cache.lock()
            {
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(key, (value.clone(), std::time::Instant::now()));
            }
            Ok(value)
        })
    }
}

async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    room: &str,
    msg: &msrp_chat::Stored,
) -> Result<(), String> {
    sqlx::query(
        "INSERT INTO chat_history (room, sender, display, datetime, content_type, body) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(room)
    .bind(&msg.sender)
    .bind(&msg.display)
    .bind(&msg.datetime)
    .bind(&msg.content_type)
    .bind(msg.body.as_ref())
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Forgets all but the newest `keep` messages of `room`.
async fn trim(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, room: &str, keep: usize) -> Result<(), String> {
    sqlx::query(
        "DELETE FROM chat_history WHERE room = ? AND id NOT IN \
         (SELECT id FROM chat_history WHERE room = ? ORDER BY id DESC LIMIT ?)",
    )
    .bind(room)
    .bind(room)
    .bind(keep as i64)
    .execute(&mut **tx)
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Room history in the same database, so it outlives rooms and restarts.
impl msrp_chat::History for Store {
    fn append<'a>(
        &'a self,
        room: &'a str,
        msg: &'a msrp_chat::Stored,
        keep: usize,
    ) -> msrp_chat::history::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
            insert(&mut tx, room, msg).await?;
            trim(&mut tx, room, keep).await?;
            tx.commit().await.map_err(|e| e.to_string())
        })
    }

    fn append_batch<'a>(
        &'a self,
        batch: &'a [(String, msrp_chat::Stored)],
        keep: usize,
    ) -> msrp_chat::history::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
            for (room, msg) in batch {
                insert(&mut tx, room, msg).await?;
            }
            let mut rooms: Vec<&str> = batch.iter().map(|(r, _)| r.as_str()).collect();
            rooms.sort_unstable();
            rooms.dedup();
            for room in rooms {
                trim(&mut tx, room, keep).await?;
            }
            tx.commit().await.map_err(|e| e.to_string())
        })
    }

    fn recent<'a>(
        &'a self,
        room: &'a str,
        limit: usize,
    ) -> msrp_chat::history::BoxFuture<'a, Result<Vec<msrp_chat::Stored>, String>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT sender, display, datetime, content_type, body FROM \
                 (SELECT * FROM chat_history WHERE room = ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            )
            .bind(room)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
            Ok(rows
                .iter()
                .map(|r| msrp_chat::Stored {
                    sender: r.get(0),
                    display: r.get(1),
                    datetime: r.get(2),
                    content_type: r.get(3),
                    body: bytes::Bytes::from(r.get::<Vec<u8>, _>(4)),
                })
                .collect())
        })
    }
}

fn hashes(account: &Account, password: &str) -> (String, String) {
    (
        ha1(Algorithm::Md5, &account.user, &account.domain, password),
        ha1(Algorithm::Sha256, &account.user, &account.domain, password),
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse() {
        let a: Account = "alice@Example.COM".parse().unwrap();
        assert_eq!((a.user.as_str(), a.domain.as_str()), ("alice", "example.com"));
        for bad in ["alice", "@x", "a@", "a b@x", "a:b@x", "a@b@c"] {
            assert!(bad.parse::<Account>().is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn an_empty_database_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("msrpd-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("truncated.sqlite");
        std::fs::write(&file, b"").unwrap();
        let Err(err) = Store::open(&format!("sqlite://{}", file.display())).await else { panic!("opened") };
        assert!(matches!(err, StoreError::EmptyFile(_)), "{err}");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "left as it was");
        // A missing file is a new store, as before.
        let fresh = dir.join("new.sqlite");
        let _ = std::fs::remove_file(&fresh);
        assert!(Store::open(&format!("sqlite://{}", fresh.display())).await.is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn add_list_passwd_remove() {
        let dir = std::env::temp_dir().join(format!("msrpd-store-{}", std::process::id()));
        let url = format!("sqlite://{}", dir.join("t.sqlite").display());
        let store = Store::open(&url).await.unwrap();
        let alice: Account = "alice@example.com".parse().unwrap();
        store.add(&alice, "secret").await.unwrap();
        assert!(matches!(store.add(&alice, "x").await, Err(StoreError::Exists(_))));
        assert_eq!(store.list().await.unwrap(), vec![alice.clone()]);
        let md5 = store.ha1("alice", "example.com", Algorithm::Md5).await.unwrap().unwrap();
        assert_eq!(md5, ha1(Algorithm::Md5, "alice", "example.com", "secret"));
        let sha = store.ha1("alice", "EXAMPLE.com", Algorithm::Sha256).await.unwrap().unwrap();
        assert_eq!(sha, ha1(Algorithm::Sha256, "alice", "example.com", "secret"));
        store.set_password(&alice, "other").await.unwrap();
        let md5b = store.ha1("alice", "example.com", Algorithm::Md5).await.unwrap().unwrap();
        assert_ne!(md5, md5b);
        assert_eq!(store.ha1("bob", "example.com", Algorithm::Md5).await.unwrap(), None);
        store.remove(&alice).await.unwrap();
        assert!(matches!(store.remove(&alice).await, Err(StoreError::NotFound(_))));
        // The relay's view caches lookups for its TTL; a TTL of 0 always asks the database.
        use msrp_relay::CredentialStore;
        store.add(&alice, "again").await.unwrap();
        let cached = CachedCredentials::new(store.clone(), std::time::Duration::from_secs(60));
        let direct = CachedCredentials::new(store.clone(), std::time::Duration::ZERO);
        assert!(cached.ha1("alice", "example.com", Algorithm::Md5).await.unwrap().is_some());
        store.remove(&alice).await.unwrap();
        assert!(cached.ha1("alice", "example.com", Algorithm::Md5).await.unwrap().is_some(), "within the TTL");
        assert!(direct.ha1("alice", "example.com", Algorithm::Md5).await.unwrap().is_none());
        // Chat history: newest `keep` per room, oldest first.
        use msrp_chat::History;
        for n in 0..5u8 {
            let msg = msrp_chat::Stored {
                sender: "sip:alice@example.com".into(),
                display: (n % 2 == 0).then(|| "Ally".to_owned()),
                datetime: format!("2026-11-25T00:00:0{n}Z"),
                content_type: "text/plain".into(),
                body: bytes::Bytes::from(vec![n, 0, 255]),
            };
            store.append("sip:lobby@x", &msg, 3).await.unwrap();
        }
        let other = |n: u8| msrp_chat::Stored {
            sender: "sip:bob@example.com".into(),
            display: None,
            datetime: "2026-11-25T00:00:09Z".into(),
            content_type: "text/plain".into(),
            body: bytes::Bytes::from(vec![n]),
        };
        let batch: Vec<_> = (10..14).map(|n| ("sip:batch@x".to_owned(), other(n))).collect();
        store.append_batch(&batch, 3).await.unwrap();
        let got = store.recent("sip:batch@x", 10).await.unwrap();
        assert_eq!(got.iter().map(|m| m.body[0]).collect::<Vec<_>>(), [11, 12, 13], "a batch is trimmed too");
        let got = store.recent("sip:lobby@x", 10).await.unwrap();
        assert_eq!(got.iter().map(|m| m.body[0]).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!((got[0].display.as_deref(), &got[0].body[..]), (Some("Ally"), &[2, 0, 255][..]));
        assert_eq!(store.recent("sip:lobby@x", 1).await.unwrap()[0].body[0], 4);
        assert!(store.recent("sip:other@x", 10).await.unwrap().is_empty());
        // Reopening runs the migrations again without harm.
        drop(store);
        Store::open(&url).await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
