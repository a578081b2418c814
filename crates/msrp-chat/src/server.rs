//! The chat focus: rooms, the session table, joining and leaving, and fan-out.
//!
//! The SIP side calls [`Chat::join`] with an INVITE's offer and [`Chat::leave`] on BYE; the
//! MSRP side ([`Chat::serve_msrp`] and the connections the server opens) does the rest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use msrp::header::Path;
use msrp::{Request, StatusCode, Uri};
use msrp_auth::log_throttle::LogThrottle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

use crate::conn::{BoxRead, BoxWrite, Conn, read_loop};
use crate::files::transfer::Transfer;
use crate::files::{RoomFile, Store};
use crate::history::{History, Stored};
use crate::identity::Identity;
use crate::judge::{self, Verdict};
use crate::nickname::Nickname;
use crate::options::{ChatOptions, RoomSettings};
use crate::room::{Room, RoomState};
use crate::sdp::{AnswerParams, Connect, Offer};
use crate::session::{Out, Overflow, Session, write_queue};
use crate::time::now_rfc3339;

/// History writes waiting for the store; beyond this they are dropped with a warning rather
/// than let a slow database hold memory without bound.
const HISTORY_BACKLOG: usize = 10_000;

/// Most history messages written in one transaction.
const HISTORY_BATCH: usize = 1000;

/// The chat service. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub opts: ChatOptions,
    /// `message_rate` and its per-domain overrides as in force (a reload replaces them; a
    /// session keeps the rate it joined with).
    rates: std::sync::RwLock<(Option<u32>, HashMap<String, u32>)>,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    history: Arc<dyn History>,
    history_tx: mpsc::Sender<(String, Stored)>,
    history_dropped: LogThrottle,
    refused: LogThrottle,
    /// Refusals a peer can cause at will (bad frames, unknown sessions, failed handshakes),
    /// logged at most once a second with the count so far.
    pub(crate) noisy: LogThrottle,
    /// Messages offered to participants (fan-out deliveries) and participants dropped as
    /// too slow, for metrics.
    fanned_out: std::sync::atomic::AtomicU64,
    dropped_slow: std::sync::atomic::AtomicU64,
    next_conn: AtomicU64,
    answers: AtomicU64,
    /// Session-ids the focus offered to invitees whose answer has not come yet: an invitee
    /// that connects first (its 200 may travel through proxies, its MSRP connection does not)
    /// waits here for its session ([`Inner::owner_of`]).
    pub(crate) invited: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// File transfers by their MSRP session-id.
    transfers: Mutex<HashMap<String, Arc<Transfer>>>,
    /// Where shared files are kept (`None`: file sharing is off).
    pub(crate) files: Option<Arc<Store>>,
    /// Offers a new room file to one participant (set by the SIP side, which calls out).
    pub(crate) pusher: std::sync::OnceLock<Pusher>,
    /// File offers being made (their calls not answered yet).
    pub(crate) pushes: std::sync::atomic::AtomicUsize,
    /// The rooms' policies as in force (a reload replaces them): who may join, subscribe and
    /// refer is checked against these; a room keeps the rest of its policy (caps, history,
    /// subject) from when it was opened.
    room_settings: std::sync::RwLock<HashMap<String, RoomSettings>>,
}

/// How the SIP side offers a new file to a participant: the room, the file, and the
/// participant (identity, a device's Contact, whether its chat runs over TLS).
pub(crate) type Pusher = Arc<dyn Fn(Arc<Room>, Arc<RoomFile>, Identity, Option<String>, bool) + Send + Sync>;

/// A participant asking to join (from an INVITE).
pub struct JoinRequest {
    /// The user part of the Request-URI.
    pub room: String,
    pub identity: Identity,
    /// The SDP offer.
    pub offer: Bytes,
    /// The participant's device (its SIP Contact URI), named in conference-info.
    pub device: Option<String>,
    /// Called once if the server ends the session (to send the SIP BYE).
    pub on_end: Box<dyn FnOnce() + Send>,
}

/// The session-id of an offer the focus made, recorded in `Inner::invited` until the answer
/// makes its session or the offer is given up (dropped): a connection that comes before the
/// answer waits for it ([`Inner::owner_of`]), and is let go then.
pub(crate) struct Invited {
    inner: Arc<Inner>,
    pub sid: String,
}

impl Invited {
    pub fn new(inner: &Arc<Inner>, sid: String) -> Invited {
        inner.invited.lock().unwrap_or_else(|e| e.into_inner()).insert(sid.clone(), Arc::default());
        Invited { inner: inner.clone(), sid }
    }
}

impl Drop for Invited {
    fn drop(&mut self) {
        let pending = self.inner.invited.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.sid);
        if let Some(p) = pending {
            p.notify_waiters();
        }
    }
}

/// What an MSRP session-id of the focus names.
pub(crate) enum Owner {
    Chat(Arc<Session>),
    File(Arc<Transfer>),
}

/// A session about to be made: who, in which room, over which stream, and the focus's URI.
pub(crate) struct Entry {
    pub room: String,
    pub identity: Identity,
    pub device: Option<String>,
    pub stream: crate::sdp::ChatStream,
    pub sid: String,
    pub local: Uri,
}

/// An accepted join.
#[derive(Debug, Clone)]
pub struct Joined {
    pub session_id: String,
    /// The SDP answer.
    pub answer: String,
}

