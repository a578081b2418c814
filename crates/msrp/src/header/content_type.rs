//! `Content-Type: type "/" subtype *(";" parameter)` (RFC 4975 §9 via RFC 2045 §5.1).

use std::fmt;

use bytestring::ByteString;

use super::HeaderError;
use crate::syntax::{find_byte, is_mime_token, mime_params};

/// Kept as the received text plus offsets; parameters (rare in MSRP) are read on demand.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentType {
    raw: ByteString,
    slash: u16,
    end: u16,
}

impl ContentType {
    pub fn parse(value: &ByteString) -> Result<Self, HeaderError> {
        let (slash, end) = Self::check(value)?;
        Ok(ContentType { raw: value.clone(), slash, end })
    }

    /// Validates a value without keeping it (a relay forwards the text as received);
    /// returns where the `/` and the media type's end are.
    pub fn check(value: &str) -> Result<(u16, u16), HeaderError> {
        let bad = |why| HeaderError::new("Content-Type", why);
        let end = value.bytes().position(|b| matches!(b, b';' | b' ' | b'\t')).unwrap_or(value.len());
        let media = &value[..end];
        let slash = find_byte(media, b'/').ok_or(bad("expected type/subtype"))?;
        if !is_mime_token(&media[..slash]) || !is_mime_token(&media[slash + 1..]) {
            return Err(bad("expected type/subtype"));
        }
        if end != value.len() && mime_params(&value[end..]).is_none() {
            return Err(bad("bad parameter"));
        }
        if value.len() > u16::MAX as usize {
            return Err(bad("too long"));
        }
        Ok((slash as u16, end as u16))
    }

    /// `text/plain`, `message/cpim`, … as written.
    pub fn essence(&self) -> &str {
        &self.raw[..self.end as usize]
    }

    pub fn type_(&self) -> &str {
        &self.raw[..self.slash as usize]
    }

    pub fn subtype(&self) -> &str {
        &self.raw[self.slash as usize + 1..self.end as usize]
    }

    /// Case-insensitive comparison of `type/subtype` (RFC 2045 §5.1).
    pub fn is(&self, essence: &str) -> bool {
        self.essence().eq_ignore_ascii_case(essence)
    }

    /// A parameter's (unquoted) value; names are matched case-insensitively.
    pub fn param(&self, name: &str) -> Option<String> {
        let params = mime_params(&self.raw[self.end as usize..])?;
        params.into_iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentType({})", &*self.raw)
    }
}

impl std::str::FromStr for ContentType {
    type Err = HeaderError;
    fn from_str(s: &str) -> Result<Self, HeaderError> {
        ContentType::parse(&ByteString::from(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        let c: ContentType = "Message/CPIM".parse().unwrap();
        assert!(c.is("message/cpim"));
        assert_eq!((c.type_(), c.subtype()), ("Message", "CPIM"));
        let c: ContentType = r#"text/plain; charset=UTF-8;name="a b""#.parse().unwrap();
        assert_eq!(c.essence(), "text/plain");
        assert_eq!(c.param("Charset").as_deref(), Some("UTF-8"));
        assert_eq!(c.param("name").as_deref(), Some("a b"));
        assert_eq!(c.to_string(), r#"text/plain; charset=UTF-8;name="a b""#);
    }

    #[test]
    fn rejects_malformed() {
        for s in ["", "text", "text/", "/plain", "text/plain; charset", "te xt/plain", "text/plain junk"] {
            assert!(s.parse::<ContentType>().is_err(), "{s} accepted");
        }
    }
}
