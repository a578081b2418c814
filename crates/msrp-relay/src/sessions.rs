//! The table of relay sessions created by AUTH (RFC 4976 §5): who owns each session-id, on
//! which connection, with which client path, until when.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use msrp::Uri;
use msrp::header::Path;

use crate::peers::Peers;

/// Identifies one connection for the lifetime of the process.
pub type ConnId = u64;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// The relay URI handed out in Use-Path (with this session-id).
    pub uri: Uri,
    /// The connection that authenticated: the only one allowed to send "outward".
    pub conn: ConnId,
    /// The From-Path of the AUTH: the client (and any relays between it and us).
    pub client: Path,
    pub user: String,
    pub realm: String,
    pub expires: Instant,
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    /// Session-ids per connection: a closing connection's sessions are found without scanning
    /// the table (which made mass disconnects quadratic).
    by_conn: HashMap<ConnId, Vec<String>>,
    /// Bumped by the changes that can void a remembered routing decision without anything
    /// else showing it (the fast path's route cache): a session replaced, or its expiry brought
    /// forward. A route also records the earliest expiry of its sessions and the connection it
    /// delivers to, so a session that expires, is refreshed for longer, or goes with its closed
    /// connection needs no bump — every session a route rests on lives on the sender's own
    /// connection or on the target's. A new session, under a fresh random id, voids nothing.
    /// Bumping on those common events would void every connection's routes at every login,
    /// refresh and disconnect anywhere. Shared ([`Sessions::epoch_handle`]) so that a reader
    /// can read it at the start of every read batch without taking the table's lock; it only
    /// changes under the lock (`&mut self`).
    epoch: Arc<AtomicU64>,
    /// The connections each session's traffic goes over besides its client's ([`Peers`]).
    peers: Peers,
    /// Sessions per account (`user@realm`, realm lower-cased): `user_sessions` quotas.
    by_user: HashMap<String, usize>,
}

fn user_key(user: &str, realm: &str) -> String {
    format!("{user}@{}", realm.to_ascii_lowercase())
}

/// What a closed connection leaves behind ([`Sessions::close_conn`]).
#[derive(Debug, Default)]
pub struct Closed {
    /// The sessions it held, now ended.
    pub ended: Vec<Session>,
    /// Connections to close as well, so that the other side learns its peer is gone the way
    /// AG's relay tells it and msrplib expects: a peer connection that carried nothing but
    /// the ended sessions' traffic, and a client connection whose only session had the closed
    /// one as its peer. A connection carrying more stays open: its endpoints get failure
    /// REPORTs for what was in flight and 481 for what comes next.
    pub cascade: Vec<ConnId>,
}

impl Sessions {
    pub fn insert(&mut self, session: Session) {
        if let Some(old) = self.by_id.remove(&session.id) {
            self.unindex(&old);
            self.epoch.fetch_add(1, Ordering::Release);
        }
        self.peers.forget_session(&session.id);
        self.by_conn.entry(session.conn).or_default().push(session.id.clone());
        *self.by_user.entry(user_key(&session.user, &session.realm)).or_default() += 1;
        self.by_id.insert(session.id.clone(), session);
    }

    /// Changes when a session is replaced or its expiry brought forward (see the field).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The epoch, readable without the table's lock.
    pub fn epoch_handle(&self) -> Arc<AtomicU64> {
        self.epoch.clone()
    }

    /// A live session (one past its expiry is as good as gone: 481).
    pub fn get(&self, id: &str, now: Instant) -> Option<&Session> {
        self.by_id.get(id).filter(|s| s.expires > now)
    }

    /// Moves a live session's expiry (an AUTH refresh, RFC 4976 §5.1); the only change a
    /// session takes in place, so its connection index stays right.
    pub fn refresh(&mut self, id: &str, now: Instant, until: Instant) -> Option<&Session> {
        let s = self.by_id.get_mut(id).filter(|s| s.expires > now)?;
        if until < s.expires {
            self.epoch.fetch_add(1, Ordering::Release);
        }
        s.expires = until;
        Some(s)
    }

    /// Removes sessions past their expiry; returns them for logging.
    pub fn expire(&mut self, now: Instant) -> Vec<Session> {
        let gone: Vec<String> = self.by_id.values().filter(|s| s.expires <= now).map(|s| s.id.clone()).collect();
        let gone: Vec<Session> = gone.iter().filter_map(|id| self.by_id.remove(id)).collect();
        for s in &gone {
            self.unindex(s);
        }
        gone
    }

