//! What becomes of a complete SEND from a participant (RFC 7701 with RFC 3862 CPIM): refused
//! with which status, or fanned out to the room, to one participant, or as an is-composing
//! notice — and the CPIM body the recipients get. Plain functions, no I/O.

use bytes::Bytes;
use msrp::StatusCode;

use crate::cpim::{Address, Cpim};
use crate::identity;

/// RFC 3994 is-composing notices travel inside CPIM with this type.
pub const IS_COMPOSING: &str = "application/im-iscomposing+xml";

/// What the sender's message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// To the whole room; stored in history.
    Public(Outgoing),
    /// To every session of the participant with this identity key; never stored.
    Private { to: String, msg: Outgoing },
    /// An is-composing notice for the room: no reports, not stored.
    Composing(Outgoing),
    /// Refused with this status and reason.
    Refuse(StatusCode, &'static str),
    /// Accepted (the sender gets its 200) but delivered to nobody and not stored.
    Drop(&'static str),
}

/// Every OTR message (a query `?OTRv3?`, or data `?OTR:…`) opens with this. AG's SIP SIMPLE
/// SDK and Blink start OTR in every chat by default; through a room, two of them would
/// negotiate with each other and everyone else would read the key exchange. SylkServer drops
/// these messages, and so do we: OTR is end to end, and a room is not an end.
const OTR_PREFIX: &[u8] = b"?OTR";

/// A message as the recipients get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The CPIM body, encoded once and shared by every recipient.
    pub body: Bytes,
    /// The DateTime it carries (kept from the sender or added).
    pub datetime: String,
    /// The inner content type and body, for history.
    pub content_type: String,
    pub inner: Bytes,
}

/// What the server knows about the sender and the room.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub room_uri: &'a str,
    /// The room's name (the user part of its URI, lower case): a CPIM To with this user part
    /// is the room, whatever host the participant dialled.
    pub room_name: &'a str,
    /// `a=accept-wrapped-types` as announced: inner types outside it get 415.
    pub wrapped_types: &'a str,
    pub sender_uri: &'a str,
    pub sender_key: &'a str,
    /// Nickname, else the display name the participant joined with.
    pub display: Option<&'a str>,
    pub private_messages: bool,
    /// Used when the message has no DateTime.
    pub now: &'a str,
}

/// Decides on a complete message of type `content_type` (the MSRP Content-Type essence).
pub fn judge(ctx: &Context<'_>, content_type: &str, body: &Bytes) -> Verdict {
    if !content_type.eq_ignore_ascii_case("message/cpim") {
        return Verdict::Refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "only message/cpim is accepted");
    }
    let Ok(cpim) = Cpim::parse(body) else {
        return Verdict::Refuse(StatusCode::BAD_REQUEST, "malformed CPIM");
    };
    let (Ok(from), Ok(to)) = (cpim.from(), cpim.to()) else {
        return Verdict::Refuse(StatusCode::BAD_REQUEST, "malformed CPIM From or To");
    };
    if identity::key(&from.uri).as_deref() != Some(ctx.sender_key) {
        return Verdict::Refuse(StatusCode::FORBIDDEN, "CPIM From is not the participant");
    }
    let Some(inner_type) = cpim.content_type().map(str::to_owned) else {
        return Verdict::Refuse(StatusCode::BAD_REQUEST, "CPIM content has no Content-Type");
    };
    if !type_accepted(ctx.wrapped_types, &inner_type) {
        return Verdict::Refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "inner type not among accept-wrapped-types");
    }
    if cpim.body.starts_with(OTR_PREFIX) {
        return Verdict::Drop("OTR is end to end: not relayed through a room");
    }
    let is_room = |a: &&Address| {
        identity::key(&a.uri)
            .is_some_and(|k| k.rsplit_once('@').is_some_and(|(u, _)| u.eq_ignore_ascii_case(ctx.room_name)))
    };
    let others: Vec<&Address> = to.iter().filter(|a| !is_room(a)).collect();
    let composing = inner_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(IS_COMPOSING));
    let from = Address::new(ctx.display, ctx.sender_uri);
    let datetime = cpim.datetime().map_or_else(|| ctx.now.to_owned(), str::to_owned);
    let build = |to: &Address| {
        let mut out = cpim.clone();
        out.headers.retain(|(n, _)| !["From", "To", "DateTime"].iter().any(|h| n.eq_ignore_ascii_case(h)));
        out.headers.insert(0, ("From".to_owned(), from.to_string()));
        out.headers.insert(1, ("To".to_owned(), to.to_string()));
        out.headers.insert(2, ("DateTime".to_owned(), datetime.clone()));
        Outgoing {
            body: Bytes::from(out.encode()),
            datetime: datetime.clone(),
            content_type: inner_type.clone(),
            inner: cpim.body.clone(),
        }
    };
    match others.as_slice() {
        [] => {
            let msg = build(&Address::new(None, ctx.room_uri));
            if composing { Verdict::Composing(msg) } else { Verdict::Public(msg) }
        }
        [one] => {
            if !ctx.private_messages {
                return Verdict::Refuse(
                    StatusCode::PRIVATE_MESSAGES_NOT_SUPPORTED,
                    "private messages are not allowed here",
                );
            }
            let Some(to) = identity::key(&one.uri) else {
                return Verdict::Refuse(StatusCode::BAD_REQUEST, "CPIM To is not a SIP address");
            };
            let recipient = Address::new(one.name.as_deref(), &format!("sip:{to}"));
            Verdict::Private { to, msg: build(&recipient) }
        }
        _ => Verdict::Refuse(StatusCode::BAD_REQUEST, "a private message has exactly one recipient"),
    }
}

