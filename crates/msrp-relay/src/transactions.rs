//! The relay's hop-by-hop transactions (RFC 4976 §7): what each chunk or request sent to a
//! next hop owes its sender — a relayed response, a failure REPORT on a non-2xx answer, a
//! timeout (408) or the loss of the connection — and how a response, an expiry or a loss
//! settles it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use msrp::encode;
use msrp::header::{ByteRange, FailureReport, Header, MessageId, Path, Status};
use msrp::message::TransactionId;
use msrp::{Continuation, Method, Request, Response, StatusCode, Uri};
use tracing::{debug, info};

use crate::conn::Conn;
use crate::server::Shared;
use crate::sessions::ConnId;

/// What the relay owes the sender of a forwarded transaction when the next hop answers,
/// fails to, or goes away.
#[derive(Debug)]
pub(crate) enum Pending {
    /// A chunk of a SEND: a failure REPORT along `reporting` when Failure-Report allows.
    Send {
        source: ConnId,
        reporting: Arc<Reporting>,
        message_id: KeptId,
        range: ByteRange,
        failure: FailureReport,
        deadline: Instant,
    },
    /// Another method (NICKNAME, a chained AUTH, …): the next hop's response is relayed back
    /// as the response to `tid`.
    Relay { source: ConnId, tid: TransactionId, reply_to: Uri, reporter: Uri, deadline: Instant },
}

impl Pending {
    /// The transaction a forwarded SEND chunk opens, when its outcome may owe the sender
    /// anything: not with `Failure-Report: no`, nor without a Message-ID to report on (RFC 4975
    /// §7.1.2). The one rule for the fast and the general path.
    /// `message_id` is only read when a transaction is kept (a copy saved for the others).
    pub(crate) fn send(
        source: ConnId,
        reporting: &Arc<Reporting>,
        message_id: impl FnOnce() -> Option<KeptId>,
        range: ByteRange,
        failure: FailureReport,
        deadline: Instant,
    ) -> Option<Pending> {
        if failure == FailureReport::No {
            return None;
        }
        Some(Pending::Send {
            source,
            reporting: reporting.clone(),
            message_id: message_id()?,
            range,
            failure,
            deadline,
        })
    }
}

/// Where failure REPORTs about a sender's chunks go (its From-Path) and whom they come from (this
/// relay as the sender addressed it). One per route, shared by its pending transactions:
/// recording one costs a reference count, not a copy of two paths.
#[derive(Debug)]
pub(crate) struct Reporting {
    pub(crate) report_to: Path,
    pub(crate) reporter: Uri,
}

/// A Message-ID kept for a failure REPORT that is rarely sent: inline when short (UUIDs are 36
/// characters), so recording a transaction allocates nothing (the fast path's profile showed
/// the copy's malloc and free).
#[derive(Debug)]
pub(crate) enum KeptId {
    Inline { len: u8, bytes: [u8; KEPT_INLINE] },
    Shared(MessageId),
}

const KEPT_INLINE: usize = 40;

impl KeptId {
    /// `id` was checked by the caller (`MessageId::is_valid` or a parsed `MessageId`): this
    /// runs for every relayed chunk. `None` only if it was not.
    pub(crate) fn new(id: &str) -> Option<KeptId> {
        if id.len() <= KEPT_INLINE {
            let mut bytes = [0; KEPT_INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            return Some(KeptId::Inline { len: id.len() as u8, bytes });
        }
        MessageId::parse(&msrp::ByteString::from(id)).ok().map(KeptId::Shared)
    }

    fn message_id(&self) -> MessageId {
        match self {
            KeptId::Shared(id) => id.clone(),
            KeptId::Inline { len, bytes } => {
                let text = std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default();
                MessageId::parse(&msrp::ByteString::from(text)).unwrap_or_else(|_| MessageId::random())
            }
        }
    }
}

/// Hashes our own transaction ids (random, so their first bytes are already well mixed):
/// SipHash on every forwarded chunk and every response showed in the relay's profile, and
/// these keys are not chosen by peers.
#[derive(Default, Clone, Copy)]
pub(crate) struct BuildTidHasher;

impl std::hash::BuildHasher for BuildTidHasher {
    type Hasher = TidHasher;
    fn build_hasher(&self) -> TidHasher {
        TidHasher(0)
    }
}

pub(crate) struct TidHasher(u64);

impl std::hash::Hasher for TidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

/// The transactions forwarded over one connection and not answered yet, sans I/O (as
/// quinn-proto's connection): inputs come in as `handle_*` calls with the time passed in, and
/// what they settle comes out as the frames owed to the senders ([`Owed`]); the tokio code
/// only delivers them ([`deliver`]).
#[derive(Debug, Default)]
pub(crate) struct Table {
    map: HashMap<TransactionId, Pending, BuildTidHasher>,
}

/// What a response did to the table.
#[derive(Debug)]
pub(crate) enum Settled {
    /// It answers no transaction of this connection (late, duplicate or made up).
    Unknown,
    /// Settled; the sender is owed nothing (a success, or a failure it asked not to hear of).
    Quiet,
    Owe(Owed),
}

/// A frame the relay owes the sender of a transaction, on the connection it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owed {
    pub(crate) to: ConnId,
    pub(crate) frame: OwedFrame,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwedFrame {
    /// The next hop's response to a relayed request, readdressed to its sender.
    Response(Response),
    /// A failure REPORT (RFC 4975 §7.1.2) about a chunk of the sender's SEND.
    Report(Request),
}

impl Table {
    pub(crate) fn insert(&mut self, tid: TransactionId, p: Pending) {
        self.map.insert(tid, p);
    }

