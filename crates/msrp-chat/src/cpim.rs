//! CPIM messages (RFC 3862 §3): message headers, a blank line, the encapsulated MIME headers
//! (Content-Type …), a blank line, the body.
//!
//! ```text
//! From: Alice <im:alice@example.com>
//! To: Bob <im:bob@example.com>
//! DateTime: 2000-12-13T13:40:00-08:00
//!
//! Content-Type: text/plain
//!
//! Hello
//! ```
//!
//! The chat server reads From (to check it against the sender's identity, RFC 7701), To (a
//! private message names one participant), DateTime (kept or added) and the inner
//! Content-Type, and rebuilds messages for the room. Bodies are bytes: never assumed UTF-8.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

/// Most header lines (message and MIME together) accepted in one CPIM envelope.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CpimError {
    #[error("no blank line after the CPIM message headers")]
    NoMessageHeaderEnd,
    #[error("no blank line after the encapsulated MIME headers")]
    NoContentHeaderEnd,
    #[error("header line without a colon: {0:?}")]
    BadHeader(String),
    #[error("header block is not UTF-8")]
    NotUtf8,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("bad address in {0}: expected [name] <uri>")]
    BadAddress(&'static str),
    #[error("missing {0} header")]
    Missing(&'static str),
}

/// `[Formal-name] <URI>` (RFC 3862 §3.3.1, §3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The display name, unquoted.
    pub name: Option<String>,
    pub uri: String,
}

impl Address {
    pub fn new(name: Option<&str>, uri: &str) -> Address {
        Address { name: name.map(str::to_owned), uri: uri.to_owned() }
    }

    fn parse(header: &'static str, value: &str) -> Result<Address, CpimError> {
        let bad = || CpimError::BadAddress(header);
        let open = value.rfind('<').ok_or_else(bad)?;
        let close = value[open..].find('>').map(|i| open + i).ok_or_else(bad)?;
        if !value[close + 1..].trim().is_empty() {
            return Err(bad());
        }
        let uri = value[open + 1..close].trim();
        if uri.is_empty() || uri.contains(char::is_whitespace) {
            return Err(bad());
        }
        let name = value[..open].trim();
        let name = if name.is_empty() {
            None
        } else if let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(unescape(inner))
        } else {
            Some(name.to_owned())
        };
        Ok(Address { name, uri: uri.to_owned() })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            f.write_str("\"")?;
            for c in name.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// A parsed CPIM message: headers in order (names as written), then the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpim {
    /// Message headers (`From`, `To`, `DateTime`, `NS`, `Require`, extensions …).
    pub headers: Vec<(String, String)>,
    /// Encapsulated MIME headers (`Content-Type`, `Content-ID` …).
    pub content: Vec<(String, String)>,
    pub body: Bytes,
}

/// Splits `data` at the first empty line (CRLF CRLF, or bare LF LF from lenient peers);
/// returns the header block and what follows the blank line.
fn split_block(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if data.starts_with(b"\r\n") {
        return Some((&[], &data[2..]));
    }
    if data.starts_with(b"\n") {
        return Some((&[], &data[1..]));
    }
    let crlf = data.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = data.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let (end, next) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&data[..end], &data[next..]))
}

fn parse_headers(block: &[u8], count: &mut usize) -> Result<Vec<(String, String)>, CpimError> {
    let text = std::str::from_utf8(block).map_err(|_| CpimError::NotUtf8)?;
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous header.
            let Some(last) = out.last_mut() else { return Err(CpimError::BadHeader(line.to_owned())) };
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        *count += 1;
        if *count > MAX_HEADERS {
            return Err(CpimError::TooManyHeaders);
        }
        let (name, value) = line.split_once(':').ok_or_else(|| CpimError::BadHeader(line.to_owned()))?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(CpimError::BadHeader(line.to_owned()));
        }
        out.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

impl Cpim {
    /// Parses a `message/cpim` body.
    pub fn parse(data: &Bytes) -> Result<Cpim, CpimError> {
        let (message, rest) = split_block(data).ok_or(CpimError::NoMessageHeaderEnd)?;
        let (content, body) = split_block(rest).ok_or(CpimError::NoContentHeaderEnd)?;
        let mut count = 0;
        let headers = parse_headers(message, &mut count)?;
        let content = parse_headers(content, &mut count)?;
        let body = data.slice_ref(body);
        Ok(Cpim { headers, content, body })
    }

    /// A message with the given addresses, inner content type and body.
    pub fn new(from: &Address, to: &[Address], content_type: &str, body: Bytes) -> Cpim {
        let mut headers = vec![("From".to_owned(), from.to_string())];
        headers.extend(to.iter().map(|a| ("To".to_owned(), a.to_string())));
        Cpim { headers, content: vec![("Content-Type".to_owned(), content_type.to_owned())], body }
    }

