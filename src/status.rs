//! The status endpoint (`--status-listen`): `/ready`, `/live`, `/status`,
//! `/metrics` (Prometheus text, see [`crate::metrics`]).
//!
//! It is what a Nomad or Consul check or an external load balancer polls.
//! It holds at most [`MAX_CONNECTIONS`] connections, gives each a few
//! seconds to send its request, and never takes part in the shutdown: the
//! driver simply stops polling it when it exits.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::lifecycle::Phase;

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint reports; the driver keeps it current.
#[derive(Debug)]
pub struct State {
    pub phase: Phase,
    pub ready: bool,
    pub healthy: bool,
    pub app_pid: Option<i32>,
    pub proxy_pid: Option<i32>,
    pub proxy_restarts: usize,
    /// (probe description, last result, detail)
    pub probes: Vec<(String, Option<bool>, String)>,
    /// (phase, seconds since meshinit started) for every phase entered.
    pub phases: Vec<(Phase, f64)>,
    /// What `/metrics` reports beyond the fields above.
    pub metrics: crate::metrics::Metrics,
}

pub type Shared = Rc<RefCell<State>>;

impl State {
    pub fn new() -> State {
        State {
            phase: Phase::Starting,
            ready: false,
            healthy: false,
            app_pid: None,
            proxy_pid: None,
            proxy_restarts: 0,
            probes: Vec::new(),
            phases: vec![(Phase::Starting, 0.0)],
            metrics: crate::metrics::Metrics::default(),
        }
    }

    fn status_json(&self) -> String {
        json!({
            "phase": self.phase.as_str(),
            "ready": self.ready,
            "healthy": self.healthy,
            "pids": { "app": self.app_pid, "proxy": self.proxy_pid },
            "proxy_restarts": self.proxy_restarts,
            "probes": self.probes.iter().map(|(name, ok, detail)| json!({
                "probe": name, "passing": ok, "detail": detail,
            })).collect::<Vec<_>>(),
            "phases": self.phases.iter().map(|(p, t)| json!({
                "phase": p.as_str(), "at_seconds": (t * 1000.0).round() / 1000.0,
            })).collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// The answer for a request path: (status, content type, body).
    pub fn answer(&self, path: &str) -> (u16, &'static str, String) {
        match path {
            "/ready" if self.ready => (200, "text/plain", "ready\n".into()),
            "/ready" if self.phase == Phase::Running && !self.healthy => {
                (503, "text/plain", "running (app unhealthy)\n".into())
            }
            "/ready" => (503, "text/plain", format!("{}\n", self.phase.as_str())),
            "/live" => (200, "text/plain", "live\n".into()),
            "/status" => (200, "application/json", self.status_json()),
            "/metrics" => (
                200,
                crate::metrics::CONTENT_TYPE,
                crate::metrics::render(self),
            ),
            _ => (
                404,
                "text/plain",
                "not found; try /ready, /live, /status or /metrics\n".into(),
            ),
        }
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, state: Shared) {
    let active = Rc::new(RefCell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or similar: back off instead of
                // spinning on an accept that keeps failing.
                tracing::debug!(error = %e, "status endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if *active.borrow() >= MAX_CONNECTIONS {
            // Closing at once bounds what idle clients can hold.
            drop(stream);
            continue;
        }
        *active.borrow_mut() += 1;
        let state = state.clone();
        let active = active.clone();
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &state)).await;
            *active.borrow_mut() -= 1;
        });
    }
}

async fn handle(mut stream: TcpStream, state: &Shared) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, ctype, body) = if method == "GET" || method == "HEAD" {
        state.borrow().answer(path)
    } else {
        (405, "text/plain", "only GET\n".to_string())
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Binds the listener before anything starts, so a taken port is reported
/// as a startup error rather than discovered later.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_running_and_ready() {
        let mut s = State::new();
        assert_eq!(s.answer("/ready").0, 503);
        assert_eq!(s.answer("/ready").2, "starting\n");
        s.phase = Phase::Running;
        s.ready = true;
        s.healthy = true;
        assert_eq!(s.answer("/ready").0, 200);
        s.ready = false;
        s.healthy = false;
        assert_eq!(s.answer("/ready").2, "running (app unhealthy)\n");
        s.phase = Phase::Draining;
        assert_eq!(s.answer("/ready"), (503, "text/plain", "draining\n".into()));
        assert_eq!(s.answer("/live").0, 200);
        assert_eq!(s.answer("/nope").0, 404);
        let v: serde_json::Value = serde_json::from_str(&s.answer("/status").2).unwrap();
        assert_eq!(v["phase"], "draining");
    }
}
