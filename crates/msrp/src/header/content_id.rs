//! `Content-ID: "<" id-left "@" id-right ">"` (RFC 4975 §9 via RFC 2045 §7 / RFC 5322 msg-id).

use std::fmt;

use bytestring::ByteString;

use super::HeaderError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentId(ByteString);

impl ContentId {
    pub fn parse(value: &ByteString) -> Result<Self, HeaderError> {
        let inner = value.strip_prefix('<').and_then(|v| v.strip_suffix('>'));
        match inner.and_then(|i| i.split_once('@')) {
            Some((l, r)) if !l.is_empty() && !r.is_empty() && !r.contains('@') && !value[1..].contains('<') => {
                Ok(ContentId(value.clone()))
            }
            _ => Err(HeaderError::new("Content-ID", "expected <left@right>")),
        }
    }

    /// The id without its angle brackets (what a `cid:` URL names).
    pub fn id(&self) -> &str {
        &self.0[1..self.0.len() - 1]
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        let c = ContentId::parse(&ByteString::from("<file1@alice.example.com>")).unwrap();
        assert_eq!(c.id(), "file1@alice.example.com");
        assert_eq!(c.to_string(), "<file1@alice.example.com>");
        for bad in ["file@x", "<file>", "<@x>", "<a@>", "<a@b@c>"] {
            assert!(ContentId::parse(&ByteString::from(bad)).is_err(), "{bad} accepted");
        }
    }
}
