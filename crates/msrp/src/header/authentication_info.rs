//! `Authentication-Info: nextnonce=…, qop=…, rspauth=…, cnonce=…, nc=…` (RFC 4976 §5.1,
//! RFC 7616 §3.5): sent by the relay with its 200 to AUTH.

use std::fmt;

use super::HeaderError;
use super::auth_params::{self, AuthParam};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationInfo {
    pub params: Vec<AuthParam>,
}

impl AuthenticationInfo {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let params = auth_params::parse(value)
            .filter(|p| !p.is_empty())
            .ok_or(HeaderError::new("Authentication-Info", "expected 'name=value, …'"))?;
        Ok(AuthenticationInfo { params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        auth_params::get(&self.params, name)
    }
}

impl fmt::Display for AuthenticationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        auth_params::write(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        let text = r#"nextnonce="abc", qop=auth, rspauth="d1", cnonce="c", nc=00000001"#;
        let a = AuthenticationInfo::parse(text).unwrap();
        assert_eq!(a.param("nextnonce"), Some("abc"));
        assert_eq!(a.to_string(), text);
        assert!(AuthenticationInfo::parse("").is_err());
        assert!(AuthenticationInfo::parse("x").is_err());
    }
}
