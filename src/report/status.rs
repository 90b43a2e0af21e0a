//! The status endpoint (`--status-listen`): `/ready`, `/live`, `/status`,
//! `/metrics` (Prometheus text, see `crate::report::metrics`).
//!
//! It is what a Nomad or Consul check or an external load balancer polls.
//! Clients that connect and send nothing must never silence it (a monitoring
//! agent gone wrong could otherwise get the instance killed): each
//! connection has `--status-request-timeout` to send its request, at most
//! [`MAX_CONNECTIONS`] are held, and when that many are open the oldest one
//! still waiting for its request is closed to admit the newcomer. The
//! endpoint never takes part in the shutdown: the driver simply stops
//! polling it when it exits.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::report::admission::{Admission, Slot};
use crate::report::snapshot::{Shared, Snapshot};

/// Connections held at once. Well below the usual 1024 open-file soft
/// limit, so meshinit needs no higher one; at the cap the oldest idle
/// connection makes room (see [`serve`]).
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read; the rest of a longer one is ignored.
const REQUEST_LIMIT: usize = 1024;

/// `/status`: the snapshot as JSON.
fn status_json(st: &Snapshot) -> String {
    json!({
        "phase": st.phase.as_str(),
        "ready": st.ready,
        "healthy": st.healthy,
        "pids": { "app": st.app_pid, "proxy": st.proxy_pid },
        "proxy_restarts": st.proxy_restarts,
        // Without kuma-dp there is no mesh: `null`.
        "mesh": st.mesh_member.map(|member| json!({
            "member": member,
            "out_reason": (!member).then(|| st.out_reasons.as_str()),
        })),
        "probes": st.probes.iter().map(|p| json!({
            "probe": p.name, "passing": p.passing, "detail": p.detail,
        })).collect::<Vec<_>>(),
        "phases": st.phases.iter().map(|p| json!({
            "phase": p.phase.as_str(), "at_seconds": (p.at_seconds * 1000.0).round() / 1000.0,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// `meshinit ctl status`: the snapshot as `key: value` lines, the same
/// facts as `/status` for a person at a terminal. `has_proxy`: meshinit
/// manages kuma-dp (a Dataplane was given).
pub fn text(st: &Snapshot, has_proxy: bool) -> Vec<String> {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let pid = |p: Option<i32>| p.map_or_else(|| "not running".to_string(), |p| format!("pid {p}"));
    let mut lines = vec![
        format!("phase: {}", st.phase.as_str()),
        format!("ready: {} ({})", yes_no(st.ready), st.ready_text),
        format!("healthy: {}", yes_no(st.healthy)),
        format!("app: {}", pid(st.app_pid)),
    ];
    lines.push(if has_proxy {
        format!(
            "kuma-dp: {}, {} restarts counted",
            pid(st.proxy_pid),
            st.proxy_restarts
        )
    } else {
        "kuma-dp: not managed (no Dataplane given)".to_string()
    });
    match st.mesh_member {
        Some(true) => lines.push("mesh: in".to_string()),
        Some(false) => lines.push(format!("mesh: out ({})", st.out_reasons.as_str())),
        None => {}
    }
    for p in &st.probes {
        let standing = match p.passing {
            Some(true) => "passing",
            Some(false) => "failing",
            None => "no result yet",
        };
        lines.push(format!("probe {}: {standing}", p.name));
    }
    lines
}

/// The answer for a request path: (status, content type, body).
pub fn answer(st: &Snapshot, path: &str) -> (u16, &'static str, String) {
    match path {
        "/ready" => (
            if st.ready { 200 } else { 503 },
            "text/plain",
            format!("{}\n", st.ready_text),
        ),
        "/live" => (200, "text/plain", "live\n".into()),
        "/status" => (200, "application/json", status_json(st)),
        "/metrics" => (
            200,
            crate::report::metrics::CONTENT_TYPE,
            crate::report::metrics::render(st),
        ),
        _ => (
            404,
            "text/plain",
            "not found; try /ready, /live, /status or /metrics\n".into(),
        ),
    }
}

/// Serves until the task is dropped. Each client has `request_timeout` to
/// send its request (a health checker sends it at once; anything slower is
/// idling on a slot).
pub async fn serve(listener: TcpListener, state: Shared, request_timeout: Duration) {
    let slots = Admission::new(MAX_CONNECTIONS);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "status endpoint accept failed");
                slots.accept_failed().await;
                continue;
            }
        };
        if !slots.make_room().await {
            // Every slot is answering a request: the newcomer is closed
            // rather than queued.
            continue;
        }
        let state = state.clone();
        slots.spawn(|slot| handle(stream, state, slot, request_timeout));
    }
}

async fn handle(mut stream: TcpStream, state: Shared, mut slot: Slot, request_timeout: Duration) {
    let mut buf = [0u8; REQUEST_LIMIT];
    let Ok(Ok(len)) = tokio::time::timeout(request_timeout, read_head(&mut stream, &mut buf)).await
    else {
        return;
    };
    if len == 0 {
        return;
    }
    slot.answering();
    let response = respond(&state.borrow(), &buf[..len]);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads until the end of the request head, the end of the stream, or a
/// full buffer; returns the length read.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut len = 0;
    while len < buf.len() && !head_complete(&buf[..len]) {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    Ok(len)
}

/// Whether `bytes` hold a whole request head: its empty line has arrived.
/// Lines may end in CRLF or in a bare LF, which RFC 9112 (2.2) lets a
/// server accept and which `printf 'GET /ready HTTP/1.0\n\n' | nc` and
/// many health checkers send; waiting for CRLF CRLF left those unanswered.
pub fn head_complete(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The target without its query string.
    pub path: String,
}

/// The method and path of a request head (bytes from any client: invalid
/// UTF-8 is replaced, a missing part is empty).
pub fn parse_request(head: &[u8]) -> Request {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_string();
    Request { method, path }
}

/// The whole HTTP answer to a request head.
pub fn respond(state: &Snapshot, head: &[u8]) -> Vec<u8> {
    let req = parse_request(head);
    let (code, ctype, body) = if req.method == "GET" || req.method == "HEAD" {
        answer(state, &req.path)
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
    if req.method != "HEAD" {
        response.push_str(&body);
    }
    response.into_bytes()
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
    use crate::lifecycle::Phase;

    /// What `/ready` says is the lifecycle's (`ready_text_says_why_not`);
    /// the endpoint answers 200 only when ready.
    #[test]
    fn ready_only_while_running_and_ready() {
        let mut s = Snapshot::new();
        assert_eq!(answer(&s, "/ready").0, 503);
        assert_eq!(answer(&s, "/ready").2, "starting\n");
        s.phase = Phase::Running;
        s.ready = true;
        s.ready_text = "ready";
        s.healthy = true;
        assert_eq!(answer(&s, "/ready"), (200, "text/plain", "ready\n".into()));
        s.ready = false;
        s.ready_text = "running (app unhealthy)";
        s.healthy = false;
        assert_eq!(answer(&s, "/ready").2, "running (app unhealthy)\n");
        assert_eq!(answer(&s, "/ready").0, 503);
        s.phase = Phase::Draining;
        s.ready_text = "draining";
        assert_eq!(
            answer(&s, "/ready"),
            (503, "text/plain", "draining\n".into())
        );
        assert_eq!(answer(&s, "/live").0, 200);
        assert_eq!(answer(&s, "/nope").0, 404);
        let v: serde_json::Value = serde_json::from_str(&answer(&s, "/status").2).unwrap();
        assert_eq!(v["phase"], "draining");
    }

    #[test]
    fn a_head_ends_at_its_empty_line_with_crlf_or_bare_lf() {
        assert!(head_complete(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head_complete(b"GET /ready HTTP/1.0\n\n"));
        assert!(head_complete(b"GET /ready HTTP/1.0\nHost: x\n\n"));
        assert!(head_complete(b"GET /ready HTTP/1.0\r\nHost: x\n\r\n"));
        assert!(!head_complete(b"GET /ready HTTP/1.0\n"));
        assert!(!head_complete(b"GET /ready HTTP/1.1\r\nHost: x\r\n"));
        let r = parse_request(b"GET /ready HTTP/1.0\n\n");
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/ready"));
    }

    #[test]
    fn requests_are_read_from_any_bytes() {
        let r = parse_request(b"GET /ready?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/ready"));
        let r = parse_request(b"G\xffT /\xc3 HTTP/1.1");
        assert_eq!(r.path, "/\u{fffd}");
        assert_eq!(parse_request(b"").method, "");
        let s = Snapshot::new();
        let answer = respond(&s, b"HEAD /live HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(answer.ends_with(b"\r\n\r\n"), "HEAD has no body");
        assert!(respond(&s, b"POST /live HTTP/1.1\r\n\r\n").starts_with(b"HTTP/1.1 405 "));
    }
}
