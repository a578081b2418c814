//! The SDP of a chat join (RFC 4566 syntax, RFC 4975 §8 and RFC 6135 for MSRP media, RFC 7701
//! for the chat-room attributes): read the participant's offer, pick the chat stream, write
//! the answer.
//!
//! Hand-written on purpose: the general SDP crates either reject `m=message … TCP/MSRP` or
//! hand back attributes as opaque pairs, and all this needs is the media lines, their
//! attributes and a fixed answer.

use msrp::{ByteString, Uri};

/// The port an MSRP URI without one means (RFC 4975 §15.1 registers 2855 for msrp and msrps).
pub(crate) const DEFAULT_MSRP_PORT: u16 = 2855;

/// Most lines an offer may hold; a SIP body is small and anything bigger is not a chat offer.
pub const MAX_SDP_LINES: usize = 512;

/// One `m=` section of an offer, with its attributes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    /// `a=name[:value]` lines of this section.
    pub attrs: Vec<(String, Option<String>)>,
}

impl Media {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_deref())
    }

    pub(crate) fn has_flag(&self, name: &str) -> bool {
        self.attrs.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The `m=` line with port 0: how an answer rejects this stream (RFC 3264 §6).
    pub(crate) fn rejected_line(&self) -> String {
        let formats = if self.formats.is_empty() { "*".to_owned() } else { self.formats.join(" ") };
        format!("m={} 0 {} {}\r\n", self.kind, self.proto, formats)
    }
}

/// A parsed offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub media: Vec<Media>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP has more than {MAX_SDP_LINES} lines")]
    TooLong,
    #[error("malformed SDP line {0:?}")]
    BadLine(String),
    #[error("SDP has no v=0 line")]
    NoVersion,
}

/// Who opens the MSRP connection (RFC 6135; RFC 4975 §5.4 when the offer has no `a=setup`,
/// which makes the offerer the active side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// The participant connects to the server's `msrp_listen`.
    Inbound,
    /// The server connects to the first URI of the participant's path.
    Outbound,
}

/// The chat stream chosen from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatStream {
    /// Index of the chosen `m=` section.
    pub index: usize,
    /// `TCP/TLS/MSRP` rather than `TCP/MSRP`.
    pub secure: bool,
    /// The participant's `a=path`, first hop first.
    pub path: Vec<Uri>,
    pub connect: Connect,
}

impl Offer {
    pub fn parse(body: &[u8]) -> Result<Offer, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut media: Vec<Media> = Vec::new();
        let mut version = false;
        for (n, line) in text.lines().enumerate() {
            if n >= MAX_SDP_LINES {
                return Err(SdpError::TooLong);
            }
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let bad = || SdpError::BadLine(line.chars().take(80).collect());
            let (kind, value) = line.split_once('=').ok_or_else(bad)?;
            match kind {
                "v" => version = value == "0",
                "m" => {
                    let mut parts = value.split_ascii_whitespace();
                    let kind = parts.next().ok_or_else(bad)?.to_owned();
                    let port_text = parts.next().ok_or_else(bad)?;
                    // `port/count` is legal SDP; a chat stream only ever has one port.
                    let port = port_text.split('/').next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
                    let proto = parts.next().ok_or_else(bad)?.to_owned();
                    let formats = parts.map(str::to_owned).collect();
                    media.push(Media { kind, port, proto, formats, attrs: Vec::new() });
                }
                "a" => {
                    if let Some(m) = media.last_mut() {
                        let (name, value) = match value.split_once(':') {
                            Some((n, v)) => (n.to_owned(), Some(v.trim().to_owned())),
                            None => (value.to_owned(), None),
                        };
                        m.attrs.push((name, value));
                    }
                }
                _ if kind.len() == 1 => {}
                _ => return Err(bad()),
            }
        }
        if !version {
            return Err(SdpError::NoVersion);
        }
        Ok(Offer { media })
    }

    /// The first usable chat stream of a participant's offer: `m=message` over `TCP/MSRP` or
    /// `TCP/TLS/MSRP`, a nonzero port, sendrecv, a parseable `a=path`, and `message/cpim` (or
    /// `*`) among its accept-types.
    pub fn chat_stream(&self) -> Option<ChatStream> {
        self.usable_stream(false)
    }

    /// The chat stream of an invitee's answer to the focus's own offer ([`offer`], which says
    /// `a=setup:actpass`): usable on the same terms as in an offer, and the focus connects
    /// unless the answer says `a=setup:active` (RFC 6135 §4.2; an answer without `a=setup`
    /// leaves the offerer active, RFC 4975 §5.4).
    pub fn answered_stream(&self) -> Option<ChatStream> {
        self.usable_stream(true)
    }

    fn usable_stream(&self, answer: bool) -> Option<ChatStream> {
        self.media.iter().enumerate().find_map(|(index, m)| {
            if m.has_flag("sendonly") || m.has_flag("recvonly") || m.has_flag("inactive") {
                return None;
            }
            // A file stream (RFC 5547) is not a chat stream, whatever it accepts.
            if m.attr("file-selector").is_some() || m.has_flag("file-selector") {
                return None;
            }
            let accepts = m.attr("accept-types")?;
            if !accepts.split_ascii_whitespace().any(|t| t.eq_ignore_ascii_case("message/cpim") || t == "*") {
                return None;
            }
            let (secure, path, connect) = msrp_endpoint(m, answer)?;
            Some(ChatStream { index, secure, path, connect })
        })
    }
}

