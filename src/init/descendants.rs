//! Finding every process below meshinit, through /proc.
//!
//! After the app is gone, whatever it left behind (workers, daemons that
//! called setsid, grandchildren re-parented to meshinit) is found by walking
//! down from meshinit's pid and is stopped, so nothing outlives the service.
//!
//! The walk follows `/proc/<pid>/task/<tid>/children` (one small read per
//! process below meshinit) rather than reading every process on the host,
//! which on a busy host costs milliseconds per exit. Kernels built without
//! CONFIG_PROC_CHILDREN lack those files; then every `/proc/<pid>/stat` is
//! read instead.

use std::collections::HashMap;
use std::fs;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Live (non-zombie) descendants of `root`, any depth.
pub fn of(root: i32) -> Vec<i32> {
    with_zombies(root)
        .into_iter()
        .filter_map(|(pid, zombie)| (!zombie).then_some(pid))
        .collect()
}

/// Every descendant of `root`, any depth, zombies included (they stay in the
/// tree until reaped), each with whether it is one. (The integration tests
/// walk the tree their own way, so that they do not share this walk's bugs.)
pub(crate) fn with_zombies(root: i32) -> Vec<(i32, bool)> {
    match by_children_files(root) {
        Some(pids) => pids,
        None => by_full_scan(root),
    }
}

/// `None` when the kernel has no children files.
fn by_children_files(root: i32) -> Option<Vec<(i32, bool)>> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut first = true;
    while let Some(pid) = stack.pop() {
        let tasks = match fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(t) => t,
            // Gone meanwhile: nothing below it any more.
            Err(_) => continue,
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            match fs::read_to_string(&path) {
                Ok(list) => {
                    for child in list
                        .split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok())
                    {
                        out.push((child, is_zombie(child)));
                        stack.push(child);
                    }
                }
                Err(e)
                    if first
                        && e.kind() == std::io::ErrorKind::NotFound
                        && task.path().exists() =>
                {
                    return None;
                }
                Err(_) => {}
            }
            first = false;
        }
    }
    Some(out)
}

fn by_full_scan(root: i32) -> Vec<(i32, bool)> {
    let mut children: HashMap<i32, Vec<(i32, bool)>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((state, ppid)) = stat(pid) {
            children.entry(ppid).or_default().push((pid, state == 'Z'));
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &(child, zombie) in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            out.push((child, zombie));
            stack.push(child);
        }
    }
    out
}

/// State and parent from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    parse_stat(&fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// State and parent from the text of a `/proc/<pid>/stat` file. Read as
/// bytes: the command name is whatever the process set (any bytes but NUL,
/// not necessarily UTF-8), and may contain spaces and parentheses, so the
/// fields are read after the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<(char, i32)> {
    let close = text.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    if state.len() != 1 {
        return None;
    }
    let state = state.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn is_zombie(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state == 'Z')
}

/// Sends `sig` to each pid; processes that are already gone are skipped.
pub fn signal_all(pids: &[i32], sig: Signal) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn finds_children_and_grandchildren_both_ways() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let pid = child.id() as i32;
        // The shell starts its two sleeps asynchronously: look until both are there.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = of(me);
        while found
            .iter()
            .filter(|p| stat(**p).is_some_and(|(_, pp)| pp == pid))
            .count()
            < 2
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = of(me);
        }
        assert!(found.contains(&pid), "{found:?}");
        let pids = |v: Vec<(i32, bool)>| v.into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        let mut scanned = pids(by_full_scan(me));
        let mut walked = pids(by_children_files(me).expect("children files"));
        scanned.sort_unstable();
        walked.sort_unstable();
        let below_shell = |v: &[i32]| {
            v.iter()
                .filter(|p| stat(**p).is_some_and(|(_, pp)| pp == pid))
                .count()
        };
        assert_eq!(below_shell(&walked), 2, "{walked:?}");
        assert_eq!(below_shell(&scanned), 2, "{scanned:?}");
        for p in walked
            .iter()
            .filter(|p| stat(**p).is_some_and(|(_, pp)| pp == pid))
        {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn zombies_are_listed_with_zombies_only() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_zombie(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(with_zombies(me).contains(&(pid, true)));
        assert!(!of(me).contains(&pid));
        let _ = child.wait();
    }

    /// A process may name itself with bytes that are not UTF-8 (prctl
    /// PR_SET_NAME takes any bytes): it must still be found, or it would
    /// outlive the app.
    #[test]
    fn stat_lines_with_names_that_are_not_utf8_or_hold_parentheses() {
        assert_eq!(
            parse_stat(b"4242 (w\xff\xfeker) S 17 4242 4242 0 -1 4194560 0 0"),
            Some(('S', 17))
        );
        assert_eq!(parse_stat(b"7 (a) Z (b)) R 1 7 7 0"), Some(('R', 1)));
        assert_eq!(parse_stat(b"7 (a) S"), None);
        assert_eq!(parse_stat(b"7 a S 1"), None);
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn stat_reads_names_with_parentheses() {
        let (state, ppid) = stat(std::process::id() as i32).unwrap();
        assert!(state != 'Z' && ppid > 0);
    }
}
