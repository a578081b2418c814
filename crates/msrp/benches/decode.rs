//! Decoder throughput: small frames per second and body bytes per second; and the relay's
//! fast-path lexer on the two frames that make up its traffic (a SEND and its 200).
//! Run: `cargo bench -p msrp --bench decode`; figures go to docs/BENCHMARKS.md.

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use msrp::{Decoder, Event};
use std::hint::black_box;

/// A typical ~400-byte SEND: two-hop To-Path through a relay, a short text body. `session`
/// varies the paths' session-ids so that no two frames share a To-Path or From-Path.
fn small_send_in(session: usize) -> Vec<u8> {
    let body = "Hello Bob! This is a typical instant message of about one hundred bytes, sent via a relay.";
    format!(
        "MSRP a786hjs2 SEND\r\n\
         To-Path: msrps://relay.example.com:2855/aXq8Zk3p{session:05};tcp msrps://bob.example.com:8888/9di4eae9{session:05};tcp\r\n\
         From-Path: msrps://alicepc.example.com:7777/iau39soe{session:05};tcp\r\n\
         Message-ID: 87652491\r\n\
         Byte-Range: 1-{n}/{n}\r\n\
         Success-Report: no\r\n\
         Failure-Report: yes\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         {body}\r\n\
         -------a786hjs2$\r\n",
        n = body.len()
    )
    .into_bytes()
}

fn bench_small(c: &mut Criterion) {
    const N: usize = 1000;
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(N as u64));
    // One session's frames (paths repeat: the decoder's path cache hits), then every frame in
    // a session of its own (every path parsed).
    for (name, vary) in [("small_send_one_session", false), ("small_send_distinct_sessions", true)] {
        let stream: Vec<u8> = (0..N).flat_map(|i| small_send_in(if vary { i } else { 0 })).collect();
        bench_stream(&mut group, name, stream, N);
    }
    group.finish();
}

fn bench_stream(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    stream: Vec<u8>,
    n: usize,
) {
    let frame_len = stream.len() / n;
    group.bench_function(format!("{name}_{frame_len}B_x{n}"), |b| {
        b.iter_batched_ref(
            || BytesMut::from(&stream[..]),
            |buf| {
                let mut dec = Decoder::default();
                let mut ends = 0;
                while let Some(ev) = dec.decode(buf).unwrap() {
                    if let Event::End(_) = ev {
                        ends += 1;
                    }
                    black_box(ev);
                }
                assert_eq!(ends, n);
            },
            BatchSize::LargeInput,
        )
    });
}

fn bench_body(c: &mut Criterion) {
    const SIZE: usize = 1 << 20;
    // Pseudo-random binary body (xorshift) sprinkled with fake end-lines of another tid.
    let mut body = Vec::with_capacity(SIZE);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while body.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.extend_from_slice(&x.to_le_bytes());
        if body.len() % 65536 == 0 {
            body.extend_from_slice(b"\r\n-------fake1234$\r\n");
        }
    }
    body.truncate(SIZE);
    let mut frame = format!(
        "MSRP bigtid01 SEND\r\nTo-Path: msrp://b:2/t;tcp\r\nFrom-Path: msrp://a:1/s;tcp\r\nMessage-ID: mid1\r\n\
         Byte-Range: 1-{SIZE}/{SIZE}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    frame.extend_from_slice(&body);
    frame.extend_from_slice(b"\r\n-------bigtid01$\r\n");

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("body_1MiB_end_line_scan", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&frame[..]),
            |buf| {
                let mut dec = Decoder::default();
                let mut got = 0;
                while let Some(ev) = dec.decode(buf).unwrap() {
                    if let Event::Body(piece) = &ev {
                        got += piece.len();
                    }
                }
                assert_eq!(got, SIZE);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// `msrp::lex::lex_frame` on a relayed SEND and on a 200 to it, as the relay reads them.
fn bench_lex(c: &mut Criterion) {
    let send = small_send_in(0);
    let ok = b"MSRP 7c2fa0b1d3e4 200 OK\r\n\
To-Path: msrp://127.0.0.1:12855/aXq8Zk3p00000;tcp\r\n\
From-Path: msrp://127.0.0.1:40000/9di4eae900000;tcp\r\n\
-------7c2fa0b1d3e4$\r\n"
        .to_vec();
    let limits = msrp::Limits::default();
    let mut group = c.benchmark_group("lex");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in [("send", &send), ("ok", &ok)] {
        group.bench_function(format!("{name}_{}B", frame.len()), |b| {
            b.iter(|| {
                let l = msrp::lex::lex_frame(black_box(frame), &limits, 8192).unwrap();
                black_box(l.headers().count())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_small, bench_body, bench_lex);
criterion_main!(benches);