/// The MSRP side of an `m=message` section over `TCP/MSRP` or `TCP/TLS/MSRP` with a nonzero
/// port and a parseable `a=path` ending in a session-id: whether it is TLS, the path, and who
/// connects (in an `answer` to the focus's `actpass` offer, or in a peer's offer).
pub(crate) fn msrp_endpoint(m: &Media, answer: bool) -> Option<(bool, Vec<Uri>, Connect)> {
    let secure = match m.proto.to_ascii_uppercase().as_str() {
        "TCP/MSRP" => false,
        "TCP/TLS/MSRP" => true,
        _ => return None,
    };
    if !m.kind.eq_ignore_ascii_case("message") || m.port == 0 {
        return None;
    }
    let path: Vec<Uri> = m
        .attr("path")?
        .split_ascii_whitespace()
        .map(|u| Uri::parse(ByteString::from(u)))
        .collect::<Result<_, _>>()
        .ok()?;
    path.last()?.session_id()?;
    // A relay in the path, or a participant that waits to be called, makes the server the
    // active side (RFC 6135 §4, RFC 4976 §5).
    let setup = m.attr("setup").map(str::to_ascii_lowercase);
    let connect = match setup.as_deref() {
        // The peer's relay (if any) dials the focus for it (RFC 4976 §5).
        Some("active") if answer => Connect::Inbound,
        _ if answer => Connect::Outbound,
        _ if path.len() > 1 => Connect::Outbound,
        Some("actpass") | Some("passive") => Connect::Outbound,
        _ => Connect::Inbound,
    };
    Some((secure, path, connect))
}

/// The `index`th `m=` section of `sdp` (its `m=` line and the attributes after it).
pub fn section(sdp: &str, index: usize) -> Option<String> {
    split_sections(sdp).1.get(index).cloned()
}

/// `sdp` with its `index`th `m=` section replaced by `section` (unchanged if it has none).
pub fn replace_section(sdp: &str, index: usize, section: &str) -> String {
    let (head, mut sections) = split_sections(sdp);
    if let Some(s) = sections.get_mut(index) {
        *s = section.to_owned();
    }
    let mut out = head;
    for s in sections {
        out.push_str(&s);
    }
    out
}

/// The session-level lines, and each `m=` section, of an SDP the server wrote (CRLF lines).
fn split_sections(sdp: &str) -> (String, Vec<String>) {
    let mut head = String::new();
    let mut sections: Vec<String> = Vec::new();
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            sections.push(String::new());
        }
        match sections.last_mut() {
            Some(s) => s.push_str(line),
            None => head.push_str(line),
        }
    }
    (head, sections)
}

/// What the server puts in its answer for the chat stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerParams<'a> {
    /// The server's own MSRP URI for this session (its `a=path`).
    pub local: &'a Uri,
    /// Largest message accepted, for `a=max-size` (RFC 4975 §8.6).
    pub max_size: u64,
    pub private_messages: bool,
    /// Wrapped types accepted inside CPIM.
    pub wrapped_types: &'a str,
    /// `o=` session id and version.
    pub version: u64,
}

/// The session-level lines of an answer from `host`, `version` its `o=` version.
pub(crate) fn session_head(host: &str, version: u64) -> String {
    let ip = if host.contains(':') { "IP6" } else { "IP4" };
    format!("v=0\r\no=msrpd {version} {version} IN {ip} {host}\r\ns=-\r\nc=IN {ip} {host}\r\nt=0 0\r\n")
}

