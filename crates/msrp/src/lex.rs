//! Whole small frames taken apart in place, for a relay's fast path.
//!
//! A relay forwards most header values untouched and reads only a few (RFC 4976 §7), and a
//! response it consumes matters only by its transaction id and status. Building a typed
//! [`Message`](crate::Message) for every frame cost the relay more than its reads and writes
//! (issue 5's profile), so [`lex_frame`] splits a frame that lies complete at the front of a
//! buffer into its start line, `(name, value)` slices and body — no allocation, no value parsed.
//!
//! It is an optimisation, never a second grammar: anything unusual (an incomplete frame, a
//! stray CRLF, a bare LF, a limit reached, too many headers, non-UTF-8, an empty body) gives
//! `None`, and the caller hands the bytes to the streaming [`Decoder`](crate::Decoder), whose
//! answer is the reference. Callers parse the values they use with the typed parsers.

use crate::decode::{DASHES, END_NEEDLE, EndNeedles, Limits, check_start_line};
use crate::header::Name;
use crate::message::{Continuation, TransactionId};
use crate::syntax::is_token_char;

/// Most header lines a lexed frame may have (a SEND through two relays has six or seven).
pub const MAX_LEXED_HEADERS: usize = 16;

/// The start line of a lexed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// A request's method, as sent (upper-case letters).
    Request(&'a [u8]),
    /// A response's status code.
    Response(u16),
}

/// A complete frame, borrowed from the buffer it was found in.
#[derive(Debug)]
pub struct Lexed<'a> {
    pub tid: TransactionId,
    pub start: Start<'a>,
    /// The head, checked to be UTF-8 once (so no caller checks a value again).
    head: &'a str,
    /// Where each header's name and value lie in `head` (offsets fit: see [`lex_frame`]).
    spans: [[u16; 4]; MAX_LEXED_HEADERS],
    /// Each header's name when it came in its registered spelling ([`Name::at_start`]).
    names: [Option<Name>; MAX_LEXED_HEADERS],
    count: usize,
    /// The body section's data (RFC 4975 §9 `content-stuff`), without the CRLF before the
    /// end-line; `None` when the frame has no body section.
    pub body: Option<&'a [u8]>,
    pub flag: Continuation,
    /// Bytes of the whole frame, end-line included.
    pub len: usize,
}

impl<'a> Lexed<'a> {
    /// Header `(name, value)` pairs in the order sent; values trimmed of spaces and tabs.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + '_ {
        let head = self.head;
        let span = move |a: u16, b: u16| head.get(a as usize..b as usize).unwrap_or_default();
        self.spans[..self.count].iter().map(move |&[n0, n1, v0, v1]| (span(n0, n1), span(v0, v1)))
    }

    /// [`Lexed::headers`] with what each name means ([`Name::of`]; `None`: unknown).
    pub fn named_headers(&self) -> impl Iterator<Item = (Option<Name>, &'a str, &'a str)> + '_ {
        self.headers().zip(&self.names).map(|((n, v), known)| (known.or_else(|| Name::of(n)), n, v))
    }

    pub fn header_count(&self) -> usize {
        self.count
    }
}

