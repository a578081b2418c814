//! Property tests: any message we can encode decodes back to the same frame, byte for byte,
//! whatever the read sizes, and the decoder never panics on arbitrary input.

use bytes::BytesMut;
use msrp::Limits;
use msrp::encode::{body_is_safe, encode_request, encode_response};
use msrp::header::{ByteRange, ContentType, FailureReport, Header, MessageId, Path, SuccessReport};
use msrp::lex::{Start, lex_frame};
use msrp::message::TransactionId;
use msrp::{Continuation, Decoder, Event, Message, Method, Request, Response, StatusCode, Uri};
use proptest::prelude::*;

fn ident(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9][a-zA-Z0-9.+%=-]{{3,{}}}", max - 1)).unwrap()
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        any::<bool>(),
        prop_oneof![
            proptest::string::string_regex("[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}").unwrap(),
            Just("192.0.2.7".to_owned()),
            Just("2001:db8::1".to_owned()),
        ],
        proptest::option::of(1u16..),
        proptest::option::of(proptest::string::string_regex("[A-Za-z0-9._~+=/-]{1,20}").unwrap()),
    )
        .prop_map(|(secure, host, port, sid)| Uri::new(secure, &host, port, sid.as_deref()).unwrap())
}

fn path() -> impl Strategy<Value = Path> {
    proptest::collection::vec(uri(), 1..4).prop_map(|v| Path::new(v).unwrap())
}

/// Bodies built from random bytes and pieces that look like end-lines.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        Just(b"\r\n".to_vec()),
        Just(b"\r\n-------".to_vec()),
        Just(b"-------".to_vec()),
        Just(b"$\r\n".to_vec()),
        Just(b"+".to_vec()),
        Just(b"#\r\n".to_vec()),
        ident(32).prop_map(String::into_bytes),
    ];
    proptest::collection::vec(piece, 0..20).prop_map(|pieces| pieces.concat())
}

fn flag() -> impl Strategy<Value = Continuation> {
    prop_oneof![Just(Continuation::Complete), Just(Continuation::More), Just(Continuation::Abort)]
}

#[derive(Debug, Clone)]
enum Case {
    Request(Request, Option<Vec<u8>>, Continuation),
    Response(Response),
}

fn request() -> impl Strategy<Value = Case> {
    let method = prop_oneof![
        Just(Method::Send),
        Just(Method::Report),
        Just(Method::Nickname),
        Just(Method::Auth),
        Just(Method::Other("FOOBAR".into())),
    ];
    (
        ident(32),
        method,
        path(),
        path(),
        proptest::option::of(ident(32)),
        proptest::option::of((1u64..1 << 40, 0u64..5000)),
        proptest::option::of(any::<bool>()),
        proptest::option::of(0u8..3),
        proptest::option::of(body()),
        flag(),
        proptest::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,40}"), 0..3),
    )
        .prop_map(|(tid, method, to, from, mid, range, success, failure, body, flag, extra)| {
            let mut r =
                Request::new(tid.parse().unwrap(), method).with(Header::ToPath(to)).with(Header::FromPath(from));
            if let Some(m) = mid {
                r.headers.set(Header::MessageId(m.parse::<MessageId>().unwrap()));
            }
            if let Some((start, len)) = range {
                r.headers.set(Header::ByteRange(ByteRange { start, end: Some(start + len - 1), total: None }));
            }
            if let Some(s) = success {
                r.headers.set(Header::SuccessReport(if s { SuccessReport::Yes } else { SuccessReport::No }));
            }
            if let Some(f) = failure {
                let f = [FailureReport::Yes, FailureReport::No, FailureReport::Partial][f as usize];
                r.headers.set(Header::FailureReport(f));
            }
            for (name, value) in extra {
                let value = value.trim().to_owned();
                r.headers.push(Header::parse(&name, &value).unwrap()).unwrap();
            }
            if body.is_some() {
                r.headers.set(Header::ContentType("application/octet-stream".parse::<ContentType>().unwrap()));
            }
            Case::Request(r, body, flag)
        })
}

fn response() -> impl Strategy<Value = Case> {
    (ident(32), 100u16..700, path(), path(), proptest::option::of("[ -~]{1,30}")).prop_map(
        |(tid, code, to, from, comment)| {
            let mut r = Response::new(tid.parse().unwrap(), StatusCode(code))
                .with(Header::ToPath(Path::single(to.first().clone())))
                .with(Header::FromPath(Path::single(from.first().clone())));
            r.comment = comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).map(Into::into);
            Case::Response(r)
        },
    )
}

