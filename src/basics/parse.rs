//! Parsers for the small value types of the command line and config file:
//! durations, signals, exit-code mappings, users, addresses and URLs.
//!
//! Each returns a message that says what is expected; the caller adds where
//! the value came from.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;

/// `500ms`, `10s`, `2m`, `1m30s`, `1h`. A bare number is refused: `10`
/// could mean seconds or milliseconds, and guessing wrong stops a drain.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = any_duration(s)?;
    if d > MAX_DURATION {
        return Err(format!(
            "'{}' is longer than {MAX_DURATION_TEXT}, the longest wait meshinit accepts; write a shorter duration",
            s.trim()
        ));
    }
    Ok(d)
}

/// The longest duration any option takes. Every wait meshinit has is
/// seconds to minutes; the cap keeps sums of them (the worst-case shutdown,
/// deadlines measured from meshinit's start) far from any overflow, and
/// turns a typo such as `300000000000y` into a configuration error instead
/// of a supervisor that can never stop.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// [`MAX_DURATION`] as it is written in messages and the README.
pub const MAX_DURATION_TEXT: &str = "24h";

fn any_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write it like 500ms, 10s or 2m".into());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) && t != "0" {
        return Err(format!("'{t}' has no unit; write it like {t}s or {t}ms"));
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("'{t}' is not a duration ({e}); write it like 500ms, 10s or 2m"))
}

/// Formats a duration the way it is written in the configuration
/// (`40s`, `1.5s`, `250ms`, `2m`), for `meshinit check` and logs.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        // Whole milliseconds, as above: rounding through f64 printed 1999.6ms
        // as "2.s" (found by fuzzing, issue 8).
        let secs = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{}s", secs.trim_end_matches('0'))
    }
}

/// Seconds with two decimals, for timelines (`2.01s`).
pub fn fmt_secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn signal(s: &str) -> Result<Signal, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("'{t}' is not a signal number"));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("'{t}' is not a signal; write it like TERM, SIGTERM or 15"))
}

/// The short name used in logs and docs: `TERM`.
pub fn signal_name(sig: Signal) -> &'static str {
    sig.as_str().trim_start_matches("SIG")
}

/// `FROM:TO`, both 0..=255.
pub fn exit_code_mapping(s: &str) -> Result<(i32, i32), String> {
    let (from, to) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not FROM:TO (e.g. 143:0)"))?;
    let code = |v: &str| -> Result<i32, String> {
        v.trim()
            .parse::<u8>()
            .map(i32::from)
            .map_err(|_| format!("'{v}' in '{s}' is not an exit code 0-255"))
    };
    Ok((code(from)?, code(to)?))
}

/// `KEY=VALUE` with a non-empty key.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// `USER[:GROUP]`, each a name or a numeric id. Resolved later against the
/// user database (see `spawn::resolve_user`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub user: String,
    pub group: Option<String>,
}

/// The largest user or group id: one below (uid_t)-1.
pub const MAX_ID: u32 = u32::MAX - 1;

pub fn user_spec(s: &str) -> Result<UserSpec, String> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if user.trim().is_empty() || group.is_some_and(|g| g.trim().is_empty()) {
        return Err(format!("'{s}' is not USER[:GROUP]"));
    }
    // A numeric id must fit the kernel's: 4294967295 is (uid_t)-1, which
    // setuid(2) and setgid(2) take as "no change" and refuse, so `check`
    // refuses it rather than the run failing at the spawn (issue 20).
    for (what, id) in [("user", Some(user)), ("group", group)] {
        let Some(id) = id
            .map(str::trim)
            .filter(|i| i.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        match id.parse::<u32>() {
            Ok(n) if n <= MAX_ID => {}
            Ok(_) => {
                return Err(format!(
                    "'{id}' is not a valid {what} id: it is -1 to the kernel, which refuses it; the largest {what} id is {MAX_ID}"
                ))
            }
            Err(_) => {
                return Err(format!(
                    "{what} id '{id}' is too large: the largest is {MAX_ID}"
                ))
            }
        }
    }
    Ok(UserSpec {
        user: user.trim().to_string(),
        group: group.map(|g| g.trim().to_string()),
    })
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{g}", self.user),
            None => f.write_str(&self.user),
        }
    }
}

/// `HOST:PORT` as a socket address literal (`127.0.0.1:8080`, `[::1]:80`)
/// or a name (`localhost:8080`), kept as text and resolved when used.
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        // Port 0 is refused here as for names (found by fuzzing, issue 8).
        if addr.port() == 0 {
            return Err(format!("'0' in '{s}' is not a port 1-65535"));
        }
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("'{port}' in '{s}' is not a port 1-65535"))?;
    // Brackets only around the whole host, and something inside them: `[:80`
    // used to become an empty host (found by fuzzing, issue 8).
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').unwrap_or("["),
        None => host,
    };
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
        return Err(format!("'{s}' is not HOST:PORT"));
    }
    Ok((host.to_string(), port))
}

