//! The comma-separated `name=value` lists shared by the three authentication headers
//! (RFC 4976 §5 borrows them from RFC 2617 / RFC 7616): values are tokens or quoted strings;
//! whitespace around `=` and `,` is optional (clients differ).

use std::fmt;

use crate::syntax::{is_token, is_token_char, quoted_string, write_quoted};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    pub name: String,
    /// Unescaped value.
    pub value: String,
    /// Printed as a quoted string (kept from the input so printing round-trips).
    pub quoted: bool,
}

impl AuthParam {
    pub fn quoted(name: &str, value: impl Into<String>) -> Self {
        AuthParam { name: name.to_owned(), value: value.into(), quoted: true }
    }

    pub fn token(name: &str, value: impl Into<String>) -> Self {
        AuthParam { name: name.to_owned(), value: value.into(), quoted: false }
    }
}

/// Parses `name=value *("," name=value)`; `None` on any syntax error or a duplicate name.
pub(crate) fn parse(mut s: &str) -> Option<Vec<AuthParam>> {
    let mut out: Vec<AuthParam> = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            return Some(out);
        }
        let name_len = s.bytes().position(|b| !is_token_char(b)).unwrap_or(s.len());
        let name = &s[..name_len];
        if name.is_empty() {
            return None;
        }
        s = s[name_len..].trim_start_matches([' ', '\t']).strip_prefix('=')?.trim_start_matches([' ', '\t']);
        let param = if s.starts_with('"') {
            let (v, rest) = quoted_string(s)?;
            s = rest;
            AuthParam::quoted(name, v)
        } else {
            let len = s.bytes().position(|b| !is_token_char(b) && b != b'/' && b != b'=').unwrap_or(s.len());
            let v = &s[..len];
            if v.is_empty() {
                return None;
            }
            s = &s[len..];
            AuthParam::token(name, v)
        };
        if out.iter().any(|p| p.name.eq_ignore_ascii_case(name)) {
            return None;
        }
        out.push(param);
        s = s.trim_start_matches([' ', '\t']);
        if !(s.is_empty() || s.starts_with(',')) {
            return None;
        }
    }
}

pub(crate) fn write(f: &mut fmt::Formatter<'_>, params: &[AuthParam]) -> fmt::Result {
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{}=", p.name)?;
        if p.quoted || !is_token(&p.value) {
            write_quoted(f, &p.value)?;
        } else {
            f.write_str(&p.value)?;
        }
    }
    Ok(())
}

/// The value of `name` (case-insensitive).
pub(crate) fn get<'a>(params: &'a [AuthParam], name: &str) -> Option<&'a str> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name)).map(|p| p.value.as_str())
}

/// Splits `Scheme rest` into the scheme token and the rest.
pub(crate) fn split_scheme(value: &str) -> Option<(&str, &str)> {
    let value = value.trim_start();
    let end = value.find([' ', '\t']).unwrap_or(value.len());
    let scheme = &value[..end];
    is_token(scheme).then(|| (scheme, value[end..].trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_spaces() {
        let a = parse(r#"realm="x y",nonce="n",qop=auth"#).unwrap();
        let b = parse(r#"realm = "x y" ,  nonce="n", qop=auth"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(get(&a, "REALM"), Some("x y"));
        assert!(!a[2].quoted);
    }

    #[test]
    fn rejects_broken_lists() {
        assert!(parse(r#"realm="x"#).is_none());
        assert!(parse("realm").is_none());
        assert!(parse("=x").is_none());
        assert!(parse("a=b c=d").is_none());
        assert!(parse("a=b, A=c").is_none(), "duplicates are ambiguous");
    }
}
