//! TLS listeners, relay-to-relay chains with certificate verification, and isolation of a
//! stalled receiver.

mod common;

use std::time::{Duration, Instant};

use common::*;
use msrp::StatusCode;
use msrp::header::Path;
use msrp_relay::RelayOptions;
use tokio_rustls::TlsConnector;

fn join(paths: &[&Path]) -> Path {
    Path::new(paths.iter().flat_map(|p| p.uris().iter().cloned()).collect()).unwrap()
}

fn use_path(resp: &msrp::Response) -> Path {
    resp.headers.use_path().expect("Use-Path").clone()
}

#[tokio::test]
async fn a_and_b_over_tls() {
    let (tls, _) = tls_for(&["localhost"], &[]);
    let relay = start_relay(options("localhost", "example.com"), Some(&tls), "example.com").await;
    let mut a = Endpoint::connect(&relay, "alice", Some(&tls.connector)).await;
    let ua = use_path(&a.authenticate(&relay.uri(), "alice", "alicepw").await);
    assert!(ua.first().is_secure(), "msrps Use-Path on a TLS listener");
    let mut b = Endpoint::connect(&relay, "bob", Some(&tls.connector)).await;
    let ub = use_path(&b.authenticate(&relay.uri(), "bob", "bobpw").await);
    let send = a.send(join(&[&ua, &ub, &b.path()]), b"over tls");
    a.send_request(&send, Some(b"over tls")).await;
    let got = b.frame().await;
    assert_eq!(got.body, b"over tls");
    b.ok(got.request()).await;
    assert_eq!(a.frame().await.response().status, StatusCode::OK);
}

#[tokio::test]
async fn tls_connections_end_with_close_notify() {
    let (tls, _) = tls_for(&["localhost"], &[]);
    let opts = RelayOptions { auth_timeout: Duration::from_secs(1), ..options("localhost", "example.com") };
    let relay = start_relay(opts, Some(&tls), "example.com").await;
    let mut idle = Endpoint::connect(&relay, "idle", Some(&tls.connector)).await;
    assert_eq!(idle.closed_cleanly_within(Duration::from_secs(5)).await, Some(true), "closed by the relay, cleanly");
}

/// Relay 1 is `127.0.0.1` (realm one.test), relay 2 is `localhost` (realm two.test). With
/// `trust`, each relay's outgoing TLS trusts the other's certificate; without, neither does.
/// Returns the relays and the clients that endpoints use for each.
async fn two_relays(trust: bool) -> (TestRelay, TlsConnector, TestRelay, TlsConnector) {
    let (tls2, cert2) = tls_for(&["localhost"], &[]);
    let (tls1, cert1) = tls_for(&["127.0.0.1"], if trust { std::slice::from_ref(&cert2) } else { &[] });
    let tls2 =
        Tls { acceptor: tls2.acceptor, connector: connector(if trust { std::slice::from_ref(&cert1) } else { &[] }) };
    let opts = |host: &str, realm: &str| RelayOptions { domains: vec![realm.into()], ..options(host, realm) };
    let r1 = start_relay(opts("127.0.0.1", "one.test"), Some(&tls1), "one.test").await;
    let r2 = start_relay(opts("localhost", "two.test"), Some(&tls2), "two.test").await;
    (r1, connector(&[cert1]), r2, connector(&[cert2]))
}

