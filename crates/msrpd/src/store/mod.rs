//! The database: accounts (msrpd's own table or the SIP platform's, `accounts`) and chat
//! history (`history`), on SQLite, PostgreSQL or MySQL/MariaDB through sqlx's `Any` driver
//! with runtime queries; lookups remembered by `cache`.
//!
//! The realm of an account is its domain: `alice@example.com` authenticates in realm
//! `example.com`, as the relay picks the realm from the AUTH To-Path host (RFC 4976 §5.1).

mod accounts;
mod cache;
mod history;

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use accounts::AccountTable;
pub use cache::CachedCredentials;
use msrp_relay::digest::Algorithm;
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::SqlStr;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database {0}: {1}")]
    Open(String, sqlx::Error),
    #[error("{0}")]
    Config(String),
    #[error("database: no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Foreign(String),
    #[error("{0}")]
    Lost(String),
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

/// Which database server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub fn of(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::MySql),
            _ => None,
        }
    }

    /// msrpd's chat history table here (prefixed on a server, which it may share).
    fn history_table(self) -> &'static str {
        if self == Backend::Sqlite { "chat_history" } else { "msrpd_chat_history" }
    }
}

/// msrpd's own tables for `backend`: its accounts table only when it reads accounts from it.
fn migrator(backend: Backend, own_accounts: bool) -> Migrator {
    let step = |version, name: &str, sql| {
        Migration::new(version, name.to_owned().into(), MigrationType::Simple, SqlStr::from_static(sql), false)
    };
    let (accounts, history) = match backend {
        Backend::Sqlite => (
            step(1, "subscriber", include_str!("../../migrations/sqlite/0001_subscriber.sql")),
            step(2, "chat_history", include_str!("../../migrations/sqlite/0002_chat_history.sql")),
        ),
        Backend::Postgres => (
            step(1, "accounts", include_str!("../../migrations/postgres/0001_accounts.sql")),
            step(2, "chat_history", include_str!("../../migrations/postgres/0002_chat_history.sql")),
        ),
        Backend::MySql => (
            step(1, "accounts", include_str!("../../migrations/mysql/0001_accounts.sql")),
            step(2, "chat_history", include_str!("../../migrations/mysql/0002_chat_history.sql")),
        ),
    };
    let mut migrator = Migrator::with_migrations(if own_accounts { vec![accounts, history] } else { vec![history] });
    // A store that once kept its own accounts keeps the table when it moves to a foreign one.
    migrator.set_ignore_missing(!own_accounts);
    if backend != Backend::Sqlite {
        // Not sqlx's default name: the database may be shared with other applications.
        migrator.dangerous_set_table_name("msrpd_migrations");
    }
    migrator
}

/// The SQL a store runs, written once for its backend and account table.
#[derive(Debug)]
struct Statements {
    lookup: Arc<str>,
    exists: Arc<str>,
    list: Arc<str>,
    remove: Arc<str>,
    history_insert: Arc<str>,
    history_cut: Arc<str>,
    history_trim: Arc<str>,
    history_recent: Arc<str>,
}

/// Statement text: built once and shared (the hot lookups), or built for one call.
#[derive(Debug)]
enum SqlText {
    Shared(Arc<str>),
    Owned(String),
}

impl From<&Arc<str>> for SqlText {
    fn from(s: &Arc<str>) -> Self {
        SqlText::Shared(s.clone())
    }
}

impl From<String> for SqlText {
    fn from(s: String) -> Self {
        SqlText::Owned(s)
    }
}

