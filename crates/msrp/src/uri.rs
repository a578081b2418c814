//! MSRP URIs (RFC 4975 §6, grammar in §9):
//! `msrp[s]://[userinfo@]host[:port][/session-id];transport[;param[=value]]…`
//!
//! A [`Uri`] keeps the text it was parsed from (a zero-copy slice of the received head) plus
//! the offsets of its parts, so printing is a copy and comparison touches only what §6.1 asks.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;

use bytestring::ByteString;
use thiserror::Error;

use crate::syntax::is_token;

/// Why a string is not an MSRP URI.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid MSRP URI: {0}")]
pub struct UriError(pub(crate) &'static str);

/// The host of an MSRP URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A DNS name (or anything that is not an IP literal).
    Name,
    /// A dotted-quad IPv4 address.
    Ipv4,
    /// A bracketed IPv6 address (`[::1]`).
    Ipv6,
}

/// A parsed `msrp://` or `msrps://` URI.
#[derive(Clone)]
pub struct Uri {
    text: ByteString,
    secure: bool,
    user: Option<Range<u16>>,
    host: Range<u16>,
    host_kind: HostKind,
    port: Option<u16>,
    session: Option<Range<u16>>,
    transport: Range<u16>,
    params: Range<u16>,
}

impl Uri {
    /// Parses a URI held in a shared buffer without copying it.
    pub fn parse(text: ByteString) -> Result<Self, UriError> {
        if text.len() > u16::MAX as usize {
            return Err(UriError("longer than 65535 bytes"));
        }
        let s: &str = &text;
        let (secure, after_scheme) = if s.len() >= 8 && s[..8].eq_ignore_ascii_case("msrps://") {
            (true, 8)
        } else if s.len() >= 7 && s[..7].eq_ignore_ascii_case("msrp://") {
            (false, 7)
        } else {
            return Err(UriError("scheme is not msrp:// or msrps://"));
        };
        let r = |a: usize, b: usize| a as u16..b as u16;
        let rest = &s[after_scheme..];
        // Session-ids, transports and URI parameters cannot hold '@', so any '@' ends userinfo.
        let (user, host_start) = match rest.find('@') {
            Some(at) => {
                let user = &rest[..at];
                if user.is_empty() || !user.bytes().all(is_userinfo_char) || !valid_pct(user) {
                    return Err(UriError("bad userinfo"));
                }
                (Some(r(after_scheme, after_scheme + at)), after_scheme + at + 1)
            }
            None => (None, after_scheme),
        };
        let hs = &s[host_start..];
        let (host_len, host_kind) = if hs.starts_with('[') {
            let close = hs.find(']').ok_or(UriError("unterminated IPv6 literal"))?;
            let lit = &hs[1..close];
            if lit.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(UriError("bad IPv6 literal"));
            }
            (close + 1, HostKind::Ipv6)
        } else {
            let len = hs.find([':', '/', ';']).unwrap_or(hs.len());
            let host = &hs[..len];
            if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
                return Err(UriError("bad host"));
            }
            let kind = if host.parse::<std::net::Ipv4Addr>().is_ok() { HostKind::Ipv4 } else { HostKind::Name };
            (len, kind)
        };
        let host = r(host_start, host_start + host_len);
        let mut pos = host_start + host_len;
        let mut port = None;
        if s[pos..].starts_with(':') {
            let ps = &s[pos + 1..];
            let len = ps.find(['/', ';']).unwrap_or(ps.len());
            let digits = &ps[..len];
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(UriError("bad port"));
            }
            port = Some(digits.parse::<u16>().map_err(|_| UriError("port out of range"))?);
            pos += 1 + len;
        }
        let mut session = None;
        if s[pos..].starts_with('/') {
            let ss = &s[pos + 1..];
            let len = ss.find(';').unwrap_or(ss.len());
            if len == 0 || !ss[..len].bytes().all(is_session_char) {
                return Err(UriError("bad session-id"));
            }
            session = Some(r(pos + 1, pos + 1 + len));
            pos += 1 + len;
        }
        // The transport is mandatory (RFC 4975 §9: `";" transport`).
        let ts = s[pos..].strip_prefix(';').ok_or(UriError("missing ;transport"))?;
        let tlen = ts.find(';').unwrap_or(ts.len());
        if tlen == 0 || !ts[..tlen].bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(UriError("bad transport"));
        }
        let transport = r(pos + 1, pos + 1 + tlen);
        pos += 1 + tlen;
        // `*( ";" URI-parameter )`, `URI-parameter = token ["=" token]`.
        for param in s[pos..].split(';').skip(1) {
            let (name, value) = param.split_once('=').map_or((param, None), |(n, v)| (n, Some(v)));
            if !is_token(name) || value.is_some_and(|v| !is_token(v)) {
                return Err(UriError("bad URI parameter"));
            }
        }
        if !s[pos..].is_empty() && !s[pos..].starts_with(';') {
            return Err(UriError("junk after transport"));
        }
        let params = r(pos, s.len());
        Ok(Uri { text, secure, user, host, host_kind, port, session, transport, params })
    }

    /// Builds `msrp[s]://host[:port][/session-id];tcp`. `host` may be an IPv6 address with or
    /// without brackets.
    pub fn new(secure: bool, host: &str, port: Option<u16>, session_id: Option<&str>) -> Result<Self, UriError> {
        use std::fmt::Write;
        let mut s = String::with_capacity(64);
        s.push_str(if secure { "msrps://" } else { "msrp://" });
        if host.contains(':') && !host.starts_with('[') {
            let _ = write!(s, "[{host}]");
        } else {
            s.push_str(host);
        }
        if let Some(p) = port {
            let _ = write!(s, ":{p}");
        }
        if let Some(id) = session_id {
            s.push('/');
            s.push_str(id);
        }
        s.push_str(";tcp");
        Uri::parse(ByteString::from(s))
    }

    fn slice(&self, r: &Range<u16>) -> &str {
        &self.text[r.start as usize..r.end as usize]
    }

    /// The URI exactly as received or built.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The shared buffer holding the URI text.
    pub fn as_byte_string(&self) -> &ByteString {
        &self.text
    }

    /// True for `msrps` (TLS).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The userinfo, still percent-encoded.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|r| self.slice(r))
    }

    /// The host as written (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        self.slice(&self.host)
    }

    /// The host without IPv6 brackets, ready for address parsing or DNS.
    pub fn host_unbracketed(&self) -> &str {
        let h = self.host();
        if self.host_kind == HostKind::Ipv6 { &h[1..h.len() - 1] } else { h }
    }

    pub fn host_kind(&self) -> HostKind {
        self.host_kind
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|r| self.slice(r))
    }

    /// The transport token (`tcp` in practice).
    pub fn transport(&self) -> &str {
        self.slice(&self.transport)
    }

    /// URI parameters after the transport, as `(name, value)` pairs.
    pub fn params(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.slice(&self.params).split(';').skip(1).map(|p| p.split_once('=').map_or((p, None), |(n, v)| (n, Some(v))))
    }

    /// The same URI with another session-id (or none, as in an AUTH To-Path).
    pub fn with_session_id(&self, session_id: Option<&str>) -> Result<Self, UriError> {
        let mut s = String::with_capacity(self.text.len() + 24);
        let before = self.session.as_ref().map_or(self.transport.start as usize - 1, |r| r.start as usize - 1);
        s.push_str(&self.text[..before]);
        if let Some(id) = session_id {
            s.push('/');
            s.push_str(id);
        }
        s.push_str(&self.text[self.transport.start as usize - 1..]);
        Uri::parse(ByteString::from(s))
    }

    /// Equal as RFC 4975 §6.1 defines it, but ignoring the session-id: "is this URI one of my
    /// addresses", the question a relay asks of the first To-Path entry.
    pub fn same_authority(&self, other: &Uri) -> bool {
        self.secure == other.secure
            && self.host().eq_ignore_ascii_case(other.host())
            && self.port == other.port
            && self.transport().eq_ignore_ascii_case(other.transport())
    }
}