#[tokio::test]
async fn a_relay1_relay2_b_over_verified_tls() {
    let (r1, to_r1, r2, to_r2) = two_relays(true).await;
    let mut a = Endpoint::connect(&r1, "alice", Some(&to_r1)).await;
    let ua = use_path(&a.authenticate(&r1.uri(), "alice", "alicepw").await);
    let mut b = Endpoint::connect(&r2, "bob", Some(&to_r2)).await;
    let ub = use_path(&b.authenticate(&r2.uri(), "bob", "bobpw").await);

    let send = a.send(join(&[&ua, &ub, &b.path()]), b"two hops");
    a.send_request(&send, Some(b"two hops")).await;
    let got = b.frame().await;
    assert_eq!(got.body, b"two hops");
    assert_eq!(got.request().headers.from_path().unwrap(), &join(&[&ub, &ua, &a.path()]));
    b.ok(got.request()).await;
    assert_eq!(a.frame().await.response().status, StatusCode::OK);
    assert!(a.try_frame(Duration::from_millis(500)).await.is_none(), "one response, no REPORT");

    let back = b.send(join(&[&ub, &ua, &a.path()]), b"and back");
    b.send_request(&back, Some(b"and back")).await;
    let got = a.frame().await;
    assert_eq!(got.body, b"and back");
    a.ok(got.request()).await;
    assert_eq!(b.frame().await.response().status, StatusCode::OK);
}

