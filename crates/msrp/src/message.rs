//! Requests, responses and their parts (RFC 4975 §7, grammar in §9).

use std::fmt;

use bytestring::ByteString;

use crate::header::{Header, Headers};
use crate::syntax::is_ident;

/// `transact-id = ident`: 4–32 characters (RFC 4975 §9).
pub const MAX_TID_LEN: usize = 32;

/// Names one transaction; also forms the end-line `-------<tid><flag>`.
///
/// Stored inline (at most 32 ASCII bytes): every frame carries one and a relay makes one per
/// forwarded transaction, so it costs neither an allocation nor a reference count.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId {
    len: u8,
    bytes: [u8; MAX_TID_LEN],
}

impl TransactionId {
    pub fn parse(value: &str) -> Option<Self> {
        is_ident(value, MAX_TID_LEN).then(|| TransactionId::from_validated(value.as_bytes()))
    }

    /// For bytes already checked against the grammar (`ident`, at most 32 bytes).
    pub(crate) fn from_validated(value: &[u8]) -> Self {
        debug_assert!(value.len() <= MAX_TID_LEN && value.iter().all(|&b| crate::syntax::is_ident_char(b)));
        let mut bytes = [0; MAX_TID_LEN];
        let len = value.len().min(MAX_TID_LEN);
        bytes[..len].copy_from_slice(&value[..len]);
        TransactionId { len: len as u8, bytes }
    }

    /// A fresh id with more than 64 random bits (see [`crate::id`]).
    pub fn random() -> Self {
        TransactionId::from_validated(&crate::id::random_ident_bytes())
    }

    pub fn as_str(&self) -> &str {
        // Only ident characters (ASCII) are ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tid({})", self.as_str())
    }
}

impl std::str::FromStr for TransactionId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        TransactionId::parse(s).ok_or(())
    }
}

/// `method = 1*UPALPHA` (RFC 4975 §9), widened to the tokens clients send
/// (`FILE_OFFSET`; see `syntax::is_method`). Methods are case-sensitive: `send` is not SEND.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Send,
    Report,
    /// RFC 4976 §5.
    Auth,
    /// RFC 7701 (NICKNAME).
    Nickname,
    /// Any other method, as received.
    Other(ByteString),
}

impl Method {
    pub(crate) fn parse(s: &ByteString) -> Option<Method> {
        Some(match &**s {
            "SEND" => Method::Send,
            "REPORT" => Method::Report,
            "AUTH" => Method::Auth,
            "NICKNAME" => Method::Nickname,
            m if crate::syntax::is_method(m.as_bytes()) => Method::Other(s.clone()),
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Send => "SEND",
            Method::Report => "REPORT",
            Method::Auth => "AUTH",
            Method::Nickname => "NICKNAME",
            Method::Other(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A three-digit MSRP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

impl StatusCode {
    // Codes of the IANA MSRP status-code registry (RFC 4975 §10, RFC 4976, RFC 7701).
    pub const OK: StatusCode = StatusCode(200);
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// RFC 4976 §5.1.
    pub const UNAUTHORIZED: StatusCode = StatusCode(401);
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    /// RFC 7701: private message to an unknown recipient.
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// Only in REPORTs or as a local outcome, never on the wire as a response (RFC 4975 §7.3).
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    pub const MESSAGE_TOO_LARGE: StatusCode = StatusCode(413);
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    /// RFC 4976 §5.1: Expires out of bounds.
    pub const INTERVAL_OUT_OF_BOUNDS: StatusCode = StatusCode(423);
    /// RFC 7701.
    pub const BAD_NICKNAME: StatusCode = StatusCode(424);
    /// RFC 7701.
    pub const NICKNAME_IN_USE: StatusCode = StatusCode(425);
    /// RFC 7701.
    pub const PRIVATE_MESSAGES_NOT_SUPPORTED: StatusCode = StatusCode(428);
    pub const SESSION_DOES_NOT_EXIST: StatusCode = StatusCode(481);
    /// Not among RFC 4975's codes: a failure on the server's side (e.g. its user store is
    /// down), which a client that does not know it takes by its class (5xx: not its fault).
    pub const SERVER_ERROR: StatusCode = StatusCode(500);
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    pub const SESSION_ALREADY_BOUND: StatusCode = StatusCode(506);

    /// A reason phrase for a registered code. The comment after a code is free text
    /// (RFC 4975 §9 `comment`); RFC 4975 codes get the phrases its examples and peers use,
    /// RFC 7701 codes the registry's descriptions.
    pub fn reason(self) -> Option<&'static str> {
        Some(match self.0 {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Failure to resolve recipient's URI",
            408 => "Request Timeout",
            413 => "Message Too Large",
            415 => "Unsupported Media Type",
            423 => "Interval Out-of-Bounds",
            424 => "Malformed nickname",
            425 => "Nickname reserved or already in use",
            428 => "Private messages not supported",
            481 => "Session Does Not Exist",
            501 => "Not Implemented",
            506 => "Session Already Bound",
            _ => return None,
        })
    }

    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// The flag that ends a frame's end-line (RFC 4975 §9 `continuation-flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Continuation {
    /// `$`: the last chunk of the message.
    Complete,
    /// `+`: more chunks follow.
    More,
    /// `#`: the sender gave up on the message; what arrived so far is to be discarded.
    Abort,
}

impl Continuation {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'$' => Some(Continuation::Complete),
            b'+' => Some(Continuation::More),
            b'#' => Some(Continuation::Abort),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            Continuation::Complete => b'$',
            Continuation::More => b'+',
            Continuation::Abort => b'#',
        }
    }
}

/// A request's start line and headers (its body travels separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub tid: TransactionId,
    pub method: Method,
    pub headers: Headers,
}

/// A response's start line and headers. Responses carry no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub tid: TransactionId,
    pub status: StatusCode,
    /// The reason phrase as received (`comment` in RFC 4975 §9).
    pub comment: Option<ByteString>,
    pub headers: Headers,
}

