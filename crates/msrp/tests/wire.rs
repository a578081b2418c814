//! Wire-scripted decoder tests: canonical frames fed whole, split at every byte position and
//! one byte at a time must decode to exactly the same frames.

use bytes::BytesMut;
use msrp::decode::{ErrorKind, Scope};
use msrp::header::{ByteRange, FailureReport};
use msrp::{Continuation, DecodeError, Decoder, Event, Message, Method, StatusCode};

/// A decoded frame with its body pieces joined.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    head: Message,
    body: Option<Vec<u8>>,
    end: Continuation,
}

/// Feeds `input` in the given piece sizes (cycled) and collects frames and errors.
fn decode_in_pieces(input: &[u8], sizes: &[usize]) -> Vec<Result<Frame, DecodeError>> {
    let mut dec = Decoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut current: Option<(Message, Option<Vec<u8>>)> = None;
    let mut pos = 0;
    let mut i = 0;
    while pos < input.len() {
        let n = sizes[i % sizes.len()].max(1).min(input.len() - pos);
        i += 1;
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        loop {
            match dec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Event::Head(h))) => {
                    assert!(current.is_none(), "head inside a frame");
                    current = Some((h, None));
                }
                Ok(Some(Event::Body(piece))) => {
                    assert!(!piece.is_empty(), "empty body piece");
                    let (_, body) = current.as_mut().expect("body before head");
                    body.get_or_insert_with(Vec::new).extend_from_slice(&piece);
                }
                Ok(Some(Event::End(flag))) => {
                    let (head, body) = current.take().expect("end before head");
                    out.push(Ok(Frame { head, body, end: flag }));
                }
                Err(e) => {
                    let fatal = e.scope == Scope::Connection;
                    current = None;
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    assert!(dec.finish(&buf).is_ok(), "stream ended inside a frame");
    out
}

fn send_with_body() -> &'static [u8] {
    b"MSRP a786hjs2 SEND\r\n\
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
Message-ID: 87652491\r\n\
Byte-Range: 1-25/25\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hey Bob, are you there?\r\n\
-------a786hjs2$\r\n"
}

const EMPTY_SEND: &[u8] = b"MSRP dkei38sd SEND\r\n\
To-Path: msrp://alice.example.com:7777/iau39soe2843z;tcp\r\n\
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-0/0\r\n\
-------dkei38sd$\r\n";

const RESPONSE: &[u8] = b"MSRP a786hjs2 200 OK\r\n\
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
-------a786hjs2$\r\n";

const REPORT: &[u8] = b"MSRP dkei38sd REPORT\r\n\
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-106/106\r\n\
Status: 000 200 OK\r\n\
-------dkei38sd$\r\n";

const AUTH: &[u8] = b"MSRP 49fh AUTH\r\n\
To-Path: msrps://relay.example.com:2855;tcp\r\n\
From-Path: msrps://alice.example.com:9892/98cjs;tcp\r\n\
Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"\r\n\
Expires: 900\r\n\
-------49fh$\r\n";

const CHUNK_MORE: &[u8] = b"MSRP d93kswow SEND\r\n\
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-*/*\r\n\
Failure-Report: partial\r\n\
Content-Type: application/octet-stream\r\n\
\r\n\
0123456789\r\n\
-------d93kswow+\r\n";

const CHUNK_ABORT: &[u8] = b"MSRP op2nc9a SEND\r\n\
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 11-20/*\r\n\
Content-Type: application/octet-stream\r\n\
\r\n\
abcdefghij\r\n\
-------op2nc9a#\r\n";

fn all_frames() -> Vec<u8> {
    [send_with_body(), EMPTY_SEND, RESPONSE, REPORT, AUTH, CHUNK_MORE, CHUNK_ABORT].concat()
}

fn ok_frames(input: &[u8], sizes: &[usize]) -> Vec<Frame> {
    decode_in_pieces(input, sizes).into_iter().map(|r| r.expect("frame decodes")).collect()
}