/// Why a join was refused, with the SIP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("no such room")]
    NoSuchRoom,
    #[error("not acceptable here: {0}")]
    NotAcceptable(&'static str),
    #[error("the chat service is full (max_sessions)")]
    Full,
    #[error("not admitted by the room's access lists")]
    Forbidden,
    #[error("the room is full (max_participants)")]
    RoomFull,
    #[error("nobody is in the room")]
    Empty,
    #[error("the room holds no such file")]
    NoSuchFile,
    #[error("too many file transfers at once (max_file_transfers)")]
    Busy,
    #[error("too many file transfers of yours at once (max_user_file_transfers)")]
    UserBusy,
}

impl JoinError {
    pub fn sip_status(&self) -> u16 {
        match self {
            JoinError::NoSuchRoom => 404,
            JoinError::NotAcceptable(_) => 488,
            JoinError::Full => 503,
            JoinError::Forbidden => 403,
            JoinError::RoomFull => 486,
            JoinError::Empty => 480,
            JoinError::NoSuchFile => 404,
            JoinError::Busy => 503,
            JoinError::UserBusy => 486,
        }
    }
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").field("options", &self.inner.opts).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("room", &self.room)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Chat {
    pub fn new(opts: ChatOptions, history: Arc<dyn History>) -> Chat {
        let (history_tx, mut history_rx) = mpsc::channel::<(String, Stored)>(HISTORY_BACKLOG);
        let keep = opts.history_size;
        let store = history.clone();
        // One writer keeps the stored order equal to the fan-out order, and writes whatever
        // queued up meanwhile in one batch (one transaction), so a busy room costs the
        // database a write per batch, not per message.
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(HISTORY_BATCH);
            while history_rx.recv_many(&mut batch, HISTORY_BATCH).await > 0 {
                if let Err(e) = store.append_batch(&batch, keep).await {
                    warn!(messages = batch.len(), error = %e, "could not store messages in the history");
                }
                batch.clear();
            }
        });
        let files = match &opts.files.dir {
            Some(dir) => match Store::open(dir.clone(), opts.files.max_total_bytes) {
                Ok(store) => Some(Arc::new(store)),
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot use the file directory: file sharing is off");
                    None
                }
            },
            None => None,
        };
        let room_settings = std::sync::RwLock::new(opts.room_settings.clone());
        let inner = Inner {
            rates: std::sync::RwLock::new((opts.message_rate, opts.message_rate_domains.clone())),
            opts,
            rooms: Mutex::default(),
            sessions: Mutex::default(),
            history,
            history_tx,
            history_dropped: LogThrottle::default(),
            refused: LogThrottle::default(),
            noisy: LogThrottle::default(),
            fanned_out: std::sync::atomic::AtomicU64::new(0),
            dropped_slow: std::sync::atomic::AtomicU64::new(0),
            next_conn: AtomicU64::new(1),
            answers: AtomicU64::new(1),
            invited: Mutex::default(),
            transfers: Mutex::default(),
            files,
            pusher: std::sync::OnceLock::new(),
            pushes: std::sync::atomic::AtomicUsize::new(0),
            room_settings,
        };
        let inner = Arc::new(inner);
        if let Some(keep) = inner.opts.files.retention
            && inner.files.is_some()
        {
            tokio::spawn(crate::files::join::expire(Arc::downgrade(&inner), keep));
        }
        Chat { inner }
    }

    pub fn options(&self) -> &ChatOptions {
        &self.inner.opts
    }

    /// Accepts participants' MSRP connections on `listener` (TLS when `tls` is given) until the
    /// task is dropped.
    pub async fn serve_msrp(&self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(self.inner.opts.max_connections));
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "MSRP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                if let Some(n) = self.inner.refused.note() {
                    let max_connections = self.inner.opts.max_connections;
                    warn!(%peer, max_connections, refused_so_far = n, "MSRP connection refused: too many");
                }
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let inner = self.inner.clone();
            // Two spawns, not one task with a match: a task is as large as its largest state,
            // and plain connections should not carry room for a TLS stream.
            match tls.clone() {
                None => {
                    tokio::spawn(async move {
                        let _permit = permit;
                        let (r, w) = tcp.into_split();
                        run_conn(inner, peer, Box::new(r), Box::new(w)).await;
                    });
                }
                Some(acceptor) => {
                    tokio::spawn(async move {
                        let _permit = permit;
                        let timeout = inner.opts.connect_timeout;
                        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => {
                                let (r, w) = tokio::io::split(s);
                                run_conn(inner, peer, Box::new(r), Box::new(w)).await;
                            }
                            Ok(Err(e)) => {
                                if let Some(n) = inner.noisy.note() {
                                    info!(%peer, error = %e, refused_so_far = n, "MSRP TLS handshake failed");
                                }
                            }
                            Err(_) => {
                                if let Some(n) = inner.noisy.note() {
                                    info!(%peer, refused_so_far = n, "MSRP TLS handshake not completed in time");
                                }
                            }
                        }
                    });
                }
            }
        }
    }

    /// Joins a participant to a room: checks the offer, creates the session and returns the
    /// SDP answer. The session is a member of the room at once; it receives once its MSRP
    /// connection is up.
    pub async fn join(&self, req: JoinRequest) -> Result<Joined, JoinError> {
        let inner = &self.inner;
        let opts = &inner.opts;
        let settings = self.admission(&req.room, &req.identity)?;
        let private_messages = self.private_messages_in(&req.room, &settings);
        let offer = Offer::parse(&req.offer).map_err(|_| JoinError::NotAcceptable("unreadable SDP"))?;
        let Some(stream) = offer.chat_stream() else {
            // A call that carries a file to or from the room rather than its chat.
            if let Some(file) = crate::files::sdp::file_stream(&offer, false) {
                return self.join_file(req, &offer, file).await;
            }
            return Err(JoinError::NotAcceptable("no usable MSRP chat stream"));
        };
        let (sid, local) = inner.new_local(stream.secure, stream.connect)?;
        let params = AnswerParams {
            local: &local,
            max_size: opts.max_message_size,
            private_messages,
            wrapped_types: &opts.wrapped_types,
            version: inner.answers.fetch_add(1, Ordering::Relaxed),
        };
        let answer = crate::sdp::answer(&offer, &stream, &params);
        let entry = Entry { room: req.room, identity: req.identity, device: req.device, stream, sid, local };
        let session = self.enter(entry, req.on_end).await?;
        Ok(Joined { session_id: session.id.clone(), answer })
    }

    /// Whether room `name` takes private messages, as a joiner's answer says: an open room's
    /// own setting (it keeps the one it opened with across a reload), else what a room opened
    /// now would take (`settings`).
    pub(crate) fn private_messages_in(&self, name: &str, settings: &RoomSettings) -> bool {
        let own = self.active_room(name).map_or(settings.private_messages, |r| r.settings.private_messages);
        own.unwrap_or(self.inner.opts.private_messages)
    }

    /// Whether `identity` may be in room `name` now (the room exists, its access lists admit
    /// it, the service is not full); the room's settings when so.
    pub(crate) fn admission(&self, name: &str, identity: &Identity) -> Result<RoomSettings, JoinError> {
        let opts = &self.inner.opts;
        if !opts.rooms.allows(name) {
            return Err(JoinError::NoSuchRoom);
        }
        let settings = self.inner.settings_of(name);
        if !settings.admits(&identity.key) {
            info!(room = %name, user = %identity.uri, "join refused: not admitted by the room's access lists");
            return Err(JoinError::Forbidden);
        }
        if self.inner.sessions().len() >= opts.max_sessions {
            warn!(max_sessions = opts.max_sessions, "join refused: the chat service is full");
            return Err(JoinError::Full);
        }
        Ok(settings)
    }

    /// Makes `entry` a session and a member of its room (within `max_sessions` and the
    /// room's `max_participants`), with the welcome and the history queued for it; then waits
    /// for its MSRP connection, or opens it.
    pub(crate) async fn enter(
        &self,
        entry: Entry,
        on_end: Box<dyn FnOnce() + Send>,
    ) -> Result<Arc<Session>, JoinError> {
        let inner = &self.inner;
        let opts = &inner.opts;
        let Entry { room: room_name, identity, device, stream, sid, local } = entry;
        let connect = stream.connect;
        let mut on_end = Some(on_end);
        let session = loop {
            let room = inner.room(&room_name);
            let history_size = room.settings.history_size.map_or(opts.history_size, |n| n.min(opts.history_size));
            room.loaded
                .get_or_init(|| async {
                    match inner.history.recent(&room.uri, history_size).await {
                        Ok(list) => room.lock().recent.extend(list),
                        Err(e) => warn!(room = %room.uri, error = %e, "could not read the history"),
                    }
                })
                .await;
            let mut st = room.lock();
            if st.closed {
                continue;
            }
            // Counted and inserted under one lock of the session table (taken after the room
            // lock, as everywhere): concurrent INVITEs cannot overshoot `max_sessions`.
            let mut table = inner.sessions();
            if table.len() >= opts.max_sessions {
                drop(table);
                if st.members.is_empty() {
                    st.closed = true;
                    drop(st);
                    inner.forget_room(&room);
                }
                warn!(max_sessions = opts.max_sessions, "join refused: the chat service is full");
                return Err(JoinError::Full);
            }
            // Users in the room, the joiner not counted twice: `max_participants` counts users
            // (another device of one already in is let in), and so does the welcome.
            let users = st.user_count();
            let returning = st.has_user(&identity.key);
            if let Some(max) = room.settings.max_participants
                && users >= max
                && !returning
            {
                info!(room = %room.uri, user = %identity.uri, max, "join refused: the room is full");
                return Err(JoinError::RoomFull);
            }
            let session = Arc::new(Session::new(
                sid.clone(),
                local.clone(),
                identity.clone(),
                device.clone(),
                room.clone(),
                stream.clone(),
                opts.queue_messages,
                opts.queue_bytes,
                inner.message_rate_for(&identity.key),
                on_end.take().expect("taken once: the loop ends here"),
            ));
            if opts.welcome {
                let here = users + usize::from(!returning);
                let mut text = welcome_text(&room.name, room.settings.subject.as_deref(), here, st.recent.len());
                text.push_str(&crate::files::welcome_line(&st.files));
                let body = judge::notice(&room.uri, &now_rfc3339(), &text);
                let _ = session.offer(Out { body, quiet: false }, true);
            }
            for m in st.recent.iter() {
                let _ = session.offer(Out { body: judge::replay(&room.uri, m), quiet: false }, true);
            }
            // Member and known by its session-id in one step under the room lock: fan-out
            // (under the same lock) either reaches it live or left it in the replay above,
            // and an end_session can only come after both.
            st.add(session.clone());
            st.roster.touch(&identity.key);
            table.insert(sid.clone(), session.clone());
            break session;
        };
        info!(room = %session.room.uri, user = %session.identity.uri, session = %sid, ?connect, "joined");
        let watchdog = (self.inner.clone(), session.clone());
        tokio::spawn(async move {
            tokio::time::sleep(watchdog.0.opts.connect_timeout).await;
            if !watchdog.1.is_bound() {
                watchdog.0.end_session(&watchdog.1, "no MSRP connection in time", true);
            }
        });
        if connect == Connect::Outbound {
            tokio::spawn(connect_out(self.inner.clone(), session.clone()));
        }
        Ok(session)
    }

    /// The participant hung up (SIP BYE or CANCEL).
    pub fn leave(&self, session_id: &str) {
        if let Some(s) = self.inner.session(session_id) {
            self.inner.end_session(&s, "left", false);
        } else if let Some(t) = self.inner.transfer(session_id) {
            crate::files::transfer::end(&self.inner, &t, "hung up", false);
        }
    }

    /// True while the session exists (joined and not ended).
    pub fn has_session(&self, session_id: &str) -> bool {
        self.inner.session(session_id).is_some() || self.inner.transfer(session_id).is_some()
    }

    /// The answer to a new offer in an existing session (a re-INVITE): the same server URI
    /// and connection roles; `None` when the offer has no usable chat stream of the same
    /// transport, or names another MSRP session of the participant (the session then goes on
    /// unchanged, and the SIP layer answers 488).
    ///
    /// A path may change its hosts (RFC 6714: the session is matched by the session-id of the
    /// path's last URI, so an address rewritten by a NAT or a new relay hop still works), but
    /// not its session-id: moving the chat to another MSRP session in mid-call is not
    /// supported, and saying so beats answering 200 and going on with the old one.
    pub fn reanswer(&self, session_id: &str, offer: &[u8]) -> Option<String> {
        let session = self.inner.session(session_id)?;
        let offer = Offer::parse(offer).ok()?;
        let stream = offer.chat_stream()?;
        if stream.secure != session.stream.secure {
            return None;
        }
        let theirs = |path: &[Uri]| path.last().and_then(|u| u.session_id().map(str::to_owned));
        if theirs(&stream.path) != theirs(&session.stream.path) {
            info!(session = %session.id, "re-INVITE moves the chat to another MSRP session: refused");
            return None;
        }
        let stream = crate::sdp::ChatStream { connect: session.stream.connect, ..stream };
        let opts = &self.inner.opts;
        let params = AnswerParams {
            local: &session.local,
            max_size: opts.max_message_size,
            private_messages: session.room.settings.private_messages.unwrap_or(opts.private_messages),
            wrapped_types: &opts.wrapped_types,
            version: self.inner.answers.fetch_add(1, Ordering::Relaxed),
        };
        Some(crate::sdp::answer(&offer, &stream, &params))
    }

    /// The `o=` version of the next SDP the server writes (they only grow).
    pub(crate) fn next_sdp_version(&self) -> u64 {
        self.inner.answers.fetch_add(1, Ordering::Relaxed)
    }

    /// The nickname the user of session `sid` holds in its room.
    pub(crate) fn nickname_of(&self, sid: &str) -> Option<Nickname> {
        let s = self.inner.session(sid)?;
        let st = s.room.lock();
        st.nicknames.get(&s.identity.key).cloned()
    }

    /// Gives the user of session `sid` back a nickname it held (when nobody took it meanwhile).
    pub(crate) fn restore_nickname(&self, sid: &str, nick: Nickname) {
        let Some(s) = self.inner.session(sid) else { return };
        let mut st = s.room.lock();
        if st.set_nickname(&s.identity.key, Some(nick)).is_ok() {
            st.roster.touch(&s.identity.key);
        }
    }

    /// The room named `name` while it has participants (for conference-info subscribers).
    pub(crate) fn active_room(&self, name: &str) -> Option<Arc<Room>> {
        let room = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner()).get(&name.to_lowercase()).cloned()?;
        let open = !room.lock().closed;
        open.then_some(room)
    }

    /// Rooms that exist now.
    pub fn room_count(&self) -> usize {
        self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Sessions (joined, connected or not).
    pub fn session_count(&self) -> usize {
        self.inner.sessions().len()
    }

    /// Messages offered to participants so far (one per recipient), and participants dropped
    /// as too slow.
    /// New room policies (a configuration reload): who may join, subscribe and refer follows
    /// them at once; a room already open keeps its caps, history size and subject until it
    /// closes.
    pub fn set_room_settings(&self, settings: HashMap<String, RoomSettings>) {
        let lower = settings.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
        *self.inner.room_settings.write().unwrap_or_else(|e| e.into_inner()) = lower;
    }

    /// Room `name`'s policy as in force now.
    pub(crate) fn settings_of(&self, name: &str) -> RoomSettings {
        self.inner.settings_of(name)
    }

    /// New message rates (a configuration reload), for participants who join from now on.
    pub fn set_message_rates(&self, global: Option<u32>, domains: HashMap<String, u32>) {
        *self.inner.rates.write().unwrap_or_else(|e| e.into_inner()) = (global, domains);
    }

    pub fn counters(&self) -> (u64, u64) {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        (load(&self.inner.fanned_out), load(&self.inner.dropped_slow))
    }
}