/// The head of a frame: start line plus headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Request {
    pub fn new(tid: TransactionId, method: Method) -> Self {
        Request { tid, method, headers: Headers::new() }
    }

    /// Adds a header, replacing an earlier one of the same kind (builder style).
    pub fn with(mut self, header: Header) -> Self {
        self.headers.set(header);
        self
    }
}

impl Response {
    pub fn new(tid: TransactionId, status: StatusCode) -> Self {
        Response { tid, status, comment: status.reason().map(ByteString::from_static), headers: Headers::new() }
    }

    pub fn with(mut self, header: Header) -> Self {
        self.headers.set(header);
        self
    }
}

impl Message {
    pub fn tid(&self) -> &TransactionId {
        match self {
            Message::Request(r) => &r.tid,
            Message::Response(r) => &r.tid,
        }
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        for m in ["SEND", "REPORT", "AUTH", "NICKNAME", "FOO", "FILE_OFFSET", "X-PING2", "send"] {
            assert_eq!(Method::parse(&ByteString::from(m)).unwrap().as_str(), m);
        }
        assert!(matches!(Method::parse(&ByteString::from("send")), Some(Method::Other(_))), "case-sensitive");
        for bad in ["", "_X", "2XX", "A B", "A:B", "Ä"] {
            assert!(Method::parse(&ByteString::from(bad)).is_none(), "{bad}");
        }
        assert!(matches!(Method::parse(&ByteString::from("SEND")), Some(Method::Send)));
    }

    #[test]
    fn status_codes_print_three_digits() {
        assert_eq!(StatusCode::OK.to_string(), "200");
        assert_eq!(StatusCode(0).to_string(), "000");
        assert_eq!(StatusCode::SESSION_DOES_NOT_EXIST.reason(), Some("Session Does Not Exist"));
        assert_eq!(StatusCode(299).reason(), None);
        assert!(StatusCode::OK.is_success() && !StatusCode::FORBIDDEN.is_success());
    }

    #[test]
    fn continuation_flags() {
        for c in [Continuation::Complete, Continuation::More, Continuation::Abort] {
            assert_eq!(Continuation::from_byte(c.as_byte()), Some(c));
        }
        assert_eq!(Continuation::from_byte(b'x'), None);
    }

    #[test]
    fn tids() {
        assert!("abcd".parse::<TransactionId>().is_ok());
        assert!("abc".parse::<TransactionId>().is_err());
        assert!("a".repeat(33).parse::<TransactionId>().is_err());
        let t = TransactionId::random();
        assert!(t.as_str().parse::<TransactionId>().is_ok());
    }
}