impl Statements {
    fn new(backend: Backend, accounts: &AccountTable) -> Statements {
        let p = |sql: String| Arc::<str>::from(accounts::placeholders(&sql, backend));
        let h = backend.history_table();
        let t = &accounts.table;
        Statements {
            lookup: p(accounts.lookup_sql()),
            exists: p(format!("SELECT 1 FROM {t}{}", accounts.account_filter())),
            list: accounts.list_sql().into(),
            remove: p(format!("DELETE FROM {t}{}", accounts.account_filter())),
            history_insert: p(format!(
                "INSERT INTO {h} (room, sender, display, datetime, content_type, body) VALUES (?, ?, ?, ?, ?, ?)"
            )),
            // The id of the newest message beyond those kept (no `LIMIT` in a subquery:
            // MySQL has none), then everything up to it goes.
            history_cut: p(format!("SELECT id FROM {h} WHERE room = ? ORDER BY id DESC LIMIT 1 OFFSET ?")),
            history_trim: p(format!("DELETE FROM {h} WHERE room = ? AND id <= ?")),
            history_recent: p(format!(
                "SELECT sender, display, datetime, content_type, body FROM \
                 (SELECT * FROM {h} WHERE room = ? ORDER BY id DESC LIMIT ?) AS recent ORDER BY id"
            )),
        }
    }
}

/// A pool over the database, msrpd's own tables migrated to the current schema.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    accounts: Arc<AccountTable>,
    sql: Arc<Statements>,
    /// Longest wait for one query's answer (`database.query_timeout_ms`).
    query_timeout: Duration,
}

/// How to reach the database and which accounts to read (`[database]`, `[accounts]`).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub accounts: AccountTable,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
}

impl StoreOptions {
    pub fn from_config(config: &crate::config::Config) -> Result<StoreOptions, StoreError> {
        let url = config.database_url();
        let backend = Backend::of(&url)
            .ok_or_else(|| StoreError::Config(format!("database.url {:?}: unknown scheme", redact(&url))))?;
        let accounts = AccountTable::resolve(&config.accounts, Some(backend)).map_err(StoreError::Config)?;
        Ok(StoreOptions {
            url,
            accounts,
            pool_size: config.database.pool_size,
            connect_timeout: Duration::from_millis(config.database.connect_timeout_ms),
            query_timeout: Duration::from_millis(config.database.query_timeout_ms),
        })
    }

    /// msrpd's own accounts in the database at `url`, with the default limits.
    #[cfg(test)]
    pub fn own(url: &str) -> StoreOptions {
        let db = crate::config::DatabaseConfig::default();
        StoreOptions {
            url: url.to_owned(),
            accounts: AccountTable::resolve(&crate::config::AccountsConfig::default(), Backend::of(url)).unwrap(),
            pool_size: db.pool_size,
            connect_timeout: Duration::from_millis(db.connect_timeout_ms),
            query_timeout: Duration::from_millis(db.query_timeout_ms),
        }
    }
}