/// Serves an accepted connection: reads it until it ends, closing it when it stays without
/// a session.
async fn run_conn(inner: Arc<Inner>, peer: std::net::SocketAddr, r: BoxRead, w: BoxWrite) {
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new(Conn::new(id, peer.to_string(), w, inner.opts.write_timeout));
    tokio::spawn(close_when_idle(Arc::downgrade(&inner), conn.clone(), inner.opts.connect_timeout));
    read_loop(inner, conn, r).await;
}

/// Closes `conn` once it has no session bound and carried no session's request for
/// `timeout` (a connection that never binds, or a relay's connection that fell silent).
async fn close_when_idle(inner: std::sync::Weak<Inner>, conn: Arc<Conn>, timeout: std::time::Duration) {
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = conn.stop.cancelled() => return,
            _ = tokio::time::sleep(timeout) => {}
        }
        let now = conn.requests.load(Ordering::Relaxed);
        // A file being sent keeps its connection busy without a request from the peer.
        let sending = inner.upgrade().is_some_and(|i| i.is_sending_on(&conn));
        if now == seen && conn.sessions().is_empty() && !sending {
            info!(conn = conn.id, peer = %conn.peer, "MSRP connection without a session, idle: closed");
            conn.stop.cancel();
            return;
        }
        seen = now;
    }
}

