//! The HTTP response reader (`http::parse_response`): what probes, kuma-dp's
//! ready URL and Envoy's admin API send back. Any bytes a peer sends must
//! give a status and a body, or an error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshinit::health::http;

fuzz_target!(|data: &[u8]| {
    let with_body = http::parse_response(data, true);
    let status_only = http::parse_response(data, false);
    // The status line alone decides whether it is an HTTP answer at all.
    assert_eq!(
        with_body.as_ref().map(|(s, _)| *s),
        status_only.as_ref().map(|(s, _)| *s)
    );
    if let Ok((_, body)) = with_body {
        // A body is never longer than what was received: de-chunking only
        // removes framing (the UTF-8 replacement may triple a byte).
        assert!(body.len() <= data.len() * 3);
    }
});
