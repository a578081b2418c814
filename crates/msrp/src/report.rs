//! Who answers what (RFC 4975 §7.1.2, §7.2; RFC 4976 §7 for relays).
//!
//! - Responses are hop by hop: a response goes back to the previous hop only, so its To-Path
//!   is the first URI of the request's From-Path and its From-Path is the responder's URI.
//! - Failure-Report (default `yes`) decides whether a SEND gets a response at all: `no` → none,
//!   `partial` → only negative ones, `yes` → always. REPORTs are never answered.
//! - REPORTs travel end to end: To-Path is the whole From-Path of the reported request,
//!   From-Path the reporter; Message-ID is copied, Byte-Range names the bytes reported on,
//!   Status carries `000 <code> <comment>`; a fresh transaction id; no Success-Report or
//!   Failure-Report header (§7.1.2).

use crate::header::{ByteRange, FailureReport, Header, Path, Status, SuccessReport};
use crate::message::{Method, Request, Response, StatusCode, TransactionId};
use crate::uri::Uri;

/// Whether `req` gets a transaction response carrying `status`.
pub fn response_wanted(req: &Request, status: StatusCode) -> bool {
    req.method != Method::Report && answered(req.headers.failure_report(), status)
}

/// Whether a request (not a REPORT) sent with Failure-Report `failure` gets a response carrying
/// `status` (RFC 4975 §7.1.2): `yes` always, `partial` only a failure, `no` never. The one rule,
/// also for callers that hold no [`Request`] (the relay's fast path).
pub fn answered(failure: FailureReport, status: StatusCode) -> bool {
    match failure {
        FailureReport::Yes => true,
        FailureReport::Partial => !status.is_success(),
        FailureReport::No => false,
    }
}

/// The response to `req` sent by `local` (the URI the request reached: the first To-Path
/// entry). Returns `None` when the request lacks a From-Path (the decoder already refuses
/// such frames) or when no response is wanted.
pub fn response(req: &Request, status: StatusCode, local: &Uri) -> Option<Response> {
    if !response_wanted(req, status) {
        return None;
    }
    let previous_hop = req.headers.from_path()?.first().clone();
    Some(
        Response::new(req.tid, status)
            .with(Header::ToPath(Path::single(previous_hop)))
            .with(Header::FromPath(Path::single(local.clone()))),
    )
}

/// A response with paths given by the caller (e.g. to a request whose decoding failed, from
/// [`crate::decode::FrameInfo`]).
pub fn response_to(tid: TransactionId, status: StatusCode, from_path: &Path, local: &Uri) -> Response {
    Response::new(tid, status)
        .with(Header::ToPath(Path::single(from_path.first().clone())))
        .with(Header::FromPath(Path::single(local.clone())))
}

/// Whether a failure of this SEND must be reported with a REPORT (`Failure-Report` is `yes` or
/// `partial`). Only SENDs are reported on.
pub fn failure_report_wanted(req: &Request) -> bool {
    req.method == Method::Send && req.headers.failure_report() != FailureReport::No
}

/// Whether the receiver of this SEND owes a success REPORT once the bytes arrive.
pub fn success_report_wanted(req: &Request) -> bool {
    req.method == Method::Send && req.headers.success_report() == SuccessReport::Yes
}

/// A REPORT on `req` from `local`, about the bytes in `range`. Returns `None` when `req`
/// lacks a From-Path or a Message-ID (nothing to address or to name).
pub fn report(req: &Request, status: StatusCode, range: ByteRange, local: &Uri) -> Option<Request> {
    let to = req.headers.from_path()?.clone();
    let message_id = req.headers.message_id()?.clone();
    Some(
        Request::new(TransactionId::random(), Method::Report)
            .with(Header::ToPath(to))
            .with(Header::FromPath(Path::single(local.clone())))
            .with(Header::MessageId(message_id))
            .with(Header::ByteRange(range))
            .with(Header::Status(Status::new(status))),
    )
}