    fn get<'a>(list: &'a [(String, String)], name: &str) -> impl Iterator<Item = &'a str> {
        list.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The one `From` (RFC 3862 §3.3.1 requires it).
    pub fn from(&self) -> Result<Address, CpimError> {
        let v = Self::get(&self.headers, "From").next().ok_or(CpimError::Missing("From"))?;
        Address::parse("From", v)
    }

    /// Every `To` (RFC 3862 §3.3.2: one or more).
    pub fn to(&self) -> Result<Vec<Address>, CpimError> {
        Self::get(&self.headers, "To").map(|v| Address::parse("To", v)).collect()
    }

    pub fn datetime(&self) -> Option<&str> {
        Self::get(&self.headers, "DateTime").next()
    }

    /// The encapsulated content type, e.g. `text/plain` or `application/im-iscomposing+xml`.
    pub fn content_type(&self) -> Option<&str> {
        Self::get(&self.content, "Content-Type").next()
    }

    /// Sets (or adds) a message header, replacing every earlier one of that name.
    pub fn set(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }

    /// The message as bytes, CRLF line ends.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.content {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "From: MR SANDERS <im:piglet@100akerwood.com>\r\n\
To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n\
DateTime: 2000-12-13T13:40:00-08:00\r\n\
Subject: the weather will be fine today\r\n\
\r\n\
Content-type: text/plain\r\n\
Content-ID: <1234567890@foo.com>\r\n\
\r\n\
Here is the text of my message.";

    #[test]
    fn parses_the_rfc_3862_shape() {
        let m = Cpim::parse(&Bytes::from_static(EXAMPLE.as_bytes())).unwrap();
        assert_eq!(m.from().unwrap(), Address::new(Some("MR SANDERS"), "im:piglet@100akerwood.com"));
        assert_eq!(m.to().unwrap(), vec![Address::new(Some("Depressed Donkey"), "im:eeyore@100akerwood.com")]);
        assert_eq!(m.datetime(), Some("2000-12-13T13:40:00-08:00"));
        assert_eq!(m.content_type(), Some("text/plain"), "header names are case-insensitive");
        assert_eq!(&m.body[..], b"Here is the text of my message.");
    }

    #[test]
    fn round_trips_and_keeps_binary_bodies() {
        let body = Bytes::from(vec![0u8, 0xff, b'\r', b'\n', b'\r', b'\n', 7]);
        let m = Cpim::new(
            &Address::new(Some("Al \"the\" ice"), "sip:alice@example.com"),
            &[Address::new(None, "sip:room@chat.example.com")],
            "application/octet-stream",
            body.clone(),
        );
        let again = Cpim::parse(&Bytes::from(m.encode())).unwrap();
        assert_eq!(again, m);
        assert_eq!(again.from().unwrap().name.as_deref(), Some("Al \"the\" ice"));
        assert_eq!(again.body, body, "blank lines inside the body are body");
    }

    #[test]
    fn empty_content_headers_and_lf_only_peers() {
        let m = Cpim::parse(&Bytes::from_static(b"From: <sip:a@x>\nTo: <sip:b@x>\n\n\nhi")).unwrap();
        assert_eq!(m.content_type(), None);
        assert_eq!(&m.body[..], b"hi");
        let folded = Cpim::parse(&Bytes::from_static(b"From: A\r\n <sip:a@x>\r\n\r\n\r\n")).unwrap();
        assert_eq!(folded.from().unwrap().uri, "sip:a@x");
    }

    #[test]
    fn private_message_has_one_to_and_several_are_kept() {
        let m = Cpim::parse(&Bytes::from_static(
            b"From: <sip:a@x>\r\nTo: <sip:b@x>\r\nTo: \"C\" <sip:c@x>\r\n\r\nContent-Type: text/plain\r\n\r\nx",
        ))
        .unwrap();
        assert_eq!(m.to().unwrap().len(), 2);
    }

    #[test]
    fn malformed_messages_are_refused() {
        let p = |s: &'static [u8]| Cpim::parse(&Bytes::from_static(s));
        assert_eq!(p(b"From: <sip:a@x>\r\n"), Err(CpimError::NoMessageHeaderEnd));
        assert_eq!(p(b"From: <sip:a@x>\r\n\r\nContent-Type: text/plain\r\n"), Err(CpimError::NoContentHeaderEnd));
        assert!(matches!(p(b"From <sip:a@x>\r\n\r\n\r\n"), Err(CpimError::BadHeader(_))));
        assert!(matches!(p(b"From: <sip:a@x>\r\n\xff: x\r\n\r\n\r\n"), Err(CpimError::NotUtf8)));
        let m = p(b"From: alice\r\n\r\n\r\n").unwrap();
        assert_eq!(m.from(), Err(CpimError::BadAddress("From")));
        let m = p(b"To: <sip:b@x>\r\n\r\n\r\n").unwrap();
        assert_eq!(m.from(), Err(CpimError::Missing("From")));
        let many: Vec<u8> = (0..65).flat_map(|i| format!("X-{i}: v\r\n").into_bytes()).chain(*b"\r\n\r\n").collect();
        assert_eq!(Cpim::parse(&Bytes::from(many)), Err(CpimError::TooManyHeaders));
    }

    #[test]
    fn set_replaces_headers() {
        let mut m = Cpim::parse(&Bytes::from_static(EXAMPLE.as_bytes())).unwrap();
        m.set("datetime", "2026-11-25T20:00:00Z");
        assert_eq!(m.datetime(), Some("2026-11-25T20:00:00Z"));
        assert_eq!(m.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("DateTime")).count(), 1);
    }
}
