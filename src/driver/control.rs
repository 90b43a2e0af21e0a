//! The control socket (`--control-socket`): how `meshinit ctl` reaches a
//! running meshinit. A Unix stream socket only (no TCP), mode 0600, and a
//! peer whose uid is not meshinit's effective uid is refused by its
//! SO_PEERCRED credentials, whatever the file's mode was opened to.
//!
//! The wire protocol is line-based text, one request per connection:
//!
//! - the client sends one line of at most [`REQUEST_LIMIT`] bytes, within
//!   [`REQUEST_TIMEOUT`]: `status`, `in`, `out` or `out --no-wait`;
//! - meshinit answers with any number of text lines (progress, the status),
//!   a line starting with `error: ` being an error for the client's stderr,
//!   and always ends with `exit N`: the status `meshinit ctl` exits with.
//!
//! An unknown or malformed request gets an `error:` line naming it and
//! `exit 64`, so a newer client talking to an older meshinit learns which
//! word it does not know. A connection closed without an `exit` line means
//! meshinit went away (the client says so, and exits 69).
//!
//! The socket only carries requests: what they do is the driver's
//! (`Driver::control`), which gets each one as a [`Request`] with a
//! [`Responder`] over a channel it owns.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::basics::escape::Escaped;
use crate::init::exit;
use crate::report::admission::{Admission, Slot};

/// Longest request line, its newline included.
pub const REQUEST_LIMIT: usize = 256;
/// Time a client has to send its request: a silent peer cannot hold a slot.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections held at once (an `out` that waits for the drain holds one
/// for as long as that takes); see [`serve`] for what happens beyond.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a client has to take a reply line before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests queued for the driver at once.
const QUEUE: usize = MAX_CONNECTIONS;

/// What an operator asks of the running meshinit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Take the instance out of the mesh; with `wait`, answer once its
    /// inbound side is idle.
    Out { wait: bool },
    /// Put it back.
    In,
    /// The phase and the rest of the status.
    Status,
}

impl Request {
    /// The request a line names; the error line for the client otherwise.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let text = std::str::from_utf8(line).map_err(|_| {
            format!(
                "unknown request '{}'",
                Escaped(&String::from_utf8_lossy(line))
            )
        })?;
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        match words.as_slice() {
            ["status"] => Ok(Request::Status),
            ["in"] => Ok(Request::In),
            ["out"] => Ok(Request::Out { wait: true }),
            ["out", "--no-wait"] => Ok(Request::Out { wait: false }),
            [] => Err("empty request; this meshinit knows: status, in, out [--no-wait]".into()),
            _ => Err(format!(
                "unknown request '{}'; this meshinit knows: status, in, out [--no-wait]",
                Escaped(text)
            )),
        }
    }

    /// The line the client sends.
    pub fn line(self) -> &'static str {
        match self {
            Request::Status => "status\n",
            Request::In => "in\n",
            Request::Out { wait: true } => "out\n",
            Request::Out { wait: false } => "out --no-wait\n",
        }
    }
}

/// One piece of an answer, from the driver to the connection.
#[derive(Debug)]
enum Reply {
    Line(String),
    Exit(i32),
}

/// The driver's handle on one request's answer: lines as they come, then
/// the exit status. Dropped without [`Responder::finish`], the client is
/// told that meshinit gave no answer.
#[derive(Debug)]
pub struct Responder {
    tx: mpsc::UnboundedSender<Reply>,
}

impl Responder {
    /// Sends one line (progress, a status field) to the client; a client
    /// gone already is no error of meshinit's.
    pub fn line(&self, text: impl Into<String>) {
        let _ = self.tx.send(Reply::Line(text.into()));
    }

    /// Ends the answer: `meshinit ctl` exits with `code`.
    pub fn finish(self, code: i32) {
        let _ = self.tx.send(Reply::Exit(code));
    }

    /// Ends the answer with an error line and `code`.
    pub fn fail(self, code: i32, message: &str) {
        self.line(format!("error: {message}"));
        self.finish(code);
    }
}

/// Why the socket cannot be set up; nothing has been started then.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "another meshinit listens on {0}: give this one another --control-socket, or stop that one"
    )]
    Live(PathBuf),
    #[error("{0} is not a socket; meshinit never deletes it: remove it yourself or choose another --control-socket")]
    NotSocket(PathBuf),
    #[error("cannot create the control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl BindError {
    /// meshinit's exit code: a path in use by another meshinit or by some
    /// file is a usage problem (64), anything else the system's (71).
    pub fn exit_code(&self) -> i32 {
        match self {
            BindError::Live(_) | BindError::NotSocket(_) => exit::EX_USAGE,
            BindError::Io { .. } => exit::EX_OSERR,
        }
    }
}

