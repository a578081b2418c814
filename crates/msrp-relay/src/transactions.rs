//! The relay's hop-by-hop transactions (RFC 4976 §7): what each chunk or request sent to a
//! next hop owes its sender — a relayed response, a failure REPORT on a non-2xx answer, a
//! timeout (408) or the loss of the connection — and how a response, an expiry or a loss
//! settles it.

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

/// A response arrived on `conn`: settle the transaction it answers.
pub(crate) async fn response(shared: &Arc<Shared>, conn: &Arc<Conn>, resp: Response) {
    let pending = conn.pending.lock().ok().and_then(|mut p| p.remove(&resp.tid));
    match pending {
        None => debug!(conn = conn.id, tid = %resp.tid, status = resp.status.0, "response to no pending transaction"),
        Some(Pending::Send { source, reporting, message_id, range, failure, .. }) => {
            if !resp.status.is_success() && failure != FailureReport::No {
                send_report(shared, source, &reporting, message_id, range, resp.status).await;
            }
        }
        Some(Pending::Relay { source, tid, reply_to, reporter, .. }) => {
            let mut back = Response::new(tid, resp.status);
            back.comment = resp.comment.clone();
            back.headers.set(Header::ToPath(Path::single(reply_to)));
            back.headers.set(Header::FromPath(Path::single(reporter)));
            for h in resp.headers.iter() {
                if !matches!(h, Header::ToPath(_) | Header::FromPath(_)) {
                    let _ = back.headers.push(h.clone());
                }
            }
            if let Some(src) = shared.conn(source) {
                let mut out = BytesMut::new();
                encode::encode_response(&back, &mut out);
                src.send(&out, shared).await;
            }
        }
    }
}

/// A failure REPORT (RFC 4975 §7.1.2) sent back on the connection the SEND came from.
async fn send_report(
    shared: &Shared,
    source: ConnId,
    reporting: &Reporting,
    message_id: KeptId,
    range: ByteRange,
    status: StatusCode,
) {
    let message_id = message_id.message_id();
    let Some(src) = shared.conn(source) else { return };
    let report = Request::new(TransactionId::random(), Method::Report)
        .with(Header::ToPath(reporting.report_to.clone()))
        .with(Header::FromPath(Path::single(reporting.reporter.clone())))
        .with(Header::MessageId(message_id.clone()))
        .with(Header::ByteRange(range))
        .with(Header::Status(Status::new(status)));
    let mut out = BytesMut::new();
    shared.stats.reported(status);
    if encode::encode_request(&report, None, Continuation::Complete, &mut out).is_ok() {
        if let Some(n) = shared.reports.note() {
            info!(conn = src.id, message_id = %message_id, status = status.0, reports_so_far = n, "failure REPORT sent");
        }
        src.send(&out, shared).await;
    }
}

/// Times out transactions whose response is overdue (RFC 4975 §7.3: 408 after 30 s).
pub(crate) async fn expire_pending(shared: &Arc<Shared>, conn: &Arc<Conn>, now: Instant) {
    let due: Vec<Pending> = match conn.pending.lock() {
        Ok(mut p) => {
            let keys: Vec<TransactionId> = p.iter().filter(|(_, v)| deadline(v) <= now).map(|(k, _)| *k).collect();
            keys.iter().filter_map(|k| p.remove(k)).collect()
        }
        Err(_) => return,
    };
    for p in due {
        fail(shared, p, false).await;
    }
}

fn deadline(p: &Pending) -> Instant {
    match p {
        Pending::Send { deadline, .. } | Pending::Relay { deadline, .. } => *deadline,
    }
}

/// Settles a transaction that will get no response: on timeout only Failure-Report `yes`
/// reports (with `partial`, silence means success); on a lost connection both do.
pub(crate) async fn fail(shared: &Arc<Shared>, p: Pending, lost: bool) {
    match p {
        Pending::Send { source, reporting, message_id, range, failure, .. } => {
            if failure == FailureReport::Yes || (lost && failure == FailureReport::Partial) {
                send_report(shared, source, &reporting, message_id, range, StatusCode::REQUEST_TIMEOUT).await;
            }
        }
        Pending::Relay { tid, .. } => {
            debug!(%tid, "relayed request got no response; 408 is never sent as a response");
        }
    }
}

/// Reports every transaction pending on `conn` as lost.
pub(crate) async fn fail_all(shared: &Arc<Shared>, conn: &Arc<Conn>) {
    let pending: Vec<Pending> =
        conn.pending.lock().map(|mut p| p.drain().map(|(_, v)| v).collect()).unwrap_or_default();
    for p in pending {
        fail(shared, p, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::KeptId;

    #[test]
    fn kept_ids_come_back_whole() {
        for id in ["m1234", "0123456789abcdef0123456789abcdef01234567", &"x".repeat(100)] {
            assert_eq!(KeptId::new(id).unwrap().message_id().as_str(), id);
        }
        assert!(matches!(KeptId::new("4f2e1b3c-8d9a-4b5c-9e7f-123456789abc"), Some(KeptId::Inline { .. })));
    }
}
