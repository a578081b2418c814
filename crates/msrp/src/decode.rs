//! A resumable, streaming MSRP decoder (RFC 4975 §9 framing).
//!
//! Feed it a [`BytesMut`] that the caller keeps appending to; call [`Decoder::decode`] until it
//! returns `Ok(None)` ("read more"). A frame comes out as one [`Event::Head`], then zero or more
//! [`Event::Body`] pieces — zero-copy slices split off the input as soon as they are known not
//! to hold the end-line — then one [`Event::End`]. A body is never gathered whole, so a 1 GiB
//! chunk costs no more memory than the caller's read buffer.
//!
//! Every bound on what a peer can make us hold is a field of [`Limits`]. Errors say whether
//! the frame alone is lost (the decoder skips to its end-line and carries on; a request can
//! still be answered with 400) or the connection must close.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use memchr::memmem;
use thiserror::Error;

use crate::header::{Header, HeaderError, Headers, Name, Path, name};
use crate::message::{Continuation, MAX_TID_LEN, Message, Method, Request, Response, StatusCode, TransactionId};

/// `"\r\n-------"`: the CRLF that ends the body (RFC 4975 §9 `content-stuff`) plus the seven
/// dashes of the end-line. Searching for this fixed needle lets one SIMD searcher serve every
/// frame; the transaction id is compared only where it matches.
pub(crate) const END_NEEDLE: &[u8] = b"\r\n-------";

/// The SIMD searcher for [`END_NEEDLE`], built once: it is 288 bytes, which every connection's
/// decoder would otherwise carry (memory per idle relay session, issue 5).
pub(crate) static END_FINDER: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(END_NEEDLE));
pub(crate) const DASHES: &[u8] = b"-------";

/// Below this many bytes a CR scan finds [`END_NEEDLE`] faster than the SIMD searcher's set-up.
const SHORT_HAY: usize = 256;

/// Where [`END_NEEDLE`] starts in a haystack, in order: the one end-line finder of the codec
/// (the decoder's body scan, the lexer's and the encoder's checks all walk these positions
/// and compare the transaction id there themselves).
#[derive(Debug)]
pub(crate) struct EndNeedles<'a> {
    hay: &'a [u8],
    from: usize,
}

impl<'a> EndNeedles<'a> {
    pub(crate) fn new(hay: &'a [u8]) -> Self {
        EndNeedles { hay, from: 0 }
    }

    /// Where the search goes on: after the last position given (all before it is checked).
    pub(crate) fn checked(&self) -> usize {
        self.from
    }
}

impl Iterator for EndNeedles<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let rest = self.hay.get(self.from..)?;
        let i = if rest.len() < SHORT_HAY {
            memchr::memchr_iter(b'\r', rest).find(|&i| rest[i..].starts_with(END_NEEDLE))?
        } else {
            END_FINDER.find(rest)?
        };
        let at = self.from + i;
        self.from = at + 1;
        Some(at)
    }
}

/// Bounds on what one peer can make the decoder buffer. All are per frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest start line (`MSRP <tid> <method>` or `MSRP <tid> <code> <comment>`), CRLF
    /// excluded. Exceeding it closes the connection: without a start line the frame's end
    /// cannot be found. Default 1024.
    pub max_start_line: usize,
    /// Longest header line, CRLF excluded. Paths through several relays and Digest
    /// credentials stay well below the default of 4096.
    pub max_header_line: usize,
    /// Most header lines in one frame. Default 64.
    pub max_headers: usize,
    /// Most bytes from the first byte of the start line to the end of the header block.
    /// Default 16384.
    pub max_head_bytes: usize,
    /// Largest body of a frame that is not a SEND (AUTH, REPORT, NICKNAME, responses, unknown
    /// methods), which carry no or tiny bodies. SEND bodies are streamed and not limited here.
    /// Default 65536.
    pub max_non_send_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_start_line: 1024,
            max_header_line: 4096,
            max_headers: 64,
            max_head_bytes: 16 * 1024,
            max_non_send_body: 64 * 1024,
        }
    }
}

