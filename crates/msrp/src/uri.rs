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

use crate::syntax::table;

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

/// A parsed `msrp://` or `msrps://` URI: its text and where its parts are.
#[derive(Clone)]
pub struct Uri {
    text: ByteString,
    parts: Parts,
}

impl Uri {
    /// Parses a URI held in a shared buffer without copying it.
    pub fn parse(text: ByteString) -> Result<Self, UriError> {
        let (parts, len) = Parts::parse(&text)?;
        if len != text.len() {
            return Err(UriError("junk after the URI"));
        }
        Ok(parts.into_uri(text))
    }

    /// Parses the URI at the start of `s` (a slice of `text`), up to the end or the first
    /// space or tab: how a path header's URIs are taken without splitting it first.
    pub(crate) fn parse_prefix(text: &ByteString, s: &str) -> Result<(Self, usize), UriError> {
        let (parts, len) = Parts::parse(s)?;
        Ok((parts.into_uri(text.slice_ref(&s[..len])), len))
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
        self.parts.secure
    }

    /// The userinfo, still percent-encoded.
    pub fn user(&self) -> Option<&str> {
        self.parts.user.as_ref().map(|r| self.slice(r))
    }

    /// The host as written (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        self.slice(&self.parts.host)
    }

    /// The host without IPv6 brackets, ready for address parsing or DNS.
    pub fn host_unbracketed(&self) -> &str {
        let h = self.host();
        if self.parts.host_kind == HostKind::Ipv6 { &h[1..h.len() - 1] } else { h }
    }

    pub fn host_kind(&self) -> HostKind {
        self.parts.host_kind
    }

    pub fn port(&self) -> Option<u16> {
        self.parts.port
    }

    pub fn session_id(&self) -> Option<&str> {
        self.parts.session.as_ref().map(|r| self.slice(r))
    }

    /// The transport token (`tcp` in practice).
    pub fn transport(&self) -> &str {
        self.slice(&self.parts.transport)
    }

    /// URI parameters after the transport, as `(name, value)` pairs.
    pub fn params(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.slice(&self.parts.params)
            .split(';')
            .skip(1)
            .map(|p| p.split_once('=').map_or((p, None), |(n, v)| (n, Some(v))))
    }

    /// The same URI with another session-id (or none, as in an AUTH To-Path).
    pub fn with_session_id(&self, session_id: Option<&str>) -> Result<Self, UriError> {
        let mut s = String::with_capacity(self.text.len() + 24);
        let before =
            self.parts.session.as_ref().map_or(self.parts.transport.start as usize - 1, |r| r.start as usize - 1);
        s.push_str(&self.text[..before]);
        if let Some(id) = session_id {
            s.push('/');
            s.push_str(id);
        }
        s.push_str(&self.text[self.parts.transport.start as usize - 1..]);
        Uri::parse(ByteString::from(s))
    }

    /// Equal as RFC 4975 §6.1 defines it, but ignoring the session-id: "is this URI one of my
    /// addresses", the question a relay asks of the first To-Path entry.
    pub fn same_authority(&self, other: &Uri) -> bool {
        self.parts.secure == other.parts.secure
            && self.host().eq_ignore_ascii_case(other.host())
            && self.parts.port == other.parts.port
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
        self.parts.secure.hash(state);
        for b in self.host().bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        self.parts.port.hash(state);
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

/// Every `%` starts a `pct-encoded` triplet.
fn valid_pct(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'%')
        .all(|(i, _)| i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
}

/// Decodes `%XX` escapes of a userinfo (invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Bytes, not `&s[..]`: a `%` before a multi-byte character must not split it.
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
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

/// Offsets of a URI's parts, found in one forward pass over its bytes (this runs for every
/// URI of every To-Path and From-Path on the relay's hot path).
#[derive(Clone)]
struct Parts {
    secure: bool,
    user: Option<Range<u16>>,
    host: Range<u16>,
    host_kind: HostKind,
    port: Option<u16>,
    session: Option<Range<u16>>,
    transport: Range<u16>,
    params: Range<u16>,
}

static USERINFO_CHARS: [bool; 256] = table(b"-._~%!$&'()*+,;=:");
static HOST_CHARS: [bool; 256] = table(b"-._");
static SESSION_CHARS: [bool; 256] = table(b"-._~+=/");
static ALNUM: [bool; 256] = table(b"");
static DIGITS: [bool; 256] = {
    let mut t = [false; 256];
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = true;
        d += 1;
    }
    t
};
static PARAM_CHARS: [bool; 256] = table(b"-.!%*_+`'~");

