//! `msrp-bench`: a load generator for any RFC 4976 MSRP relay (msrpd, Kamailio's `msrp`
//! module, …), and the same workloads without a relay (`direct`) as the ceiling.
//!
//! Every run prints a human line and a `RESULT key=value …` line for scripts
//! (scripts/bench-compare).

mod abuse;
mod chat;
mod client;
mod load;
mod pipe;
mod procfs;
mod watchers;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use msrp::header::Path;

use client::{Conn, Error, Target};

#[derive(Debug, Parser)]
#[command(name = "msrp-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Many small SENDs through N pipelined pairs.
    Small(SmallArgs),
    /// One file of F bytes in chunks of C bytes, verified byte for byte at the receiver.
    Bulk(BulkArgs),
    /// K authenticated idle sessions; reports the relay's memory per session.
    Sessions(SessionArgs),
    /// Digest AUTH handshakes (401 + 200) per second, over C connections in parallel.
    Auth(AuthArgs),
    /// A chat room (RFC 7701) of P participants joined over SIP: deliveries per second.
    Chat(ChatArgs),
    /// One attack on msrpd (SIP INVITE flood, idle SIP connections, password guessing, MSRP
    /// refusals) while a well-behaved client measures AUTH and SEND latency; RSS and CPU.
    Abuse(abuse::AbuseArgs),
    /// (Used by `--direct --pipe`.) Copies connections to --to and back, byte for byte.
    #[command(hide = true)]
    Pipe {
        #[arg(long)]
        to: std::net::SocketAddr,
    },
}

#[derive(Debug, Args)]
struct ChatArgs {
    /// The chat server's SIP address (UDP), IP:PORT; it must trust 127.0.0.1.
    #[arg(long)]
    sip: std::net::SocketAddr,
    #[arg(long, default_value = "bench")]
    room: String,
    /// The server's chat domain (rooms are sip:ROOM@DOMAIN; CPIM To of messages).
    #[arg(long, default_value = "localhost")]
    domain: String,
    #[arg(long, default_value_t = 100)]
    participants: usize,
    /// How many participants send (each sends --messages).
    #[arg(long, default_value_t = 1)]
    senders: usize,
    #[arg(long, default_value_t = 2000)]
    messages: u64,
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Unanswered SENDs per sender.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// One participant joins and then stops reading.
    #[arg(long)]
    stall: bool,
    /// PID of the chat server, for its CPU time per delivery.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Conference-info watchers (RFC 4575 subscriptions) on the room during the run.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// After the messages, this many participants join and leave (needs --subscribers): the
    /// cost of the watchers' NOTIFYs.
    #[arg(long, default_value_t = 0)]
    churn: usize,
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Debug, Args)]
struct AuthArgs {
    #[command(flatten)]
    relay: RelayArgs,
    /// Handshakes per connection (each a fresh challenge and a fresh session).
    #[arg(long, default_value_t = 1000)]
    handshakes: usize,
    #[arg(long, default_value_t = 8)]
    connections: usize,
}

#[derive(Debug, Clone, Args)]
struct RelayArgs {
    /// The relay: msrp://HOST:PORT or msrps://HOST:PORT. Omit for `--direct`.
    #[arg(long)]
    relay: Option<String>,
    /// Digest realm is taken from the challenge; these are USER:PASSWORD for A and B.
    #[arg(long, default_value = "alice:alicepw")]
    user_a: String,
    #[arg(long, default_value = "bob:bobpw")]
    user_b: String,
    /// PID of the relay, for its CPU time (all its processes) per message.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// `full`: <A's Use-Path> <B's Use-Path> <B>; `short`: <B's Use-Path> <B> (Kamailio).
    #[arg(long, default_value = "full")]
    to_path: String,
    /// No relay: A connects straight to B (the ceiling of the generator and the machine).
    #[arg(long)]
    direct: bool,
    /// With --direct (one pair): A's connection passes through a child process that only
    /// copies bytes (no parsing), whose CPU per message is reported: the floor under any
    /// relay's on this machine.
    #[arg(long, requires = "direct")]
    pipe: bool,
    /// A label for the RESULT line.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Debug, Args)]
struct SmallArgs {
    #[command(flatten)]
    relay: RelayArgs,
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value_t = 64)]
    window: usize,
}

#[derive(Debug, Args)]
struct BulkArgs {
    #[command(flatten)]
    relay: RelayArgs,
    #[arg(long, default_value_t = 256 << 20)]
    file_size: u64,
    #[arg(long, default_value_t = 65536)]
    chunk: usize,
    #[arg(long, default_value_t = 16)]
    window: usize,
}