/// One step of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start line and headers. A frame has a body section exactly when it carries
    /// Content-Type (RFC 4975 §9 `content-stuff`); that section may be empty, in which case no
    /// [`Event::Body`] follows.
    Head(Message),
    /// The next piece of the body, in order. Pieces may be of any size, including split
    /// mid-UTF-8; only their concatenation means anything.
    Body(Bytes),
    /// The end-line: the frame is complete.
    End(Continuation),
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    #[error("start line is not 'MSRP <tid> <method>' or 'MSRP <tid> <code> [comment]'")]
    BadStartLine,
    #[error("transaction id is not 4 to 32 ident characters")]
    BadTransactionId,
    #[error("start line longer than {0} bytes")]
    StartLineTooLong(usize),
    #[error("line ended by a bare LF instead of CRLF")]
    BareLineFeed,
    #[error("header line longer than {0} bytes")]
    HeaderLineTooLong(usize),
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    #[error("header block larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("header line without a colon")]
    HeaderWithoutColon,
    #[error(transparent)]
    MalformedHeader(#[from] HeaderError),
    #[error("{0} header appears twice")]
    DuplicateHeader(String),
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("head is not valid UTF-8")]
    InvalidUtf8,
    #[error("body of a non-SEND frame larger than {0} bytes")]
    BodyTooLarge(u64),
    #[error("the stream ended inside a frame")]
    Truncated,
}

/// How much a decoding error costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only this frame is lost: the decoder has skipped (or will silently skip) to its
    /// end-line and goes on with the next frame. A request may be answered with 400.
    Frame,
    /// The byte stream cannot be resynchronised: close the connection.
    Connection,
}

/// What is known of a frame that failed to decode, so the caller can answer or log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameInfo {
    pub tid: TransactionId,
    /// `None` for a response (responses are never answered).
    pub method: Option<Method>,
    /// Present when the header parsed, so a 400 can be addressed.
    pub to_path: Option<Path>,
    pub from_path: Option<Path>,
}

/// A decoding failure with its scope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct DecodeError {
    pub kind: ErrorKind,
    pub scope: Scope,
    /// Set for [`Scope::Frame`] errors.
    pub frame: Option<Box<FrameInfo>>,
}

impl DecodeError {
    fn connection(kind: ErrorKind) -> Self {
        DecodeError { kind, scope: Scope::Connection, frame: None }
    }

    /// True when the peer should get an answer for this frame: a request whose paths are
    /// known, other than a REPORT (never answered, RFC 4975 §7.1.2).
    pub fn answerable(&self) -> Option<&FrameInfo> {
        self.frame.as_deref().filter(|f| {
            f.method.as_ref().is_some_and(|m| *m != crate::Method::Report)
                && f.to_path.is_some()
                && f.from_path.is_some()
        })
    }

    /// The status for that answer: 413 for a body over the limit, else 400 (RFC 4975 §7.3.1).
    pub fn status(&self) -> crate::StatusCode {
        match self.kind {
            ErrorKind::BodyTooLarge(_) => crate::StatusCode::MESSAGE_TOO_LARGE,
            _ => crate::StatusCode::BAD_REQUEST,
        }
    }
}

/// What a non-SEND body may still hold, and whose frame it is (so that a body over the limit
/// can be answered with 413, RFC 4975 §7.3.1, instead of going unanswered).
#[derive(Debug)]
struct Budget {
    left: u64,
    info: FrameInfo,
}

/// What a failed frame's error can say when only its transaction id is known.
fn bare_info(tid: Tid) -> Box<FrameInfo> {
    Box::new(FrameInfo { tid, method: None, to_path: None, from_path: None })
}

/// The transaction id as the decoder keeps it while a frame is in flight (inline, `Copy`).
type Tid = TransactionId;

#[derive(Debug)]
enum State {
    /// Looking for the end of the head. `scanned` bytes are known to hold no unprocessed LF;
    /// `line_start` is where the current line begins; `lines` counts complete lines.
    Head { scanned: usize, line_start: usize, lines: usize, tid: Option<Tid> },
    /// Head emitted, body bytes follow. `budget` is what a non-SEND body may still hold;
    /// `fresh` until the first body byte is taken.
    Body { tid: Tid, budget: Option<Box<Budget>>, fresh: bool },
    /// Head emitted, the frame had no body; its end-line was part of the head.
    PendingEnd(Continuation),
    /// Discarding the rest of a failed frame.
    Skip { tid: Tid },
}

