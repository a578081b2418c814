//! Frames out (RFC 4975 §9 grammar, §7.1 sending rules).
//!
//! Heads are written with To-Path and From-Path first and the Content-* headers last, as the
//! grammar orders them. A body must not contain its own end-line (§7.1): [`body_is_safe`]
//! checks, [`TransactionId::random`] makes a collision astronomically unlikely, and
//! [`encode_request`] refuses to write a frame whose body would end it early.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use crate::header::Header;
use crate::message::{Continuation, Request, Response, StatusCode, TransactionId};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("the body contains the end-line of transaction {0}; pick another transaction id")]
    EndLineInBody(TransactionId),
    #[error("a request needs To-Path and From-Path")]
    MissingPath,
}

/// True when `body` cannot be mistaken for the end of transaction `tid`'s frame: it holds no
/// `CRLF -------<tid>` (the decoder's needle) and does not start with `-------<tid>` (which
/// a lenient decoder reads as an empty body).
pub fn body_is_safe(body: &[u8], tid: &TransactionId) -> bool {
    let starts_with_end_line = body.starts_with(b"-------") && body[7..].starts_with(tid.as_bytes());
    !starts_with_end_line && !contains_end_line(body, tid)
}

/// True when `hay` holds `CRLF -------<tid>`, the start of `tid`'s end-line.
pub fn contains_end_line(hay: &[u8], tid: &TransactionId) -> bool {
    let tid = tid.as_bytes();
    crate::decode::EndNeedles::new(hay).any(|at| hay[at + crate::decode::END_NEEDLE.len()..].starts_with(tid))
}

/// A transaction id whose end-line does not occur in `body`.
pub fn safe_tid_for(body: &[u8]) -> TransactionId {
    safe_tid_from(body, TransactionId::random())
}

/// `tid` when its end-line does not occur in `body`, else a fresh one that does not.
pub fn safe_tid_from(body: &[u8], mut tid: TransactionId) -> TransactionId {
    while !body_is_safe(body, &tid) {
        tid = TransactionId::random();
    }
    tid
}

/// Bytes of each side of a seam between two pieces of one body that an end-line can span:
/// CRLF, seven dashes and the longest transaction id, rounded up.
pub const SEAM: usize = 48;

/// True when no piece of a body written as `pieces`, and no seam between two of them, holds
/// `tid`'s end-line.
pub fn pieces_are_safe<P: AsRef<[u8]>>(pieces: &[P], tid: &TransactionId) -> bool {
    // A rolling window of what came before, so that an end-line spread over several short
    // pieces is seen as well as one across a single seam.
    let mut tail = Vec::with_capacity(SEAM);
    for p in pieces {
        if !continues_safely(&tail, p.as_ref(), tid) {
            return false;
        }
        keep_tail(&mut tail, p.as_ref());
    }
    true
}

/// Keeps in `tail` the last [`SEAM`] bytes of a body, `piece` being its newest bytes.
pub fn keep_tail(tail: &mut Vec<u8>, piece: &[u8]) {
    if piece.len() >= SEAM {
        tail.clear();
        tail.extend_from_slice(&piece[piece.len() - SEAM..]);
    } else {
        tail.extend_from_slice(piece);
        let excess = tail.len().saturating_sub(SEAM);
        tail.drain(..excess);
    }
}

/// A transaction id whose end-line occurs nowhere in a body written as `pieces`.
pub fn safe_tid_for_pieces<P: AsRef<[u8]>>(pieces: &[P]) -> TransactionId {
    loop {
        let tid = TransactionId::random();
        if pieces_are_safe(pieces, &tid) {
            return tid;
        }
    }
}

/// True when `next`, written after body bytes ending with `tail` (their last [`SEAM`] bytes),
/// puts no end-line of `tid` in the body, neither inside it nor across the seam (a body
/// streamed under a transaction id the receiver has already seen).
pub fn continues_safely(tail: &[u8], next: &[u8], tid: &TransactionId) -> bool {
    if !body_is_safe(next, tid) {
        return false;
    }
    let mut seam = Vec::with_capacity(2 * SEAM);
    seam.extend_from_slice(&tail[tail.len().saturating_sub(SEAM)..]);
    seam.extend_from_slice(&next[..next.len().min(SEAM)]);
    !contains_end_line(&seam, tid)
}

fn write_headers<'a>(out: &mut BytesMut, headers: impl Iterator<Item = &'a Header> + Clone) {
    // To-Path, From-Path, the rest, then Content-* (RFC 4975 §9 `headers` / `content-stuff`).
    let to = headers.clone().filter(|h| matches!(h, Header::ToPath(_)));
    let from = headers.clone().filter(|h| matches!(h, Header::FromPath(_)));
    let middle = headers.clone().filter(|h| !matches!(h, Header::ToPath(_) | Header::FromPath(_)) && !h.is_content());
    let content = headers.filter(|h| h.is_content());
    for h in to.chain(from).chain(middle).chain(content) {
        encode_header(h, out);
    }
}