/// Offers `out` to the members `to` selects, without waiting (the caller holds the room lock,
/// so every member sees the room's messages in one order). Returns how many took it and the
/// sessions whose queue was full.
fn offer_all(st: &RoomState, out: &Out, to: impl Fn(&Session) -> bool) -> (usize, Vec<Arc<Session>>) {
    let mut delivered = 0;
    let mut overflowed = Vec::new();
    for m in st.members.iter().filter(|m| to(m)) {
        match m.offer(Out { body: out.body.clone(), quiet: out.quiet }, false) {
            Ok(()) => delivered += 1,
            Err(Overflow::Gone) => {}
            Err(Overflow::Full) => overflowed.push(m.clone()),
        }
    }
    (delivered, overflowed)
}

/// Opens a connection to `first` (a participant or its relay: the first URI of an SDP path),
/// over TLS for `msrps` (RFC 4976 §5, RFC 6135), within `connect_timeout`.
pub(crate) async fn dial(inner: &Inner, first: &Uri) -> Result<(BoxRead, BoxWrite), String> {
    let addr = (first.host_unbracketed().to_owned(), first.port().unwrap_or(2855));
    let connected = async {
        let tcp = TcpStream::connect((addr.0.as_str(), addr.1)).await?;
        let _ = tcp.set_nodelay(true);
        let halves: (BoxRead, BoxWrite) = if first.is_secure() {
            let config = inner.opts.client_tls.clone().ok_or_else(|| std::io::Error::other("no TLS client set-up"))?;
            let name = rustls::pki_types::ServerName::try_from(addr.0.clone()).map_err(std::io::Error::other)?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            let (r, w) = tokio::io::split(tls);
            (Box::new(r), Box::new(w))
        } else {
            let (r, w) = tcp.into_split();
            (Box::new(r), Box::new(w))
        };
        std::io::Result::Ok(halves)
    };
    match tokio::time::timeout(inner.opts.connect_timeout, connected).await {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => Err(format!("could not connect to {}: {e}", first.as_str())),
        Err(_) => Err(format!("could not connect to {} in time", first.as_str())),
    }
}

