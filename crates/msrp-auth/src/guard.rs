//! Password guessing, bounded for MSRP AUTH and SIP Digest alike: failed attempts are counted
//! per account, per source address and per nonce, and an account or address that keeps
//! failing is blocked for a while — its next attempts are refused at once, without their
//! password being checked, so guesses per account stay at a few per second whatever the
//! number of connections or addresses used.
//!
//! A success clears that account's count only: another account's failures, and the address's,
//! stay (logging in as yourself between guesses at someone else's password buys nothing).
//! It also marks the address as the account's own for a day: an account blocked because
//! someone elsewhere guesses at it still lets its owner in from where it logged in before, so
//! a block is not a lockout for users who come back from the same address.
//! Every table is bounded; counts are forgotten after [`GuardOptions::window`] without failure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits (defaults in `Default`).
#[derive(Debug, Clone)]
pub struct GuardOptions {
    /// Failures an account may have before it is blocked.
    pub account_failures: u32,
    /// Failures an address may have (over all accounts) before it is blocked.
    pub address_failures: u32,
    /// Wrong answers one nonce may take before it is refused (then a fresh challenge).
    pub nonce_failures: u32,
    /// The first block; each further failure doubles it, up to `max_block`.
    pub first_block: Duration,
    pub max_block: Duration,
    /// A count is forgotten this long after its last failure.
    pub window: Duration,
    /// Entries per table (accounts, addresses, nonces); the oldest are dropped beyond it.
    pub max_entries: usize,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions {
            account_failures: 3,
            address_failures: 30,
            nonce_failures: 3,
            first_block: Duration::from_secs(1),
            max_block: Duration::from_secs(60),
            window: Duration::from_secs(300),
            max_entries: 100_000,
        }
    }
}

/// Why an attempt is refused without being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Account(Duration),
    Address(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last: Instant,
    until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Tables {
    accounts: HashMap<String, Count>,
    addresses: HashMap<IpAddr, Count>,
    nonces: HashMap<String, Count>,
    /// Where each account logged in lately (exempt from that account's block).
    known: HashMap<(String, IpAddr), Instant>,
}

/// How long an address stays an account's own after a successful login.
const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default)]
pub struct AuthGuard {
    opts: GuardOptions,
    tables: Mutex<Tables>,
}