/// A URL as meshinit needs it: scheme, host, port and path. Only the parts
/// a probe or the cp-address check look at; no query parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{}://{host}:{}{}", self.scheme, self.port, self.path)
    }
}

/// Parses `scheme://host[:port][/path]` for the schemes in `schemes`.
pub fn url(s: &str, schemes: &[&str]) -> Result<Url, String> {
    let expected = || {
        format!(
            "'{s}' is not a URL like {}://HOST:PORT/PATH",
            schemes.first().copied().unwrap_or("http")
        )
    };
    let (scheme, rest) = s.split_once("://").ok_or_else(expected)?;
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(format!(
            "'{s}' has scheme '{scheme}'; expected {}",
            schemes.join(" or ")
        ));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    if authority.contains('@') {
        return Err(format!("'{s}': credentials in URLs are not supported"));
    }
    let default_port = if scheme == "https" || scheme == "grpcs" {
        443
    } else {
        80
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(expected)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| expected())?,
            None if after.is_empty() => default_port,
            None => return Err(expected()),
        };
        (h.to_string(), port)
    } else {
        let (h, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| expected())?),
            None => (authority.to_string(), default_port),
        };
        // An IPv6 address needs its brackets: `http://x]:[y:80` was accepted
        // and printed as a different URL (found by fuzzing, issue 8).
        if h.contains(':') {
            return Err(expected());
        }
        (h, port)
    };
    if host.is_empty() || host.contains([' ', '/', '[', ']']) || port == 0 {
        return Err(expected());
    }
    Ok(Url {
        scheme,
        host,
        port,
        path,
    })
}

/// Expands `${NAME:-default}` and `${NAME}` from a lookup function. Used for
/// the default proxy ready URL, which follows KUMA_READINESS_PORT.
pub fn expand_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match lookup(name).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(&v),
            None => out.push_str(default.unwrap_or("")),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// One of `options` (case-insensitive), as written in the list.
pub fn choice<'a>(options: &'a [&'a str]) -> impl Fn(&str) -> Result<String, String> + 'a {
    move |s| {
        let l = s.trim().to_ascii_lowercase();
        if options.contains(&l.as_str()) {
            Ok(l)
        } else {
            Err(format!("'{s}' is not one of {}", options.join(", ")))
        }
    }
}

pub fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not true or false")),
    }
}

pub fn count(s: &str) -> Result<u32, String> {
    whole_number(s, u32::MAX)
}

/// A whole number 0..=`max`. A number that is only too large says so and
/// names the largest, rather than "not a whole number" (issue 20).
pub fn whole_number(s: &str, max: u32) -> Result<u32, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a whole number"));
    }
    match t.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("'{t}' is too large: the largest is {max}")),
    }
}

/// A duration above zero: a wait that must actually wait.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    duration(s).and_then(|d| {
        if d.is_zero() {
            Err("must be longer than 0s".to_string())
        } else {
            Ok(d)
        }
    })
}

pub fn positive(s: &str) -> Result<u32, String> {
    count(s).and_then(|n| {
        if n == 0 {
            Err("must be at least 1".to_string())
        } else {
            Ok(n)
        }
    })
}

pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        // A bare port binds loopback: the endpoint is for local checks
        // unless an address is given on purpose.
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    t.parse::<SocketAddr>()
        .map_err(|_| format!("'{s}' is not an address like 127.0.0.1:9000"))
}

