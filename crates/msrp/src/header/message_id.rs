//! `Message-ID: ident` (RFC 4975 §9).

use std::fmt;

use bytestring::ByteString;

use super::HeaderError;
use crate::syntax::is_ident;

/// The grammar allows 4–32 characters (`ident`); clients in the field send UUIDs (36) and
/// longer, and a relay that refused them would break their sessions, so we accept up to this
/// many `ident` characters and never generate more than 32.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// Identifies a message across all its chunks, responses and REPORTs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(ByteString);

impl MessageId {
    pub fn parse(value: &ByteString) -> Result<Self, HeaderError> {
        if Self::is_valid(value) {
            Ok(MessageId(value.clone()))
        } else {
            Err(HeaderError::new("Message-ID", "not an ident of 4 to 128 characters"))
        }
    }

    /// Whether `value` would parse (an `ident` of 4 to [`MAX_MESSAGE_ID_LEN`] characters).
    pub fn is_valid(value: &str) -> bool {
        is_ident(value, MAX_MESSAGE_ID_LEN)
    }

    /// A fresh random id (see [`crate::id`]).
    pub fn random() -> Self {
        MessageId(ByteString::from(crate::id::random_ident()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", &*self.0)
    }
}

impl std::str::FromStr for MessageId {
    type Err = HeaderError;
    fn from_str(s: &str) -> Result<Self, HeaderError> {
        MessageId::parse(&ByteString::from(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        let id: MessageId = "87652491".parse().unwrap();
        assert_eq!(id.to_string(), "87652491");
        let uuid: MessageId = "0f8e5d2a-3b4c-4d5e-8f9a-0b1c2d3e4f5a".parse().unwrap();
        assert_eq!(uuid.as_str().len(), 36);
    }

    #[test]
    fn rejects_bad_ids() {
        assert!("abc".parse::<MessageId>().is_err());
        assert!("-abcd".parse::<MessageId>().is_err());
        assert!("ab cd".parse::<MessageId>().is_err());
        assert!("a".repeat(129).parse::<MessageId>().is_err());
    }

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let a = MessageId::random();
        assert!(a.as_str().parse::<MessageId>().is_ok());
        assert_ne!(a, MessageId::random());
    }
}