/// The SDP to send after `previous` in the same session (RFC 3264 §8): `next`, with the `o=`
/// line of `previous` and its version one higher, or `previous` itself when nothing else
/// differs (an unchanged SDP keeps its version). A peer compares origins to tell a changed
/// session from a new one; each fresh answer here names an origin of its own, so a call's
/// later answers take the first one's. `next` as it is when `previous` has no usable `o=`.
pub(crate) fn follow_origin(previous: &str, next: &str) -> String {
    let is_origin = |l: &&str| l.starts_with("o=");
    let rest = |sdp: &str| sdp.split("\r\n").filter(|l| !is_origin(l)).map(str::to_owned).collect::<Vec<_>>();
    let Some(origin) = previous.split("\r\n").find(is_origin) else { return next.to_owned() };
    if rest(previous) == rest(next) {
        return previous.to_owned();
    }
    // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
    let mut fields: Vec<&str> = origin[2..].split(' ').collect();
    let Some(version) = fields.get(2).and_then(|v| v.parse::<u64>().ok()) else { return next.to_owned() };
    if fields.len() != 6 {
        return next.to_owned();
    }
    let version = version.wrapping_add(1).to_string();
    fields[2] = &version;
    let origin = format!("o={}", fields.join(" "));
    let lines: Vec<&str> = next.split("\r\n").map(|l| if l.starts_with("o=") { origin.as_str() } else { l }).collect();
    lines.join("\r\n")
}

/// An answer refusing every stream of `offer` (port 0, RFC 3264 §6): a call whose chat stream
/// was dropped.
pub fn refuse_all(offer: &Offer, host: &str, version: u64) -> String {
    let mut out = session_head(host, version);
    for m in &offer.media {
        out.push_str(&m.rejected_line());
    }
    out
}

/// The focus's offer of a chat stream to someone it invites into a room (after a REFER,
/// RFC 4579 §5.5): the room's attributes as in an answer, `a=setup:actpass` so that the
/// invitee may connect (AG's SDK always does) or be connected to.
pub fn offer(p: &AnswerParams<'_>) -> String {
    let mut out = session_head(p.local.host_unbracketed(), p.version);
    out.push_str(&chat_media(p, "actpass"));
    out
}

/// The `m=message` section the focus writes, in an offer or an answer.
fn chat_media(p: &AnswerParams<'_>, setup: &str) -> String {
    let proto = if p.local.is_secure() { "TCP/TLS/MSRP" } else { "TCP/MSRP" };
    let port = p.local.port().unwrap_or(DEFAULT_MSRP_PORT);
    let chatroom = if p.private_messages { "nickname private-messages" } else { "nickname" };
    format!(
        "m=message {port} {proto} *\r\n\
         a=path:{path}\r\n\
         a=accept-types:message/cpim\r\n\
         a=accept-wrapped-types:{wrapped}\r\n\
         a=chatroom:{chatroom}\r\n\
         a=max-size:{max}\r\n\
         a=setup:{setup}\r\n\
         a=sendrecv\r\n",
        path = p.local.as_str(),
        wrapped = p.wrapped_types,
        max = p.max_size,
    )
}