/// Joins argv for display, quoting what a shell would split.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else if a.chars().any(char::is_control) {
                // $'...' as bash writes it, so a newline or an escape sequence
                // in an argument cannot forge a line of the log or the plan.
                let mut q = String::from("$'");
                for c in a.chars() {
                    match c {
                        '\\' | '\'' => {
                            q.push('\\');
                            q.push(c);
                        }
                        '\n' => q.push_str("\\n"),
                        '\t' => q.push_str("\\t"),
                        c if c.is_control() => q.push_str(&format!("\\x{:02x}", u32::from(c))),
                        c => q.push(c),
                    }
                }
                q.push('\'');
                q
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (input, ms) in [
            ("500ms", 500),
            ("10s", 10_000),
            ("2m", 120_000),
            ("1m30s", 90_000),
            ("0", 0),
            ("0s", 0),
            (" 1s ", 1000),
        ] {
            assert_eq!(duration(input), Ok(Duration::from_millis(ms)), "{input}");
        }
        for bad in ["", "10", "ten", "10x", "-1s", "s"] {
            let err = duration(bad).unwrap_err();
            assert!(
                err.contains("500ms") || err.contains("unit"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn durations_longer_than_a_day_are_refused_by_value() {
        assert_eq!(duration(MAX_DURATION_TEXT), Ok(MAX_DURATION));
        assert_eq!(duration("1440m"), Ok(MAX_DURATION));
        for huge in ["24h 1ms", "2d", "300000000000y", "18446744073709551615s"] {
            let err = duration(huge).unwrap_err();
            assert!(
                err.contains(&format!("'{huge}'")) && err.contains("longer than 24h"),
                "{huge}: {err}"
            );
        }
    }

    #[test]
    fn duration_formatting_round_trips() {
        for ms in [0u64, 250, 1000, 1500, 40_000, 120_000, 61_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(duration(&fmt_duration(d)), Ok(d), "{ms}");
        }
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        // Found by fuzzing: sub-millisecond parts are cut, never rounded up.
        assert_eq!(fmt_duration(Duration::from_micros(1_999_600)), "1.999s");
        assert_eq!(fmt_duration(Duration::from_micros(709_551_616)), "709.551s");
        assert_eq!(fmt_secs(Duration::from_millis(2014)), "2.01s");
    }

    #[test]
    fn signals() {
        for s in ["TERM", "SIGTERM", "sigterm", "15", " term "] {
            assert_eq!(signal(s), Ok(Signal::SIGTERM), "{s}");
        }
        assert_eq!(signal("USR2"), Ok(Signal::SIGUSR2));
        for bad in ["", "FOO", "0", "99", "SIG"] {
            assert!(signal(bad).is_err(), "{bad}");
        }
        assert_eq!(signal_name(Signal::SIGQUIT), "QUIT");
    }

    #[test]
    fn exit_code_mappings() {
        assert_eq!(exit_code_mapping("143:0"), Ok((143, 0)));
        for bad in ["143", "143:", ":0", "256:0", "a:b", "-1:0"] {
            assert!(exit_code_mapping(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_and_kv() {
        assert_eq!(
            user_spec("app:staff"),
            Ok(UserSpec {
                user: "app".into(),
                group: Some("staff".into())
            })
        );
        assert!(user_spec(":x").is_err() && user_spec("x:").is_err());
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(key_value("=x").is_err() && key_value("x").is_err());
    }

    #[test]
    fn host_ports() {
        assert_eq!(host_port("127.0.0.1:80"), Ok(("127.0.0.1".into(), 80)));
        assert_eq!(host_port("[::1]:80"), Ok(("::1".into(), 80)));
        assert_eq!(host_port("localhost:6379"), Ok(("localhost".into(), 6379)));
        for bad in ["localhost", ":80", "h:0", "h:70000", "a b:1"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        // Found by fuzzing (fuzz/fuzz_targets/parsers.rs): no empty host, no stray brackets.
        for bad in [
            "[:9000",
            "[]:80",
            "]:80",
            "[::1:80",
            "a]:80",
            "[a]b:80",
            "[::]:0",
            "127.0.0.1:0",
        ] {
            assert!(host_port(bad).is_err(), "{bad}: {:?}", host_port(bad));
        }
        assert_eq!(host_port("[localhost]:80"), Ok(("localhost".into(), 80)));
    }

    #[test]
    fn urls() {
        let u = url("http://127.0.0.1:9902/ready", &["http"]).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9902, "/ready")
        );
        let u = url("https://cp.example:5678", &["http", "https"]).unwrap();
        assert_eq!((u.port, u.path.as_str()), (5678, "/"));
        let u = url("http://[::1]/x?y=1", &["http"]).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 80, "/x?y=1")
        );
        assert_eq!(u.to_string(), "http://[::1]:80/x?y=1");
        for bad in [
            "127.0.0.1:5678",
            "ftp://x",
            "http://",
            "http://:80",
            "http://h:x/",
            "http://u@h/",
            // Found by fuzzing: brackets only around a whole IPv6 host.
            "http://x]:[y:80",
            "http://::1:80/",
            "http://[a]]:80/",
            "http://a[b:80/",
        ] {
            assert!(url(bad, &["http", "https"]).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| (k == "P").then(|| "1234".to_string());
        assert_eq!(expand_env("a:${P:-9902}/b", env), "a:1234/b");
        assert_eq!(expand_env("a:${Q:-9902}/b", env), "a:9902/b");
        assert_eq!(expand_env("${Q}x", env), "x");
        assert_eq!(expand_env("${unterminated", env), "${unterminated");
    }
}
