//! A connection's reading side: frames decoded (or lexed, for the fast path) batch by batch,
//! requests routed and answered hop by hop or handed to `forward` for the next hop, responses
//! settled in the transaction table, and the connection torn down when it ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use msrp::decode::Scope;
use msrp::encode;
use msrp::{Continuation, Decoder, Event, Message, Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, ReadHalf};
use tracing::{debug, info, warn};

use crate::auth;
use crate::conn::{Conn, Touched, chunk_range, close};
use crate::fast::{Batch, FastPath};
use crate::forward::Forwarding;
use crate::route::{Route, remember_peer, route};
use crate::server::Shared;
use crate::stats::AuthOutcome;
use crate::transactions::response;

/// Read buffer of a connection that is not busy (bytes): enough for an AUTH exchange; most
/// sessions are idle most of the time (1 KiB measured 9.7 KB per idle session against
/// 12.7 KB at 4 KiB).
const IDLE_BUFFER: usize = 1024;

/// Body bytes of an unfinished frame kept across reads rather than sent as a `+` chunk.
const HOLD_BACK: usize = 16 * 1024;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Per-connection reading state.
struct Reader {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    /// Connections with output queued during this read batch, flushed at its end.
    touched: Touched,
    /// Authenticated, or used for a valid delivery: no longer subject to the AUTH deadline.
    trusted: bool,
    auth_failures: u32,
    frame: Frame,
    fast: FastPath,
    /// Frames the fast path took since the last flush, for [`crate::Relay::fast_path_frames`].
    fast_frames: u64,
    /// SENDs the fast path forwarded, their body bytes, and the 200s it answered, since the
    /// last flush (added to `Stats` once per batch).
    fast_sends: u64,
    fast_bytes: u64,
    fast_oks: u64,
}

/// The frame being read.
enum Frame {
    Idle,
    /// Handled here once complete (AUTH) or refused; its body is ignored.
    Local(Box<Request>, Route),
    /// A response: consumed at its head; nothing else to do.
    Response,
    Forward(Box<Forwarding>),
}

