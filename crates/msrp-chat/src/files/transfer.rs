//! One file over one MSRP session (RFC 5547 §9 over RFC 4975): received from its uploader
//! into the store, chunk by chunk with a running SHA-1, or sent from the store to a
//! participant. A transfer shares the chat's MSRP listeners and connection code (a relay may
//! carry it beside chat sessions); the read loop hands it the requests and responses of its
//! session-id. Each transfer writes on its own task, so a slow recipient slows only itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use msrp::header::{ByteRange, ContentType, MessageId, Path};
use msrp::message::TransactionId;
use msrp::{ByteString, Continuation, Header, Method, Request, Response, StatusCode, Uri, encode};
use sha1::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::sdp::{Direction, FileStream};
use super::{RoomFile, Store};
use crate::conn::{Conn, answer};
use crate::identity::Identity;
use crate::room::Room;
use crate::sdp::Connect;
use crate::server::Inner;

/// Bytes per SEND chunk the focus sends (AG's SDK sends files in 64 KiB chunks too).
const FILE_CHUNK: usize = 64 * 1024;
/// How long the sender waits for the recipient's answers to the last chunks.
const ANSWERS_WAIT: Duration = Duration::from_secs(30);
/// Pause between a finished transfer and its hang-up: the peer finishes its own checks (the
/// SDK verifies the hash after the last chunk) before the BYE.
const HANG_UP_AFTER: Duration = Duration::from_secs(1);

/// What a transfer carries.
pub(crate) enum Kind {
    /// From the participant into the store.
    Upload(Box<tokio::sync::Mutex<Receiving>>),
    /// From the store to the participant.
    Download(Arc<RoomFile>),
}

/// An upload's progress.
pub(crate) struct Receiving {
    file: Option<tokio::fs::File>,
    path: std::path::PathBuf,
    store: Arc<Store>,
    /// The room whose upload reservation it holds (`RoomState::uploading`).
    room: Arc<Room>,
    /// Bytes reserved in the store and the room (the selector's size).
    reserved: u64,
    received: u64,
    hash: sha1::Sha1,
    message_id: Option<String>,
    /// The file became the room's, or was discarded: nothing more happens to it.
    settled: bool,
}

impl Receiving {
    /// Removes what was received and gives its reservation back (once).
    fn discard(&mut self) {
        if !self.settled {
            self.settled = true;
            self.file = None;
            let _ = std::fs::remove_file(&self.path);
            self.store.release(self.reserved);
            let mut st = self.room.lock();
            st.uploading.0 = st.uploading.0.saturating_sub(1);
            st.uploading.1 = st.uploading.1.saturating_sub(self.reserved);
        }
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.discard();
    }
}

/// One file transfer.
pub(crate) struct Transfer {
    /// The focus's MSRP session-id for it.
    pub id: String,
    pub local: Uri,
    pub room: Arc<Room>,
    pub identity: Identity,
    pub stream: FileStream,
    pub kind: Kind,
    conn: Mutex<Option<Arc<Conn>>>,
    ended: AtomicBool,
    on_end: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    pub stop: CancellationToken,
    /// Chunks the recipient answered (a download).
    answered: AtomicU64,
    answers: tokio::sync::Notify,
    /// A download started sending.
    sending: AtomicBool,
    /// When it last moved (bound, a chunk in or out, an answer), for the stall watchdog.
    progress: Mutex<std::time::Instant>,
    /// The focus offered it (a push), rather than the participant asking.
    pushed: bool,
}

impl Transfer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        local: Uri,
        room: Arc<Room>,
        identity: Identity,
        stream: FileStream,
        kind: Kind,
        pushed: bool,
        on_end: Box<dyn FnOnce() + Send>,
    ) -> Transfer {
        Transfer {
            id,
            local,
            room,
            identity,
            stream,
            kind,
            conn: Mutex::new(None),
            ended: AtomicBool::new(false),
            on_end: Mutex::new(Some(on_end)),
            stop: CancellationToken::new(),
            answered: AtomicU64::new(0),
            answers: tokio::sync::Notify::new(),
            sending: AtomicBool::new(false),
            progress: Mutex::new(std::time::Instant::now()),
            pushed,
        }
    }

    pub fn is_bound(&self) -> bool {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn conn(&self) -> Option<Arc<Conn>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_on(&self, conn: &Conn) -> bool {
        self.conn().is_some_and(|c| c.id == conn.id)
    }

    /// Whether `key` asked for it (an upload or a pull, not the focus's offer).
    pub fn started_by(&self, key: &str) -> bool {
        !self.pushed && self.identity.key == key
    }

    /// Whether it is sending a file on `conn` (the recipient sends nothing meanwhile).
    pub fn is_sending_on(&self, conn: &Conn) -> bool {
        self.sending.load(Ordering::Acquire) && self.is_on(conn)
    }

    fn moved(&self) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }

    /// Binds it to `conn` unless it is bound already.
    fn bind(&self, conn: &Arc<Conn>) {
        let mut link = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if link.is_none() {
            *link = Some(conn.clone());
        }
    }

    /// The To-Path of what the focus sends: the peer's SDP path.
    fn to_path(&self) -> Path {
        Path::new(self.stream.path.clone()).expect("an SDP path is never empty")
    }
}

