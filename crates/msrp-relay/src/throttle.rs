//! Throttling and quotas (`[relay.limits]`, issue 14): bytes per second per session and per
//! account, sessions per account, AUTH attempts per second per address; global, with
//! per-domain overrides.
//!
//! A rate is kept by reading more slowly from the sender: after each read the connection's
//! buckets are charged, and a bucket in debt makes its reader wait before the next read.
//! Nothing is dropped and nothing extra is buffered: the sender's TCP window fills and TCP
//! pushes back, while every other connection is read as before.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

pub use msrp_auth::rate::Bucket;

/// One set of limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per second one session (its client connection) may send.
    pub session_rate: Option<u64>,
    /// Bytes per second all sessions of one account may send together.
    pub user_rate: Option<u64>,
    /// Sessions one account may hold at once.
    pub user_sessions: Option<usize>,
    /// AUTH requests per second from one address.
    pub auth_rate: Option<u32>,
}

impl Limits {
    /// These limits, with `base` filling in what they leave unset.
    pub fn over(self, base: Limits) -> Limits {
        Limits {
            session_rate: self.session_rate.or(base.session_rate),
            user_rate: self.user_rate.or(base.user_rate),
            user_sessions: self.user_sessions.or(base.user_sessions),
            auth_rate: self.auth_rate.or(base.auth_rate),
        }
    }
}

/// `[relay.limits]` and its `[relay.limits.domain."…"]` overrides.
#[derive(Debug, Clone, Default)]
pub struct ThrottleOptions {
    pub global: Limits,
    /// Per realm (lower-case); unset keys fall back to `global`.
    pub domains: HashMap<String, Limits>,
}

impl ThrottleOptions {
    pub fn for_realm(&self, realm: &str) -> Limits {
        match self.domains.get(&realm.to_ascii_lowercase()) {
            Some(l) => l.over(self.global),
            None => self.global,
        }
    }
}

/// The buckets a connection's reads are charged to, set by its first accepted AUTH.
#[derive(Debug, Clone, Default)]
pub struct ConnThrottle {
    pub session: Option<Arc<Bucket>>,
    pub user: Option<Arc<Bucket>>,
}

impl ConnThrottle {
    pub fn is_none(&self) -> bool {
        self.session.is_none() && self.user.is_none()
    }

    /// Charges `n` bytes read; the wait before the next read.
    pub fn charge(&self, n: u64, now: Instant) -> Duration {
        let s = self.session.as_ref().map_or(Duration::ZERO, |b| b.charge(n, now));
        let u = self.user.as_ref().map_or(Duration::ZERO, |b| b.charge(n, now));
        s.max(u)
    }
}

/// Most remembered addresses (AUTH rate) or accounts (shared buckets) before the tables are
/// emptied: bounded memory whatever arrives.
const MAX_ENTRIES: usize = 100_000;

/// The relay's shared throttling state.
#[derive(Debug, Default)]
pub struct Throttle {
    /// Replaced by a reload (`Relay::set_limits`): new sessions and AUTHs take the new
    /// limits; connections keep the buckets they were given.
    opts: std::sync::RwLock<ThrottleOptions>,
    /// One bucket per account while any of its connections holds it.
    users: Mutex<HashMap<String, Weak<Bucket>>>,
    /// AUTH attempts per address.
    auths: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Throttle {
    pub fn new(opts: ThrottleOptions) -> Throttle {
        Throttle { opts: std::sync::RwLock::new(opts), ..Throttle::default() }
    }

    /// The limits in force for `realm`.
    pub fn limits(&self, realm: &str) -> Limits {
        self.opts.read().unwrap_or_else(|e| e.into_inner()).for_realm(realm)
    }

    pub fn set(&self, opts: ThrottleOptions) {
        *self.opts.write().unwrap_or_else(|e| e.into_inner()) = opts;
        // Address buckets were made at the old auth_rate.
        self.auths.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Whether one more AUTH from `ip` fits the realm's `auth_rate`.
    pub fn admit_auth(&self, ip: IpAddr, realm: &str, now: Instant) -> bool {
        let Some(rate) = self.limits(realm).auth_rate else { return true };
        let mut auths = self.auths.lock().unwrap_or_else(|e| e.into_inner());
        if auths.len() >= MAX_ENTRIES && !auths.contains_key(&ip) {
            auths.clear();
        }
        auths.entry(ip).or_insert_with(|| Bucket::new(u64::from(rate))).try_take(now)
    }

    /// The buckets for a new session of `user` in `realm`.
    pub fn for_session(&self, user: &str, realm: &str) -> ConnThrottle {
        let limits = self.limits(realm);
        let user = limits.user_rate.map(|rate| {
            let key = format!("{user}@{}", realm.to_ascii_lowercase());
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = users.get(&key).and_then(Weak::upgrade) {
                return b;
            }
            if users.len() >= MAX_ENTRIES {
                users.retain(|_, w| w.strong_count() > 0);
            }
            let b = Arc::new(Bucket::new(rate));
            users.insert(key, Arc::downgrade(&b));
            b
        });
        ConnThrottle { session: limits.session_rate.map(|r| Arc::new(Bucket::new(r))), user }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_override_what_they_set() {
        let mut opts = ThrottleOptions {
            global: Limits { session_rate: Some(1000), user_sessions: Some(4), ..Limits::default() },
            ..ThrottleOptions::default()
        };
        opts.domains.insert("vip.example".into(), Limits { session_rate: Some(9000), ..Limits::default() });
        assert_eq!(opts.for_realm("VIP.example").session_rate, Some(9000));
        assert_eq!(opts.for_realm("vip.example").user_sessions, Some(4), "the rest from the global limits");
        assert_eq!(opts.for_realm("other.example").session_rate, Some(1000));
    }

    #[test]
    fn sessions_of_one_account_share_its_bucket() {
        let t = Throttle::new(ThrottleOptions {
            global: Limits { user_rate: Some(100), ..Limits::default() },
            ..ThrottleOptions::default()
        });
        let (a, b) = (t.for_session("alice", "example.com"), t.for_session("alice", "EXAMPLE.com"));
        assert!(Arc::ptr_eq(a.user.as_ref().unwrap(), b.user.as_ref().unwrap()));
        assert!(a.session.is_none());
        let c = t.for_session("bob", "example.com");
        assert!(!Arc::ptr_eq(a.user.as_ref().unwrap(), c.user.as_ref().unwrap()));
    }
}