pub(crate) async fn read_loop<R: AsyncRead + Send + Unpin>(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut rd: ReadHalf<R>,
    outbound: bool,
) {
    let mut decoder = Decoder::new(shared.opts.limits.clone());
    // Idle connections (most sessions, most of the time) keep a small buffer; a connection
    // whose last read filled its buffer gets `read_buffer` bytes for the next.
    let mut buf = BytesMut::with_capacity(IDLE_BUFFER);
    let mut busy = false;
    let deadline = tokio::time::Instant::now() + shared.opts.auth_timeout;
    let mut shutdown = shared.shutdown.clone();
    let mut reader = Reader {
        shared: shared.clone(),
        conn: conn.clone(),
        touched: Touched::default(),
        trusted: outbound,
        auth_failures: 0,
        frame: Frame::Idle,
        fast: FastPath::default(),
        fast_frames: 0,
        fast_sends: 0,
        fast_bytes: 0,
        fast_oks: 0,
    };
    // The wait owed to a rate before the next read (`throttle`): the sender is read more
    // slowly, so that TCP pushes back on it alone.
    let mut owed = std::time::Duration::ZERO;
    'conn: loop {
        if !owed.is_zero() {
            shared.stats.throttled(owed);
            tokio::select! {
                _ = tokio::time::sleep(owed) => {}
                _ = conn.close_notify.notified() => break,
                _ = shutdown.wait_for(|s| *s) => break,
            }
            owed = std::time::Duration::ZERO;
        }
        if buf.capacity() - buf.len() < IDLE_BUFFER / 2 || (busy && buf.capacity() < shared.opts.read_buffer) {
            buf.reserve(if busy { shared.opts.read_buffer } else { IDLE_BUFFER });
        }
        let spare = buf.capacity() - buf.len();
        let read = tokio::select! {
            r = rd.read_buf(&mut buf) => Some(r),
            _ = conn.close_notify.notified() => break,
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep_until(deadline), if !reader.trusted => {
                if let Some(n) = shared.closed_conns.note() {
                    info!(conn = conn.id, peer = %conn.peer, closed_so_far = n, "closing: no successful AUTH or delivery within auth_timeout");
                }
                break;
            }
            _ = tokio::time::sleep(shared.opts.chunk_hold), if reader.chunk_open() => None,
        };
        let Some(read) = read else {
            reader.cut_chunk_if_wanted().await;
            reader.flush_touched().await;
            continue;
        };
        match read {
            Ok(0) => {
                if decoder.finish(&buf).is_err() {
                    debug!(conn = conn.id, peer = %conn.peer, "peer closed inside a frame");
                }
                break;
            }
            Ok(n) => {
                busy = n == spare;
                if let Some(t) = conn.throttle.get() {
                    owed = t.charge(n as u64, Instant::now());
                }
            }
            Err(e) => {
                debug!(conn = conn.id, peer = %conn.peer, error = %e, "read failed");
                break;
            }
        }
        // The clock and the session table's epoch, read once for a run of fast frames and
        // forgotten at every await (a write can block for long; the table can change).
        let mut batch: Option<Batch> = None;
        loop {
            // Whole small frames first (`fast`); the decoder takes whatever they are not.
            if decoder.is_idle() && matches!(reader.frame, Frame::Idle) && !buf.is_empty() {
                let current = batch
                    .get_or_insert_with(|| Batch { now: Instant::now(), epoch: shared.epoch.load(Ordering::Acquire) });
                let handled = reader.fast.try_frame(&shared, &conn, &mut reader.touched, &mut buf, current);
                if let Some(handled) = handled {
                    reader.fast_frames += handled.frames;
                    reader.fast_sends += handled.sends;
                    reader.fast_bytes += handled.bytes;
                    reader.fast_oks += handled.oks;
                    reader.trusted |= handled.forwarded;
                    if reader.touched.must_relieve() {
                        batch = None;
                        reader.touched.relieve(&shared).await;
                    }
                    continue;
                }
            }
            batch = None;
            match decoder.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(event)) => reader.event(event).await,
                Err(e) if e.scope == Scope::Connection => {
                    warn!(conn = conn.id, peer = %conn.peer, error = %e, "closing: unparseable input");
                    break 'conn;
                }
                Err(e) => {
                    if let Some(n) = shared.malformed.note() {
                        warn!(conn = conn.id, peer = %conn.peer, error = %e, refused_so_far = n, "malformed frame refused");
                    }
                    reader.abandon_frame().await;
                    if let Some(info) = e.answerable() {
                        let local = info.to_path.as_ref().map(|p| p.first().clone());
                        if let (Some(from), Some(local)) = (&info.from_path, local) {
                            let resp = msrp::report::response_to(info.tid, e.status(), from, &local);
                            reader.respond(&resp).await;
                        }
                    }
                }
            }
        }
        // The read batch is used up: never hold a peer's writer, nor its output, while
        // waiting for more. What this batch queued for others leaves before a chunk is
        // opened: a reader holding a chunk must never wait for another connection's writer
        // (two readers each holding the other's target would wait for ever).
        reader.flush_touched().await;
        reader.open_chunk().await;
        reader.cut_chunk_if_wanted().await;
        if reader.auth_failures >= shared.opts.max_auth_failures {
            if let Some(n) = shared.closed_conns.note() {
                info!(conn = conn.id, peer = %conn.peer, failures = reader.auth_failures, closed_so_far = n, "closing: too many failed AUTH attempts");
            }
            break;
        }
    }
    reader.abandon_frame().await;
    reader.flush_touched().await;
    close(&shared, &conn).await;
}

impl Reader {
    async fn event(&mut self, event: Event) {
        match event {
            Event::Head(Message::Request(req)) => self.request_head(req).await,
            Event::Head(Message::Response(resp)) => {
                self.frame = Frame::Response;
                response(&self.shared, &self.conn, resp).await;
            }
            Event::Body(piece) => {
                if let Frame::Forward(f) = &mut self.frame {
                    f.body(piece, &self.shared, &mut self.touched).await;
                }
            }
            Event::End(flag) => {
                let frame = std::mem::replace(&mut self.frame, Frame::Idle);
                match frame {
                    Frame::Forward(f) => self.finish_forward(*f, flag).await,
                    Frame::Local(req, route) => self.local(*req, route).await,
                    Frame::Response | Frame::Idle => {}
                }
            }
        }
    }

