//! kuma-dp as a process: its pid, which start it is, the task that polls
//! its ready URL, and the work directory meshinit made for it.
//!
//! It decides nothing: when to start, stop or restart kuma-dp is the
//! lifecycle's call, and its exit status comes from the driver's reaper.

use std::time::Duration;

use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::ProxyConfig;
use crate::init::spawn;
use crate::mesh::workdir::{self, WorkDirError};

/// How often the ready URL is polled: kuma-dp answers 503 until Envoy is
/// live, and the service should be marked ready within ~100 ms of that.
const READY_POLL: Duration = Duration::from_millis(100);

pub(super) struct ProxyRunner {
    /// How kuma-dp is run; its work dir may move to a fresh name on the
    /// first start (and the arguments and admin socket with it).
    cfg: ProxyConfig,
    pid: Option<Pid>,
    /// Increases with each spawn, so that a readiness report from a
    /// previous kuma-dp is ignored.
    generation: u64,
    ready_tx: mpsc::UnboundedSender<u64>,
    ready_task: Option<JoinHandle<()>>,
    /// meshinit created the work directory (and removes it at exit).
    work_dir_made: bool,
}

impl ProxyRunner {
    /// Readiness reports go to `ready_tx` as the generation that answered.
    pub fn new(cfg: ProxyConfig, ready_tx: mpsc::UnboundedSender<u64>) -> ProxyRunner {
        ProxyRunner {
            cfg,
            pid: None,
            generation: 0,
            ready_tx,
            ready_task: None,
            work_dir_made: false,
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    pub fn pid(&self) -> Option<Pid> {
        self.pid
    }

    /// Which start of kuma-dp runs now (or ran last).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The readiness report is from the kuma-dp running now.
    pub fn is_current(&self, generation: u64) -> bool {
        generation == self.generation
    }

    /// Starts kuma-dp and polls its ready URL; `None` after logging why it
    /// could not be started (nothing is polled then: the lifecycle counts a
    /// failed start as a crash, retried with backoff, then given up).
    pub fn spawn(&mut self, since_app_healthy: &str) -> Option<Pid> {
        if let Err(e) = self.prepare_work_dir() {
            error!(error = %e, "cannot start kuma-dp");
            return None;
        }
        self.generation += 1;
        let spawned = spawn::spawn(spawn::Spec {
            program: self.cfg.kuma_dp.as_os_str(),
            args: &self.cfg.args,
            user: self.cfg.user.as_ref(),
            workdir: None,
            no_new_privs: false,
            foreground: false,
            output: None,
            is_app: false,
            // meshinit killed outright: kuma-dp gets SIGTERM from the kernel
            // and begins its own drain (Envoy fails its health checks,
            // drains, kuma-dp exits), the nearest thing to meshinit's
            // ordered stop that is left without meshinit.
            parent_death_signal: spawn::parent_death_signal(nix::sys::signal::Signal::SIGTERM),
        });
        match spawned {
            Ok(pid) => {
                info!(pid = pid.as_raw(), since_app_healthy = %since_app_healthy, "kuma-dp started");
                self.pid = Some(pid);
                self.watch_ready();
                Some(pid)
            }
            Err(e) => {
                error!(program = %self.cfg.kuma_dp.display(), error = %e, "cannot start kuma-dp");
                None
            }
        }
    }

    /// Makes the work directory (mkdtemp-like) before the first start;
    /// checks it is still meshinit's before a restart.
    fn prepare_work_dir(&mut self) -> Result<(), WorkDirError> {
        let proxy = &mut self.cfg;
        if !proxy.owns_work_dir {
            return Ok(());
        }
        if self.work_dir_made {
            return workdir::reuse(&proxy.work_dir, proxy.user.as_ref());
        }
        let dir = workdir::create_fresh(&proxy.work_dir, proxy.user.as_ref())?;
        self.work_dir_made = true;
        if dir != proxy.work_dir {
            // The planned name was taken: kuma-dp and the admin socket
            // follow the fresh one.
            warn!(taken = %proxy.work_dir.display(), dir = %dir.display(), "kuma-dp's work dir name already existed; using a fresh one");
            let old = format!("--work-dir={}", proxy.work_dir.display());
            for a in proxy.args.iter_mut().filter(|a| **a == old) {
                *a = format!("--work-dir={}", dir.display());
            }
            proxy.admin.socket = crate::mesh::envoy::admin_socket(&dir);
            proxy.work_dir = dir;
        }
        Ok(())
    }

    /// Polls the ready URL until it answers 200, then reports this start's
    /// generation once.
    fn watch_ready(&mut self) {
        self.stop_ready_watch();
        let url = self.cfg.ready_url.clone();
        let tx = self.ready_tx.clone();
        let generation = self.generation;
        self.ready_task = Some(tokio::task::spawn_local(async move {
            loop {
                if let Ok(200) = crate::health::http::get_status(&url, Duration::from_secs(1)).await
                {
                    let _ = tx.send(generation);
                    return;
                }
                tokio::time::sleep(READY_POLL).await;
            }
        }));
    }

    fn stop_ready_watch(&mut self) {
        if let Some(t) = self.ready_task.take() {
            t.abort();
        }
    }

    /// The reaper collected `pid`: true when it was kuma-dp, which is then
    /// no longer polled.
    pub fn reaped(&mut self, pid: Pid) -> bool {
        if self.pid != Some(pid) {
            return false;
        }
        self.pid = None;
        self.stop_ready_watch();
        true
    }

    /// At exit: only a directory meshinit created itself is removed.
    pub fn remove_work_dir(&self) {
        if self.work_dir_made {
            let _ = std::fs::remove_dir_all(&self.cfg.work_dir);
        }
    }
}
