//! `Success-Report: yes / no` (RFC 4975 §9; default `no`, §7.1.2).

use std::fmt;

use super::HeaderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SuccessReport {
    Yes,
    /// The default when the header is absent.
    #[default]
    No,
}

impl SuccessReport {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        if value.eq_ignore_ascii_case("yes") {
            Ok(SuccessReport::Yes)
        } else if value.eq_ignore_ascii_case("no") {
            Ok(SuccessReport::No)
        } else {
            Err(HeaderError::new("Success-Report", "expected yes or no"))
        }
    }
}

impl SuccessReport {
    /// The value as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SuccessReport::Yes => "yes",
            SuccessReport::No => "no",
        }
    }
}

impl fmt::Display for SuccessReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        for v in [SuccessReport::Yes, SuccessReport::No] {
            assert_eq!(SuccessReport::parse(&v.to_string()).unwrap(), v);
        }
        assert_eq!(SuccessReport::parse("YES").unwrap(), SuccessReport::Yes);
        assert!(SuccessReport::parse("partial").is_err());
        assert_eq!(SuccessReport::default(), SuccessReport::No);
    }
}
