//! `Use-Nickname: quoted-string` (RFC 7701): the nickname a chat participant asks for in a
//! NICKNAME request. Whether the name is acceptable (424) is the chat server's decision; the
//! codec only checks the quoting.

use std::fmt;

use super::HeaderError;
use crate::syntax::{quoted_string, write_quoted};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseNickname(pub String);

impl UseNickname {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
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
        assert!(UseNickname::parse("alice").is_err());
        assert!(UseNickname::parse(r#""a" b"#).is_err());
    }
}