#[test]
fn canonical_frames_decode_as_expected() {
    let frames = ok_frames(&all_frames(), &[usize::MAX]);
    assert_eq!(frames.len(), 7);

    let Message::Request(send) = &frames[0].head else { panic!("not a request") };
    assert_eq!(send.method, Method::Send);
    assert_eq!(send.tid.as_str(), "a786hjs2");
    assert_eq!(send.headers.message_id().unwrap().as_str(), "87652491");
    assert_eq!(send.headers.byte_range(), Some(&ByteRange::whole(25)));
    assert_eq!(send.headers.to_path().unwrap().first().session_id(), Some("9di4eae923wzd"));
    assert!(send.headers.content_type().unwrap().is("text/plain"));
    assert_eq!(frames[0].body.as_deref(), Some(&b"Hey Bob, are you there?"[..]));
    assert_eq!(frames[0].end, Continuation::Complete);

    assert_eq!(frames[1].body, None, "empty SEND has no body");
    assert_eq!(frames[1].head.headers().byte_range(), Some(&ByteRange::whole(0)));

    let Message::Response(resp) = &frames[2].head else { panic!("not a response") };
    assert_eq!((resp.status, resp.comment.as_deref()), (StatusCode::OK, Some("OK")));

    let Message::Request(report) = &frames[3].head else { panic!() };
    assert_eq!(report.method, Method::Report);
    assert_eq!(report.headers.status().unwrap().code, StatusCode::OK);

    let Message::Request(auth) = &frames[4].head else { panic!() };
    assert_eq!(auth.method, Method::Auth);
    let creds = auth.headers.authorization().unwrap();
    assert_eq!(creds.param("cnonce"), Some("0a4f113b"));
    assert_eq!(creds.param("uri"), None);
    assert_eq!(auth.headers.expires(), Some(900));
    assert_eq!(auth.headers.to_path().unwrap().first().session_id(), None);

    assert_eq!(frames[5].end, Continuation::More);
    assert_eq!(frames[5].head.headers().failure_report(), FailureReport::Partial);
    assert_eq!(frames[5].body.as_deref(), Some(&b"0123456789"[..]));
    assert_eq!(frames[6].end, Continuation::Abort);
}

#[test]
fn every_split_position_gives_the_same_frames() {
    let input = all_frames();
    let whole = ok_frames(&input, &[usize::MAX]);
    for cut in 1..input.len() {
        let got = ok_frames(&input, &[cut, usize::MAX]);
        assert_eq!(got, whole, "split at byte {cut}");
    }
}

#[test]
fn one_byte_at_a_time() {
    let input = all_frames();
    assert_eq!(ok_frames(&input, &[1]), ok_frames(&input, &[usize::MAX]));
    // And irregular piece sizes.
    assert_eq!(ok_frames(&input, &[3, 1, 7, 2, 13]), ok_frames(&input, &[usize::MAX]));
}

/// A binary body with NULs, invalid UTF-8, CRLFs, another transaction's end-line, and our own
/// tid without its dashes or with too few.
fn nasty_body() -> Vec<u8> {
    let mut b = vec![0u8, 0xff, 0xfe, b'\r', b'\n', 0xc3];
    b.extend_from_slice(b"\r\n-------othertid$\r\n");
    b.extend_from_slice(b"\r\n------tid12345$\r\n"); // six dashes
    b.extend_from_slice(b"x-------tid12345$\r\n"); // no CRLF before it
    b.extend_from_slice(b"\r\n-------tid12345x\r\n"); // not a flag
    b.extend_from_slice(b"\r\n-------tid12345$ \r\n"); // flag not followed by CRLF
    b.extend_from_slice(b"\r\n-------tid1234$\r\n"); // a shorter tid
    b.extend_from_slice(b"\r\n-------tid123456$\r\n"); // a longer tid
    b.extend_from_slice(&[0; 5]);
    b.extend_from_slice(b"\r\n-------");
    b
}