/// Connects to the participant (or its relay) and starts its session there.
async fn connect_out(inner: Arc<Inner>, session: Arc<Session>) {
    let first = session.stream.path[0].clone();
    let to = Path::new(session.stream.path.clone()).expect("an SDP path is never empty");
    let (r, w) = match dial(&inner, &first).await {
        Ok(h) => h,
        Err(why) => {
            inner.end_session(&session, &why, true);
            return;
        }
    };
    let conn = Arc::new(Conn::new(
        inner.next_conn.fetch_add(1, Ordering::Relaxed),
        first.as_str().to_owned(),
        w,
        inner.opts.write_timeout,
    ));
    {
        let mut link = session.link();
        if session.has_ended() {
            // Hung up while connecting: the connection is dropped unused.
            return;
        }
        link.conn = Some(conn.clone());
        link.to_path = Some(to.clone());
        conn.sessions().push(session.clone());
    }
    inner.start_writer(&session, &conn, to, true);
    inner.announce(&session, "joined", None);
    read_loop(inner, conn, r).await;
}

/// The greeting a joiner gets from the room: its name, how many are in it (the joiner
/// included) and how many earlier messages follow.
fn welcome_text(room: &str, subject: Option<&str>, participants: usize, history: usize) -> String {
    let here = if participants == 1 {
        "you are the first one here".to_owned()
    } else {
        format!("{participants} participants are here")
    };
    let follow = match history {
        0 => String::new(),
        1 => " The last message follows.".to_owned(),
        n => format!(" The last {n} messages follow."),
    };
    match subject {
        Some(subject) => format!("Welcome to {room} ({subject}): {here}.{follow}"),
        None => format!("Welcome to {room}: {here}.{follow}"),
    }
}

