//! The small value parsers: durations, signals, users, HOST:PORT, URLs,
//! exit-code mappings, KEY=VALUE and `${VAR:-default}` expansion. None may
//! panic, and what they accept must print back to the same value.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use meshinit::basics::parse;

fuzz_target!(|s: &str| {
    if let Ok(d) = parse::duration(s) {
        // `meshinit check` prints durations with fmt_duration: reading the
        // printed form back gives the same value (to the millisecond).
        if d < Duration::from_secs(1_000_000_000) {
            let printed = parse::fmt_duration(d);
            let back = parse::duration(&printed)
                .unwrap_or_else(|e| panic!("{s:?} -> {d:?} printed {printed:?}: {e}"));
            assert_eq!(
                back.as_millis(),
                d.as_millis(),
                "{s:?} -> {d:?} printed {printed:?}"
            );
        }
        let _ = parse::fmt_secs(d);
    }
    if let Ok(sig) = parse::signal(s) {
        assert_eq!(parse::signal(parse::signal_name(sig)), Ok(sig));
    }
    if let Ok(spec) = parse::user_spec(s) {
        assert!(!spec.user.is_empty());
        assert_eq!(parse::user_spec(&spec.to_string()), Ok(spec));
    }
    if let Ok((host, port)) = parse::host_port(s) {
        assert!(port != 0 && !host.is_empty(), "{s:?} -> {host:?}:{port}");
    }
    for schemes in [&["http"][..], &["http", "https"][..]] {
        if let Ok(u) = parse::url(s, schemes) {
            assert!(u.port != 0 && !u.host.is_empty() && u.path.starts_with('/'));
            let again = parse::url(&u.to_string(), schemes)
                .unwrap_or_else(|e| panic!("{s:?} -> {u} does not parse back: {e}"));
            assert_eq!(again, u, "{s:?}");
        }
    }
    if let Ok((from, to)) = parse::exit_code_mapping(s) {
        assert!((0..=255).contains(&from) && (0..=255).contains(&to));
    }
    if let Ok((k, _)) = parse::key_value(s) {
        assert!(!k.is_empty());
    }
    let _ = parse::expand_env(s, |k| (k.len() % 2 == 0).then(|| k.to_string()));
});