fn head_of(case: &Case) -> Message {
    match case {
        Case::Request(r, ..) => Message::Request(r.clone()),
        Case::Response(r) => Message::Response(r.clone()),
    }
}

fn encode(case: &Case) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    match case {
        Case::Request(r, body, flag) => {
            if body.as_deref().is_some_and(|b| !body_is_safe(b, &r.tid)) {
                return None;
            }
            encode_request(r, body.as_deref(), *flag, &mut out).unwrap();
        }
        Case::Response(r) => encode_response(r, &mut out),
    }
    Some(out.to_vec())
}

/// Decodes `wire` fed in `sizes`-byte pieces into (head, body, flag) triples.
fn decode(wire: &[u8], sizes: &[usize]) -> Vec<(Message, Option<Vec<u8>>, Continuation)> {
    let mut dec = Decoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut cur: Option<(Message, Option<Vec<u8>>)> = None;
    let (mut pos, mut i) = (0, 0);
    while pos < wire.len() {
        let n = sizes[i % sizes.len()].min(wire.len() - pos);
        i += 1;
        buf.extend_from_slice(&wire[pos..pos + n]);
        pos += n;
        while let Some(ev) = dec.decode(&mut buf).expect("our own encoding decodes") {
            match ev {
                Event::Head(h) => cur = Some((h, None)),
                Event::Body(b) => cur.as_mut().unwrap().1.get_or_insert_with(Vec::new).extend_from_slice(&b),
                Event::End(f) => {
                    let (h, b) = cur.take().unwrap();
                    out.push((h, b, f));
                }
            }
        }
    }
    dec.finish(&buf).expect("no partial frame left");
    out
}

