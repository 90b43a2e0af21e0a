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

use crate::basics::parse::Url;

/// Largest body read from Envoy's admin API.
const BODY_LIMIT: usize = 4 << 20;

/// GETs `url` and returns the status code, within `timeout` overall.
pub async fn get_status(url: &Url, timeout: Duration) -> Result<u16, String> {
    let host = host_header(&url.host, url.port);
    let work = async {
        let stream = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        exchange(stream, &host, "GET", &url.path, false).await
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
        exchange(stream, "localhost", "GET", path, true).await
    };
    within(timeout, work).await
}

/// POSTs `path` with an empty body over a Unix socket and returns status
/// and body: `connect` bounds the connection, `total` the whole exchange
/// (as kuma-dp's own admin client: 5 s and 10 s).
pub async fn post_unix(
    socket: &Path,
    path: &str,
    connect: Duration,
    total: Duration,
) -> Result<(u16, String), String> {
    let work = async {
        let stream = within(connect, async {
            UnixStream::connect(socket)
                .await
                .map_err(|e| format!("connect {}: {e}", socket.display()))
        })
        .await?;
        exchange(stream, "localhost", "POST", path, true).await
    };
    within(total, work).await
}

/// As [`post_unix`], over TCP.
pub async fn post_tcp(
    host: &str,
    port: u16,
    path: &str,
    connect: Duration,
    total: Duration,
) -> Result<(u16, String), String> {
    let header = host_header(host, port);
    let work = async {
        let stream = within(connect, async {
            TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("connect: {e}"))
        })
        .await?;
        exchange(stream, &header, "POST", path, true).await
    };
    within(total, work).await
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
        exchange(stream, &header, "GET", path, true).await
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
            crate::basics::parse::fmt_duration(timeout)
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
    method: &str,
    path: &str,
    want_body: bool,
) -> Result<(u16, String), String> {
    // A POST carries an empty body, announced (Envoy's admin API takes
    // mutations as POST only).
    let length = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: meshinit\r\nAccept: */*\r\n{length}Connection: close\r\n\r\n");
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
    parse_response(&buf, want_body)
}

/// Reads an answer already received in full: the status code, and the body
/// (de-chunked, then decoded as UTF-8 with invalid sequences replaced) when
/// `want_body`. Works on bytes throughout: the peer's framing (chunk sizes,
/// the end of the head) counts bytes, and a chunk may end in the middle of
/// a multi-byte character.
pub fn parse_response(buf: &[u8], want_body: bool) -> Result<(u16, String), String> {
    let status = parse_status_line(buf)?;
    if !want_body {
        return Ok((status, String::new()));
    }
    let (head, body) = match find(buf, b"\r\n\r\n") {
        Some(at) => (&buf[..at], &buf[at + 4..]),
        None => (buf, &[][..]),
    };
    let body = if is_chunked(head) {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_chunked(head: &[u8]) -> bool {
    head.split(|b| *b == b'\n').any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with(b"transfer-encoding:") && find(&l, b"chunked").is_some()
    })
}

/// Decodes a chunked body (Envoy's admin API answers large bodies this way).
/// Stops at the last chunk, or at the first malformed or truncated one.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(body, b"\r\n") {
        // `SIZE[;extension]`, in hexadecimal.
        let size = body[..eol].split(|b| *b == b';').next().unwrap_or_default();
        let Some(n) = std::str::from_utf8(size)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            break;
        };
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
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
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
        assert_eq!(dechunk(b"3;name=x\r\nabc\r\n0\r\n\r\n"), b"abc");
        assert!(is_chunked(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!is_chunked(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        ));
    }

    /// "é" is two bytes in UTF-8; here each travels in its own chunk. The
    /// reader used to decode the text first and then slice it at the chunk
    /// sizes, which panicked inside the replacement character.
    const SPLIT_CHARACTER: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n\xc3\r\n1\r\n\xa9\r\n0\r\n\r\n";

    #[test]
    fn a_chunk_ending_inside_a_character_is_joined_with_the_next() {
        assert_eq!(
            parse_response(SPLIT_CHARACTER, true),
            Ok((200, "\u{e9}".to_string()))
        );
    }

    /// The same answer from a real server, read through the client Envoy's
    /// stats are read with: meshinit must get the text, not abort.
    #[test]
    fn a_server_splitting_a_character_across_chunks_is_read() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = conn.read(&mut req);
            conn.write_all(SPLIT_CHARACTER).unwrap();
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(get_tcp("127.0.0.1", port, "/stats", Duration::from_secs(5)));
        server.join().unwrap();
        assert_eq!(got, Ok((200, "\u{e9}".to_string())));
    }

    #[test]
    fn malformed_answers_are_errors_or_empty_bodies_never_panics() {
        assert!(parse_response(b"", true).is_err());
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab",
                true
            ),
            Ok((200, String::new()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 204 No Content", true),
            Ok((204, String::new()))
        );
    }
}