/// An upload with a reservation of `size` bytes at `path`.
pub(crate) fn receiving(store: Arc<Store>, path: std::path::PathBuf, size: u64, room: Arc<Room>) -> Receiving {
    Receiving {
        file: None,
        path,
        store,
        room,
        reserved: size,
        received: 0,
        hash: sha1::Sha1::new(),
        message_id: None,
        settled: false,
    }
}

/// The chunk of an upload being read.
pub(crate) struct Chunk {
    transfer: Arc<Transfer>,
    req: Request,
    start: u64,
    len: u64,
    /// Why it is refused, once known (its remaining bytes are dropped).
    refused: Option<StatusCode>,
}

/// The transfer a request or response belongs to, by the session-id of its To-Path.
pub(crate) fn owner(inner: &Inner, to: Option<&Path>) -> Option<Arc<Transfer>> {
    let sid = to?.last().session_id()?;
    inner.transfer(sid)
}

/// A request for transfer `t` arrived on `conn`: bound, checked, and either answered now or
/// returned as a chunk whose body follows.
pub(crate) async fn on_head(inner: &Arc<Inner>, conn: &Arc<Conn>, t: Arc<Transfer>, req: Request) -> Option<Chunk> {
    conn.requests.fetch_add(1, Ordering::Relaxed);
    let theirs = t.stream.path.last().and_then(Uri::session_id);
    let from = req.headers.from_path().map(|p| p.last().session_id());
    if from != Some(theirs) || t.ended.load(Ordering::Acquire) {
        answer(conn, &req, StatusCode::SESSION_DOES_NOT_EXIST, &t.local).await;
        return None;
    }
    match (req.method.clone(), &t.kind) {
        (Method::Report, _) => None,
        (Method::Send, _) if req.headers.content_type().is_none() => {
            // An empty SEND: a binding (RFC 4975 §5.4) or a keep-alive.
            t.bind(conn);
            t.moved();
            answer(conn, &req, StatusCode::OK, &t.local).await;
            if matches!(t.kind, Kind::Download(_)) {
                start_sending(inner, &t, conn.clone());
            }
            None
        }
        (Method::Send, Kind::Upload(rx)) => {
            t.bind(conn);
            let range = req.headers.byte_range().cloned().unwrap_or(ByteRange { start: 1, end: None, total: None });
            let size = t.stream.selector.size.unwrap_or(0);
            let mut r = rx.lock().await;
            if r.settled {
                // Ended meanwhile (its part already removed): no file is created again.
                drop(r);
                answer(conn, &req, StatusCode::SESSION_DOES_NOT_EXIST, &t.local).await;
                return None;
            }
            let id = req.headers.message_id().map(|m| m.as_str().to_owned());
            // One file is one message, its chunks in order on one session.
            let another = r.message_id.is_some() && r.message_id != id;
            let refused = if another || range.start != r.received + 1 {
                Some(StatusCode::BAD_REQUEST)
            } else if range.total.is_some_and(|total| total != size) {
                Some(StatusCode::MESSAGE_TOO_LARGE)
            } else {
                None
            };
            r.message_id = id;
            if refused.is_none() && r.file.is_none() {
                match tokio::fs::File::create(&r.path).await {
                    Ok(f) => r.file = Some(f),
                    Err(e) => {
                        info!(room = %t.room.uri, error = %e, "cannot store a file: transfer refused");
                        drop(r);
                        answer(conn, &req, StatusCode::SERVER_ERROR, &t.local).await;
                        end(inner, &t, "cannot store the file", true);
                        return None;
                    }
                }
            }
            Some(Chunk { transfer: t.clone(), start: range.start, len: 0, refused, req })
        }
        (Method::Send, Kind::Download(_)) => {
            // The recipient sends nothing but bindings and keep-alives.
            answer(conn, &req, StatusCode::FORBIDDEN, &t.local).await;
            None
        }
        _ => {
            answer(conn, &req, StatusCode::NOT_IMPLEMENTED, &t.local).await;
            None
        }
    }
}

