//! A 1 GiB binary message through the relay, byte-exact, with the process's peak memory
//! barely moving. Slow in debug builds, so ignored by default:
//! `cargo test --release -p msrp-relay --test big -- --ignored --nocapture`

mod common;

use std::time::Instant;

use bytes::BytesMut;
use common::*;
use msrp::header::{ByteRange, Header, Path};
use msrp::{Continuation, StatusCode};

const SIZE: u64 = 1 << 30;
const PIECE: usize = 256 * 1024;

/// A reproducible byte stream (xorshift64), so neither side holds the message.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "1 GiB through the relay: run in release with --ignored"]
async fn one_gib_binary_passes_byte_exact_with_bounded_memory() {
    let relay = start_relay(options("127.0.0.1", "example.com"), None, "example.com").await;
    let mut a = Endpoint::connect(&relay, "alice", None).await;
    let ua = a.authenticate(&relay.uri(), "alice", "alicepw").await.headers.use_path().unwrap().clone();
    let mut b = Endpoint::connect(&relay, "bob", None).await;
    let ub = b.authenticate(&relay.uri(), "bob", "bobpw").await.headers.use_path().unwrap().clone();
    let to = Path::new(ua.uris().iter().chain(ub.uris()).chain(b.path().uris()).cloned().collect()).unwrap();
    let mut send = a.send(to, &[]);
    send.headers.set(Header::ByteRange(ByteRange::whole(SIZE)));
    send.headers.set(Header::ContentType("application/octet-stream".parse().unwrap()));
    let before = peak_rss_kib();
    let started = Instant::now();

    let tid = send.tid;
    let writer = tokio::spawn(async move {
        let mut head = BytesMut::new();
        msrp::encode::encode_request_head(&send, &mut head);
        a.write(&head).await;
        let mut source = Stream(0x9E37_79B9_7F4A_7C15);
        let mut piece = vec![0u8; PIECE];
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(PIECE as u64) as usize;
            source.fill(&mut piece[..n]);
            a.write(&piece[..n]).await;
            left -= n as u64;
        }
        let mut end = BytesMut::new();
        msrp::encode::encode_body_end(&tid, Continuation::Complete, &mut end);
        a.write(&end).await;
        let resp = a.frame().await;
        assert_eq!(resp.response().status, StatusCode::OK);
    });

    let mut expect = Stream(0x9E37_79B9_7F4A_7C15);
    let mut want = vec![0u8; 1 << 20];
    let mut received = 0u64;
    loop {
        let f = b.frame().await;
        let req = f.request().clone();
        assert_eq!(req.headers.byte_range().unwrap().start, received + 1);
        for part in f.body.chunks(want.len()) {
            // The generator fills whole 8-byte words; chunk boundaries may split one.
            expect_bytes(&mut expect, &mut want, received, part);
            received += part.len() as u64;
        }
        b.ok(&req).await;
        if f.flag == Continuation::Complete {
            break;
        }
    }
    writer.await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    println!("1 GiB in {secs:.1} s ({:.0} MB/s); peak RSS grew by {grown_mib} MiB", SIZE as f64 / secs / 1e6);
    assert_eq!(received, SIZE);
    assert!(grown_mib < 64, "peak memory grew by {grown_mib} MiB");
}

/// Compares `got` (starting at absolute offset `at`) with the reference stream.
fn expect_bytes(reference: &mut Stream, scratch: &mut Vec<u8>, at: u64, got: &[u8]) {
    thread_local! { static CARRY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) }; }
    CARRY.with(|carry| {
        let mut carry = carry.borrow_mut();
        while carry.len() < got.len() {
            let n = 8 * 8192;
            scratch.resize(n, 0);
            reference.fill(&mut scratch[..n]);
            carry.extend_from_slice(&scratch[..n]);
        }
        assert!(carry[..got.len()] == *got, "bytes differ near offset {at}");
        carry.drain(..got.len());
    });
}