impl Inner {
    /// The message rate for a participant whose identity key is `user@domain`.
    fn message_rate_for(&self, key: &str) -> Option<u32> {
        let rates = self.rates.read().unwrap_or_else(|e| e.into_inner());
        let domain = key.rsplit_once('@').map_or("", |(_, d)| d);
        rates.1.get(domain).copied().or(rates.0)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions().get(id).cloned()
    }

    pub fn transfer(&self, id: &str) -> Option<Arc<Transfer>> {
        self.transfers.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    pub fn transfer_count(&self) -> usize {
        self.transfers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Registers a transfer, within `max_file_transfers`.
    pub(crate) fn add_transfer(&self, t: Arc<Transfer>) -> Result<(), JoinError> {
        let mut table = self.transfers.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= self.opts.files.max_transfers {
            return Err(JoinError::Busy);
        }
        table.insert(t.id.clone(), t);
        Ok(())
    }

    pub(crate) fn forget_transfer(&self, id: &str) {
        self.transfers.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Whether a live transfer uses `conn`.
    pub(crate) fn has_transfer_on(&self, conn: &Conn) -> bool {
        self.transfers.lock().unwrap_or_else(|e| e.into_inner()).values().any(|t| t.is_on(conn))
    }

    /// Whether a file is being sent on `conn`.
    pub(crate) fn is_sending_on(&self, conn: &Conn) -> bool {
        self.transfers.lock().unwrap_or_else(|e| e.into_inner()).values().any(|t| t.is_sending_on(conn))
    }

    /// File transfers that `key` started (uploads and pulls) now.
    pub(crate) fn transfers_of(&self, key: &str) -> usize {
        self.transfers.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|t| t.started_by(key)).count()
    }

    /// Ends the transfers on a connection that is gone.
    pub(crate) fn end_transfers_on(self: &Arc<Self>, conn: &Conn, why: &str) {
        let on: Vec<_> = self
            .transfers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|t| t.is_on(conn))
            .cloned()
            .collect();
        for t in on {
            crate::files::transfer::end(self, &t, why, true);
        }
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh MSRP session of the focus, over TLS or not: its session-id and URI. The URI has
    /// the port of that transport's listener, which the peer connects to; when the focus
    /// connects out (`Connect::Outbound`) nobody connects to it, and any listener's port will do.
    pub(crate) fn new_local(&self, secure: bool, connect: Connect) -> Result<(String, Uri), JoinError> {
        let opts = &self.opts;
        let listener = if secure { opts.msrps_port } else { opts.msrp_port };
        let port = match (listener, connect) {
            (Some(p), _) => p,
            (None, Connect::Outbound) => opts.msrp_port.or(opts.msrps_port).unwrap_or(2855),
            (None, Connect::Inbound) => return Err(JoinError::NotAcceptable("no MSRP listener for this transport")),
        };
        let sid = msrp::id::random_session_id();
        let local = Uri::new(secure, &opts.msrp_host, Some(port), Some(&sid))
            .map_err(|_| JoinError::NotAcceptable("msrp_host is not a valid host"))?;
        Ok((sid, local))
    }

    /// What MSRP session-id `id` is now: a chat session or a file transfer.
    fn owner_now(&self, id: &str) -> Option<Owner> {
        // A chat session first: nearly every request is one.
        self.session(id).map(Owner::Chat).or_else(|| self.transfer(id).map(Owner::File))
    }

    /// What MSRP session-id `id` is; for one the focus offered to someone who has not answered
    /// yet (a chat invitee, a file's recipient), what the answer makes of it, waited for within
    /// `connect_timeout`.
    pub async fn owner_of(&self, id: &str) -> Option<Owner> {
        if let Some(o) = self.owner_now(id) {
            return Some(o);
        }
        let pending = self.invited.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()?;
        let answered = pending.notified();
        tokio::pin!(answered);
        answered.as_mut().enable();
        // Looked up again once registered for the wake-up: an answer in between is seen.
        if let Some(o) = self.owner_now(id) {
            return Some(o);
        }
        tokio::time::timeout(self.opts.connect_timeout, answered).await.ok()?;
        self.owner_now(id)
    }

    /// Room `name`'s policy as in force now (the defaults for a room without one).
    pub(crate) fn settings_of(&self, name: &str) -> RoomSettings {
        let map = self.room_settings.read().unwrap_or_else(|e| e.into_inner());
        map.get(&name.to_lowercase()).cloned().unwrap_or_default()
    }

    /// The room named `name`, created when missing.
    fn room(&self, name: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        // One spelling per room: `Lobby` and `lobby` are one room, with one URI and history.
        let name = name.to_lowercase();
        rooms
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Room::new(&name, &self.opts.domain, self.settings_of(&name))))
            .clone()
    }

