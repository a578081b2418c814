//! Where a request goes (RFC 4976 §6–7), decided from its paths, the connection it arrived
//! on and the session table — no sockets, so every rule is unit-tested.

use std::time::Instant;

use msrp::header::Path;
use msrp::{Method, Request, StatusCode, Uri};

use crate::options::RelayOptions;
use crate::sessions::{ConnId, Session, Sessions};

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// An AUTH for this relay: challenge, create or refresh a session.
    Auth,
    /// Hand the request to the client of session `sid` on its connection, with these paths.
    Deliver { sid: String, conn: ConnId, to: Path, from: Path },
    /// Send the request on to `to.first()`, another relay or the far endpoint, for the client
    /// of session `sid` (over the connection that hop opened to us, when there is one).
    Forward { sid: String, to: Path, from: Path },
    /// Refuse with this status.
    Reject(StatusCode, &'static str),
}

/// Methods relayed by default (RFC 4976 §7: SEND and REPORT; RFC 7701 adds NICKNAME).
fn forwardable(method: &Method, opts: &RelayOptions) -> bool {
    match method {
        Method::Send | Method::Report | Method::Nickname | Method::Auth => true,
        Method::Other(m) => opts.extra_methods.iter().any(|x| x == &**m),
    }
}

fn is_me(uri: &Uri, opts: &RelayOptions) -> bool {
    opts.is_me(uri)
}

/// Paths equal hop by hop (RFC 4975 §6.1 comparison of each URI).
fn same_path(a: &Path, b: &Path) -> bool {
    a.uris() == b.uris()
}

fn prepend(uri: &Uri, path: &Path) -> Path {
    let mut p = path.clone();
    p.push_front(uri.clone());
    p
}

/// Decides the fate of `req`, which arrived on connection `conn`.
pub fn route(req: &Request, conn: ConnId, sessions: &Sessions, opts: &RelayOptions, now: Instant) -> Route {
    let (Some(to), Some(from)) = (req.headers.to_path(), req.headers.from_path()) else {
        return Route::Reject(StatusCode::BAD_REQUEST, "missing To-Path or From-Path");
    };
    route_paths(&req.method, to, from, conn, sessions, opts, now)
}

/// [`route`] from the method and paths alone (the fast path has no `Request`).
pub fn route_paths(
    method: &Method,
    to: &Path,
    from: &Path,
    conn: ConnId,
    sessions: &Sessions,
    opts: &RelayOptions,
    now: Instant,
) -> Route {
    let me = to.first();
    if !is_me(me, opts) {
        return Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, "To-Path does not start with this relay");
    }
    if *method == Method::Auth && to.len() == 1 {
        return Route::Auth;
    }
    if !forwardable(method, opts) {
        return Route::Reject(StatusCode::NOT_IMPLEMENTED, "method not relayed");
    }
    let Some(session) = me.session_id().and_then(|sid| sessions.get(sid, now)) else {
        return Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, "no such relay session");
    };
    let mut rest = to.clone();
    if rest.pop_front().is_none() {
        return Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, "nothing to relay to");
    }
    if conn != session.conn {
        // From elsewhere (another relay, the far client, or a connection that never
        // authenticated): only into this session, toward its client (RFC 4976 §7).
        return deliver(session, rest, prepend(&session.uri, from));
    }
    // From the session's own client: it must still be who authenticated.
    if !same_path(from, &session.client) {
        return Route::Reject(StatusCode::FORBIDDEN, "From-Path differs from the one authenticated");
    }
    let from = prepend(&session.uri, from);
    let next = rest.first();
    if is_me(next, opts) {
        // Both ends use this relay: step into the other session as if it came from elsewhere.
        let Some(other) = next.session_id().and_then(|sid| sessions.get(sid, now)) else {
            return Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, "no such relay session");
        };
        if rest.pop_front().is_none() {
            return Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, "nothing to relay to");
        }
        return deliver(other, rest, prepend(&other.uri, &from));
    }
    Route::Forward { sid: session.id.clone(), to: rest, from }
}

/// After routing a request that arrived on `conn` with From-Path `from`: a delivery into a
/// session from a connection other than its client's teaches the session where that
/// previous hop can be reached ([`Sessions::note_peer`]).
pub fn remember_peer(route: &Route, from: &Path, conn: ConnId, sessions: &mut Sessions) {
    if let Route::Deliver { sid, conn: target, .. } = route
        && *target != conn
    {
        sessions.note_peer(sid, from.first(), conn);
    }
}

