//! The relay's fast path for the frames that make up nearly all of its traffic: a small,
//! complete SEND into a session of this relay, and a 2xx response to a forwarded chunk.
//!
//! The general path (`conn` + `forward`) decodes every frame into a typed `Request`, routes it
//! through the session table and re-encodes it; issue 5's profile put that at ~19k instructions
//! per relayed SEND and its 200. Here the frame is split in place ([`msrp::lex`]), its route is
//! remembered per connection (keyed by the To-Path and From-Path text, valid while the session
//! table is unchanged: [`Sessions::epoch`]), and the forwarded frame and our 200 are written
//! straight into the two connections' output buffers. The output is the general path's, byte
//! for byte except for the fresh transaction id (`tests/fast_path.rs` compares them).
//!
//! Whatever this path does not recognise it leaves untouched for the general path: frames that
//! are incomplete, large, not SEND or a response, carry other headers, are malformed, abort
//! (`#`), go to another relay, or are refused. Responses other than 2xx to a forwarded chunk,
//! and responses to relayed non-SEND requests, also go the general way (they produce REPORTs
//! or are relayed); a response to no pending transaction is dropped here as it would be there.
//!
//! One leniency, on purpose: a 2xx response settles its transaction once it has one To-Path
//! and one From-Path, without their URIs being parsed. The general path would drop a response
//! with a malformed path and, 30 s later, report the chunk as failed (408); but the next hop
//! did say it took the chunk, and the relay only needs the transaction id and the status.
//!
//! [`Sessions::epoch`]: crate::sessions::Sessions::epoch

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use msrp::Limits;
use msrp::encode;
use msrp::header::{ByteRange, ContentType, FailureReport, Header, MessageId, Name, Path, SuccessReport, name};
use msrp::lex::{Lexed, Start, lex_frame};
use msrp::message::TransactionId;
use msrp::{Continuation, Method, StatusCode};
use tracing::debug;

use crate::conn::{Conn, KeptId, Pending, Reporting, Touched, chunk_range};
use crate::forward::ForwardedHead;
use crate::route::{Route, remember_peer, route_paths};
use crate::server::Shared;

/// Largest frame taken by the fast path (bytes): instant messages and small chunks. Larger
/// chunks are streamed by the general path, whose per-frame cost is small beside their bytes.
const FAST_MAX: usize = 8 * 1024;

/// Routes remembered per connection: a client's connection carries one or two sessions; a
/// relay-to-relay or chat-server connection more, which then fall back to parsing paths.
const ROUTE_CACHE: usize = 4;

/// How long a decision to leave these paths to the general path (another relay, a refusal)
/// is remembered: it spares re-parsing them on every frame of a busy link, and a decision
/// that changes (a session appears) is picked up this late at most.
const DECLINE_FOR: Duration = Duration::from_secs(1);

/// One remembered routing decision.
struct CachedRoute {
    /// The To-Path and From-Path values as received: the key.
    to: Box<[u8]>,
    from: Box<[u8]>,
    /// [`crate::sessions::Sessions::epoch`] when decided: a session replaced or its expiry
    /// brought forward voids it; a session that expires or goes with its connection shows in
    /// `expires` or the target's closed flag.
    epoch: u64,
    /// The earliest expiry of the sessions the decision rests on.
    expires: Instant,
    /// `None`: not for the fast path.
    deliver: Option<Deliver>,
}

/// A delivery into a session of this relay, ready to write.
struct Deliver {
    target: Arc<Conn>,
    /// `To-Path: …` and `From-Path: …` lines of the forwarded frame.
    forward_paths: Box<[u8]>,
    /// `To-Path: <previous hop>` and `From-Path: <this relay>` lines of our responses.
    answer_paths: Box<[u8]>,
    /// The request's From-Path (where a failure REPORT goes) and this relay as addressed.
    reporting: Arc<Reporting>,
}

/// A connection's fast-path state: an empty vector until its first SEND, then its remembered
/// routes (a few hundred bytes each) until it closes.
#[derive(Default)]
pub(crate) struct FastPath {
    routes: Vec<CachedRoute>,
    next_slot: usize,
}

/// What the caller knows of the current read batch.
pub(crate) struct Batch {
    pub(crate) now: Instant,
    pub(crate) epoch: u64,
}

/// A frame handled here.
pub(crate) struct Handled {
    /// How many frames were taken (consecutive responses are taken together).
    pub(crate) frames: u64,
    /// A SEND was forwarded: the connection is in use (no AUTH deadline).
    pub(crate) forwarded: bool,
    /// SENDs forwarded, their body bytes, and 200s answered (for `Stats`).
    pub(crate) sends: u64,
    pub(crate) bytes: u64,
    pub(crate) oks: u64,
}

