//! Conference state documents (RFC 4575 `application/conference-info+xml`) for the room's
//! subscribers, and the room's log of roster changes they are built from.
//!
//! Every subscriber gets a full document first. After that, a change (a join, a leave, a
//! nickname) reaches a subscriber as a partial document naming only the users that changed
//! (RFC 4575 §4.4: `state="partial"` with `full`/`deleted` users), or, for clients that read
//! every NOTIFY as the whole roster (AG's SIP SIMPLE SDK and so Blink drop every user a
//! document does not name), as a full one. The document has no state of its own: it is made
//! from the room at sending time, so changes that came while a subscriber's previous NOTIFY
//! was in flight collapse into its next one.

use std::collections::VecDeque;
use std::fmt::Write;

use crate::room::RoomState;

/// The conference-info namespace (RFC 4575 §5.1).
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:conference-info";
/// AG Projects' extension namespace: the room's files in `conference-description`.
pub const AGP_NAMESPACE: &str = "urn:ag-projects:xml:ns:conference-info";
/// The body's content type (RFC 4575 §3.4).
pub const CONTENT_TYPE: &str = "application/conference-info+xml";

/// Roster changes a room remembers for its subscribers' partial documents; a subscriber that
/// fell further behind gets a full document instead.
const LOG_LEN: usize = 64;

/// The room's roster changes: which user (identity key) changed at which sequence number,
/// and the channel its subscribers wait on.
#[derive(Debug)]
pub(crate) struct RosterLog {
    seq: u64,
    changes: VecDeque<(u64, String)>,
    /// The sequence number, sent at every change (sending never waits: fine under the room
    /// lock).
    tx: tokio::sync::watch::Sender<u64>,
}

impl Default for RosterLog {
    fn default() -> Self {
        RosterLog { seq: 0, changes: VecDeque::new(), tx: tokio::sync::watch::Sender::new(0) }
    }
}

impl RosterLog {
    /// Notes that `key` joined, left or changed its name, and wakes the subscribers.
    pub fn touch(&mut self, key: &str) {
        self.seq += 1;
        self.changes.push_back((self.seq, key.to_owned()));
        while self.changes.len() > LOG_LEN {
            self.changes.pop_front();
        }
        self.tx.send_replace(self.seq);
    }

    /// Notes a change of the room itself (its files): every subscriber gets a full document.
    pub fn touch_room(&mut self) {
        self.seq += 1;
        self.changes.clear();
        self.tx.send_replace(self.seq);
    }

    /// Woken at every change (and at the room's closing, which is its last leave).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tx.subscribe()
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The users that changed after `seq`, each once; `None` when the log no longer reaches
    /// back that far.
    pub fn since(&self, seq: u64) -> Option<Vec<&str>> {
        if seq >= self.seq {
            return Some(Vec::new());
        }
        if self.changes.front().is_none_or(|(first, _)| *first > seq + 1) {
            return None;
        }
        let mut keys: Vec<&str> = self.changes.iter().filter(|(s, _)| *s > seq).map(|(_, k)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        Some(keys)
    }
}

/// What the document says about the room itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Focus<'a> {
    /// `sip:room@domain`.
    pub entity: &'a str,
    pub name: &'a str,
    pub subject: Option<&'a str>,
    pub max_users: Option<usize>,
}

/// A full document, cut around its version number (which differs per subscriber) so that
/// one rendering serves every full-state subscriber of a roster.
#[derive(Debug, Clone)]
pub(crate) struct FullDocument {
    head: String,
    tail: String,
}

impl FullDocument {
    pub fn with_version(&self, version: u32) -> String {
        let mut s = String::with_capacity(self.head.len() + self.tail.len() + 10);
        s.push_str(&self.head);
        let _ = write!(s, "{version}");
        s.push_str(&self.tail);
        s
    }
}