fn deliver(session: &Session, to: Path, from: Path) -> Route {
    if to.first() != session.client.first() {
        return Route::Reject(StatusCode::FORBIDDEN, "this connection may only deliver to the session's client");
    }
    Route::Deliver { sid: session.id.clone(), conn: session.conn, to, from }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msrp::header::Header;
    use std::time::Duration;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn path(s: &str) -> Path {
        Path::new(s.split(' ').map(uri).collect()).unwrap()
    }

    fn req(method: Method, to: &str, from: &str) -> Request {
        Request::new("abcd".parse().unwrap(), method).with(Header::ToPath(path(to))).with(Header::FromPath(path(from)))
    }

    fn setup() -> (Sessions, RelayOptions, Instant) {
        let opts = RelayOptions { hostname: "relay.example.com".into(), ..RelayOptions::default() };
        let now = Instant::now();
        let mut s = Sessions::default();
        for (id, conn, client) in [("sa", 1, "msrp://a:1/a;tcp"), ("sb", 2, "msrp://b:2/b;tcp")] {
            s.insert(Session {
                id: id.into(),
                uri: uri(&format!("msrps://relay.example.com:2855/{id};tcp")),
                conn,
                client: path(client),
                user: id.into(),
                realm: "example.com".into(),
                expires: now + Duration::from_secs(600),
            });
        }
        (s, opts, now)
    }

    const A: &str = "msrp://a:1/a;tcp";
    const B: &str = "msrp://b:2/b;tcp";
    const RA: &str = "msrps://relay.example.com:2855/sa;tcp";
    const RB: &str = "msrps://relay.example.com:2855/sb;tcp";

    #[test]
    fn both_sessions_on_this_relay() {
        let (s, o, now) = setup();
        let r = route(&req(Method::Send, &format!("{RA} {RB} {B}"), A), 1, &s, &o, now);
        assert_eq!(r, Route::Deliver { sid: "sb".into(), conn: 2, to: path(B), from: path(&format!("{RB} {RA} {A}")) });
    }

    #[test]
    fn another_service_on_the_relays_host_is_a_next_hop() {
        // msrpd's chat focus listens on the relay's host at another port (RFC 4975 §6.1:
        // URIs with different ports differ).
        let (s, mut o, now) = setup();
        o.ports = vec![2855];
        let focus = "msrps://relay.example.com:2856/room1;tcp";
        let r = route(&req(Method::Send, &format!("{RA} {focus}"), A), 1, &s, &o, now);
        assert_eq!(r, Route::Forward { sid: "sa".into(), to: path(focus), from: path(&format!("{RA} {A}")) });
        let r = route(&req(Method::Send, &format!("{RA} {RB} {B}"), A), 1, &s, &o, now);
        assert!(matches!(r, Route::Deliver { conn: 2, .. }), "its own port is still itself");
    }

    #[test]
    fn straight_into_the_far_session() {
        // Kamailio's form: A addresses B's session directly.
        let (s, o, now) = setup();
        let r = route(&req(Method::Send, &format!("{RB} {B}"), A), 1, &s, &o, now);
        assert_eq!(r, Route::Deliver { sid: "sb".into(), conn: 2, to: path(B), from: path(&format!("{RB} {A}")) });
    }

    #[test]
    fn outward_only_from_the_authenticated_connection() {
        let (s, o, now) = setup();
        let far = "msrp://far.example.net:9/x;tcp";
        let r = route(&req(Method::Send, &format!("{RA} {far}"), A), 1, &s, &o, now);
        assert_eq!(r, Route::Forward { sid: "sa".into(), to: path(far), from: path(&format!("{RA} {A}")) });
        // The same request on another (unauthenticated) connection is refused: no open relay.
        let r = route(&req(Method::Send, &format!("{RA} {far}"), A), 7, &s, &o, now);
        assert_eq!(r, Route::Reject(StatusCode::FORBIDDEN, "this connection may only deliver to the session's client"));
        // But delivering into the session toward its client is what far ends do.
        let r = route(&req(Method::Send, &format!("{RA} {A}"), far), 7, &s, &o, now);
        assert!(matches!(r, Route::Deliver { conn: 1, .. }));
    }

    #[test]
    fn spoofed_from_path_unknown_session_and_methods() {
        let (s, o, now) = setup();
        let r = route(&req(Method::Send, &format!("{RA} {B}"), "msrp://mallory:1/m;tcp"), 1, &s, &o, now);
        assert_eq!(r.clone(), Route::Reject(StatusCode::FORBIDDEN, "From-Path differs from the one authenticated"));
        let gone = "msrps://relay.example.com:2855/nope;tcp";
        let r = route(&req(Method::Send, &format!("{gone} {B}"), A), 1, &s, &o, now);
        assert!(matches!(r, Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, _)));
        let r = route(&req(Method::Send, &format!("msrp://elsewhere:1/x;tcp {B}"), A), 1, &s, &o, now);
        assert!(matches!(r, Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, _)));
        let r = route(&req(Method::Other("PING".into()), &format!("{RA} {B}"), A), 1, &s, &o, now);
        assert!(matches!(r, Route::Reject(StatusCode::NOT_IMPLEMENTED, _)));
        let r = route(&req(Method::Auth, "msrps://relay.example.com:2855;tcp", A), 9, &s, &o, now);
        assert_eq!(r, Route::Auth);
        // Expired sessions are gone.
        let later = now + Duration::from_secs(601);
        let r = route(&req(Method::Send, &format!("{RB} {B}"), A), 1, &s, &o, later);
        assert!(matches!(r, Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, _)));
    }
}
