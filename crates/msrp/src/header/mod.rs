//! MSRP headers: every header of the IANA MSRP registry typed (RFC 4975 §10.3, RFC 4976 §10,
//! RFC 7701), anything else kept verbatim and in order.
//!
//! Header names are matched case-insensitively and printed in their registered spelling.

mod auth_params;
mod authentication_info;
mod authorization;
mod byte_range;
mod content_description;
mod content_disposition;
mod content_id;
mod content_type;
mod expires;
mod failure_report;
mod message_id;
mod path;
mod status;
mod success_report;
mod use_nickname;
mod www_authenticate;

use std::fmt;

use bytestring::ByteString;
use thiserror::Error;

pub use auth_params::AuthParam;
pub use authentication_info::AuthenticationInfo;
pub use authorization::Credentials;
pub use byte_range::ByteRange;
pub use content_description::ContentDescription;
pub use content_disposition::ContentDisposition;
pub use content_id::ContentId;
pub use content_type::ContentType;
pub use failure_report::FailureReport;
pub use message_id::{MAX_MESSAGE_ID_LEN, MessageId};
pub use path::Path;
pub use status::Status;
pub use success_report::SuccessReport;
pub use use_nickname::UseNickname;
pub use www_authenticate::Challenge;

/// A header whose value does not follow its grammar.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed {name} header: {why}")]
pub struct HeaderError {
    pub name: &'static str,
    pub why: &'static str,
}

impl HeaderError {
    pub(crate) fn new(name: &'static str, why: &'static str) -> Self {
        HeaderError { name, why }
    }
}

/// One header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    ToPath(Path),
    FromPath(Path),
    UsePath(Path),
    MessageId(MessageId),
    SuccessReport(SuccessReport),
    FailureReport(FailureReport),
    ByteRange(ByteRange),
    Status(Status),
    Expires(u32),
    MinExpires(u32),
    MaxExpires(u32),
    // Rare and large: boxed so that every header stays small to move and store.
    WwwAuthenticate(Box<Challenge>),
    Authorization(Box<Credentials>),
    AuthenticationInfo(Box<AuthenticationInfo>),
    UseNickname(UseNickname),
    ContentType(ContentType),
    ContentId(ContentId),
    ContentDescription(ContentDescription),
    ContentDisposition(Box<ContentDisposition>),
    /// Any other header, name and value exactly as received.
    Other(OtherHeader),
}

/// Registered names, in the spelling we print.
pub mod name {
    pub const TO_PATH: &str = "To-Path";
    pub const FROM_PATH: &str = "From-Path";
    pub const USE_PATH: &str = "Use-Path";
    pub const MESSAGE_ID: &str = "Message-ID";
    pub const SUCCESS_REPORT: &str = "Success-Report";
    pub const FAILURE_REPORT: &str = "Failure-Report";
    pub const BYTE_RANGE: &str = "Byte-Range";
    pub const STATUS: &str = "Status";
    pub const EXPIRES: &str = "Expires";
    pub const MIN_EXPIRES: &str = "Min-Expires";
    pub const MAX_EXPIRES: &str = "Max-Expires";
    pub const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
    pub const AUTHORIZATION: &str = "Authorization";
    pub const AUTHENTICATION_INFO: &str = "Authentication-Info";
    pub const USE_NICKNAME: &str = "Use-Nickname";
    pub const CONTENT_TYPE: &str = "Content-Type";
    pub const CONTENT_ID: &str = "Content-ID";
    pub const CONTENT_DESCRIPTION: &str = "Content-Description";
    pub const CONTENT_DISPOSITION: &str = "Content-Disposition";
}

/// The headers the codec knows by name (RFC 4975 §9, RFC 4976 §5, RFC 7701 §10); anything
/// else is an [`OtherHeader`]. One recognizer for the decoder, the typed parser and the
/// relay's fast path, so they never disagree on what a name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    ToPath,
    FromPath,
    MessageId,
    ByteRange,
    ContentType,
    SuccessReport,
    FailureReport,
    Status,
    UsePath,
    Expires,
    MinExpires,
    MaxExpires,
    WwwAuthenticate,
    Authorization,
    AuthenticationInfo,
    UseNickname,
    ContentId,
    ContentDescription,
    ContentDisposition,
}

