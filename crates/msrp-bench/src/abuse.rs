//! `msrp-bench abuse`: one attack on a running msrpd for a bounded time, on loopback, while a
//! well-behaved client keeps authenticating at the relay and sending through it. Reports the
//! daemon's RSS (before, peak, after) and CPU, the attack's rate and what came back, and the
//! well-behaved client's AUTH and SEND latency (issue 11: resource figures are budgets).
//!
//! Attacks:
//! - `invite-flood`: unique INVITEs (fresh branch, tag and Call-ID; never an ACK) to the SIP
//!   UDP port, as fast as the generator goes, from `--sources` loopback addresses;
//! - `sip-idle`: `--connections` SIP TCP connections that never send anything;
//! - `guess`: password guessing for `--victim` over `--connections` MSRP connections, with the
//!   right password on every tenth attempt: the share of those that succeed bounds the share
//!   of guesses the relay evaluated at all;
//! - `refusals`: one unauthenticated MSRP connection pipelining SENDs to an unknown session.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::Args;
use hdrhistogram::Histogram;
use msrp::header::{ByteRange, ContentType, Header, MessageId, Path};
use msrp::message::TransactionId;
use msrp::{Continuation, Message, Method, Request, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, UdpSocket};

use crate::client::{Conn, Error, Target};
use crate::procfs;

#[derive(Debug, Args)]
pub struct AbuseArgs {
    /// invite-flood, sip-idle, guess, refusals, or none (the well-behaved client only).
    #[arg(long)]
    attack: String,
    /// PID of msrpd (RSS and CPU).
    #[arg(long)]
    pid: u32,
    /// How long the attack runs, seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// How long after the attack RSS is read again, seconds.
    #[arg(long, default_value_t = 10)]
    settle: u64,
    /// msrpd's relay, for the well-behaved client (and the `guess` and `refusals` attacks).
    #[arg(long, default_value = "msrps://127.0.0.1:2855")]
    relay: String,
    /// The well-behaved client's accounts, USER:PASSWORD (the realm comes from the challenge).
    #[arg(long, default_value = "alice:alicepw")]
    user_a: String,
    #[arg(long, default_value = "bob:bobpw")]
    user_b: String,
    /// msrpd's chat SIP address (UDP for invite-flood, TCP for sip-idle).
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip: SocketAddr,
    /// Loopback source addresses the attacker spreads over (127.0.0.2 onwards).
    #[arg(long, default_value_t = 1)]
    sources: u32,
    /// Connections for sip-idle and guess.
    #[arg(long, default_value_t = 100)]
    connections: u32,
    /// The account guessed at, USER:PASSWORD (its right password is tried every tenth time).
    #[arg(long, default_value = "carol:carolpw")]
    victim: String,
}

fn source(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i))
}

fn split(account: &str) -> Result<(String, String), Error> {
    let (u, p) = account.split_once(':').ok_or("accounts are USER:PASSWORD")?;
    Ok((u.to_owned(), p.to_owned()))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What the attack counted.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    /// Attack-specific: guesses evaluated (right password accepted), connections closed, …
    extra: AtomicU64,
    extra2: AtomicU64,
}