    /// Settles `tid` if a response with `status` leaves its sender owed nothing
    /// ([`Pending::settles_quietly`]): `Some(true)`; `Some(false)` leaves it for
    /// [`Table::handle_response`]; `None`: no such transaction. One lookup: the fast path does
    /// this for nearly every response the relay reads.
    pub(crate) fn settle_quietly(&mut self, tid: TransactionId, status: StatusCode) -> Option<bool> {
        match self.map.entry(tid) {
            Entry::Occupied(e) if e.get().settles_quietly(status) => {
                e.remove();
                Some(true)
            }
            Entry::Occupied(_) => Some(false),
            Entry::Vacant(_) => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, tid: &TransactionId) -> Option<&Pending> {
        self.map.get(tid)
    }

    pub(crate) fn get_mut(&mut self, tid: &TransactionId) -> Option<&mut Pending> {
        self.map.get_mut(tid)
    }

    pub(crate) fn remove(&mut self, tid: &TransactionId) -> Option<Pending> {
        self.map.remove(tid)
    }

    /// A response arrived from the next hop.
    pub(crate) fn handle_response(&mut self, resp: &Response) -> Settled {
        match self.map.remove(&resp.tid) {
            None => Settled::Unknown,
            Some(p) if p.settles_quietly(resp.status) => Settled::Quiet,
            Some(p) => answered(p, resp).map_or(Settled::Quiet, Settled::Owe),
        }
    }

    /// Transactions whose response is overdue at `now` (RFC 4975 §7.3: 408 after 30 s).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<Owed> {
        let due: Vec<TransactionId> = self.map.iter().filter(|(_, p)| p.deadline() <= now).map(|(k, _)| *k).collect();
        due.iter().filter_map(|k| self.map.remove(k)).filter_map(|p| unanswered(p, false)).collect()
    }

    /// The connection to the next hop is gone: nothing pending will be answered.
    pub(crate) fn handle_loss(&mut self) -> Vec<Owed> {
        self.map.drain().filter_map(|(_, p)| unanswered(p, true)).collect()
    }

    /// When `handle_timeout` next has something to do (the housekeeping tick asks every
    /// second instead; tests ask this).
    #[cfg(test)]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.map.values().map(Pending::deadline).min()
    }
}

impl Pending {
    /// Whether a response with `status` ends this transaction owing its sender nothing: a
    /// chunk's success (RFC 4976 §7). The fast path takes exactly these responses.
    pub(crate) fn settles_quietly(&self, status: StatusCode) -> bool {
        matches!(self, Pending::Send { .. }) && status.is_success()
    }

    fn deadline(&self) -> Instant {
        match self {
            Pending::Send { deadline, .. } | Pending::Relay { deadline, .. } => *deadline,
        }
    }
}

/// What a response to `p` owes its sender: a relayed request's response goes back; a failed
/// chunk is reported unless its Failure-Report is `no`.
fn answered(p: Pending, resp: &Response) -> Option<Owed> {
    match p {
        Pending::Send { source, reporting, message_id, range, failure, .. } => (!resp.status.is_success()
            && failure != FailureReport::No)
            .then(|| report(source, &reporting, message_id, range, resp.status)),
        Pending::Relay { source, tid, reply_to, reporter, .. } => {
            let mut back = Response::new(tid, resp.status);
            back.comment = resp.comment.clone();
            back.headers.set(Header::ToPath(Path::single(reply_to)));
            back.headers.set(Header::FromPath(Path::single(reporter)));
            for h in resp.headers.iter() {
                if !matches!(h, Header::ToPath(_) | Header::FromPath(_)) {
                    let _ = back.headers.push(h.clone());
                }
            }
            Some(Owed { to: source, frame: OwedFrame::Response(back) })
        }
    }
}

