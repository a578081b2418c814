//! The relay over real sockets on 127.0.0.1 (RFC 4976): AUTH, forwarding, hop-by-hop
//! responses, failure REPORTs, streaming.

mod common;

use std::time::Duration;

use common::*;
use msrp::header::{Header, Path};
use msrp::message::TransactionId;
use msrp::{Continuation, Method, StatusCode};

const REALM: &str = "example.com";

async fn plain_relay() -> TestRelay {
    start_relay(options("127.0.0.1", REALM), None, REALM).await
}

fn use_path(resp: &msrp::Response) -> Path {
    resp.headers.use_path().expect("200 to AUTH carries Use-Path").clone()
}

#[tokio::test]
async fn challenge_has_realm_nonce_opaque_qop_and_both_algorithms() {
    let relay = plain_relay().await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    a.send_request(&a.auth_request(&relay.uri()), None).await;
    let resp = a.frame().await.response().clone();
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers.to_path().unwrap(), &a.path(), "response goes to the previous hop");
    let challenges: Vec<_> = resp.headers.challenges().collect();
    let algorithms: Vec<&str> = challenges.iter().map(|c| c.algorithm()).collect();
    assert_eq!(algorithms, ["SHA-256", "MD5"]);
    for c in challenges {
        assert_eq!(c.scheme, "Digest");
        assert_eq!(c.realm(), Some(REALM));
        assert!(c.nonce().is_some_and(|n| n.len() >= 16));
        assert!(c.opaque().is_some(), "opaque is always sent (field clients need it)");
        assert_eq!(c.param("qop"), Some("auth"));
        assert!(!c.stale());
    }
}

