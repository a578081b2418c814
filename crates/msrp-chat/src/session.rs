//! One participant session: the MSRP session a SIP dialog set up, its bounded outgoing queue
//! and the task that writes that queue to the participant's connection.
//!
//! The queue is what keeps one slow participant from stalling the room: fan-out never waits,
//! it offers each recipient a message and a full queue ends that recipient's session.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use msrp::encode;
use msrp::header::{ByteRange, ContentType, FailureReport, MessageId, Path, SuccessReport};
use msrp::message::TransactionId;
use msrp::{ByteString, Continuation, Header, Method, Request, Uri};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::identity::Identity;
use crate::room::Room;
use crate::sdp::ChatStream;

/// A message queued for a participant: always `message/cpim`.
pub(crate) struct Out {
    pub body: Bytes,
    /// is-composing notices: `Success-Report: no` and `Failure-Report: no`.
    pub quiet: bool,
}

/// A queued message and whether it counts against the byte budget.
pub(crate) struct Queued {
    out: Out,
    budgeted: bool,
}

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    Full,
    Gone,
}

/// Messages being written at once, in turns of one chunk each, so that a large message does
/// not hold up the small ones queued behind it.
const IN_FLIGHT: usize = 64;

/// Frames gathered into one write: a busy room costs one system call per batch of messages,
/// not one per message.
const BATCH_BYTES: usize = 64 * 1024;

pub(crate) struct Session {
    /// The session-id of the server's MSRP URI for this participant.
    pub id: String,
    pub local: Uri,
    pub identity: Identity,
    /// The participant's SIP Contact URI, if known (its endpoint in conference-info).
    pub device: Option<String>,
    pub room: Arc<Room>,
    pub stream: ChatStream,
    tx: mpsc::Sender<Queued>,
    rx: Mutex<Option<mpsc::Receiver<Queued>>>,
    queued_bytes: AtomicUsize,
    queue_bytes: usize,
    pub link: Mutex<Link>,
    ended: AtomicBool,
    pub stop: CancellationToken,
    on_end: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Messages this participant may send per second (`message_rate`), if limited.
    pub rate: Option<msrp_auth::rate::Bucket>,
}

