//! Participants' MSRP connections: reading frames, binding sessions to the connection,
//! gathering chunked messages and answering each request hop by hop (RFC 4975 §7).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use msrp::header::Path;
use msrp::report;
use msrp::{Continuation, DecodeError, Decoder, Event, Message, Method, Request, Response, StatusCode, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::server::{Inner, Owner};
use crate::session::Session;

pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Partly received messages held per connection (a new one beyond this is refused with 413):
/// a participant sends its messages one after another, so a handful is plenty.
const MAX_PARTIAL_MESSAGES: usize = 16;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

pub(crate) struct Conn {
    pub id: u64,
    pub peer: String,
    writer: tokio::sync::Mutex<BoxWrite>,
    write_timeout: std::time::Duration,
    pub stop: CancellationToken,
    /// Requests that belonged to a session: a connection that carries none for a while and
    /// has no session bound is closed.
    pub requests: std::sync::atomic::AtomicU64,
    /// Sessions bound to this connection (usually one; a relay may carry several).
    pub sessions: Mutex<Vec<Arc<Session>>>,
}

impl Conn {
    pub fn new(id: u64, peer: String, writer: BoxWrite, write_timeout: std::time::Duration) -> Conn {
        Conn {
            id,
            peer,
            writer: tokio::sync::Mutex::new(writer),
            write_timeout,
            stop: CancellationToken::new(),
            requests: std::sync::atomic::AtomicU64::new(0),
            sessions: Mutex::new(Vec::new()),
        }
    }

    /// Writes whole frames, then flushes (TLS buffers otherwise). Gives up when the
    /// connection is stopped or the peer has not taken the bytes within `write_timeout`; a
    /// write that did not finish may have left half a frame, so the connection is then closed.
    pub async fn write(&self, data: &[u8]) -> std::io::Result<()> {
        // Waiting for the writer (other sessions' batches on a shared connection) is not the
        // peer's fault: only the write itself is timed.
        let mut w = tokio::select! {
            _ = self.stop.cancelled() => return Err(std::io::Error::other("connection closed")),
            w = self.writer.lock() => w,
        };
        let write = async {
            w.write_all(data).await?;
            w.flush().await
        };
        let result = tokio::select! {
            _ = self.stop.cancelled() => Err(std::io::Error::other("connection closed")),
            r = tokio::time::timeout(self.write_timeout, write) => {
                r.unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "peer not reading")))
            }
        };
        if result.is_err() {
            self.stop.cancel();
        }
        result
    }

    /// Ends the connection cleanly: over TLS that sends close_notify (RFC 8446 §6.1), without
    /// which clients see a truncation (msrplib logs "non-properly terminated"). Bounded: a
    /// writer stuck in a write, or a peer that does not read, costs at most a second each.
    pub async fn close(&self) {
        const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
        if let Ok(mut w) = tokio::time::timeout(CLOSE_WAIT, self.writer.lock()).await {
            let _ = tokio::time::timeout(CLOSE_WAIT, w.shutdown()).await;
        }
    }

    pub fn sessions(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A message being gathered from its chunks.
struct Partial {
    data: BytesMut,
    /// Set once the message exceeded `max_message_size`: the rest is dropped.
    too_large: bool,
}

/// The request whose body is arriving.
struct Current {
    session: Arc<Session>,
    req: Request,
    /// Key into the partial-message table, for a SEND with a body.
    key: Option<(String, String)>,
    /// Set when this request bound the session: sending to it starts once it is answered.
    bound: Option<Path>,
}

/// Reads frames until the peer closes or the connection is stopped, then ends the sessions
/// bound to it.
pub(crate) async fn read_loop(inner: Arc<Inner>, conn: Arc<Conn>, mut reader: BoxRead) {
    let mut decoder = Decoder::new(inner.opts.limits.clone());
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut partial: HashMap<(String, String), Partial> = HashMap::new();
    let mut current: Option<Current> = None;
    // The chunk of a file transfer being read (instead of `current`).
    let mut file: Option<crate::files::transfer::Chunk> = None;
    let why = 'read: loop {
        buf.reserve(READ_CHUNK);
        let n = tokio::select! {
            _ = conn.stop.cancelled() => break 'read "stopped".to_owned(),
            n = reader.read_buf(&mut buf) => n,
        };
        match n {
            Ok(0) => break 'read "closed by the peer".to_owned(),
            Err(e) => break 'read format!("read error: {e}"),
            Ok(_) => {}
        }
        loop {
            let event = match decoder.decode(&mut buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    if !on_decode_error(&inner, &conn, &e).await {
                        break 'read format!("unreadable frame: {e}");
                    }
                    // A refused binding request bound its session all the same: it starts now
                    // that the refusal is out (else it would stay bound and silent).
                    if let Some(Current { session, bound: Some(to), .. }) = current.take() {
                        inner.activate(&session, &conn, to);
                    }
                    continue;
                }
            };
            match event {
                Event::Head(Message::Request(req)) => {
                    file = None;
                    current = None;
                    let owner = match req.headers.to_path().and_then(|p| p.last().session_id()) {
                        Some(sid) => inner.owner_of(sid).await,
                        None => None,
                    };
                    match owner {
                        Some(Owner::File(t)) => file = crate::files::transfer::on_head(&inner, &conn, t, req).await,
                        Some(Owner::Chat(s)) => current = on_request(&inner, &conn, req, Some(s), &mut partial).await,
                        None => current = on_request(&inner, &conn, req, None, &mut partial).await,
                    }
                }
                Event::Head(Message::Response(resp)) => {
                    current = None;
                    file = None;
                    if !crate::files::transfer::on_response(&inner, &conn, &resp) {
                        on_response(&inner, &conn, &resp);
                    }
                }
                Event::Body(piece) => {
                    if let Some(f) = file.as_mut() {
                        f.write(&piece).await;
                    } else if let Some(Current { key: Some(key), .. }) = &current
                        && let Some(p) = partial.get_mut(key)
                        && !p.too_large
                    {
                        if (p.data.len() + piece.len()) as u64 > inner.opts.max_message_size {
                            p.too_large = true;
                            p.data = BytesMut::new();
                        } else {
                            p.data.extend_from_slice(&piece);
                        }
                    }
                }
                Event::End(flag) => {
                    if let Some(f) = file.take() {
                        f.end(&inner, &conn, flag).await;
                    } else if let Some(cur) = current.take() {
                        on_end(&inner, &conn, cur, flag, &mut partial).await;
                    }
                }
            }
        }
    };
    debug!(conn = conn.id, peer = %conn.peer, "{why}");
    conn.stop.cancel();
    conn.close().await;
    let sessions: Vec<_> = conn.sessions().drain(..).collect();
    for s in sessions {
        inner.end_session(&s, &format!("MSRP connection {why}"), true);
    }
    inner.end_transfers_on(&conn, &format!("MSRP connection {why}"));
}

