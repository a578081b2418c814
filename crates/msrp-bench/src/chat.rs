//! The `chat` workload: P participants join one room of an RFC 7701 chat server over SIP (UDP),
//! open their MSRP connections, and S of them send M small CPIM messages each with a window of
//! W unanswered SENDs; every other participant receives each one. Optionally one participant
//! stops reading after joining, to show what a stalled member costs the others.
//!
//! With `--subscribers N`, N conference-info watchers (RFC 4575) subscribe to the room first
//! and stay subscribed while the messages flow; with `--churn C`, C more participants then
//! join and leave one after another (a few at once), and the run reports what the watchers'
//! NOTIFYs cost the server.
//!
//! The server must admit the generator's source without a challenge (msrpd:
//! `[chat] trusted_networks = ["127.0.0.1"]` and `trusted_over_udp = true`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use msrp::header::{ByteRange, ContentType, MessageId, Path};
use msrp::message::TransactionId;
use msrp::{ByteString, Continuation, Decoder, Event, Header, Message, Method, Request, StatusCode, Uri};
use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::transport::TransportLayer;
use rsipstack::transport::udp::UdpConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::client::Error;
use crate::watchers;

/// What the run measured.
#[derive(Debug)]
pub struct ChatStats {
    pub participants: usize,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub secs: f64,
    pub latency: Histogram<u64>,
    pub server_cpu_s: f64,
    /// Sessions the server ended (BYE) during the run.
    pub dropped: u64,
    pub churn: Option<ChurnStats>,
}

/// The join-and-leave phase: what the watchers got and what it cost the server.
#[derive(Debug)]
pub struct ChurnStats {
    pub cycles: usize,
    pub secs: f64,
    pub notifies: u64,
    pub notify_bytes: u64,
    pub server_cpu_s: f64,
}

#[derive(Debug, Clone)]
pub struct ChatPlan {
    pub sip: std::net::SocketAddr,
    pub room: String,
    pub domain: String,
    pub participants: usize,
    pub senders: usize,
    pub messages: u64,
    pub size: usize,
    pub window: usize,
    pub stall: bool,
    pub server_pid: Option<u32>,
    /// Conference-info watchers subscribed to the room during the run.
    pub subscribers: usize,
    /// Participants that join and leave after the messages (the churn phase).
    pub churn: usize,
}

/// Counters shared by every participant's reader.
#[derive(Default)]
struct Shared {
    delivered: AtomicU64,
}

/// Microseconds since `epoch`, as the first 16 bytes of each payload.
fn stamp(epoch: Instant) -> [u8; 16] {
    let us = epoch.elapsed().as_micros() as u64;
    let mut out = [b'0'; 16];
    let text = us.to_string();
    out[16 - text.len()..].copy_from_slice(text.as_bytes());
    out
}

fn parse_stamp(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload.get(..16)?).ok()?.parse().ok()
}

/// The SDP offer of one participant: it connects to the server (setup active).
fn offer(local: &Uri) -> String {
    format!(
        "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message 9 TCP/MSRP *\r\na=accept-types:message/cpim\r\na=accept-wrapped-types:*\r\n\
         a=path:{}\r\na=setup:active\r\n",
        local.as_str()
    )
}

struct Joined {
    index: usize,
    local: Uri,
    remote: Path,
}

/// The generator's SIP side: its UAC, the counter of the server's BYEs.
struct Uac {
    /// Must live as long as the calls.
    _endpoint: rsipstack::transaction::endpoint::Endpoint,
    dialogs: Arc<DialogLayer>,
    state_tx: rsipstack::dialog::dialog::DialogStateSender,
    me: std::net::SocketAddr,
    target: String,
    byes: Arc<AtomicU64>,
}