/// The socket file meshinit created: removed when dropped, if it is still
/// the one meshinit made (same device and inode), so a file someone put in
/// its place since is left alone.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    debug!(path = %self.path.display(), error = %e, "cannot remove the control socket");
                }
            }
            _ => {
                debug!(path = %self.path.display(), "the control socket is no longer ours; left alone")
            }
        }
    }
}

/// The bound socket, before the event loop runs (binding is done while
/// meshinit has one thread and no child, so the umask it sets for the bind
/// is seen by nothing else).
#[derive(Debug)]
pub struct ControlServer {
    listener: StdListener,
    file: SocketFile,
}

/// The running server: the driver's end of the request channel; the
/// socket file is removed and the accept loop stopped when it is dropped.
pub struct Control {
    pub requests: mpsc::Receiver<(Request, Responder)>,
    task: JoinHandle<()>,
    _file: SocketFile,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControlServer {
    /// Creates the socket at `path` (absolute, checked by the
    /// configuration): a socket left there by a meshinit that is gone
    /// (nobody accepts on it) is replaced; a live one is refused, and so is
    /// any other kind of file.
    pub fn bind(path: &Path) -> Result<ControlServer, BindError> {
        let io_err = |source| BindError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match StdStream::connect(path) {
                Ok(_) => return Err(BindError::Live(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    info!(path = %path.display(), "removing a stale control socket (its meshinit is gone)");
                    std::fs::remove_file(path).map_err(io_err)?;
                }
                Err(e) => return Err(io_err(e)),
            },
            Ok(_) => return Err(BindError::NotSocket(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        // The socket file is created by bind(2) with 0777 & ~umask: with
        // umask 077 it is 0600 from its first instant (fchmod on a socket's
        // descriptor would not reach the file). The umask is the process's:
        // it is given back before anything else runs, so the app still gets
        // the one meshinit inherited.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = StdListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(io_err)?;
        let m = std::fs::symlink_metadata(path).map_err(io_err)?;
        let file = SocketFile {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        };
        // Exactly 0600, whatever the umask left (077 gives 0600 already;
        // this says it once more, on the file meshinit just made).
        if m.permissions().mode() & 0o777 != 0o600 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err)?;
        }
        listener.set_nonblocking(true).map_err(io_err)?;
        Ok(ControlServer { listener, file })
    }

    /// Starts accepting, in a task of the current `LocalSet`.
    pub fn start(self) -> io::Result<Control> {
        let listener = UnixListener::from_std(self.listener)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        info!(path = %self.file.path.display(), "control socket listening");
        let task = tokio::task::spawn_local(serve(listener, tx));
        Ok(Control {
            requests: rx,
            task,
            _file: self.file,
        })
    }
}

/// Accepts until the task is aborted. Each connection runs in its own
/// task, so a slow or silent peer holds only its own slot; at
/// [`MAX_CONNECTIONS`] the one that has waited longest without sending its
/// request is closed to admit the newcomer (as the status endpoint does),
/// so silent peers can never lock an operator out. Only when every slot is
/// being answered (e.g. that many `out` waiting for idle) is the newcomer
/// told to try again.
async fn serve(listener: UnixListener, tx: mpsc::Sender<(Request, Responder)>) {
    let slots = Admission::new(MAX_CONNECTIONS);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                debug!(error = %e, "control socket accept failed");
                slots.accept_failed().await;
                continue;
            }
        };
        if !slots.make_room().await {
            // Not counted: it only writes two lines, bounded in time.
            tokio::task::spawn_local(refuse(
                stream,
                exit::EX_TEMPFAIL,
                format!(
                    "meshinit is answering {MAX_CONNECTIONS} control requests already; try again"
                ),
            ));
            continue;
        }
        let tx = tx.clone();
        slots.spawn(|slot| handle(stream, tx, slot));
    }
}

async fn refuse(mut stream: UnixStream, code: i32, message: String) {
    let text = format!("error: {message}\nexit {code}\n");
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(text.as_bytes())).await;
}

