//! Peers that reach a session over a connection of their own (RFC 4976 §7 with AG's field
//! practice): replies go back over it, and when one side's connection ends the other side
//! learns it by the end of its own, where that carried nothing else.

mod common;

use std::time::Duration;

use common::*;
use msrp::header::{Header, Path};
use msrp::message::TransactionId;
use msrp::{Method, StatusCode};

const REALM: &str = "example.com";

fn join(paths: &[&Path]) -> Path {
    Path::new(paths.iter().flat_map(|p| p.uris().iter().cloned()).collect()).unwrap()
}

fn use_path(resp: &msrp::Response) -> Path {
    resp.headers.use_path().expect("Use-Path").clone()
}

/// Bob authenticated at the relay; a far end F that never AUTHs, connected to it, whose URI
/// names no listening socket; F has delivered one message into Bob's session.
async fn far_end_and_bob(relay: &TestRelay) -> (Endpoint, Endpoint, Path) {
    let mut b = Endpoint::connect(relay, "bob", None).await;
    let ub = use_path(&b.authenticate(&relay.uri(), "bob", "bobpw").await);
    let mut f = Endpoint::connect(relay, "far", None).await;
    f.uri = format!("msrp://127.0.0.1:1/{};tcp", msrp::id::random_session_id()).parse().unwrap();
    let send = f.send(join(&[&ub, &b.path()]), b"hi");
    f.send_request(&send, Some(b"hi")).await;
    let got = b.frame().await;
    b.ok(got.request()).await;
    assert_eq!(f.frame().await.response().status, StatusCode::OK);
    (f, b, ub)
}

#[tokio::test]
async fn a_far_end_without_a_relay_is_answered_over_its_own_connection() {
    // Blink's default: only the callee (B) uses a relay. The caller (F) connects to B's relay,
    // never AUTHs, and its URI names no socket anyone can reach (port 1 refuses).
    let relay = start_relay(options("127.0.0.1", REALM), None, REALM).await;
    let mut b = Endpoint::connect(&relay, "bob", None).await;
    let ub = use_path(&b.authenticate(&relay.uri(), "bob", "bobpw").await);
    let mut f = Endpoint::connect(&relay, "far", None).await;
    f.uri = format!("msrp://127.0.0.1:1/{};tcp", msrp::id::random_session_id()).parse().unwrap();
    let send = f.send(join(&[&ub, &b.path()]), b"hello from afar");
    f.send_request(&send, Some(b"hello from afar")).await;
    let got = b.frame().await;
    assert_eq!(got.body, b"hello from afar");
    b.ok(got.request()).await;
    assert_eq!(f.frame().await.response().status, StatusCode::OK);
    // B answers along the path it was given: through its relay to F.
    let back_to = join(&[&ub, &f.path()]);
    for i in 0..3 {
        let text = format!("reply {i}");
        let reply = b.send(back_to.clone(), text.as_bytes());
        b.send_request(&reply, Some(text.as_bytes())).await;
        let got = f.frame().await;
        assert_eq!(got.body, text.as_bytes(), "over the connection F opened, not by dialling F's URI");
        assert_eq!(got.request().headers.to_path().unwrap(), &f.path());
        f.ok(got.request()).await;
        assert_eq!(b.frame().await.response().status, StatusCode::OK);
    }
    // A REPORT goes the same way.
    let report = msrp::Request::new(TransactionId::random(), Method::Report)
        .with(Header::ToPath(back_to))
        .with(Header::FromPath(b.path()))
        .with(Header::MessageId(send.headers.message_id().unwrap().clone()))
        .with(Header::ByteRange(msrp::header::ByteRange::whole(15)))
        .with(Header::Status(msrp::header::Status::new(StatusCode::OK)));
    b.send_request(&report, None).await;
    let got = f.frame().await;
    assert_eq!(got.request().method, Method::Report);
    assert_eq!(got.request().headers.byte_range().unwrap().to_string(), "1-15/15");
}

#[tokio::test]
async fn a_stranger_naming_the_far_end_cannot_divert_its_traffic() {
    let relay = start_relay(options("127.0.0.1", REALM), None, REALM).await;
    let (mut f, mut b, ub) = far_end_and_bob(&relay).await;
    // Mallory learnt both session-ids and delivers one request under the far end's URI.
    let mut m = Endpoint::connect(&relay, "mallory", None).await;
    m.uri = f.uri.clone();
    let fake = m.send(join(&[&ub, &b.path()]), b"it's me");
    m.send_request(&fake, Some(b"it's me")).await;
    let got = b.frame().await;
    b.ok(got.request()).await;
    let reply = b.send(join(&[&ub, &f.path()]), b"for the far end");
    b.send_request(&reply, Some(b"for the far end")).await;
    assert_eq!(f.frame().await.body, b"for the far end", "still over the far end's own connection");
    assert!(m.try_frame(Duration::from_millis(300)).await.is_some_and(|r| r.response().status == StatusCode::OK));
    assert!(m.try_frame(Duration::from_millis(300)).await.is_none(), "nothing for Mallory but her 200");
}

#[tokio::test]
async fn when_the_far_end_goes_its_peers_connection_is_closed() {
    let relay = start_relay(options("127.0.0.1", REALM), None, REALM).await;
    let (f, mut b, _) = far_end_and_bob(&relay).await;
    drop(f);
    assert!(b.closed_within(Duration::from_secs(3)).await, "Bob learns his peer is gone");
    assert_eq!(relay.relay.session_count(), 0);
}

#[tokio::test]
async fn when_the_session_ends_the_far_ends_connection_is_closed() {
    let relay = start_relay(options("127.0.0.1", REALM), None, REALM).await;
    let (mut f, b, _) = far_end_and_bob(&relay).await;
    drop(b);
    assert!(f.closed_within(Duration::from_secs(3)).await, "the far end learns its peer is gone");
}

#[tokio::test]
async fn a_connection_with_other_sessions_stays_and_its_client_gets_481() {
    let relay = start_relay(options("127.0.0.1", REALM), None, REALM).await;
    let (f, mut b, ub) = far_end_and_bob(&relay).await;
    // Bob's connection carries a second session.
    let second = use_path(&b.authenticate(&relay.uri(), "bob", "bobpw").await);
    assert_ne!(second, ub);
    let far = f.path();
    drop(f);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.closed_within(Duration::from_millis(200)).await, "a shared connection stays");
    let send = b.send(join(&[&ub, &far]), b"anyone?");
    b.send_request(&send, Some(b"anyone?")).await;
    assert_eq!(b.frame().await.response().status, StatusCode::SESSION_DOES_NOT_EXIST);
}

#[tokio::test]
async fn two_sessions_on_this_relay_end_together() {
    // Both ends authenticated here (msrplib's server_relay_client_relay): the one left behind
    // is closed when the other goes, once they have talked.
    let relay = start_relay(options("127.0.0.1", REALM), None, REALM).await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let ua = use_path(&a.authenticate(&relay.uri(), "alice", "alicepw").await);
    let mut b = Endpoint::connect(&relay, "bob", None).await;
    let ub = use_path(&b.authenticate(&relay.uri(), "bob", "bobpw").await);
    let send = a.send(join(&[&ua, &ub, &b.path()]), b"hello");
    a.send_request(&send, Some(b"hello")).await;
    let got = b.frame().await;
    b.ok(got.request()).await;
    assert_eq!(a.frame().await.response().status, StatusCode::OK);
    drop(a);
    assert!(b.closed_within(Duration::from_secs(3)).await);
}
