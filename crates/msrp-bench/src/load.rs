//! The workloads: many small SENDs through pipelined pairs, one bulk file in chunks, and the
//! same without a relay (`direct`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use hdrhistogram::Histogram;
use msrp::header::Path;
use msrp::{Message, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::client::{Conn, Error};

/// How long a receiver waits for the next byte before declaring the rest lost.
const STALL: Duration = Duration::from_secs(10);

/// What one pair saw.
#[derive(Debug)]
pub struct PairStats {
    pub answered: u64,
    pub received: u64,
    pub bytes: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub reports: u64,
    pub latency: Histogram<u64>,
}

/// A SEND's transaction id: pair and sequence, so a response names what it answers.
fn tid(pair: usize, seq: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let text = format!("{:04x}{:012x}", pair & 0xffff, seq);
    out.copy_from_slice(text.as_bytes());
    out
}

fn seq_of(tid: &str) -> Option<u64> {
    u64::from_str_radix(tid.get(4..16)?, 16).ok()
}

/// Encodes one SEND (`flag` `$`, or `+` for a bulk chunk) without going through the typed
/// encoder: the generator must be far cheaper than what it measures.
#[allow(clippy::too_many_arguments)]
fn encode_send(
    out: &mut BytesMut,
    tid: &[u8; 16],
    to: &str,
    from: &str,
    mid: &[u8],
    range: (u64, u64, u64),
    body: &[u8],
    flag: u8,
) {
    out.put_slice(b"MSRP ");
    out.put_slice(tid);
    out.put_slice(b" SEND\r\nTo-Path: ");
    out.put_slice(to.as_bytes());
    out.put_slice(b"\r\nFrom-Path: ");
    out.put_slice(from.as_bytes());
    out.put_slice(b"\r\nMessage-ID: ");
    out.put_slice(mid);
    let _ = std::fmt::Write::write_fmt(out, format_args!("\r\nByte-Range: {}-{}/{}", range.0, range.1, range.2));
    out.put_slice(b"\r\nContent-Type: text/plain\r\n\r\n");
    out.put_slice(body);
    out.put_slice(b"\r\n-------");
    out.put_slice(tid);
    out.put_u8(flag);
    out.put_slice(b"\r\n");
}

/// Answers every SEND on `b` with 200, checks the bodies, measures latency.
async fn receive(
    mut b: Conn,
    expected: u64,
    sent_at: Arc<Vec<AtomicU64>>,
    start: Instant,
) -> Result<(u64, u64, u64, u64, Histogram<u64>, Conn), Error> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut received, mut bytes, mut dup, mut reordered) = (0u64, 0u64, 0u64, 0u64);
    let mut seen = vec![false; expected as usize];
    let mut next = 0u64;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut reply_to: Option<String> = None;
    let me = b.uri.to_string();
    // The transaction being read: its id, and the message's sequence number (from its
    // Message-ID, so that messages the relay split into several chunks are counted once, when
    // their last chunk ends) and whether this chunk ends it.
    let mut current: Option<(String, Option<u64>)> = None;
    while received < expected {
        while let Some(ev) = b.dec.decode(&mut b.buf)? {
            match ev {
                msrp::Event::Head(Message::Request(r)) if r.method == Method::Send => {
                    if reply_to.is_none() {
                        reply_to = r.headers.from_path().map(|p| p.first().to_string());
                    }
                    let seq = r.headers.message_id().and_then(|m| seq_of(m.as_str().get(1..)?));
                    current = Some((r.tid.to_string(), seq));
                }
                msrp::Event::Head(_) => current = None,
                msrp::Event::Body(piece) => {
                    if current.is_some() {
                        bytes += piece.len() as u64;
                    }
                }
                msrp::Event::End(flag) => {
                    let Some((tid, seq)) = current.take() else { continue };
                    if let Some(to) = &reply_to {
                        let _ = std::fmt::Write::write_fmt(
                            &mut out,
                            format_args!("MSRP {tid} 200 OK\r\nTo-Path: {to}\r\nFrom-Path: {me}\r\n-------{tid}$\r\n"),
                        );
                    }
                    if flag != msrp::Continuation::Complete {
                        continue;
                    }
                    let Some(slot) = seq.and_then(|s| seen.get_mut(s as usize)) else {
                        eprintln!("msrp-bench: a message with an unknown Message-ID");
                        continue;
                    };
                    let seq = seq.unwrap_or_default();
                    if *slot {
                        dup += 1;
                        continue;
                    }
                    *slot = true;
                    received += 1;
                    if seq != next {
                        reordered += 1;
                    }
                    next = seq + 1;
                    let t = sent_at[seq as usize].load(Ordering::Relaxed);
                    let now = start.elapsed().as_nanos() as u64;
                    let _ = latency.record((now.saturating_sub(t) / 1000).max(1));
                }
            }
        }
        if !out.is_empty() {
            if let Err(e) = b.wr.write_all(&out).await {
                eprintln!("msrp-bench: receiver's connection failed ({e}); {received} of {expected} arrived");
                break;
            }
            out.clear();
        }
        if received >= expected {
            break;
        }
        // A relay that loses messages must not hang the run: report what arrived.
        match tokio::time::timeout(STALL, b.rd.read_buf(&mut b.buf)).await {
            Err(_) => {
                eprintln!("msrp-bench: nothing received for {STALL:?}; {received} of {expected} arrived");
                break;
            }
            // A reset or aborted connection ("Software caused connection abort") fails this
            // pair only: what did not arrive counts as lost, and the run goes on.
            Ok(Ok(0)) => {
                eprintln!("msrp-bench: receiver's connection closed; {received} of {expected} arrived");
                break;
            }
            Ok(Err(e)) => {
                eprintln!("msrp-bench: receiver's connection failed ({e}); {received} of {expected} arrived");
                break;
            }
            Ok(Ok(_)) => {}
        }
    }
    Ok((received, bytes, dup, reordered, latency, b))
}