/// The answer: the chat stream accepted, every other stream rejected with port 0 (RFC 3264
/// §6), in the offer's order.
pub fn answer(offer: &Offer, stream: &ChatStream, p: &AnswerParams<'_>) -> String {
    let mut out = session_head(p.local.host_unbracketed(), p.version);
    for (i, m) in offer.media.iter().enumerate() {
        if i != stream.index {
            out.push_str(&m.rejected_line());
            continue;
        }
        let setup = match stream.connect {
            Connect::Inbound => "passive",
            Connect::Outbound => "active",
        };
        out.push_str(&chat_media(p, setup));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_answer_keeps_the_calls_origin() {
        let first = session_head("192.0.2.1", 7) + "m=message 2855 TCP/MSRP *\r\n";
        let changed = session_head("192.0.2.1", 12) + "m=audio 0 RTP/AVP 0\r\nm=message 2855 TCP/MSRP *\r\n";
        let second = follow_origin(&first, &changed);
        assert!(second.starts_with("v=0\r\no=msrpd 7 8 IN IP4 192.0.2.1\r\n"), "{second}");
        assert!(second.ends_with("m=audio 0 RTP/AVP 0\r\nm=message 2855 TCP/MSRP *\r\n"));
        let third = follow_origin(&second, &(session_head("192.0.2.1", 13) + "m=message 2855 TCP/MSRP *\r\n"));
        assert!(third.contains("o=msrpd 7 9 IN IP4"), "one up from the previous, not from the first");
        assert_eq!(
            follow_origin(&third, &(session_head("192.0.2.1", 20) + "m=message 2855 TCP/MSRP *\r\n")),
            third,
            "unchanged: the same version"
        );
        assert_eq!(follow_origin("v=0\r\ns=-\r\n", &changed), changed, "no origin to follow");
    }

    const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
        m=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n\
        a=path:msrp://127.0.0.1:7654/abc123;tcp\r\n";

    fn local() -> Uri {
        Uri::parse(ByteString::from("msrp://127.0.0.1:2855/srv1;tcp")).unwrap()
    }

    #[test]
    fn picks_the_chat_stream_and_rejects_the_rest() {
        let offer = Offer::parse(OFFER.as_bytes()).unwrap();
        let s = offer.chat_stream().unwrap();
        assert_eq!((s.index, s.secure, s.connect), (1, false, Connect::Inbound), "no a=setup: offerer connects");
        assert_eq!(s.path.len(), 1);
        let local = local();
        let p = AnswerParams { local: &local, max_size: 1000, private_messages: true, wrapped_types: "*", version: 7 };
        let a = answer(&offer, &s, &p);
        assert!(a.contains("m=audio 0 RTP/AVP 0\r\n"), "{a}");
        assert!(a.contains("m=message 2855 TCP/MSRP *\r\na=path:msrp://127.0.0.1:2855/srv1;tcp\r\n"), "{a}");
        assert!(a.contains("a=accept-types:message/cpim\r\n"));
        assert!(a.contains("a=chatroom:nickname private-messages\r\n"));
        assert!(a.contains("a=max-size:1000\r\n"));
        assert!(a.contains("a=setup:passive\r\n"));
        assert!(a.find("m=audio").unwrap() < a.find("m=message").unwrap(), "order of the offer");
    }

    #[test]
    fn setup_and_relays_decide_who_connects() {
        let with = |extra: &str| Offer::parse(format!("{OFFER}{extra}").as_bytes()).unwrap().chat_stream();
        assert_eq!(with("a=setup:actpass\r\n").unwrap().connect, Connect::Outbound);
        assert_eq!(with("a=setup:passive\r\n").unwrap().connect, Connect::Outbound);
        assert_eq!(with("a=setup:active\r\n").unwrap().connect, Connect::Inbound);
        let relayed = OFFER.replace(
            "a=path:msrp://127.0.0.1:7654/abc123;tcp",
            "a=path:msrps://relay.example:2855/r1;tcp msrp://127.0.0.1:7654/abc123;tcp",
        );
        assert_eq!(Offer::parse(relayed.as_bytes()).unwrap().chat_stream().unwrap().connect, Connect::Outbound);
    }

    #[test]
    fn the_focus_offers_actpass_and_connects_unless_the_answer_is_active() {
        let local = Uri::parse(ByteString::from("msrps://192.0.2.1:2856/inv1;tcp")).unwrap();
        let p = AnswerParams { local: &local, max_size: 1000, private_messages: false, wrapped_types: "*", version: 3 };
        let o = offer(&p);
        assert!(o.starts_with("v=0\r\no=msrpd 3 3 IN IP4 192.0.2.1\r\n"), "{o}");
        assert!(o.contains("m=message 2856 TCP/TLS/MSRP *\r\na=path:msrps://192.0.2.1:2856/inv1;tcp\r\n"), "{o}");
        assert!(o.contains("a=setup:actpass\r\n") && o.contains("a=chatroom:nickname\r\n"), "{o}");
        let answered = |extra: &str| Offer::parse(format!("{OFFER}{extra}").as_bytes()).unwrap().answered_stream();
        assert_eq!(answered("a=setup:active\r\n").unwrap().connect, Connect::Inbound);
        assert_eq!(answered("a=setup:passive\r\n").unwrap().connect, Connect::Outbound);
        assert_eq!(answered("").unwrap().connect, Connect::Outbound, "no a=setup: the offerer connects");
        let refused = OFFER.replace("m=message 7654", "m=message 0");
        assert_eq!(Offer::parse(refused.as_bytes()).unwrap().answered_stream(), None);
    }

    #[test]
    fn unusable_offers_have_no_chat_stream() {
        for (from, to) in [
            ("m=message 7654", "m=message 0"),
            ("TCP/MSRP *", "UDP/MSRP *"),
            ("message/cpim text/plain", "text/plain"),
            ("a=path:msrp://127.0.0.1:7654/abc123;tcp", "a=path:nonsense"),
            ("a=accept-types", "a=sendonly\r\na=accept-types"),
        ] {
            let offer = Offer::parse(OFFER.replace(from, to).as_bytes()).unwrap();
            assert_eq!(offer.chat_stream(), None, "{to}");
        }
        assert_eq!(Offer::parse(b"garbage"), Err(SdpError::BadLine("garbage".into())));
        assert_eq!(Offer::parse(b"o=x\r\n"), Err(SdpError::NoVersion));
        let tls = OFFER.replace("TCP/MSRP", "TCP/TLS/MSRP").replace("msrp://", "msrps://");
        assert!(Offer::parse(tls.as_bytes()).unwrap().chat_stream().unwrap().secure);
    }
}
