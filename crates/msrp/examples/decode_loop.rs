//! Decodes the bench's small SEND frame many times, for instruction-level profiling:
//! `cargo build --release -p msrp --example decode_loop &&
//!  valgrind --tool=callgrind target/release/examples/decode_loop 100000`
//! (callgrind counts instructions, so the figure is repeatable on a noisy machine).

use bytes::BytesMut;
use msrp::{Decoder, Event};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let body = "Hello Bob! This is a typical instant message of about one hundred bytes, sent via a relay.";
    let frame = format!(
        "MSRP a786hjs2 SEND\r\n\
         To-Path: msrps://relay.example.com:2855/aXq8Zk3pR7mN2;tcp msrps://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
         From-Path: msrps://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
         Message-ID: 87652491\r\nByte-Range: 1-{n}/{n}\r\nSuccess-Report: no\r\nFailure-Report: yes\r\n\
         Content-Type: text/plain\r\n\r\n{body}\r\n-------a786hjs2$\r\n",
        n = body.len()
    );
    let mut dec = Decoder::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut frames = 0;
    let start = std::time::Instant::now();
    for _ in 0..n {
        buf.extend_from_slice(frame.as_bytes());
        while let Some(ev) = dec.decode(&mut buf).expect("valid frame") {
            if let Event::End(_) = ev {
                frames += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{frames} frames of {} bytes in {secs:.3} s: {:.0} frames/s", frame.len(), frames as f64 / secs);
}