/// The connection a session is bound to and the To-Path its messages take.
#[derive(Default)]
pub(crate) struct Link {
    pub conn: Option<Arc<Conn>>,
    pub to_path: Option<Path>,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        local: Uri,
        identity: Identity,
        device: Option<String>,
        room: Arc<Room>,
        stream: ChatStream,
        queue_messages: usize,
        queue_bytes: usize,
        rate: Option<u32>,
        on_end: Box<dyn FnOnce() + Send>,
    ) -> Session {
        let (tx, rx) = mpsc::channel(queue_messages.max(1));
        Session {
            id,
            local,
            identity,
            device,
            room,
            stream,
            tx,
            rx: Mutex::new(Some(rx)),
            queued_bytes: AtomicUsize::new(0),
            queue_bytes,
            link: Mutex::new(Link::default()),
            ended: AtomicBool::new(false),
            stop: CancellationToken::new(),
            on_end: Mutex::new(Some(on_end)),
            rate: rate.map(|r| msrp_auth::rate::Bucket::new(u64::from(r))),
        }
    }

    pub fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_bound(&self) -> bool {
        self.link().conn.is_some()
    }

    /// Queues `out` without waiting. `replay` (history at join, bounded by `history_size` on
    /// its own) neither counts against nor is refused by the byte budget, so a room with large
    /// messages in its history does not get its joiners dropped as slow.
    pub fn offer(&self, out: Out, replay: bool) -> Result<(), Overflow> {
        if self.has_ended() {
            return Err(Overflow::Gone);
        }
        let len = out.body.len();
        if !replay {
            let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
            if before + len > self.queue_bytes {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                return Err(Overflow::Full);
            }
        }
        self.tx.try_send(Queued { out, budgeted: !replay }).map_err(|e| {
            if !replay {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            }
            match e {
                mpsc::error::TrySendError::Full(_) => Overflow::Full,
                mpsc::error::TrySendError::Closed(_) => Overflow::Gone,
            }
        })
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Marks the session ended; true only for the first caller.
    pub fn mark_ended(&self) -> bool {
        !self.ended.swap(true, Ordering::AcqRel)
    }

    /// The hang-up hook (a SIP BYE), taken once.
    pub fn take_on_end(&self) -> Option<Box<dyn FnOnce() + Send>> {
        self.on_end.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Queued>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// A SEND head from this session to its participant.
    fn send_head(&self, to: &Path, message_id: &MessageId, range: ByteRange, quiet: bool) -> Request {
        let mut req = Request::new(TransactionId::random(), Method::Send)
            .with(Header::ToPath(to.clone()))
            .with(Header::FromPath(Path::single(self.local.clone())))
            .with(Header::MessageId(message_id.clone()))
            .with(Header::ByteRange(range));
        // Fan-out asks only for negative responses (RFC 4975 §7.1.2, Failure-Report: partial):
        // the server has nothing to do with a recipient's 200, and not asking for it halves
        // the frames on every participant's connection. Failures still come back and are
        // logged. is-composing notices ask for nothing.
        let failure = if quiet { FailureReport::No } else { FailureReport::Partial };
        req = req.with(Header::FailureReport(failure));
        if quiet {
            req = req.with(Header::SuccessReport(SuccessReport::No));
        }
        req
    }

    /// The empty SEND that binds a connection the server opened to this session's participant.
    pub fn bind_frame(&self, to: &Path) -> BytesMut {
        bind_frame(to, &self.local)
    }
}

/// The empty SEND from `local` to `to` that binds a connection the focus opened (RFC 4975 §5.4:
/// the active side sends first, and an empty SEND is allowed for that), for a chat session or
/// a file transfer. `Failure-Report: partial`: nothing answers it but a refusal.
pub(crate) fn bind_frame(to: &Path, local: &Uri) -> BytesMut {
    let req = Request::new(TransactionId::random(), Method::Send)
        .with(Header::ToPath(to.clone()))
        .with(Header::FromPath(Path::single(local.clone())))
        .with(Header::MessageId(MessageId::random()))
        .with(Header::ByteRange(ByteRange::whole(0)))
        .with(Header::FailureReport(FailureReport::Partial));
    let mut out = BytesMut::with_capacity(256);
    encode::encode_head_lines(&req, &mut out);
    encode::encode_end_line(&req.tid, Continuation::Complete, &mut out);
    out
}

/// One message being written, possibly over several chunks.
struct InFlight {
    body: Bytes,
    quiet: bool,
    budgeted: bool,
    id: MessageId,
    sent: usize,
}

/// Writes the session's queue to `conn` until the session stops or a write fails. Returns the
/// error of a failed write.
///
/// Each round takes the next chunk of every message in flight, in order, into one buffer
/// (up to [`BATCH_BYTES`]) and writes it at once; a message that is not finished goes to the
/// back, so a large one shares the connection with whatever was queued after it.
pub(crate) async fn write_queue(
    session: Arc<Session>,
    conn: Arc<Conn>,
    to: Path,
    mut rx: mpsc::Receiver<Queued>,
    chunk_size: usize,
    bind_first: bool,
) -> std::io::Result<()> {
    if bind_first {
        conn.write(&session.bind_frame(&to)).await?;
    }
    let chunk_size = if chunk_size == 0 { usize::MAX } else { chunk_size };
    let cpim = Header::ContentType(ContentType::parse(&ByteString::from_static("message/cpim")).expect("valid"));
    let fresh = |q: Queued| InFlight {
        body: q.out.body,
        quiet: q.out.quiet,
        budgeted: q.budgeted,
        id: MessageId::random(),
        sent: 0,
    };
    let mut flight: VecDeque<InFlight> = VecDeque::new();
    let mut batch = BytesMut::with_capacity(BATCH_BYTES + 1024);
    loop {
        if flight.is_empty() {
            tokio::select! {
                _ = session.stop.cancelled() => return Ok(()),
                next = rx.recv() => match next {
                    Some(out) => flight.push_back(fresh(out)),
                    None => return Ok(()),
                },
            }
        }
        while flight.len() < IN_FLIGHT {
            match rx.try_recv() {
                Ok(out) => flight.push_back(fresh(out)),
                Err(_) => break,
            }
        }
        let mut finished = 0;
        for _ in 0..flight.len() {
            if batch.len() >= BATCH_BYTES {
                break;
            }
            let mut m = flight.pop_front().expect("counted");
            let total = m.body.len();
            let end = m.sent.saturating_add(chunk_size).min(total);
            let chunk = m.body.slice(m.sent..end);
            let range = ByteRange::chunk(m.sent as u64 + 1, chunk.len() as u64, Some(total as u64));
            let mut req = session.send_head(&to, &m.id, range, m.quiet).with(cpim.clone());
            req.tid = encode::safe_tid_from(&chunk, req.tid);
            let flag = if end == total { Continuation::Complete } else { Continuation::More };
            encode::encode_request(&req, Some(&chunk), flag, &mut batch).map_err(std::io::Error::other)?;
            m.sent = end;
            if end == total {
                finished += if m.budgeted { total } else { 0 };
            } else {
                flight.push_back(m);
            }
        }
        // Not raced against the session's end: a frame is never left half-written on a
        // connection other sessions may share (Conn::write has its own timeout).
        conn.write(&batch).await?;
        batch.clear();
        if session.stop.is_cancelled() {
            return Ok(());
        }
        session.queued_bytes.fetch_sub(finished, Ordering::Relaxed);
    }
}