#[tokio::test]
async fn a_next_hop_that_hangs_does_not_hold_up_dials_to_others() {
    // Issue 12: the table of outgoing connections was locked across the TCP connect and TLS
    // handshake (each up to transaction_timeout), so one dead hop stalled every other dial.
    let (r1, to_r1, r2, to_r2) = two_relays(true).await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_uri: msrp::Uri = format!("msrps://127.0.0.1:{}/x;tcp", dead.local_addr().unwrap().port()).parse().unwrap();
    let _held = tokio::spawn(async move {
        // Accepts and never answers the TLS handshake.
        let mut keep = Vec::new();
        while let Ok((s, _)) = dead.accept().await {
            keep.push(s);
        }
    });
    let mut a1 = Endpoint::connect(&r1, "alice", Some(&to_r1)).await;
    let ua1 = use_path(&a1.authenticate(&r1.uri(), "alice", "alicepw").await);
    let stuck = a1.send(join(&[&ua1, &Path::single(dead_uri)]), b"into the void");
    a1.send_request(&stuck, Some(b"into the void")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut a2 = Endpoint::connect(&r1, "alice", Some(&to_r1)).await;
    let ua2 = use_path(&a2.authenticate(&r1.uri(), "alice", "alicepw").await);
    let mut b = Endpoint::connect(&r2, "bob", Some(&to_r2)).await;
    let ub = use_path(&b.authenticate(&r2.uri(), "bob", "bobpw").await);
    let started = Instant::now();
    let send = a2.send(join(&[&ua2, &ub, &b.path()]), b"meanwhile");
    a2.send_request(&send, Some(b"meanwhile")).await;
    let got = b.try_frame(Duration::from_secs(3)).await.expect("delivered while the other hop hangs");
    assert_eq!(got.body, b"meanwhile");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_untrusted_next_relay_is_not_used() {
    let (r1, to_r1, r2, to_r2) = two_relays(false).await;
    let mut a = Endpoint::connect(&r1, "alice", Some(&to_r1)).await;
    let ua = use_path(&a.authenticate(&r1.uri(), "alice", "alicepw").await);
    let mut b = Endpoint::connect(&r2, "bob", Some(&to_r2)).await;
    let ub = use_path(&b.authenticate(&r2.uri(), "bob", "bobpw").await);
    let send = a.send(join(&[&ua, &ub, &b.path()]), b"x");
    a.send_request(&send, Some(b"x")).await;
    let resp = a.frame().await;
    assert_ne!(resp.response().status, StatusCode::OK, "relay 1 must refuse relay 2's unverifiable certificate");
    assert!(b.try_frame(Duration::from_millis(500)).await.is_none(), "nothing reached B");
}

#[tokio::test]
async fn a_stalled_receiver_does_not_slow_another_pair() {
    let relay = start_relay(options("127.0.0.1", "example.com"), None, "example.com").await;
    let uri = relay.uri();
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let ua = use_path(&a.authenticate(&uri, "alice", "alicepw").await);
    let mut b = Endpoint::connect(&relay, "bob", None).await;
    let ub = use_path(&b.authenticate(&uri, "bob", "bobpw").await);
    let mut c = Endpoint::connect(&relay, "carol", None).await;
    let uc = use_path(&c.authenticate(&uri, "carol", "carolpw").await);
    let mut d = Endpoint::connect(&relay, "dave", None).await;
    let ud = use_path(&d.authenticate(&uri, "dave", "davepw").await);

    // A floods B, who never reads: 64 MB cannot fit in any socket buffer.
    let big = vec![b'x'; 1 << 20];
    let to_b = join(&[&ua, &ub, &b.path()]);
    let flood = tokio::spawn(async move {
        for _ in 0..64 {
            let send = a.send(to_b.clone(), &big);
            a.send_request(&send, Some(&big)).await;
        }
        a
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile C and D exchange 200 messages, each answered.
    let started = Instant::now();
    let to_d = join(&[&uc, &ud, &d.path()]);
    for i in 0..200 {
        let body = format!("message {i}");
        let send = c.send(to_d.clone(), body.as_bytes());
        c.send_request(&send, Some(body.as_bytes())).await;
        let got = d.frame().await;
        assert_eq!(got.body, body.as_bytes());
        d.ok(got.request()).await;
        assert_eq!(c.frame().await.response().status, StatusCode::OK);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "200 round trips took {elapsed:?} beside a stalled pair");
    assert!(!flood.is_finished(), "the flooding sender is held back by its stalled receiver");
    flood.abort();
    drop(b);
}

#[tokio::test]
async fn auth_through_one_relay_to_the_next_and_delivery_back_along_the_chain() {
    // RFC 4976 chaining: A authenticates with relay 1, then with relay 2 *through* relay 1
    // (inside-out), and uses both Use-Paths.
    let (r1, to_r1, r2, to_r2) = two_relays(true).await;
    let mut a = Endpoint::connect(&r1, "alice", Some(&to_r1)).await;
    let ua1 = use_path(&a.authenticate(&r1.uri(), "alice", "alicepw").await);
    // AUTH to relay 2, routed through relay 1's session.
    let through = join(&[&ua1, &Path::single(r2.uri())]);
    let mut auth = a.auth_request(&r2.uri());
    auth.headers.set(msrp::header::Header::ToPath(through.clone()));
    a.send_request(&auth, None).await;
    let challenge = a.frame().await.response().clone();
    assert_eq!(challenge.tid, auth.tid, "relay 2's 401 is relayed back as the answer to A's AUTH");
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let c = challenge.headers.challenges().next().unwrap().clone();
    assert_eq!(c.realm(), Some("two.test"));
    let mut second = auth.clone();
    second.tid = msrp::message::TransactionId::random();
    second.headers.set(msrp::header::Header::Authorization(Box::new(credentials(
        &c,
        "alice",
        "alicepw",
        &r2.uri(),
        1,
        true,
    ))));
    a.send_request(&second, None).await;
    let ok = a.frame().await.response().clone();
    assert_eq!(ok.status, StatusCode::OK);
    let ua2 = use_path(&ok);
    assert_eq!(ua2.first().host(), "localhost");

    // B, a direct client of relay 2, writes to A along A's full path: relay 2's session for A,
    // then relay 1's, then A.
    let mut b = Endpoint::connect(&r2, "bob", Some(&to_r2)).await;
    let ub = use_path(&b.authenticate(&r2.uri(), "bob", "bobpw").await);
    let send = b.send(join(&[&ub, &ua2, &ua1, &a.path()]), b"down the chain");
    b.send_request(&send, Some(b"down the chain")).await;
    let got = a.frame().await;
    assert_eq!(got.body, b"down the chain");
    assert_eq!(got.request().headers.from_path().unwrap(), &join(&[&ua1, &ua2, &ub, &b.path()]));
    a.ok(got.request()).await;
    assert_eq!(b.frame().await.response().status, StatusCode::OK);
}