impl Chunk {
    /// A piece of the chunk's body: onto the disk and into the hash.
    pub async fn write(&mut self, piece: &Bytes) {
        if self.refused.is_some() {
            return;
        }
        let Kind::Upload(rx) = &self.transfer.kind else { return };
        let size = self.transfer.stream.selector.size.unwrap_or(0);
        let mut r = rx.lock().await;
        if r.settled {
            // The transfer ended meanwhile (a BYE before the end line): nothing is kept.
            self.refused = Some(StatusCode::SESSION_DOES_NOT_EXIST);
            return;
        }
        if r.received + piece.len() as u64 > size {
            self.refused = Some(StatusCode::MESSAGE_TOO_LARGE);
            return;
        }
        let Some(file) = r.file.as_mut() else { return };
        if let Err(e) = file.write_all(piece).await {
            info!(room = %self.transfer.room.uri, error = %e, "cannot write a file");
            self.refused = Some(StatusCode::SERVER_ERROR);
            return;
        }
        r.hash.update(piece);
        r.received += piece.len() as u64;
        self.len += piece.len() as u64;
        self.transfer.moved();
    }

    /// The chunk's end line: answered, reported, and on the last one the file is checked and
    /// handed to the room.
    pub async fn end(self, inner: &Arc<Inner>, conn: &Arc<Conn>, flag: Continuation) {
        let t = self.transfer.clone();
        let Kind::Upload(rx) = &t.kind else { return };
        if flag == Continuation::Abort {
            answer(conn, &self.req, StatusCode::OK, &t.local).await;
            end(inner, &t, "the sender interrupted the file", true);
            return;
        }
        if let Some(status) = self.refused {
            answer(conn, &self.req, status, &t.local).await;
            end(inner, &t, &format!("a chunk was refused ({})", status.0), true);
            return;
        }
        let size = t.stream.selector.size.unwrap_or(0);
        let mut r = rx.lock().await;
        if r.settled || t.ended.load(Ordering::Acquire) {
            drop(r);
            answer(conn, &self.req, StatusCode::SESSION_DOES_NOT_EXIST, &t.local).await;
            return;
        }
        let done = r.received == size;
        if flag == Continuation::Complete && !done {
            drop(r);
            answer(conn, &self.req, StatusCode::BAD_REQUEST, &t.local).await;
            end(inner, &t, "the file ended short of its size", true);
            return;
        }
        if done {
            let hash: [u8; 20] = r.hash.clone().finalize().into();
            if t.stream.selector.sha1.is_some_and(|h| h != hash) {
                drop(r);
                answer(conn, &self.req, StatusCode::BAD_REQUEST, &t.local).await;
                end(inner, &t, "the file does not match its hash", true);
                return;
            }
            if let Some(mut f) = r.file.take()
                && let Err(e) = f.flush().await
            {
                info!(room = %t.room.uri, error = %e, "cannot store a file");
                drop(r);
                answer(conn, &self.req, StatusCode::SERVER_ERROR, &t.local).await;
                end(inner, &t, "cannot store the file", true);
                return;
            }
            r.settled = true;
            let mut selector = t.stream.selector.clone();
            selector.sha1 = Some(hash);
            if selector.content_type.is_none() {
                selector.content_type = Some("application/octet-stream".into());
            }
            let file = RoomFile {
                id: t.id.clone(),
                selector,
                sender: t.identity.clone(),
                path: r.path.clone(),
                added: std::time::Instant::now(),
                store: r.store.clone(),
            };
            drop(r);
            answered(conn, &self.req, &t.local, self.start, self.len, size).await;
            inner.add_file(&t.room, file);
            let (inner, t) = (inner.clone(), t.clone());
            tokio::spawn(async move {
                tokio::time::sleep(HANG_UP_AFTER).await;
                end(&inner, &t, "file received", true);
            });
            return;
        }
        drop(r);
        answered(conn, &self.req, &t.local, self.start, self.len, size).await;
    }
}