impl Uac {
    /// Participant `i` joins: INVITE, 200, the server's MSRP path.
    async fn invite(&self, i: usize) -> Result<(rsipstack::dialog::invite_dialog::InviteDialog, Joined), Error> {
        let local = Uri::new(false, "127.0.0.1", Some(9), Some(&format!("bench{i}x{}", std::process::id())))?;
        let opt = InviteOption {
            caller: format!("sip:bench{i}@bench.invalid").as_str().try_into().map_err(|_| "caller")?,
            callee: self.target.as_str().try_into().map_err(|_| "bad --sip")?,
            contact: format!("sip:bench{i}@{}", self.me).as_str().try_into().map_err(|_| "contact")?,
            content_type: Some("application/sdp".into()),
            offer: Some(offer(&local).into_bytes()),
            ..Default::default()
        };
        let (dlg, resp) = self.dialogs.do_invite(opt, self.state_tx.clone()).await.map_err(|e| e.to_string())?;
        let resp = resp.ok_or("no answer to INVITE")?;
        if resp.status_code.code() != 200 {
            return Err(format!("INVITE answered {}", resp.status_code.code()).into());
        }
        let sdp = String::from_utf8_lossy(&resp.body).into_owned();
        let line = sdp.lines().find_map(|l| l.strip_prefix("a=path:")).ok_or("answer without a=path")?;
        let uris = line
            .split_ascii_whitespace()
            .map(|u| Uri::parse(ByteString::from(u.trim())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((dlg, Joined { index: i, local, remote: Path::new(uris).ok_or("empty a=path")? }))
    }
}

/// Joins everyone over SIP; returns the MSRP side of each and the UAC.
async fn join_all(plan: &ChatPlan, token: &CancellationToken) -> Result<(Vec<Joined>, Arc<Uac>), Error> {
    let tl = TransportLayer::new(token.child_token());
    let udp = UdpConnection::create_connection("127.0.0.1:0".parse()?, None, Some(token.child_token()))
        .await
        .map_err(|e| e.to_string())?;
    let me = udp.get_addr().get_socketaddr().map_err(|e| e.to_string())?;
    tl.add_transport(udp.into());
    let endpoint = EndpointBuilder::new()
        .with_user_agent("msrp-bench")
        .with_transport_layer(tl)
        .with_cancel_token(token.child_token())
        .build();
    let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let mut incoming = endpoint.incoming_transactions().map_err(|e| e.to_string())?;
    let inner = endpoint.inner.clone();
    tokio::spawn(async move { inner.serve().await });
    // Answer the server's BYEs (a dropped participant) and count them.
    let byes = Arc::new(AtomicU64::new(0));
    let (d, stop) = (dialogs.clone(), token.clone());
    tokio::spawn(async move {
        loop {
            let mut tx = tokio::select! {
                _ = stop.cancelled() => break,
                t = incoming.recv() => match t { Some(t) => t, None => break },
            };
            if let Some(mut dlg) = d.match_dialog(&tx) {
                tokio::spawn(async move { dlg.handle(&mut tx).await.ok() });
            }
        }
    });
    let (state_tx, mut state_rx) = mpsc::unbounded_channel();
    let (d, counted) = (dialogs.clone(), byes.clone());
    tokio::spawn(async move {
        while let Some(st) = state_rx.recv().await {
            if let DialogState::Terminated(id, reason) = st {
                d.remove_dialog(&id);
                if matches!(reason, rsipstack::dialog::dialog::TerminatedReason::UasBye) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let target = format!("sip:{}@{}", plan.room, plan.sip);
    let uac = Arc::new(Uac { _endpoint: endpoint, dialogs, state_tx, me, target, byes });
    let mut joined = Vec::with_capacity(plan.participants);
    // A few INVITEs in flight at once: joining is not what is measured.
    for batch in (0..plan.participants).collect::<Vec<_>>().chunks(16) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|&i| {
                let uac = uac.clone();
                tokio::spawn(async move { uac.invite(i).await.map(|(_, j)| j) })
            })
            .collect();
        for t in tasks {
            joined.push(t.await??);
        }
    }
    Ok((joined, uac))
}

/// `cycles` participants join and hang up, `at_once` at a time; the watchers' NOTIFYs are
/// counted until they stop coming.
async fn churn(plan: &ChatPlan, uac: &Arc<Uac>, watchers: &watchers::Counts) -> Result<ChurnStats, Error> {
    let at_once = 8;
    let (n0, b0) = (watchers.notifies.load(Ordering::Relaxed), watchers.notify_bytes.load(Ordering::Relaxed));
    let cpu0 = plan.server_pid.map_or(0.0, crate::procfs::cpu_seconds);
    let started = Instant::now();
    let first = plan.participants + 1_000_000;
    for batch in (first..first + plan.churn).collect::<Vec<_>>().chunks(at_once) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|&i| {
                let uac = uac.clone();
                tokio::spawn(async move {
                    let (dlg, _) = uac.invite(i).await?;
                    dlg.bye().await.map_err(|e| e.to_string())?;
                    Ok::<_, Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
    }
    // NOTIFYs still on their way: wait until none came for 300 ms.
    let mut last = (watchers.notifies.load(Ordering::Relaxed), Instant::now());
    while last.1.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = watchers.notifies.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let secs = last.1.duration_since(started).as_secs_f64();
    Ok(ChurnStats {
        cycles: plan.churn,
        secs,
        notifies: watchers.notifies.load(Ordering::Relaxed) - n0,
        notify_bytes: watchers.notify_bytes.load(Ordering::Relaxed) - b0,
        server_cpu_s: plan.server_pid.map_or(0.0, crate::procfs::cpu_seconds) - cpu0,
    })
}

/// A participant's writer: frames from its sender and its reader, in order.
fn spawn_writer(mut w: tokio::net::tcp::OwnedWriteHalf) -> mpsc::UnboundedSender<Bytes> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut out = BytesMut::from(&first[..]);
            while let Ok(more) = rx.try_recv() {
                out.extend_from_slice(&more);
            }
            if w.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    tx
}

/// Reads one participant's connection: counts deliveries (with their latency), answers
/// them 200 in one write per read, and returns a window permit per 200 to its own SENDs.
async fn read_loop(
    mut r: tokio::net::tcp::OwnedReadHalf,
    out: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
    window: Option<Arc<Semaphore>>,
    epoch: Instant,
    size: usize,
    stop: CancellationToken,
) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let mut dec = Decoder::default();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut head: Option<Request> = None;
    let mut body = BytesMut::new();
    loop {
        buf.reserve(128 * 1024);
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            n = r.read_buf(&mut buf) => n,
        };
        if !matches!(n, Ok(n) if n > 0) {
            break;
        }
        let mut answers = BytesMut::new();
        let mut delivered = 0;
        while let Ok(Some(ev)) = dec.decode(&mut buf) {
            match ev {
                Event::Head(Message::Response(resp)) => {
                    if let Some(w) = &window
                        && resp.status == StatusCode::OK
                    {
                        w.add_permits(1);
                    }
                }
                Event::Head(Message::Request(req)) => {
                    body.clear();
                    head = Some(req);
                }
                Event::Body(b) => body.extend_from_slice(&b),
                Event::End(Continuation::Complete) => {
                    let Some(req) = head.take() else { continue };
                    if let Some(resp) =
                        msrp::report::response(&req, StatusCode::OK, req.headers.to_path().unwrap().first())
                    {
                        msrp::encode::encode_response(&resp, &mut answers);
                    }
                    if req.method != Method::Send || body.len() < size {
                        continue;
                    }
                    // A bench message ends with its payload, which starts with the send time.
                    if let Some(sent) = parse_stamp(&body[body.len() - size..]) {
                        delivered += 1;
                        let now = epoch.elapsed().as_micros() as u64;
                        let _ = hist.record(now.saturating_sub(sent).max(1));
                    }
                }
                Event::End(_) => {}
            }
        }
        shared.delivered.fetch_add(delivered, Ordering::Relaxed);
        if !answers.is_empty() && out.send(answers.freeze()).is_err() {
            break;
        }
    }
    hist
}

/// A CPIM message from participant `i` to the room, with a `size`-byte payload.
fn message(plan: &ChatPlan, i: usize, local: &Uri, remote: &Path, epoch: Instant) -> Result<Bytes, Error> {
    let mut body = BytesMut::with_capacity(160 + plan.size);
    body.put_slice(
        format!(
            "From: <sip:bench{i}@bench.invalid>\r\nTo: <sip:{}@{}>\r\n\r\nContent-Type: text/plain\r\n\r\n",
            plan.room, plan.domain
        )
        .as_bytes(),
    );
    body.put_slice(&stamp(epoch));
    body.resize(body.len() + plan.size.saturating_sub(16), b'x');
    let req = Request::new(TransactionId::random(), Method::Send)
        .with(Header::ToPath(remote.clone()))
        .with(Header::FromPath(Path::single(local.clone())))
        .with(Header::MessageId(MessageId::random()))
        .with(Header::ByteRange(ByteRange::whole(body.len() as u64)))
        .with(Header::ContentType(ContentType::parse(&ByteString::from_static("message/cpim"))?));
    let mut out = BytesMut::with_capacity(256 + body.len());
    msrp::encode::encode_request(&req, Some(&body), Continuation::Complete, &mut out)?;
    Ok(out.freeze())
}

pub async fn run(plan: ChatPlan) -> Result<ChatStats, Error> {
    let token = CancellationToken::new();
    let (joined, uac) = join_all(&plan, &token).await?;
    let byes = uac.byes.clone();
    let watchers = match plan.subscribers {
        0 => None,
        n => Some(watchers::start(plan.sip, &plan.room, &plan.domain, n, token.clone()).await?),
    };
    let mut stalled_reader = None;
    let epoch = Instant::now();
    let shared = Arc::new(Shared::default());
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    let stalled = plan.stall.then_some(plan.participants - 1);
    for j in joined {
        let first = j.remote.first();
        let tcp = TcpStream::connect((first.host_unbracketed(), first.port().unwrap_or(2855))).await?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        let out = spawn_writer(w);
        // Bind with an empty SEND (RFC 4975 §5.4).
        let bind = Request::new(TransactionId::random(), Method::Send)
            .with(Header::ToPath(j.remote.clone()))
            .with(Header::FromPath(Path::single(j.local.clone())))
            .with(Header::MessageId(MessageId::random()));
        let mut frame = BytesMut::new();
        msrp::encode::encode_request(&bind, None, Continuation::Complete, &mut frame)?;
        out.send(frame.freeze()).map_err(|_| "writer gone")?;
        if Some(j.index) == stalled {
            // Joined, bound, and never reads again: the kernel buffers fill, then the server's
            // queue for it, and the server must drop it without slowing the others.
            // Its writer stays too: dropping it would close the connection, not stall it.
            stalled_reader = Some((r, out));
            continue;
        }
        let is_sender = j.index < plan.senders;
        let window = is_sender.then(|| Arc::new(Semaphore::new(0)));
        readers.push(tokio::spawn(read_loop(
            r,
            out.clone(),
            shared.clone(),
            window.clone(),
            epoch,
            plan.size,
            token.clone(),
        )));
        if let Some(window) = window {
            senders.push((j.index, j.local, j.remote, out, window));
        }
    }
    // Let joins, their notices and the binding SENDs settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let receivers = (plan.participants - 1 - usize::from(plan.stall)) as u64;
    let sent = plan.messages * senders.len() as u64;
    let expected = sent * receivers;
    let base = shared.delivered.load(Ordering::Relaxed);
    let cpu0 = plan.server_pid.map_or(0.0, crate::procfs::cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, local, remote, out, window) in senders {
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            window.add_permits(plan.window);
            // A participant whose connection is reset or aborted stops sending; what it did
            // not send counts as not delivered, and the run goes on (no error, no hang).
            let mut sent = 0u64;
            for _ in 0..plan.messages {
                match tokio::time::timeout(Duration::from_secs(10), window.acquire()).await {
                    Ok(Ok(p)) => p.forget(),
                    _ => break,
                }
                if out.send(message(&plan, i, &local, &remote, epoch)?).is_err() {
                    break;
                }
                sent += 1;
            }
            if sent < plan.messages {
                eprintln!("msrp-bench: participant {i} stopped after {sent} of {} messages", plan.messages);
            }
            Ok::<_, Error>(sent)
        }));
    }
    let mut sent_really = 0u64;
    for t in tasks {
        sent_really += t.await??;
    }
    let expected = expected.min(sent_really * receivers);
    // Wait for the deliveries, or until they stop coming.
    let mut last = (shared.delivered.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = shared.delivered.load(Ordering::Relaxed) - base;
        if now >= expected {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let server_cpu_s = plan.server_pid.map_or(0.0, crate::procfs::cpu_seconds) - cpu0;
    let delivered = shared.delivered.load(Ordering::Relaxed) - base;
    // Read before hanging up: ending the run closes connections, which the server answers
    // with BYEs of its own.
    let dropped = byes.load(Ordering::Relaxed);
    let churn = match (&watchers, plan.churn) {
        (Some(w), c) if c > 0 => Some(churn(&plan, &uac, w).await?),
        _ => None,
    };
    token.cancel();
    drop(stalled_reader);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for r in readers {
        latency.add(&r.await?)?;
    }
    Ok(ChatStats {
        participants: plan.participants,
        sent,
        expected,
        delivered,
        secs,
        latency,
        server_cpu_s,
        dropped,
        churn,
    })
}
