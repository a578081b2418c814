//! Settings of the chat service. The daemon fills them from `[chat]` in its TOML config
//! (docs/CONFIG.md); every limit has a name and a bound.

use std::sync::Arc;
use std::time::Duration;

/// Which rooms exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomPolicy {
    /// Any room name; a room is created by its first INVITE.
    Any,
    /// Only these names (compared case-insensitively).
    Only(Vec<String>),
}

impl RoomPolicy {
    pub fn allows(&self, room: &str) -> bool {
        match self {
            RoomPolicy::Any => true,
            RoomPolicy::Only(list) => list.iter().any(|r| r.eq_ignore_ascii_case(room)),
        }
    }
}

#[derive(Clone)]
pub struct ChatOptions {
    /// Rooms are `sip:ROOM@domain`.
    pub domain: String,
    pub rooms: RoomPolicy,
    /// Public messages kept per room and replayed to joiners.
    pub history_size: usize,
    pub private_messages: bool,
    /// Largest message accepted from a participant, whole (413 above; `a=max-size`).
    pub max_message_size: u64,
    /// Messages the server sends out in chunks of at most this many bytes, so that other
    /// messages interleave with a large one; 0 (the default) sends every message whole.
    /// AG's msrplib (Blink, sipsimple) cannot reassemble a chat message that arrives in
    /// several chunks and ends the session, and messages are bounded by `max_message_size`
    /// anyway (files travel on streams of their own).
    pub chunk_size: usize,
    /// Messages waiting for one participant before that participant is dropped.
    pub queue_messages: usize,
    /// Bytes waiting for one participant before that participant is dropped.
    pub queue_bytes: usize,
    /// How long a joined participant has to open (or accept) its MSRP connection; also the
    /// TLS handshake and the idle time after which a connection without a session is closed.
    pub connect_timeout: Duration,
    /// How long a write to a participant may wait for it to read before its connection is
    /// closed.
    pub write_timeout: Duration,
    /// Sessions at once in all rooms (503 to further INVITEs).
    pub max_sessions: usize,
    /// MSRP connections accepted at once.
    pub max_connections: usize,
    /// `a=accept-wrapped-types` of the answer.
    pub wrapped_types: String,
    /// Host written into the server's MSRP URIs and SDP (`c=` line).
    pub msrp_host: String,
    /// Bound plain MSRP listener port, if any (set after binding).
    pub msrp_port: Option<u16>,
    /// Bound MSRP-over-TLS listener port, if any.
    pub msrps_port: Option<u16>,
    /// Codec limits on participants' connections.
    pub limits: msrp::Limits,
    /// TLS for connections the server opens to participants or their relays (`msrps`).
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
    /// Messages per second one participant may send; beyond it, its connection is read more
    /// slowly (`[relay.limits] message_rate`). None: unlimited.
    pub message_rate: Option<u32>,
    /// Per SIP domain of the participant (lower-case), overriding `message_rate`.
    pub message_rate_domains: std::collections::HashMap<String, u32>,
    /// Greet each joiner with a message from the room (its name, who is there, how much
    /// history follows), as SylkServer does; never stored in history.
    pub welcome: bool,
    /// Settings of named rooms (lower-case names); other rooms take the defaults.
    pub room_settings: std::collections::HashMap<String, RoomSettings>,
    /// Conference-info subscriptions (RFC 4575).
    pub conference: ConferenceOptions,
    /// Where the focus sends the requests it starts (the INVITE of a REFER to a room), as a
    /// SIP URI such as `sip:proxy.example.com:5060;transport=tcp`; none: to the host of the
    /// invitee's URI.
    pub outbound_proxy: Option<String>,
    /// The focus's own SIP account: Digest credentials for its requests (the INVITEs of
    /// referrals and file offers, and what it sends in their dialogs), answered to a 401 or
    /// 407 as any SIP user agent does. None: a challenge ends the request, and the proxy must
    /// trust the focus by its address.
    pub outbound_auth: Option<OutboundAuth>,
    /// REFERs to a room (RFC 4579): inviting someone in, or removing a participant.
    pub refer: ReferOptions,
    /// Files shared in rooms (RFC 5547).
    pub files: crate::files::FileOptions,
}

/// A SIP account's Digest credentials (RFC 3261 §22.2). Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for OutboundAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundAuth").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Who may REFER a room to invite someone or remove a participant (RFC 4579 §5.5, §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferPolicy {
    /// Anyone in the room (as SylkServer allows).
    Participants,
    /// Nobody: every REFER to the room gets 403.
    Nobody,
}

/// The MSRP transport of the chat stream the focus offers an invitee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteTransport {
    /// The one of the referrer's own chat session (an invitee is most likely set up like the
    /// colleague who invites it: AG's SDK refuses a stream of the other transport).
    Auto,
    Tcp,
    Tls,
}

/// REFERs to rooms: policy, bounds, how the invitation is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferOptions {
    /// Who may refer, in rooms that do not say (`[chat.room.NAME] refer`).
    pub policy: ReferPolicy,
    pub transport: InviteTransport,
    /// Referrals in progress at once in the whole service (503 beyond): each costs an
    /// outgoing INVITE, so a REFER must not be a free amplifier.
    pub max_pending: usize,
    /// Referrals in progress at once from one user (403 beyond).
    pub max_pending_per_user: usize,
    /// How long the invitee may take to answer before the INVITE is cancelled.
    pub timeout: Duration,
}

