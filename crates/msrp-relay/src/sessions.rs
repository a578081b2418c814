//! The table of relay sessions created by AUTH (RFC 4976 §5): who owns each session-id, on
//! which connection, with which client path, until when.

use std::collections::HashMap;
use std::time::Instant;

use msrp::Uri;
use msrp::header::Path;

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
    /// Bumped by every change that can void a routing decision — a session removed, replaced
    /// or refreshed (its expiry moves) — so a route remembered under an older value is known
    /// stale (the fast path's route cache). A new session, under a fresh random id, voids none.
    epoch: u64,
}

impl Sessions {
    pub fn insert(&mut self, session: Session) {
        if self.by_id.insert(session.id.clone(), session).is_some() {
            self.epoch += 1;
        }
    }

    /// Changes whenever a session is added, changed or removed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A live session (one past its expiry is as good as gone: 481).
    pub fn get(&self, id: &str, now: Instant) -> Option<&Session> {
        self.by_id.get(id).filter(|s| s.expires > now)
    }

    /// A live session to change (counts as a change to the table).
    pub fn get_mut(&mut self, id: &str, now: Instant) -> Option<&mut Session> {
        let found = self.by_id.get_mut(id).filter(|s| s.expires > now);
        if found.is_some() {
            self.epoch += 1;
        }
        found
    }

    /// Removes sessions past their expiry; returns them for logging.
    pub fn expire(&mut self, now: Instant) -> Vec<Session> {
        let gone: Vec<String> = self.by_id.values().filter(|s| s.expires <= now).map(|s| s.id.clone()).collect();
        if !gone.is_empty() {
            self.epoch += 1;
        }
        gone.iter().filter_map(|id| self.by_id.remove(id)).collect()
    }

    /// Removes every session of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) -> Vec<Session> {
        let gone: Vec<String> = self.by_id.values().filter(|s| s.conn == conn).map(|s| s.id.clone()).collect();
        if !gone.is_empty() {
            self.epoch += 1;
        }
        gone.iter().filter_map(|id| self.by_id.remove(id)).collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