/// The frame at the front of `buf`, when it is complete within `max_len` bytes and plain
/// enough to need no decision of the decoder's (see the module documentation); `None`
/// otherwise, with nothing consumed.
///
/// Frames longer than 64 KiB are never taken (offsets are kept in 16 bits).
pub fn lex_frame<'a>(buf: &'a [u8], limits: &Limits, max_len: usize) -> Option<Lexed<'a>> {
    let buf = &buf[..buf.len().min(max_len).min(u16::MAX as usize)];
    let mut lines = LineIter { buf, pos: 0, newlines: memchr::memchr_iter(b'\n', buf) };
    let start_line = lines.next()?;
    if start_line.len() > limits.max_start_line {
        return None;
    }
    let tid = TransactionId::from_validated(check_start_line(start_line).ok()?);
    let what = &start_line[5 + tid.as_bytes().len() + 1..];
    let start = if what[0].is_ascii_digit() {
        Start::Response(what[..3].iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
    } else {
        Start::Request(what)
    };
    let mut lexed = Lexed {
        tid,
        start,
        head: "",
        spans: [[0; 4]; MAX_LEXED_HEADERS],
        names: [None; MAX_LEXED_HEADERS],
        count: 0,
        body: None,
        flag: Continuation::Complete,
        len: 0,
    };
    let offset = |s: &[u8]| (s.as_ptr() as usize - buf.as_ptr() as usize) as u16;
    loop {
        let line = lines.next()?;
        if line.is_empty() {
            // The blank line: data, then CRLF and the end-line.
            let head_end = lines.pos;
            // Dashes first: the decoder may read them as an end-line right after the blank
            // line (its lenient empty body), which would end the frame here.
            if buf[head_end..].starts_with(b"-") {
                return None;
            }
            let (at, flag, len) = find_end_line(&buf[head_end..], &tid)?;
            if at == 0 || head_end > limits.max_head_bytes {
                return None; // an empty body
            }
            if !matches!(lexed.start, Start::Request(b"SEND")) && at as u64 > limits.max_non_send_body {
                return None;
            }
            lexed.head = std::str::from_utf8(&buf[..head_end]).ok()?;
            lexed.body = Some(&buf[head_end..head_end + at]);
            lexed.flag = flag;
            lexed.len = head_end + at + len;
            return Some(lexed);
        }
        if let Some(flag) = line.strip_prefix(DASHES).and_then(|r| r.strip_prefix(tid.as_bytes())) {
            // The end-line right after the headers: a frame without a body section.
            let [flag] = flag else { return None };
            lexed.flag = Continuation::from_byte(*flag)?;
            lexed.len = lines.pos;
            if lexed.len > limits.max_head_bytes {
                return None;
            }
            lexed.head = std::str::from_utf8(&buf[..lexed.len]).ok()?;
            return Some(lexed);
        }
        if line.len() > limits.max_header_line || lexed.count == MAX_LEXED_HEADERS || lexed.count >= limits.max_headers
        {
            return None;
        }
        // The registered spelling first: no scan of its characters.
        let (name_len, name) = match Name::at_start(line) {
            Some((name, len)) => (len, Some(name)),
            None => (line.iter().take_while(|&&b| is_token_char(b)).count(), None),
        };
        if name_len == 0 || line.get(name_len) != Some(&b':') {
            return None;
        }
        lexed.names[lexed.count] = name;
        let value = trim(&line[name_len + 1..]);
        let (line_at, value_at) = (offset(line), offset(value));
        lexed.spans[lexed.count] = [line_at, line_at + name_len as u16, value_at, value_at + value.len() as u16];
        lexed.count += 1;
    }
}

/// CRLF-terminated lines; ends (`None`) at a bare LF or where the buffer runs out. One
/// newline iterator for the whole head keeps its SIMD set-up from line to line.
struct LineIter<'a> {
    buf: &'a [u8],
    pos: usize,
    newlines: memchr::Memchr<'a>,
}

