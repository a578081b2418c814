//! `Status: namespace SP status-code [SP comment]` (RFC 4975 §9), carried by REPORTs.
//! The namespace is `000` for MSRP status codes.

use std::fmt;

use bytestring::ByteString;

use super::HeaderError;
use crate::message::StatusCode;
use crate::syntax::is_utf8text;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Three digits; `0` (printed `000`) for MSRP codes, the only namespace defined.
    pub namespace: u16,
    pub code: StatusCode,
    pub comment: Option<ByteString>,
}

impl Status {
    /// `000 <code> <reason phrase>`.
    pub fn new(code: StatusCode) -> Self {
        Status { namespace: 0, code, comment: code.reason().map(ByteString::from_static) }
    }

    pub fn parse(value: &ByteString) -> Result<Self, HeaderError> {
        let bad = |why| HeaderError::new("Status", why);
        let b = value.as_bytes();
        let three = |s: &[u8]| s.len() == 3 && s.iter().all(u8::is_ascii_digit);
        if b.len() < 7 || !three(&b[..3]) || b[3] != b' ' || !three(&b[4..7]) {
            return Err(bad("expected 'NNN NNN [comment]'"));
        }
        let namespace = value[..3].parse().map_err(|_| bad("bad namespace"))?;
        let code = StatusCode(value[4..7].parse().map_err(|_| bad("bad code"))?);
        let comment = match &b[7..] {
            [] => None,
            [b' ', ..] if is_utf8text(&value[8..]) => Some(value.slice_ref(&value[8..])),
            _ => return Err(bad("bad comment")),
        };
        Ok(Status { namespace, code, comment })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {:03}", self.namespace, self.code.0)?;
        if let Some(c) = &self.comment {
            write!(f, " {}", &**c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Status, HeaderError> {
        Status::parse(&ByteString::from(s))
    }

    #[test]
    fn parse_print() {
        let s = p("000 200 OK").unwrap();
        assert_eq!((s.namespace, s.code, s.comment.as_deref()), (0, StatusCode::OK, Some("OK")));
        assert_eq!(s.to_string(), "000 200 OK");
        let s = p("000 408").unwrap();
        assert_eq!(s.comment, None);
        assert_eq!(s.to_string(), "000 408");
        assert_eq!(Status::new(StatusCode::REQUEST_TIMEOUT).to_string(), "000 408 Request Timeout");
    }

    #[test]
    fn rejects_malformed() {
        for s in ["200 OK", "000 20 OK", "000 2000", "00 200", "000-200", "000 200X", "abc 200"] {
            assert!(p(s).is_err(), "{s} accepted");
        }
    }
}
