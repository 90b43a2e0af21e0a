//! A minimal HTTP/1.1 client for probes, kuma-dp's ready URL and Envoy's
//! admin API (over TCP or the Unix socket kuma-dp creates).
//!
//! A request line, a Host header and the answer (status, and the body when
//! asked for) are all that is exchanged. This keeps an HTTP stack, and its
//! footprint, out of an init process.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::parse::Url;

/// Largest body read from Envoy's admin API.
const BODY_LIMIT: usize = 4 << 20;

/// GETs `url` and returns the status code, within `timeout` overall.
pub async fn get_status(url: &Url, timeout: Duration) -> Result<u16, String> {
    let host = host_header(&url.host, url.port);
    let work = async {
        let stream = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        exchange(stream, &host, &url.path, false).await
    };
    within(timeout, work).await.map(|(status, _)| status)
}

/// GETs `path` (with query) over a Unix socket and returns status and body.
pub async fn get_unix(
    socket: &Path,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let work = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connect {}: {e}", socket.display()))?;
        exchange(stream, "localhost", path, true).await
    };
    within(timeout, work).await
}

/// GETs `path` (with query) over TCP and returns status and body.
pub async fn get_tcp(
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let header = host_header(host, port);
    let work = async {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        exchange(stream, &header, path, true).await
    };
    within(timeout, work).await
}

async fn within<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            crate::parse::fmt_duration(timeout)
        )),
    }
}

fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Sends the request and reads the status line, and the whole body when
/// `want_body` (the server closes the connection: `Connection: close`).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
    want_body: bool,
) -> Result<(u16, String), String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: meshinit\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(if want_body { 16 << 10 } else { 256 });
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if !want_body && buf.contains(&b'\n') {
            break;
        }
        if buf.len() > BODY_LIMIT {
            return Err("answer too large".into());
        }
    }
    let status = parse_status_line(&buf)?;
    let body = if want_body {
        let text = String::from_utf8_lossy(&buf);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if is_chunked(&text) {
            dechunk(body)
        } else {
            body.to_string()
        }
    } else {
        String::new()
    };
    Ok((status, body))
}

fn is_chunked(text: &str) -> bool {
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    })
}

/// Decodes a chunked body (Envoy's admin API answers large bodies this way).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(head: &[u8]) -> Result<u16, String> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("not an HTTP answer: {:?}", text.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\nx"),
            Ok(503)
        );
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status_line(b"").is_err());
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert!(is_chunked(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!is_chunked(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        ));
    }
}
