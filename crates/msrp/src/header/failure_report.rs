//! `Failure-Report: yes / no / partial` (RFC 4975 §9; default `yes`, §7.1.2).

use std::fmt;

use super::HeaderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureReport {
    /// The default when the header is absent: every outcome gets a transaction response.
    #[default]
    Yes,
    /// No responses and no failure REPORTs.
    No,
    /// Only failures are answered.
    Partial,
}

impl FailureReport {
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        if value.eq_ignore_ascii_case("yes") {
            Ok(FailureReport::Yes)
        } else if value.eq_ignore_ascii_case("no") {
            Ok(FailureReport::No)
        } else if value.eq_ignore_ascii_case("partial") {
            Ok(FailureReport::Partial)
        } else {
            Err(HeaderError::new("Failure-Report", "expected yes, no or partial"))
        }
    }
}

impl FailureReport {
    /// The value as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReport::Yes => "yes",
            FailureReport::No => "no",
            FailureReport::Partial => "partial",
        }
    }
}

impl fmt::Display for FailureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print() {
        for v in [FailureReport::Yes, FailureReport::No, FailureReport::Partial] {
            assert_eq!(FailureReport::parse(&v.to_string()).unwrap(), v);
        }
        assert!(FailureReport::parse("maybe").is_err());
        assert_eq!(FailureReport::default(), FailureReport::Yes);
    }
}
