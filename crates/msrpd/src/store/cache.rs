//! The store as the relay and the chat see it: HA1 lookups remembered for
//! `database.cache_seconds` (AUTH load would otherwise be one query per handshake; profiled
//! at ~70 % of the relay's CPU with SQLite). A password change or removal therefore takes
//! effect within that time, and while the database is down the accounts looked up within it
//! still authenticate; the others fail at once with "user store unavailable".

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use msrp_auth::log_throttle::LogThrottle;
use msrp_relay::digest::Algorithm;
use tracing::warn;

use super::Store;

/// (user as sent, realm as sent, algorithm): an HA1 computed from a password depends on both
/// exactly.
type CacheKey = (String, String, Algorithm);

/// Most cached lookups before the cache is emptied (bounded memory under a flood of names).
const CACHE_CAPACITY: usize = 100_000;

/// One cache for the relay and the chat: an account that authenticated at one door is known
/// at the other while the database is down.
#[derive(Debug)]
pub struct CachedCredentials {
    store: Store,
    ttl: Duration,
    algorithms: Vec<Algorithm>,
    cache: Mutex<HashMap<CacheKey, (Option<String>, Instant)>>,
    /// Failed lookups, logged at most once a second with the count.
    failures: LogThrottle,
    failed: AtomicU64,
    /// Lookups that reached the database, and their total time (metrics).
    queries: AtomicU64,
    query_micros: AtomicU64,
}

/// What the metrics endpoint shows of the database.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbStats {
    pub queries: u64,
    pub failures: u64,
    pub query_seconds: f64,
}

impl CachedCredentials {
    pub fn new(store: Store, ttl: Duration) -> Self {
        let algorithms = store.accounts().algorithms();
        CachedCredentials {
            store,
            ttl,
            algorithms,
            cache: Mutex::new(HashMap::new()),
            failures: LogThrottle::default(),
            failed: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            query_micros: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> DbStats {
        DbStats {
            queries: self.queries.load(Ordering::Relaxed),
            failures: self.failed.load(Ordering::Relaxed),
            query_seconds: self.query_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Option<String>> {
        if self.ttl.is_zero() {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(v, _)| v.clone())
    }

    fn remember(&self, key: CacheKey, value: Option<String>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, (value, Instant::now()));
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
            let key = (user.to_owned(), realm.to_owned(), alg);
            if let Some(value) = self.cached(&key) {
                return Ok(value);
            }
            let started = Instant::now();
            let result = self.store.ha1(user, realm, alg).await;
            self.queries.fetch_add(1, Ordering::Relaxed);
            self.query_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            match result {
                Ok(value) => {
                    self.remember(key, value.clone());
                    Ok(value)
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = self.failures.note() {
                        warn!(error = %e, failed_so_far = n, "user store lookup failed: AUTH refused as unavailable");
                    }
                    Err(e.to_string())
                }
            }
        })
    }

    fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }
}