    /// Removes every session of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) -> Vec<Session> {
        self.close_conn(conn).ended
    }

    /// A connection closed: its sessions end, it is forgotten as a peer, and what else should
    /// close with it is returned (see [`Closed`]).
    pub fn close_conn(&mut self, conn: ConnId) -> Closed {
        let ids = self.by_conn.remove(&conn).unwrap_or_default();
        let mut candidates = Vec::new();
        for id in &ids {
            candidates.extend(self.peers.forget_session(id));
        }
        let ended: Vec<Session> = ids.iter().filter_map(|id| self.by_id.remove(id)).collect();
        for s in &ended {
            self.uncount(s);
        }
        let mut cascade = Vec::new();
        for sid in self.peers.forget_conn(conn) {
            // The client's connection carries this session alone, no other session's traffic,
            // and the session has no other peer left: its peer is gone, and so is its use.
            if let Some(s) = self.by_id.get(&sid)
                && s.conn != conn
                && self.count_on(s.conn) == 1
                && !self.peers.serves(s.conn)
                && self.peers.count(&sid) == 0
            {
                cascade.push(s.conn);
            }
        }
        for c in candidates {
            if c != conn && self.count_on(c) == 0 && !self.peers.serves(c) {
                cascade.push(c);
            }
        }
        cascade.sort_unstable();
        cascade.dedup();
        Closed { ended, cascade }
    }

    /// Remembers that `peer` (the previous hop of a request delivered into session `sid`, or
    /// a next hop its client sent to) is reached over connection `conn`.
    pub fn note_peer(&mut self, sid: &str, peer: &Uri, conn: ConnId) {
        let Some(peer_sid) = peer.session_id() else { return };
        if self.by_id.get(sid).is_some_and(|s| s.conn != conn) {
            self.peers.note(sid, peer_sid, conn);
        }
    }

    /// The connection over which `next` (a hop the client of session `sid` sends to) last
    /// reached us, if it did.
    pub fn peer_conn(&self, sid: &str, next: &Uri) -> Option<ConnId> {
        self.peers.conn_for(sid, next.session_id()?)
    }

    /// (connection, sessions it holds), for every connection holding any.
    pub fn per_connection(&self) -> impl Iterator<Item = (ConnId, usize)> + '_ {
        self.by_conn.iter().map(|(c, ids)| (*c, ids.len()))
    }

    /// Sessions held by connection `conn`.
    pub fn count_on(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, Vec::len)
    }

    /// Sessions `user` of `realm` holds.
    pub fn count_of(&self, user: &str, realm: &str) -> usize {
        self.by_user.get(&user_key(user, realm)).copied().unwrap_or(0)
    }

    fn uncount(&mut self, s: &Session) {
        let key = user_key(&s.user, &s.realm);
        if let Some(n) = self.by_user.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.by_user.remove(&key);
            }
        }
    }

    fn unindex(&mut self, s: &Session) {
        self.uncount(s);
        self.peers.forget_session(&s.id);
        if let Some(ids) = self.by_conn.get_mut(&s.conn) {
            ids.retain(|id| *id != s.id);
            if ids.is_empty() {
                self.by_conn.remove(&s.conn);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session(id: &str, conn: ConnId, expires: Instant) -> Session {
        Session {
            id: id.into(),
            uri: format!("msrp://relay.example.com:2855/{id};tcp").parse().unwrap(),
            conn,
            client: Path::single("msrp://a.example.com:1/a;tcp".parse().unwrap()),
            user: "alice".into(),
            realm: "example.com".into(),
            expires,
        }
    }

    #[test]
    fn a_connection_takes_exactly_its_sessions_with_it() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut t = Sessions::default();
        for (id, conn) in [("a1", 1), ("a2", 1), ("b1", 2), ("c1", 3)] {
            t.insert(session(id, conn, later));
        }
        let (epoch, seen) = (t.epoch(), t.epoch_handle());
        t.insert(session("b1", 2, later)); // replaced, not indexed twice
        assert!(t.epoch() > epoch, "a replaced session voids remembered routes");
        assert_eq!(seen.load(Ordering::Acquire), t.epoch(), "readers without the lock see it");
        let epoch = t.epoch();
        let mut gone: Vec<String> = t.remove_conn(1).into_iter().map(|s| s.id).collect();
        gone.sort();
        assert_eq!(gone, ["a1", "a2"]);
        assert_eq!(t.epoch(), epoch, "a closed connection shows itself: no bump");
        assert_eq!(t.remove_conn(2).len(), 1);
        assert!(t.remove_conn(2).is_empty());
        // Expired sessions leave the index too.
        t.insert(session("c2", 3, now));
        assert_eq!(t.expire(now + Duration::from_millis(1)).len(), 1);
        assert_eq!(t.remove_conn(3).iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["c1"]);
        assert!(t.is_empty() && t.by_conn.is_empty());
        // A longer lease voids nothing (routes expire at the old time at worst); a shorter one
        // does. An unknown or expired id is refused.
        t.insert(session("d1", 4, later));
        let epoch = t.epoch();
        assert!(t.refresh("d1", now, later + Duration::from_secs(60)).is_some());
        assert_eq!(t.epoch(), epoch);
        assert!(t.refresh("d1", now, later).is_some());
        assert!(t.epoch() > epoch, "an expiry brought forward voids routes");
        assert!(t.refresh("nope", now, later).is_none());
        assert!(t.refresh("d1", later + Duration::from_secs(61), later).is_none());
    }

    #[test]
    fn peers_are_known_by_session_id_per_session_and_bounded() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let uri = |s: &str| -> Uri { s.parse().unwrap() };
        let mut t = Sessions::default();
        t.insert(session("s1", 1, later));
        t.insert(session("s2", 2, later));
        // The far end wrote an address behind NAT; it reached us over connection 7.
        t.note_peer("s1", &uri("msrp://192.0.2.2:2855/far1;tcp"), 7);
        assert_eq!(t.peer_conn("s1", &uri("msrp://192.0.2.2:2855/far1;tcp")), Some(7));
        assert_eq!(t.peer_conn("s1", &uri("msrps://10.0.0.9:1234/far1;tcp")), Some(7), "the session-id decides");
        assert_eq!(t.peer_conn("s2", &uri("msrp://192.0.2.2:2855/far1;tcp")), None, "per session");
        assert_eq!(t.peer_conn("s1", &uri("msrp://192.0.2.2:2855/other;tcp")), None);
        t.note_peer("s1", &uri("msrp://192.0.2.2:2855/far1;tcp"), 8);
        assert_eq!(t.peer_conn("s1", &uri("msrp://x:1/far1;tcp")), Some(7), "not taken over while 7 lives");
        t.close_conn(7);
        t.note_peer("s1", &uri("msrp://192.0.2.2:2855/far1;tcp"), 8);
        assert_eq!(t.peer_conn("s1", &uri("msrp://x:1/far1;tcp")), Some(8), "once 7 is gone, the new one");
        for i in 0..crate::peers::MAX_PEERS + 2 {
            t.note_peer("s1", &uri(&format!("msrp://x:1/p{i};tcp")), 10 + i as ConnId);
        }
        assert_eq!(t.peers.count("s1"), crate::peers::MAX_PEERS, "bounded");
        assert_eq!(t.peer_conn("s1", &uri("msrp://x:1/far1;tcp")), Some(8), "a live peer is never pushed out");
        t.note_peer("nope", &uri("msrp://x:1/p;tcp"), 3);
        assert_eq!(t.peers.count("nope"), 0, "only for live sessions");
        // The session's end forgets its peers.
        t.remove_conn(1);
        assert_eq!(t.peers.count("s1"), 0);
        t.note_peer("s2", &uri("msrp://x:1/q;tcp"), 3);
        t.expire(later + Duration::from_secs(1));
        assert!(t.peers.is_empty());
    }

    #[test]
    fn a_client_connection_with_another_peer_or_more_traffic_is_not_cascaded() {
        let later = Instant::now() + Duration::from_secs(60);
        let uri = |s: &str| -> Uri { s.parse().unwrap() };
        let mut t = Sessions::default();
        // s1's client connection (2) is also a relay link that delivers into s9 (conn 4's).
        t.insert(session("s1", 2, later));
        t.insert(session("s9", 4, later));
        t.note_peer("s1", &uri("msrp://far:1/f1;tcp"), 7);
        t.note_peer("s9", &uri("msrps://relay2:2855/x;tcp"), 2);
        assert!(t.close_conn(7).cascade.is_empty(), "connection 2 carries other traffic");
        // s5 has two peers; one going leaves the other.
        t.insert(session("s5", 5, later));
        t.note_peer("s5", &uri("msrp://far:1/a;tcp"), 11);
        t.note_peer("s5", &uri("msrp://far:1/b;tcp"), 12);
        assert!(t.close_conn(11).cascade.is_empty(), "s5 still has a peer");
        assert_eq!(t.close_conn(12).cascade, [5]);
    }

    #[test]
    fn a_closed_connection_takes_the_connections_that_served_only_it() {
        let later = Instant::now() + Duration::from_secs(60);
        let uri = |s: &str| -> Uri { s.parse().unwrap() };
        let mut t = Sessions::default();
        // Bob (conn 2) holds s1; a far end reached it over conn 7. Carol (conn 3) holds s2
        // and s3; the far end reached s2 too, and a relay link (conn 8) serves s2.
        t.insert(session("s1", 2, later));
        t.insert(session("s2", 3, later));
        t.insert(session("s3", 3, later));
        t.note_peer("s1", &uri("msrp://far:1/f1;tcp"), 7);
        t.note_peer("s2", &uri("msrp://far:1/f2;tcp"), 7);
        t.note_peer("s2", &uri("msrps://relay2:2855/r2;tcp"), 8);
        // The far end's connection goes: Bob's connection held only s1, so it goes too; Carol's
        // holds two sessions and stays.
        let closed = t.close_conn(7);
        assert!(closed.ended.is_empty());
        assert_eq!(closed.cascade, [2]);
        assert_eq!(t.peer_conn("s1", &uri("msrp://far:1/f1;tcp")), None, "forgotten as a peer");
        // Bob's connection closes (as asked): nothing else went with s1.
        let closed = t.close_conn(2);
        assert_eq!(closed.ended.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s1"]);
        assert!(closed.cascade.is_empty(), "{:?}", closed.cascade);
        // Carol's connection closes: the link served nothing else now, so it goes.
        let closed = t.close_conn(3);
        assert_eq!(closed.ended.len(), 2);
        assert_eq!(closed.cascade, [8]);
        assert!(t.peers.is_empty());
    }
}
