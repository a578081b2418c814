//! HTTP Digest for MSRP AUTH (RFC 4976 §5: RFC 2617 / RFC 7616 Digest with method `AUTH` and
//! the To-Path URI as digest-uri), and the same for SIP requests to the chat. The server side
//! first: passwords are never stored, only HA1, which is all that checking a response or
//! computing `rspauth` needs. Nonces are stateless (an HMAC binds issue time and realm), so only
//! the nonce-counts of nonces in use are kept, in a bounded table. A client's answer
//! ([`DigestResponse::answer`]) is computed by the rule the check uses.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use md5::{Digest as _, Md5};
use msrp::header::{AuthParam, AuthenticationInfo, Challenge, Credentials};
use rand::{Rng as _, RngExt as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The Digest `algorithm=` values the relay offers (RFC 7616 §3.3); not the `-sess` variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Case-insensitive. An absent `algorithm=` means MD5 (RFC 7616 §3.3); callers pass "MD5".
    pub fn parse(s: &str) -> Option<Self> {
        [Algorithm::Md5, Algorithm::Sha256].into_iter().find(|a| a.name().eq_ignore_ascii_case(s))
    }

    /// H(data) as lowercase hex, the form every Digest intermediate value takes.
    pub fn hash_hex(self, data: &[u8]) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = match self {
            Algorithm::Md5 => Md5::digest(data).to_vec(),
            Algorithm::Sha256 => Sha256::digest(data).to_vec(),
        };
        digest.iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]).map(char::from).collect()
    }
}

/// The user a Digest `username` names in `realm`: `alice`, or `alice@REALM` with the
/// realm in any case (the form Kamailio's `ha1b` column serves). A name qualified with another
/// domain names no account of this realm (None): each realm checks its own accounts.
pub fn account_user<'a>(username: &'a str, realm: &str) -> Option<&'a str> {
    match username.rsplit_once('@') {
        None => Some(username),
        Some((user, domain)) if !user.is_empty() && domain.eq_ignore_ascii_case(realm) => Some(user),
        Some(_) => None,
    }
}

/// The key failures are counted under (`guard`): one per account, whichever form of its
/// name a client sends and whichever door (relay AUTH, chat INVITE) it comes through.
pub fn account_key(username: &str, realm: &str) -> String {
    let realm = realm.to_ascii_lowercase();
    match account_user(username, &realm) {
        Some(user) => format!("{user}@{realm}"),
        None => format!("{username}@{realm}"),
    }
}

/// HA1 = H(user ":" realm ":" password), lowercase hex (RFC 7616 §3.4.2): stored, not passwords.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{user}:{realm}:{password}").as_bytes())
}

/// issued_at (8) + random (12): the signed part of a nonce, followed by 16 bytes of MAC.
const NONCE_SIGNED_LEN: usize = 20;
const NONCE_LEN: usize = NONCE_SIGNED_LEN + 16;
/// Clock skew tolerated between relays sharing one key.
const MAX_FUTURE_SKEW_SECS: u64 = 60;

/// Server secret for stateless, integrity-protected, time-limited nonces: the relay need not
/// remember the nonces it hands out, yet can tell its own from forged or expired ones.
pub struct NonceKey {
    secret: [u8; 32],
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey").finish_non_exhaustive()
    }
}

impl NonceKey {
    /// A fresh secret: nonces die with the process, and their holders just get a new challenge.
    pub fn random() -> Self {
        NonceKey { secret: rand::rng().random() }
    }

