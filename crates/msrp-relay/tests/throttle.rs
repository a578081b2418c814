//! `[relay.limits]` over real sockets (issue 14): a session's rate is kept by reading its
//! sender more slowly while another pair's messages pass at once; quotas on sessions per
//! account and AUTH requests per address answer 403 with a reason.

mod common;

use std::time::{Duration, Instant};

use common::{Endpoint, options, start_relay};
use msrp::StatusCode;
use msrp::header::Path;
use msrp_relay::throttle::{Limits, ThrottleOptions};

const REALM: &str = "example.com";

fn limited(limits: Limits) -> msrp_relay::RelayOptions {
    let mut opts = options("127.0.0.1", REALM);
    opts.throttle = ThrottleOptions { global: limits, ..ThrottleOptions::default() };
    opts
}

/// Two authenticated endpoints and the To-Path from the first to the second.
async fn pair(relay: &common::TestRelay, a: (&str, &str), b: (&str, &str)) -> (Endpoint, Endpoint, Path) {
    let mut ea = Endpoint::connect(relay, a.0, None).await;
    let ua = ea.authenticate(&relay.uri(), a.0, a.1).await.headers.use_path().unwrap().clone();
    let mut eb = Endpoint::connect(relay, b.0, None).await;
    let ub = eb.authenticate(&relay.uri(), b.0, b.1).await.headers.use_path().unwrap().clone();
    let to = Path::new(ua.uris().iter().chain(ub.uris()).chain(eb.path().uris()).cloned().collect()).unwrap();
    (ea, eb, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_rate_slows_its_sender_and_no_one_else() {
    const RATE: u64 = 200_000;
    let relay = start_relay(limited(Limits { session_rate: Some(RATE), ..Limits::default() }), None, REALM).await;
    let (mut a, mut b, to_b) = pair(&relay, ("alice", "alicepw"), ("bob", "bobpw")).await;
    let (mut c, mut d, to_d) = pair(&relay, ("carol", "carolpw"), ("dave", "davepw")).await;

    // Alice sends 800 kB in chunks of 100 kB: the first second's burst, then RATE.
    let body = vec![b'x'; 100_000];
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..8 {
            let send = a.send(to_b.clone(), &body);
            a.send_request(&send, Some(&body)).await;
        }
        a
    });
    // Meanwhile Carol's small messages to Dave pass at once.
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let text = format!("small {i}");
        let t0 = Instant::now();
        let send = c.send(to_d.clone(), text.as_bytes());
        c.send_request(&send, Some(text.as_bytes())).await;
        let got = d.frame().await;
        worst = worst.max(t0.elapsed());
        assert_eq!(got.body, text.as_bytes());
        d.ok(got.request()).await;
        assert_eq!(c.frame().await.response().status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(worst < Duration::from_millis(300), "the other pair waited {worst:?}");
    let mut received = 0;
    while received < 800_000 {
        let f = b.frame().await;
        received += f.body.len();
        b.ok(f.request()).await;
    }
    let took = started.elapsed();
    // 800 kB less the 200 kB burst at 200 kB/s: 3 s.
    assert!(took >= Duration::from_millis(2_600), "not throttled: {took:?}");
    assert!(took < Duration::from_secs(6), "throttled too hard: {took:?}");
    assert!(relay.relay.stats().throttled_seconds() > 1.0);
    drop(sender.await.unwrap());
}

#[tokio::test]
async fn an_account_holds_at_most_user_sessions() {
    let relay = start_relay(limited(Limits { user_sessions: Some(1), ..Limits::default() }), None, REALM).await;
    let mut first = Endpoint::connect(&relay, "alice", None).await;
    first.authenticate(&relay.uri(), "alice", "alicepw").await;
    let mut second = Endpoint::connect(&relay, "alice2", None).await;
    let resp = second.try_authenticate(&relay.uri(), "alice", "alicepw", None, true).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.comment.as_deref(), Some("Too many sessions for this account"));
    // Another account is not affected; and when Alice's session ends, she may have another.
    let mut bob = Endpoint::connect(&relay, "bob", None).await;
    bob.authenticate(&relay.uri(), "bob", "bobpw").await;
    drop(first);
    let started = Instant::now();
    loop {
        let mut again = Endpoint::connect(&relay, "alice3", None).await;
        let resp = again.try_authenticate(&relay.uri(), "alice", "alicepw", None, true).await;
        if resp.status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{resp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn auth_requests_beyond_auth_rate_are_refused() {
    let relay = start_relay(limited(Limits { auth_rate: Some(2), ..Limits::default() }), None, REALM).await;
    let mut ep = Endpoint::connect(&relay, "alice", None).await;
    // The burst is one second's worth: two AUTHs (a challenge and its answer) pass…
    ep.authenticate(&relay.uri(), "alice", "alicepw").await;
    // …and the third at once does not.
    let req = ep.auth_request(&relay.uri());
    ep.send_request(&req, None).await;
    let resp = ep.frame().await.response().clone();
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.comment.as_deref(), Some("Too many AUTH requests from this address"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    ep.send_request(&ep.auth_request(&relay.uri()), None).await;
    assert_eq!(ep.frame().await.response().status, StatusCode::UNAUTHORIZED, "allowed again after a while");
}