/// Headers the fast path understands; any other sends the frame the general way.
#[derive(Clone, Copy, PartialEq)]
enum Known {
    ToPath,
    FromPath,
    MessageId,
    ByteRange,
    SuccessReport,
    FailureReport,
    ContentType,
}

/// The codec's reading of a header name (the lexer's [`Name::at_start`], else [`Name::of`]),
/// narrowed to what this path handles.
fn known(name: Option<Name>) -> Option<Known> {
    Some(match name? {
        Name::ToPath => Known::ToPath,
        Name::FromPath => Known::FromPath,
        Name::MessageId => Known::MessageId,
        Name::ByteRange => Known::ByteRange,
        Name::SuccessReport => Known::SuccessReport,
        Name::FailureReport => Known::FailureReport,
        Name::ContentType => Known::ContentType,
        _ => return None,
    })
}

/// A SEND taken apart and checked, as offsets into the frame (no borrow of the lexed frame
/// outlives the planning).
struct Plan {
    tid: TransactionId,
    to: Range<usize>,
    from: Range<usize>,
    message_id: Range<usize>,
    content_type: Range<usize>,
    body: Range<usize>,
    flag: Continuation,
    range: ByteRange,
    failure: FailureReport,
    /// Message-ID, Success-Report and Failure-Report in the order received: they go between
    /// the paths and Byte-Range, as the general path writes them (RFC 4975 §9 order).
    middle: [Option<Middle>; 3],
}

#[derive(Clone, Copy)]
enum Middle {
    MessageId,
    Success(SuccessReport),
    Failure(FailureReport),
}

impl FastPath {
    /// Handles the frame at the front of `buf` if it is one for the fast path; `None` leaves
    /// `buf` untouched for the general path.
    pub(crate) fn try_frame(
        &mut self,
        shared: &Shared,
        conn: &Arc<Conn>,
        touched: &mut Touched,
        buf: &mut BytesMut,
        batch: &Batch,
    ) -> Option<Handled> {
        let lexed = lex_frame(buf, &shared.opts.limits, FAST_MAX)?;
        match lexed.start {
            Start::Response(_) => {
                let (len, frames) = responses(conn, buf, lexed, &shared.opts.limits)?;
                bytes::Buf::advance(buf, len);
                Some(Handled { frames, forwarded: false, sends: 0, bytes: 0, oks: 0 })
            }
            Start::Request(b"SEND") => {
                let plan = plan_send(&lexed, buf, shared)?;
                let len = lexed.len;
                let slot = self.route(shared, conn, buf, &plan, batch)?;
                let deliver = self.routes[slot].deliver.as_ref()?;
                let handled = forward(shared, conn, touched, &buf[..len], plan, deliver, batch);
                bytes::Buf::advance(buf, len);
                Some(handled)
            }
            Start::Request(_) => None,
        }
    }

    /// The remembered decision for these paths, or a new one. On every miss all stale entries
    /// go; a closed target is kept only as a small husk (its socket and output are released
    /// when it closes) until then.
    fn route(&mut self, shared: &Shared, conn: &Arc<Conn>, buf: &[u8], plan: &Plan, batch: &Batch) -> Option<usize> {
        let (to, from) = (&buf[plan.to.clone()], &buf[plan.from.clone()]);
        let live = |r: &CachedRoute| {
            r.epoch == batch.epoch && r.expires > batch.now && r.deliver.as_ref().is_none_or(|d| !d.target.is_closed())
        };
        if let Some(i) = self.routes.iter().position(|r| *r.to == *to && *r.from == *from)
            && live(&self.routes[i])
        {
            return Some(i);
        }
        self.routes.retain(live); // the key's own entry, if any, was stale: decided anew below
        let entry = decide(shared, conn, to, from, batch)?;
        if self.routes.len() < ROUTE_CACHE {
            // Most connections carry one route: no room for four until a second one comes.
            self.routes.reserve_exact(1);
            self.routes.push(entry);
            return Some(self.routes.len() - 1);
        }
        self.next_slot = (self.next_slot + 1) % ROUTE_CACHE;
        self.routes[self.next_slot] = entry;
        Some(self.next_slot)
    }
}