/// A participant's answer to the server's SEND: only failures are asked for (Failure-Report
/// partial). 481 means the participant no longer knows the session (RFC 4975 §7.3.1): it
/// ends here too, with a BYE.
fn on_response(inner: &Arc<Inner>, conn: &Conn, resp: &Response) {
    if resp.status.is_success() {
        return;
    }
    let sid = resp.headers.to_path().and_then(|p| p.last().session_id().map(str::to_owned));
    // Only a session bound to this very connection: a stranger cannot end others' sessions.
    let session = sid.and_then(|sid| inner.session(&sid)).filter(|s| conn.sessions().iter().any(|b| b.id == s.id));
    debug!(conn = conn.id, status = %resp.status, session = ?session.as_ref().map(|s| &s.id), "participant refused a message");
    if resp.status == StatusCode::SESSION_DOES_NOT_EXIST
        && let Some(s) = session
    {
        inner.end_session(&s, "the participant answered 481", true);
    }
}

/// Answers a frame the decoder refused; false when the connection must close.
async fn on_decode_error(inner: &Inner, conn: &Conn, e: &DecodeError) -> bool {
    if let Some(n) = inner.noisy.note() {
        info!(conn = conn.id, peer = %conn.peer, error = %e, refused_so_far = n, "bad MSRP frame");
    }
    if let Some(info) = e.answerable()
        && let (Some(from), Some(to)) = (&info.from_path, &info.to_path)
    {
        let resp = report::response_to(info.tid, e.status(), from, to.first());
        let _ = send_response(conn, &resp).await;
    }
    e.scope == msrp::decode::Scope::Frame
}

async fn send_response(conn: &Conn, resp: &Response) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(256);
    encode::encode_response(resp, &mut out);
    conn.write(&out).await
}

/// Answers `req` with `status` when it wants an answer (Failure-Report, RFC 4975 §7.1.2).
pub(crate) async fn answer(conn: &Conn, req: &Request, status: StatusCode, local: &msrp::Uri) {
    if let Some(resp) = report::response(req, status, local) {
        let _ = send_response(conn, &resp).await;
    }
}

/// Binds `session` (the one the request's To-Path names; `None`: no such session) to this
/// connection; answers the request itself when it cannot go on (481, 506, 501).
async fn on_request(
    inner: &Arc<Inner>,
    conn: &Arc<Conn>,
    req: Request,
    session: Option<Arc<Session>>,
    partial: &mut HashMap<(String, String), Partial>,
) -> Option<Current> {
    let to = req.headers.to_path()?.last().clone();
    let Some(session) = session else {
        if let Some(n) = inner.noisy.note() {
            info!(conn = conn.id, to = %to.as_str(), refused_so_far = n, "request for an unknown session: 481");
        }
        answer(conn, &req, StatusCode::SESSION_DOES_NOT_EXIST, &to).await;
        return None;
    };
    let bound = match inner.bind(&session, conn, req.headers.from_path()) {
        Ok(bound) => bound,
        Err(status) => {
            answer(conn, &req, status, &to).await;
            return None;
        }
    };
    match (admit(inner, conn, req, session.clone(), to, partial).await, bound) {
        (Some(cur), bound) => Some(Current { bound, ..cur }),
        (None, Some(path)) => {
            // Refused, and answered: the session is bound all the same.
            inner.activate(&session, conn, path);
            None
        }
        (None, None) => None,
    }
}

