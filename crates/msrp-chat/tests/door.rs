//! The SIP front door (issue 11): strangers' requests are answered without transaction state,
//! each source gets a bounded rate, SIP TCP connections are capped and idle ones closed. The
//! floods themselves are benchmarks (`msrp-bench abuse`); these check the mechanisms.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::sip::start_sip_chat_on;
use msrp_chat::ChatOptions;
use msrp_chat::sip::{SipLimits, SipListeners};
use rsipstack::sip::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

async fn server(limits: SipLimits) -> common::sip::SipChat {
    let listeners = SipListeners {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        tcp: vec![TcpListener::bind("127.0.0.1:0").await.unwrap()],
        limits,
        ..SipListeners::default()
    };
    // Nobody trusted: every INVITE is challenged.
    start_sip_chat_on(ChatOptions::default(), false, None, listeners).await
}

fn request(method: &str, n: u32, local: SocketAddr, server: SocketAddr, to_tag: &str) -> String {
    format!(
        "{method} sip:lobby@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n:08x}door;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=f{n}\r\nTo: <sip:lobby@chat.test>{to_tag}\r\n\
         Call-ID: door{n}@test\r\nCSeq: 1 {method}\r\nContact: <sip:alice@{local}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Datagrams received within `wait` of the last one.
async fn replies(sock: &UdpSocket, wait: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

/// Up to `n` datagrams, waiting at most 2 s in all.
async fn replies_n(sock: &UdpSocket, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while out.len() < n
        && let Ok(Ok(len)) = tokio::time::timeout_at(end, sock.recv(&mut buf)).await
    {
        out.push(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    out
}

fn to_tag(resp: &str) -> Option<&str> {
    resp.lines().find(|l| l.starts_with("To:"))?.split(";tag=").nth(1).map(str::trim)
}

#[tokio::test]
async fn challenged_invites_leave_no_transaction_behind() {
    let chat = server(SipLimits { rate: 100_000, ..SipLimits::default() }).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (local, target) = (sock.local_addr().unwrap(), chat.addr(Transport::Udp));
    // In batches, read between them: 300 answers at once overflow the test socket's buffer.
    let mut got = Vec::new();
    for batch in 0..15 {
        for n in batch * 20..batch * 20 + 20 {
            sock.send_to(request("INVITE", n, local, target, "").as_bytes(), target).await.unwrap();
        }
        got.extend(replies_n(&sock, 20).await);
    }
    assert_eq!(got.len(), 300, "every INVITE answered");
    assert!(got.iter().all(|r| r.starts_with("SIP/2.0 401") && r.contains("WWW-Authenticate: Digest")));
    assert!(got.iter().all(|r| to_tag(r).is_some()), "a final answer carries a To-tag");
    assert_eq!(chat.sip.transaction_count(), 0, "nothing kept waiting for an ACK");
    // A retransmission gets the same answer, To-tag included; its ACK is absorbed.
    sock.send_to(request("INVITE", 7, local, target, "").as_bytes(), target).await.unwrap();
    let again = replies(&sock, Duration::from_millis(300)).await;
    let first = got.iter().find(|r| r.contains("Call-ID: door7@test")).unwrap();
    assert_eq!(to_tag(&again[0]), to_tag(first));
    let ack = request("ACK", 7, local, target, &format!(";tag={}", to_tag(first).unwrap()));
    sock.send_to(ack.as_bytes(), target).await.unwrap();
    assert!(replies(&sock, Duration::from_millis(300)).await.is_empty(), "an ACK is never answered");
    assert_eq!(chat.sip.transaction_count(), 0);
}

#[tokio::test]
async fn requests_outside_any_dialog_are_answered_statelessly() {
    let chat = server(SipLimits::default()).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (local, target) = (sock.local_addr().unwrap(), chat.addr(Transport::Udp));
    for (method, n, tag, status) in [
        ("OPTIONS", 1, "", "200"),
        ("MESSAGE", 2, "", "405"),
        ("BYE", 3, ";tag=nosuchdialog", "481"),
        ("INFO", 4, ";tag=nosuchdialog", "481"),
    ] {
        sock.send_to(request(method, n, local, target, tag).as_bytes(), target).await.unwrap();
        let got = replies(&sock, Duration::from_millis(300)).await;
        assert_eq!(got.len(), 1, "{method}");
        assert!(got[0].starts_with(&format!("SIP/2.0 {status}")), "{method}: {}", got[0]);
    }
    assert_eq!(chat.sip.transaction_count(), 0);
}

#[tokio::test]
async fn one_source_gets_its_rate_and_no_more() {
    let chat = server(SipLimits { rate: 10, ..SipLimits::default() }).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (local, target) = (sock.local_addr().unwrap(), chat.addr(Transport::Udp));
    for n in 0..100 {
        sock.send_to(request("OPTIONS", n, local, target, "").as_bytes(), target).await.unwrap();
    }
    let answered = replies(&sock, Duration::from_millis(300)).await.len();
    assert!((20..=25).contains(&answered), "a burst of twice the rate, then the rate: {answered}");
}

#[tokio::test]
async fn a_tcp_client_that_never_reads_does_not_stall_sip() {
    // Stateless answers used to be written inside rsipstack's event loop: one peer not
    // reading its TCP answers held up every SIP request (review of issue 11's door).
    let chat = server(SipLimits { rate: 1_000_000, ..SipLimits::default() }).await;
    let addr = chat.addr(Transport::Tcp);
    let mut deaf = TcpStream::connect(addr).await.unwrap();
    let local = deaf.local_addr().unwrap();
    let mut burst = String::new();
    for n in 0..20_000 {
        burst.push_str(&request("OPTIONS", n, local, addr, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    }
    let writer = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(20), deaf.write_all(burst.as_bytes())).await;
        deaf
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = chat.addr(Transport::Udp);
    sock.send_to(request("OPTIONS", 1, sock.local_addr().unwrap(), target, "").as_bytes(), target).await.unwrap();
    let got = replies_n(&sock, 1).await;
    assert_eq!(got.len(), 1, "answered while the deaf client's answers back up");
    writer.abort();
}

/// True when the server closes `s` within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    matches!(tokio::time::timeout(wait, s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn sip_tcp_connections_are_capped_per_address() {
    let chat = server(SipLimits { max_connections_per_ip: 3, ..SipLimits::default() }).await;
    let addr = chat.addr(Transport::Tcp);
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let closed = closed_within(c, Duration::from_millis(300)).await;
        assert_eq!(closed, i >= 3, "connection {i}");
    }
    assert_eq!(chat.sip.connection_count(), 3);
    // One goes away: its slot is free again.
    drop(conns.remove(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut later = TcpStream::connect(addr).await.unwrap();
    assert!(!closed_within(&mut later, Duration::from_millis(300)).await);
    // It is served: an OPTIONS over it is answered.
    options_answered(&mut later, addr).await;
}

/// Sends an OPTIONS over `s` and checks the 200.
async fn options_answered(s: &mut TcpStream, server: SocketAddr) {
    let local = s.local_addr().unwrap();
    let options = request("OPTIONS", 9, local, server, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(options.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
}

#[tokio::test]
async fn an_idle_sip_tcp_connection_without_a_call_is_closed() {
    let chat = server(SipLimits { idle_timeout: Duration::from_secs(1), ..SipLimits::default() }).await;
    let mut idle = TcpStream::connect(chat.addr(Transport::Tcp)).await.unwrap();
    assert!(!closed_within(&mut idle, Duration::from_millis(500)).await, "not at once");
    assert!(closed_within(&mut idle, Duration::from_secs(4)).await, "closed after idle_timeout");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(chat.sip.connection_count(), 0, "its slot is given back");
    // One that spoke once and then fell silent (served by the SIP stack) goes the same way.
    let addr = chat.addr(Transport::Tcp);
    let mut spoke = TcpStream::connect(addr).await.unwrap();
    options_answered(&mut spoke, addr).await;
    assert!(closed_within(&mut spoke, Duration::from_secs(4)).await, "closed after idle_timeout");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(chat.sip.connection_count(), 0);
}
