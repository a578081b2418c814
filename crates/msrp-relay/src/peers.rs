//! Which connections each relay session's traffic goes over besides its client's: peers that
//! delivered into it over a connection they opened (a far end without a relay, Blink's
//! default; another relay), and next hops the client sent to.
//!
//! Two uses. Replies go back over the connection a peer opened, since the URI it put in its
//! path may name no reachable socket (NAT, `a=setup:active`): keyed by the peer URI's
//! session-id, which identifies the peer whatever host and port it wrote (RFC 6714's view).
//! And when one side's connection ends, the other side learns it the way AG's msrprelay tells
//! it and msrplib expects: by the end of its own connection, where that connection carried
//! nothing else ([`Peers::forget_conn`]).

use std::collections::HashMap;

use crate::sessions::ConnId;

/// Peers remembered per session: one far end, or a few relays of a chain, per session.
pub const MAX_PEERS: usize = 4;

#[derive(Debug, Default)]
pub struct Peers {
    /// Per session-id: (peer URI session-id, connection), newest last.
    by_session: HashMap<String, Vec<(Box<str>, ConnId)>>,
    /// Per connection: the sessions listing it (once per entry).
    by_conn: HashMap<ConnId, Vec<String>>,
}

impl Peers {
    /// Records that peer `peer_sid` of session `sid` is reached over `conn`. The first
    /// connection a peer came over keeps it while that connection lives (a closed one is
    /// forgotten, [`Peers::forget_conn`]): a stranger who learnt the session-ids cannot divert
    /// the session's traffic to a connection of its own by delivering one request.
    pub fn note(&mut self, sid: &str, peer_sid: &str, conn: ConnId) {
        // Full: every entry is a live connection (closed ones are forgotten), and evicting one
        // would let a stranger push the real peer out and take its place; the newcomer is
        // simply not remembered (its traffic still arrives; replies to it are dialled).
        // Looked up before anything is allocated: this runs for every routed request.
        if let Some(list) = self.by_session.get(sid)
            && (list.iter().any(|(p, _)| **p == *peer_sid) || list.len() >= MAX_PEERS)
        {
            return;
        }
        self.by_session.entry(sid.to_owned()).or_default().push((peer_sid.into(), conn));
        self.by_conn.entry(conn).or_default().push(sid.to_owned());
    }

    /// The connection remembered for peer `peer_sid` of session `sid`.
    pub fn conn_for(&self, sid: &str, peer_sid: &str) -> Option<ConnId> {
        self.by_session.get(sid)?.iter().find(|(p, _)| **p == *peer_sid).map(|(_, c)| *c)
    }

    /// Forgets the peers of an ended session; returns their connections.
    pub fn forget_session(&mut self, sid: &str) -> Vec<ConnId> {
        let list = self.by_session.remove(sid).unwrap_or_default();
        for (_, conn) in &list {
            self.unlist(*conn, sid);
        }
        list.into_iter().map(|(_, c)| c).collect()
    }

    /// Forgets a closed connection as a peer; returns the sessions that listed it.
    pub fn forget_conn(&mut self, conn: ConnId) -> Vec<String> {
        let mut sids = self.by_conn.remove(&conn).unwrap_or_default();
        sids.dedup();
        for sid in &sids {
            if let Some(list) = self.by_session.get_mut(sid) {
                list.retain(|(_, c)| *c != conn);
                if list.is_empty() {
                    self.by_session.remove(sid);
                }
            }
        }
        sids
    }

    /// Whether any session still goes over `conn` as a peer.
    pub fn serves(&self, conn: ConnId) -> bool {
        self.by_conn.get(&conn).is_some_and(|l| !l.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty() && self.by_conn.is_empty()
    }

    /// Peers remembered for session `sid`.
    pub fn count(&self, sid: &str) -> usize {
        self.by_session.get(sid).map_or(0, Vec::len)
    }

    fn unlist(&mut self, conn: ConnId, sid: &str) {
        if let Some(l) = self.by_conn.get_mut(&conn) {
            if let Some(i) = l.iter().position(|s| s == sid) {
                l.swap_remove(i);
            }
            if l.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
    }
}
