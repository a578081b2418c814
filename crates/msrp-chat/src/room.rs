//! A chat room: its members (one entry per session, so one user's devices are separate
//! members), the nicknames held in it, and the recent public messages that joiners get.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::conference::{self, Focus, FullDocument, RosterLog};
use crate::history::Stored;
use crate::nickname::Nickname;
use crate::session::Session;

pub(crate) struct Room {
    /// The room's name, lower-cased (also its key in the room table and the user part of its URI).
    pub name: String,
    /// `sip:name@domain`.
    pub uri: String,
    pub state: Mutex<RoomState>,
    /// Set once the history was read from the store.
    pub loaded: tokio::sync::OnceCell<()>,
    /// Its policy (`[chat.room.NAME]`), taken when it was created.
    pub settings: crate::options::RoomSettings,
    /// The last full conference-info document and the roster sequence it shows.
    full_document: Mutex<Option<(u64, Arc<FullDocument>)>>,
}

#[derive(Default)]
pub(crate) struct RoomState {
    /// Every session, in joining order (change through [`RoomState::add`] and
    /// [`RoomState::remove`], which keep `devices` in step).
    pub members: Vec<Arc<Session>>,
    /// Sessions per user (identity key): who is in, without a scan of `members`.
    devices: HashMap<String, usize>,
    /// Nickname per identity key: all devices of a user share one.
    pub nicknames: HashMap<String, Nickname>,
    /// The newest public messages, oldest first, at most `history_size`.
    pub recent: VecDeque<Stored>,
    /// The room was emptied and removed from the room table; joiners must create a new one.
    pub closed: bool,
    /// Who joined, left or changed name, for conference-info subscribers.
    pub roster: RosterLog,
    /// Files shared in the room, oldest first.
    pub files: Vec<Arc<crate::files::RoomFile>>,
    /// Users (identity keys) who declined a file the focus offered: not offered others.
    pub declined: std::collections::HashSet<String>,
    /// Uploads in progress: how many, and their announced bytes (held against the room's
    /// file bounds until each becomes a file or is dropped).
    pub uploading: (usize, u64),
}

/// Why a nickname was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NicknameRefused {
    InUse,
}

impl Room {
    pub fn new(name: &str, domain: &str, settings: crate::options::RoomSettings) -> Room {
        Room {
            name: name.to_owned(),
            uri: format!("sip:{name}@{domain}"),
            state: Mutex::new(RoomState::default()),
            loaded: tokio::sync::OnceCell::new(),
            settings,
            full_document: Mutex::default(),
        }
    }

    /// The conference-info document a subscriber that last saw roster `since` (`None`: it
    /// saw nothing yet) gets now, as its `version`th; `full_state` for subscribers that take
    /// every document as the whole roster. Also the roster sequence the document shows, and
    /// whether the room has closed. `None` when nothing changed since.
    pub fn conference_info(&self, since: Option<u64>, version: u32, full_state: bool) -> Option<(String, u64, bool)> {
        let focus = Focus {
            entity: &self.uri,
            name: &self.name,
            subject: self.settings.subject.as_deref(),
            max_users: self.settings.max_participants,
        };
        let st = self.lock();
        let seq = st.roster.seq();
        if since == Some(seq) && !st.closed {
            return None;
        }
        if !full_state
            && let Some(since) = since
            && let Some(keys) = st.roster.since(since)
        {
            return Some((conference::partial(&focus, &st, &keys, version), seq, st.closed));
        }
        let mut cache = self.full_document.lock().unwrap_or_else(|e| e.into_inner());
        let doc = match &*cache {
            Some((at, doc)) if *at == seq => doc.clone(),
            _ => {
                let doc = Arc::new(conference::full(&focus, &st));
                *cache = Some((seq, doc.clone()));
                doc
            }
        };
        Some((doc.with_version(version), seq, st.closed))
    }

    /// The state, surviving a panic elsewhere (every update is a single step).
    pub fn lock(&self) -> MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RoomState {
    /// The identity keys of the members, each once (one user's devices are one user).
    pub fn users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.members.iter().map(|m| m.identity.key.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// The name `key`'s messages are shown under: the nickname, else `fallback`.
    pub fn display_of<'a>(&'a self, key: &str, fallback: Option<&'a str>) -> Option<&'a str> {
        self.nicknames.get(key).map(|n| n.display.as_str()).or(fallback)
    }

    /// Gives `key` the nickname, or releases its nickname when `nick` is `None`. The same user
    /// may hold it from several devices; another user may not (RFC 7701: 425).
    pub fn set_nickname(&mut self, key: &str, nick: Option<Nickname>) -> Result<(), NicknameRefused> {
        let Some(nick) = nick else {
            self.nicknames.remove(key);
            return Ok(());
        };
        if self.nicknames.iter().any(|(owner, held)| owner != key && held.collides(&nick)) {
            return Err(NicknameRefused::InUse);
        }
        self.nicknames.insert(key.to_owned(), nick);
        Ok(())
    }

    /// Adds a session.
    pub fn add(&mut self, session: Arc<Session>) {
        *self.devices.entry(session.identity.key.clone()).or_default() += 1;
        self.members.push(session);
    }

    /// Users in the room.
    pub fn user_count(&self) -> usize {
        self.devices.len()
    }

    /// Whether `key` is in the room from any device.
    pub fn has_user(&self, key: &str) -> bool {
        self.devices.contains_key(key)
    }

    /// Removes a session; forgets its user's nickname when it was that user's last session.
    pub fn remove(&mut self, session: &Session) {
        let before = self.members.len();
        self.members.retain(|m| m.id != session.id);
        if self.members.len() == before {
            return;
        }
        let key = &session.identity.key;
        if let Some(n) = self.devices.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.devices.remove(key);
                self.nicknames.remove(key);
            }
        }
    }

    pub fn remember(&mut self, msg: Stored, keep: usize) {
        self.recent.push_back(msg);
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(s: &str) -> Option<Nickname> {
        Some(Nickname::parse(s).unwrap())
    }

    #[test]
    fn nicknames_are_per_user() {
        let mut st = RoomState::default();
        assert_eq!(st.set_nickname("alice@x", nick("Ally")), Ok(()));
        assert_eq!(st.set_nickname("alice@x", nick("ally")), Ok(()), "the same user may re-take it");
        assert_eq!(st.set_nickname("bob@x", nick("ALLY")), Err(NicknameRefused::InUse));
        assert_eq!(st.display_of("alice@x", None), Some("ally"));
        assert_eq!(st.set_nickname("alice@x", None), Ok(()));
        assert_eq!(st.set_nickname("bob@x", nick("ALLY")), Ok(()), "released names are free");
        assert_eq!(st.display_of("alice@x", Some("Alice")), Some("Alice"));
    }
}