impl Parts {
    fn parse(s: &str) -> Result<(Parts, usize), UriError> {
        let b = s.as_bytes();
        let (secure, after_scheme) = if b.len() >= 8 && b[..8].eq_ignore_ascii_case(b"msrps://") {
            (true, 8)
        } else if b.len() >= 7 && b[..7].eq_ignore_ascii_case(b"msrp://") {
            (false, 7)
        } else {
            return Err(UriError("scheme is not msrp:// or msrps://"));
        };
        let r = |a: usize, b: usize| a as u16..b as u16;
        // Userinfo is whatever userinfo characters run up to an '@'; otherwise there is none.
        // Most URIs have none: scan host characters first and take the userinfo path only
        // when the run stops at a character a host cannot hold.
        let host_run = span(b, after_scheme, &HOST_CHARS);
        let user_end = match b.get(host_run) {
            None | Some(b'/' | b'[' | b' ' | b'\t') => host_run,
            // `;` may be userinfo (`a;b@host`) or start the transport: an '@' before the URI
            // ends tells (transports and parameters cannot hold one).
            Some(b';') => {
                let rest = b[host_run..].iter().take_while(|&&c| c != b' ' && c != b'\t');
                if rest.clone().any(|&c| c == b'@') { span(b, after_scheme, &USERINFO_CHARS) } else { host_run }
            }
            // `host:port` unless the digits run into something a port cannot be followed by
            // (`user:1234@host`).
            Some(b':') => {
                let digits_end = span(b, host_run + 1, &DIGITS);
                match b.get(digits_end) {
                    None | Some(b'/' | b';' | b' ' | b'\t') if digits_end > host_run + 1 => host_run,
                    _ => span(b, after_scheme, &USERINFO_CHARS),
                }
            }
            _ => span(b, after_scheme, &USERINFO_CHARS),
        };
        let (user, host_start) = if b.get(user_end) == Some(&b'@') {
            let user = &s[after_scheme..user_end];
            if user.is_empty() || !valid_pct(user) {
                return Err(UriError("bad userinfo"));
            }
            (Some(r(after_scheme, user_end)), user_end + 1)
        } else {
            (None, after_scheme)
        };
        let (host_end, host_kind) = if b.get(host_start) == Some(&b'[') {
            let close = memchr::memchr(b']', &b[host_start..]).ok_or(UriError("unterminated IPv6 literal"))?;
            if s[host_start + 1..host_start + close].parse::<std::net::Ipv6Addr>().is_err() {
                return Err(UriError("bad IPv6 literal"));
            }
            (host_start + close + 1, HostKind::Ipv6)
        } else {
            let end = if host_start == after_scheme { host_run } else { span(b, host_start, &HOST_CHARS) };
            if end == host_start {
                return Err(UriError("bad host"));
            }
            let host = &s[host_start..end];
            let numeric = host.bytes().all(|c| c.is_ascii_digit() || c == b'.');
            let kind =
                if numeric && host.parse::<std::net::Ipv4Addr>().is_ok() { HostKind::Ipv4 } else { HostKind::Name };
            (end, kind)
        };
        let host = r(host_start, host_end);
        let mut pos = host_end;
        let mut port = None;
        if b.get(pos) == Some(&b':') {
            let end = pos + 1 + b[pos + 1..].iter().take(6).take_while(|c| c.is_ascii_digit()).count();
            let value = b[pos + 1..end].iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            if end == pos + 1 || end - pos > 6 || value > u32::from(u16::MAX) {
                return Err(UriError("bad port"));
            }
            port = Some(value as u16);
            pos = end;
        }
        let mut session = None;
        if b.get(pos) == Some(&b'/') {
            let end = span(b, pos + 1, &SESSION_CHARS);
            if end == pos + 1 {
                return Err(UriError("bad session-id"));
            }
            session = Some(r(pos + 1, end));
            pos = end;
        }
        // The transport is mandatory (RFC 4975 §9: `";" transport`).
        if b.get(pos) != Some(&b';') {
            return Err(UriError(if pos == b.len() { "missing ;transport" } else { "bad character" }));
        }
        let end = span(b, pos + 1, &ALNUM);
        if end == pos + 1 {
            return Err(UriError("bad transport"));
        }
        let transport = r(pos + 1, end);
        pos = end;
        // `*( ";" URI-parameter )`, `URI-parameter = token ["=" token]`.
        let params_start = pos;
        while b.get(pos) == Some(&b';') {
            let name_end = span(b, pos + 1, &PARAM_CHARS);
            if name_end == pos + 1 {
                return Err(UriError("bad URI parameter"));
            }
            pos = name_end;
            if b.get(pos) == Some(&b'=') {
                let value_end = span(b, pos + 1, &PARAM_CHARS);
                if value_end == pos + 1 {
                    return Err(UriError("bad URI parameter"));
                }
                pos = value_end;
            }
        }
        if pos < b.len() && !matches!(b[pos], b' ' | b'\t') {
            return Err(UriError("junk after transport"));
        }
        if pos > u16::MAX as usize {
            return Err(UriError("longer than 65535 bytes"));
        }
        let params = r(params_start, pos);
        Ok((Parts { secure, user, host, host_kind, port, session, transport, params }, pos))
    }