/// Settles the transactions of consecutive 2xx responses to forwarded chunks, under one lock
/// of the pending table (the sender's task inserts into it at the same time: one lock per
/// read batch instead of one per response). Returns the bytes and frames taken; `None` when
/// the first frame is for the general path.
fn responses<'a>(conn: &Conn, buf: &'a [u8], first: Lexed<'a>, limits: &Limits) -> Option<(usize, u64)> {
    let (mut taken, mut frames) = (0, 0);
    let mut lexed = first;
    let mut pending = crate::lock(&conn.pending);
    while let Start::Response(code) = lexed.start {
        // The decoder refuses responses without both paths; so does this path (they then
        // get the decoder's verdict).
        let paths = lexed.named_headers().filter_map(|(n, _, _)| known(n)).fold((0, 0), |(t, f), k| match k {
            Known::ToPath => (t + 1, f),
            Known::FromPath => (t, f + 1),
            _ => (t, f),
        });
        if paths != (1, 1) || lexed.body.is_some() || lexed.flag != Continuation::Complete {
            break;
        }
        // Only what settles without owing anything is taken here (the table's rule); a
        // relayed request's response goes back and a failure may be reported: general path.
        match pending.settle_quietly(lexed.tid, StatusCode(code)) {
            Some(true) => {}
            Some(false) => break,
            None => debug!(conn = conn.id, tid = %lexed.tid, status = code, "response to no pending transaction"),
        }
        taken += lexed.len;
        frames += 1;
        match lex_frame(&buf[taken..], limits, FAST_MAX) {
            Some(next) => lexed = next,
            None => break,
        }
    }
    (frames > 0).then_some((taken, frames))
}

