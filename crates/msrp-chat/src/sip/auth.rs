//! Who is calling (RFC 3261 §22 Digest, RFC 7616 algorithms; RFC 3325 P-Asserted-Identity
//! from trusted networks).
//!
//! Requests from a trusted network (a SIP proxy that authenticated its users) are taken at their
//! word: P-Asserted-Identity, else From. Everyone else answers a Digest challenge against the
//! user store, in the realm of its From domain (the domain of its account), and may only join
//! as the user it proved to be. Nonces and replay protection are the relay's (stateless HMAC
//! nonces, bounded nonce-count table).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use msrp_auth::CredentialStore;
use msrp_auth::digest::{self, Algorithm, DigestResponse, NonceCheck, NonceCounts, NonceKey};
use msrp_auth::guard::AuthGuard;
use msrp_auth::log_throttle::LogThrottle;
use tracing::info;

use crate::identity::{self, Identity};

/// Nonce-counts remembered for replay detection; bounded like the relay's.
const NONCE_COUNT_CAPACITY: usize = 100_000;

/// Decides whether a source address is trusted.
pub type TrustFn = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// The outcome of checking a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admit(Identity),
    /// Answer 401 with these WWW-Authenticate values.
    Challenge(Vec<String>),
    /// Answer 403 (wrong password, unknown user, identity mismatch, replay).
    Forbid(&'static str),
    /// Answer 400: no usable From.
    Malformed(&'static str),
    /// Answer 503 with Retry-After: the user store did not answer (not the caller's fault).
    Unavailable(&'static str),
}

pub struct Authenticator {
    trusted: TrustFn,
    store: Option<Arc<dyn CredentialStore>>,
    key: NonceKey,
    counts: Mutex<NonceCounts>,
    opaque: String,
    nonce_lifetime: Duration,
    trust_udp: bool,
    /// Failed attempts per account, address and nonce (shared with the relay in msrpd).
    guard: Arc<AuthGuard>,
    /// Refusals a caller can cause at will, logged at most once a second.
    refused: LogThrottle,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// What the request says about its sender.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    pub source: IpAddr,
    /// Arrived over TCP or TLS, whose source address cannot be forged blindly (a UDP
    /// datagram's can).
    pub reliable: bool,
    pub method: &'a str,
    /// `From` as (display name, URI).
    pub from: (Option<String>, String),
    pub asserted: Option<(Option<String>, String)>,
    /// The Authorization header value, if any.
    pub authorization: Option<String>,
    /// The Request-URI, for the digest-uri check.
    pub request_uri: String,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// `store` `None` admits only trusted sources (everyone else is refused with 403).
    /// Trusted networks count over UDP only with `trust_udp` (RFC 3325 §2 wants the trusted
    /// hop secured; a spoofed UDP source is not).
    pub fn new(
        trusted: TrustFn,
        trust_udp: bool,
        store: Option<Arc<dyn CredentialStore>>,
        nonce_lifetime: Duration,
    ) -> Self {
        Authenticator {
            trusted,
            store,
            key: NonceKey::random(),
            counts: Mutex::new(NonceCounts::new(NONCE_COUNT_CAPACITY)),
            opaque: msrp::id::random_ident(),
            nonce_lifetime,
            trust_udp,
            guard: Arc::default(),
            refused: LogThrottle::default(),
        }
    }

    /// Counts failures in `guard` (the relay's, so that both doors count together).
    pub fn with_guard(mut self, guard: Arc<AuthGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// A refusal after checking: counted against the account, the address and the nonce.
    fn failed(&self, c: &Claims<'_>, account: &str, nonce: &str, why: &'static str) -> Verdict {
        self.guard.failed(account, c.source, Some(nonce), Instant::now());
        if let Some(n) = self.refused.note() {
            info!(source = %c.source, account, why, refused_so_far = n, "SIP Digest refused");
        }
        Verdict::Forbid(why)
    }

    fn challenge(&self, realm: &str, stale: bool) -> Verdict {
        let nonce = self.key.mint(realm, now());
        // MD5 first, unlike the relay's AUTH: deployed SIP user agents (rsipstack's client
        // among them) take the first challenge and fail on an algorithm they do not know,
        // rather than skipping to the next one as RFC 8760 §2.4 asks. SHA-256 follows for those
        // that choose.
        // Only what the store can verify (a table of MD5 hashes cannot check SHA-256).
        let supported = self.store.as_ref().map_or(&[][..], |s| s.algorithms());
        let values = [Algorithm::Md5, Algorithm::Sha256]
            .into_iter()
            .filter(|alg| supported.contains(alg))
            .map(|alg| digest::challenge(alg, realm, &nonce, &self.opaque, stale).to_string())
            .collect();
        Verdict::Challenge(values)
    }

    /// Whether requests from `source` are taken at their word (they skip the per-source rate).
    pub fn trusts(&self, source: IpAddr, reliable: bool) -> bool {
        (reliable || self.trust_udp) && (self.trusted)(source)
    }

    pub async fn check(&self, c: &Claims<'_>) -> Verdict {
        if (c.reliable || self.trust_udp) && (self.trusted)(c.source) {
            let (name, uri) = c.asserted.clone().unwrap_or_else(|| c.from.clone());
            return match Identity::new(&uri, name.as_deref()) {
                Some(id) => Verdict::Admit(id),
                None => Verdict::Malformed("no user in P-Asserted-Identity or From"),
            };
        }
        let Some(key) = identity::key(&c.from.1) else { return Verdict::Malformed("no user in From") };
        let (user, realm) = key.rsplit_once('@').expect("a key is user@host");
        let Some(store) = &self.store else { return Verdict::Forbid("only trusted networks may call") };
        let Some(value) = &c.authorization else { return self.challenge(realm, false) };
        let creds = match msrp::Header::parse("Authorization", value) {
            Ok(msrp::Header::Authorization(creds)) => creds,
            _ => return self.challenge(realm, false),
        };
        // The digest-uri is taken as sent: SIPp and some user agents write a different form of
        // the Request-URI there (e.g. without the user part), and a proxy may have rewritten
        // the Request-URI. The response hashes the uri it names, and a captured response
        // cannot be replayed elsewhere because every nonce-count is accepted only once.
        let digest_uri = creds.param("uri").unwrap_or(&c.request_uri).to_owned();
        let d = match DigestResponse::from_credentials(&creds, &digest_uri) {
            Ok(d) => d,
            Err(e) => {
                if let Some(n) = self.refused.note() {
                    info!(source = %c.source, error = %e, refused_so_far = n, "unusable SIP Authorization");
                }
                return self.challenge(realm, false);
            }
        };
        if !d.realm.eq_ignore_ascii_case(realm) {
            return self.challenge(realm, false);
        }
        let issued_at = match self.key.check(&d.nonce, realm, now(), self.nonce_lifetime.as_secs()) {
            NonceCheck::Valid { issued_at } => issued_at,
            NonceCheck::Stale => return self.challenge(realm, true),
            NonceCheck::Invalid => return self.challenge(realm, false),
        };
        // `alice` or `alice@example.com` (the form Kamailio's ha1b column serves) for From
        // `sip:alice@example.com`.
        if digest::account_user(&d.username, realm) != Some(user) {
            return Verdict::Forbid("authenticated user differs from From");
        }
        if !store.algorithms().contains(&d.algorithm) {
            return self.challenge(realm, false);
        }
        let account = key.as_str();
        if let Err(why) = self.guard.check(account, c.source, Instant::now()) {
            if let Some(n) = self.refused.note() {
                info!(source = %c.source, account, ?why, refused_so_far = n, "SIP Digest refused unchecked: too many failures");
            }
            return Verdict::Forbid("too many failures: blocked for a while");
        }
        if self.guard.nonce_spent(&d.nonce) {
            // One challenge serves a few wrong answers, not unlimited guesses.
            return self.challenge(realm, false);
        }
        let ha1 = match store.ha1(&d.username, realm, d.algorithm).await {
            Ok(Some(h)) => h,
            Ok(None) => return self.failed(c, account, &d.nonce, "unknown user"),
            // The store logs its failures (throttled).
            Err(_) => return Verdict::Unavailable("user store unavailable"),
        };
        if !d.verify(&ha1, c.method) {
            return self.failed(c, account, &d.nonce, "wrong password");
        }
        let fresh = self.counts.lock().map(|mut t| t.accept(&d.nonce, issued_at, d.nc.unwrap_or(1))).unwrap_or(false);
        if !fresh {
            return self.failed(c, account, &d.nonce, "nonce-count replayed");
        }
        self.guard.succeeded(account, c.source, Instant::now());
        match Identity::new(&c.from.1, c.from.0.as_deref()) {
            Some(id) => Verdict::Admit(id),
            None => Verdict::Malformed("no user in From"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msrp_auth::BoxFuture;

    struct OneUser;
    impl CredentialStore for OneUser {
        fn ha1<'a>(
            &'a self,
            user: &'a str,
            realm: &'a str,
            alg: Algorithm,
        ) -> BoxFuture<'a, Result<Option<String>, String>> {
            Box::pin(async move { Ok((user == "alice").then(|| digest::ha1(alg, user, realm, "pw"))) })
        }
    }

    fn claims(auth: Option<String>, source: &str) -> Claims<'static> {
        Claims {
            source: source.parse().unwrap(),
            reliable: true,
            method: "INVITE",
            from: (Some("Alice".into()), "sip:alice@example.com".into()),
            asserted: Some((None, "sip:boss@example.com".into())),
            authorization: auth,
            request_uri: "sip:lobby@chat.example.com".into(),
        }
    }

    fn answer(challenge: &str, user: &str, pw: &str, nc: u32) -> String {
        let c = msrp::header::Challenge::parse(challenge).unwrap();
        let uri = "sip:lobby@chat.example.com";
        digest::DigestResponse::answer(&c, user, pw, "INVITE", uri, nc, "abc").unwrap().header_value(true)
    }

    #[tokio::test]
    async fn trusted_untrusted_and_digest() {
        let trust: TrustFn = Arc::new(|ip: IpAddr| ip.is_loopback());
        let auth = Authenticator::new(trust, false, Some(Arc::new(OneUser)), Duration::from_secs(60));
        let Verdict::Admit(id) = auth.check(&claims(None, "127.0.0.1")).await else { panic!() };
        assert_eq!(id.uri, "sip:boss@example.com", "trusted: P-Asserted-Identity wins");
        let over_udp = Claims { reliable: false, ..claims(None, "127.0.0.1") };
        assert!(matches!(auth.check(&over_udp).await, Verdict::Challenge(_)), "UDP sources can be forged");
        let Verdict::Challenge(ch) = auth.check(&claims(None, "192.0.2.1")).await else { panic!() };
        assert!(ch[0].contains("MD5") && ch[1].contains("SHA-256") && ch[0].contains("realm=\"example.com\""));
        let good = answer(&ch[0], "alice", "pw", 1);
        let Verdict::Admit(id) = auth.check(&claims(Some(good.clone()), "192.0.2.1")).await else { panic!() };
        assert_eq!((id.uri.as_str(), id.display.as_deref()), ("sip:alice@example.com", Some("Alice")), "From, not PAI");
        assert_eq!(auth.check(&claims(Some(good), "192.0.2.1")).await, Verdict::Forbid("nonce-count replayed"));
        let wrong = answer(&ch[0], "alice", "nope", 1);
        assert_eq!(auth.check(&claims(Some(wrong), "192.0.2.1")).await, Verdict::Forbid("wrong password"));
        let other = answer(&ch[0], "bob", "pw", 1);
        assert_eq!(
            auth.check(&claims(Some(other), "192.0.2.1")).await,
            Verdict::Forbid("authenticated user differs from From")
        );
        // `user@domain` names the From's account only with the same user, exactly.
        for other in ["Alice@example.com", "alice@other.org"] {
            assert_eq!(
                auth.check(&claims(Some(answer(&ch[0], other, "pw", 1)), "192.0.2.1")).await,
                Verdict::Forbid("authenticated user differs from From"),
                "{other}"
            );
        }
        let forged = answer(&ch[0], "alice", "pw", 1).replace("nonce=\"", "nonce=\"x");
        assert!(matches!(auth.check(&claims(Some(forged), "192.0.2.1")).await, Verdict::Challenge(_)));
    }

    #[tokio::test]
    async fn guessing_is_bounded_per_account_and_per_nonce() {
        let trust: TrustFn = Arc::new(|_| false);
        let guard = Arc::new(AuthGuard::default());
        let auth = Authenticator::new(trust, false, Some(Arc::new(OneUser)), Duration::from_secs(60))
            .with_guard(guard.clone());
        // One nonce takes three wrong answers, then only a fresh challenge.
        let Verdict::Challenge(ch) = auth.check(&claims(None, "192.0.2.1")).await else { panic!() };
        let ch = ch[0].clone();
        for nc in 1..=3 {
            let v = auth.check(&claims(Some(answer(&ch, "alice", "guess", nc)), &format!("192.0.2.{nc}"))).await;
            assert_eq!(v, Verdict::Forbid("wrong password"));
        }
        let v = auth.check(&claims(Some(answer(&ch, "alice", "guess", 4)), "192.0.2.9")).await;
        assert!(matches!(v, Verdict::Challenge(_)), "the nonce is spent: {v:?}");
        // A fourth failure on a new nonce blocks alice: even her password is refused unchecked.
        let Verdict::Challenge(ch) = auth.check(&claims(None, "192.0.2.1")).await else { panic!() };
        let ch = ch[0].clone();
        let _ = auth.check(&claims(Some(answer(&ch, "alice", "guess", 1)), "198.51.100.1")).await;
        let v = auth.check(&claims(Some(answer(&ch, "alice", "pw", 2)), "203.0.113.1")).await;
        assert_eq!(v, Verdict::Forbid("too many failures: blocked for a while"));
        assert!(guard.check("alice@example.com", "203.0.113.1".parse().unwrap(), Instant::now()).is_err());
    }

    /// A table of MD5 hashes whose database has stopped answering.
    struct Md5OnlyDown;
    impl CredentialStore for Md5OnlyDown {
        fn ha1<'a>(&'a self, _: &'a str, _: &'a str, _: Algorithm) -> BoxFuture<'a, Result<Option<String>, String>> {
            Box::pin(async { Err("connection refused".to_owned()) })
        }
        fn algorithms(&self) -> &[Algorithm] {
            &[Algorithm::Md5]
        }
    }

    #[tokio::test]
    async fn only_verifiable_algorithms_and_503_while_the_store_is_down() {
        let trust: TrustFn = Arc::new(|_| false);
        let guard = Arc::new(AuthGuard::default());
        let auth = Authenticator::new(trust, false, Some(Arc::new(Md5OnlyDown)), Duration::from_secs(60))
            .with_guard(guard.clone());
        let Verdict::Challenge(ch) = auth.check(&claims(None, "192.0.2.1")).await else { panic!() };
        assert_eq!(ch.len(), 1, "no SHA-256 offered: {ch:?}");
        assert!(ch[0].contains("MD5"));
        // `alice@example.com` is the From's account as well as `alice`.
        let v = auth.check(&claims(Some(answer(&ch[0], "alice@example.com", "pw", 1)), "192.0.2.1")).await;
        assert_eq!(v, Verdict::Unavailable("user store unavailable"));
        for nc in 2..=10 {
            let v = auth.check(&claims(Some(answer(&ch[0], "alice", "pw", nc)), "192.0.2.1")).await;
            assert_eq!(v, Verdict::Unavailable("user store unavailable"));
        }
        assert!(
            guard.check("alice@example.com", "192.0.2.1".parse().unwrap(), Instant::now()).is_ok(),
            "an outage is not a guess"
        );
    }
}