pub async fn run(args: AbuseArgs) -> Result<(), Error> {
    let (target, relay_uri) = Target::parse(&args.relay).await?;
    let (ua, pa) = split(&args.user_a)?;
    let (ub, pb) = split(&args.user_b)?;
    let stop = Arc::new(AtomicBool::new(false));
    // The well-behaved pair, authenticated before the attack.
    let mut a = Conn::connect(&target, "good-a", None).await?;
    let use_a = a.authenticate(&relay_uri, &ua, &pa).await?;
    let mut b = Conn::connect(&target, "good-b", None).await?;
    let use_b = b.authenticate(&relay_uri, &ub, &pb).await?;
    let rss0 = rss_kib(args.pid);
    let cpu0 = procfs::cpu_seconds(args.pid);
    let tally = Arc::new(Tally::default());
    let attack = {
        let (args_attack, stop, tally) = (args.attack.clone(), stop.clone(), tally.clone());
        let (target, relay_uri) = (target.clone(), relay_uri.clone());
        let victim = split(&args.victim)?;
        let (sip, sources, connections) = (args.sip, args.sources.max(1), args.connections);
        tokio::spawn(async move {
            match args_attack.as_str() {
                "invite-flood" => invite_flood(sip, sources, stop, tally).await,
                "sip-idle" => sip_idle(sip, sources, connections, stop, tally).await,
                "guess" => guess(target, relay_uri, victim, connections, stop, tally).await,
                "refusals" => refusals(target, relay_uri, stop, tally).await,
                // The well-behaved client alone: run beside an attacker in another process
                // (niced), so that on a small machine the generator does not starve it.
                "none" => Ok(()),
                other => Err(format!("unknown attack {other}").into()),
            }
        })
    };
    // The well-behaved client, every 100 ms: a fresh AUTH handshake, and a SEND through the
    // relay answered by its receiver.
    let mut auth_lat = Histogram::<u64>::new(3)?;
    let mut send_lat = Histogram::<u64>::new(3)?;
    let (mut auth_failed, mut send_failed) = (0u32, 0u32);
    let mut peak = rss0;
    let started = Instant::now();
    let to_b = Path::new(use_a.uris().iter().chain(use_b.uris()).chain(b.path().uris()).cloned().collect())
        .ok_or("empty path")?;
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        n += 1;
        let t = Instant::now();
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            let mut c = Conn::connect(&target, &format!("probe{n}"), None).await?;
            c.authenticate(&relay_uri, &ua, &pa).await
        })
        .await;
        match ok {
            Ok(Ok(_)) => auth_lat.record(t.elapsed().as_micros() as u64)?,
            _ => auth_failed += 1,
        }
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), round_trip(&mut a, &mut b, &to_b)).await {
            Ok(Ok(())) => send_lat.record(t.elapsed().as_micros() as u64)?,
            _ => send_failed += 1,
        }
        peak = peak.max(rss_kib(args.pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let attack_result = tokio::time::timeout(Duration::from_secs(10), attack).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds(args.pid) - cpu0;
    let peak_now = peak.max(rss_kib(args.pid));
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_after = rss_kib(args.pid);
    if let Ok(Ok(Err(e))) = attack_result {
        eprintln!("abuse: the attack stopped early: {e}");
    }
    let (sent, answered) = (tally.sent.load(Ordering::Relaxed), tally.answered.load(Ordering::Relaxed));
    let (extra, extra2) = (tally.extra.load(Ordering::Relaxed), tally.extra2.load(Ordering::Relaxed));
    let ms = |h: &Histogram<u64>, q: f64| if h.is_empty() { f64::NAN } else { h.value_at_quantile(q) as f64 / 1000.0 };
    println!(
        "abuse {}: {:.0} s; attack sent {sent} ({:.0}/s), answered {answered} ({:.0}/s){}",
        args.attack,
        secs,
        sent as f64 / secs,
        answered as f64 / secs,
        match args.attack.as_str() {
            "guess" => format!(
                "; right-password attempts accepted {extra} of {extra2} (evaluated guesses ≤ {:.1}/s)",
                if extra2 == 0 { 0.0 } else { sent as f64 / secs * extra as f64 / extra2 as f64 }
            ),
            "sip-idle" => format!("; connections open at the end {extra}, closed by the server {extra2}"),
            _ => String::new(),
        }
    );
    println!(
        "  msrpd: RSS {} MiB before, {} MiB peak, {} MiB {} s after; CPU {:.1} s ({:.0}% of a core)",
        rss0 / 1024,
        peak_now / 1024,
        rss_after / 1024,
        args.settle,
        cpu,
        cpu / secs * 100.0
    );
    println!(
        "  well-behaved client: AUTH p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({auth_failed} failed of {n}); SEND p50 {:.1} ms p99 {:.1} ms ({send_failed} failed)",
        ms(&auth_lat, 0.5),
        ms(&auth_lat, 0.99),
        ms(&auth_lat, 1.0),
        ms(&send_lat, 0.5),
        ms(&send_lat, 0.99)
    );
    println!(
        "RESULT mode=abuse attack={} rate={:.0} rss0_kib={rss0} rss_peak_kib={peak_now} rss_after_kib={rss_after} cpu_s={cpu:.1} auth_p99_ms={:.1} auth_failed={auth_failed} send_p99_ms={:.1}",
        args.attack,
        sent as f64 / secs,
        ms(&auth_lat, 0.99),
        ms(&send_lat, 0.99)
    );
    Ok(())
}

/// A SEND from `a` to `b` through the relay, answered by `b`; done when `a` has its 200.
async fn round_trip(a: &mut Conn, b: &mut Conn, to: &Path) -> Result<(), Error> {
    let body = b"ping";
    let req = Request::new(TransactionId::random(), Method::Send)
        .with(Header::ToPath(to.clone()))
        .with(Header::FromPath(a.path()))
        .with(Header::MessageId(MessageId::random()))
        .with(Header::ByteRange(ByteRange::whole(body.len() as u64)))
        .with(Header::ContentType(ContentType::parse(&msrp::ByteString::from_static("text/plain"))?));
    let mut out = BytesMut::new();
    msrp::encode::encode_request(&req, Some(body), Continuation::Complete, &mut out)?;
    a.wr.write_all(&out).await?;
    loop {
        let f = b.frame().await?.ok_or("receiver's connection closed")?;
        if let Message::Request(r) = f.head
            && let Some(resp) =
                msrp::report::response(&r, StatusCode::OK, r.headers.to_path().ok_or("no To-Path")?.first())
        {
            let mut out = BytesMut::new();
            msrp::encode::encode_response(&resp, &mut out);
            b.wr.write_all(&out).await?;
            break;
        }
    }
    loop {
        if let Message::Response(r) = a.frame().await?.ok_or("sender's connection closed")?.head
            && r.tid == req.tid
        {
            return Ok(());
        }
    }
}

fn invite(n: u64, local: SocketAddr, server: SocketAddr) -> String {
    format!(
        "INVITE sip:flood@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n:016x}f;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:mallory@example.com>;tag=f{n:x}\r\nTo: <sip:flood@{server}>\r\n\
         Call-ID: {n:x}.flood@bench\r\nCSeq: 1 INVITE\r\nContact: <sip:mallory@{local}>\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn invite_flood(sip: SocketAddr, sources: u32, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> Result<(), Error> {
    let mut tasks = Vec::new();
    for i in 0..sources {
        let sock = Arc::new(UdpSocket::bind(SocketAddr::new(source(i), 0)).await?);
        let local = sock.local_addr()?;
        let (rx, stop_rx, t_rx) = (sock.clone(), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while !stop_rx.load(Ordering::Relaxed) {
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), rx.recv(&mut buf)).await {
                    t_rx.answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let (stop, tally) = (stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = u64::from(i) << 40;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if sock.send_to(invite(n, local, sip).as_bytes(), sip).await.is_ok() {
                    tally.sent.fetch_add(1, Ordering::Relaxed);
                }
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn sip_idle(
    sip: SocketAddr,
    sources: u32,
    connections: u32,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Result<(), Error> {
    let mut open = Vec::new();
    for i in 0..connections {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source(i % sources), 0))?;
        tally.sent.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(Duration::from_secs(2), socket.connect(sip)).await {
            Ok(Ok(s)) => {
                tally.answered.fetch_add(1, Ordering::Relaxed);
                open.push(s);
            }
            // Refused, reset or a full accept queue: counted as not established.
            _ => continue,
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Which of them the server closed.
    let mut closed = 0;
    for s in &open {
        let mut buf = [0u8; 1];
        if let Ok(0) | Err(_) =
            s.try_read(&mut buf).or_else(|e| if e.kind() == std::io::ErrorKind::WouldBlock { Ok(1) } else { Err(e) })
        {
            closed += 1;
        }
    }
    tally.extra.store((open.len() - closed) as u64, Ordering::Relaxed);
    tally.extra2.store(closed as u64, Ordering::Relaxed);
    Ok(())
}

async fn guess(
    target: Target,
    relay: msrp::Uri,
    (user, password): (String, String),
    connections: u32,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Result<(), Error> {
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let (target, relay, user, password, stop, tally) =
                (target.clone(), relay.clone(), user.clone(), password.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut attempt = u64::from(i);
                while !stop.load(Ordering::Relaxed) {
                    // The relay closes a connection after a few failures: reconnect then.
                    let Ok(mut c) = Conn::connect(&target, &format!("guess{i}"), None).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        attempt += 1;
                        let right = attempt % 10 == 0;
                        let pw = if right { password.clone() } else { format!("guess{attempt}") };
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        if right {
                            tally.extra2.fetch_add(1, Ordering::Relaxed);
                        }
                        match c.authenticate(&relay, &user, &pw).await {
                            Ok(_) => {
                                tally.answered.fetch_add(1, Ordering::Relaxed);
                                if right {
                                    tally.extra.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) if e.to_string().starts_with("AUTH refused") => {
                                tally.answered.fetch_add(1, Ordering::Relaxed);
                            }
                            // Closed or reset (counted as failed attempts): a new connection.
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn refusals(target: Target, relay: msrp::Uri, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> Result<(), Error> {
    let c = Conn::connect(&target, "refused", None).await?;
    let nowhere = msrp::Uri::new(relay.is_secure(), relay.host(), relay.port(), Some("nosuchsession0000"))?;
    let to = Path::single(nowhere);
    let mut batch = BytesMut::new();
    for _ in 0..64 {
        let req = Request::new(TransactionId::random(), Method::Send)
            .with(Header::ToPath(to.clone()))
            .with(Header::FromPath(c.path()))
            .with(Header::MessageId(MessageId::random()));
        msrp::encode::encode_request(&req, None, Continuation::Complete, &mut batch)?;
    }
    let batch = batch.freeze();
    let (mut rd, mut wr) = (c.rd, c.wr);
    drop(c.dec);
    let counter = tally.clone();
    let reader = tokio::spawn(async move {
        let mut dec = msrp::Decoder::default();
        let mut buf = BytesMut::with_capacity(1 << 20);
        use tokio::io::AsyncReadExt;
        while let Ok(n) = rd.read_buf(&mut buf).await {
            if n == 0 {
                break;
            }
            while let Ok(Some(ev)) = dec.decode(&mut buf) {
                if matches!(ev, msrp::Event::End(_)) {
                    counter.answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    while !stop.load(Ordering::Relaxed) {
        if wr.write_all(&batch).await.is_err() {
            break;
        }
        tally.sent.fetch_add(64, Ordering::Relaxed);
    }
    drop(wr);
    reader.abort();
    Ok(())
}
