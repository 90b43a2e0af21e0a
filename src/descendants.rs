//! Finding every process below meshinit, through /proc.
//!
//! After the app is gone, whatever it left behind (workers, daemons that
//! called setsid, grandchildren re-parented to meshinit) is found by walking
//! parent links from meshinit's pid and is stopped, so nothing outlives the
//! service.

use std::collections::HashMap;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Live (non-zombie) descendants of `root`, any depth.
pub fn of(root: i32) -> Vec<i32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut children: HashMap<i32, Vec<(i32, bool)>> = HashMap::new();
    for p in all.flatten() {
        if let Ok(stat) = p.stat() {
            children
                .entry(stat.ppid)
                .or_default()
                .push((stat.pid, stat.state == 'Z'));
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &(child, zombie) in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            if !zombie {
                out.push(child);
            }
            stack.push(child);
        }
    }
    out
}

/// Sends `sig` to each pid; processes that are already gone are skipped.
pub fn signal_all(pids: &[i32], sig: Signal) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}
