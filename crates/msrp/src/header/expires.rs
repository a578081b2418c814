//! `Expires`, `Min-Expires` and `Max-Expires: 1*DIGIT` (RFC 4976 §5, §10): seconds of
//! relay-session lifetime, asked for in AUTH and bounded by a relay's 423 answer.

use super::HeaderError;
use crate::syntax::parse_u64;

/// Parses a delta-seconds value (up to `u32::MAX`, 136 years).
pub fn parse_seconds(name: &'static str, value: &str) -> Result<u32, HeaderError> {
    parse_u64(value).and_then(|v| u32::try_from(v).ok()).ok_or(HeaderError::new(name, "expected seconds (digits)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Header;

    #[test]
    fn parse_print() {
        assert_eq!(parse_seconds("Expires", "600").unwrap(), 600);
        assert_eq!(parse_seconds("Expires", "4294967295").unwrap(), u32::MAX);
        assert!(parse_seconds("Expires", "4294967296").is_err());
        assert!(parse_seconds("Expires", "-1").is_err());
        assert!(parse_seconds("Expires", "").is_err());
        assert_eq!(Header::Expires(600).to_string(), "Expires: 600");
        assert_eq!(Header::MinExpires(60).to_string(), "Min-Expires: 60");
        assert_eq!(Header::MaxExpires(3600).to_string(), "Max-Expires: 3600");
    }
}