fn reencode(head: &Message, body: Option<&[u8]>, flag: Continuation) -> Vec<u8> {
    // Content-Type exists exactly when the frame has a body section (RFC 4975 §9
    // `content-stuff`), which may be empty: that is how an empty body is told from none.
    let body = body.or(head.headers().content_type().map(|_| &[][..]));
    let mut out = BytesMut::new();
    match head {
        Message::Request(r) => encode_request(r, body, flag, &mut out).unwrap(),
        Message::Response(r) => encode_response(r, &mut out),
    }
    out.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(
        cases in proptest::collection::vec(prop_oneof![3 => request(), 1 => response()], 1..5),
        sizes in proptest::collection::vec(1usize..200, 1..8),
    ) {
        let encoded: Vec<(Case, Vec<u8>)> = cases.into_iter().filter_map(|c| encode(&c).map(|w| (c, w))).collect();
        let wire: Vec<u8> = encoded.iter().flat_map(|(_, w)| w.clone()).collect();
        let decoded = decode(&wire, &sizes);
        prop_assert_eq!(decoded.len(), encoded.len());
        for ((case, bytes), (head, body, flag)) in encoded.iter().zip(&decoded) {
            // Byte-exact: re-encoding the decoded frame gives the same bytes.
            prop_assert_eq!(&reencode(head, body.as_deref(), *flag), bytes);
            match case {
                Case::Request(r, b, f) => {
                    prop_assert_eq!(head, &Message::Request(r.clone()));
                    // An empty body is framed like no body when the grammar cannot tell.
                    prop_assert_eq!(body.as_deref().unwrap_or_default(), b.as_deref().unwrap_or_default());
                    prop_assert_eq!(flag, f);
                }
                Case::Response(r) => prop_assert_eq!(head, &Message::Response(r.clone())),
            }
        }
    }

    #[test]
    fn the_lexer_agrees_with_the_decoder(
        case in prop_oneof![3 => request(), 1 => response()],
        next in prop_oneof![3 => request(), 1 => response()],
        same_tid in any::<bool>(),
    ) {
        let Some(wire) = encode(&case) else { return Ok(()) };
        // The next frame, perhaps reusing the transaction id: its end-line must not be taken
        // for this frame's.
        let next = match next {
            Case::Request(mut r, b, f) if same_tid => { r.tid = *head_of(&case).tid(); Case::Request(r, b, f) }
            Case::Response(mut r) if same_tid => { r.tid = *head_of(&case).tid(); Case::Response(r) }
            other => other,
        };
        let Some(tail) = encode(&next) else { return Ok(()) };
        let buf = [&wire[..], &tail[..]].concat();
        let (head, body, flag) = decode(&buf, &[buf.len()]).remove(0);
        // The encoder's plain frames are what the lexer is for.
        let plain = head.headers().len() <= 16 && body.as_ref().is_some_and(|b| !b.is_empty() && !b.starts_with(b"-"));
        if plain && !matches!(&head, Message::Response(_)) {
            prop_assert!(lex_frame(&buf, &Limits::default(), 1 << 20).is_some(), "a plain frame declined");
        }
        // The lexer may decline any frame; a frame it takes must be the decoder's.
        if let Some(l) = lex_frame(&buf, &Limits::default(), 1 << 20) {
            prop_assert_eq!(l.len, wire.len());
            prop_assert_eq!(l.tid, *head.tid());
            prop_assert_eq!(l.flag, flag);
            prop_assert_eq!(l.body, body.as_deref());
            prop_assert_eq!(l.header_count(), head.headers().len());
            match (&l.start, &head) {
                (Start::Request(m), Message::Request(r)) => prop_assert_eq!(*m, r.method.as_str().as_bytes()),
                (Start::Response(code), Message::Response(r)) => prop_assert_eq!(*code, r.status.0),
                _ => prop_assert!(false, "request and response confused"),
            }
            for ((name, value), h) in l.headers().zip(head.headers().iter()) {
                prop_assert!(name.eq_ignore_ascii_case(h.name()));
                let parsed = Header::parse(name, value);
                prop_assert_eq!(&parsed.unwrap(), h);
            }
        }
    }

    #[test]
    fn the_lexer_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = lex_frame(&input, &Limits::default(), 1 << 20);
        let mut prefixed = b"MSRP abcd SEND\r\n".to_vec();
        prefixed.extend_from_slice(&input);
        let _ = lex_frame(&prefixed, &Limits::default(), 1 << 20);
    }

    #[test]
    fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..2000), sizes in proptest::collection::vec(1usize..64, 1..4)) {
        let mut dec = Decoder::default();
        let mut buf = BytesMut::new();
        let (mut pos, mut i) = (0, 0);
        while pos < input.len() {
            let n = sizes[i % sizes.len()].min(input.len() - pos);
            i += 1;
            buf.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if e.scope == msrp::decode::Scope::Connection => return Ok(()),
                    Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn valid_prefix_then_garbage_never_panics(case in request(), garbage in proptest::collection::vec(any::<u8>(), 0..500)) {
        if let Some(mut wire) = encode(&case) {
            let cut = wire.len() / 2;
            wire.truncate(cut);
            wire.extend_from_slice(&garbage);
            let mut dec = Decoder::default();
            let mut buf = BytesMut::from(&wire[..]);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }
}

#[test]
fn tid_for_unsafe_body_is_detected() {
    let tid: TransactionId = "abcd1234".parse().unwrap();
    assert!(!body_is_safe(b"xx\r\n-------abcd1234", &tid));
}

proptest! {
    /// URIs with and without userinfo (whose characters overlap the host's, the port's and
    /// the transport's) split into the parts they were built from.
    #[test]
    fn uri_parts_are_recovered(
        user in proptest::option::of("[A-Za-z0-9._~!$&'()*+,;=:-]{1,12}|%41[a-z]{0,3}"),
        host in "[a-z0-9][a-z0-9.-]{0,15}",
        port in proptest::option::of(any::<u16>()),
        sid in proptest::option::of("[A-Za-z0-9._~+=/-]{1,16}"),
        params in "(;[a-z]{1,5}(=[a-z0-9]{1,5})?){0,2}",
    ) {
        let mut text = String::from("msrp://");
        if let Some(u) = &user {
            text.push_str(u);
            text.push('@');
        }
        text.push_str(&host);
        if let Some(p) = port {
            text.push_str(&format!(":{p}"));
        }
        if let Some(s) = &sid {
            text.push('/');
            text.push_str(s);
        }
        text.push_str(";tcp");
        text.push_str(&params);
        let uri: Uri = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(uri.user(), user.as_deref());
        prop_assert_eq!(uri.host(), host.as_str());
        prop_assert_eq!(uri.port(), port);
        prop_assert_eq!(uri.session_id(), sid.as_deref());
        prop_assert_eq!(uri.transport(), "tcp");
        prop_assert_eq!(uri.as_str(), text.as_str());
    }
}