/// The range a REPORT names for a chunk of which `received` bytes actually arrived: the
/// chunk's own start, its end resolved from what arrived when the sender wrote `*`.
pub fn received_range(chunk: &ByteRange, received: u64) -> ByteRange {
    ByteRange { start: chunk.start, end: Some(chunk.start + received - 1), total: chunk.total }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::MessageId;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn failure_report_decides_which_responses_are_sent() {
        let (ok, gone) = (StatusCode::OK, StatusCode::SESSION_DOES_NOT_EXIST);
        assert!(answered(FailureReport::Yes, ok) && answered(FailureReport::Yes, gone));
        assert!(!answered(FailureReport::Partial, ok) && answered(FailureReport::Partial, gone));
        assert!(!answered(FailureReport::No, ok) && !answered(FailureReport::No, gone));
    }

    fn send(failure: Option<&str>, success: Option<&str>) -> Request {
        let mut r = Request::new("tid1".parse().unwrap(), Method::Send)
            .with(Header::ToPath(Path::new(vec![uri("msrp://relay:1/r;tcp"), uri("msrp://b:2/b;tcp")]).unwrap()))
            .with(Header::FromPath(Path::new(vec![uri("msrp://relay0:9/x;tcp"), uri("msrp://a:3/a;tcp")]).unwrap()))
            .with(Header::MessageId("mid1".parse::<MessageId>().unwrap()))
            .with(Header::ByteRange(ByteRange::whole(10)));
        if let Some(f) = failure {
            r.headers.set(Header::FailureReport(FailureReport::parse(f).unwrap()));
        }
        if let Some(s) = success {
            r.headers.set(Header::SuccessReport(SuccessReport::parse(s).unwrap()));
        }
        r
    }

    #[test]
    fn failure_report_governs_responses() {
        let ok = StatusCode::OK;
        let bad = StatusCode::SESSION_DOES_NOT_EXIST;
        assert!(response_wanted(&send(None, None), ok));
        assert!(response_wanted(&send(Some("yes"), None), bad));
        assert!(!response_wanted(&send(Some("partial"), None), ok));
        assert!(response_wanted(&send(Some("partial"), None), bad));
        assert!(!response_wanted(&send(Some("no"), None), ok));
        assert!(!response_wanted(&send(Some("no"), None), bad));
    }

    #[test]
    fn reports_are_never_answered() {
        let mut r = send(None, None);
        r.method = Method::Report;
        assert!(!response_wanted(&r, StatusCode::OK));
        assert!(!response_wanted(&r, StatusCode::BAD_REQUEST));
        assert!(!failure_report_wanted(&r));
    }

    #[test]
    fn response_goes_to_the_previous_hop_only() {
        let me = uri("msrp://relay:1/r;tcp");
        let resp = response(&send(None, None), StatusCode::OK, &me).unwrap();
        assert_eq!(resp.tid.as_str(), "tid1");
        assert_eq!(resp.headers.to_path().unwrap().to_string(), "msrp://relay0:9/x;tcp");
        assert_eq!(resp.headers.from_path().unwrap().to_string(), "msrp://relay:1/r;tcp");
        assert!(response(&send(Some("no"), None), StatusCode::OK, &me).is_none());
    }

    #[test]
    fn report_travels_back_along_the_whole_path() {
        let me = uri("msrp://relay:1/r;tcp");
        let req = send(None, Some("yes"));
        assert!(success_report_wanted(&req) && failure_report_wanted(&req));
        let rep = report(&req, StatusCode::REQUEST_TIMEOUT, ByteRange::chunk(1, 4, Some(10)), &me).unwrap();
        assert_eq!(rep.method, Method::Report);
        assert_ne!(rep.tid.as_str(), "tid1");
        assert_eq!(rep.headers.to_path().unwrap().to_string(), "msrp://relay0:9/x;tcp msrp://a:3/a;tcp");
        assert_eq!(rep.headers.from_path().unwrap().to_string(), "msrp://relay:1/r;tcp");
        assert_eq!(rep.headers.message_id().unwrap().as_str(), "mid1");
        assert_eq!(rep.headers.byte_range().unwrap().to_string(), "1-4/10");
        assert_eq!(rep.headers.status().unwrap().to_string(), "000 408 Request Timeout");
        assert!(rep.headers.iter().all(|h| !matches!(h, Header::SuccessReport(_) | Header::FailureReport(_))));
        assert!(!failure_report_wanted(&send(Some("no"), None)));
        assert!(failure_report_wanted(&send(Some("partial"), None)));
        assert!(!success_report_wanted(&send(None, None)));
    }

    #[test]
    fn received_range_resolves_star() {
        let chunk = ByteRange::parse("2049-*/*").unwrap();
        assert_eq!(received_range(&chunk, 100).to_string(), "2049-2148/*");
    }
}