#[derive(Debug, Args)]
struct SessionArgs {
    #[command(flatten)]
    relay: RelayArgs,
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    parallel: usize,
    /// Sessions authenticated on each connection (RFC 4976 lets one connection carry several):
    /// shows the session table at sizes the open-files limit would not allow one connection
    /// per session for; memory per session then excludes most of a connection's.
    #[arg(long, default_value_t = 1)]
    per_connection: usize,
}

fn split_user(s: &str) -> Result<(String, String), Error> {
    let (u, p) = s.split_once(':').ok_or("users are USER:PASSWORD")?;
    Ok((u.to_owned(), p.to_owned()))
}

/// A connected, authenticated (A, B) pair and A's To-Path; in direct mode B is a listener's
/// accepted side and nothing is authenticated.
async fn make_pair(args: &RelayArgs, index: usize) -> Result<(Conn, Conn, Path), Error> {
    if args.direct {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut target = Target { addr: listener.local_addr()?, host: "127.0.0.1".into(), tls: None };
        if args.pipe {
            if PIPE_PID.get().is_some() {
                return Err("--pipe takes one pair".into());
            }
            let (pid, addr) = pipe::spawn(target.addr)?;
            let _ = PIPE_PID.set(pid);
            target.addr = addr;
        }
        let name = format!("a{index}");
        let (a, accepted) = tokio::join!(Conn::connect(&target, &name, None), listener.accept());
        let (stream, _) = accepted?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let uri = msrp::Uri::new(false, "127.0.0.1", Some(target.addr.port()), Some(&format!("b{index}")))?;
        let b = Conn {
            uri,
            rd: Box::new(rd),
            wr: Box::new(wr),
            dec: msrp::Decoder::default(),
            buf: bytes::BytesMut::with_capacity(256 * 1024),
        };
        let to = b.path();
        return Ok((a?, b, to));
    }
    let relay = args.relay.as_deref().ok_or("--relay is required (or --direct)")?;
    let (target, relay_uri) = Target::parse(relay).await?;
    let (ua, pa) = split_user(&args.user_a)?;
    let (ub, pb) = split_user(&args.user_b)?;
    let mut a = Conn::connect(&target, &format!("a{index}"), None).await?;
    let use_a = a.authenticate(&relay_uri, &ua, &pa).await?;
    let mut b = Conn::connect(&target, &format!("b{index}"), None).await?;
    let use_b = b.authenticate(&relay_uri, &ub, &pb).await?;
    let hops: Vec<msrp::Uri> = match args.to_path.as_str() {
        "full" => use_a.uris().iter().chain(use_b.uris()).chain(b.path().uris()).cloned().collect(),
        "short" => use_b.uris().iter().chain(b.path().uris()).cloned().collect(),
        other => return Err(format!("--to-path {other}: expected full or short").into()),
    };
    Ok((a, b, Path::new(hops).ok_or("empty path")?))
}

/// The `--pipe` child, measured as the relay is.
static PIPE_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

fn cpu(pid: Option<u32>) -> f64 {
    pid.or(PIPE_PID.get().copied()).map_or(0.0, procfs::cpu_seconds)
}

