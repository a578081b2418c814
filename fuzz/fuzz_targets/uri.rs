//! URI parsing must never panic, and whatever parses must print back to its own text and
//! parse again to an equal URI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msrp::Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(uri) = text.parse::<Uri>() {
        assert_eq!(uri.to_string(), text);
        let again: Uri = uri.to_string().parse().expect("printed URI parses");
        assert_eq!(again, uri);
        let _ = uri.with_session_id(Some("fuzz"));
    }
});