/// 200 to a chunk, and the success REPORT the uploader asks for (AG's SDK counts a file sent
/// when a REPORT covers its last byte).
async fn answered(conn: &Conn, req: &Request, local: &Uri, start: u64, len: u64, total: u64) {
    answer(conn, req, StatusCode::OK, local).await;
    if len > 0 && msrp::report::success_report_wanted(req) {
        let range = ByteRange::chunk(start, len, Some(total));
        if let Some(rep) = msrp::report::report(req, StatusCode::OK, range, local) {
            let mut out = BytesMut::with_capacity(256);
            encode::encode_head_lines(&rep, &mut out);
            encode::encode_end_line(&rep.tid, Continuation::Complete, &mut out);
            let _ = conn.write(&out).await;
        }
    }
}

/// A response to a chunk the focus sent; true when it was a transfer's.
pub(crate) fn on_response(inner: &Arc<Inner>, conn: &Conn, resp: &Response) -> bool {
    let Some(t) = owner(inner, resp.headers.to_path()) else { return false };
    if !t.is_on(conn) {
        return true;
    }
    if resp.status.is_success() {
        t.moved();
        t.answered.fetch_add(1, Ordering::AcqRel);
        t.answers.notify_waiters();
    } else {
        end(inner, &t, &format!("the recipient refused a chunk ({})", resp.status.0), true);
    }
    true
}

/// Starts sending a download on `conn`, once.
fn start_sending(inner: &Arc<Inner>, t: &Arc<Transfer>, conn: Arc<Conn>) {
    if t.sending.swap(true, Ordering::AcqRel) {
        return;
    }
    let (inner, t) = (inner.clone(), t.clone());
    tokio::spawn(async move {
        let result = send_file(&t, &conn).await;
        match result {
            Ok(()) => {
                tokio::time::sleep(HANG_UP_AFTER).await;
                end(&inner, &t, "file sent", true);
            }
            Err(why) => end(&inner, &t, &why, true),
        }
    });
}

/// Sends the file in chunks, then waits for the answers to all of them.
async fn send_file(t: &Transfer, conn: &Conn) -> Result<(), String> {
    let Kind::Download(file) = &t.kind else { return Ok(()) };
    let mut f = tokio::fs::File::open(&file.path).await.map_err(|e| format!("cannot read the file: {e}"))?;
    let total = file.size();
    let to = t.to_path();
    let id = MessageId::random();
    let ctype = file.selector.content_type.as_deref().unwrap_or("application/octet-stream");
    let ctype = ContentType::parse(&ByteString::from(ctype.to_owned()))
        .or_else(|_| ContentType::parse(&ByteString::from_static("application/octet-stream")))
        .map_err(|_| "no content type".to_owned())?;
    let mut sent = 0u64;
    let mut chunks = 0u64;
    let mut buf = vec![0u8; FILE_CHUNK];
    let mut out = BytesMut::with_capacity(FILE_CHUNK + 512);
    while sent < total || chunks == 0 {
        if t.stop.is_cancelled() {
            return Err("stopped".into());
        }
        let want = ((total - sent) as usize).min(FILE_CHUNK);
        f.read_exact(&mut buf[..want]).await.map_err(|e| format!("cannot read the file: {e}"))?;
        let piece = Bytes::copy_from_slice(&buf[..want]);
        let range = if total == 0 { ByteRange::whole(0) } else { ByteRange::chunk(sent + 1, want as u64, Some(total)) };
        let mut req = Request::new(TransactionId::random(), Method::Send)
            .with(Header::ToPath(to.clone()))
            .with(Header::FromPath(Path::single(t.local.clone())))
            .with(Header::MessageId(id.clone()))
            .with(Header::ByteRange(range))
            .with(Header::ContentType(ctype.clone()));
        req.tid = encode::safe_tid_from(&piece, req.tid);
        sent += want as u64;
        chunks += 1;
        let flag = if sent == total { Continuation::Complete } else { Continuation::More };
        out.clear();
        encode::encode_request(&req, Some(&piece), flag, &mut out).map_err(|e| e.to_string())?;
        conn.write(&out).await.map_err(|e| format!("write failed: {e}"))?;
        t.moved();
    }
    let all_answered = async {
        loop {
            let wait = t.answers.notified();
            if t.answered.load(Ordering::Acquire) >= chunks {
                return;
            }
            wait.await;
        }
    };
    tokio::select! {
        _ = all_answered => Ok(()),
        _ = t.stop.cancelled() => Err("stopped".into()),
        _ = tokio::time::sleep(ANSWERS_WAIT) => Err("the recipient did not answer every chunk".into()),
    }
}

