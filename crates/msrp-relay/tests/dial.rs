//! A dead next hop (issue 12): once a dial fails, requests for that hop get 481 at once for
//! `dial_backoff`, instead of each waiting for its own dial to time out.

mod common;

use std::time::{Duration, Instant};

use common::{Endpoint, options, start_relay, tls_for};
use msrp::StatusCode;
use msrp::header::Path;

/// A hop that accepts TCP and never speaks: a TLS handshake with it times out.
async fn black_hole() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A SEND from `ep` (whose relay session is `use_path`) to a session at the dead hop; the
/// hop-by-hop status and how long it took.
async fn send_to_dead_hop(ep: &mut Endpoint, use_path: &Path, hole: std::net::SocketAddr) -> (StatusCode, Duration) {
    let far: msrp::Uri = format!("msrps://127.0.0.1:{}/far1;tcp", hole.port()).parse().unwrap();
    let to = Path::new(use_path.uris().iter().cloned().chain([far]).collect()).unwrap();
    let send = ep.send(to, b"hello");
    let started = Instant::now();
    ep.send_request(&send, Some(b"hello")).await;
    (ep.frame().await.response().status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dial_answers_the_next_requests_at_once() {
    let hole = black_hole().await;
    let (tls, _) = tls_for(&["127.0.0.1"], &[]);
    let mut opts = options("127.0.0.1", "example.com");
    opts.transaction_timeout = Duration::from_secs(1);
    opts.dial_backoff = Duration::from_secs(5);
    let relay = start_relay(opts, Some(&tls), "example.com").await;
    let mut a = Endpoint::connect(&relay, "alice", Some(&tls.connector)).await;
    let ua = a.authenticate(&relay.uri(), "alice", "alicepw").await.headers.use_path().unwrap().clone();
    let mut b = Endpoint::connect(&relay, "bob", Some(&tls.connector)).await;
    let ub = b.authenticate(&relay.uri(), "bob", "bobpw").await.headers.use_path().unwrap().clone();

    // Two requests at once: the second waits for the first's dial, then fails with it.
    let (first, second) = tokio::join!(send_to_dead_hop(&mut a, &ua, hole), send_to_dead_hop(&mut b, &ub, hole));
    assert_eq!((first.0, second.0), (StatusCode::SESSION_DOES_NOT_EXIST, StatusCode::SESSION_DOES_NOT_EXIST));
    assert!(first.1 >= Duration::from_millis(900), "the dial ran its timeout: {:?}", first.1);
    assert!(second.1 < Duration::from_millis(1_800), "no second dial of its own: {:?}", second.1);
    // And one after: at once.
    let (status, took) = send_to_dead_hop(&mut a, &ua, hole).await;
    assert_eq!(status, StatusCode::SESSION_DOES_NOT_EXIST);
    assert!(took < Duration::from_millis(300), "answered from the remembered failure: {took:?}");
}
