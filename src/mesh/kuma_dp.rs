//! kuma-dp's command line, as far as meshinit reads it: the arguments given
//! through `--kuma-dp-arg` that change what meshinit does (`--drain-time`,
//! `--work-dir`), and how they are shown without the token.

use std::time::Duration;

/// Reads a Go-style duration such as kuma-dp's `--drain-time` takes.
fn go_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// The drain time kuma-dp will use: `--drain-time` among the extra args,
/// else `KUMA_DATAPLANE_DRAIN_TIME`.
pub fn drain_time(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Option<Duration> {
    let mut from_args = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--drain-time=") {
            from_args = go_duration(v);
        } else if a == "--drain-time" {
            from_args = it.next().and_then(|v| go_duration(v));
        }
    }
    from_args.or_else(|| env("KUMA_DATAPLANE_DRAIN_TIME").and_then(|v| go_duration(&v)))
}

/// What replaces a secret in anything meshinit prints.
pub const REDACTED: &str = "<redacted>";

/// kuma-dp arguments as they may be printed (`meshinit check`): the value of
/// an inline `--dataplane-token` (given with `--kuma-dp-arg`) is replaced by
/// [`REDACTED`], so a token never appears in meshinit's output. The token
/// file's content is never read at all.
pub fn shown_args(args: &[String]) -> Vec<String> {
    let mut hide_next = false;
    args.iter()
        .map(|a| {
            if std::mem::take(&mut hide_next) {
                REDACTED.to_string()
            } else if a.starts_with("--dataplane-token=") {
                format!("--dataplane-token={REDACTED}")
            } else {
                hide_next = a == "--dataplane-token";
                a.clone()
            }
        })
        .collect()
}

/// kuma-dp's own default drain time.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(30);

/// How much longer than meshinit's worst-case shutdown kuma-dp's drain
/// time is set with `--drain-signal hold`: meshinit always ends the hold
/// itself (second SIGTERM, or SIGKILL), so this only covers the clocks of
/// two processes starting a little apart.
pub const HOLD_DRAIN_MARGIN: Duration = Duration::from_secs(10);

/// The drain time meshinit gives kuma-dp for a hold drain whose worst case
/// is `worst`: that and the margin, in whole seconds (rounded up).
pub fn hold_drain_time(worst: Duration) -> Duration {
    let t = worst.saturating_add(HOLD_DRAIN_MARGIN);
    let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
    Duration::from_secs(secs)
}

/// `--work-dir` given through `--kuma-dp-arg`, in either form.
pub fn user_work_dir(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    let mut found = None;
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--work-dir=") {
            found = Some(v.to_string());
        } else if a == "--work-dir" {
            found = it.next().cloned();
        }
    }
    found
}