    /// Checks that a request on `conn` belongs to `session`, and binds the session to `conn`
    /// on its first request (RFC 4975 §5.4). The request's From-Path must end at the
    /// participant's SDP path (RFC 6714: matching its session-id is enough, so a rewritten
    /// address does not break it). Requests may also arrive on another connection than the
    /// bound one: a relay in the participant's path opens its own connection towards the
    /// server, while the server's messages go out on the one it opened (RFC 4976 §6).
    ///
    /// Returns the To-Path of the server's messages when this request bound the session: the
    /// caller answers the request first and then calls [`Inner::activate`], because a client
    /// that bound the session (AG's msrplib) refuses anything that arrives before the 200 to
    /// its binding request (`481 Chunk received while binding session`).
    pub fn bind(
        self: &Arc<Self>,
        session: &Arc<Session>,
        conn: &Arc<Conn>,
        from: Option<&Path>,
    ) -> Result<Option<Path>, StatusCode> {
        let from = from.ok_or(StatusCode::BAD_REQUEST)?;
        let theirs = session.stream.path.last().and_then(Uri::session_id);
        if from.last().session_id() != theirs {
            if let Some(n) = self.noisy.note() {
                info!(session = %session.id, from = %from.last().as_str(), refused_so_far = n, "From-Path does not match the SDP path: 481");
            }
            return Err(StatusCode::SESSION_DOES_NOT_EXIST);
        }
        let to = {
            let mut link = session.link();
            // Checked under the link lock, which end_session takes after marking the session
            // ended: either this binding is seen there, or the end is seen here.
            if session.has_ended() {
                return Err(StatusCode::SESSION_DOES_NOT_EXIST);
            }
            if link.conn.is_some() {
                return Ok(None);
            }
            link.conn = Some(conn.clone());
            link.to_path = Some(from.clone());
            conn.sessions().push(session.clone());
            from.clone()
        };
        Ok(Some(to))
    }

    /// Starts sending to a session bound by a participant's request, once that request is
    /// answered: the history replay and the room's messages, then tells the room.
    pub fn activate(self: &Arc<Self>, session: &Arc<Session>, conn: &Arc<Conn>, to: Path) {
        self.start_writer(session, conn, to, false);
        self.announce(session, "joined", None);
    }

    fn start_writer(self: &Arc<Self>, session: &Arc<Session>, conn: &Arc<Conn>, to: Path, bind_first: bool) {
        let Some(rx) = session.take_receiver() else { return };
        let (inner, s, c) = (self.clone(), session.clone(), conn.clone());
        tokio::spawn(async move {
            if let Err(e) = write_queue(s.clone(), c, to, rx, inner.opts.chunk_size, bind_first).await {
                inner.end_session(&s, &format!("write failed: {e}"), true);
            }
        });
    }

    /// Posts a notice from the room about `session` to everyone else in it.
    /// Tells the room that `session` `what` ("joined", "left"), naming it by `name` (its
    /// nickname or display name as the room knew it; looked up now when `None`), else its URI.
    fn announce(self: &Arc<Self>, session: &Session, what: &str, name: Option<String>) {
        if what == "joined" && session.has_ended() {
            // Ended while binding: its "left" may already be out.
            return;
        }
        let room = &session.room;
        let name = name.or_else(|| {
            let st = room.lock();
            st.display_of(&session.identity.key, session.identity.display.as_deref()).map(str::to_owned)
        });
        let who = name.unwrap_or_else(|| session.identity.uri.clone());
        let body = judge::notice(&room.uri, &now_rfc3339(), &format!("{who} {what}"));
        self.fan_out(room, Out { body, quiet: false }, |m| m.id != session.id);
    }

    /// Offers a notice from the room to every member.
    pub(crate) fn notice_all(self: &Arc<Self>, room: &Room, out: Out) {
        self.fan_out(room, out, |_| true);
    }

    /// The rooms open now.
    pub(crate) fn open_rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Offers a message to every member that `to` selects; ends the sessions that cannot take
    /// it. Returns how many got it.
    fn fan_out(self: &Arc<Self>, room: &Room, out: Out, to: impl Fn(&Session) -> bool) -> usize {
        let st = room.lock();
        let (delivered, overflowed) = offer_all(&st, &out, to);
        self.fanned_out.fetch_add(delivered as u64, Ordering::Relaxed);
        drop(st);
        self.drop_overflowed(room, overflowed);
        delivered
    }

    fn drop_overflowed(self: &Arc<Self>, room: &Room, overflowed: Vec<Arc<Session>>) {
        self.dropped_slow.fetch_add(overflowed.len() as u64, Ordering::Relaxed);
        for r in overflowed {
            warn!(room = %room.uri, user = %r.identity.uri, session = %r.id, "outgoing queue full: dropping the participant");
            self.end_session(&r, "too slow: outgoing queue full", true);
        }
    }