impl State {
    fn head() -> Self {
        State::Head { scanned: 0, line_start: 0, lines: 0, tid: None }
    }
}

/// The streaming decoder. One per connection direction.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    state: State,
    /// The last To-Path and From-Path seen, by their text: frames of one session repeat them,
    /// and a hit costs a compare and a clone instead of parsing every URI again.
    paths: PathCache,
    /// Offsets of the LFs ending the current head's lines, recorded while scanning so the
    /// head is split into lines once. Reused from frame to frame.
    line_ends: Vec<u32>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::default())
    }
}

/// Where the body scan stopped.
enum Scan {
    /// The end-line starts at this offset (at its leading CRLF) and has this flag; its total
    /// length is `len`.
    End { at: usize, flag: Continuation, len: usize },
    /// The first `n` bytes are body; the rest may begin an end-line.
    Data(usize),
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder { limits, state: State::head(), paths: PathCache::default(), line_ends: Vec::new() }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True between frames: nothing of a frame has been taken from the buffer or announced.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head { scanned: 0, .. })
    }

    /// Call at end of input: an error when the stream stopped inside a frame (no end-line),
    /// so the caller can log a truncated frame rather than lose it silently.
    pub fn finish(&self, buf: &[u8]) -> Result<(), DecodeError> {
        let between_frames = match self.state {
            State::Head { tid: None, .. } => buf.iter().all(|b| matches!(b, b'\r' | b'\n')),
            _ => false,
        };
        if between_frames { Ok(()) } else { Err(DecodeError::connection(ErrorKind::Truncated)) }
    }

    /// Decodes the next event from the front of `buf`, removing the bytes it used.
    ///
    /// `Ok(None)` means more input is needed. After an error of [`Scope::Connection`] the
    /// decoder's state is unspecified; drop the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, DecodeError> {
        loop {
            match self.state {
                State::Head { .. } => match self.decode_head(buf)? {
                    Some(event) => return Ok(Some(event)),
                    None => return Ok(None),
                },
                State::PendingEnd(flag) => {
                    self.state = State::head();
                    return Ok(Some(Event::End(flag)));
                }
                State::Body { tid, fresh, .. } => {
                    if fresh {
                        // Lenient: a blank line directly followed by the end-line (without the
                        // CRLF that should end the empty data) is an empty body.
                        match leading_end_line(buf, tid.as_bytes()) {
                            Prefix::Match(flag, len) => {
                                let _ = buf.split_to(len);
                                self.state = State::head();
                                return Ok(Some(Event::End(flag)));
                            }
                            Prefix::Maybe => return Ok(None),
                            Prefix::No => {}
                        }
                    }
                    return match self.scan_body(buf, tid) {
                        Scan::End { at: 0, flag, len } => {
                            let _ = buf.split_to(len);
                            self.state = State::head();
                            Ok(Some(Event::End(flag)))
                        }
                        Scan::End { at: n, .. } | Scan::Data(n) if n > 0 => {
                            let State::Body { budget, fresh, .. } = &mut self.state else { unreachable!() };
                            *fresh = false;
                            if let Some(b) = budget {
                                if n as u64 > b.left {
                                    let info = std::mem::replace(
                                        &mut b.info,
                                        FrameInfo { tid, method: None, to_path: None, from_path: None },
                                    );
                                    self.state = State::Skip { tid };
                                    let _ = buf.split_to(n);
                                    let kind = ErrorKind::BodyTooLarge(self.limits.max_non_send_body);
                                    return Err(DecodeError { kind, scope: Scope::Frame, frame: Some(Box::new(info)) });
                                }
                                b.left -= n as u64;
                            }
                            Ok(Some(Event::Body(buf.split_to(n).freeze())))
                        }
                        _ => Ok(None),
                    };
                }
                State::Skip { tid } => match self.scan_body(buf, tid) {
                    Scan::End { at, len, .. } => {
                        let _ = buf.split_to(at + len);
                        self.state = State::head();
                    }
                    Scan::Data(n) => {
                        let _ = buf.split_to(n);
                        return Ok(None);
                    }
                },
            }
        }
    }

    /// Finds the end-line of the frame with transaction id `tid` in `buf`, or how much of `buf`
    /// is certainly body.
    fn scan_body(&self, buf: &[u8], tid: Tid) -> Scan {
        let tid = tid.as_bytes();
        let full = END_NEEDLE.len() + tid.len() + 3;
        let mut needles = EndNeedles::new(buf);
        for at in needles.by_ref() {
            let rest = &buf[at + END_NEEDLE.len()..];
            // Compare what has arrived of `<tid><flag>\r\n`.
            let have = rest.len().min(tid.len());
            if rest[..have] == tid[..have] {
                if rest.len() < tid.len() + 3 {
                    let flag_ok = rest.get(tid.len()).is_none_or(|b| Continuation::from_byte(*b).is_some());
                    let cr_ok = rest.get(tid.len() + 1).is_none_or(|b| *b == b'\r');
                    if flag_ok && cr_ok {
                        // Possibly our end-line, not complete yet: everything before it is body.
                        return Scan::Data(at);
                    }
                } else if let Some(flag) = Continuation::from_byte(rest[tid.len()])
                    && &rest[tid.len() + 1..tid.len() + 3] == b"\r\n"
                {
                    return Scan::End { at, flag, len: full };
                }
            }
            // Dashes that are not our end-line (another frame's, or just data): body.
        }
        // No complete needle: only its last few bytes could start one.
        Scan::Data(buf.len().saturating_sub(END_NEEDLE.len() - 1).max(needles.checked().min(buf.len())))
    }

    fn decode_head(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, DecodeError> {
        let State::Head { mut scanned, mut line_start, mut lines, mut tid } = self.state else {
            unreachable!("decode_head outside the Head state")
        };
        let limits = &self.limits;
        // One newline iterator per call (not one search per line): it keeps its SIMD set-up
        // across the lines of a head that arrived whole.
        let (head_end, end_flag) = 'frame: loop {
            let base = scanned;
            let mut newlines = memchr::memchr_iter(b'\n', &buf[base..]);
            loop {
                let Some(i) = newlines.next() else {
                    let partial = buf.len() - line_start;
                    if lines == 0 {
                        check_start_prefix(&buf[line_start..])?;
                        if partial > limits.max_start_line + 1 {
                            return Err(DecodeError::connection(ErrorKind::StartLineTooLong(limits.max_start_line)));
                        }
                    } else if let Some(t) = tid {
                        if partial > limits.max_header_line + 1 {
                            return Err(self.skip_from(
                                buf,
                                line_start,
                                t,
                                ErrorKind::HeaderLineTooLong(limits.max_header_line),
                            ));
                        }
                        if buf.len() > limits.max_head_bytes {
                            return Err(self.skip_from(
                                buf,
                                line_start,
                                t,
                                ErrorKind::HeadTooLarge(limits.max_head_bytes),
                            ));
                        }
                    }
                    self.state = State::Head { scanned: buf.len(), line_start, lines, tid };
                    return Ok(None);
                };
                let nl = base + i;
                let Some(line) = buf[line_start..nl].strip_suffix(b"\r") else {
                    match tid {
                        None => return Err(DecodeError::connection(ErrorKind::BareLineFeed)),
                        Some(t) => return Err(self.skip_from(buf, line_start, t, ErrorKind::BareLineFeed)),
                    }
                };
                match tid {
                    None if line.is_empty() => {
                        // Stray CRLF between frames (some clients send them as keep-alives).
                        let _ = buf.split_to(nl + 1);
                        scanned = 0;
                        line_start = 0;
                        continue 'frame;
                    }
                    None => {
                        if line.len() > limits.max_start_line {
                            return Err(DecodeError::connection(ErrorKind::StartLineTooLong(limits.max_start_line)));
                        }
                        tid = Some(Tid::from_validated(check_start_line(line)?));
                        self.line_ends.clear();
                    }
                    Some(t) => {
                        if line.is_empty() {
                            break 'frame (nl + 1, None);
                        }
                        if let Some(flag) = end_line_flag(line, t.as_bytes()) {
                            break 'frame (nl + 1, Some(flag));
                        }
                        if line.len() > limits.max_header_line {
                            return Err(self.skip_from(
                                buf,
                                line_start,
                                t,
                                ErrorKind::HeaderLineTooLong(limits.max_header_line),
                            ));
                        }
                        if lines > limits.max_headers {
                            return Err(self.skip_from(
                                buf,
                                line_start,
                                t,
                                ErrorKind::TooManyHeaders(limits.max_headers),
                            ));
                        }
                    }
                }
                self.line_ends.push(nl as u32);
                lines += 1;
                line_start = nl + 1;
                if line_start > limits.max_head_bytes {
                    let t = tid.expect("set by the start line");
                    return Err(self.skip_from(buf, line_start, t, ErrorKind::HeadTooLarge(limits.max_head_bytes)));
                }
            }
        };
        let tid = tid.expect("set by the start line");
        let head = buf.split_to(head_end).freeze();
        let parsed = parse_head(head, &self.line_ends, tid, &mut self.paths);
        self.state = match (&parsed, end_flag) {
            (Err(_), None) => State::Skip { tid },
            (_, Some(flag)) if parsed.is_ok() => State::PendingEnd(flag),
            (_, Some(_)) => State::head(),
            (Ok(message), None) => {
                let budget = match message {
                    Message::Request(r) if r.method == Method::Send => None,
                    Message::Request(r) => Some(Box::new(Budget {
                        left: limits.max_non_send_body,
                        info: FrameInfo {
                            tid,
                            method: Some(r.method.clone()),
                            to_path: r.headers.to_path().cloned(),
                            from_path: r.headers.from_path().cloned(),
                        },
                    })),
                    Message::Response(_) => Some(Box::new(Budget {
                        left: limits.max_non_send_body,
                        info: FrameInfo { tid, method: None, to_path: None, from_path: None },
                    })),
                };
                State::Body { tid, budget, fresh: true }
            }
        };
        parsed.map(|m| Some(Event::Head(m)))
    }

    /// Drops the head so far (keeping the CRLF before `line_start`, which may begin the
    /// end-line) and skips the rest of the frame.
    fn skip_from(&mut self, buf: &mut BytesMut, line_start: usize, tid: Tid, kind: ErrorKind) -> DecodeError {
        let head = buf.split_to(line_start.saturating_sub(2)).freeze();
        self.state = State::Skip { tid };
        // Report what the complete lines told us (method, paths) so a 400 can be addressed.
        let frame = match parse_head(head, &self.line_ends, tid, &mut self.paths) {
            Ok(Message::Request(r)) => Box::new(FrameInfo {
                tid: r.tid,
                method: Some(r.method),
                to_path: r.headers.to_path().cloned(),
                from_path: r.headers.from_path().cloned(),
            }),
            Ok(Message::Response(r)) => {
                Box::new(FrameInfo { tid: r.tid, method: None, to_path: None, from_path: None })
            }
            Err(e) => e.frame.unwrap_or_else(|| bare_info(tid)),
        };
        DecodeError { kind, scope: Scope::Frame, frame: Some(frame) }
    }
}

