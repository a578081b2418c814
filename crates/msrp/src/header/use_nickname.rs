//! `Use-Nickname: quoted-string` (RFC 7701): the nickname a chat participant asks for in a
//! NICKNAME request. Whether the name is acceptable (424) is the chat server's decision; the
//! codec only checks the quoting.
//!
//! Field practice: AG's msrplib (every Blink and sipsimple client) sends the name unquoted
//! (`Use-Nickname: Ally`), so a value that does not open with `"` is taken whole as the name
//! (it is already trimmed), to be normalised and judged exactly like a quoted one. What we
//! print is always quoted.

use std::fmt;

use super::HeaderError;
use crate::syntax::{is_utf8text, quoted_string, write_quoted};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseNickname(pub String);

impl UseNickname {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        if !value.starts_with('"') {
            return if is_utf8text(value) {
                Ok(UseNickname(value.to_owned()))
            } else {
                Err(HeaderError::new("Use-Nickname", "control characters in an unquoted nickname"))
            };
        }
        match quoted_string(value) {
            Some((v, "")) => Ok(UseNickname(v.into_owned())),
            _ => Err(HeaderError::new("Use-Nickname", "expected a quoted string")),
        }
    }
}

impl fmt::Display for UseNickname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_quoted(f, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        let n = UseNickname::parse(r#""Ali \"the\" ce""#).unwrap();
        assert_eq!(n.0, r#"Ali "the" ce"#);
        assert_eq!(n.to_string(), r#""Ali \"the\" ce""#);
        assert_eq!(UseNickname::parse(r#""""#).unwrap().0, "", "empty releases the nickname");
        assert!(UseNickname::parse(r#""a" b"#).is_err());
        assert!(UseNickname::parse(r#""open"#).is_err());
    }

    #[test]
    fn unquoted_as_msrplib_sends_it() {
        assert_eq!(UseNickname::parse("Ally").unwrap().0, "Ally");
        assert_eq!(UseNickname::parse("Ally McBeal").unwrap().0, "Ally McBeal");
        assert_eq!(UseNickname::parse("Zoë").unwrap().to_string(), r#""Zoë""#, "printed quoted");
        assert!(UseNickname::parse("a\x07b").is_err(), "control characters");
    }
}