    fn into_uri(self, text: ByteString) -> Uri {
        Uri { text, parts: self }
    }
}

/// The index of the first byte at or after `from` that is not in `set`.
#[inline]
fn span(b: &[u8], mut from: usize, set: &[bool; 256]) -> usize {
    while from < b.len() && set[b[from] as usize] {
        from += 1;
    }
    from
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
        assert_eq!(percent_decode("%aé%"), "%aé%", "a % before a multi-byte character is kept");
        assert_eq!(x.host(), "Relay.Example.com");
        assert_eq!(x.host_kind(), HostKind::Name);
        assert_eq!(x.port(), Some(2855));
        assert_eq!(x.session_id(), Some("abc-12=+/x"));
        assert_eq!(x.transport(), "tcp");
        assert_eq!(x.params().collect::<Vec<_>>(), vec![("foo", Some("bar")), ("baz", None)]);
        assert_eq!(x.to_string(), "msrps://alice%40home@Relay.Example.com:2855/abc-12=+/x;tcp;foo=bar;baz");
    }

    #[test]
    fn userinfo_is_told_from_host_and_port() {
        let x = u("msrp://bob:1234@host:99/s;tcp");
        assert_eq!((x.user(), x.host(), x.port()), (Some("bob:1234"), "host", Some(99)));
        let y = u("msrp://host:99/s;tcp");
        assert_eq!((y.user(), y.host(), y.port()), (None, "host", Some(99)));
        let z = u("msrp://a;b@host;tcp");
        assert_eq!((z.user(), z.host()), (Some("a;b"), "host"));
        let w = u("msrp://u@[::1]:5/s;tcp");
        assert_eq!((w.user(), w.host()), (Some("u"), "[::1]"));
        assert!("msrp://host:99x/s;tcp".parse::<Uri>().is_err());
        let v = u("msrp://:;@0;tcp");
        assert_eq!((v.user(), v.host()), (Some(":;"), "0"));
        assert!("msrp://host:/s;tcp".parse::<Uri>().is_err());
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
