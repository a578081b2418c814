//! The fast path (`src/fast.rs`) against the general path, over real sockets: each SEND is
//! sent once whole (the fast path takes it) and once in two writes with a pause between (the
//! relay sees half a frame, so the streaming decoder takes it), and what B and A receive must
//! be the same bytes, the relay's fresh transaction id aside.

mod common;

use std::time::Duration;

use common::*;
use msrp::{Continuation, Decoder, Event, Message, StatusCode};
use msrp_relay::RelayOptions;

const REALM: &str = "example.com";

struct Pair {
    relay: TestRelay,
    a: Endpoint,
    b: Endpoint,
    /// `<B's Use-Path> <B>`, as text (the form that arrives as if from elsewhere).
    to: String,
    /// `<A's Use-Path> <B's Use-Path> <B>`: from A's own session, whose From-Path is checked.
    full: String,
}

async fn pair() -> Pair {
    pair_with(options("127.0.0.1", REALM), None).await
}

/// A and B authenticated at a relay with `opts`; B asks for `expires` seconds.
async fn pair_with(opts: RelayOptions, expires: Option<u32>) -> Pair {
    let relay = start_relay(opts, None, REALM).await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let mut b = Endpoint::connect(&relay, "bob", None).await;
    let ra = a.authenticate(&relay.uri(), "alice", "alicepw").await.headers.use_path().unwrap().clone();
    let rb = b.try_authenticate(&relay.uri(), "bob", "bobpw", expires, true).await;
    assert_eq!(rb.status, StatusCode::OK);
    let rb = rb.headers.use_path().unwrap().clone();
    let to = format!("{} {}", rb.first(), b.uri);
    let full = format!("{} {}", ra.first(), to);
    Pair { relay, a, b, to, full }
}

fn text(template: &str, p: &Pair) -> Vec<u8> {
    let template = template.replace("{full}", &p.full).replace("{to}", &p.to);
    template.replace("{from}", &p.a.uri.to_string()).into_bytes()
}

/// The request at the start of a raw frame.
fn head(raw: &[u8]) -> msrp::Request {
    let mut buf = msrp::BytesMut::from(raw);
    match Decoder::default().decode(&mut buf).unwrap() {
        Some(Event::Head(Message::Request(r))) => r,
        other => panic!("expected a request head, got {other:?}"),
    }
}

/// `raw` with every occurrence of the transaction id in its start line replaced.
fn without_tid(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw).into_owned();
    let tid = s.split(' ').nth(1).unwrap().to_owned();
    s.replace(&tid, "TID")
}

