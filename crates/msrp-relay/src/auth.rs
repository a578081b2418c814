//! AUTH (RFC 4976 §5): Digest challenge, verification against the user store, session
//! creation and refresh, Expires bounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use msrp::header::{Header, Path};
use msrp::{Request, Response, StatusCode, Uri};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::conn::Conn;
use crate::digest::{self, DigestResponse, NonceCheck};
use crate::server::Shared;
use crate::sessions::Session;

pub(crate) struct AuthOutcome {
    pub response: Response,
    pub success: bool,
    /// A wrong password, unknown user, bad nonce or replay (not a first challenge, a stale
    /// nonce or an Expires out of bounds).
    pub counts_as_failure: bool,
    /// Refused unchecked: the account or address is blocked for guessing.
    pub blocked: bool,
}

fn reply(req: &Request, status: StatusCode, local: &Uri) -> Response {
    let from = req.headers.from_path().cloned().unwrap_or_else(|| Path::single(local.clone()));
    msrp::report::response_to(req.tid, status, &from, local)
}

fn challenge_response(shared: &Shared, req: &Request, local: &Uri, realm: &str, now: u64, stale: bool) -> Response {
    let nonce = shared.nonce_key.mint(realm, now);
    let mut resp = reply(req, StatusCode::UNAUTHORIZED, local);
    // SHA-256 first: clients take the first one they support (RFC 7616 §3.7). Only what the
    // store can verify: a table of MD5 hashes cannot check a SHA-256 answer.
    for &alg in shared.store.algorithms() {
        let _ = resp.headers.push(Header::WwwAuthenticate(Box::new(digest::challenge(
            alg,
            realm,
            &nonce,
            &shared.opaque,
            stale,
        ))));
    }
    resp
}