/// RFC 4975 §6.1: scheme, host (case-insensitive), port (present in both and equal, or absent
/// in both), session-id (case-sensitive) and transport (case-insensitive) must match;
/// userinfo and URI parameters are ignored.
impl PartialEq for Uri {
    fn eq(&self, other: &Uri) -> bool {
        self.same_authority(other) && self.session_id() == other.session_id()
    }
}

impl Eq for Uri {}

impl Hash for Uri {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.secure.hash(state);
        for b in self.host().bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        self.port.hash(state);
        self.session_id().hash(state);
        for b in self.transport().bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uri({})", &*self.text)
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        Uri::parse(ByteString::from(s))
    }
}

/// RFC 3986 `userinfo = *( unreserved / pct-encoded / sub-delims / ":" )`.
fn is_userinfo_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
        )
}

/// Every `%` starts a `pct-encoded` triplet.
fn valid_pct(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'%')
        .all(|(i, _)| i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
}

/// `session-id = 1*( unreserved / "+" / "=" / "/" )` (RFC 4975 §9).
fn is_session_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'=' | b'/')
}

/// Decodes `%XX` escapes of a userinfo (invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Uri {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_all_parts() {
        let x = u("msrps://alice%40home@Relay.Example.com:2855/abc-12=+/x;tcp;foo=bar;baz");
        assert!(x.is_secure());
        assert_eq!(x.user(), Some("alice%40home"));
        assert_eq!(percent_decode(x.user().unwrap()), "alice@home");
        assert_eq!(x.host(), "Relay.Example.com");
        assert_eq!(x.host_kind(), HostKind::Name);
        assert_eq!(x.port(), Some(2855));
        assert_eq!(x.session_id(), Some("abc-12=+/x"));
        assert_eq!(x.transport(), "tcp");
        assert_eq!(x.params().collect::<Vec<_>>(), vec![("foo", Some("bar")), ("baz", None)]);
        assert_eq!(x.to_string(), "msrps://alice%40home@Relay.Example.com:2855/abc-12=+/x;tcp;foo=bar;baz");
    }

    #[test]
    fn ip_hosts_and_optional_parts() {
        let x = u("msrp://192.0.2.1:7777/s1;tcp");
        assert_eq!(x.host_kind(), HostKind::Ipv4);
        let y = u("msrp://[2001:db8::1]:7777/s1;tcp");
        assert_eq!(y.host_kind(), HostKind::Ipv6);
        assert_eq!(y.host(), "[2001:db8::1]");
        assert_eq!(y.host_unbracketed(), "2001:db8::1");
        let relay = u("msrps://relay.example.com;tcp");
        assert_eq!(relay.port(), None);
        assert_eq!(relay.session_id(), None);
        assert_eq!(relay.user(), None);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "http://x/y;tcp",
            "msrp://x:99999/s;tcp",
            "msrp://x:/s;tcp",
            "msrp://x/s",
            "msrp://x/;tcp",
            "msrp://x/s;",
            "msrp://[zz::1]/s;tcp",
            "msrp://[::1/s;tcp",
            "msrp:///s;tcp",
            "msrp://ho st/s;tcp",
            "msrp://x/s;tcp;=v",
            "msrp://u%4@x/s;tcp",
            "msrp://x/s s;tcp",
            "msrp://x/s;t-cp",
        ] {
            assert!(bad.parse::<Uri>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn comparison_follows_rfc4975_6_1() {
        // Host and scheme and transport case-insensitive; userinfo and params ignored.
        assert_eq!(u("MSRP://bob@EXAMPLE.com:1/s;TCP;x=y"), u("msrp://example.COM:1/s;tcp"));
        // Session-id is case-sensitive.
        assert_ne!(u("msrp://a:1/S;tcp"), u("msrp://a:1/s;tcp"));
        // An explicit port never equals an absent one.
        assert_ne!(u("msrp://a:2855/s;tcp"), u("msrp://a/s;tcp"));
        assert_ne!(u("msrp://a:1/s;tcp"), u("msrp://a:2/s;tcp"));
        assert_ne!(u("msrps://a:1/s;tcp"), u("msrp://a:1/s;tcp"));
        assert_ne!(u("msrp://a:1/s;tcp"), u("msrp://a:1;tcp"));
        assert!(u("msrp://a:1/s;tcp").same_authority(&u("msrp://A:1/t;tcp")));
    }

    #[test]
    fn equal_uris_hash_equal() {
        use std::collections::hash_map::DefaultHasher;
        let h = |x: &Uri| {
            let mut s = DefaultHasher::new();
            x.hash(&mut s);
            s.finish()
        };
        assert_eq!(h(&u("msrp://u@A.b:1/s;TCP;p")), h(&u("msrp://a.B:1/s;tcp")));
    }

    #[test]
    fn builds_and_rewrites() {
        let x = Uri::new(true, "::1", Some(2855), Some("abc")).unwrap();
        assert_eq!(x.as_str(), "msrps://[::1]:2855/abc;tcp");
        let y = x.with_session_id(None).unwrap();
        assert_eq!(y.as_str(), "msrps://[::1]:2855;tcp");
        assert_eq!(y.with_session_id(Some("zz")).unwrap().as_str(), "msrps://[::1]:2855/zz;tcp");
        let z = u("msrp://h/s;tcp;a=b").with_session_id(Some("t")).unwrap();
        assert_eq!(z.as_str(), "msrp://h/t;tcp;a=b");
    }
}
