//! Feeds arbitrary bytes to the decoder in pieces whose sizes come from the input itself, and
//! checks the invariants a caller relies on: no panic, no empty body piece, bodies only
//! between a head and its end, and a frame error never stops the next frame from decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msrp::decode::Scope;
use msrp::{BytesMut, Decoder, Event};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let piece = usize::from(split).max(1);
    let mut dec = Decoder::default();
    let mut buf = BytesMut::new();
    let mut in_frame = false;
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Event::Head(_))) => {
                    assert!(!in_frame, "head inside a frame");
                    in_frame = true;
                }
                Ok(Some(Event::Body(b))) => assert!(in_frame && !b.is_empty()),
                Ok(Some(Event::End(_))) => {
                    assert!(in_frame);
                    in_frame = false;
                }
                Err(e) if e.scope == Scope::Connection => return,
                Err(_) => in_frame = false,
            }
        }
    }
});
