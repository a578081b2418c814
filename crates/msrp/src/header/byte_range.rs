//! `Byte-Range: range-start "-" range-end "/" total` (RFC 4975 §9), where `range-end` and
//! `total` may be `*` (unknown). Positions are 1-based and inclusive (§7.1.1); an empty body
//! is `1-0/0`.

use std::fmt;

use super::HeaderError;
use crate::syntax::{find_byte, parse_u64};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// First byte of this chunk, counting from 1.
    pub start: u64,
    /// Last byte of this chunk, `None` for `*` (not known when the chunk started).
    pub end: Option<u64>,
    /// Size of the whole message, `None` for `*`.
    pub total: Option<u64>,
}

impl ByteRange {
    /// The range of a whole message of `len` bytes sent in one chunk.
    pub fn whole(len: u64) -> Self {
        ByteRange { start: 1, end: Some(len), total: Some(len) }
    }

    /// The range covering `len` bytes from `start`, of a message of `total` bytes.
    pub fn chunk(start: u64, len: u64, total: Option<u64>) -> Self {
        ByteRange { start, end: Some(start + len - 1), total }
    }

    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let bad = |why| HeaderError::new("Byte-Range", why);
        let dash = find_byte(value, b'-').ok_or(bad("missing '-'"))?;
        let (start, rest) = (&value[..dash], &value[dash + 1..]);
        let slash = find_byte(rest, b'/').ok_or(bad("missing '/'"))?;
        let (end, total) = (&rest[..slash], &rest[slash + 1..]);
        let start = parse_u64(start).ok_or(bad("bad range-start"))?;
        let end = if end == "*" { None } else { Some(parse_u64(end).ok_or(bad("bad range-end"))?) };
        let total = if total == "*" { None } else { Some(parse_u64(total).ok_or(bad("bad total"))?) };
        if start == 0 {
            return Err(bad("range-start counts from 1"));
        }
        if let Some(e) = end
            && e < start - 1
        {
            return Err(bad("range-end before range-start"));
        }
        if let Some(t) = total
            && end.unwrap_or(start - 1) > t
        {
            return Err(bad("range beyond total"));
        }
        Ok(ByteRange { start, end, total })
    }

    /// The number of bytes the range says this chunk carries, when it says.
    pub fn len(&self) -> Option<u64> {
        self.end.map(|e| e + 1 - self.start)
    }

    /// True when the chunk is known to carry no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-", self.start)?;
        match self.end {
            Some(e) => write!(f, "{e}/")?,
            None => f.write_str("*/")?,
        }
        match self.total {
            Some(t) => write!(f, "{t}"),
            None => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_round_trip() {
        for s in ["1-25/25", "1-0/0", "2049-4096/*", "1-*/*", "4097-*/10000", "1-*/0"] {
            let r = ByteRange::parse(s).unwrap();
            assert_eq!(r.to_string(), s);
        }
        let r = ByteRange::parse("11-20/30").unwrap();
        assert_eq!((r.start, r.end, r.total, r.len()), (11, Some(20), Some(30), Some(10)));
        assert!(ByteRange::whole(0).is_empty());
        assert_eq!(ByteRange::chunk(5, 4, None).to_string(), "5-8/*");
    }

    #[test]
    fn rejects_bad_ranges() {
        for s in ["", "1", "1-2", "0-1/2", "a-2/3", "3-1/5", "1-5/4", "1-2/x", "-1-2/3", "1-2/3/4", "1 -2/3"] {
            assert!(ByteRange::parse(s).is_err(), "{s} accepted");
        }
    }
}