impl Store {
    /// Opens the database (creating an SQLite file when missing) and applies msrpd's
    /// pending migrations.
    pub async fn open(opts: &StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let url = opts.url.as_str();
        let shown = redact(url);
        let backend =
            Backend::of(url).ok_or_else(|| StoreError::Config(format!("database.url {shown:?}: unknown scheme")))?;
        let mut connect_url = url.to_owned();
        if backend == Backend::Sqlite {
            let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
            let path = path.split('?').next().unwrap_or(path);
            // SQLite takes a 0-byte file for an empty database, and the migration would
            // quietly make it a store without accounts (issue 11): refused instead.
            if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
                return Err(StoreError::EmptyFile(path.to_owned()));
            }
            if let Some(dir) = Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open(shown.clone(), sqlx::Error::Io(e)))?;
            }
            if !Path::new(path).exists() {
                tracing::info!(database = path, "creating a new, empty user store");
            }
            if !url.contains("mode=") {
                connect_url += if url.contains('?') { "&mode=rwc" } else { "?mode=rwc" };
            }
        }
        // Errors name the database (sqlx's "unable to open database file" names nothing),
        // without the password a server URL may carry.
        let named = |e: sqlx::Error| StoreError::Open(shown.clone(), e);
        let options = AnyConnectOptions::from_str(&connect_url).map_err(named)?;
        let pool = AnyPoolOptions::new()
            .max_connections(opts.pool_size)
            .acquire_timeout(opts.connect_timeout)
            .connect_with(options)
            .await
            .map_err(named)?;
        let own = opts.accounts.is_own();
        migrator(backend, own).run(&pool).await.map_err(|e| StoreError::Open(shown.clone(), e.into()))?;
        let sql = Arc::new(Statements::new(backend, &opts.accounts));
        let store =
            Store { pool, backend, accounts: Arc::new(opts.accounts.clone()), sql, query_timeout: opts.query_timeout };
        if !own {
            // A misnamed table or column shows now, not at the first AUTH.
            let probe = store.query(&store.sql.lookup).bind("").bind_domain(&store, "");
            store.timed(probe.fetch_optional(&store.pool)).await.map_err(|e| {
                StoreError::Config(format!(
                    "{shown}: the accounts table does not answer as [accounts] describes it: {e}"
                ))
            })?;
        }
        Ok(store)
    }

    /// The account table this store reads.
    pub fn accounts(&self) -> &AccountTable {
        &self.accounts
    }

    fn query<'q>(&self, sql: impl Into<SqlText>) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        match sql.into() {
            SqlText::Shared(s) => sqlx::query(sqlx::AssertSqlSafe(s)),
            SqlText::Owned(s) => sqlx::query(sqlx::AssertSqlSafe(s)),
        }
    }

    /// `fut` within `database.query_timeout_ms` (a database that stopped answering fails
    /// the lookup instead of holding the AUTH that waits on it).
    async fn timed<T>(&self, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.query_timeout, fut).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Timeout(self.query_timeout)),
        }
    }

    /// Refuses writes to a table msrpd does not manage (checked before a password is asked).
    pub fn writable(&self) -> Result<(), StoreError> {
        if self.accounts.manage {
            return Ok(());
        }
        Err(StoreError::Foreign(format!(
            "accounts are read from table {} ({:?} schema), which msrpd does not write to: \
             manage them with the SIP platform's tools (e.g. kamctl add), or set [accounts] manage = true",
            self.accounts.table, self.accounts.schema
        )))
    }

    pub async fn add(&self, account: &Account, password: &str) -> Result<(), StoreError> {
        self.writable()?;
        let mut row = self.accounts.new_row(&account.user, &account.domain, password);
        let mut values: Vec<(String, SqlValue)> = row.drain(..).map(|(c, v)| (c, v.into())).collect();
        if self.accounts.is_own() {
            values.push(("created_at".into(), unix_now().into()));
        }
        let cols: Vec<&str> = values.iter().map(|(c, _)| c.as_str()).collect();
        let marks = vec!["?"; cols.len()].join(", ");
        let sql = accounts::placeholders(
            &format!("INSERT INTO {} ({}) VALUES ({marks})", self.accounts.table, cols.join(", ")),
            self.backend,
        );
        let mut q = self.query(sql);
        for (_, v) in values {
            q = match v {
                SqlValue::Text(s) => q.bind(s),
                SqlValue::Int(n) => q.bind(n),
            };
        }
        match self.timed(q.execute(&self.pool)).await {
            Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                Err(StoreError::Exists(account.to_string()))
            }
            other => other.map(|_| ()),
        }
    }

    pub async fn set_password(&self, account: &Account, password: &str) -> Result<(), StoreError> {
        self.writable()?;
        let values = self.accounts.secret_values(&account.user, &account.domain, password);
        let set: Vec<String> = values.iter().map(|(c, _)| format!("{c} = ?")).collect();
        let sql = format!("UPDATE {} SET {}{}", self.accounts.table, set.join(", "), self.accounts.account_filter());
        let sql = accounts::placeholders(&sql, self.backend);
        let mut q = self.query(sql);
        for (_, v) in values {
            q = q.bind(v);
        }
        let q = q.bind(account.user.clone()).bind_domain(self, &account.domain);
        let done = self.timed(q.execute(&self.pool)).await?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound(account.to_string())) } else { Ok(()) }
    }

    pub async fn remove(&self, account: &Account) -> Result<(), StoreError> {
        self.writable()?;
        let q = self.query(&self.sql.remove).bind(&account.user).bind_domain(self, &account.domain);
        let done = self.timed(q.execute(&self.pool)).await?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound(account.to_string())) } else { Ok(()) }
    }

    pub async fn exists(&self, account: &Account) -> Result<bool, StoreError> {
        let q = self.query(&self.sql.exists).bind(&account.user).bind_domain(self, &account.domain);
        Ok(self.timed(q.fetch_optional(&self.pool)).await?.is_some())
    }

    pub async fn list(&self) -> Result<Vec<Account>, StoreError> {
        let rows = self.timed(self.query(&self.sql.list).fetch_all(&self.pool)).await?;
        rows.iter()
            .map(|r| Ok(Account { user: r.try_get(0)?, domain: r.try_get(1)? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The HA1 (lowercase hex) for `alg` of `username` (as the client sent it) in `realm`,
    /// if the account exists and its row can give one.
    pub async fn ha1(&self, username: &str, realm: &str, alg: Algorithm) -> Result<Option<String>, StoreError> {
        let Some((user, domain)) = self.accounts.key(username, realm) else { return Ok(None) };
        let q = self.query(&self.sql.lookup).bind(user).bind_domain(self, &domain);
        let row = self.timed(q.fetch_optional(&self.pool)).await?;
        let Some(row) = row else { return Ok(None) };
        let Some(secrets) = self.accounts.secrets(&row, user, &domain)? else { return Ok(None) };
        Ok(secrets.ha1_for(username, realm, alg))
    }
}

/// A value of an INSERT whose columns are known only at run time.
#[derive(Debug)]
enum SqlValue {
    Text(String),
    Int(i64),
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        SqlValue::Text(s)
    }
}

impl From<i64> for SqlValue {
    fn from(n: i64) -> Self {
        SqlValue::Int(n)
    }
}

/// Binds the account's domain when the table has a domain column.
trait BindDomain {
    fn bind_domain(self, store: &Store, domain: &str) -> Self;
}

impl BindDomain for sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    fn bind_domain(self, store: &Store, domain: &str) -> Self {
        if store.accounts.domain.is_some() { self.bind(domain.to_owned()) } else { self }
    }
}

/// `url` without its password (in the authority or a `password=` parameter), for logs,
/// errors and `check-config`.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL: nothing after a scheme is shown.
        return url.split_once(':').map_or_else(|| "<unparseable>".to_owned(), |(s, _)| format!("{s}:…"));
    };
    if parsed.host().is_none() && !parsed.scheme().starts_with("sqlite") {
        // No authority to take a password out of (`u:pw@h`): nothing after the scheme.
        return format!("{}:…", parsed.scheme());
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use msrp_relay::digest::ha1;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("postgres://msrpd:s3cr@t@db.example.com/kam"), "postgres://msrpd:***@db.example.com/kam");
        assert_eq!(redact("postgres://db/kam?user=m&password=x1"), "postgres://db/kam?user=m&password=***");
        assert_eq!(redact("sqlite://msrpd-data/msrpd.sqlite"), "sqlite://msrpd-data/msrpd.sqlite");
        assert!(!redact("postgresql+x://u:pw@h/d").contains("pw"));
        assert!(!redact("u:pw@h").contains("pw"));
    }

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
        let Err(err) = Store::open(&StoreOptions::own(&format!("sqlite://{}", file.display()))).await else {
            panic!("opened")
        };
        assert!(matches!(err, StoreError::EmptyFile(_)), "{err}");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "left as it was");
        // A missing file is a new store, as before.
        let fresh = dir.join("new.sqlite");
        let _ = std::fs::remove_file(&fresh);
        assert!(Store::open(&StoreOptions::own(&format!("sqlite://{}", fresh.display()))).await.is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn add_list_passwd_remove() {
        let dir = std::env::temp_dir().join(format!("msrpd-store-{}", std::process::id()));
        let url = format!("sqlite://{}", dir.join("t.sqlite").display());
        let store = Store::open(&StoreOptions::own(&url)).await.unwrap();
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
        Store::open(&StoreOptions::own(&url)).await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