/// Fails early when the first bytes cannot begin `MSRP ` (e.g. a TLS handshake or HTTP sent to
/// a plain MSRP port), instead of waiting for a line that never ends.
fn check_start_prefix(partial: &[u8]) -> Result<(), DecodeError> {
    if partial.first() == Some(&b'\r') {
        return Ok(()); // a stray CRLF, handled once its LF arrives
    }
    let n = partial.len().min(5);
    if partial[..n] != b"MSRP "[..n] {
        return Err(DecodeError::connection(ErrorKind::BadStartLine));
    }
    Ok(())
}

/// Validates `MSRP SP transact-id SP (method / status-code [SP comment])` and returns the tid.
pub(crate) fn check_start_line(line: &[u8]) -> Result<&[u8], DecodeError> {
    let rest = line.strip_prefix(b"MSRP ").ok_or(DecodeError::connection(ErrorKind::BadStartLine))?;
    let sp = memchr::memchr(b' ', rest).ok_or(DecodeError::connection(ErrorKind::BadStartLine))?;
    let tid = &rest[..sp];
    let tid_ok = (4..=MAX_TID_LEN).contains(&tid.len())
        && tid[0].is_ascii_alphanumeric()
        && tid.iter().all(|&b| crate::syntax::is_ident_char(b));
    if !tid_ok {
        return Err(DecodeError::connection(ErrorKind::BadTransactionId));
    }
    let what = &rest[sp + 1..];
    let is_method = crate::syntax::is_method(what);
    let is_status = what.len() >= 3
        && what[..3].iter().all(u8::is_ascii_digit)
        && (what.len() == 3
            || (what[3] == b' ' && std::str::from_utf8(&what[4..]).is_ok_and(crate::syntax::is_utf8text)));
    if !(is_method || is_status) {
        return Err(DecodeError::connection(ErrorKind::BadStartLine));
    }
    Ok(tid)
}