/// Writes `frame` from A whole (the fast path can take it), or in two halves with a pause
/// between (the relay reads half a frame: the streaming decoder takes it).
async fn send(p: &mut Pair, frame: &[u8], split: bool) {
    if split {
        p.a.write(&frame[..frame.len() / 2]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        p.a.write(&frame[frame.len() / 2..]).await;
    } else {
        p.a.write(frame).await;
    }
}

/// Sends `frame` from A (whole, or in two writes), lets B answer 200, and returns what B got
/// and what A got back (None when no answer is due).
async fn through(p: &mut Pair, frame: &[u8], split: bool, answered: bool) -> (String, Option<String>) {
    send(p, frame, split).await;
    let forwarded = p.b.raw_frame().await;
    p.b.ok(&head(&forwarded)).await;
    let answer = if answered {
        Some(p.a.raw_frame().await)
    } else {
        assert!(p.a.try_frame(Duration::from_millis(200)).await.is_none(), "no 200 is due");
        None
    };
    (without_tid(&forwarded), answer.map(|a| String::from_utf8(a).unwrap()))
}

/// The relay's count of fast-path frames once it reaches `want` (B's 200 may be handled after
/// A got its own), or after a second.
async fn fast_frames(p: &Pair, want: u64) -> u64 {
    for _ in 0..50 {
        if p.relay.relay.fast_path_frames() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.relay.relay.fast_path_frames()
}

const PLAIN: &str = "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\n\
Byte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------t1234$\r\n";

#[tokio::test]
async fn fast_and_general_paths_write_the_same_frames() {
    let mut p = pair().await;
    let cases: [(&str, bool); 6] = [
        (PLAIN, true),
        // Lower-case names, odd spacing, reports before the Message-ID, an unknown total, and a
        // body holding another transaction's end-line.
        (
            "MSRP t1234 SEND\r\nto-path: {to}\r\nFROM-PATH:{from}\r\nFailure-Report: yes\r\nSuccess-Report:  yes \r\n\
message-id: m1234\r\nByte-Range: 1-*/*\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
hel\r\n-------zz99$\r\nlo\r\n-------t1234$\r\n",
            true,
        ),
        // A first chunk of two (`+`), its Byte-Range made exact.
        (
            "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\n\
Byte-Range: 6-*/10\r\nContent-Type: text/plain\r\n\r\nworld\r\n-------t1234+\r\n",
            true,
        ),
        // No Byte-Range at all: the forwarded chunk gets one.
        (
            "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\n\
Content-Type: text/plain\r\n\r\nhello\r\n-------t1234$\r\n",
            true,
        ),
        // Failure-Report partial and no: no 200 to the sender (RFC 4975 §7.1.2).
        (
            "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\nFailure-Report: partial\r\n\
Byte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------t1234$\r\n",
            false,
        ),
        (
            "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\nFailure-Report: no\r\n\
Byte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------t1234$\r\n",
            false,
        ),
    ];
    let full_form = cases.map(|(t, a)| (t.replacen("To-Path: {to}", "To-Path: {full}", 1), a));
    let short_form = cases.map(|(t, a)| (t.to_owned(), a));
    for (template, answered) in short_form.iter().chain(&full_form) {
        let (template, answered) = (template.as_str(), *answered);
        let frame = text(template, &p);
        let before = p.relay.relay.fast_path_frames();
        let whole = through(&mut p, &frame, false, answered).await;
        // The SEND and B's 200 both took the fast path.
        assert_eq!(fast_frames(&p, before + 2).await, before + 2, "fast path not taken for:\n{template}");
        let before = before + 2;
        let split = through(&mut p, &frame, true, answered).await;
        assert_eq!(fast_frames(&p, before + 1).await, before + 1, "only B's 200 is whole");
        assert_eq!(whole, split, "paths differ for:\n{template}");
    }
    // And what the general path writes is what RFC 4976 asks for (spot check of the first).
    let plain = text(PLAIN, &p);
    let (forwarded, answer) = through(&mut p, &plain, false, true).await;
    let rb = p.to.split(' ').next().unwrap();
    assert!(
        forwarded.starts_with(&format!("MSRP TID SEND\r\nTo-Path: {}\r\nFrom-Path: {rb} ", p.b.uri)),
        "{forwarded}"
    );
    assert!(forwarded.ends_with("Byte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------TID$\r\n"));
    let answer = answer.unwrap();
    assert!(answer.starts_with(&format!("MSRP t1234 200 OK\r\nTo-Path: {}\r\n", p.a.uri)), "{answer}");
}

#[tokio::test]
async fn a_remembered_route_ends_with_its_session() {
    let mut p = pair().await;
    let frame = text(PLAIN, &p);
    through(&mut p, &frame, false, true).await;
    drop(p.b);
    for _ in 0..100 {
        if p.relay.relay.session_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.relay.relay.session_count(), 1, "B's session ended with its connection");
    p.a.write(&frame).await;
    let resp = p.a.frame().await;
    assert_eq!(resp.response().status, StatusCode::SESSION_DOES_NOT_EXIST, "not sent down a stale route");
}

#[tokio::test]
async fn frames_it_does_not_know_take_the_general_path() {
    let mut p = pair().await;
    // An unknown header, a repeated one, an abort, and a malformed Byte-Range.
    let odd = [
        "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\nByte-Range: 1-5/5\r\n\
X-Note: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------t1234$\r\n",
        "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\nMessage-ID: m1235\r\n\
Byte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------t1234$\r\n",
        "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\nByte-Range: 1-5/5\r\n\
Content-Type: text/plain\r\n\r\nhello\r\n-------t1234#\r\n",
        "MSRP t1234 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1234\r\nByte-Range: 5-1/5\r\n\
Content-Type: text/plain\r\n\r\nhello\r\n-------t1234$\r\n",
    ];
    let expected = [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::OK, StatusCode::BAD_REQUEST];
    for (i, (template, want)) in odd.iter().zip(expected).enumerate() {
        let before = p.relay.relay.fast_path_frames();
        let frame = text(template, &p);
        p.a.write(&frame).await;
        if want == StatusCode::OK {
            let fwd = p.b.frame().await;
            if i == 0 {
                assert_eq!(fwd.request().headers.other("X-Note"), Some("hi"), "unknown headers pass through");
            } else {
                assert_eq!(fwd.flag, Continuation::Abort, "the abort is passed on");
            }
            p.b.ok(fwd.request()).await;
        }
        assert_eq!(p.a.frame().await.response().status, want, "{template}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fast = p.relay.relay.fast_path_frames() - before;
        assert!(fast <= 1, "only B's 200 may take the fast path:\n{template}");
    }
}

#[tokio::test]
async fn a_remembered_route_ends_when_its_session_expires() {
    let opts = RelayOptions { min_expires: 1, ..options("127.0.0.1", REALM) };
    let mut p = pair_with(opts, Some(1)).await;
    let frame = text(PLAIN, &p);
    through(&mut p, &frame, false, true).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    p.a.write(&frame).await;
    assert_eq!(p.a.frame().await.response().status, StatusCode::SESSION_DOES_NOT_EXIST, "B's session expired");
}

#[tokio::test]
async fn a_body_of_max_chunk_bytes_is_cut_as_the_general_path_cuts_it() {
    let opts = RelayOptions { max_chunk: 5, ..options("127.0.0.1", REALM) };
    let mut p = pair_with(opts, None).await;
    let frame = text(PLAIN, &p);
    let mut outputs = Vec::new();
    for split in [false, true] {
        send(&mut p, &frame, split).await;
        // Five bytes fill a chunk: `+` with them, then an empty `$`.
        let first = p.b.raw_frame().await;
        let last = p.b.raw_frame().await;
        p.b.ok(&head(&first)).await;
        p.b.ok(&head(&last)).await;
        assert_eq!(p.a.frame().await.response().status, StatusCode::OK);
        outputs.push((without_tid(&first), without_tid(&last)));
    }
    assert!(outputs[0].0.ends_with("Byte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------TID+\r\n"));
    assert!(outputs[0].1.contains("Byte-Range: 6-5/5\r\n"), "{}", outputs[0].1);
    assert_eq!(outputs[0], outputs[1]);
}

#[tokio::test]
async fn a_byte_range_start_beyond_2_62_is_refused() {
    let mut p = pair().await;
    let huge = PLAIN.replace("Byte-Range: 1-5/5", "Byte-Range: 18446744073709551615-*/*");
    for split in [false, true] {
        let frame = text(&huge, &p);
        send(&mut p, &frame, split).await;
        assert_eq!(p.a.frame().await.response().status, StatusCode::BAD_REQUEST);
    }
    assert!(p.b.try_frame(Duration::from_millis(200)).await.is_none(), "nothing forwarded");
}