/// What becomes of a request for a session bound to `conn`: a `Current` to gather its body,
/// or `None` once it is answered with a refusal.
async fn admit(
    inner: &Arc<Inner>,
    conn: &Arc<Conn>,
    req: Request,
    session: Arc<Session>,
    to: msrp::Uri,
    partial: &mut HashMap<(String, String), Partial>,
) -> Option<Current> {
    conn.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let key = match req.method {
        Method::Send => {
            let has_body = req.headers.content_type().is_some();
            let id = req.headers.message_id().map(|m| m.as_str().to_owned()).unwrap_or_default();
            let key = (session.id.clone(), id);
            let start = req.headers.byte_range().map_or(1, |r| r.start);
            // A Byte-Range total above the limit is known too large from its first chunk: it
            // is marked at once, and every chunk of it gets 413 (RFC 4975 §7.3.1).
            let too_large =
                req.headers.byte_range().and_then(|r| r.total).is_some_and(|t| t > inner.opts.max_message_size);
            if !has_body {
                None
            } else if start == 1 || (too_large && !partial.contains_key(&key)) {
                if partial.len() >= MAX_PARTIAL_MESSAGES && !partial.contains_key(&key) {
                    answer(conn, &req, StatusCode::MESSAGE_TOO_LARGE, &to).await;
                    return None;
                }
                partial.insert(key.clone(), Partial { data: BytesMut::new(), too_large });
                Some(key)
            } else if partial.get(&key).is_some_and(|p| p.too_large || p.data.len() as u64 + 1 == start) {
                Some(key)
            } else {
                // Chunks of a message arrive in order on one connection; anything else is a
                // chunk of a message we never saw start.
                answer(conn, &req, StatusCode::BAD_REQUEST, &to).await;
                return None;
            }
        }
        Method::Report | Method::Nickname => None,
        _ => {
            answer(conn, &req, StatusCode::NOT_IMPLEMENTED, &to).await;
            return None;
        }
    };
    Some(Current { session, req, key, bound: None })
}

/// A request is complete (or its chunk is): act on it and answer.
async fn on_end(
    inner: &Arc<Inner>,
    conn: &Arc<Conn>,
    cur: Current,
    flag: Continuation,
    partial: &mut HashMap<(String, String), Partial>,
) {
    let Current { session, req, key, bound } = cur;
    answer_request(inner, conn, session.clone(), req, key, flag, partial).await;
    if let Some(to) = bound {
        inner.activate(&session, conn, to);
    }
}

/// Acts on a complete request (or chunk) and answers it.
async fn answer_request(
    inner: &Arc<Inner>,
    conn: &Arc<Conn>,
    session: Arc<Session>,
    req: Request,
    key: Option<(String, String)>,
    flag: Continuation,
    partial: &mut HashMap<(String, String), Partial>,
) {
    let local = session.local.clone();
    match req.method {
        Method::Report => {}
        Method::Nickname => {
            let status = inner.nickname(&session, &req);
            answer(conn, &req, status, &local).await;
        }
        Method::Send => {
            let Some(key) = key else {
                // An empty SEND (e.g. the one that binds a connection).
                answer(conn, &req, StatusCode::OK, &local).await;
                return;
            };
            match flag {
                Continuation::More => {
                    // A message found too large stays marked (without its bytes) so that its
                    // later chunks get 413 as well, until its last one.
                    let status = match partial.get(&key) {
                        Some(p) if p.too_large => StatusCode::MESSAGE_TOO_LARGE,
                        _ => StatusCode::OK,
                    };
                    answer(conn, &req, status, &local).await;
                }
                Continuation::Abort => {
                    partial.remove(&key);
                    answer(conn, &req, StatusCode::OK, &local).await;
                }
                Continuation::Complete => {
                    let Some(p) = partial.remove(&key) else { return };
                    if p.too_large {
                        answer(conn, &req, StatusCode::MESSAGE_TOO_LARGE, &local).await;
                        return;
                    }
                    let body: Bytes = p.data.freeze();
                    let ctype = req.headers.content_type().map_or("", |c| c.essence());
                    let status = inner.on_message(&session, ctype, &body);
                    answer(conn, &req, status, &local).await;
                    if status.is_success() && report::success_report_wanted(&req) {
                        let range = msrp::header::ByteRange::whole(body.len() as u64);
                        if let Some(rep) = report::report(&req, StatusCode::OK, range, &local) {
                            let mut out = BytesMut::with_capacity(256);
                            encode::encode_head_lines(&rep, &mut out);
                            encode::encode_end_line(&rep.tid, Continuation::Complete, &mut out);
                            let _ = conn.write(&out).await;
                        }
                    }
                    // Over `message_rate`: this connection is read again only when the
                    // participant is back within it (TCP holds its further messages back).
                    if let Some(rate) = &session.rate {
                        let wait = rate.charge(1, std::time::Instant::now());
                        if !wait.is_zero() {
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                _ = conn.stop.cancelled() => {}
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
}