/// One remembered path per header: its text (a private copy, so the cache never pins the
/// caller's read buffer) and the parsed value.
#[derive(Debug, Default)]
struct PathCache {
    to: Option<(ByteString, Path)>,
    from: Option<(ByteString, Path)>,
}

impl PathCache {
    fn get(slot: &mut Option<(ByteString, Path)>, name: &'static str, value: &str) -> Result<Path, HeaderError> {
        if let Some((text, path)) = slot
            && **text == *value
        {
            return Ok(path.clone());
        }
        let text = ByteString::from(value);
        let path = Path::parse(name, &text, &text)?;
        *slot = Some((text, path.clone()));
        Ok(path)
    }
}

enum Prefix {
    Match(Continuation, usize),
    Maybe,
    No,
}

/// Whether `buf` begins with the end-line `-------<tid><flag>\r\n`, may still turn out to
/// once more bytes arrive, or cannot.
fn leading_end_line(buf: &[u8], tid: &[u8]) -> Prefix {
    let flag_at = DASHES.len() + tid.len();
    let len = flag_at + 3;
    let expected = |i: usize| -> Option<u8> {
        match i {
            _ if i < DASHES.len() => Some(b'-'),
            _ if i < flag_at => Some(tid[i - DASHES.len()]),
            _ if i == flag_at => None,
            _ if i == flag_at + 1 => Some(b'\r'),
            _ => Some(b'\n'),
        }
    };
    for (i, &b) in buf.iter().take(len).enumerate() {
        let ok = match expected(i) {
            Some(e) => b == e,
            None => Continuation::from_byte(b).is_some(),
        };
        if !ok {
            return Prefix::No;
        }
    }
    match buf.get(flag_at).and_then(|b| Continuation::from_byte(*b)) {
        Some(flag) if buf.len() >= len => Prefix::Match(flag, len),
        _ => Prefix::Maybe,
    }
}

