//! The status endpoint's request parser and answer (`status::respond`):
//! whatever a client sends, the answer is one well-formed HTTP response
//! whose Content-Length is the body's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshinit::lifecycle::Phase;
use meshinit::report::snapshot::Snapshot;
use meshinit::report::status::{head_complete, parse_request, respond};

fuzz_target!(|data: &[u8]| {
    // A CRLF head end always ends the head (bare-LF ones may too); without a
    // line feed there is no end yet.
    let complete = head_complete(data);
    if data.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(complete);
    }
    if !data.contains(&b'\n') {
        assert!(!complete);
    }
    let req = parse_request(data);
    assert!(!req.path.contains('?'));
    let mut state = Snapshot::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        state.phase = Phase::Running;
        state.ready = true;
        state.healthy = true;
    }
    let answer = respond(&state, data);
    let text = std::str::from_utf8(&answer).expect("answers are text");
    assert!(text.starts_with("HTTP/1.1 "), "{text:?}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    if req.method == "HEAD" {
        assert!(body.is_empty());
    } else {
        assert_eq!(body.len(), length);
    }
});