/// Whether `content_type` (parameters allowed) matches one of the space-separated `list`
/// entries: `*`, `type/*` or `type/subtype`, case-insensitively (RFC 4975 §8.6).
pub fn type_accepted(list: &str, content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let (ty, _) = essence.split_once('/').unwrap_or((essence, ""));
    list.split_ascii_whitespace().any(|want| {
        want == "*"
            || want.eq_ignore_ascii_case(essence)
            || want.strip_suffix("/*").is_some_and(|t| t.eq_ignore_ascii_case(ty))
    })
}

/// A notice from the room itself (joins and leaves), as CPIM text.
pub fn notice(room_uri: &str, now: &str, text: &str) -> Bytes {
    let room = Address::new(None, room_uri);
    let mut cpim =
        Cpim::new(&room, std::slice::from_ref(&room), "text/plain;charset=utf-8", Bytes::from(text.to_owned()));
    cpim.set("DateTime", now);
    Bytes::from(cpim.encode())
}

/// A stored message, rebuilt for replay with its original sender and time.
pub fn replay(room_uri: &str, m: &crate::history::Stored) -> Bytes {
    let from = Address::new(m.display.as_deref(), &m.sender);
    let mut cpim = Cpim::new(&from, &[Address::new(None, room_uri)], &m.content_type, m.body.clone());
    cpim.set("DateTime", &m.datetime);
    Bytes::from(cpim.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "sip:lobby@chat.example";

    fn ctx(private: bool) -> Context<'static> {
        Context {
            room_uri: ROOM,
            room_name: "lobby",
            wrapped_types: "text/plain image/* application/im-iscomposing+xml",
            sender_uri: "sip:alice@example.com",
            sender_key: "alice@example.com",
            display: Some("Ally"),
            private_messages: private,
            now: "2026-11-25T12:00:00Z",
        }
    }

    fn cpim(from: &str, to: &[&str], ctype: &str, extra: &str) -> Bytes {
        let mut s = format!("From: <{from}>\r\n");
        for t in to {
            s.push_str(&format!("To: <{t}>\r\n"));
        }
        s.push_str(extra);
        s.push_str(&format!("\r\nContent-Type: {ctype}\r\n\r\nhello"));
        Bytes::from(s)
    }

    #[test]
    fn public_message_is_rewritten_for_the_room() {
        let body =
            cpim("sip:alice@example.com", &[ROOM], "text/plain", "DateTime: 2020-01-01T00:00:00Z\r\nNS: x <y>\r\n");
        let Verdict::Public(out) = judge(&ctx(true), "message/cpim", &body) else { panic!() };
        let parsed = Cpim::parse(&out.body).unwrap();
        assert_eq!(parsed.from().unwrap(), Address::new(Some("Ally"), "sip:alice@example.com"));
        assert_eq!(parsed.to().unwrap(), [Address::new(None, ROOM)]);
        assert_eq!(parsed.datetime(), Some("2020-01-01T00:00:00Z"), "DateTime kept");
        assert!(parsed.headers.iter().any(|(n, _)| n == "NS"), "other headers kept");
        assert_eq!(&parsed.body[..], b"hello");
        assert_eq!(out.content_type, "text/plain");
        let no_to = cpim("sip:alice@example.com", &[], "text/plain", "");
        let Verdict::Public(out) = judge(&ctx(true), "message/cpim", &no_to) else { panic!() };
        assert_eq!(out.datetime, "2026-11-25T12:00:00Z", "DateTime added");
    }

    #[test]
    fn refusals() {
        let ok = cpim("sip:alice@example.com", &[ROOM], "text/plain", "");
        assert_eq!(
            judge(&ctx(true), "text/plain", &ok),
            Verdict::Refuse(StatusCode(415), "only message/cpim is accepted")
        );
        assert!(matches!(
            judge(&ctx(true), "message/cpim", &Bytes::from_static(b"nonsense")),
            Verdict::Refuse(StatusCode(400), _)
        ));
        let spoofed = cpim("sip:mallory@example.com", &[ROOM], "text/plain", "");
        assert!(matches!(judge(&ctx(true), "message/cpim", &spoofed), Verdict::Refuse(StatusCode(403), _)));
        let private = cpim("sip:alice@example.com", &["sip:bob@example.com"], "text/plain", "");
        assert!(matches!(judge(&ctx(false), "message/cpim", &private), Verdict::Refuse(StatusCode(428), _)));
        let two = cpim("sip:alice@example.com", &["sip:bob@example.com", "sip:carol@example.com"], "text/plain", "");
        assert!(matches!(judge(&ctx(true), "message/cpim", &two), Verdict::Refuse(StatusCode(400), _)));
    }

    #[test]
    fn the_room_by_name_and_wrapped_types() {
        let other_host = cpim("sip:alice@example.com", &["sip:LOBBY@192.0.2.1:5060"], "text/plain", "");
        assert!(
            matches!(judge(&ctx(true), "message/cpim", &other_host), Verdict::Public(_)),
            "the room, dialled by IP"
        );
        let html = cpim("sip:alice@example.com", &[ROOM], "text/html", "");
        assert!(matches!(judge(&ctx(true), "message/cpim", &html), Verdict::Refuse(StatusCode(415), _)));
        let png = cpim("sip:alice@example.com", &[ROOM], "image/PNG", "");
        assert!(matches!(judge(&ctx(true), "message/cpim", &png), Verdict::Public(_)));
        assert!(type_accepted("*", "application/x-anything"));
        assert!(type_accepted("text/plain", "text/plain; charset=utf-8"));
        assert!(!type_accepted("text/plain", "text/html"));
    }

    #[test]
    fn private_and_composing() {
        let private = cpim("sip:alice@example.com", &[ROOM, "sip:Bob@Example.com"], "text/plain", "");
        let Verdict::Private { to, msg } = judge(&ctx(true), "message/cpim", &private) else { panic!() };
        assert_eq!(to, "Bob@example.com");
        assert_eq!(Cpim::parse(&msg.body).unwrap().to().unwrap()[0].uri, "sip:Bob@example.com");
        let typing = cpim("sip:alice@example.com", &[ROOM], "application/im-iscomposing+xml", "");
        assert!(matches!(judge(&ctx(true), "message/cpim", &typing), Verdict::Composing(_)));
    }

    #[test]
    fn otr_is_dropped_public_or_private() {
        for to in [&[ROOM][..], &["sip:bob@example.com"]] {
            for text in ["?OTRv3?", "?OTR:AAMDJ+MVmSfjFZcAAAAAAQAAAAIAAADA", "?OTR?v2?"] {
                let body = cpim("sip:alice@example.com", to, "text/plain", "");
                let body = Bytes::from(String::from_utf8(body.to_vec()).unwrap().replace("hello", text));
                assert!(matches!(judge(&ctx(true), "message/cpim", &body), Verdict::Drop(_)), "{text}");
            }
        }
        let quoted = cpim("sip:alice@example.com", &[ROOM], "text/plain", "");
        let quoted = Bytes::from(String::from_utf8(quoted.to_vec()).unwrap().replace("hello", "what is ?OTR:?"));
        assert!(matches!(judge(&ctx(true), "message/cpim", &quoted), Verdict::Public(_)), "only at the start");
    }
}