/// The body of message `seq`: its number in hex, then filler.
fn small_body(seq: u64, size: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(format!("{seq:016x}").as_bytes());
    buf.resize(size.max(16), b'x');
}

/// `messages` small SENDs from `a` to `b` with `window` in flight; `to` is A's To-Path.
pub async fn small_pair(
    pair: usize,
    a: Conn,
    b: Conn,
    to: Path,
    messages: u64,
    size: usize,
    window: usize,
) -> Result<PairStats, Error> {
    let start = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..messages).map(|_| AtomicU64::new(0)).collect());
    let permits = Arc::new(Semaphore::new(window));
    let to_text = to.to_string();
    let from_text = a.uri.to_string();
    let Conn { mut rd, mut wr, mut dec, mut buf, .. } = a;

    let writer = {
        let (permits, sent_at) = (permits.clone(), sent_at.clone());
        tokio::spawn(async move {
            let mut out = BytesMut::with_capacity(64 * 1024);
            let mut body = Vec::new();
            let mut seq = 0u64;
            while seq < messages {
                permits.acquire().await?.forget();
                let mut batch = 1;
                while batch < 256
                    && seq + batch < messages
                    && permits.try_acquire().is_ok_and(|p| {
                        p.forget();
                        true
                    })
                {
                    batch += 1;
                }
                let now = start.elapsed().as_nanos() as u64;
                for _ in 0..batch {
                    small_body(seq, size, &mut body);
                    let t = tid(pair, seq);
                    let mut mid = [b'm'; 17];
                    mid[1..].copy_from_slice(&t);
                    encode_send(
                        &mut out,
                        &t,
                        &to_text,
                        &from_text,
                        &mid,
                        (1, body.len() as u64, body.len() as u64),
                        &body,
                        b'$',
                    );
                    sent_at[seq as usize].store(now, Ordering::Relaxed);
                    seq += 1;
                }
                wr.write_all(&out).await?;
                out.clear();
            }
            Ok::<_, Error>(wr)
        })
    };

    let answers = tokio::spawn(async move {
        let mut answered = vec![false; messages as usize];
        let (mut count, mut reports) = (0u64, 0u64);
        while count < messages {
            while let Some(ev) = dec.decode(&mut buf)? {
                match ev {
                    msrp::Event::Head(Message::Response(r)) => {
                        // Kamailio also relays B's end-to-end 200: count each SEND once.
                        if let Some(s) = seq_of(r.tid.as_str())
                            && let Some(slot) = answered.get_mut(s as usize)
                            && !*slot
                        {
                            *slot = true;
                            count += 1;
                            permits.add_permits(1);
                        }
                    }
                    msrp::Event::Head(Message::Request(r)) if r.method == Method::Report => reports += 1,
                    _ => {}
                }
            }
            if count >= messages {
                break;
            }
            // Closed or reset: the answers so far are the pair's; the rest count as lost.
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        Ok::<_, Error>((count, reports))
    });

    let (received, bytes, duplicated, reordered, latency, _b) = receive(b, messages, sent_at, start).await?;
    let (answered, reports) = match tokio::time::timeout(STALL, answers).await {
        Ok(r) => r??,
        Err(_) => (0, 0),
    };
    writer.abort();
    Ok(PairStats { answered, received, bytes, duplicated, reordered, reports, latency })
}

