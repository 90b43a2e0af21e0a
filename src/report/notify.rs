//! systemd's notify protocol (`Type=notify`), spoken directly over
//! NOTIFY_SOCKET: READY=1 once the service is running, STATUS= on each
//! phase, STOPPING=1 and EXTEND_TIMEOUT_USEC= during a shutdown, WATCHDOG=1.
//!
//! A send never blocks: the socket is non-blocking, so a service manager
//! that stops reading (its queue full) or is gone costs a dropped message,
//! counted by the caller, never a stalled event loop. systemd's own
//! sd_notify(3) sends with MSG_DONTWAIT for the same reason. A dropped
//! WATCHDOG=1 is followed by the next one half an interval later; a
//! dropped READY=1 or STATUS= is not sent again (a manager that cannot
//! take it would not take it later either, and retrying would need a queue).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager; every method is a no-op when
/// meshinit does not run under one.
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads NOTIFY_SOCKET (a path, or `@name` for the abstract namespace)
    /// and WATCHDOG_USEC/WATCHDOG_PID from `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Notifier {
        let socket = env("NOTIFY_SOCKET").and_then(|path| {
            let addr = match path.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
                None => SocketAddr::from_pathname(&path).ok()?,
            };
            let sock = UnixDatagram::unbound().ok()?;
            sock.set_nonblocking(true).ok()?;
            Some((sock, addr))
        });
        let pid_matches = env("WATCHDOG_PID")
            .map(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()))
            .unwrap_or(true);
        let watchdog = env("WATCHDOG_USEC")
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_matches && socket.is_some())
            // Ping at half the interval, as sd_watchdog_enabled(3) advises.
            .map(|u| Duration::from_micros(u / 2));
        Notifier { socket, watchdog }
    }

    /// How often to send WATCHDOG=1, when systemd asked for it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one datagram of newline-separated assignments without ever
    /// waiting; `false` when it could not be sent (and so was dropped).
    pub fn send(&self, message: &str) -> bool {
        let Some((sock, addr)) = &self.socket else {
            return true;
        };
        match sock.send_to_addr(message.as_bytes(), addr) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "sd_notify message dropped");
                false
            }
        }
    }
}

/// EXTEND_TIMEOUT_USEC value for a remaining shutdown time, with a second
/// of margin so systemd does not fire just before meshinit finishes.
pub fn extend_timeout(remaining: Duration) -> String {
    format!(
        "EXTEND_TIMEOUT_USEC={}",
        remaining.saturating_add(Duration::from_secs(1)).as_micros()
    )
}