impl Name {
    /// The name a header line starts with when it is spelled as registered and followed by
    /// its colon, and the name's length: what nearly every peer sends, recognized without a
    /// scan of the name's characters (the relay's lexer, for every header of every frame).
    /// `None` says only "not in that spelling": [`Name::of`] is the recognizer for the rest.
    #[inline(always)]
    pub fn at_start(line: &[u8]) -> Option<(Name, usize)> {
        use name::*;
        let (n, text) = match (line.first()?, line.get(1)?) {
            (b'T', b'o') => (Name::ToPath, TO_PATH),
            (b'F', b'r') => (Name::FromPath, FROM_PATH),
            (b'F', b'a') => (Name::FailureReport, FAILURE_REPORT),
            (b'S', b'u') => (Name::SuccessReport, SUCCESS_REPORT),
            (b'M', b'e') => (Name::MessageId, MESSAGE_ID),
            (b'B', b'y') => (Name::ByteRange, BYTE_RANGE),
            (b'C', b'o') => (Name::ContentType, CONTENT_TYPE),
            _ => return None,
        };
        let len = text.len();
        (line.get(len) == Some(&b':') && &line[..len] == text.as_bytes()).then_some((n, len))
    }

    /// The header `hname` names, in any case; `None` for an unknown one. Dispatches on the
    /// length first, then compares exactly (the registered spelling, what peers send) before
    /// case-insensitively: this runs for every header of every frame.
    #[inline(always)]
    pub fn of(hname: &str) -> Option<Name> {
        use name::*;
        let is = |n: &str| hname == n || hname.eq_ignore_ascii_case(n);
        Some(match hname.len() {
            7 if is(TO_PATH) => Name::ToPath,
            9 if is(FROM_PATH) => Name::FromPath,
            10 if is(MESSAGE_ID) => Name::MessageId,
            10 if is(BYTE_RANGE) => Name::ByteRange,
            12 if is(CONTENT_TYPE) => Name::ContentType,
            14 if is(SUCCESS_REPORT) => Name::SuccessReport,
            14 if is(FAILURE_REPORT) => Name::FailureReport,
            6 if is(STATUS) => Name::Status,
            8 if is(USE_PATH) => Name::UsePath,
            7 if is(EXPIRES) => Name::Expires,
            11 if is(MIN_EXPIRES) => Name::MinExpires,
            11 if is(MAX_EXPIRES) => Name::MaxExpires,
            16 if is(WWW_AUTHENTICATE) => Name::WwwAuthenticate,
            13 if is(AUTHORIZATION) => Name::Authorization,
            19 if is(AUTHENTICATION_INFO) => Name::AuthenticationInfo,
            12 if is(USE_NICKNAME) => Name::UseNickname,
            10 if is(CONTENT_ID) => Name::ContentId,
            19 if is(CONTENT_DESCRIPTION) => Name::ContentDescription,
            19 if is(CONTENT_DISPOSITION) => Name::ContentDisposition,
            _ => return None,
        })
    }
}

impl Header {
    /// Parses one header from its name and (trimmed) value.
    pub fn parse(hname: &str, value: &str) -> Result<Header, HeaderError> {
        if !crate::syntax::is_token(hname) {
            return Err(HeaderError::new("(unnamed)", "header name is not a token"));
        }
        let text = ByteString::from(format!("{hname}{value}"));
        Header::parse_in(&text, &text[..hname.len()], &text[hname.len()..])
    }

