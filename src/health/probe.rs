//! Health probes: HTTP GET, TCP connect and commands, each with its own
//! period, timeout and thresholds.
//!
//! A probe task only measures and reports; whether the app counts as healthy
//! (each probe's thresholds, all must pass) and what follows from it is the
//! lifecycle's decision (`lifecycle::health`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use crate::basics::escape::Escaped;
use crate::health::{ProbeKind, ProbeSpec};
use crate::init::exit::ExitStatus;

/// Exec probes waiting for their exit status, keyed by pid. The reaper
/// fills them in, since it is the only one allowed to wait.
pub type ExecWaiters = Rc<RefCell<HashMap<i32, oneshot::Sender<ExitStatus>>>>;

/// One probe result, sent to the driver.
#[derive(Debug)]
pub struct Outcome {
    pub index: usize,
    pub ok: bool,
    pub detail: String,
}

/// Runs one probe forever, every `period`, sending every result.
pub async fn run(
    index: usize,
    spec: ProbeSpec,
    period: Duration,
    tx: mpsc::UnboundedSender<Outcome>,
    execs: ExecWaiters,
) {
    loop {
        let started = tokio::time::Instant::now();
        let (ok, detail) = match check(&spec, &execs).await {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        if tx.send(Outcome { index, ok, detail }).is_err() {
            return;
        }
        // `sleep` saturates where `started + period` could overflow.
        tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
    }
}

/// One check. `Ok` and `Err` carry a short description for logs.
pub async fn check(spec: &ProbeSpec, execs: &ExecWaiters) -> Result<String, String> {
    match &spec.kind {
        ProbeKind::Http(url) => {
            let code = crate::health::http::get_status(url, spec.timeout).await?;
            if (200..400).contains(&code) {
                Ok(format!("HTTP {code}"))
            } else {
                Err(format!("HTTP {code}"))
            }
        }
        ProbeKind::Tcp { host, port } => {
            match tokio::time::timeout(
                spec.timeout,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
            {
                Ok(Ok(_)) => Ok("connected".into()),
                Ok(Err(e)) => Err(format!("connect: {e}")),
                Err(_) => Err(format!(
                    "no connection within {}",
                    crate::basics::parse::fmt_duration(spec.timeout)
                )),
            }
        }
        ProbeKind::Shell(cmd) => {
            let args = ["-c".to_string(), cmd.clone()];
            exec(OsStr::new("/bin/sh"), &args, spec.timeout, execs).await
        }
        ProbeKind::Argv(argv) => exec(OsStr::new(&argv[0]), &argv[1..], spec.timeout, execs).await,
    }
}

/// Most output a probe keeps for the debug log.
const OUTPUT_LIMIT: usize = 4096;

async fn exec(
    program: &OsStr,
    args: &[String],
    timeout: Duration,
    execs: &ExecWaiters,
) -> Result<String, String> {
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let pid = crate::init::spawn::spawn(crate::init::spawn::Spec {
        program,
        args,
        user: None,
        workdir: None,
        no_new_privs: false,
        foreground: false,
        output: Some(write_end),
        is_app: false,
        // A probe is meshinit's own short-lived helper: it dies with it.
        parent_death_signal: crate::init::spawn::parent_death_signal(
            nix::sys::signal::Signal::SIGKILL,
        ),
    })
    .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    // Registered before the next await, so the reaper (same thread) cannot
    // collect the status before someone is waiting for it.
    let (tx, rx) = oneshot::channel();
    execs.borrow_mut().insert(pid.as_raw(), tx);

    let mut output = Vec::new();
    let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(read_end)
        .map_err(|e| format!("pipe: {e}"))?;
    let mut buf = [0u8; 1024];
    // The probe is over when the command exits (its status comes from the
    // reaper), not when its output ends: a child it left in the background
    // (`sleep 5 & exit 0`) keeps the pipe open long after. The output is
    // read meanwhile so that a talkative command never blocks on a full
    // pipe; once it ends (EOF), only the status is awaited.
    let mut rx = rx;
    let status = tokio::time::timeout(timeout, async {
        let mut eof = false;
        loop {
            tokio::select! {
                status = &mut rx => break status,
                n = reader.read(&mut buf), if !eof => match n {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => keep_output(&mut output, &buf[..n]),
                },
            }
        }
    })
    .await;
    // What the command wrote before it exited is in the pipe already.
    while let Ok(n) = reader.try_read(&mut buf) {
        if n == 0 {
            break;
        }
        keep_output(&mut output, &buf[..n]);
    }
    let text = String::from_utf8_lossy(&output).trim().to_string();
    if !text.is_empty() {
        // The command's own words: escaped in text logs, so that its
        // newlines and escape sequences cannot forge log lines.
        tracing::debug!(probe = %Escaped(&program.to_string_lossy()), output = %Escaped(&text), "probe output");
    }
    match status {
        Ok(Ok(ExitStatus::Code(0))) => Ok("exit 0".into()),
        Ok(Ok(st)) => Err(st.to_string()),
        Ok(Err(_)) => Err("probe status lost".into()),
        Err(_) => {
            // Kill its whole group: a shell probe's own children too. The
            // reaper still collects it; the waiter entry is dropped.
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            execs.borrow_mut().remove(&pid.as_raw());
            Err(format!(
                "killed after {}",
                crate::basics::parse::fmt_duration(timeout)
            ))
        }
    }
}

/// Keeps at most [`OUTPUT_LIMIT`] bytes of a probe's output.
fn keep_output(output: &mut Vec<u8>, read: &[u8]) {
    let room = OUTPUT_LIMIT.saturating_sub(output.len());
    output.extend_from_slice(&read[..read.len().min(room)]);
}