impl<'a> Iterator for LineIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let nl = self.newlines.next()?;
        let line = self.buf[self.pos..nl].strip_suffix(b"\r")?;
        self.pos = nl + 1;
        Some(line)
    }
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The first complete `CRLF -------<tid><flag> CRLF` in `hay`: where it starts, its flag and
/// its length.
pub(crate) fn find_end_line(hay: &[u8], tid: &TransactionId) -> Option<(usize, Continuation, usize)> {
    let tid = tid.as_bytes();
    let len = END_NEEDLE.len() + tid.len() + 3;
    EndNeedles::new(hay).find_map(|at| {
        let tail = &hay[at + END_NEEDLE.len()..];
        if tail.len() >= tid.len() + 3 && &tail[..tid.len()] == tid && &tail[tid.len() + 1..tid.len() + 3] == b"\r\n" {
            Continuation::from_byte(tail[tid.len()]).map(|flag| (at, flag, len))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: &[u8] = b"MSRP a786hjs2 SEND\r\nTo-Path: msrp://b.example.com:7654/jshA7we;tcp\r\n\
From-Path: msrp://a.example.com:1234/iau39soe2843z;tcp\r\nMessage-ID: 87652491\r\nByte-Range: 1-25/25\r\n\
Content-Type:  text/plain \r\n\r\nHey Bob, are you there?\r\n\r\n-------a786hjs2$\r\n";

    fn lex(buf: &[u8]) -> Option<Lexed<'_>> {
        lex_frame(buf, &Limits::default(), 64 * 1024)
    }

    #[test]
    fn a_send_is_split_in_place() {
        let mut buf = SEND.to_vec();
        buf.extend_from_slice(b"MSRP next");
        let l = lex(&buf).unwrap();
        assert_eq!(l.tid.as_str(), "a786hjs2");
        assert_eq!(l.start, Start::Request(b"SEND"));
        assert_eq!(l.header_count(), 5);
        assert_eq!(l.headers().nth(4), Some(("Content-Type", "text/plain")));
        assert_eq!(l.body, Some(&b"Hey Bob, are you there?\r\n"[..]));
        assert_eq!(l.flag, Continuation::Complete);
        assert_eq!(l.len, SEND.len());
    }

    #[test]
    fn a_response_has_no_body_section() {
        let r = b"MSRP a786hjs2 200 OK\r\nTo-Path: msrp://a.example.com:1234/iau39soe2843z;tcp\r\n\
From-Path: msrp://b.example.com:7654/jshA7we;tcp\r\n-------a786hjs2$\r\n";
        let l = lex(r).unwrap();
        assert_eq!(l.start, Start::Response(200));
        assert_eq!(l.body, None);
        assert_eq!(l.len, r.len());
    }

    #[test]
    fn an_end_line_of_another_tid_is_body() {
        let f = b"MSRP abcd SEND\r\nTo-Path: msrp://b:1/x;tcp\r\nFrom-Path: msrp://a:1/y;tcp\r\n\
Content-Type: text/plain\r\n\r\nx\r\n-------abce$\r\ny\r\n-------abcd+\r\n";
        let l = lex(f).unwrap();
        assert_eq!(l.body, Some(&b"x\r\n-------abce$\r\ny"[..]));
        assert_eq!(l.flag, Continuation::More);
    }

    #[test]
    fn anything_unusual_is_left_to_the_decoder() {
        // Every prefix is incomplete.
        for n in 0..SEND.len() {
            assert!(lex(&SEND[..n]).is_none(), "prefix of {n} bytes");
        }
        let bare_lf = String::from_utf8_lossy(SEND).replacen("Message-ID: 87652491\r\n", "Message-ID: 87652491\n", 1);
        assert!(lex(bare_lf.as_bytes()).is_none());
        assert!(lex(&[b"\r\n", SEND].concat()).is_none(), "a stray CRLF first");
        let empty = b"MSRP abcd SEND\r\nTo-Path: msrp://b:1/x;tcp\r\nFrom-Path: msrp://a:1/y;tcp\r\n\
Content-Type: text/plain\r\n\r\n\r\n-------abcd$\r\n";
        assert!(lex(empty).is_none(), "an empty body");
        // The decoder's lenient empty body ends the frame at the first end-line; a later one
        // (here in the next frame, which reuses the tid) must not be taken for this frame's.
        let lenient = b"MSRP abcd SEND\r\nTo-Path: msrp://b:1/x;tcp\r\nFrom-Path: msrp://a:1/y;tcp\r\n\
Content-Type: text/plain\r\n\r\n-------abcd$\r\nMSRP abcd SEND\r\nTo-Path: msrp://b:1/x;tcp\r\n\
From-Path: msrp://a:1/y;tcp\r\nContent-Type: text/plain\r\n\r\nx\r\n-------abcd$\r\n";
        assert!(lex(lenient).is_none(), "a lenient empty body");
        let colonless = String::from_utf8_lossy(SEND).replacen("Message-ID:", "Message-ID", 1);
        assert!(lex(colonless.as_bytes()).is_none());
        assert!(lex_frame(SEND, &Limits::default(), SEND.len() - 1).is_none(), "over max_len");
        let few = Limits { max_headers: 4, ..Limits::default() };
        assert!(lex_frame(SEND, &few, 1 << 16).is_none(), "over max_headers");
        let mut latin1 = SEND.to_vec();
        let at = latin1.windows(8).position(|w| w == b"87652491").unwrap();
        latin1[at] = 0xe9;
        assert!(lex(&latin1).is_none(), "a head that is not UTF-8");
        assert!(lex(b"MSRP abcd SEND\r\nTo-Path: x\r\n-------abcd!\r\n").is_none(), "a bad flag");
    }
}