    /// Parses one header whose name and value are slices of `text`; the values that keep text
    /// (URIs, ids, media types, unknown headers) share `text`'s buffer instead of copying.
    pub(crate) fn parse_in(text: &ByteString, hname: &str, value: &str) -> Result<Header, HeaderError> {
        use name::*;
        let shared = || text.slice_ref(value);
        // Dispatch on the name's length first, then one comparison: exact (the registered
        // spelling, what peers send) before case-insensitive.
        let Some(known) = Name::of(hname) else {
            // The caller checked that the name is a token.
            return Ok(Header::Other(OtherHeader::new(text, hname, value)));
        };
        Ok(match known {
            Name::ToPath => Header::ToPath(Path::parse(TO_PATH, text, value)?),
            Name::FromPath => Header::FromPath(Path::parse(FROM_PATH, text, value)?),
            Name::MessageId => Header::MessageId(MessageId::parse(&shared())?),
            Name::ByteRange => Header::ByteRange(ByteRange::parse(value)?),
            Name::ContentType => Header::ContentType(ContentType::parse(&shared())?),
            Name::SuccessReport => Header::SuccessReport(SuccessReport::parse(value)?),
            Name::FailureReport => Header::FailureReport(FailureReport::parse(value)?),
            Name::Status => Header::Status(Status::parse(&shared())?),
            Name::UsePath => Header::UsePath(Path::parse(USE_PATH, text, value)?),
            Name::Expires => Header::Expires(expires::parse_seconds(EXPIRES, value)?),
            Name::MinExpires => Header::MinExpires(expires::parse_seconds(MIN_EXPIRES, value)?),
            Name::MaxExpires => Header::MaxExpires(expires::parse_seconds(MAX_EXPIRES, value)?),
            Name::WwwAuthenticate => Header::WwwAuthenticate(Box::new(Challenge::parse(value)?)),
            Name::Authorization => Header::Authorization(Box::new(Credentials::parse(value)?)),
            Name::AuthenticationInfo => Header::AuthenticationInfo(Box::new(AuthenticationInfo::parse(value)?)),
            Name::UseNickname => Header::UseNickname(UseNickname::parse(value)?),
            Name::ContentId => Header::ContentId(ContentId::parse(&shared())?),
            Name::ContentDescription => Header::ContentDescription(ContentDescription::parse(&shared())?),
            Name::ContentDisposition => Header::ContentDisposition(Box::new(ContentDisposition::parse(value)?)),
        })
    }

    /// The header's name as printed.
    pub fn name(&self) -> &str {
        use name::*;
        match self {
            Header::ToPath(_) => TO_PATH,
            Header::FromPath(_) => FROM_PATH,
            Header::UsePath(_) => USE_PATH,
            Header::MessageId(_) => MESSAGE_ID,
            Header::SuccessReport(_) => SUCCESS_REPORT,
            Header::FailureReport(_) => FAILURE_REPORT,
            Header::ByteRange(_) => BYTE_RANGE,
            Header::Status(_) => STATUS,
            Header::Expires(_) => EXPIRES,
            Header::MinExpires(_) => MIN_EXPIRES,
            Header::MaxExpires(_) => MAX_EXPIRES,
            Header::WwwAuthenticate(_) => WWW_AUTHENTICATE,
            Header::Authorization(_) => AUTHORIZATION,
            Header::AuthenticationInfo(_) => AUTHENTICATION_INFO,
            Header::UseNickname(_) => USE_NICKNAME,
            Header::ContentType(_) => CONTENT_TYPE,
            Header::ContentId(_) => CONTENT_ID,
            Header::ContentDescription(_) => CONTENT_DESCRIPTION,
            Header::ContentDisposition(_) => CONTENT_DISPOSITION,
            Header::Other(o) => o.name(),
        }
    }

    /// True for the MIME headers that belong with the body (RFC 4975 §9 `content-stuff`);
    /// they are printed after all others.
    pub fn is_content(&self) -> bool {
        match self {
            Header::ContentType(_)
            | Header::ContentId(_)
            | Header::ContentDescription(_)
            | Header::ContentDisposition(_) => true,
            Header::Other(o) => o.name().len() > 8 && o.name()[..8].eq_ignore_ascii_case("content-"),
            _ => false,
        }
    }

    /// A bit identifying the registered kind; 0 for the kinds that may repeat: several
    /// challenges in one 401 (RFC 7616 §3.7) and unregistered extensions, whose rules we
    /// cannot know.
    fn kind_bit(&self) -> u32 {
        let index = match self {
            Header::ToPath(_) => 0,
            Header::FromPath(_) => 1,
            Header::UsePath(_) => 2,
            Header::MessageId(_) => 3,
            Header::SuccessReport(_) => 4,
            Header::FailureReport(_) => 5,
            Header::ByteRange(_) => 6,
            Header::Status(_) => 7,
            Header::Expires(_) => 8,
            Header::MinExpires(_) => 9,
            Header::MaxExpires(_) => 10,
            Header::Authorization(_) => 11,
            Header::AuthenticationInfo(_) => 12,
            Header::UseNickname(_) => 13,
            Header::ContentType(_) => 14,
            Header::ContentId(_) => 15,
            Header::ContentDescription(_) => 16,
            Header::ContentDisposition(_) => 17,
            Header::WwwAuthenticate(_) | Header::Other(_) => return 0,
        };
        1 << index
    }
}

