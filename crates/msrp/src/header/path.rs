//! `To-Path`, `From-Path` (RFC 4975 §9: `1*(SP MSRP-URI)` after the colon) and `Use-Path`
//! (RFC 4976 §5, same grammar): space-separated URI lists in hop order.

use std::fmt;

use bytestring::ByteString;
use std::sync::Arc;

use super::HeaderError;
use crate::uri::Uri;

/// An ordered list of one or more MSRP URIs.
///
/// Shared, not copied: a relay copies a From-Path into every REPORT and response, and the
/// decoder hands out the same parsed path for every frame of a session, so a clone is one
/// reference-count increment. Edits copy the (short) list first.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Path(Arc<[Uri]>);

impl Path {
    /// A path must name at least one hop.
    pub fn new(uris: Vec<Uri>) -> Option<Self> {
        (!uris.is_empty()).then(|| Path(uris.into()))
    }

    pub fn single(uri: Uri) -> Self {
        Path(Arc::new([uri]))
    }

    /// Parses `value`, a slice of `text`; the URIs share `text`'s buffer.
    pub(crate) fn parse(name: &'static str, text: &ByteString, value: &str) -> Result<Self, HeaderError> {
        let mut uris = Vec::with_capacity(2);
        let mut rest = value;
        loop {
            // `1*(SP MSRP-URI)`; tabs tolerated.
            rest = &rest[rest.bytes().take_while(|&b| b == b' ' || b == b'\t').count()..];
            if rest.is_empty() {
                break;
            }
            let (uri, len) = Uri::parse_prefix(text, rest).map_err(|e| HeaderError::new(name, e.0))?;
            uris.push(uri);
            rest = &rest[len..];
        }
        Path::new(uris).ok_or(HeaderError::new(name, "no URI"))
    }

    /// The next hop (To-Path) or the previous hop (From-Path).
    pub fn first(&self) -> &Uri {
        &self.0[0]
    }

    /// The far end (To-Path) or the originator (From-Path).
    pub fn last(&self) -> &Uri {
        &self.0[self.0.len() - 1]
    }

    pub fn uris(&self) -> &[Uri] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a path holds at least one URI. Provided for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes and returns the first hop, unless it is the only one (a relay consumes its own
    /// URI from a To-Path that still names a further hop).
    pub fn pop_front(&mut self) -> Option<Uri> {
        if self.0.len() < 2 {
            return None;
        }
        let first = self.0[0].clone();
        self.0 = self.0[1..].into();
        Some(first)
    }

    /// Prepends a hop (a relay adds its own URI to a From-Path).
    pub fn push_front(&mut self, uri: Uri) {
        self.0 = std::iter::once(uri).chain(self.0.iter().cloned()).collect();
    }

    /// Appends hops (a client concatenates Use-Paths when chaining relays).
    pub fn extend(&mut self, uris: impl IntoIterator<Item = Uri>) {
        self.0 = self.0.iter().cloned().chain(uris).collect();
    }

    /// The reverse order: the To-Path that answers a From-Path across several hops.
    pub fn reversed(&self) -> Path {
        Path(self.0.iter().rev().cloned().collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, uri) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(uri.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &'static str, value: &str) -> Result<Path, HeaderError> {
        let text = ByteString::from(value);
        Path::parse(name, &text, &text)
    }

    #[test]
    fn parse_print_round_trip() {
        let text = "msrps://relay.example.com:2855/r1;tcp msrp://10.0.0.1:7000/b;tcp";
        let p = parse("To-Path", text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.first().host(), "relay.example.com");
        assert_eq!(p.last().session_id(), Some("b"));
        assert_eq!(p.to_string(), text);
    }

    #[test]
    fn tolerates_extra_spaces_and_rejects_junk() {
        let p = parse("To-Path", "msrp://a/s;tcp   msrp://b/t;tcp").unwrap();
        assert_eq!(p.len(), 2);
        assert!(parse("To-Path", "").is_err());
        assert!(parse("To-Path", "msrp://a/s;tcp sip:bob@x").is_err());
    }

    #[test]
    fn relay_rewrites() {
        let mut to = parse("To-Path", "msrp://r/1;tcp msrp://b/2;tcp").unwrap();
        let me = to.pop_front().unwrap();
        assert_eq!(me.host(), "r");
        assert_eq!(to.pop_front(), None, "the last hop stays");
        let mut from = parse("From-Path", "msrp://a/0;tcp").unwrap();
        from.push_front(me);
        assert_eq!(from.to_string(), "msrp://r/1;tcp msrp://a/0;tcp");
        assert_eq!(from.reversed().to_string(), "msrp://a/0;tcp msrp://r/1;tcp");
    }
}