#[tokio::test]
async fn success_gives_use_path_expires_and_authentication_info() {
    let relay = plain_relay().await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let resp = a.authenticate(&relay.uri(), "alice", "alicepw").await;
    let up = use_path(&resp);
    assert_eq!(up.len(), 1);
    let sid = up.first().session_id().expect("Use-Path has a session-id");
    assert!(sid.len() >= 14, "session-id of ≥ 80 random bits");
    assert!(sid.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(up.first().host(), "127.0.0.1");
    assert_eq!(up.first().port(), Some(relay.addr.port()));
    assert_eq!(resp.headers.expires(), Some(600), "default_expires");
    let info = resp.headers.authentication_info().expect("Authentication-Info");
    assert!(info.param("rspauth").is_some());
    assert_eq!(relay.relay.session_count(), 1);
}

#[tokio::test]
async fn authorization_without_uri_parameter_is_accepted() {
    let relay = plain_relay().await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let resp = a.try_authenticate(&relay.uri(), "alice", "alicepw", None, false).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_forbidden_and_the_connection_closes() {
    let relay = start_relay(RelayOptions { max_auth_failures: 2, ..options("127.0.0.1", REALM) }, None, REALM).await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let resp = a.try_authenticate(&relay.uri(), "alice", "wrong", None, true).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let resp = a.try_authenticate(&relay.uri(), "mallory", "x", None, true).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(a.closed_within(Duration::from_secs(3)).await, "closed after max_auth_failures");
    assert_eq!(relay.relay.session_count(), 0);
}

use msrp_relay::RelayOptions;

#[tokio::test]
async fn replayed_nonce_count_is_refused() {
    let relay = plain_relay().await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let req = a.auth_request(&relay.uri());
    a.send_request(&req, None).await;
    let c = a.frame().await.response().headers.challenges().next().unwrap().clone();
    let creds = credentials(&c, "alice", "alicepw", &relay.uri(), 1, true);
    let mut second = req.clone();
    second.tid = TransactionId::random();
    second.headers.set(Header::Authorization(Box::new(creds.clone())));
    a.send_request(&second, None).await;
    assert_eq!(a.frame().await.response().status, StatusCode::OK);
    // The very same credentials again (same nonce, same nc).
    second.tid = TransactionId::random();
    a.send_request(&second, None).await;
    assert_eq!(a.frame().await.response().status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn stale_nonce_gets_a_fresh_challenge_with_stale_true() {
    let relay = start_relay(
        RelayOptions { nonce_lifetime: Duration::from_secs(1), ..options("127.0.0.1", REALM) },
        None,
        REALM,
    )
    .await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let req = a.auth_request(&relay.uri());
    a.send_request(&req, None).await;
    let c = a.frame().await.response().headers.challenges().next().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut second = req.clone();
    second.tid = TransactionId::random();
    second.headers.set(Header::Authorization(Box::new(credentials(&c, "alice", "alicepw", &relay.uri(), 1, true))));
    a.send_request(&second, None).await;
    let resp = a.frame().await.response().clone();
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(resp.headers.challenges().all(|c| c.stale()));
}

#[tokio::test]
async fn expires_out_of_bounds_gets_423_both_ways() {
    let relay = plain_relay().await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let low = a.try_authenticate(&relay.uri(), "alice", "alicepw", Some(10), true).await;
    assert_eq!(low.status, StatusCode::INTERVAL_OUT_OF_BOUNDS);
    assert_eq!(low.headers.min_expires(), Some(60));
    let high = a.try_authenticate(&relay.uri(), "alice", "alicepw", Some(999_999), true).await;
    assert_eq!(high.status, StatusCode::INTERVAL_OUT_OF_BOUNDS);
    assert_eq!(high.headers.max_expires(), Some(3600));
    let ok = a.try_authenticate(&relay.uri(), "alice", "alicepw", Some(120), true).await;
    assert_eq!((ok.status, ok.headers.expires()), (StatusCode::OK, Some(120)));
}

/// Two authenticated endpoints on one relay.
async fn pair(relay: &TestRelay) -> (Endpoint, Path, Endpoint, Path) {
    let mut a = Endpoint::connect(relay, "alice", None).await;
    let ua = use_path(&a.authenticate(&relay.uri(), "alice", "alicepw").await);
    let mut b = Endpoint::connect(relay, "bob", None).await;
    let ub = use_path(&b.authenticate(&relay.uri(), "bob", "bobpw").await);
    (a, ua, b, ub)
}

fn join(paths: &[&Path]) -> Path {
    Path::new(paths.iter().flat_map(|p| p.uris().iter().cloned()).collect()).unwrap()
}

#[tokio::test]
async fn a_and_b_talk_both_ways_with_one_response_per_send() {
    let relay = plain_relay().await;
    let (mut a, ua, mut b, ub) = pair(&relay).await;
    // Full form: <A's Use-Path> <B's Use-Path> <B>.
    let send = a.send(join(&[&ua, &ub, &b.path()]), b"hello bob");
    a.send_request(&send, Some(b"hello bob")).await;
    let got = b.frame().await;
    let req = got.request();
    assert_eq!(got.body, b"hello bob");
    assert_eq!(req.headers.to_path().unwrap(), &b.path());
    assert_eq!(req.headers.from_path().unwrap(), &join(&[&ub, &ua, &a.path()]));
    assert_eq!(req.headers.message_id(), send.headers.message_id());
    assert_ne!(req.tid, send.tid, "a new transaction on the next hop");
    b.ok(req).await;
    let resp = a.frame().await;
    assert_eq!(resp.response().tid, send.tid);
    assert_eq!(resp.response().status, StatusCode::OK);
    assert_eq!(resp.response().headers.to_path().unwrap(), &a.path());
    assert!(
        a.try_frame(Duration::from_millis(300)).await.is_none(),
        "exactly one response per SEND (B's 200 is consumed)"
    );

    // Short (Kamailio) form, the other way: <A's Use-Path> <A>.
    let back = b.send(join(&[&ua, &a.path()]), b"hi alice");
    b.send_request(&back, Some(b"hi alice")).await;
    let got = a.frame().await;
    assert_eq!(got.body, b"hi alice");
    assert_eq!(got.request().headers.from_path().unwrap(), &join(&[&ua, &b.path()]));
    a.ok(got.request()).await;
    assert_eq!(b.frame().await.response().status, StatusCode::OK);
    assert!(b.try_frame(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn unauthenticated_connection_cannot_send_outward() {
    let relay = plain_relay().await;
    let (_a, ua, _b, _ub) = pair(&relay).await;
    let mut m = Endpoint::connect(&relay, "mallory", None).await;
    let far: Path = Path::single("msrp://victim.example.net:9/x;tcp".parse().unwrap());
    let send = m.send(join(&[&ua, &far]), b"spam");
    m.send_request(&send, Some(b"spam")).await;
    assert_eq!(m.frame().await.response().status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_session_is_481_and_spoofed_from_path_is_403() {
    let relay = plain_relay().await;
    let (mut a, ua, b, ub) = pair(&relay).await;
    let bogus = Path::single(relay.uri().with_session_id(Some("doesnotexist")).unwrap());
    let send = a.send(join(&[&bogus, &b.path()]), b"x");
    a.send_request(&send, Some(b"x")).await;
    assert_eq!(a.frame().await.response().status, StatusCode::SESSION_DOES_NOT_EXIST);

    let mut spoof = a.send(join(&[&ua, &ub, &b.path()]), b"x");
    spoof.headers.set(Header::FromPath(Path::single("msrp://mallory.example.com:1/m;tcp".parse().unwrap())));
    a.send_request(&spoof, Some(b"x")).await;
    let resp = a.frame().await;
    assert_eq!(resp.response().status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sessions_expire() {
    let relay = start_relay(RelayOptions { min_expires: 1, ..options("127.0.0.1", REALM) }, None, REALM).await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let resp = a.try_authenticate(&relay.uri(), "alice", "alicepw", Some(1), true).await;
    assert_eq!(resp.status, StatusCode::OK);
    let ua = use_path(&resp);
    let mut b = Endpoint::connect(&relay, "bob", None).await;
    let ub = use_path(&b.authenticate(&relay.uri(), "bob", "bobpw").await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let send = a.send(join(&[&ua, &ub, &b.path()]), b"late");
    a.send_request(&send, Some(b"late")).await;
    assert_eq!(a.frame().await.response().status, StatusCode::SESSION_DOES_NOT_EXIST);
}

#[tokio::test]
async fn ten_megabytes_of_binary_with_fake_end_lines_arrive_byte_exact() {
    let relay = plain_relay().await;
    let (mut a, ua, mut b, ub) = pair(&relay).await;
    let mut body = Vec::with_capacity(10 << 20);
    let mut x: u32 = 12345;
    while body.len() < 10 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        body.push((x >> 16) as u8);
        if body.len() % 100_000 == 0 {
            body.extend_from_slice(b"\r\n-------abcdefgh$\r\n");
        }
    }
    let mut send = a.send(join(&[&ua, &ub, &b.path()]), &body);
    send.headers.set(Header::ContentType("application/octet-stream".parse().unwrap()));
    let writer = async {
        a.send_request(&send, Some(&body)).await;
        a
    };
    let reader = async {
        // Reassemble by Byte-Range across the relay's chunks, answering each.
        let mut got = vec![0u8; body.len()];
        let mut received = 0usize;
        loop {
            let f = b.frame().await;
            let req = f.request().clone();
            assert_eq!(req.method, Method::Send);
            let range = req.headers.byte_range().unwrap();
            let start = range.start as usize - 1;
            got[start..start + f.body.len()].copy_from_slice(&f.body);
            received += f.body.len();
            b.ok(&req).await;
            if f.flag == Continuation::Complete {
                break;
            }
        }
        assert_eq!(received, body.len());
        (b, got)
    };
    let (mut a, (_b, got)) = tokio::join!(writer, reader);
    assert!(got == body, "body differs");
    assert_eq!(a.frame().await.response().status, StatusCode::OK);
}

#[tokio::test]
async fn receiver_gone_mid_message_gives_the_sender_a_408_failure_report() {
    let relay = plain_relay().await;
    let (mut a, ua, mut b, ub) = pair(&relay).await;
    let mut send = a.send(join(&[&ua, &ub, &b.path()]), &[0; 100]);
    send.headers.set(Header::ByteRange(msrp::header::ByteRange { start: 1, end: None, total: Some(200) }));
    // First chunk of two: B receives it and vanishes without answering.
    let mut out = bytes::BytesMut::new();
    msrp::encode::encode_request(&send, Some(&[7u8; 100]), Continuation::More, &mut out).unwrap();
    a.write(&out).await;
    let first = b.frame().await;
    assert_eq!(first.body.len(), 100);
    drop(b);
    // A gets the hop-by-hop 200 and then the failure REPORT for what was in flight.
    let mut saw_report = false;
    for _ in 0..2 {
        let f = a.frame().await;
        if let msrp::Message::Request(r) = &f.head {
            assert_eq!(r.method, Method::Report);
            assert_eq!(r.headers.status().unwrap().code, StatusCode::REQUEST_TIMEOUT);
            assert_eq!(r.headers.message_id(), send.headers.message_id());
            assert_eq!(r.headers.to_path().unwrap(), &a.path());
            assert_eq!(r.headers.byte_range().unwrap().start, 1);
            saw_report = true;
        }
    }
    assert!(saw_report, "failure REPORT received");
}