impl Header {
    /// Writes the value alone (what follows `Name: `).
    pub(crate) fn fmt_value(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Header::ToPath(p) | Header::FromPath(p) | Header::UsePath(p) => fmt::Display::fmt(p, f),
            Header::MessageId(v) => fmt::Display::fmt(v, f),
            Header::SuccessReport(v) => fmt::Display::fmt(v, f),
            Header::FailureReport(v) => fmt::Display::fmt(v, f),
            Header::ByteRange(v) => fmt::Display::fmt(v, f),
            Header::Status(v) => fmt::Display::fmt(v, f),
            Header::Expires(v) | Header::MinExpires(v) | Header::MaxExpires(v) => fmt::Display::fmt(v, f),
            Header::WwwAuthenticate(v) => fmt::Display::fmt(v, f),
            Header::Authorization(v) => fmt::Display::fmt(v, f),
            Header::AuthenticationInfo(v) => fmt::Display::fmt(v, f),
            Header::UseNickname(v) => fmt::Display::fmt(v, f),
            Header::ContentType(v) => fmt::Display::fmt(v, f),
            Header::ContentId(v) => fmt::Display::fmt(v, f),
            Header::ContentDescription(v) => fmt::Display::fmt(v, f),
            Header::ContentDisposition(v) => fmt::Display::fmt(v, f),
            Header::Other(o) => f.write_str(o.value()),
        }
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
        self.fmt_value(f)
    }
}

/// An unregistered header: the received text from the name to the end of the value, with the
/// offsets that split it (one shared slice instead of two).
#[derive(Clone)]
pub struct OtherHeader {
    text: ByteString,
    name_end: u16,
    value_start: u16,
}

impl OtherHeader {
    /// `name` and `value` are slices of `text`, name first.
    fn new(text: &ByteString, name: &str, value: &str) -> Self {
        let base = text.as_ptr() as usize;
        let start = name.as_ptr() as usize - base;
        let value_start = value.as_ptr() as usize - base;
        let end = value_start + value.len();
        OtherHeader {
            text: text.slice_ref(&text[start..end]),
            name_end: name.len() as u16,
            value_start: (value_start - start) as u16,
        }
    }

    pub fn name(&self) -> &str {
        &self.text[..self.name_end as usize]
    }

    pub fn value(&self) -> &str {
        &self.text[self.value_start as usize..]
    }
}

/// Same name and value, however the text between them was spaced.
impl PartialEq for OtherHeader {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.value() == other.value()
    }
}

impl Eq for OtherHeader {}

impl fmt::Debug for OtherHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.value())
    }
}

/// The headers of one message, in received (or insertion) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    list: Vec<Header>,
    /// One bit per registered kind present ([`Header::kind_bit`]): duplicate checks and
    /// "is it there" answers without walking the list.
    seen: u32,
}