/// Writes `Name: value` CRLF. The headers on every relayed frame (paths, ids, ranges, media
/// type, report flags) are copied from the text they keep instead of going through
/// `fmt`, which the relay's profile showed costing more than the decoding.
pub fn encode_header(h: &Header, out: &mut BytesMut) {
    out.put_slice(h.name().as_bytes());
    out.put_slice(b": ");
    match h {
        Header::ToPath(p) | Header::FromPath(p) | Header::UsePath(p) => {
            for (i, uri) in p.uris().iter().enumerate() {
                if i > 0 {
                    out.put_u8(b' ');
                }
                out.put_slice(uri.as_str().as_bytes());
            }
        }
        Header::MessageId(m) => out.put_slice(m.as_str().as_bytes()),
        Header::ByteRange(r) => {
            put_u64(out, r.start);
            out.put_u8(b'-');
            match r.end {
                Some(e) => put_u64(out, e),
                None => out.put_u8(b'*'),
            }
            out.put_u8(b'/');
            match r.total {
                Some(t) => put_u64(out, t),
                None => out.put_u8(b'*'),
            }
        }
        Header::ContentType(c) => out.put_slice(c.as_str().as_bytes()),
        Header::Expires(v) | Header::MinExpires(v) | Header::MaxExpires(v) => put_u64(out, u64::from(*v)),
        Header::Other(o) => out.put_slice(o.value().as_bytes()),
        _ => {
            let _ = write!(out, "{}", HeaderValue(h));
        }
    }
    out.put_slice(b"\r\n");
}

/// Prints only the value part of a header (its `Display` prints `Name: value`).
struct HeaderValue<'a>(&'a Header);

impl std::fmt::Display for HeaderValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt_value(f)
    }
}

/// Decimal digits of `n` without `fmt`.
fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// Writes a complete request frame: head, then (when `body` is `Some`) a blank line, the body
/// and its CRLF, then the end-line with `flag`.
///
/// A body needs a Content-Type header (RFC 4975 §7.1.1); an empty SEND passes `None`.
pub fn encode_request(
    req: &Request,
    body: Option<&[u8]>,
    flag: Continuation,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if req.headers.to_path().is_none() || req.headers.from_path().is_none() {
        return Err(EncodeError::MissingPath);
    }
    if let Some(b) = body
        && !body_is_safe(b, &req.tid)
    {
        return Err(EncodeError::EndLineInBody(req.tid));
    }
    out.reserve(256 + body.map_or(0, <[u8]>::len));
    request_line(req, out);
    write_headers(out, req.headers.iter());
    if let Some(b) = body {
        out.put_slice(b"\r\n");
        out.put_slice(b);
        out.put_slice(b"\r\n");
    }
    encode_end_line(&req.tid, flag, out);
    Ok(())
}

/// Writes the head of a request whose body will be streamed: everything up to and including
/// the blank line. Follow with the body bytes, then [`encode_body_end`]. The caller must make
/// sure (e.g. with [`body_is_safe`] on each piece plus the seams) that the body holds no
/// end-line for `req.tid`, or interrupt the chunk with `+` before it.
pub fn encode_request_head(req: &Request, out: &mut BytesMut) {
    request_line(req, out);
    write_headers(out, req.headers.iter());
    out.put_slice(b"\r\n");
}

/// Writes a request's start line and headers only, for a frame without a body section: follow
/// with [`encode_end_line`].
pub fn encode_head_lines(req: &Request, out: &mut BytesMut) {
    request_line(req, out);
    write_headers(out, req.headers.iter());
}

/// Ends a streamed body: the CRLF after the data, then the end-line.
pub fn encode_body_end(tid: &TransactionId, flag: Continuation, out: &mut BytesMut) {
    out.put_slice(b"\r\n");
    encode_end_line(tid, flag, out);
}