impl AuthGuard {
    pub fn new(opts: GuardOptions) -> Self {
        AuthGuard { opts, tables: Mutex::default() }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err` when `account` (`user@realm`) or `ip` is blocked now: refuse without checking.
    pub fn check(&self, account: &str, ip: IpAddr, now: Instant) -> Result<(), Blocked> {
        let t = self.tables();
        let left = |c: Option<&Count>| {
            c.and_then(|c| c.until).and_then(|u| u.checked_duration_since(now)).filter(|d| !d.is_zero())
        };
        if let Some(d) = left(t.addresses.get(&ip)) {
            return Err(Blocked::Address(d));
        }
        if let Some(d) = left(t.accounts.get(account))
            && t.known.get(&(account.to_owned(), ip)).is_none_or(|at| now.saturating_duration_since(*at) >= KNOWN_FOR)
        {
            return Err(Blocked::Account(d));
        }
        Ok(())
    }

    /// Whether `nonce` took its share of wrong answers (answer with a fresh challenge).
    pub fn nonce_spent(&self, nonce: &str) -> bool {
        self.tables().nonces.get(nonce).is_some_and(|c| c.failures >= self.opts.nonce_failures)
    }

    /// A wrong password, unknown user or replay for `account` from `ip` with `nonce`.
    pub fn failed(&self, account: &str, ip: IpAddr, nonce: Option<&str>, now: Instant) {
        let o = &self.opts;
        let mut t = self.tables();
        let Tables { accounts, addresses, nonces, .. } = &mut *t;
        bump(accounts, account, o.account_failures, o, now);
        bump(addresses, &ip, o.address_failures, o, now);
        if let Some(n) = nonce {
            bump(nonces, n, u32::MAX, o, now);
        }
    }

    /// A success for `account` from `ip`: its count goes (nobody else's), and `ip` becomes one
    /// of its own.
    pub fn succeeded(&self, account: &str, ip: IpAddr, now: Instant) {
        let max = self.opts.max_entries;
        let mut t = self.tables();
        t.accounts.remove(account);
        if t.known.len() >= max {
            t.known.retain(|_, at| now.saturating_duration_since(*at) < KNOWN_FOR);
            if t.known.len() >= max {
                return;
            }
        }
        t.known.insert((account.to_owned(), ip), now);
    }

    /// Drops counts older than the window (call now and then).
    pub fn sweep(&self, now: Instant) {
        let window = self.opts.window;
        let keep = |c: &Count| now.saturating_duration_since(c.last) < window;
        let mut t = self.tables();
        t.accounts.retain(|_, c| keep(c));
        t.addresses.retain(|_, c| keep(c));
        t.nonces.retain(|_, c| keep(c));
        t.known.retain(|_, at| now.saturating_duration_since(*at) < KNOWN_FOR);
    }
}

/// One more failure for `key`; blocks it once past `free` failures, for `first_block`
/// doubled per further failure (at most `max_block`).
fn bump<K, Q>(table: &mut HashMap<K, Count>, key: &Q, free: u32, o: &GuardOptions, now: Instant)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq + Clone,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
{
    if !table.contains_key(key) && table.len() >= o.max_entries {
        table.retain(|_, c| now.saturating_duration_since(c.last) < o.window);
        if table.len() >= o.max_entries {
            // Still full of recent entries: the oldest tenth goes at once, so that a table
            // kept full (attacker-chosen user names) costs one pass per tenth of inserts, not
            // one per insert.
            let mut ages: Vec<Instant> = table.values().map(|c| c.last).collect();
            let nth = ages.len() / 10;
            let (_, cutoff, _) = ages.select_nth_unstable(nth);
            let cutoff = *cutoff;
            table.retain(|_, c| c.last > cutoff);
        }
    }
    let c = table.entry(key.to_owned()).or_insert(Count { failures: 0, last: now, until: None });
    if now.saturating_duration_since(c.last) >= o.window {
        *c = Count { failures: 0, last: now, until: None };
    }
    c.failures = c.failures.saturating_add(1);
    c.last = now;
    if c.failures > free {
        let doublings = (c.failures - free - 1).min(16);
        c.until = Some(now + (o.first_block * 2u32.pow(doublings)).min(o.max_block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "alice@example.com";
    const B: &str = "bob@example.com";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_account_that_keeps_failing_is_blocked_longer_and_longer() {
        let g = AuthGuard::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(g.check(A, ip(&format!("192.0.2.{i}")), t0).is_ok());
            g.failed(A, ip(&format!("192.0.2.{i}")), None, t0);
        }
        assert!(g.check(A, ip("192.0.2.9"), t0).is_ok(), "three free failures");
        g.failed(A, ip("192.0.2.9"), None, t0);
        assert_eq!(g.check(A, ip("198.51.100.1"), t0), Err(Blocked::Account(Duration::from_secs(1))), "any address");
        assert!(g.check(B, ip("198.51.100.1"), t0).is_ok(), "another account is not");
        let t1 = t0 + Duration::from_secs(1);
        assert!(g.check(A, ip("198.51.100.1"), t1).is_ok(), "the block ends");
        g.failed(A, ip("198.51.100.1"), None, t1);
        assert_eq!(g.check(A, ip("198.51.100.1"), t1), Err(Blocked::Account(Duration::from_secs(2))), "doubled");
        for _ in 0..20 {
            g.failed(A, ip("198.51.100.1"), None, t1);
        }
        assert_eq!(g.check(A, ip("203.0.113.1"), t1), Err(Blocked::Account(Duration::from_secs(60))), "capped");
        // Forgotten after the window without failures.
        g.sweep(t1 + Duration::from_secs(301));
        assert!(g.check(A, ip("203.0.113.1"), t1 + Duration::from_secs(301)).is_ok());
    }

    #[test]
    fn a_success_clears_only_its_own_account() {
        // Issue 11: guess alice twice, log in as bob from the same address, repeat.
        let g = AuthGuard::default();
        let (t, me) = (Instant::now(), ip("192.0.2.1"));
        for _ in 0..4 {
            g.failed(A, me, None, t);
            g.succeeded(B, me, t);
        }
        assert!(matches!(g.check(A, ip("192.0.2.200"), t), Err(Blocked::Account(_))), "alice stays blocked");
        g.succeeded(A, ip("192.0.2.200"), t);
        assert!(g.check(A, ip("192.0.2.201"), t).is_ok());
    }

    #[test]
    fn an_owner_is_not_locked_out_from_where_it_logged_in_before() {
        let g = AuthGuard::default();
        let (t, home, attacker) = (Instant::now(), ip("198.51.100.7"), ip("203.0.113.66"));
        g.succeeded(A, home, t);
        for _ in 0..10 {
            g.failed(A, attacker, None, t);
        }
        assert!(matches!(g.check(A, attacker, t), Err(Blocked::Account(_))));
        assert!(matches!(g.check(A, ip("192.0.2.1"), t), Err(Blocked::Account(_))), "a new address is blocked");
        assert!(g.check(A, home, t).is_ok(), "the owner's own address is not");
        let tomorrow = t + KNOWN_FOR + Duration::from_secs(1);
        g.failed(A, attacker, None, tomorrow);
        for _ in 0..4 {
            g.failed(A, attacker, None, tomorrow);
        }
        assert!(g.check(A, home, tomorrow).is_err(), "for a day");
    }

    #[test]
    fn an_address_guessing_many_accounts_is_blocked() {
        let g = AuthGuard::default();
        let (t, me) = (Instant::now(), ip("192.0.2.1"));
        let free = GuardOptions::default().address_failures;
        for i in 0..free {
            g.failed(&format!("user{i}@example.com"), me, None, t);
        }
        assert!(g.check("fresh@example.com", me, t).is_ok(), "free failures per address");
        g.failed("one-more@example.com", me, None, t);
        assert!(matches!(g.check("fresh@example.com", me, t), Err(Blocked::Address(_))));
        assert!(g.check("fresh@example.com", ip("192.0.2.2"), t).is_ok());
    }

    #[test]
    fn a_nonce_takes_a_few_wrong_answers_only() {
        let g = AuthGuard::default();
        let t = Instant::now();
        for i in 0..3 {
            assert!(!g.nonce_spent("n1"));
            g.failed(&format!("u{i}@x"), ip(&format!("192.0.2.{i}")), Some("n1"), t);
        }
        assert!(g.nonce_spent("n1"));
        assert!(!g.nonce_spent("n2"));
    }

    #[test]
    fn tables_stay_bounded() {
        let g = AuthGuard::new(GuardOptions { max_entries: 100, ..GuardOptions::default() });
        let t = Instant::now();
        for i in 0..1000u32 {
            g.failed(&format!("u{i}@x"), IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), Some(&i.to_string()), t);
        }
        let tables = g.tables();
        assert!(tables.accounts.len() <= 100 && tables.addresses.len() <= 100 && tables.nonces.len() <= 100);
    }
}
