//! The /proc/<pid>/stat parser (`descendants::parse_stat`) that finds what
//! is left below meshinit. A process chooses its own name (any bytes), so
//! the line can hold anything between the parentheses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meshinit::init::descendants::parse_stat;

fuzz_target!(|data: &[u8]| {
    let _ = parse_stat(data);
    // Whatever the name, the fields after it are read back exactly.
    let mut line = b"4242 (".to_vec();
    line.extend(data.iter().filter(|b| **b != 0));
    line.extend_from_slice(b") S 17 4242 4242 0 -1 4194560");
    assert_eq!(parse_stat(&line), Some(('S', 17)));
});