/// `Some(flag)` when `line` is `-------<tid><flag>`.
fn end_line_flag(line: &[u8], tid: &[u8]) -> Option<Continuation> {
    let rest = line.strip_prefix(DASHES)?.strip_prefix(tid)?;
    match rest {
        [flag] => Continuation::from_byte(*flag),
        _ => None,
    }
}

/// Parses a head: the start line and header lines that end at `line_ends` (the blank line or
/// end-line that closes the head is not among them). The start line was validated while
/// scanning.
fn parse_head(head: Bytes, line_ends: &[u32], scanned_tid: Tid, paths: &mut PathCache) -> Result<Message, DecodeError> {
    let Ok(text) = ByteString::try_from(head) else {
        return Err(DecodeError {
            kind: ErrorKind::InvalidUtf8,
            scope: Scope::Frame,
            frame: Some(bare_info(scanned_tid)),
        });
    };
    // Every line ends in CRLF (checked while scanning).
    let mut from = 0;
    let mut lines = line_ends.iter().map(|&nl| {
        let line = &text[from..nl as usize - 1];
        from = nl as usize + 1;
        line
    });
    let start = lines.next().unwrap_or_default();
    // `MSRP SP tid SP rest`, validated by `check_start_line`.
    let after = &start[5..];
    let sp = after.bytes().position(|b| b == b' ').unwrap_or(after.len());
    let (tid, what) = (&after[..sp], &after[(sp + 1).min(after.len())..]);
    let tid = TransactionId::from_validated(tid.as_bytes());
    let (method, status) = if what.as_bytes()[0].is_ascii_digit() {
        let code = StatusCode(what[..3].parse().unwrap_or(0));
        let comment = what.get(4..).map(|c| text.slice_ref(c));
        (None, Some((code, comment)))
    } else {
        (Some(Method::parse(&text.slice_ref(what)).ok_or(DecodeError::connection(ErrorKind::BadStartLine))?), None)
    };

    let mut headers = Headers::with_capacity(8);
    let mut first_error: Option<ErrorKind> = None;
    for line in lines {
        // The name is a token running up to the colon: one scan finds and validates it.
        let name_len = line.bytes().take_while(|&b| crate::syntax::is_token_char(b)).count();
        let header = if line.as_bytes().get(name_len) == Some(&b':') && name_len > 0 {
            let value = crate::syntax::trim_ws(&line[name_len + 1..]);
            let name = &line[..name_len];
            let parsed = match Name::of(name) {
                Some(Name::ToPath) => PathCache::get(&mut paths.to, name::TO_PATH, value).map(Header::ToPath),
                Some(Name::FromPath) => PathCache::get(&mut paths.from, name::FROM_PATH, value).map(Header::FromPath),
                _ => Header::parse_in(&text, name, value),
            };
            parsed.map_err(ErrorKind::MalformedHeader)
        } else if line.contains(':') {
            Err(ErrorKind::MalformedHeader(HeaderError::new("(unnamed)", "header name is not a token")))
        } else {
            Err(ErrorKind::HeaderWithoutColon)
        };
        match header {
            Ok(h) => {
                if let Err(dup) = headers.push(h) {
                    first_error.get_or_insert(ErrorKind::DuplicateHeader(dup.name().to_owned()));
                }
            }
            Err(kind) => {
                first_error.get_or_insert(kind);
            }
        }
    }
    if first_error.is_none() {
        if headers.to_path().is_none() {
            first_error = Some(ErrorKind::MissingHeader("To-Path"));
        } else if headers.from_path().is_none() {
            first_error = Some(ErrorKind::MissingHeader("From-Path"));
        }
    }
    if let Some(kind) = first_error {
        let info =
            FrameInfo { tid, method, to_path: headers.to_path().cloned(), from_path: headers.from_path().cloned() };
        return Err(DecodeError { kind, scope: Scope::Frame, frame: Some(Box::new(info)) });
    }
    Ok(match (method, status) {
        (Some(method), _) => Message::Request(Request { tid, method, headers }),
        (None, Some((status, comment))) => Message::Response(Response { tid, status, comment, headers }),
        (None, None) => unreachable!("a start line is a request or a response"),
    })
}

#[cfg(test)]
mod needle_tests {
    use super::*;

    #[test]
    fn end_needles_are_found_in_short_and_long_haystacks_alike() {
        for len in [10, 200, 255, 256, 257, 5000] {
            let mut hay = vec![b'x'; len];
            let mut want: Vec<usize> = Vec::new();
            for at in [0, len / 3, len.saturating_sub(END_NEEDLE.len())] {
                if at + END_NEEDLE.len() <= len && want.last().is_none_or(|w| at >= w + END_NEEDLE.len()) {
                    hay[at..at + END_NEEDLE.len()].copy_from_slice(END_NEEDLE);
                    want.push(at);
                }
            }
            if want.iter().all(|w| len / 2 < *w || len / 2 >= w + END_NEEDLE.len()) {
                hay[len / 2] = b'\r'; // a lone CR is not a needle
            }
            assert_eq!(EndNeedles::new(&hay).collect::<Vec<_>>(), want, "len {len}");
        }
    }
}