/// The whole roster of `st`.
pub(crate) fn full(focus: &Focus<'_>, st: &RoomState) -> FullDocument {
    let mut head = String::with_capacity(512 + 300 * st.members.len());
    head.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ =
        write!(head, r#"<conference-info xmlns="{NAMESPACE}" entity="{}" state="full" version=""#, attr(focus.entity));
    let mut tail = String::from("\">");
    description(&mut tail, focus, &st.files);
    let users = st.users();
    state(&mut tail, users.len());
    tail.push_str("<users>");
    for key in users {
        user(&mut tail, st, key);
    }
    tail.push_str("</users></conference-info>");
    FullDocument { head, tail }
}

/// The users `keys` as they are now in `st` (`deleted` for those no longer in the room).
pub(crate) fn partial(focus: &Focus<'_>, st: &RoomState, keys: &[&str], version: u32) -> String {
    let mut s = String::with_capacity(512 + 300 * keys.len());
    s.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = write!(
        s,
        r#"<conference-info xmlns="{NAMESPACE}" entity="{}" state="partial" version="{version}">"#,
        attr(focus.entity)
    );
    state(&mut s, st.user_count());
    s.push_str(r#"<users state="partial">"#);
    for key in keys {
        if st.has_user(key) {
            user(&mut s, st, key);
        } else {
            let _ = write!(s, r#"<user entity="sip:{}" state="deleted"/>"#, attr(key));
        }
    }
    s.push_str("</users></conference-info>");
    s
}

fn description(s: &mut String, focus: &Focus<'_>, files: &[std::sync::Arc<crate::files::RoomFile>]) {
    s.push_str("<conference-description>");
    let _ = write!(s, "<display-text>{}</display-text>", text(focus.name));
    if let Some(subject) = focus.subject {
        let _ = write!(s, "<subject>{}</subject>", text(subject));
    }
    let _ = write!(
        s,
        "<conf-uris><entry><uri>{}</uri><purpose>participation</purpose></entry></conf-uris>",
        text(focus.entity)
    );
    if let Some(max) = focus.max_users {
        let _ = write!(s, "<maximum-user-count>{max}</maximum-user-count>");
    }
    s.push_str(r#"<available-media><entry label="chat"><type>message</type><status>sendrecv</status></entry></available-media>"#);
    if !files.is_empty() {
        // AG's extension (what SylkServer sends and the SDK reads as the room's files).
        let _ = write!(s, r#"<resources xmlns="{AGP_NAMESPACE}"><files>"#);
        for f in files {
            let sender = match &f.sender.display {
                Some(d) => format!("{d} <{}>", f.sender.uri),
                None => f.sender.uri.clone(),
            };
            let hash = f.selector.sha1.as_ref().map(crate::files::selector::hash_text).unwrap_or_default();
            let _ = write!(
                s,
                r#"<file name="{}" hash="{}" size="{}" sender="{}" status="OK"/>"#,
                attr(f.name()),
                attr(&hash),
                f.size(),
                attr(&sender)
            );
        }
        s.push_str("</files></resources>");
    }
    s.push_str("</conference-description>");
}

fn state(s: &mut String, users: usize) {
    let _ = write!(s, "<conference-state><user-count>{users}</user-count><active>true</active></conference-state>");
}

/// One user: its name in the room, its role, and one endpoint per device (session).
fn user(s: &mut String, st: &RoomState, key: &str) {
    let mut sessions = st.members.iter().filter(|m| m.identity.key == key).peekable();
    let Some(first) = sessions.peek() else { return };
    let _ = write!(s, r#"<user entity="{}" state="full">"#, attr(&first.identity.uri));
    if let Some(name) = st.display_of(key, first.identity.display.as_deref()) {
        let _ = write!(s, "<display-text>{}</display-text>", text(name));
    }
    s.push_str("<roles><entry>participant</entry></roles>");
    for m in sessions {
        let entity = m.device.as_deref().unwrap_or(m.local.as_str());
        let _ = write!(
            s,
            r#"<endpoint entity="{}"><status>connected</status><joining-method>dialed-in</joining-method><media id="{}"><type>message</type><status>sendrecv</status></media></endpoint>"#,
            attr(entity),
            attr(&m.id),
        );
    }
    s.push_str("</user>");
}

/// Character data with `<` and `&` escaped (and `>`, for `]]>`).
fn text(v: &str) -> std::borrow::Cow<'_, str> {
    escape(v, false)
}

/// An attribute value (double-quoted) with markup and quotes escaped.
fn attr(v: &str) -> std::borrow::Cow<'_, str> {
    escape(v, true)
}

fn escape(v: &str, quotes: bool) -> std::borrow::Cow<'_, str> {
    let special = |c: char| matches!(c, '<' | '>' | '&') || (quotes && c == '"') || (c.is_control() && c != '\t');
    if !v.contains(special) {
        return v.into();
    }
    let mut out = String::with_capacity(v.len() + 16);
    for c in v.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' if quotes => out.push_str("&quot;"),
            // XML 1.0 cannot carry most control characters at all, escaped or not.
            c if c.is_control() && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_gives_each_changed_user_once_or_asks_for_a_full_document() {
        let mut log = RosterLog::default();
        assert_eq!(log.since(0), Some(vec![]));
        log.touch("bob@x");
        log.touch("alice@x");
        log.touch("bob@x");
        assert_eq!(log.since(0), Some(vec!["alice@x", "bob@x"]));
        assert_eq!(log.since(2), Some(vec!["bob@x"]));
        assert_eq!(log.since(3), Some(vec![]));
        for i in 0..LOG_LEN {
            log.touch(&format!("u{i}@x"));
        }
        assert_eq!(log.since(2), None, "fallen off the log: a full document");
        assert!(log.since(log.seq() - 1).is_some_and(|k| k.len() == 1));
    }

    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(text("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(attr("say \"hi\""), "say &quot;hi&quot;");
        assert_eq!(text("plain"), "plain");
        assert_eq!(text("bell\u{7}"), "bell ");
    }
}
