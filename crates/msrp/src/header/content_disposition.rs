//! `Content-Disposition: disposition-type *(";" parameter)` (RFC 4975 §9 via RFC 2183), e.g.
//! `attachment; filename="report.pdf"` in file transfers (RFC 5547).

use std::fmt;

use super::HeaderError;
use crate::syntax::{is_mime_token, mime_params, write_mime_params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDisposition {
    /// `inline`, `attachment`, `render`, … (lower-cased).
    pub kind: String,
    pub params: Vec<(String, String)>,
}

impl ContentDisposition {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let bad = || HeaderError::new("Content-Disposition", "expected 'type *(; name=value)'");
        let end = value.find([';', ' ', '\t']).unwrap_or(value.len());
        let kind = &value[..end];
        if !is_mime_token(kind) {
            return Err(bad());
        }
        let params = mime_params(&value[end..]).ok_or_else(bad)?;
        Ok(ContentDisposition { kind: kind.to_ascii_lowercase(), params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn filename(&self) -> Option<&str> {
        self.param("filename")
    }
}

impl fmt::Display for ContentDisposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        write_mime_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        let d = ContentDisposition::parse(r#"Attachment; filename="my file.txt"; size=1234"#).unwrap();
        assert_eq!(d.kind, "attachment");
        assert_eq!(d.filename(), Some("my file.txt"));
        assert_eq!(d.param("SIZE"), Some("1234"));
        assert_eq!(d.to_string(), r#"attachment;filename="my file.txt";size=1234"#);
        assert_eq!(ContentDisposition::parse(&d.to_string()).unwrap(), d);
        assert!(ContentDisposition::parse("").is_err());
        assert!(ContentDisposition::parse("inline; filename").is_err());
    }
}