async fn handle(mut stream: UnixStream, tx: mpsc::Sender<(Request, Responder)>, mut slot: Slot) {
    // Checked before anything is read: a peer of another user learns only
    // that it is refused.
    let ours = nix::unistd::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == ours => {}
        Ok(cred) => {
            let pid = cred.pid().unwrap_or(0);
            warn!(
                uid = cred.uid(),
                pid, "control socket: refused a peer of another user"
            );
            refuse(
                stream,
                exit::EX_NOPERM,
                format!(
                    "refused: uid {} is not meshinit's uid {ours}; run meshinit ctl as that user",
                    cred.uid()
                ),
            )
            .await;
            return;
        }
        Err(e) => {
            warn!(error = %e, "control socket: cannot read the peer's credentials; refused");
            return;
        }
    }
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_line(&mut stream)).await {
        Err(_) => {
            debug!("control socket: no request within the timeout; closed");
            let message = format!("no request within {}s", REQUEST_TIMEOUT.as_secs());
            refuse(stream, exit::EX_USAGE, message).await;
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "control socket: cannot read the request");
            return;
        }
        Ok(Ok(Line::TooLong)) => {
            let message = format!("request longer than {REQUEST_LIMIT} bytes");
            refuse(stream, exit::EX_USAGE, message).await;
            return;
        }
        Ok(Ok(Line::Text(line))) => match Request::parse(&line) {
            Ok(r) => r,
            Err(message) => {
                debug!(request = %Escaped(&String::from_utf8_lossy(&line)), "control socket: unknown request");
                refuse(stream, exit::EX_USAGE, message).await;
                return;
            }
        },
    };
    slot.answering();
    debug!(?request, "control request");
    let (reply_tx, mut reply_rx) = mpsc::unbounded_channel();
    if tx
        .send((request, Responder { tx: reply_tx }))
        .await
        .is_err()
    {
        refuse(stream, exit::EX_UNAVAILABLE, "meshinit is exiting".into()).await;
        return;
    }
    while let Some(reply) = reply_rx.recv().await {
        let (text, done) = match reply {
            Reply::Line(l) => (format!("{l}\n"), false),
            Reply::Exit(code) => (format!("exit {code}\n"), true),
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(text.as_bytes())).await;
        if !matches!(written, Ok(Ok(()))) {
            debug!("control socket: the client does not take its answer; closed");
            return;
        }
        if done {
            return;
        }
    }
    // The driver dropped the Responder without an exit status.
    refuse(
        stream,
        exit::EX_UNAVAILABLE,
        "meshinit ended the request without an answer".into(),
    )
    .await;
}

enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// Reads up to the first newline (excluded), at most [`REQUEST_LIMIT`]
/// bytes; end of stream also ends the line.
async fn read_line(stream: &mut UnixStream) -> io::Result<Line> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; REQUEST_LIMIT];
    loop {
        // Never more than the limit in all: `buf` is shorter than it here.
        let room = REQUEST_LIMIT - buf.len();
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(Line::Text(buf));
        }
        let got = &chunk[..n];
        if let Some(i) = got.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&got[..i]);
            return Ok(Line::Text(buf));
        }
        buf.extend_from_slice(got);
        if buf.len() >= REQUEST_LIMIT {
            return Ok(Line::TooLong);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One connection handled on one end of a socket pair (a peer of
    /// meshinit's own uid); `driver` plays the driver's part.
    fn exchange(request: &[u8], driver: impl FnOnce(Request, Responder) + 'static) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let request = request.to_vec();
        local.block_on(&rt, async move {
            let (server, mut client) = UnixStream::pair().unwrap();
            let (tx, mut rx) = mpsc::channel(1);
            let slots = Admission::new(1);
            slots.spawn(|slot| handle(server, tx, slot));
            client.write_all(&request).await.unwrap();
            if let Some((req, responder)) = rx.recv().await {
                driver(req, responder);
            }
            let mut out = String::new();
            client.read_to_string(&mut out).await.unwrap();
            // The task ends after the peer's end of stream: its slot is
            // given back then.
            for _ in 0..1000 {
                if slots.open() == 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(slots.open(), 0);
            out
        })
    }

    #[test]
    fn an_answer_is_its_lines_then_the_exit_status() {
        let out = exchange(b"status\n", |req, r| {
            assert_eq!(req, Request::Status);
            r.line("phase: running");
            r.finish(0);
        });
        assert_eq!(out, "phase: running\nexit 0\n");
        let out = exchange(b"out --no-wait\n", |req, r| {
            assert_eq!(req, Request::Out { wait: false });
            r.fail(69, "not now");
        });
        assert_eq!(out, "error: not now\nexit 69\n");
    }

    /// A driver that drops the request without finishing it: the client is
    /// told so, with a status, instead of an unexplained end of stream.
    #[test]
    fn a_responder_dropped_unfinished_tells_the_client() {
        let out = exchange(b"in\n", |_, r| {
            r.line("working");
            drop(r);
        });
        assert_eq!(
            out,
            "working\nerror: meshinit ended the request without an answer\nexit 69\n"
        );
    }

    #[test]
    fn requests_parse_and_round_trip() {
        for r in [
            Request::Status,
            Request::In,
            Request::Out { wait: true },
            Request::Out { wait: false },
        ] {
            assert_eq!(Request::parse(r.line().trim_end().as_bytes()), Ok(r));
        }
        assert_eq!(
            Request::parse(b"  out   --no-wait "),
            Ok(Request::Out { wait: false })
        );
        let e = Request::parse(b"restart now").unwrap_err();
        assert!(e.starts_with("unknown request 'restart now'"), "{e}");
        assert!(Request::parse(b"\xff\xfe")
            .unwrap_err()
            .contains("unknown request"));
        assert!(Request::parse(b"")
            .unwrap_err()
            .starts_with("empty request"));
    }
}