async fn small(args: SmallArgs) -> Result<(), Error> {
    let mut pairs = Vec::new();
    for i in 0..args.pairs {
        pairs.push(make_pair(&args.relay, i).await?);
    }
    let cpu0 = cpu(args.relay.relay_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, (a, b, to)) in pairs.into_iter().enumerate() {
        tasks.push(tokio::spawn(load::small_pair(i, a, b, to, args.messages, args.size, args.window)));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut received, mut bytes, mut dup, mut reordered, mut reports, mut answered) = (0, 0, 0, 0, 0, 0);
    for t in tasks {
        let s = t.await??;
        received += s.received;
        bytes += s.bytes;
        dup += s.duplicated;
        reordered += s.reordered;
        reports += s.reports;
        answered += s.answered;
        total.add(&s.latency)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_used = cpu(args.relay.relay_pid) - cpu0;
    let sent = args.messages * args.pairs as u64;
    let lost = sent - received;
    let rate = received as f64 / secs;
    let measured = args.relay.relay_pid.is_some() || PIPE_PID.get().is_some();
    let cpu_us = if measured { cpu_used * 1e6 / received.max(1) as f64 } else { f64::NAN };
    println!(
        "small: {} pairs × {} SENDs of {} B, window {}: {:.0} msg/s, {:.1} MB/s; latency p50 {} µs p99 {} µs max {} µs; \
         relay CPU {:.2} µs/msg; lost {lost} dup {dup} reordered {reordered} failure-reports {reports} unanswered {}",
        args.pairs,
        args.messages,
        args.size,
        args.window,
        rate,
        bytes as f64 / secs / 1e6,
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
        total.max(),
        cpu_us,
        sent - answered
    );
    println!(
        "RESULT mode=small label={} msg_per_s={rate:.0} mb_per_s={:.2} p50_us={} p99_us={} cpu_us_per_msg={cpu_us:.3} lost={lost} dup={dup} reordered={reordered} reports={reports}",
        args.relay.label,
        bytes as f64 / secs / 1e6,
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
    );
    Ok(())
}

async fn bulk(args: BulkArgs) -> Result<(), Error> {
    let (a, b, to) = make_pair(&args.relay, 0).await?;
    let cpu0 = cpu(args.relay.relay_pid);
    let (secs, bytes) = load::bulk(a, b, to, args.file_size, args.chunk, args.window).await?;
    let cpu_used = cpu(args.relay.relay_pid) - cpu0;
    let mbps = bytes as f64 / secs / 1e6;
    println!(
        "bulk: {} B in chunks of {} B, window {}: {:.1} MB/s ({:.2} s), content verified; relay CPU {:.2} s",
        args.file_size, args.chunk, args.window, mbps, secs, cpu_used
    );
    println!("RESULT mode=bulk label={} mb_per_s={mbps:.1} secs={secs:.3} relay_cpu_s={cpu_used:.3}", args.relay.label);
    Ok(())
}

async fn sessions(args: SessionArgs) -> Result<(), Error> {
    let relay = args.relay.relay.as_deref().ok_or("--relay is required")?;
    let pid = args.relay.relay_pid.ok_or("--relay-pid is required to measure memory")?;
    let (target, relay_uri) = Target::parse(relay).await?;
    let (user, password) = split_user(&args.relay.user_a)?;
    let before = procfs::pss_kib(pid);
    let started = Instant::now();
    let per_connection = args.per_connection.max(1);
    let connections = args.count.div_ceil(per_connection);
    let mut held = Vec::with_capacity(connections);
    let mut sessions = 0usize;
    let mut failed = 0usize;
    let mut first_error = None;
    let mut next = 0usize;
    // Stop opening more once a whole batch fails (the relay is out of something).
    while next < connections {
        let batch: Vec<_> = (next..(next + args.parallel).min(connections))
            .map(|i| {
                let (target, relay_uri, user, password) =
                    (target.clone(), relay_uri.clone(), user.clone(), password.clone());
                // Spread sources over 127.0.0.0/8 so that ephemeral ports do not run out.
                let source = IpAddr::V4(Ipv4Addr::new(127, 0, (i / 250 % 250) as u8, (i % 250 + 2) as u8));
                let here = per_connection.min(args.count - i * per_connection);
                tokio::spawn(async move {
                    let mut c = Conn::connect(&target, &format!("s{i}"), Some(source)).await?;
                    for _ in 0..here {
                        c.authenticate(&relay_uri, &user, &password).await?;
                    }
                    Ok::<_, Error>((c, here))
                })
            })
            .collect();
        next += batch.len();
        let mut batch_ok = 0;
        for t in batch {
            match t.await? {
                Ok((c, here)) => {
                    held.push(c);
                    sessions += here;
                    batch_ok += 1;
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if batch_ok == 0 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = procfs::pss_kib(pid);
    let ok = sessions;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / ok.max(1) as f64;
    println!(
        "sessions: {ok} of {} authenticated sessions over {} connections in {:.1} s ({failed} connections failed{}); relay PSS {before} → {after} KiB: {per:.0} bytes per session",
        args.count,
        held.len(),
        started.elapsed().as_secs_f64(),
        first_error.map(|e| format!(", first: {e}")).unwrap_or_default(),
    );
    println!(
        "RESULT mode=sessions label={} count={ok} connections={} failed={failed} bytes_per_session={per:.0} pss_kib={after}",
        args.relay.label,
        held.len()
    );
    drop(held);
    Ok(())
}

/// Handshakes per connection in `auth` mode (under any relay's per-connection session cap).
const AUTHS_PER_CONNECTION: usize = 10;

async fn auth(args: AuthArgs) -> Result<(), Error> {
    let relay = args.relay.relay.as_deref().ok_or("--relay is required")?;
    let (target, relay_uri) = Target::parse(relay).await?;
    let (user, password) = split_user(&args.relay.user_a)?;
    let cpu0 = cpu(args.relay.relay_pid);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| {
            let (target, relay_uri, user, password) =
                (target.clone(), relay_uri.clone(), user.clone(), password.clone());
            let n = args.handshakes;
            tokio::spawn(async move {
                // Each handshake creates a session, and relays cap the sessions of one
                // connection (msrpd: relay.max_sessions_per_connection, 16 by default): a new
                // connection every ten handshakes.
                let mut c = Conn::connect(&target, &format!("auth{i}"), None).await?;
                for k in 0..n {
                    if k > 0 && k % AUTHS_PER_CONNECTION == 0 {
                        c = Conn::connect(&target, &format!("auth{i}"), None).await?;
                    }
                    c.authenticate(&relay_uri, &user, &password).await?;
                }
                Ok::<_, Error>(n)
            })
        })
        .collect();
    let mut done = 0usize;
    for t in tasks {
        done += t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_us =
        if args.relay.relay_pid.is_some() { (cpu(args.relay.relay_pid) - cpu0) * 1e6 / done as f64 } else { f64::NAN };
    let rate = done as f64 / secs;
    println!(
        "auth: {done} Digest handshakes over {} connections: {rate:.0}/s; relay CPU {cpu_us:.1} µs each",
        args.connections
    );
    println!("RESULT mode=auth label={} auth_per_s={rate:.0} cpu_us_per_auth={cpu_us:.1}", args.relay.label);
    Ok(())
}

async fn chat(args: ChatArgs) -> Result<(), Error> {
    if args.participants < 2 + usize::from(args.stall) || args.senders == 0 || args.senders >= args.participants {
        return Err("need at least two reading participants and 1..participants senders".into());
    }
    if args.size < 16 {
        return Err("--size must be at least 16 (the payload carries its send time)".into());
    }
    let plan = chat::ChatPlan {
        sip: args.sip,
        room: args.room.clone(),
        domain: args.domain.clone(),
        participants: args.participants,
        senders: args.senders,
        messages: args.messages,
        size: args.size,
        window: args.window,
        stall: args.stall,
        server_pid: args.server_pid,
        subscribers: args.subscribers,
        churn: args.churn,
    };
    if args.churn > 0 && args.subscribers == 0 {
        return Err("--churn needs --subscribers".into());
    }
    let s = chat::run(plan).await?;
    let rate = s.delivered as f64 / s.secs;
    let lost = s.expected.saturating_sub(s.delivered);
    let cpu_us = if args.server_pid.is_some() { s.server_cpu_s * 1e6 / s.delivered.max(1) as f64 } else { f64::NAN };
    println!(
        "chat: {} participants{}, {} senders × {} messages of {} B, window {}: {} messages, {:.0} deliveries/s ({} of {} in {:.2} s); \
         latency p50 {} µs p99 {} µs; server CPU {:.2} µs/delivery; lost {lost}; dropped by the server {}",
        s.participants,
        if args.stall { " (one stalled)" } else { "" },
        args.senders,
        args.messages,
        args.size,
        args.window,
        s.sent,
        rate,
        s.delivered,
        s.expected,
        s.secs,
        s.latency.value_at_quantile(0.5),
        s.latency.value_at_quantile(0.99),
        cpu_us,
        s.dropped,
    );
    println!(
        "RESULT mode=chat label={} participants={} stall={} deliveries_per_s={rate:.0} p50_us={} p99_us={} cpu_us_per_delivery={cpu_us:.3} lost={lost} dropped={}",
        args.label,
        s.participants,
        args.stall,
        s.latency.value_at_quantile(0.5),
        s.latency.value_at_quantile(0.99),
        s.dropped,
    );
    if let Some(c) = &s.churn {
        let notify_cpu_us =
            if args.server_pid.is_some() { c.server_cpu_s * 1e6 / c.notifies.max(1) as f64 } else { f64::NAN };
        println!(
            "churn: {} joins and leaves in {:.2} s ({:.0}/s) with {} watchers: {} NOTIFYs ({:.0}/s, {:.0} B each), server CPU {:.1} µs/NOTIFY",
            c.cycles,
            c.secs,
            c.cycles as f64 / c.secs,
            args.subscribers,
            c.notifies,
            c.notifies as f64 / c.secs,
            c.notify_bytes as f64 / c.notifies.max(1) as f64,
            notify_cpu_us,
        );
        println!(
            "RESULT mode=churn label={} participants={} watchers={} cycles={} notifies={} notifies_per_s={:.0} bytes_per_notify={:.0} cpu_us_per_notify={notify_cpu_us:.2}",
            args.label,
            s.participants,
            args.subscribers,
            c.cycles,
            c.notifies,
            c.notifies as f64 / c.secs,
            c.notify_bytes as f64 / c.notifies.max(1) as f64,
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Small(a) => small(a).await,
        Mode::Bulk(a) => bulk(a).await,
        Mode::Sessions(a) => sessions(a).await,
        Mode::Auth(a) => auth(a).await,
        Mode::Chat(a) => chat(a).await,
        Mode::Abuse(a) => abuse::run(a).await,
        Mode::Pipe { to } => pipe::run(to).await,
    };
    if let Err(e) = result {
        eprintln!("msrp-bench: {e}");
        std::process::exit(1);
    }
}
