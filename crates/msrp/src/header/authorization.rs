//! `Authorization: Digest username=…, realm=…, nonce=…, uri=…, response=…, …` (RFC 4976 §5.1;
//! digest method `AUTH`) or `Authorization: Basic <base64>` (RFC 7617).
//! Field clients omit `uri=`; the relay then uses the AUTH To-Path URI as digest-uri.

use std::fmt;

use super::HeaderError;
use super::auth_params::{self, AuthParam};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub scheme: String,
    /// `name=value` parameters (Digest).
    pub params: Vec<AuthParam>,
    /// The single opaque token of schemes like Basic.
    pub token68: Option<String>,
}

impl Credentials {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let bad = || HeaderError::new("Authorization", "expected 'Scheme credentials'");
        let (scheme, rest) = auth_params::split_scheme(value).ok_or_else(bad)?;
        let is_token68 = !rest.is_empty()
            && rest
                .trim_end_matches('=')
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'));
        if is_token68 {
            return Ok(Credentials { scheme: scheme.to_owned(), params: Vec::new(), token68: Some(rest.to_owned()) });
        }
        let params = auth_params::parse(rest).ok_or_else(bad)?;
        if params.is_empty() {
            return Err(bad());
        }
        Ok(Credentials { scheme: scheme.to_owned(), params, token68: None })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        auth_params::get(&self.params, name)
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    pub fn is_basic(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Basic")
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.token68 {
            Some(t) => write!(f, "{} {t}", self.scheme),
            None => {
                write!(f, "{} ", self.scheme)?;
                auth_params::write(f, &self.params)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trip() {
        let text = r#"Digest username="alice", realm="example.com", nonce="abc", uri="msrps://relay.example.com;tcp", qop=auth, nc=00000001, cnonce="x", response="6629fae49393a05397450978507c4ef1", opaque="o""#;
        let c = Credentials::parse(text).unwrap();
        assert!(c.is_digest());
        assert_eq!(c.param("username"), Some("alice"));
        assert_eq!(c.param("uri"), Some("msrps://relay.example.com;tcp"));
        assert_eq!(c.param("nc"), Some("00000001"));
        assert_eq!(c.to_string(), text);
    }

    #[test]
    fn without_uri_and_without_spaces() {
        let c = Credentials::parse(
            r#"Digest username="bob",realm="r",nonce="n",response="x",qop=auth,nc=00000001,cnonce="c""#,
        )
        .unwrap();
        assert_eq!(c.param("uri"), None);
        assert_eq!(c.param("cnonce"), Some("c"));
    }

    #[test]
    fn basic() {
        let c = Credentials::parse("Basic YWxpY2U6c2VjcmV0").unwrap();
        assert!(c.is_basic());
        assert_eq!(c.token68.as_deref(), Some("YWxpY2U6c2VjcmV0"));
        assert_eq!(c.to_string(), "Basic YWxpY2U6c2VjcmV0");
    }

    #[test]
    fn rejects_malformed() {
        assert!(Credentials::parse("Digest").is_err());
        assert!(Credentials::parse(r#"Digest username="a" realm="b""#).is_err());
    }
}