/// True when `piece`, found at absolute offset `at` of the file, matches the sender's pattern
/// (byte `o` of the file is `pattern[o % pattern.len()]`): a memcmp, so that the receiver is
/// never what limits a bulk run.
fn matches_pattern(pattern: &[u8], at: u64, piece: &[u8]) -> bool {
    let mut offset = (at % pattern.len() as u64) as usize;
    let mut rest = piece;
    while !rest.is_empty() {
        let n = rest.len().min(pattern.len() - offset);
        if rest[..n] != pattern[offset..offset + n] {
            return false;
        }
        rest = &rest[n..];
        offset = 0;
    }
    true
}

/// One file of `file_size` bytes in chunks of `chunk` bytes (`+` then `$`), `window` chunks in
/// flight; returns (seconds, bytes verified).
pub async fn bulk(
    a: Conn,
    mut b: Conn,
    to: Path,
    file_size: u64,
    chunk: usize,
    window: usize,
) -> Result<(f64, u64), Error> {
    let permits = Arc::new(Semaphore::new(window));
    let to_text = to.to_string();
    let from_text = a.uri.to_string();
    let Conn { mut rd, mut wr, mut dec, mut buf, .. } = a;
    let chunks = file_size.div_ceil(chunk as u64);
    let data: Vec<u8> = (0..chunk).map(|i| (i * 7 + 3) as u8).collect();
    let pattern = data.clone();
    let started = Instant::now();
    let writer = {
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut out = BytesMut::with_capacity(chunk + 512);
            for k in 0..chunks {
                permits.acquire().await?.forget();
                let start = k * chunk as u64 + 1;
                let len = (file_size - (start - 1)).min(chunk as u64);
                let flag = if k + 1 == chunks { b'$' } else { b'+' };
                let t = tid(0, k);
                encode_send(
                    &mut out,
                    &t,
                    &to_text,
                    &from_text,
                    b"bulkfile1",
                    (start, start + len - 1, file_size),
                    &data[..len as usize],
                    flag,
                );
                wr.write_all(&out).await?;
                out.clear();
            }
            Ok::<_, Error>(wr)
        })
    };
    let answers = tokio::spawn(async move {
        let mut answered = vec![false; chunks as usize];
        let mut n = 0u64;
        while n < chunks {
            while let Some(ev) = dec.decode(&mut buf)? {
                if let msrp::Event::Head(Message::Response(r)) = ev
                    && let Some(k) = seq_of(r.tid.as_str())
                    && let Some(slot) = answered.get_mut(k as usize)
                    && !*slot
                {
                    *slot = true;
                    n += 1;
                    permits.add_permits(1);
                }
            }
            if n >= chunks || rd.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok::<_, Error>(n)
    });
    // Receive: bytes in order, compared with the pattern, each chunk answered.
    let mut corrupt = false;
    let mut total = 0u64;
    let mut out = BytesMut::new();
    let mut reply_to: Option<String> = None;
    let me = b.uri.to_string();
    let mut current: Option<String> = None;
    let mut done = false;
    while !done {
        while let Some(ev) = b.dec.decode(&mut b.buf)? {
            match ev {
                msrp::Event::Head(Message::Request(r)) => {
                    if reply_to.is_none() {
                        reply_to = r.headers.from_path().map(|p| p.first().to_string());
                    }
                    let range = r.headers.byte_range().ok_or("chunk without Byte-Range")?;
                    if range.start != total + 1 {
                        return Err(format!("chunk starts at {}, expected {}", range.start, total + 1).into());
                    }
                    current = Some(r.tid.to_string());
                }
                msrp::Event::Head(_) => current = None,
                msrp::Event::Body(piece) => {
                    corrupt |= !matches_pattern(&pattern, total, &piece);
                    total += piece.len() as u64;
                }
                msrp::Event::End(flag) => {
                    if let (Some(t), Some(to)) = (current.take(), &reply_to) {
                        let _ = std::fmt::Write::write_fmt(
                            &mut out,
                            format_args!("MSRP {t} 200 OK\r\nTo-Path: {to}\r\nFrom-Path: {me}\r\n-------{t}$\r\n"),
                        );
                    }
                    if flag == msrp::Continuation::Complete {
                        done = true;
                    }
                }
            }
        }
        if !out.is_empty() {
            b.wr.write_all(&out).await?;
            out.clear();
        }
        if !done && b.rd.read_buf(&mut b.buf).await? == 0 {
            return Err("receiver's connection closed".into());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = tokio::time::timeout(Duration::from_secs(30), answers).await;
    let _ = writer.await?;
    if total != file_size || corrupt {
        return Err(format!(
            "bulk transfer corrupted: {total} of {file_size} bytes arrived, content differs: {corrupt}"
        )
        .into());
    }
    Ok((secs, total))
}