impl Default for ReferOptions {
    fn default() -> Self {
        ReferOptions {
            policy: ReferPolicy::Participants,
            transport: InviteTransport::Auto,
            max_pending: 100,
            max_pending_per_user: 5,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Limits and behaviour of conference-info subscriptions (`SUBSCRIBE` with
/// `Event: conference`, RFC 4575 over RFC 6665).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceOptions {
    /// Subscriptions to one room at once (503 beyond).
    pub max_per_room: usize,
    /// Subscriptions of one user (all devices) to one room at once (403 beyond).
    pub max_per_user: usize,
    /// Longest subscription granted (a longer `Expires` is cut to this); also the duration
    /// of a SUBSCRIBE without `Expires` (RFC 4575 §3.3: one hour).
    pub max_expires: Duration,
    /// Shortest (423 with Min-Expires below, RFC 6665 §4.2.1.1).
    pub min_expires: Duration,
    /// Subscribers whose User-Agent contains one of these (case-insensitive) get a full
    /// document on every change instead of a partial one: AG's SIP SIMPLE SDK (Blink,
    /// sipclients) reads each NOTIFY as the whole roster.
    pub full_state_agents: Vec<String>,
    /// How long a subscriber may take to answer a NOTIFY before its subscription ends.
    pub notify_timeout: Duration,
}

impl Default for ConferenceOptions {
    fn default() -> Self {
        ConferenceOptions {
            max_per_room: 1000,
            max_per_user: 10,
            max_expires: Duration::from_secs(3600),
            min_expires: Duration::from_secs(60),
            full_state_agents: vec!["sipsimple".into(), "blink".into(), "sylk".into()],
            notify_timeout: Duration::from_secs(32),
        }
    }
}

impl ConferenceOptions {
    /// Whether a subscriber with this User-Agent gets full documents only.
    pub fn wants_full_state(&self, user_agent: Option<&str>) -> bool {
        let Some(ua) = user_agent.map(str::to_ascii_lowercase) else { return false };
        self.full_state_agents.iter().any(|a| !a.is_empty() && ua.contains(&a.to_ascii_lowercase()))
    }
}

/// One room's policy (`[chat.room.NAME]`); unset values follow the service's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomSettings {
    /// Who may join: SIP URIs (`sip:alice@example.com`), domains (`example.com`) or
    /// subdomains (`*.example.com`). Empty: everyone not denied.
    pub allow: Vec<String>,
    /// Who may not, in the same forms; it wins over `allow`.
    pub deny: Vec<String>,
    /// Most participants (users; one user's devices count once) in the room at once.
    pub max_participants: Option<usize>,
    /// Messages replayed to joiners (at most the service's `history_size`).
    pub history_size: Option<usize>,
    /// The room's subject, told in the welcome.
    pub subject: Option<String>,
    pub private_messages: Option<bool>,
    /// Who may REFER this room.
    pub refer: Option<ReferPolicy>,
}

impl RoomSettings {
    /// Whether the participant with identity key `user@host` may join.
    pub fn admits(&self, key: &str) -> bool {
        let hit = |list: &[String]| list.iter().any(|e| acl_matches(e, key));
        !hit(&self.deny) && (self.allow.is_empty() || hit(&self.allow))
    }
}

/// Whether an access-list entry names `key` (`user@host`, host lower-case).
fn acl_matches(entry: &str, key: &str) -> bool {
    let host = key.rsplit_once('@').map_or("", |(_, h)| h);
    if entry.contains(':') {
        return crate::identity::key(entry).is_some_and(|k| k == key);
    }
    let entry = entry.to_ascii_lowercase();
    match entry.strip_prefix("*.") {
        Some(parent) => host.ends_with(&format!(".{parent}")),
        None => host == entry,
    }
}

/// Whether `entry` is a valid access-list entry (for configuration checks).
pub fn acl_entry_is_valid(entry: &str) -> bool {
    if entry.contains(':') {
        return crate::identity::key(entry).is_some();
    }
    let domain = entry.strip_prefix("*.").unwrap_or(entry);
    !domain.is_empty()
        && domain.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            domain: "localhost".into(),
            rooms: RoomPolicy::Any,
            history_size: 50,
            private_messages: true,
            max_message_size: 1024 * 1024,
            chunk_size: 0,
            queue_messages: 1000,
            queue_bytes: 4 * 1024 * 1024,
            connect_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_sessions: 10_000,
            max_connections: 10_000,
            wrapped_types: "text/plain text/html image/* application/im-iscomposing+xml *".into(),
            msrp_host: "127.0.0.1".into(),
            msrp_port: None,
            msrps_port: None,
            limits: msrp::Limits::default(),
            client_tls: None,
            message_rate: None,
            message_rate_domains: std::collections::HashMap::new(),
            welcome: true,
            room_settings: std::collections::HashMap::new(),
            conference: ConferenceOptions::default(),
            outbound_proxy: None,
            outbound_auth: None,
            refer: ReferOptions::default(),
            files: crate::files::FileOptions::default(),
        }
    }
}

impl std::fmt::Debug for ChatOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatOptions")
            .field("domain", &self.domain)
            .field("rooms", &self.rooms)
            .field("msrp_port", &self.msrp_port)
            .field("msrps_port", &self.msrps_port)
            .finish_non_exhaustive()
    }
}