    /// A configured secret, so relays behind one name can check each other's nonces.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        NonceKey { secret }
    }

    fn mac(&self, signed: &[u8], realm: &str) -> Hmac<Sha256> {
        let mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.chain_update(signed).chain_update(realm)
    }

    /// base64url-nopad(issued_at u64 BE ‖ 12 random bytes ‖ HMAC-SHA256(secret, issued_at ‖
    /// random ‖ realm)[..16]): 36 bytes are exactly 48 characters with no spare bits, so each
    /// nonce has one textual form, which [`NonceCounts`] relies on.
    pub fn mint(&self, realm: &str, now_unix_secs: u64) -> String {
        let mut raw = [0u8; NONCE_LEN];
        raw[..8].copy_from_slice(&now_unix_secs.to_be_bytes());
        rand::rng().fill_bytes(&mut raw[8..NONCE_SIGNED_LEN]);
        let tag = self.mac(&raw[..NONCE_SIGNED_LEN], realm).finalize().into_bytes();
        raw[NONCE_SIGNED_LEN..].copy_from_slice(&tag[..NONCE_LEN - NONCE_SIGNED_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was minted by this key for `realm` and is still fresh. A stale nonce earns
    /// a challenge with `stale=true` (RFC 7616 §3.3): the client retries without asking the user.
    pub fn check(&self, nonce: &str, realm: &str, now_unix_secs: u64, lifetime_secs: u64) -> NonceCheck {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else { return NonceCheck::Invalid };
        let Ok(raw) = <[u8; NONCE_LEN]>::try_from(raw.as_slice()) else { return NonceCheck::Invalid };
        let (signed, tag) = raw.split_at(NONCE_SIGNED_LEN);
        if self.mac(signed, realm).verify_truncated_left(tag).is_err() {
            return NonceCheck::Invalid;
        }
        let issued_at = raw[..8].iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
        if issued_at > now_unix_secs.saturating_add(MAX_FUTURE_SKEW_SECS) {
            NonceCheck::Invalid
        } else if now_unix_secs.saturating_sub(issued_at) > lifetime_secs {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid { issued_at }
        }
    }
}

/// The verdict of [`NonceKey::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, for this realm, within its lifetime.
    Valid { issued_at: u64 },
    /// Ours but older than the lifetime: challenge again with `stale=true`.
    Stale,
    /// Not ours, not for this realm, malformed, or dated more than 60 s in the future.
    Invalid,
}

/// Bounded memory of the highest nonce-count seen per nonce, to refuse replays (RFC 7616 §3.4:
/// the client increments nc for each request with the same nonce). When full, the nonces with
/// the oldest issue time are forgotten and every nonce issued at or before it is refused from
/// then on, so an evicted nonce cannot be replayed from nc=1. Call [`NonceCounts::accept`] only
/// after the response verified, so that strangers cannot churn the table.
#[derive(Debug)]
pub struct NonceCounts {
    capacity: usize,
    counts: HashMap<String, u32>,
    by_age: BTreeMap<u64, Vec<String>>,
    /// Nonces issued at or before this time are refused (their entries may have been evicted).
    floor: Option<u64>,
}

impl NonceCounts {
    /// A table holding at most `capacity` nonces (at least one).
    pub fn new(capacity: usize) -> Self {
        NonceCounts { capacity: capacity.max(1), counts: HashMap::new(), by_age: BTreeMap::new(), floor: None }
    }

    /// `true` when `nc` is greater than any count seen for `nonce` (then records it). Pass
    /// `issued_at` from [`NonceCheck::Valid`]. Never grows beyond the capacity.
    pub fn accept(&mut self, nonce: &str, issued_at: u64, nc: u32) -> bool {
        if let Some(seen) = self.counts.get_mut(nonce) {
            let fresh = nc > *seen;
            *seen = (*seen).max(nc);
            return fresh;
        }
        if self.floor.is_some_and(|floor| issued_at <= floor) {
            return false;
        }
        while self.counts.len() >= self.capacity {
            // A newcomer no younger than the oldest entries is refused rather than evicting them.
            let Some(entry) = self.by_age.first_entry().filter(|e| *e.key() < issued_at) else { return false };
            let (oldest, nonces) = entry.remove_entry();
            for n in &nonces {
                self.counts.remove(n);
            }
            self.floor = Some(oldest);
        }
        self.counts.insert(nonce.to_owned(), nc);
        self.by_age.entry(issued_at).or_default().push(nonce.to_owned());
        true
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// The fields of a Digest Authorization, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The digest-uri: `uri=` if sent, else the AUTH To-Path URI.
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// `auth` when present (as sent; it enters the hash verbatim).
    pub qop: Option<String>,
    pub nc: Option<u32>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

/// Why an Authorization header is not a usable Digest response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not Digest credentials")]
    NotDigest,
    #[error("missing Digest parameter {0}")]
    Missing(&'static str),
    #[error("unsupported Digest algorithm {0:?}")]
    BadAlgorithm(String),
    #[error("unsupported qop {0:?} (only auth is offered)")]
    BadQop(String),
    #[error("nonce-count {0:?} is not 8 lowercase hex digits")]
    BadNonceCount(String),
    #[error("digest uri does not match the To-Path URI")]
    UriMismatch,
}

impl DigestResponse {
    /// From an Authorization header. `default_uri` (the AUTH To-Path URI) stands in for an absent
    /// `uri=`; a present one must name the same URI, or the response may be meant for another
    /// relay. qop must be `auth` (auth-int is not offered) and then needs nc (8LHEX, RFC 7616
    /// §3.4) and cnonce; without qop (the RFC 2069 form) nc and cnonce are ignored.
    pub fn from_credentials(creds: &Credentials, default_uri: &str) -> Result<Self, DigestError> {
        if !creds.is_digest() {
            return Err(DigestError::NotDigest);
        }
        let required = |name: &'static str| creds.param(name).map(str::to_owned).ok_or(DigestError::Missing(name));
        let uri = match creds.param("uri") {
            None => default_uri.to_owned(),
            Some(uri) if same_uri(uri, default_uri) => uri.to_owned(),
            Some(_) => return Err(DigestError::UriMismatch),
        };
        let alg_text = creds.param("algorithm").unwrap_or("MD5");
        let algorithm = Algorithm::parse(alg_text).ok_or_else(|| DigestError::BadAlgorithm(alg_text.to_owned()))?;
        let (qop, nc, cnonce) = match creds.param("qop") {
            None => (None, None, None),
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc_text = creds.param("nc").ok_or(DigestError::Missing("nc"))?;
                let nc = parse_nc(nc_text).ok_or_else(|| DigestError::BadNonceCount(nc_text.to_owned()))?;
                (Some(q.to_owned()), Some(nc), Some(required("cnonce")?))
            }
            Some(q) => return Err(DigestError::BadQop(q.to_owned())),
        };
        Ok(DigestResponse {
            username: required("username")?,
            realm: required("realm")?,
            nonce: required("nonce")?,
            uri,
            response: required("response")?,
            algorithm,
            qop,
            nc,
            cnonce,
            opaque: creds.param("opaque").map(str::to_owned),
        })
    }

    /// Constant-time check of `response` against the value expected from the stored HA1 (hex,
    /// of `self.algorithm`) and `method` (`AUTH` for MSRP): RFC 7616 §3.4.1 with qop=auth,
    /// or the RFC 2069 form H(HA1:nonce:HA2) without qop.
    pub fn verify(&self, ha1_hex: &str, method: &str) -> bool {
        let received = self.response.to_ascii_lowercase();
        self.compute(ha1_hex, method).as_bytes().ct_eq(received.as_bytes()).into()
    }

    /// `rspauth` for Authentication-Info (RFC 7616 §3.5): the response computed with
    /// HA2 = H(":" uri), proving to the client that the relay knows HA1 too.
    pub fn rspauth(&self, ha1_hex: &str) -> String {
        self.compute(ha1_hex, "")
    }

    /// The client's side (RFC 7616 §3.4, qop=auth): `user`'s answer to `challenge` for
    /// `method` on `uri`, with nonce-count `nc` and client nonce `cnonce`, computed by the rule
    /// [`DigestResponse::verify`] checks. `None` when the challenge lacks a realm or nonce or
    /// names an algorithm not offered here. Used by the load generator and the tests (MSRP
    /// AUTH and SIP alike), and by whatever client msrpd may grow.
    pub fn answer(
        challenge: &Challenge,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> Option<Self> {
        let algorithm = Algorithm::parse(challenge.algorithm())?;
        let realm = challenge.realm()?.to_owned();
        let mut answer = DigestResponse {
            username: user.to_owned(),
            nonce: challenge.nonce()?.to_owned(),
            uri: uri.to_owned(),
            response: String::new(),
            algorithm,
            qop: Some("auth".to_owned()),
            nc: Some(nc),
            cnonce: Some(cnonce.to_owned()),
            opaque: challenge.opaque().map(str::to_owned),
            realm,
        };
        answer.response = answer.compute(&ha1(algorithm, user, &answer.realm, password), method);
        Some(answer)
    }

    /// The Authorization header value of [`DigestResponse::answer`]. Without `uri=` when
    /// `with_uri` is false: MSRP lets the AUTH To-Path URI stand in for it (RFC 4976 §5.1).
    pub fn header_value(&self, with_uri: bool) -> String {
        let mut v = format!(
            r#"Digest username="{}", realm="{}", nonce="{}", response="{}", algorithm={}"#,
            self.username,
            self.realm,
            self.nonce,
            self.response,
            self.algorithm.name()
        );
        if with_uri {
            v.push_str(&format!(r#", uri="{}""#, self.uri));
        }
        if let (Some(qop), Some(nc), Some(cnonce)) = (&self.qop, self.nc, &self.cnonce) {
            v.push_str(&format!(r#", qop={qop}, nc={nc:08x}, cnonce="{cnonce}""#));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(r#", opaque="{o}""#));
        }
        v
    }

    fn compute(&self, ha1_hex: &str, method: &str) -> String {
        let alg = self.algorithm;
        let ha2 = alg.hash_hex(format!("{method}:{}", self.uri).as_bytes());
        let data = match (&self.qop, self.nc, &self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) => format!("{ha1_hex}:{}:{nc:08x}:{cnonce}:{qop}:{ha2}", self.nonce),
            _ => format!("{ha1_hex}:{}:{ha2}", self.nonce),
        };
        alg.hash_hex(data.as_bytes())
    }
}

/// nc-value = 8LHEX: lowercase only, so `{:08x}` reprints exactly the text the client hashed.
fn parse_nc(s: &str) -> Option<u32> {
    let ok = s.len() == 8 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| u32::from_str_radix(s, 16).ok()).flatten()
}

/// RFC 4975 §6.1 comparison when both are MSRP URIs, else exact text.
fn same_uri(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<msrp::Uri>(), b.parse::<msrp::Uri>()), (Ok(a), Ok(b)) if a == b)
}

/// A challenge header value for a 401 (RFC 7616 §3.3):
/// `Digest realm="..", nonce="..", opaque="..", qop="auth", algorithm=<alg>[, stale=true]`.
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, opaque: &str, stale: bool) -> Challenge {
    let mut params = vec![
        AuthParam::quoted("realm", realm),
        AuthParam::quoted("nonce", nonce),
        AuthParam::quoted("opaque", opaque),
        AuthParam::quoted("qop", "auth"),
        AuthParam::token("algorithm", alg.name()),
    ];
    params.extend(stale.then(|| AuthParam::token("stale", "true")));
    Challenge { scheme: "Digest".to_owned(), params }
}

/// Authentication-Info for the 200 to AUTH (RFC 7616 §3.5):
/// `qop=auth, rspauth="..", cnonce="..", nc=........` (qop, cnonce, nc only if the request had qop).
pub fn authentication_info(resp: &DigestResponse, ha1_hex: &str) -> AuthenticationInfo {
    let mut params = vec![AuthParam::quoted("rspauth", resp.rspauth(ha1_hex))];
    if let (Some(qop), Some(nc), Some(cnonce)) = (&resp.qop, resp.nc, &resp.cnonce) {
        params.insert(0, AuthParam::token("qop", qop.as_str()));
        params.extend([AuthParam::quoted("cnonce", cnonce.as_str()), AuthParam::token("nc", format!("{nc:08x}"))]);
    }
    AuthenticationInfo { params }
}

/// Basic credentials (RFC 7617 §2): the token68 of `Authorization: Basic` → (user, password).
/// `None` if not valid base64, not UTF-8, or without the `:` separator.
pub fn parse_basic(token68: &str) -> Option<(String, String)> {
    let text = String::from_utf8(STANDARD.decode(token68).ok()?).ok()?;
    text.split_once(':').map(|(user, password)| (user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_of_a_name_are_one_account() {
        assert_eq!(account_user("alice", "example.com"), Some("alice"));
        assert_eq!(account_user("alice@EXAMPLE.com", "example.com"), Some("alice"));
        assert_eq!(account_user("alice@other.org", "example.com"), None, "another realm's account");
        assert_eq!(account_user("@example.com", "example.com"), None);
        assert_eq!(account_key("alice@Example.COM", "example.com"), account_key("alice", "EXAMPLE.com"));
        assert_ne!(account_key("Alice", "example.com"), account_key("alice", "example.com"), "users keep their case");
    }

    const TO_PATH: &str = "msrps://relay.example.com:2855;tcp";

    fn parse(text: &str, default_uri: &str) -> Result<DigestResponse, DigestError> {
        DigestResponse::from_credentials(&Credentials::parse(text).unwrap(), default_uri)
    }

    #[test]
    fn rfc7616_section_3_9_1_vectors() {
        let (realm, uri) = ("http-auth@example.org", "/dir/index.html");
        for (alg, expected) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (Algorithm::Sha256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ] {
            let text = [
                r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html""#,
                r#"nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, qop=auth"#,
                r#"cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ""#,
                &format!(r#"response="{expected}", algorithm={}"#, alg.name().to_lowercase()),
            ];
            let r = parse(&text.join(", "), uri).unwrap();
            assert!(r.verify(&ha1(alg, "Mufasa", realm, "Circle of Life"), "GET"), "{alg:?}");
            assert!(!r.verify(&ha1(alg, "Mufasa", realm, "Circle of life"), "GET"), "{alg:?} wrong password");
            assert!(!r.verify(&ha1(alg, "Mufasa", realm, "Circle of Life"), "AUTH"), "{alg:?} wrong method");
        }
        assert_eq!(ha1(Algorithm::Md5, "Mufasa", realm, "Circle of Life"), "3d78807defe7de2157e2b0b6573a855f");
    }

    #[test]
    fn a_clients_answer_is_what_the_server_checks() {
        // RFC 7616 §3.9.1 again, from the client's side.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let c = challenge(
            Algorithm::Sha256,
            "http-auth@example.org",
            nonce,
            "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
            false,
        );
        let a = DigestResponse::answer(&c, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, cnonce).unwrap();
        assert_eq!(a.response, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
        // Its header, read back by the server, verifies; without uri= the To-Path stands in.
        let ha1_hex = ha1(Algorithm::Sha256, "Mufasa", "http-auth@example.org", "Circle of Life");
        for with_uri in [true, false] {
            let back = parse(&a.header_value(with_uri), "/dir/index.html").unwrap();
            assert_eq!(back, a, "with_uri={with_uri}");
            assert!(back.verify(&ha1_hex, "GET"));
        }
        let no_nonce = Challenge::parse(r#"Digest realm="r", algorithm=MD5"#).unwrap();
        assert!(DigestResponse::answer(&no_nonce, "u", "p", "AUTH", "x", 1, "c").is_none());
    }

    #[test]
    fn nonces() {
        let key = NonceKey::from_secret([7; 32]);
        let nonce = key.mint("r", 1000);
        assert_eq!(nonce.len(), 48);
        assert_eq!(key.check(&nonce, "r", 1030, 300), NonceCheck::Valid { issued_at: 1000 });
        assert_eq!(key.check(&nonce, "r", 1301, 300), NonceCheck::Stale);
        assert_eq!(key.check(&nonce, "r", 900, 300), NonceCheck::Invalid, "more than 60 s in the future");
        assert_eq!(key.check(&nonce, "other", 1030, 300), NonceCheck::Invalid);
        assert_eq!(NonceKey::from_secret([8; 32]).check(&nonce, "r", 1030, 300), NonceCheck::Invalid);
        for i in [0, 10, 30, 47] {
            let mut t = nonce.clone();
            t.replace_range(i..=i, if &nonce[i..=i] == "A" { "B" } else { "A" });
            assert_eq!(key.check(&t, "r", 1030, 300), NonceCheck::Invalid, "tampered at {i}");
        }
        for garbage in ["", "abc", "!!!!", &nonce[..47], &format!("{nonce}AAAA")] {
            assert_eq!(key.check(garbage, "r", 1030, 300), NonceCheck::Invalid, "{garbage:?}");
        }
        assert_ne!(key.mint("r", 1000), nonce, "random part");
        assert_eq!(format!("{key:?}"), "NonceKey { .. }");
    }

    #[test]
    fn nonce_counts_refuse_replays_and_stay_bounded() {
        let mut counts = NonceCounts::new(3);
        assert!(counts.is_empty() && counts.accept("a", 10, 1));
        assert!(!counts.accept("a", 10, 1), "replay");
        assert!(counts.accept("a", 10, 3));
        assert!(!counts.accept("a", 10, 2), "lower");
        assert!(counts.accept("b", 11, 1) && counts.accept("c", 12, 1));
        assert!(counts.accept("d", 13, 1), "evicts a, the oldest");
        assert_eq!(counts.len(), 3);
        assert!(!counts.accept("a", 10, 1), "an evicted nonce cannot start over");
        assert!(counts.accept("b", 11, 2), "b was kept");
        assert!(!counts.accept("old", 11, 1) && counts.accept("b", 11, 3), "no eviction for an old newcomer");
        for i in 20..30 {
            assert!(counts.accept(&i.to_string(), i, 1) && counts.len() <= 3);
        }
        assert!(NonceCounts::new(0).accept("x", 1, 1), "capacity is at least one");
    }

    #[test]
    fn from_credentials() {
        let base = r#"Digest username="alice", realm="r", nonce="n", qop=auth, nc=0000000a, cnonce="c", response="x""#;
        let r = parse(base, TO_PATH).unwrap();
        assert_eq!((r.uri.as_str(), r.nc, r.algorithm), (TO_PATH, Some(10), Algorithm::Md5));
        let same = r#", uri="MSRPS://Relay.Example.com:2855;TCP""#;
        assert_eq!(parse(&format!("{base}{same}"), TO_PATH).unwrap().uri, "MSRPS://Relay.Example.com:2855;TCP");
        let other = r#", uri="msrps://evil.example.com:2855;tcp""#;
        assert_eq!(parse(&format!("{base}{other}"), TO_PATH), Err(DigestError::UriMismatch));
        let err = |text: &str| parse(text, TO_PATH).unwrap_err();
        assert_eq!(err(r#"Digest realm="r", nonce="n", response="x""#), DigestError::Missing("username"));
        assert_eq!(err(&base.replace("qop=auth", "qop=auth-int")), DigestError::BadQop("auth-int".into()));
        assert_eq!(err(&base.replace("0000000a", "0000000g")), DigestError::BadNonceCount("0000000g".into()));
        assert_eq!(err(&base.replace("0000000a", "0000000A")), DigestError::BadNonceCount("0000000A".into()));
        assert_eq!(err(&base.replace("nc=0000000a, ", "")), DigestError::Missing("nc"));
        assert_eq!(err(&format!("{base}, algorithm=MD5-sess")), DigestError::BadAlgorithm("MD5-sess".into()));
        assert_eq!(err("Basic YWxpY2U6c2VjcmV0"), DigestError::NotDigest);
    }

    #[test]
    fn auth_with_and_without_qop_and_rspauth() {
        let h = ha1(Algorithm::Sha256, "alice", "r", "secret");
        let text = r#"Digest username="alice", realm="r", nonce="n", qop=auth, nc=00000001, cnonce="c", response="""#;
        let mut r = parse(&format!("{text}, algorithm=SHA-256"), TO_PATH).unwrap();
        r.response = r.compute(&h, "AUTH");
        assert!(r.verify(&h, "AUTH"));
        assert_ne!(r.rspauth(&h), r.response);
        let info = authentication_info(&r, &h).to_string();
        assert_eq!(info, format!(r#"qop=auth, rspauth="{}", cnonce="c", nc=00000001"#, r.rspauth(&h)));
        let mut legacy = DigestResponse { qop: None, nc: None, cnonce: None, ..r };
        let ha2 = Algorithm::Sha256.hash_hex(format!("AUTH:{TO_PATH}").as_bytes());
        legacy.response = Algorithm::Sha256.hash_hex(format!("{h}:n:{ha2}").as_bytes()).to_uppercase();
        assert!(legacy.verify(&h, "AUTH"), "RFC 2069 form");
        assert_eq!(authentication_info(&legacy, &h).params.len(), 1);
    }

    #[test]
    fn challenge_and_basic() {
        let c = challenge(Algorithm::Sha256, "r", "n", "o", false);
        assert_eq!(c.to_string(), r#"Digest realm="r", nonce="n", opaque="o", qop="auth", algorithm=SHA-256"#);
        let stale = challenge(Algorithm::Md5, "r", "n", "o", true).to_string();
        assert!(stale.ends_with(r#"qop="auth", algorithm=MD5, stale=true"#), "{stale}");
        assert!(Challenge::parse(&stale).unwrap().stale());
        assert_eq!(parse_basic(&STANDARD.encode("alice:se:cret")), Some(("alice".into(), "se:cret".into())));
        assert_eq!(parse_basic("YWxpY2U6"), Some(("alice".into(), String::new())));
        assert_eq!(parse_basic(&STANDARD.encode("alice")), None, "no colon");
        assert_eq!(parse_basic("!!!"), None, "not base64");
        assert_eq!(parse_basic(&STANDARD.encode([0xff, b':', 0xfe])), None, "not UTF-8");
    }
}