    async fn request_head(&mut self, req: Request) {
        let Some(range) = chunk_range(req.headers.byte_range()) else {
            // Refused before routing: no connection to a next hop is opened for it.
            let why = "Byte-Range start too large";
            self.frame = Frame::Local(Box::new(req), Route::Reject(StatusCode::BAD_REQUEST, why));
            return;
        };
        let now = Instant::now();
        let decision = {
            let mut s = crate::lock(&self.shared.sessions);
            let decision = route(&req, self.conn.id, &s, &self.shared.opts, now);
            if let Some(from) = req.headers.from_path() {
                remember_peer(&decision, from, self.conn.id, &mut s);
            }
            decision
        };
        let (to, from, target) = match decision {
            Route::Deliver { conn, to, from, .. } => match self.shared.conn(conn) {
                Some(target) => (to, from, target),
                None => {
                    let r = Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, "session's connection is gone");
                    self.frame = Frame::Local(Box::new(req), r);
                    return;
                }
            },
            // Boxed, like AUTH below: rare but large futures would otherwise be part of every
            // connection's task, idle or not (memory per session).
            Route::Forward { sid, to, from } => match Box::pin(self.shared.next_hop(&sid, to.first())).await {
                Ok(target) => (to, from, target),
                Err(e) => {
                    if let Some(n) = self.shared.unreachable.note() {
                        info!(conn = self.conn.id, next = %to.first(), error = %e, unreachable_so_far = n, "next hop unreachable");
                    }
                    let r = Route::Reject(StatusCode::SESSION_DOES_NOT_EXIST, "next hop unreachable");
                    self.frame = Frame::Local(Box::new(req), r);
                    return;
                }
            },
            other => {
                self.frame = Frame::Local(Box::new(req), other);
                return;
            }
        };
        self.trusted = true;
        let reporter = req.headers.to_path().map(|p| p.first().clone()).expect("routed requests have a To-Path");
        self.frame = Frame::Forward(Box::new(Forwarding {
            source: self.conn.id,
            req,
            target,
            to,
            from,
            reporter,
            next_byte: range.start,
            total: range.total,
            seen_body: false,
            queued: Vec::new(),
            queued_len: 0,
            failed: false,
            sent_any: false,
            open: None,
        }));
    }

    async fn finish_forward(&mut self, mut f: Forwarding, flag: Continuation) {
        // An open chunk ends as the sender's did. Otherwise: with nothing left to send and more
        // chunks to come, the inbound `+` needs no frame; anything else (the last bytes, an
        // empty final chunk, an abort) goes out now.
        if f.open.is_some() {
            f.end_open(flag, &self.shared).await;
        } else if !f.failed && (f.queued_len > 0 || !f.seen_body || flag != Continuation::More) {
            f.flush(flag, &self.shared, &mut self.touched).await;
        }
        // Hop-by-hop answer to the sender (RFC 4976 §7): SENDs are answered here; REPORTs
        // never; other methods get the next hop's response relayed back.
        if f.req.method == Method::Send {
            let status = if f.failed { StatusCode::SESSION_DOES_NOT_EXIST } else { StatusCode::OK };
            if let Some(resp) = msrp::report::response(&f.req, status, &f.reporter) {
                self.respond(&resp).await;
            }
        } else if f.failed
            && f.req.method != Method::Report
            && let Some(resp) = msrp::report::response(&f.req, StatusCode::SESSION_DOES_NOT_EXIST, &f.reporter)
        {
            self.respond(&resp).await;
        }
    }

    /// Ends whatever frame is in progress (a malformed frame or the connection's end): the
    /// next hop learns the message was abandoned (`#`).
    async fn abandon_frame(&mut self) {
        // Nothing of it left: nothing to abandon downstream (and no transaction whose answer
        // would be a second one to the sender, who gets ours).
        if let Frame::Forward(mut f) = std::mem::replace(&mut self.frame, Frame::Idle)
            && f.seen_body
            && !f.failed
            && (f.sent_any || f.open.is_some())
        {
            if f.open.is_some() {
                f.end_open(Continuation::Abort, &self.shared).await;
                return;
            }
            f.queued.clear();
            f.queued_len = 0;
            f.flush(Continuation::Abort, &self.shared, &mut self.touched).await;
        }
    }

    /// The read batch is used up inside a frame: start streaming what is queued as an open
    /// chunk that the rest of the frame continues (cut only at `max_chunk`) — unless it is
    /// small, when the rest is about to arrive anyway (TCP splits frames at arbitrary points)
    /// and holding it costs nobody anything. Non-SEND bodies (bounded by the decoder) stay
    /// queued to the end of their frame.
    async fn open_chunk(&mut self) {
        if let Frame::Forward(f) = &mut self.frame
            && f.queued_len >= HOLD_BACK.min(self.shared.opts.max_chunk)
        {
            f.open_queued(&self.shared).await;
        }
    }

    /// A chunk open longer than `chunk_hold` while someone else wants its target is cut
    /// (`+`), so the target is free; the rest of the frame goes in a chunk of its own. Checked
    /// when the sender stalls and at every batch end (a trickle of bytes never looks silent).
    /// Nobody waiting, the chunk stays whole (a client on a slow uplink keeps its chat message
    /// in one chunk, which sipsimple needs).
    async fn cut_chunk_if_wanted(&mut self) {
        if let Frame::Forward(f) = &mut self.frame
            && f.open_for().is_some_and(|d| d >= self.shared.opts.chunk_hold)
            && f.target.is_wanted()
        {
            debug!(conn = self.conn.id, target = f.target.id, "chunk held past chunk_hold and wanted: cut with '+'");
            f.end_open(Continuation::More, &self.shared).await;
        }
    }

    /// Whether a chunk is open (the target's writer held) while waiting for the sender.
    fn chunk_open(&self) -> bool {
        matches!(&self.frame, Frame::Forward(f) if f.open.is_some())
    }

    async fn respond(&mut self, resp: &Response) {
        self.shared.stats.responded(resp.status, 1);
        let mut out = BytesMut::with_capacity(256);
        encode::encode_response(resp, &mut out);
        self.touched.queue_frame(&self.conn, &out, &self.shared).await;
    }

    async fn flush_touched(&mut self) {
        if self.fast_frames > 0 {
            self.shared.fast_frames.fetch_add(std::mem::take(&mut self.fast_frames), Ordering::Relaxed);
        }
        if self.fast_sends > 0 {
            let (sends, bytes) = (std::mem::take(&mut self.fast_sends), std::mem::take(&mut self.fast_bytes));
            self.shared.stats.forwarded(sends, bytes);
        }
        if self.fast_oks > 0 {
            self.shared.stats.responded(StatusCode::OK, std::mem::take(&mut self.fast_oks));
        }
        // Never waited for while a chunk is open (a reader holding one must not wait for another
        // connection's writer): a chunk opens only after this flush at a batch end, and while
        // it is open the reader queues nothing for anyone (its pieces go straight out).
        debug_assert!(!self.chunk_open() || self.touched.is_empty(), "output queued while a chunk is open");
        self.touched.flush(&self.shared).await;
    }

    /// A request answered by this relay: AUTH, or a refusal.
    async fn local(&mut self, req: Request, decision: Route) {
        match decision {
            Route::Auth => {
                let outcome = Box::pin(auth::handle(&self.shared, &self.conn, &req, unix_now())).await;
                self.shared.stats.auth(if outcome.success {
                    AuthOutcome::Accepted
                } else if outcome.blocked {
                    AuthOutcome::Blocked
                } else if outcome.response.status == StatusCode::UNAUTHORIZED {
                    AuthOutcome::Challenged
                } else {
                    AuthOutcome::Refused
                });
                if outcome.success {
                    self.trusted = true;
                } else if outcome.counts_as_failure {
                    self.auth_failures += 1;
                }
                self.respond(&outcome.response).await;
            }
            Route::Reject(status, why) => {
                // One unauthenticated connection can pipeline refusals by the hundred thousand
                // a second (issue 11): logged at most once a second, with the count so far.
                if let Some(n) = self.shared.refused_requests.note() {
                    info!(conn = self.conn.id, peer = %self.conn.peer, tid = %req.tid, method = %req.method, status = status.0, why, refused_so_far = n, "request refused");
                }
                let local = req.headers.to_path().map(|p| p.first().clone());
                if let Some(local) = local
                    && let Some(resp) = msrp::report::response(&req, status, &local)
                {
                    self.respond(&resp).await;
                }
            }
            Route::Deliver { .. } | Route::Forward { .. } => {}
        }
    }
}