macro_rules! getter {
    ($(#[$doc:meta])* $fn:ident, $variant:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $fn(&self) -> Option<&$ty> {
            self.list.iter().find_map(|h| match h {
                // `Borrow` serves plain and boxed variants alike.
                Header::$variant(v) => Some(std::borrow::Borrow::<$ty>::borrow(v)),
                _ => None,
            })
        }
    };
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Headers { list: Vec::with_capacity(n), seen: 0 }
    }

    /// Appends a header. Returns it back when it is a second copy of a header that may occur
    /// only once.
    pub fn push(&mut self, header: Header) -> Result<(), Header> {
        let bit = header.kind_bit();
        if self.seen & bit != 0 {
            return Err(header);
        }
        self.seen |= bit;
        self.list.push(header);
        Ok(())
    }

    /// Replaces the header of the same kind, or appends it.
    pub fn set(&mut self, header: Header) {
        let bit = header.kind_bit();
        if self.seen & bit != 0
            && let Some(slot) = self.list.iter_mut().find(|h| h.kind_bit() == bit)
        {
            *slot = header;
            return;
        }
        self.seen |= bit;
        self.list.push(header);
    }

    /// Removes every header for which `keep` is false.
    pub fn retain(&mut self, keep: impl FnMut(&Header) -> bool) {
        self.list.retain(keep);
        self.seen = self.list.iter().fold(0, |acc, h| acc | h.kind_bit());
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    getter!(to_path, ToPath, Path);
    getter!(from_path, FromPath, Path);
    getter!(use_path, UsePath, Path);
    getter!(message_id, MessageId, MessageId);
    getter!(byte_range, ByteRange, ByteRange);
    getter!(status, Status, Status);
    getter!(authorization, Authorization, Credentials);
    getter!(authentication_info, AuthenticationInfo, AuthenticationInfo);
    getter!(use_nickname, UseNickname, UseNickname);
    getter!(content_type, ContentType, ContentType);
    getter!(content_id, ContentId, ContentId);
    getter!(content_description, ContentDescription, ContentDescription);
    getter!(content_disposition, ContentDisposition, ContentDisposition);

    pub fn to_path_mut(&mut self) -> Option<&mut Path> {
        self.list.iter_mut().find_map(|h| match h {
            Header::ToPath(v) => Some(v),
            _ => None,
        })
    }

    pub fn from_path_mut(&mut self) -> Option<&mut Path> {
        self.list.iter_mut().find_map(|h| match h {
            Header::FromPath(v) => Some(v),
            _ => None,
        })
    }

    /// Success-Report, `no` when absent (RFC 4975 §7.1.2).
    pub fn success_report(&self) -> SuccessReport {
        self.list
            .iter()
            .find_map(|h| if let Header::SuccessReport(v) = h { Some(*v) } else { None })
            .unwrap_or_default()
    }

    /// Failure-Report, `yes` when absent (RFC 4975 §7.1.2).
    pub fn failure_report(&self) -> FailureReport {
        self.list
            .iter()
            .find_map(|h| if let Header::FailureReport(v) = h { Some(*v) } else { None })
            .unwrap_or_default()
    }

    pub fn expires(&self) -> Option<u32> {
        self.list.iter().find_map(|h| if let Header::Expires(v) = h { Some(*v) } else { None })
    }

    pub fn min_expires(&self) -> Option<u32> {
        self.list.iter().find_map(|h| if let Header::MinExpires(v) = h { Some(*v) } else { None })
    }

    pub fn max_expires(&self) -> Option<u32> {
        self.list.iter().find_map(|h| if let Header::MaxExpires(v) = h { Some(*v) } else { None })
    }

    /// Every challenge of a 401, in order.
    pub fn challenges(&self) -> impl Iterator<Item = &Challenge> {
        self.list.iter().filter_map(|h| if let Header::WwwAuthenticate(v) = h { Some(&**v) } else { None })
    }

    /// The value of an unregistered header (name matched case-insensitively).
    pub fn other(&self, wanted: &str) -> Option<&str> {
        self.list.iter().find_map(|h| match h {
            Header::Other(o) if o.name().eq_ignore_ascii_case(wanted) => Some(o.value()),
            _ => None,
        })
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Result<Header, HeaderError> {
        Header::parse(name, value)
    }

    #[test]
    fn a_registered_spelling_at_a_lines_start_is_what_name_of_says() {
        use name::*;
        let all = [
            TO_PATH,
            FROM_PATH,
            MESSAGE_ID,
            BYTE_RANGE,
            CONTENT_TYPE,
            SUCCESS_REPORT,
            FAILURE_REPORT,
            STATUS,
            USE_PATH,
            EXPIRES,
            MIN_EXPIRES,
            MAX_EXPIRES,
            WWW_AUTHENTICATE,
            AUTHORIZATION,
            AUTHENTICATION_INFO,
            USE_NICKNAME,
            CONTENT_ID,
            CONTENT_DESCRIPTION,
            CONTENT_DISPOSITION,
        ];
        // The seven a relayed SEND carries are recognized in their spelling, as `Name::of`
        // reads them; the others are left to the scan.
        let seven = [TO_PATH, FROM_PATH, MESSAGE_ID, BYTE_RANGE, CONTENT_TYPE, SUCCESS_REPORT, FAILURE_REPORT];
        for n in all {
            let line = format!("{n}: x");
            let got = Name::at_start(line.as_bytes());
            assert_eq!(got.is_some(), seven.contains(&n), "{n}");
            if let Some((got, len)) = got {
                assert_eq!((Some(got), len), (Name::of(n), n.len()), "{n}");
            }
        }
        assert_eq!(Name::at_start(b"To-Path: x"), Some((Name::ToPath, 7)));
        assert_eq!(Name::at_start(b"Content-Type:text/plain"), Some((Name::ContentType, 12)));
        // Not in the registered spelling, or not followed by the colon: left to the scan.
        for line in [&b"to-path: x"[..], b"To-Path : x", b"To-Paths: x", b"To-Pat", b"Content-ID: x", b"T"] {
            assert_eq!(Name::at_start(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn one_recognizer_for_every_known_name() {
        assert_eq!(Name::of("To-Path"), Some(Name::ToPath));
        assert_eq!(Name::of("to-path"), Some(Name::ToPath));
        assert_eq!(Name::of("CONTENT-DISPOSITION"), Some(Name::ContentDisposition));
        assert_eq!(Name::of("Content-Description"), Some(Name::ContentDescription));
        assert_eq!(Name::of("To-Paths"), None);
        assert_eq!(Name::of("X-Custom"), None);
        // Every known header's printed name reads back as itself.
        for hdr in [h("Expires", "5").unwrap(), h("Use-Nickname", "\"a\"").unwrap(), h("Status", "000 200").unwrap()] {
            assert!(Name::of(hdr.name()).is_some(), "{}", hdr.name());
        }
    }

    #[test]
    fn names_are_case_insensitive_and_printed_canonically() {
        let x = h("message-id", "abcd1234").unwrap();
        assert_eq!(x.to_string(), "Message-ID: abcd1234");
        let x = h("BYTE-RANGE", "1-*/*").unwrap();
        assert_eq!(x.to_string(), "Byte-Range: 1-*/*");
    }

    #[test]
    fn unknown_headers_kept_verbatim() {
        let x = h("X-Thing", "  odd : value ").unwrap();
        assert_eq!(x.to_string(), "X-Thing:   odd : value ");
        assert!(!x.is_content());
        assert!(h("content-language", "en").unwrap().is_content());
    }

    #[test]
    fn every_registered_header_round_trips() {
        for (n, v) in [
            ("To-Path", "msrp://a:1/s;tcp"),
            ("From-Path", "msrp://b:2/t;tcp msrp://c:3/u;tcp"),
            ("Use-Path", "msrps://relay:2855/x;tcp"),
            ("Message-ID", "abcd"),
            ("Success-Report", "yes"),
            ("Failure-Report", "partial"),
            ("Byte-Range", "1-10/10"),
            ("Status", "000 200 OK"),
            ("Expires", "600"),
            ("Min-Expires", "60"),
            ("Max-Expires", "3600"),
            ("WWW-Authenticate", r#"Digest realm="r", nonce="n", qop="auth""#),
            ("Authorization", r#"Digest username="u", response="r""#),
            ("Authentication-Info", r#"nextnonce="x""#),
            ("Use-Nickname", r#""nick""#),
            ("Content-Type", "text/plain"),
            ("Content-ID", "<a@b>"),
            ("Content-Description", "a file"),
            ("Content-Disposition", "attachment;filename=x.txt"),
        ] {
            let parsed = h(n, v).unwrap();
            assert!(!matches!(parsed, Header::Other(_)), "{n} not typed");
            assert_eq!(parsed.to_string(), format!("{n}: {v}"));
        }
    }

    #[test]
    fn duplicates_refused_except_challenges() {
        let mut hs = Headers::new();
        hs.push(h("Message-ID", "abcd").unwrap()).unwrap();
        assert!(hs.push(h("Message-ID", "efgh").unwrap()).is_err());
        hs.push(h("WWW-Authenticate", r#"Digest realm="r", algorithm=SHA-256"#).unwrap()).unwrap();
        hs.push(h("WWW-Authenticate", r#"Digest realm="r", algorithm=MD5"#).unwrap()).unwrap();
        assert_eq!(hs.challenges().count(), 2);
        hs.push(h("X-A", "1").unwrap()).unwrap();
        hs.push(h("X-A", "2").unwrap()).unwrap();
        assert_eq!(hs.other("x-a"), Some("1"));
    }

    #[test]
    fn report_defaults() {
        let hs = Headers::new();
        assert_eq!(hs.success_report(), SuccessReport::No);
        assert_eq!(hs.failure_report(), FailureReport::Yes);
    }
}