/// What `p` owes its sender when no response will come: on timeout only Failure-Report `yes`
/// reports (with `partial`, silence means success); on a lost connection both do. A relayed
/// request gets nothing (408 is never sent as a response).
fn unanswered(p: Pending, lost: bool) -> Option<Owed> {
    match p {
        Pending::Send { source, reporting, message_id, range, failure, .. } => (failure == FailureReport::Yes
            || (lost && failure == FailureReport::Partial))
            .then(|| report(source, &reporting, message_id, range, StatusCode::REQUEST_TIMEOUT)),
        Pending::Relay { tid, .. } => {
            debug!(%tid, "relayed request got no response; 408 is never sent as a response");
            None
        }
    }
}

fn report(source: ConnId, reporting: &Reporting, message_id: KeptId, range: ByteRange, status: StatusCode) -> Owed {
    let request = Request::new(TransactionId::random(), Method::Report)
        .with(Header::ToPath(reporting.report_to.clone()))
        .with(Header::FromPath(Path::single(reporting.reporter.clone())))
        .with(Header::MessageId(message_id.message_id()))
        .with(Header::ByteRange(range))
        .with(Header::Status(Status::new(status)));
    Owed { to: source, frame: OwedFrame::Report(request) }
}

/// Writes owed frames to their connections (those still open).
pub(crate) async fn deliver(shared: &Shared, owed: Vec<Owed>) {
    for o in owed {
        let Some(conn) = shared.conn(o.to) else { continue };
        let mut out = BytesMut::new();
        match &o.frame {
            OwedFrame::Response(resp) => encode::encode_response(resp, &mut out),
            OwedFrame::Report(report) => {
                let status = report.headers.status().map_or(StatusCode::REQUEST_TIMEOUT, |s| s.code);
                shared.stats.reported(status);
                if encode::encode_request(report, None, Continuation::Complete, &mut out).is_err() {
                    continue;
                }
                if let Some(n) = shared.reports.note() {
                    let id = report.headers.message_id().map(|m| m.as_str().to_owned()).unwrap_or_default();
                    info!(conn = conn.id, message_id = %id, status = status.0, reports_so_far = n, "failure REPORT sent");
                }
            }
        }
        conn.send(&out, shared).await;
    }
}

/// A response arrived on `conn`: settle the transaction it answers.
pub(crate) async fn response(shared: &Arc<Shared>, conn: &Arc<Conn>, resp: Response) {
    let settled = crate::lock(&conn.pending).handle_response(&resp);
    match settled {
        Settled::Unknown => {
            debug!(conn = conn.id, tid = %resp.tid, status = resp.status.0, "response to no pending transaction")
        }
        Settled::Quiet => {}
        Settled::Owe(o) => deliver(shared, vec![o]).await,
    }
}

/// Times out `conn`'s transactions whose response is overdue at `now`. The REPORTs go out in
/// a task of their own: the once-a-second housekeeping walks every connection, and a sender
/// that stopped reading (its writer held up to `transaction_timeout`) must not delay the
/// others' timeouts, session expiry or the guard's sweep.
pub(crate) fn expire_pending(shared: &Arc<Shared>, conn: &Arc<Conn>, now: Instant) {
    let owed = crate::lock(&conn.pending).handle_timeout(now);
    if !owed.is_empty() {
        let shared = shared.clone();
        tokio::spawn(async move { deliver(&shared, owed).await });
    }
}

