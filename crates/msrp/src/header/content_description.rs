//! `Content-Description: text` (RFC 4975 §9 via RFC 2045 §8): free text, e.g. a file's
//! description in RFC 5547 transfers.

use std::fmt;

use bytestring::ByteString;

use super::HeaderError;
use crate::syntax::is_utf8text;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDescription(pub ByteString);

impl ContentDescription {
    pub fn parse(value: &ByteString) -> Result<Self, HeaderError> {
        if is_utf8text(value) {
            Ok(ContentDescription(value.clone()))
        } else {
            Err(HeaderError::new("Content-Description", "control characters"))
        }
    }
}

impl fmt::Display for ContentDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        let d = ContentDescription::parse(&ByteString::from("Holiday photo, 3 MB")).unwrap();
        assert_eq!(d.to_string(), "Holiday photo, 3 MB");
        assert!(ContentDescription::parse(&ByteString::from("a\u{7}b")).is_err());
    }
}
