//! Conference-info watchers for the `chat` workload: N subscriptions (`SUBSCRIBE` with
//! `Event: conference`, RFC 4575) to the room from one UDP socket, each a user of its own,
//! answering every NOTIFY with 200 and counting them. The same port listens on TCP, where the
//! focus sends NOTIFYs too large for UDP (a large room's full roster). Written from SIP's
//! text: thousands of dialogs cost a socket and a counter, not a SIP stack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::client::Error;

/// What the watchers received so far.
#[derive(Debug, Default)]
pub struct Counts {
    pub subscribed: AtomicU64,
    pub refused: AtomicU64,
    pub notifies: AtomicU64,
    pub notify_bytes: AtomicU64,
}

/// Subscribes `n` watchers to `sip:ROOM@DOMAIN` at `sip` and answers their NOTIFYs until
/// `stop`; returns once all are subscribed (or refused).
pub async fn start(
    sip: SocketAddr,
    room: &str,
    domain: &str,
    n: usize,
    stop: CancellationToken,
) -> Result<Arc<Counts>, Error> {
    let (sock, tcp) = loop {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        if let Ok(l) = tokio::net::TcpListener::bind(sock.local_addr()?).await {
            break (Arc::new(sock), l);
        }
    };
    let me = sock.local_addr()?;
    let counts = Arc::new(Counts::default());
    let (c, halt) = (counts.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = halt.cancelled() => break,
                r = tcp.accept() => match r { Ok((conn, _)) => conn, Err(_) => break },
            };
            tokio::spawn(serve_stream(conn, c.clone(), halt.clone()));
        }
    });
    let (s, c) = (sock.clone(), counts.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let (len, from) = tokio::select! {
                _ = stop.cancelled() => break,
                r = s.recv_from(&mut buf) => match r { Ok(x) => x, Err(_) => break },
            };
            let text = String::from_utf8_lossy(&buf[..len]);
            if text.starts_with("NOTIFY ") {
                c.notifies.fetch_add(1, Ordering::Relaxed);
                c.notify_bytes.fetch_add(len as u64, Ordering::Relaxed);
                let _ = s.send_to(ok_to(&text).as_bytes(), from).await;
            } else if text.starts_with("SIP/2.0 ") && text.contains("SUBSCRIBE\r\n") {
                match text.get(8..11) {
                    Some("200") => c.subscribed.fetch_add(1, Ordering::Relaxed),
                    Some(code) if code >= "300" => c.refused.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        }
    });
    // A few at a time, as clients joining a room would.
    for batch in (0..n).collect::<Vec<_>>().chunks(50) {
        for &i in batch {
            let req = format!(
                "SUBSCRIBE sip:{room}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKw{i}x{pid};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:watcher{i}@bench.invalid>;tag=w{i}\r\nTo: <sip:{room}@{domain}>\r\n\
                 Call-ID: watch{i}x{pid}@bench\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:watcher{i}@{me}>\r\n\
                 Event: conference\r\nExpires: 3600\r\nUser-Agent: msrp-bench\r\nContent-Length: 0\r\n\r\n",
                pid = std::process::id(),
            );
            sock.send_to(req.as_bytes(), sip).await?;
        }
        let want = batch.last().map_or(0, |i| i + 1) as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while counts.subscribed.load(Ordering::Relaxed) + counts.refused.load(Ordering::Relaxed) < want {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {want} subscriptions answered",
                    counts.subscribed.load(Ordering::Relaxed)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let refused = counts.refused.load(Ordering::Relaxed);
    if refused > 0 {
        return Err(format!(
            "{refused} subscriptions refused (is 127.0.0.1 trusted, chat.conference.max_per_room high enough?)"
        )
        .into());
    }
    Ok(counts)
}

/// Answers the NOTIFYs that come over a TCP connection the focus opened.
async fn serve_stream(conn: tokio::net::TcpStream, counts: Arc<Counts>, stop: CancellationToken) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut r = tokio::io::BufReader::new(conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::select! {
                _ = stop.cancelled() => return,
                n = r.read_line(&mut line) => n,
            };
            if !matches!(n, Ok(n) if n > 0) {
                return;
            }
            if line == "\r\n" {
                if head.is_empty() {
                    continue;
                }
                break;
            }
            head.push_str(&line);
        }
        let len = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                matches!(n.trim().to_ascii_lowercase().as_str(), "content-length" | "l")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0usize);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        if head.starts_with("NOTIFY ") {
            counts.notifies.fetch_add(1, Ordering::Relaxed);
            counts.notify_bytes.fetch_add((head.len() + 2 + len) as u64, Ordering::Relaxed);
            if r.get_mut().write_all(ok_to(&head).as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// The 200 to a NOTIFY: its Via, From, To, Call-ID and CSeq echoed.
fn ok_to(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if matches!(name.as_str(), "via" | "v" | "from" | "f" | "to" | "t" | "call-id" | "i" | "cseq") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}