/// Reports every transaction pending on `conn` as lost.
pub(crate) async fn fail_all(shared: &Arc<Shared>, conn: &Arc<Conn>) {
    let owed = crate::lock(&conn.pending).handle_loss();
    deliver(shared, owed).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SENDER: ConnId = 7;

    fn reporting() -> Arc<Reporting> {
        Arc::new(Reporting {
            report_to: Path::single("msrp://alice.example.com:7777/a1;tcp".parse().unwrap()),
            reporter: "msrp://relay.example.com:2855/r1;tcp".parse().unwrap(),
        })
    }

    fn chunk(failure: FailureReport, deadline: Instant) -> Pending {
        Pending::Send {
            source: SENDER,
            reporting: reporting(),
            message_id: KeptId::new("m-42").unwrap(),
            range: ByteRange { start: 1, end: Some(10), total: Some(20) },
            failure,
            deadline,
        }
    }

    #[test]
    fn a_chunk_is_tracked_unless_nothing_can_be_owed_for_it() {
        let r = ByteRange { start: 1, end: Some(10), total: Some(20) };
        let now = Instant::now();
        let id = || KeptId::new("m-1");
        assert!(Pending::send(SENDER, &reporting(), id, r, FailureReport::Yes, now).is_some());
        assert!(Pending::send(SENDER, &reporting(), id, r, FailureReport::Partial, now).is_some());
        assert!(Pending::send(SENDER, &reporting(), id, r, FailureReport::No, now).is_none(), "Failure-Report: no");
        assert!(Pending::send(SENDER, &reporting(), || None, r, FailureReport::Yes, now).is_none(), "no Message-ID");
        let whole = crate::conn::chunk_range(None).unwrap();
        assert_eq!((whole.start, whole.end, whole.total), (1, None, None), "none given means 1-*/*");
        let far = ByteRange { start: crate::conn::MAX_START + 1, end: None, total: None };
        assert_eq!(crate::conn::chunk_range(Some(&far)), None);
    }

    fn answer(tid: TransactionId, status: u16) -> Response {
        Response::new(tid, StatusCode(status))
            .with(Header::ToPath(Path::single("msrp://relay.example.com:2855/r1;tcp".parse().unwrap())))
            .with(Header::FromPath(Path::single("msrp://bob.example.com:8888/b1;tcp".parse().unwrap())))
    }

    /// The REPORT owed, checked field by field; its status.
    fn reported(owed: &Owed) -> u16 {
        assert_eq!(owed.to, SENDER, "back to the connection the SEND came from");
        let OwedFrame::Report(r) = &owed.frame else { panic!("{owed:?}") };
        assert_eq!(r.method, Method::Report);
        assert_eq!(r.headers.to_path().unwrap().first().as_str(), "msrp://alice.example.com:7777/a1;tcp");
        assert_eq!(r.headers.from_path().unwrap().first().as_str(), "msrp://relay.example.com:2855/r1;tcp");
        assert_eq!(r.headers.message_id().unwrap().as_str(), "m-42");
        assert_eq!(*r.headers.byte_range().unwrap(), ByteRange { start: 1, end: Some(10), total: Some(20) });
        r.headers.status().unwrap().code.0
    }

    #[test]
    fn failure_reports_follow_failure_report_and_the_outcome() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(30);
        // (Failure-Report, next hop's answer or None for silence, lost connection?) → REPORT status.
        let cases: [(FailureReport, Option<u16>, bool, Option<u16>); 12] = [
            (FailureReport::Yes, Some(200), false, None),
            (FailureReport::Yes, Some(481), false, Some(481)),
            (FailureReport::Yes, None, false, Some(408)),
            (FailureReport::Yes, None, true, Some(408)),
            (FailureReport::Partial, Some(200), false, None),
            (FailureReport::Partial, Some(403), false, Some(403)),
            (FailureReport::Partial, None, false, None),
            (FailureReport::Partial, None, true, Some(408)),
            (FailureReport::No, Some(200), false, None),
            (FailureReport::No, Some(481), false, None),
            (FailureReport::No, None, false, None),
            (FailureReport::No, None, true, None),
        ];
        for (failure, status, lost, want) in cases {
            let mut t = Table::default();
            let tid = TransactionId::random();
            t.insert(tid, chunk(failure, later));
            let owed: Vec<Owed> = match (status, lost) {
                (Some(code), _) => match t.handle_response(&answer(tid, code)) {
                    Settled::Owe(o) => vec![o],
                    Settled::Quiet => vec![],
                    Settled::Unknown => panic!("the transaction was pending"),
                },
                (None, false) => {
                    assert!(t.handle_timeout(later - Duration::from_millis(1)).is_empty(), "not yet due");
                    t.handle_timeout(later)
                }
                (None, true) => t.handle_loss(),
            };
            let got = owed.first().map(reported);
            assert_eq!(got, want, "{failure:?} {status:?} lost={lost}");
            assert!(t.poll_timeout().is_none(), "settled: {failure:?} {status:?}");
        }
    }

    #[test]
    fn a_relayed_request_gets_the_next_hops_response_and_nothing_on_silence() {
        let t0 = Instant::now();
        let mut t = Table::default();
        let (theirs, ours) = (TransactionId::random(), TransactionId::random());
        let relay = |tid| Pending::Relay {
            source: SENDER,
            tid,
            reply_to: "msrp://alice.example.com:7777/a1;tcp".parse().unwrap(),
            reporter: "msrp://relay.example.com:2855/r1;tcp".parse().unwrap(),
            deadline: t0 + Duration::from_secs(30),
        };
        t.insert(ours, relay(theirs));
        let mut resp = answer(ours, 425);
        resp.comment = Some("Nickname in use".into());
        let Settled::Owe(owed) = t.handle_response(&resp) else { panic!() };
        let OwedFrame::Response(back) = owed.frame else { panic!() };
        assert_eq!((back.tid, back.status.0, back.comment.as_deref()), (theirs, 425, Some("Nickname in use")));
        assert_eq!(back.headers.to_path().unwrap().first().as_str(), "msrp://alice.example.com:7777/a1;tcp");
        assert_eq!(back.headers.from_path().unwrap().first().as_str(), "msrp://relay.example.com:2855/r1;tcp");
        assert!(matches!(t.handle_response(&resp), Settled::Unknown), "a duplicate answers nothing");
        t.insert(ours, relay(theirs));
        assert!(t.handle_timeout(t0 + Duration::from_secs(31)).is_empty(), "408 is never sent as a response");
        assert!(t.handle_loss().is_empty());
    }

    #[test]
    fn timeouts_take_only_what_is_due() {
        let t0 = Instant::now();
        let mut t = Table::default();
        let (early, late, open) = (TransactionId::random(), TransactionId::random(), TransactionId::random());
        t.insert(early, chunk(FailureReport::Yes, t0 + Duration::from_secs(5)));
        t.insert(late, chunk(FailureReport::Yes, t0 + Duration::from_secs(30)));
        // A chunk still streaming has no deadline until its end-line (`end_open` sets one).
        t.insert(open, chunk(FailureReport::Yes, t0 + Duration::from_secs(86_400 * 365)));
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(t.handle_timeout(t0 + Duration::from_secs(10)).len(), 1);
        assert!(t.get(&early).is_none() && t.get(&late).is_some());
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(t.handle_timeout(t0 + Duration::from_secs(60)).len(), 1);
        assert!(t.get(&open).is_some(), "the open chunk waits for its end-line");
        if let Some(Pending::Send { deadline, .. }) = t.get_mut(&open) {
            *deadline = t0 + Duration::from_secs(90);
        }
        assert_eq!(reported(&t.handle_timeout(t0 + Duration::from_secs(90))[0]), 408);
        assert!(matches!(t.handle_response(&answer(open, 200)), Settled::Unknown), "settled once");
    }

    #[test]
    fn only_a_chunks_success_settles_quietly() {
        let later = Instant::now() + Duration::from_secs(30);
        let mut t = Table::default();
        let (chunk_tid, relayed) = (TransactionId::random(), TransactionId::random());
        t.insert(chunk_tid, chunk(FailureReport::Yes, later));
        t.insert(
            relayed,
            Pending::Relay {
                source: SENDER,
                tid: TransactionId::random(),
                reply_to: "msrp://alice.example.com:7777/a1;tcp".parse().unwrap(),
                reporter: "msrp://relay.example.com:2855/r1;tcp".parse().unwrap(),
                deadline: later,
            },
        );
        assert_eq!(t.settle_quietly(chunk_tid, StatusCode(481)), Some(false), "a failure owes a REPORT");
        assert_eq!(t.settle_quietly(relayed, StatusCode::OK), Some(false), "a relayed answer goes back");
        assert!(t.get(&chunk_tid).is_some() && t.get(&relayed).is_some(), "both left for handle_response");
        assert_eq!(t.settle_quietly(chunk_tid, StatusCode(202)), Some(true));
        assert_eq!(t.settle_quietly(chunk_tid, StatusCode::OK), None, "settled once");
    }

    #[test]
    fn kept_ids_come_back_whole() {
        for id in ["m1234", "0123456789abcdef0123456789abcdef01234567", &"x".repeat(100)] {
            assert_eq!(KeptId::new(id).unwrap().message_id().as_str(), id);
        }
        assert!(matches!(KeptId::new("4f2e1b3c-8d9a-4b5c-9e7f-123456789abc"), Some(KeptId::Inline { .. })));
    }
}