fn request_line(req: &Request, out: &mut BytesMut) {
    out.put_slice(b"MSRP ");
    out.put_slice(req.tid.as_bytes());
    out.put_u8(b' ');
    out.put_slice(req.method.as_str().as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes a response frame (responses never carry a body).
pub fn encode_response(resp: &Response, out: &mut BytesMut) {
    encode_status_line(&resp.tid, resp.status, resp.comment.as_deref(), out);
    write_headers(out, resp.headers.iter());
    encode_end_line(&resp.tid, Continuation::Complete, out);
}

/// `MSRP <tid> <code>[ <comment>]` CRLF: a response's start line.
pub fn encode_status_line(tid: &TransactionId, status: StatusCode, comment: Option<&str>, out: &mut BytesMut) {
    out.put_slice(b"MSRP ");
    out.put_slice(tid.as_bytes());
    out.put_u8(b' ');
    let code = status.0.min(999);
    out.put_slice(&[b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8]);
    if let Some(c) = comment {
        out.put_u8(b' ');
        out.put_slice(c.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// `"-------" transact-id continuation-flag CRLF`.
pub fn encode_end_line(tid: &TransactionId, flag: Continuation, out: &mut BytesMut) {
    out.put_slice(b"-------");
    out.put_slice(tid.as_str().as_bytes());
    out.put_u8(flag.as_byte());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{ByteRange, MessageId, Path};
    use crate::message::{Method, StatusCode};

    #[test]
    fn end_lines_inside_pieces_and_across_seams_are_caught() {
        let tid: TransactionId = "abcd1234".parse().unwrap();
        assert!(!pieces_are_safe(&[&b"hello\r\n-------abcd1234$\r\n"[..]], &tid));
        let split: [&[u8]; 2] = [b"hello\r\n---", b"----abcd1234$\r\n"];
        assert!(!pieces_are_safe(&split, &tid), "a needle across two pieces");
        let other: [&[u8]; 2] = [b"hello\r\n---", b"----zzzz9999$\r\n"];
        assert!(pieces_are_safe(&other, &tid));
        assert!(!pieces_are_safe(&[&b"-------abcd1234$\r\n"[..]], &tid), "a body starting with it");
        let three: [&[u8]; 4] = [b"hello", b"\r\n", b"---", b"----abcd1234$"];
        assert!(!pieces_are_safe(&three, &tid), "spread over several short pieces");
        assert!(!continues_safely(b"hello\r\n---", b"----abcd1234$", &tid), "across a streamed seam");
        assert!(continues_safely(b"hello\r\n---", b"----zzzz9999$", &tid));
        let chosen = safe_tid_for_pieces(&split);
        assert!(pieces_are_safe(&split, &chosen));
    }

    #[test]
    fn a_body_holding_the_end_line_gets_another_transaction_id() {
        let tid = TransactionId::parse("abcd1234").unwrap();
        let body = b"text\r\n-------abcd1234$\r\nmore";
        let chosen = safe_tid_from(body, tid);
        assert_ne!(chosen, tid);
        assert!(body_is_safe(body, &chosen));
        assert_eq!(safe_tid_from(b"harmless", tid), tid, "kept when it does not occur");
    }

    fn path(s: &str) -> Path {
        Path::single(s.parse().unwrap())
    }

    fn send(tid: &str) -> Request {
        Request::new(tid.parse().unwrap(), Method::Send)
            .with(Header::ContentType("text/plain".parse().unwrap()))
            .with(Header::ByteRange(ByteRange::whole(5)))
            .with(Header::MessageId("m1234".parse::<MessageId>().unwrap()))
            .with(Header::FromPath(path("msrp://a:1/s;tcp")))
            .with(Header::ToPath(path("msrp://b:2/t;tcp")))
    }

    #[test]
    fn request_layout_follows_the_grammar() {
        let mut out = BytesMut::new();
        encode_request(&send("abcd"), Some(b"hello"), Continuation::Complete, &mut out).unwrap();
        assert_eq!(
            &out[..],
            b"MSRP abcd SEND\r\nTo-Path: msrp://b:2/t;tcp\r\nFrom-Path: msrp://a:1/s;tcp\r\nByte-Range: 1-5/5\r\nMessage-ID: m1234\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------abcd$\r\n"
        );
    }

    #[test]
    fn empty_send_and_response() {
        let mut out = BytesMut::new();
        let req = Request::new("wxyz".parse().unwrap(), Method::Send)
            .with(Header::ToPath(path("msrp://b:2/t;tcp")))
            .with(Header::FromPath(path("msrp://a:1/s;tcp")));
        encode_request(&req, None, Continuation::Complete, &mut out).unwrap();
        assert_eq!(
            &out[..],
            b"MSRP wxyz SEND\r\nTo-Path: msrp://b:2/t;tcp\r\nFrom-Path: msrp://a:1/s;tcp\r\n-------wxyz$\r\n"
        );
        out.clear();
        let resp = Response::new("wxyz".parse().unwrap(), StatusCode::OK)
            .with(Header::ToPath(path("msrp://a:1/s;tcp")))
            .with(Header::FromPath(path("msrp://b:2/t;tcp")));
        encode_response(&resp, &mut out);
        assert_eq!(
            &out[..],
            b"MSRP wxyz 200 OK\r\nTo-Path: msrp://a:1/s;tcp\r\nFrom-Path: msrp://b:2/t;tcp\r\n-------wxyz$\r\n"
        );
    }

    #[test]
    fn refuses_a_body_holding_its_own_end_line() {
        let mut out = BytesMut::new();
        let body = b"x\r\n-------abcd$\r\ny";
        assert_eq!(
            encode_request(&send("abcd"), Some(body), Continuation::Complete, &mut out),
            Err(EncodeError::EndLineInBody("abcd".parse().unwrap()))
        );
        assert!(!body_is_safe(b"-------abcd+", &"abcd".parse().unwrap()));
        // Another transaction's end-line is harmless.
        assert!(body_is_safe(body, &"abce".parse().unwrap()));
        let tid = safe_tid_for(body);
        assert!(body_is_safe(body, &tid));
    }

    #[test]
    fn request_without_paths_is_refused() {
        let req = Request::new("abcd".parse().unwrap(), Method::Send);
        assert_eq!(
            encode_request(&req, None, Continuation::Complete, &mut BytesMut::new()),
            Err(EncodeError::MissingPath)
        );
    }
}