/// Opens the MSRP connection of a transfer whose peer waits to be called, binds it with an
/// empty SEND (RFC 4975 §5.4) and, for a download, sends the file.
pub(crate) async fn connect_out(inner: Arc<Inner>, t: Arc<Transfer>) {
    let first = t.stream.path[0].clone();
    let (r, w) = match crate::server::dial(&inner, &first).await {
        Ok(halves) => halves,
        Err(why) => {
            end(&inner, &t, &why, true);
            return;
        }
    };
    let conn = Arc::new(Conn::new(inner.next_conn_id(), first.as_str().to_owned(), w, inner.opts.write_timeout));
    {
        let mut link = t.conn.lock().unwrap_or_else(|e| e.into_inner());
        if t.ended.load(Ordering::Acquire) {
            return;
        }
        *link = Some(conn.clone());
    }
    // An empty SEND first, a download's too: AG's SDK, waiting as the passive side, takes the
    // first request as the binding and fails on a file chunk there.
    // No 200 comes to it (Failure-Report partial): the answers counted are the file's chunks'.
    let bind = crate::session::bind_frame(&t.to_path(), &t.local);
    if conn.write(&bind).await.is_err() {
        end(&inner, &t, "could not bind the connection", true);
        return;
    }
    if let Kind::Download(_) = t.kind {
        start_sending(&inner, &t, conn.clone());
    }
    crate::conn::read_loop(inner, conn, r).await;
}

/// Starts a transfer that is registered: dials when the focus connects, and ends it when it
/// stalls: no connection within `connect_timeout`, then nothing received, sent or answered for
/// `write_timeout` (a peer that binds and goes silent must not keep a transfer slot and its
/// reserved bytes).
pub(crate) fn start(inner: &Arc<Inner>, t: &Arc<Transfer>) {
    let watchdog = Arc::downgrade(t);
    let (connect, stall) = (inner.opts.connect_timeout, inner.opts.write_timeout);
    let inner2 = inner.clone();
    tokio::spawn(async move {
        let mut wait = connect.min(stall);
        loop {
            tokio::time::sleep(wait).await;
            let Some(t) = watchdog.upgrade() else { return };
            if t.ended.load(Ordering::Acquire) {
                return;
            }
            let (bound, quiet) = (t.is_bound(), t.idle_for());
            let limit = if bound { stall } else { connect };
            if quiet >= limit {
                let why = if bound { "no progress in time" } else { "no MSRP connection in time" };
                end(&inner2, &t, why, true);
                return;
            }
            wait = (limit - quiet).min(stall);
        }
    });
    if t.stream.connect == Connect::Outbound {
        tokio::spawn(connect_out(inner.clone(), t.clone()));
    }
}

/// Ends a transfer once: out of the table, its writer stopped, a BYE when `bye`, its
/// connection closed unless something else uses it. An unfinished upload's bytes go (with
/// its `Receiving`).
pub(crate) fn end(inner: &Arc<Inner>, t: &Arc<Transfer>, why: &str, bye: bool) {
    if t.ended.swap(true, Ordering::AcqRel) {
        return;
    }
    inner.forget_transfer(&t.id);
    t.stop.cancel();
    if let Kind::Upload(_) = &t.kind {
        // An unfinished upload's bytes go now, not when the last holder lets go.
        let t = t.clone();
        tokio::spawn(async move {
            if let Kind::Upload(rx) = &t.kind {
                rx.lock().await.discard();
            }
        });
    }
    let direction = match t.stream.direction {
        Direction::Upload => "upload",
        Direction::Download => "download",
    };
    let name = t.stream.selector.name.as_deref().unwrap_or("");
    info!(room = %t.room.uri, user = %t.identity.uri, transfer = %t.id, file = name, "file {direction} ended: {why}");
    let hang_up = bye.then(|| t.on_end.lock().unwrap_or_else(|e| e.into_inner()).take()).flatten();
    if let Some(hang_up) = hang_up {
        hang_up();
    }
    // One lock at a time: the link, then the connection's sessions, then the transfer table.
    let conn = t.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
    let unused = conn.as_ref().is_some_and(|c| c.sessions().is_empty());
    if let Some(conn) = conn
        && unused
        && !inner.has_transfer_on(&conn)
    {
        // After the BYE: closing first reads as a failure to AG's SDK. Its own writer may still
        // hold a frame: the close waits for it, bounded.
        let conn = conn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(HANG_UP_AFTER).await;
            conn.stop.cancel();
        });
    }
    debug!(transfer = %t.id, "transfer forgotten");
}
