//! `WWW-Authenticate: Digest realm=…, nonce=…, …` (RFC 4976 §5.1): the relay's challenge in
//! a 401. Several may be sent (one per algorithm, RFC 7616 §3.7).

use std::fmt;

use super::HeaderError;
use super::auth_params::{self, AuthParam};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `Digest` (or another scheme such as `Basic`).
    pub scheme: String,
    pub params: Vec<AuthParam>,
}

impl Challenge {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let bad = || HeaderError::new("WWW-Authenticate", "expected 'Scheme name=value, …'");
        let (scheme, rest) = auth_params::split_scheme(value).ok_or_else(bad)?;
        let params = auth_params::parse(rest).ok_or_else(bad)?;
        Ok(Challenge { scheme: scheme.to_owned(), params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        auth_params::get(&self.params, name)
    }

    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    pub fn nonce(&self) -> Option<&str> {
        self.param("nonce")
    }

    pub fn opaque(&self) -> Option<&str> {
        self.param("opaque")
    }

    /// `MD5` when absent (RFC 7616 §3.3).
    pub fn algorithm(&self) -> &str {
        self.param("algorithm").unwrap_or("MD5")
    }

    pub fn stale(&self) -> bool {
        self.param("stale").is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.scheme)?;
        auth_params::write(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_round_trip() {
        let text = r#"Digest realm="example.com", nonce="dcd98b71", opaque="5ccc069c", qop="auth", algorithm=SHA-256, stale=true"#;
        let c = Challenge::parse(text).unwrap();
        assert_eq!(c.scheme, "Digest");
        assert_eq!(c.realm(), Some("example.com"));
        assert_eq!(c.algorithm(), "SHA-256");
        assert!(c.stale());
        assert_eq!(c.to_string(), text);
        let md5 = Challenge::parse(r#"Digest realm="r",nonce="n""#).unwrap();
        assert_eq!(md5.algorithm(), "MD5");
        assert!(!md5.stale());
    }

    #[test]
    fn rejects_malformed() {
        assert!(Challenge::parse("").is_err());
        assert!(Challenge::parse(r#"Digest realm="unterminated"#).is_err());
    }
}