pub(crate) async fn handle(shared: &Arc<Shared>, conn: &Arc<Conn>, req: &Request, now: u64) -> AuthOutcome {
    let local = req.headers.to_path().map(|p| p.first().clone()).expect("routed AUTH has a To-Path");
    let realm = shared.opts.realm_for(local.host_unbracketed()).to_owned();
    let peer = conn.peer;
    let outcome =
        |response, success, counts_as_failure| AuthOutcome { response, success, counts_as_failure, blocked: false };
    // `auth_rate` per source address: beyond it, refused unchecked (not a guess).
    if !shared.throttle.admit_auth(peer.ip(), &realm, Instant::now()) {
        if let Some(n) = shared.refused_auth.note() {
            info!(%peer, %realm, refused_so_far = n, "AUTH refused: over auth_rate for this address");
        }
        let mut resp = reply(req, StatusCode::FORBIDDEN, &local);
        resp.comment = Some("Too many AUTH requests from this address".into());
        return outcome(resp, false, false);
    }
    let Some(creds) = req.headers.authorization() else {
        return outcome(challenge_response(shared, req, &local, &realm, now, false), false, false);
    };

    // Who is it: Digest (and the Authentication-Info then owed), or Basic where enabled.
    // Refused unchecked while the account or address is blocked for guessing (`guard`).
    let blocked = |user: &str| match shared.guard.check(&digest::account_key(user, &realm), peer.ip(), Instant::now()) {
        Ok(()) => false,
        Err(why) => {
            if let Some(n) = shared.blocked.note() {
                warn!(%peer, %user, %realm, ?why, blocked_so_far = n, "AUTH refused unchecked: too many failures");
            }
            true
        }
    };
    let failed = |user: &str, nonce: Option<&str>| {
        shared.guard.failed(&digest::account_key(user, &realm), peer.ip(), nonce, Instant::now());
    };
    let (verified_user, auth_info) = if creds.is_basic() {
        let user = creds.token68.as_deref().and_then(digest::parse_basic).map(|(u, _)| u).unwrap_or_default();
        if blocked(&user) {
            return AuthOutcome { blocked: true, ..outcome(reply(req, StatusCode::FORBIDDEN, &local), false, true) };
        }
        match verify_basic(shared, creds, &realm, conn.local.0).await {
            Ok(u) => (u, None),
            Err(why) => {
                if let Some(n) = shared.refused_auth.note() {
                    warn!(%peer, %realm, why, refused_so_far = n, "AUTH refused (Basic)");
                }
                // Only a guess counts, against the account and the connection (not Basic being
                // off, or the store).
                let guess = matches!(why, "wrong password" | "unknown user");
                if guess {
                    failed(&user, None);
                }
                return outcome(reply(req, StatusCode::FORBIDDEN, &local), false, guess);
            }
        }
    } else {
        let d = match DigestResponse::from_credentials(creds, local.as_str()) {
            Ok(d) => d,
            Err(e) => {
                if let Some(n) = shared.refused_auth.note() {
                    warn!(%peer, error = %e, refused_so_far = n, "AUTH with unusable Digest credentials");
                }
                return outcome(challenge_response(shared, req, &local, &realm, now, false), false, true);
            }
        };
        if blocked(&d.username) {
            return AuthOutcome { blocked: true, ..outcome(reply(req, StatusCode::FORBIDDEN, &local), false, true) };
        }
        if shared.guard.nonce_spent(&d.nonce) {
            // One challenge serves a few wrong answers, not unlimited guesses.
            return outcome(challenge_response(shared, req, &local, &realm, now, false), false, true);
        }
        match verify_digest(shared, &d, &realm, now).await {
            // One name per account (`alice@realm` is `alice`): sessions, quotas and rates
            // count it once.
            Ok(ha1) => {
                let user = digest::account_user(&d.username, &realm).unwrap_or(&d.username).to_owned();
                (user, Some(digest::authentication_info(&d, &ha1)))
            }
            Err(Failure::Stale) => {
                return outcome(challenge_response(shared, req, &local, &realm, now, true), false, false);
            }
            Err(Failure::Challenge(why)) => {
                if let Some(n) = shared.refused_auth.note() {
                    warn!(%peer, user = %d.username, %realm, why, refused_so_far = n, "AUTH refused");
                }
                return outcome(challenge_response(shared, req, &local, &realm, now, false), false, true);
            }
            Err(Failure::Unavailable(why)) => {
                // Not the client's fault, and not a verdict on the password: a 5xx at once,
                // never a hang or a silent close (issue 13).
                if let Some(n) = shared.refused_auth.note() {
                    warn!(%peer, user = %d.username, %realm, why, refused_so_far = n, "AUTH refused: not the client's fault");
                }
                let resp = reply(req, StatusCode::SERVER_ERROR, &local);
                return outcome(resp, false, false);
            }
            Err(Failure::Forbidden(why)) => {
                if let Some(n) = shared.refused_auth.note() {
                    warn!(%peer, user = %d.username, %realm, why, refused_so_far = n, "AUTH refused");
                }
                failed(&d.username, Some(&d.nonce));
                return outcome(reply(req, StatusCode::FORBIDDEN, &local), false, true);
            }
        }
    };

    // Expires (RFC 4976 §5.1): out of bounds → 423 naming the bound.
    let opts = &shared.opts;
    let expires = req.headers.expires().unwrap_or(opts.default_expires);
    if expires < opts.min_expires {
        let resp = reply(req, StatusCode::INTERVAL_OUT_OF_BOUNDS, &local).with(Header::MinExpires(opts.min_expires));
        return outcome(resp, false, false);
    }
    if expires > opts.max_expires {
        let resp = reply(req, StatusCode::INTERVAL_OUT_OF_BOUNDS, &local).with(Header::MaxExpires(opts.max_expires));
        return outcome(resp, false, false);
    }
    let Some(client) = req.headers.from_path().cloned() else {
        return outcome(reply(req, StatusCode::BAD_REQUEST, &local), false, false);
    };
    let until = Instant::now() + Duration::from_secs(u64::from(expires));
    let session_uri = match create_or_refresh(shared, conn, &local, client, &verified_user, &realm, until) {
        Ok(uri) => uri,
        Err((status, comment)) => {
            let mut resp = reply(req, status, &local);
            resp.comment = comment.map(Into::into);
            return outcome(resp, false, false);
        }
    };
    // The connection's reads are charged to this account's rates from now on.
    let _ = conn.throttle.get_or_init(|| shared.throttle.for_session(&verified_user, &realm));
    let mut resp = reply(req, StatusCode::OK, &local)
        .with(Header::UsePath(Path::single(session_uri.clone())))
        .with(Header::Expires(expires));
    if let Some(info) = auth_info {
        resp.headers.set(Header::AuthenticationInfo(Box::new(info)));
    }
    info!(%peer, user = %verified_user, %realm, session = %session_uri, expires, "AUTH accepted");
    shared.guard.succeeded(&digest::account_key(&verified_user, &realm), peer.ip(), Instant::now());
    outcome(resp, true, false)
}