fn binary_frame(body: &[u8]) -> Vec<u8> {
    let mut f = format!(
        "MSRP tid12345 SEND\r\nTo-Path: msrp://b:2/t;tcp\r\nFrom-Path: msrp://a:1/s;tcp\r\nMessage-ID: mid99\r\n\
         Byte-Range: 1-{0}/{0}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    )
    .into_bytes();
    f.extend_from_slice(body);
    f.extend_from_slice(b"\r\n-------tid12345$\r\n");
    f
}

#[test]
fn binary_body_with_fake_end_lines_survives_every_split() {
    let body = nasty_body();
    let input = [binary_frame(&body), EMPTY_SEND.to_vec()].concat();
    for cut in 1..input.len() {
        let frames = ok_frames(&input, &[cut, usize::MAX]);
        assert_eq!(frames.len(), 2, "split at {cut}");
        assert_eq!(frames[0].body.as_deref(), Some(&body[..]), "split at {cut}");
    }
    let frames = ok_frames(&input, &[1]);
    assert_eq!(frames[0].body.as_deref(), Some(&body[..]));
}

#[test]
fn body_pieces_are_handed_out_before_the_end_arrives() {
    let mut dec = Decoder::default();
    let frame = binary_frame(&vec![b'x'; 100_000]);
    let mut buf = BytesMut::from(&frame[..60_000]);
    assert!(matches!(dec.decode(&mut buf), Ok(Some(Event::Head(_)))));
    let Ok(Some(Event::Body(piece))) = dec.decode(&mut buf) else { panic!("no body piece") };
    assert!(piece.len() > 59_000, "only {} bytes handed out", piece.len());
    assert!(buf.len() < 16, "the decoder kept {} bytes", buf.len());
}

#[test]
fn empty_body_after_blank_line_and_stray_crlfs() {
    // Content-Type, blank line, empty data, CRLF, end-line: a body of zero bytes.
    let proper = b"MSRP abcd SEND\r\nTo-Path: msrp://b/t;tcp\r\nFrom-Path: msrp://a/s;tcp\r\nContent-Type: text/plain\r\n\r\n\r\n-------abcd$\r\n";
    // Lenient: the blank line directly followed by the end-line.
    let lenient = b"MSRP abce SEND\r\nTo-Path: msrp://b/t;tcp\r\nFrom-Path: msrp://a/s;tcp\r\nContent-Type: text/plain\r\n\r\n-------abce$\r\n";
    let input = [&b"\r\n"[..], proper, b"\r\n", lenient].concat();
    for cut in 1..input.len() {
        let frames = ok_frames(&input, &[cut, usize::MAX]);
        assert_eq!(frames.len(), 2, "split at {cut}");
        assert_eq!(frames[0].body.as_deref(), None);
        assert_eq!(frames[1].body.as_deref(), None);
    }
}

fn first_error(input: &[u8]) -> DecodeError {
    decode_in_pieces(input, &[usize::MAX]).into_iter().find_map(Result::err).expect("an error")
}

/// A request whose headers are fine up to the one under test, followed by a good frame that
/// must still decode (the error cost only its own frame).
fn with_header(line: &str) -> Vec<u8> {
    let mut f = format!("MSRP abcd SEND\r\nTo-Path: msrp://b/t;tcp\r\nFrom-Path: msrp://a/s;tcp\r\n{line}\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------abcd$\r\n").into_bytes();
    f.extend_from_slice(RESPONSE);
    f
}

fn assert_frame_error(input: &[u8], want: fn(&ErrorKind) -> bool) {
    let results = decode_in_pieces(input, &[usize::MAX]);
    let err = results[0].as_ref().expect_err("first frame must fail");
    assert!(want(&err.kind), "unexpected error {:?}", err.kind);
    assert_eq!(err.scope, Scope::Frame);
    assert_eq!(results.len(), 2, "the next frame must still decode: {results:?}");
    assert!(results[1].is_ok());
    // Same outcome one byte at a time.
    let slow = decode_in_pieces(input, &[1]);
    assert_eq!(slow.len(), 2);
    assert!(want(&slow[0].as_ref().unwrap_err().kind));
}

#[test]
fn bad_byte_range_is_a_frame_error_that_can_be_answered() {
    let input = with_header("Byte-Range: 5-2/10");
    assert_frame_error(&input, |k| matches!(k, ErrorKind::MalformedHeader(h) if h.name == "Byte-Range"));
    let err = first_error(&input);
    let info = err.answerable().expect("a 400 can be addressed");
    assert_eq!(info.tid.as_str(), "abcd");
    assert_eq!(info.method, Some(Method::Send));
    assert_eq!(info.from_path.as_ref().unwrap().to_string(), "msrp://a/s;tcp");
}

#[test]
fn header_without_colon_and_duplicates_and_missing_paths() {
    assert_frame_error(&with_header("Message-ID abcd"), |k| *k == ErrorKind::HeaderWithoutColon);
    assert_frame_error(
        &with_header("To-Path: msrp://c/u;tcp"),
        |k| matches!(k, ErrorKind::DuplicateHeader(n) if n == "To-Path"),
    );
    let no_from = [&b"MSRP abcd SEND\r\nTo-Path: msrp://b/t;tcp\r\n-------abcd$\r\n"[..], RESPONSE].concat();
    assert_frame_error(&no_from, |k| *k == ErrorKind::MissingHeader("From-Path"));
    let bad_utf8 = [
        &b"MSRP abcd SEND\r\nTo-Path: msrp://b/t;tcp\r\nFrom-Path: msrp://a/s;tcp\r\nX-Junk: \xff\r\n-------abcd$\r\n"
            [..],
        RESPONSE,
    ]
    .concat();
    assert_frame_error(&bad_utf8, |k| *k == ErrorKind::InvalidUtf8);
}

#[test]
fn over_long_lines() {
    let long = format!("X-Long: {}", "a".repeat(5000));
    assert_frame_error(&with_header(&long), |k| *k == ErrorKind::HeaderLineTooLong(4096));
    let start = format!("MSRP abcd {}\r\n", "A".repeat(2000));
    let err = first_error(start.as_bytes());
    assert_eq!((err.kind, err.scope), (ErrorKind::StartLineTooLong(1024), Scope::Connection));
}

#[test]
fn too_many_headers_and_too_large_head() {
    let many: String = (0..65).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_frame_error(&with_header(many.trim_end()), |k| *k == ErrorKind::TooManyHeaders(64));
    let big: String = (0..10).map(|i| format!("X-B{i}: {}\r\n", "b".repeat(2000))).collect();
    assert_frame_error(&with_header(big.trim_end()), |k| *k == ErrorKind::HeadTooLarge(16384));
}

#[test]
fn non_send_body_limit() {
    let body = vec![b'r'; 70_000];
    let mut input =
        "MSRP abcd REPORT\r\nTo-Path: msrp://b/t;tcp\r\nFrom-Path: msrp://a/s;tcp\r\nContent-Type: text/plain\r\n\r\n"
            .to_string()
            .into_bytes();
    input.extend_from_slice(&body);
    input.extend_from_slice(b"\r\n-------abcd$\r\n");
    input.extend_from_slice(RESPONSE);
    let results = decode_in_pieces(&input, &[4096]);
    let err = results.iter().find_map(|r| r.as_ref().err()).expect("limit enforced");
    assert_eq!((err.kind.clone(), err.scope), (ErrorKind::BodyTooLarge(65536), Scope::Frame));
    assert!(err.answerable().is_none(), "a REPORT is never answered, not even with 413");
    assert!(results.last().unwrap().is_ok(), "the response after it still decodes");
    // A NICKNAME (any other request) over the limit: its paths are known, it gets its 413.
    let nick = String::from_utf8(input.clone()).unwrap().replacen("REPORT", "NICKNAME", 1);
    let results = decode_in_pieces(nick.as_bytes(), &[4096]);
    let err = results.iter().find_map(|r| r.as_ref().err()).expect("limit enforced");
    assert!(err.answerable().is_some());
    assert_eq!(err.status(), msrp::StatusCode::MESSAGE_TOO_LARGE);
    // A SEND of the same size is fine: SEND bodies stream.
    let ok = ok_frames(&binary_frame(&body), &[4096]);
    assert_eq!(ok[0].body.as_ref().unwrap().len(), 70_000);
}

#[test]
fn method_tokens_clients_send_are_requests() {
    // msrplib's FILE_OFFSET (and any letter-led token of letters, digits, `_`, `-`) is a
    // request the receiver can answer (501 when unknown), not a reason to close.
    for method in ["FILE_OFFSET", "X-PING2", "send"] {
        let frame = format!(
            "MSRP abcd {method}\r\nTo-Path: msrp://a:1/a;tcp\r\nFrom-Path: msrp://b:2/b;tcp\r\n-------abcd$\r\n"
        );
        for sizes in [&[1][..], &[7], &[4096]] {
            let ok = ok_frames(frame.as_bytes(), sizes);
            let Message::Request(req) = &ok[0].head else { panic!("not a request") };
            assert_eq!(req.method.as_str(), method);
        }
    }
}

#[test]
fn start_line_errors_close_the_connection() {
    for (input, kind) in [
        (&b"MSRP abcd 2x0 OK\r\n"[..], ErrorKind::BadStartLine),
        (b"MSRP abc SEND\r\n", ErrorKind::BadTransactionId),
        (b"MSRP abcdefghijabcdefghijabcdefghijklm SEND\r\n", ErrorKind::BadTransactionId),
        (b"MSRP ab_d SEND\r\n", ErrorKind::BadTransactionId),
        (b"MSRP abcd _SEND\r\n", ErrorKind::BadStartLine),
        (b"MSRP abcd SE ND\r\n", ErrorKind::BadStartLine),
        (b"MSRP abcd\r\n", ErrorKind::BadStartLine),
        (b"GET / HTTP/1.1\r\n", ErrorKind::BadStartLine),
        (b"MSRP abcd SEND\n", ErrorKind::BareLineFeed),
    ] {
        let err = Decoder::default().decode(&mut BytesMut::from(input)).expect_err(&String::from_utf8_lossy(input));
        assert_eq!((err.kind, err.scope), (kind, Scope::Connection), "{}", String::from_utf8_lossy(input));
    }
    // Garbage is refused at its first bytes, without waiting for a line end.
    let mut dec = Decoder::default();
    let mut buf = BytesMut::from(&b"\x16\x03\x01"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap_err().kind, ErrorKind::BadStartLine);
}

#[test]
fn missing_end_line_is_reported_at_end_of_input() {
    let cut = &send_with_body()[..send_with_body().len() - 5];
    let mut dec = Decoder::default();
    let mut buf = BytesMut::from(cut);
    while dec.decode(&mut buf).unwrap().is_some() {}
    assert_eq!(dec.finish(&buf).unwrap_err().kind, ErrorKind::Truncated);
    // A next frame's start line where the end-line should be is just body: the sender broke
    // framing, and only the missing end-line can tell.
    let mut dec = Decoder::default();
    let mut buf = BytesMut::from(&[cut, b"\r\n", EMPTY_SEND].concat()[..]);
    while dec.decode(&mut buf).unwrap().is_some() {}
    assert!(dec.finish(&buf).is_err());
    assert!(Decoder::default().finish(b"\r\n").is_ok());
}
