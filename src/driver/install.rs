//! The opt-in first step `--transparent-proxy-install`: `kumactl install
//! transparent-proxy ARGS` run to its end before the app, kuma-dp, the
//! status endpoint or the control socket exist.
//!
//! kumactl is waited for with the reaper's [`wait_within`] on its one pid,
//! killed past [`LIMIT`]: nothing else runs yet, so there is no other child
//! whose status the loop could miss, and no event to serve meanwhile
//! (measured, it takes 0.2-0.4 s). Stop signals stay blocked meanwhile (meshinit blocks
//! them before this step) and are handled once the loop starts, which then
//! stops before starting anything: kumactl is not interrupted halfway
//! through rewriting the tables. Its output (progress on stdout, `Error:`
//! on stderr) goes where meshinit's own does, as kuma-dp's does.
//!
//! [`wait_within`]: crate::init::reaper::wait_within

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::config::tproxy::Install;
use crate::init::exit::ExitStatus;
use crate::init::{reaper, spawn};

/// How long kumactl may take: it was measured at 0.2-0.4 s; one that hangs
/// (a lock held on the tables, a stuck netlink call) must not keep meshinit
/// from ever starting, or from answering its stop signals, which stay
/// blocked until this step ends.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs kumactl; how long it took, or why the step failed.
pub fn run(install: &Install) -> Result<Duration, String> {
    let argv = install.argv();
    let started = Instant::now();
    let pid = spawn::spawn(spawn::Spec {
        program: install.kumactl.as_os_str(),
        args: &argv,
        user: None,
        workdir: None,
        no_new_privs: false,
        foreground: false,
        output: None,
        is_app: false,
        // A meshinit killed outright takes kumactl with it.
        parent_death_signal: spawn::parent_death_signal(Signal::SIGKILL),
    })
    .map_err(|e| format!("cannot run {}: {e}", install.kumactl.display()))?;
    match reaper::wait_within(pid, LIMIT) {
        Ok(None) => Err(format!(
            "{} install transparent-proxy did not finish within {} s and was killed; the rules may be half written: run it by hand to see why",
            install.kumactl.display(),
            LIMIT.as_secs()
        )),
        Ok(Some(ExitStatus::Code(0))) => Ok(started.elapsed()),
        Ok(Some(st)) => Err(format!(
            "{} install transparent-proxy exited with {} (its output is above)",
            install.kumactl.display(),
            st.code()
        )),
        Err(e) => Err(format!("cannot wait for kumactl: {e}")),
    }
}