enum Failure {
    /// Refused for a reason that is not a guess (the user store is down): not counted.
    Unavailable(&'static str),
    Stale,
    Challenge(&'static str),
    Forbidden(&'static str),
}

/// Checks realm, nonce, password and nonce-count; returns the stored HA1 (for rspauth).
async fn verify_digest(shared: &Shared, d: &DigestResponse, realm: &str, now: u64) -> Result<String, Failure> {
    if !d.realm.eq_ignore_ascii_case(realm) {
        return Err(Failure::Challenge("realm differs from the one challenged"));
    }
    let issued_at = match shared.nonce_key.check(&d.nonce, realm, now, shared.opts.nonce_lifetime.as_secs()) {
        NonceCheck::Valid { issued_at } => issued_at,
        NonceCheck::Stale => return Err(Failure::Stale),
        NonceCheck::Invalid => return Err(Failure::Challenge("nonce not issued by this relay")),
    };
    if !shared.store.algorithms().contains(&d.algorithm) {
        return Err(Failure::Challenge("an algorithm the user store cannot verify"));
    }
    let ha1 = match shared.store.ha1(&d.username, realm, d.algorithm).await {
        Ok(Some(h)) => h,
        Ok(None) => return Err(Failure::Forbidden("unknown user")),
        // The store logs its failures (throttled).
        Err(_) => return Err(Failure::Unavailable("user store unavailable")),
    };
    if !d.verify(&ha1, "AUTH") {
        return Err(Failure::Forbidden("wrong password"));
    }
    // Replay: every use of a nonce must carry a higher nonce-count; without qop a nonce is
    // good once.
    let nc = d.nc.unwrap_or(1);
    let fresh = crate::lock(&shared.nonce_counts).accept(&d.nonce, issued_at, nc);
    if !fresh {
        return Err(Failure::Forbidden("nonce-count replayed"));
    }
    Ok(ha1)
}

/// Basic authentication (RFC 7617), only over TLS and only in the configured domains.
async fn verify_basic(
    shared: &Shared,
    creds: &msrp::header::Credentials,
    realm: &str,
    tls: bool,
) -> Result<String, &'static str> {
    if !tls || !shared.opts.basic_auth_domains.iter().any(|d| d.eq_ignore_ascii_case(realm)) {
        return Err("Basic authentication is not enabled here");
    }
    let (user, password) =
        creds.token68.as_deref().and_then(digest::parse_basic).ok_or("malformed Basic credentials")?;
    // The password is in hand: any HA1 the store keeps for the account checks it.
    for &alg in shared.store.algorithms() {
        let stored = shared.store.ha1(&user, realm, alg).await.map_err(|_| "user store unavailable")?;
        if let Some(stored) = stored {
            let computed = digest::ha1(alg, &user, realm, &password);
            return if bool::from(computed.as_bytes().ct_eq(stored.as_bytes())) {
                Ok(user)
            } else {
                Err("wrong password")
            };
        }
    }
    Err("unknown user")
}

/// A new session (To-Path without session-id) or the refresh of the one named.
fn create_or_refresh(
    shared: &Shared,
    conn: &Conn,
    local: &Uri,
    client: Path,
    user: &str,
    realm: &str,
    until: Instant,
) -> Result<Uri, (StatusCode, Option<&'static str>)> {
    let mut sessions = crate::lock(&shared.sessions);
    if let Some(sid) = local.session_id() {
        let now = Instant::now();
        let s = sessions.get(sid, now).ok_or((StatusCode::SESSION_DOES_NOT_EXIST, None))?;
        if s.conn != conn.id || s.user != user || !s.realm.eq_ignore_ascii_case(realm) {
            return Err((StatusCode::FORBIDDEN, None));
        }
        let s = sessions.refresh(sid, now, until).ok_or((StatusCode::SESSION_DOES_NOT_EXIST, None))?;
        return Ok(s.uri.clone());
    }
    if sessions.count_on(conn.id) >= shared.opts.max_sessions_per_connection {
        info!(conn = conn.id, peer = %conn.peer, limit = shared.opts.max_sessions_per_connection, "AUTH refused: too many sessions on this connection");
        return Err((StatusCode::FORBIDDEN, Some("Too many sessions on this connection")));
    }
    if let Some(limit) = shared.throttle.limits(realm).user_sessions
        && sessions.count_of(user, realm) >= limit
    {
        info!(conn = conn.id, peer = %conn.peer, user, realm, limit, "AUTH refused: the account has user_sessions sessions already");
        return Err((StatusCode::FORBIDDEN, Some("Too many sessions for this account")));
    }
    let sid = msrp::id::random_session_id();
    let (secure, port) = conn.local;
    let uri = Uri::new(secure, &shared.opts.hostname, (port != 0).then_some(port), Some(&sid))
        .map_err(|_| (StatusCode(500), None))?;
    sessions.insert(Session {
        id: sid,
        uri: uri.clone(),
        conn: conn.id,
        client,
        user: user.to_owned(),
        realm: realm.to_owned(),
        expires: until,
    });
    Ok(uri)
}