    /// A complete message from `session`: judged, then fanned out. Returns the status for the
    /// sender.
    pub fn on_message(self: &Arc<Self>, session: &Arc<Session>, content_type: &str, body: &Bytes) -> StatusCode {
        let room = &session.room;
        let now = now_rfc3339();
        let display = {
            let st = room.lock();
            st.display_of(&session.identity.key, session.identity.display.as_deref()).map(str::to_owned)
        };
        let ctx = judge::Context {
            room_uri: &room.uri,
            room_name: &room.name,
            wrapped_types: &self.opts.wrapped_types,
            sender_uri: &session.identity.uri,
            sender_key: &session.identity.key,
            display: display.as_deref(),
            private_messages: room.settings.private_messages.unwrap_or(self.opts.private_messages),
            now: &now,
        };
        match judge::judge(&ctx, content_type, body) {
            Verdict::Refuse(status, why) => {
                info!(room = %room.uri, user = %session.identity.uri, status = %status, "message refused: {why}");
                status
            }
            Verdict::Drop(why) => {
                debug!(room = %room.uri, user = %session.identity.uri, "message dropped: {why}");
                StatusCode::OK
            }
            Verdict::Composing(msg) => {
                self.fan_out(room, Out { body: msg.body, quiet: true }, |m| m.id != session.id);
                StatusCode::OK
            }
            Verdict::Public(msg) => {
                let stored = Stored {
                    sender: session.identity.uri.clone(),
                    display,
                    datetime: msg.datetime.clone(),
                    content_type: msg.content_type.clone(),
                    body: msg.inner.clone(),
                };
                // Remembered, stored and offered in one step under the room lock: a joiner
                // gets it either in its replay or live, never both, and every member and the
                // history see the room's messages in the same order.
                let out = Out { body: msg.body, quiet: false };
                let mut st = room.lock();
                let keep = room.settings.history_size.map_or(self.opts.history_size, |n| n.min(self.opts.history_size));
                st.remember(stored.clone(), keep);
                if self.history_tx.try_send((room.uri.clone(), stored)).is_err()
                    && let Some(n) = self.history_dropped.note()
                {
                    let room = &room.uri;
                    warn!(
                        room,
                        dropped_so_far = n,
                        "history backlog full ({HISTORY_BACKLOG} messages): messages not stored"
                    );
                }
                let (delivered, overflowed) = offer_all(&st, &out, |m| m.id != session.id);
                self.fanned_out.fetch_add(delivered as u64, Ordering::Relaxed);
                drop(st);
                self.drop_overflowed(room, overflowed);
                StatusCode::OK
            }
            Verdict::Private { to, msg } => {
                let out = Out { body: msg.body, quiet: false };
                if self.fan_out(room, out, |m| m.identity.key == to && m.id != session.id) == 0 {
                    debug!(room = %room.uri, to, "private message to nobody here: 404");
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                }
            }
        }
    }

    /// NICKNAME (RFC 7701): 400 without Use-Nickname, 424 for a malformed name, 425 when
    /// another user holds it; an empty value releases the current one.
    pub fn nickname(&self, session: &Session, req: &Request) -> StatusCode {
        let Some(wanted) = req.headers.use_nickname() else { return StatusCode::BAD_REQUEST };
        let nick = if wanted.0.trim().is_empty() {
            None
        } else {
            match Nickname::parse(&wanted.0) {
                Ok(n) => Some(n),
                Err(e) => {
                    info!(user = %session.identity.uri, error = %e, "nickname refused: 424");
                    return StatusCode::BAD_NICKNAME;
                }
            }
        };
        let mut st = session.room.lock();
        match st.set_nickname(&session.identity.key, nick) {
            Ok(()) => {
                st.roster.touch(&session.identity.key);
                StatusCode::OK
            }
            Err(_) => StatusCode::NICKNAME_IN_USE,
        }
    }

    /// Takes a closed room out of the room table (unless a new room of that name replaced it).
    fn forget_room(&self, room: &Arc<Room>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.get(&room.name).is_some_and(|r| std::ptr::eq(r.as_ref(), room.as_ref())) {
            rooms.remove(&room.name);
        }
    }

    /// Ends a session once: out of the room and the session table, its writer stopped, its
    /// connection closed when nothing else uses it, a BYE sent when `bye`, and a notice to
    /// the room.
    pub fn end_session(self: &Arc<Self>, session: &Arc<Session>, why: &str, bye: bool) {
        if !session.mark_ended() {
            return;
        }
        self.sessions().remove(&session.id);
        let room = &session.room;
        let mut gone = Vec::new();
        let (empty, name) = {
            let mut st = room.lock();
            // The name the room knew it by, before leaving releases its nickname.
            let name = st.display_of(&session.identity.key, session.identity.display.as_deref()).map(str::to_owned);
            st.remove(session);
            st.closed = st.members.is_empty();
            if st.closed {
                // The room's files go with it (each is removed from disk once no transfer
                // still sends it), dropped below, outside the lock.
                gone = std::mem::take(&mut st.files);
            }
            st.roster.touch(&session.identity.key);
            (st.closed, name)
        };
        drop(gone);
        if empty {
            self.forget_room(room);
        }
        session.stop.cancel();
        // After mark_ended: a bind racing this one has either finished (its connection is
        // seen here) or will see the session ended.
        let conn = session.link().conn.take();
        let was_bound = conn.is_some();
        if let Some(conn) = conn {
            let unused = {
                let mut list = conn.sessions();
                list.retain(|s| s.id != session.id);
                list.is_empty()
            };
            // A relay's connection may carry a file transfer beside the chat.
            if unused && !self.has_transfer_on(&conn) {
                conn.stop.cancel();
            }
        }
        info!(room = %room.uri, user = %session.identity.uri, session = %session.id, "session ended: {why}");
        if bye && let Some(hook) = session.take_on_end() {
            hook();
        }
        if !empty && was_bound {
            self.announce(session, "left", name);
        }
    }
}