/// Checks a SEND's headers with the codec's own parsers; `None` for anything the general path
/// should see (an unknown or repeated header, a malformed value, no body, an abort).
fn plan_send(lexed: &Lexed<'_>, buf: &[u8], shared: &Shared) -> Option<Plan> {
    let body = lexed.body?;
    // A body of `max_chunk` or more is cut into chunks by the general path.
    if lexed.flag == Continuation::Abort || body.len() >= shared.opts.max_chunk {
        return None;
    }
    let at = |s: &[u8]| {
        // Every slice of `lexed` lies in `buf`.
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    let (mut to, mut from, mut message_id, mut content_type, mut range) = (None, None, None, None, None);
    let (mut failure, mut middle, mut n_middle) = (None, [None; 3], 0);
    let mut seen = [false; 7];
    for (name, _, text) in lexed.named_headers() {
        let value = text.as_bytes();
        let which = known(name)?;
        // A repeated header is the decoder's 400.
        if std::mem::replace(&mut seen[which as usize], true) {
            return None;
        }
        match which {
            Known::ToPath => to = Some(at(value)),
            Known::FromPath => from = Some(at(value)),
            Known::MessageId => {
                MessageId::is_valid(text).then_some(())?;
                message_id = Some(at(value));
                middle[n_middle] = Some(Middle::MessageId);
                n_middle += 1;
            }
            Known::ContentType => {
                ContentType::check(text).ok()?;
                content_type = Some(at(value));
            }
            Known::ByteRange => range = Some(ByteRange::parse(text).ok()?),
            Known::FailureReport => {
                let v = FailureReport::parse(text).ok()?;
                failure = Some(v);
                middle[n_middle] = Some(Middle::Failure(v));
                n_middle += 1;
            }
            Known::SuccessReport => {
                let v = SuccessReport::parse(text).ok()?;
                middle[n_middle] = Some(Middle::Success(v));
                n_middle += 1;
            }
        }
    }
    // Out of bounds: the general path refuses it.
    let range = chunk_range(range.as_ref())?;
    Some(Plan {
        tid: lexed.tid,
        to: to?,
        from: from?,
        message_id: message_id?,
        content_type: content_type?,
        body: at(body),
        flag: lexed.flag,
        range,
        failure: failure.unwrap_or_default(),
        middle,
    })
}

/// Routes a SEND from scratch. A delivery into a live session of this relay is remembered as
/// such; any other decision as "general path" for [`DECLINE_FOR`]. `None` (nothing remembered)
/// when the paths do not parse or the table changed since the batch began.
fn decide(shared: &Shared, conn: &Conn, to: &[u8], from: &[u8], batch: &Batch) -> Option<CachedRoute> {
    let parse = |hname: &str, value: &[u8]| match Header::parse(hname, std::str::from_utf8(value).ok()?) {
        Ok(Header::ToPath(p) | Header::FromPath(p)) => Some(p),
        _ => None,
    };
    let (to_path, from_path) = (parse(name::TO_PATH, to)?, parse(name::FROM_PATH, from)?);
    let mut sessions = crate::lock(&shared.sessions);
    if sessions.epoch() != batch.epoch {
        return None;
    }
    let decision = route_paths(&Method::Send, &to_path, &from_path, conn.id, &sessions, &shared.opts, batch.now);
    // Once per remembered route, as on the general path: later frames of a route need no note.
    remember_peer(&decision, &from_path, conn.id, &mut sessions);
    let declined = CachedRoute {
        to: to.into(),
        from: from.into(),
        epoch: batch.epoch,
        expires: batch.now + DECLINE_FOR,
        deliver: None,
    };
    let Route::Deliver { sid, conn: target, to: out_to, from: out_from } = decision else { return Some(declined) };
    let expiry = |sid: Option<&str>| sid.and_then(|s| sessions.get(s, batch.now)).map(|s| s.expires);
    let Some(expires) = expiry(Some(&sid)).zip(expiry(to_path.first().session_id())).map(|(a, b)| a.min(b)) else {
        return Some(declined);
    };
    drop(sessions);
    let Some(target) = shared.conn(target).filter(|t| !t.is_closed()) else { return Some(declined) };
    let reporter = to_path.first().clone();
    let mut forward_paths = BytesMut::with_capacity(to.len() + from.len() + 64);
    encode::encode_header(&Header::ToPath(out_to), &mut forward_paths);
    encode::encode_header(&Header::FromPath(out_from), &mut forward_paths);
    let mut answer_paths = BytesMut::with_capacity(128);
    encode::encode_header(&Header::ToPath(Path::single(from_path.first().clone())), &mut answer_paths);
    encode::encode_header(&Header::FromPath(Path::single(reporter.clone())), &mut answer_paths);
    Some(CachedRoute {
        deliver: Some(Deliver {
            target,
            forward_paths: forward_paths.to_vec().into(),
            answer_paths: answer_paths.to_vec().into(),
            reporting: Arc::new(Reporting { report_to: from_path, reporter }),
        }),
        expires,
        ..declined
    })
}

/// Records the transaction the forwarded frame opens, then queues that frame for the target
/// and our answer for the sender (the caller then drops `frame` from its buffer: nothing here
/// keeps a reference to the read buffer).
fn forward(
    shared: &Shared,
    conn: &Arc<Conn>,
    touched: &mut Touched,
    frame: &[u8],
    plan: Plan,
    route: &Deliver,
    batch: &Batch,
) -> Handled {
    let body = &frame[plan.body.clone()];
    let tid = encode::safe_tid_for(body);
    let start = plan.range.start;
    // `plan_send` bounded `start`, so this cannot overflow.
    let range = ByteRange { start, end: Some(start + body.len() as u64 - 1), total: plan.range.total };
    // Recorded before the frame can leave: another task may flush the target's output at
    // any moment, and the response must find its transaction. The Message-ID is copied (a
    // slice would pin the whole read buffer until the response).
    let message_id = || std::str::from_utf8(&frame[plan.message_id.clone()]).ok().and_then(KeptId::new);
    let deadline = batch.now + shared.opts.transaction_timeout;
    let tracked = match Pending::send(conn.id, &route.reporting, message_id, range, plan.failure, deadline) {
        Some(pending) => {
            crate::lock(&route.target.pending).insert(tid, pending);
            true
        }
        None => false,
    };
    let queued = route.target.queue_forwarded(&tid, tracked, |out| {
        out.reserve(route.forward_paths.len() + body.len() + 256);
        let head = ForwardedHead { tid: &tid, method: b"SEND", range: Some(range), body_section: true };
        head.write(
            out,
            |out| out.put_slice(&route.forward_paths),
            |out| {
                for m in plan.middle.iter().flatten() {
                    let (hname, value) = match *m {
                        Middle::MessageId => (name::MESSAGE_ID, &frame[plan.message_id.clone()]),
                        Middle::Success(v) => (name::SUCCESS_REPORT, v.as_str().as_bytes()),
                        Middle::Failure(v) => (name::FAILURE_REPORT, v.as_str().as_bytes()),
                    };
                    put_header(out, hname, value);
                }
            },
            |out| put_header(out, name::CONTENT_TYPE, &frame[plan.content_type.clone()]),
        );
        out.put_slice(body);
        encode::encode_body_end(&tid, plan.flag, out);
    });
    touched.queued(&route.target, queued.full);
    let lost = queued.lost;
    // Hop-by-hop answer (RFC 4976 §7) as Failure-Report asks (RFC 4975 §7.1.2).
    let status = if lost { StatusCode::SESSION_DOES_NOT_EXIST } else { StatusCode::OK };
    let answered = msrp::report::answered(plan.failure, status);
    if answered {
        let full = conn.queue_with(|out| {
            // The comment is the reason phrase, as in the general path's `Response::new`.
            encode::encode_status_line(&plan.tid, status, status.reason(), out);
            out.put_slice(&route.answer_paths);
            encode::encode_end_line(&plan.tid, Continuation::Complete, out);
        });
        touched.queued(conn, full);
    }
    let oks = u64::from(answered && !lost);
    let bytes = if lost { 0 } else { body.len() as u64 };
    Handled { frames: 1, forwarded: !lost, sends: u64::from(!lost), bytes, oks }
}

fn put_header(out: &mut BytesMut, hname: &str, value: &[u8]) {
    out.put_slice(hname.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}
