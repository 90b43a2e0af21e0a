//! What the configuration asks of the machine: executables on PATH,
//! directories, users, the files it reads and the token file it must not
//! read. The sections go through [`Host`], so their typing can be tested
//! against a made-up machine, and the real one ([`System`]) sees only the
//! environment it is given.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

use super::parse::UserSpec;
pub(crate) use crate::basics::files::{read_regular, FileKind, Follow, ReadError};
pub(crate) use crate::init::path::{find_executable, NotRunnable};
use crate::init::user::{self, Identity};

/// The machine, as far as the configuration needs it.
pub trait Host {
    /// A variable of the environment meshinit was given.
    fn env(&self, name: &str) -> Option<String>;
    /// The executable `program` names: a path with a slash as given
    /// (relative to `cwd`), otherwise the first match on PATH.
    fn executable(&self, program: &str, cwd: Option<&Path>) -> Result<PathBuf, NotRunnable>;
    /// The user and group a `USER[:GROUP]` names.
    fn user(&self, spec: &UserSpec) -> Result<Identity, String>;
    /// A configuration file's text (the Dataplane file, the YAML file):
    /// a regular file only, at most [`MAX_FILE_BYTES`].
    fn read_file(&self, path: &str) -> Result<String, ReadError>;
    fn is_dir(&self, path: &Path) -> bool;
    /// What is at `path` itself, a symbolic link not followed; `None` when
    /// nothing is (or it cannot be looked at).
    fn file_kind(&self, path: &Path) -> Option<FileKind>;
    /// The directory meshinit was started in, against which relative paths
    /// it keeps are resolved (it moves to `/` once the app has started).
    fn cwd(&self) -> Option<PathBuf>;
    /// Checks the dataplane token file without reading it: a problem, or
    /// `Ok` with a warning worth giving.
    fn token_file(&self, path: &str, reader: Option<&Identity>) -> Result<Option<String>, String>;
    /// Why kuma-dp cannot use `dir` (given with `--work-dir`) as `user`.
    fn work_dir_problem(&self, dir: &Path, user: Option<&Identity>) -> Option<String>;
    /// Where temporary directories go (`TMPDIR`, else /tmp).
    fn temp_dir(&self) -> PathBuf;
    /// What `execve(2)` will allow the app: the kernel's limit and the
    /// environment the app inherits.
    fn exec_limits(&self) -> ExecLimits;
    /// The names of the `MESHINIT_*` variables in the environment given.
    fn meshinit_vars(&self) -> Vec<String>;
    /// What `iptables-save -t nat` prints in meshinit's network namespace
    /// (see [`System::nat_rules`]): each command run with its stdout, or
    /// why the rules cannot be read.
    fn nat_rules(&self) -> Result<Vec<NatTable>, String>;
    /// meshinit's effective uid (who the app and kuma-dp run as when no
    /// `--app-user` / `--kuma-dp-user` is given).
    fn euid(&self) -> u32;
    /// CAP_NET_ADMIN is in meshinit's effective set: reading and writing
    /// iptables rules needs it.
    fn net_admin(&self) -> bool;
}

/// One `iptables-save -t nat` run: the command and its stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatTable {
    pub command: String,
    pub text: String,
}

/// CAP_NET_ADMIN's bit in the capability sets (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;

/// Whether `CapEff:` in a `/proc/PID/status` text has CAP_NET_ADMIN.
pub(crate) fn cap_eff_has_net_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Whether an interface other than `lo` has an IPv6 address
/// (`/proc/net/if_inet6`: one line per address, the interface last);
/// `true` when the file cannot be read, so that nothing is skipped.
fn has_ipv6_beyond_loopback() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map_or(true, |text| if_inet6_beyond_loopback(&text))
}

pub(crate) fn if_inet6_beyond_loopback(text: &str) -> bool {
    text.lines()
        .filter_map(|l| l.split_whitespace().last())
        .any(|dev| dev != "lo")
}

/// Runs `tool -t nat` to its end and returns its stdout; stderr is read
/// only to say why it failed (nf_tables' save warns there about legacy
/// tables, which is no failure). Waited for by the reaper's `wait_for`:
/// nothing else runs yet.
fn iptables_save(tool: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let shown = tool.display();
    // Its status is needed: not reaped by the kernel behind meshinit's back.
    crate::init::signals::default_sigchld();
    let mut child = Command::new(tool)
        .args(["-t", "nat"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut out = Vec::new();
    let mut err = Vec::new();
    // stderr is a line or two: stdout first cannot fill its pipe and block.
    let read = child
        .stdout
        .take()
        .map(|mut o| o.read_to_end(&mut out))
        .transpose()
        .and_then(|_| {
            child
                .stderr
                .take()
                .map(|mut e| e.read_to_end(&mut err))
                .transpose()
        });
    // Dropping std's handle does not wait; the reaper does.
    drop(child);
    let status =
        crate::init::reaper::wait_for(pid).map_err(|e| format!("cannot wait for {shown}: {e}"))?;
    read.map_err(|e| format!("cannot read {shown}'s output: {e}"))?;
    match status {
        crate::init::exit::ExitStatus::Code(0) => Ok(String::from_utf8_lossy(&out).into_owned()),
        st => {
            let why = String::from_utf8_lossy(&err);
            let why = why
                .lines()
                .find(|l| !l.starts_with('#') && !l.trim().is_empty())
                .unwrap_or("");
            Err(format!(
                "{shown} -t nat exited with {}: {}",
                st.code(),
                crate::basics::escape::escape_control(why.trim())
            ))
        }
    }
}

/// The sizes `execve(2)` checks, as the kernel counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecLimits {
    /// The room for the program name, arguments, environment and their
    /// pointers: `sysconf(_SC_ARG_MAX)` (a quarter of the stack limit),
    /// which the kernel caps at 6 MiB (three quarters of `_STK_LIM`).
    pub arg_max: usize,
    /// Bytes of the inherited environment, `NAME=value` and its NUL each.
    pub env_bytes: usize,
    /// How many variables the inherited environment has.
    pub env_count: usize,
}

/// The kernel's cap on one argument or variable (`MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;
/// The kernel's cap on the whole (`_STK_LIM / 4 * 3`), whatever the stack limit.
const KERNEL_ARG_CAP: usize = 6 << 20;

impl ExecLimits {
    /// Why `execve` would refuse `argv` for `program` with E2BIG, counted as
    /// `fs/exec.c` does: every string with its NUL (the program's path is
    /// copied too), plus one pointer per argument and variable. Measured on
    /// Linux 6.x with ARG_MAX 2097152 and an empty environment: a total of
    /// exactly ARG_MAX executes, one byte more is E2BIG.
    pub fn problem(&self, program: &Path, argv: &[String]) -> Option<String> {
        if let Some((i, a)) = argv
            .iter()
            .enumerate()
            .find(|(_, a)| a.len() + 1 > MAX_ARG_STRLEN)
        {
            return Some(format!(
                "argument {i} is {} bytes; the kernel takes at most {MAX_ARG_STRLEN} bytes (128 KiB) in one argument",
                a.len()
            ));
        }
        let strings: usize = argv.iter().map(|a| a.len() + 1).sum::<usize>()
            + program.as_os_str().len()
            + 1
            + self.env_bytes;
        let pointers = (argv.len().max(1) + self.env_count) * std::mem::size_of::<usize>();
        let total = strings + pointers;
        (total > self.arg_max).then(|| {
            format!(
                "the {} arguments and the environment take {total} bytes, over the kernel's limit of {} bytes for a program's arguments and environment (ARG_MAX, a quarter of the stack size limit); shorten the argument list",
                argv.len(),
                self.arg_max
            )
        })
    }
}

/// The real machine, with the environment meshinit was given.
pub struct System<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Host for System<'_> {
    fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn executable(&self, program: &str, cwd: Option<&Path>) -> Result<PathBuf, NotRunnable> {
        find_executable(
            OsStr::new(program),
            cwd,
            self.env("PATH").map(OsString::from),
        )
    }

    fn user(&self, spec: &UserSpec) -> Result<Identity, String> {
        user::resolve(spec)
    }

    fn read_file(&self, path: &str) -> Result<String, ReadError> {
        read_regular(Path::new(path), Follow::Yes)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn file_kind(&self, path: &Path) -> Option<FileKind> {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| FileKind::of(m.file_type()))
    }

    fn cwd(&self) -> Option<PathBuf> {
        std::env::current_dir().ok()
    }

    fn token_file(&self, path: &str, reader: Option<&Identity>) -> Result<Option<String>, String> {
        let m = std::fs::metadata(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
        if !m.is_file() {
            return Err(format!("'{path}' is not a file"));
        }
        // Open it to prove it is readable; the content is never read into
        // meshinit's memory, let alone logged. Non-blocking, so a FIFO put in
        // its place since the check above cannot hang the check.
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| format!("cannot read '{path}': {e}"))?;
        if m.len() == 0 {
            return Err(format!(
                "'{path}' is empty; write the token issued by the control plane into it"
            ));
        }
        if let Some(id) = reader.filter(|id| !readable_by(&m, id)) {
            return Err(format!(
                "'{path}' is not readable by {} (--kuma-dp-user), who runs kuma-dp; chown or chmod it",
                id.name
            ));
        }
        Ok((m.permissions().mode() & 0o044 != 0).then(|| {
            format!(
                "dataplane token file {path} is readable by group or others (mode {:o}); chmod 600 it",
                m.mode() & 0o777
            )
        }))
    }

    fn work_dir_problem(&self, dir: &Path, user: Option<&Identity>) -> Option<String> {
        crate::mesh::workdir::check_given(dir, user)
    }

    fn exec_limits(&self) -> ExecLimits {
        // SAFETY: sysconf only reads a system value.
        let sys = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
        let arg_max = usize::try_from(sys)
            .ok()
            .filter(|n| *n > 0)
            .map_or(KERNEL_ARG_CAP, |n| n.min(KERNEL_ARG_CAP));
        // The app inherits meshinit's own environment (less a few variables
        // meshinit consumes, which only leaves more room).
        let (env_count, env_bytes) =
            environ().fold((0, 0), |(n, b), var| (n + 1, b + var.len() + 1));
        ExecLimits {
            arg_max,
            env_bytes,
            env_count,
        }
    }

    fn meshinit_vars(&self) -> Vec<String> {
        // Only those the given environment also has: a test or fuzz run
        // with a made-up environment sees none of the real process's.
        environ()
            .filter(|var| var.starts_with(b"MESHINIT_"))
            .filter_map(|var| {
                let name = var.split(|&b| b == b'=').next()?;
                std::str::from_utf8(name).ok().map(str::to_string)
            })
            .filter(|k| self.env(k).is_some())
            .collect()
    }

    /// The nat table of each family, IPv4 first: `iptables-nft-save`, then
    /// `iptables-legacy-save` unless nf_tables already holds Kuma's rules
    /// (kumactl writes one backend: legacy only when legacy already had
    /// rules, research-26 §2), else plain `iptables-save` when neither
    /// variant is installed. IPv6 (`ip6tables-*`) only when IPv4 holds no
    /// Kuma rule: kumactl writes IPv4 rules in every mode and the same
    /// exemptions for both families. So a namespace with Kuma's rules on
    /// nf_tables costs one process; without any rule, two (four with IPv6).
    /// Measured (iptables 1.8.9, `perf stat -r 200` in a namespace):
    /// `iptables-nft-save -t nat` 1.7 ms wall (0.96 ms CPU),
    /// `iptables-legacy-save -t nat` 1.8 ms (0.73 ms CPU); `meshinit check`
    /// with a Dataplane took about 2 ms more than with
    /// `--transparent-proxy off`, with the rules and without.
    ///
    /// kumactl writes IPv6 rules only when the namespace has an IPv6
    /// address beyond loopback (Kuma 2.14.3 `config/utils.go:217-232`):
    /// without one (`/proc/net/if_inet6`), the IPv6 tables are not read.
    ///
    /// Reading the legacy table makes the kernel create empty legacy
    /// tables (as kumactl's own probe does); nf_tables' save then warns
    /// about them on stderr, which is ignored.
    fn nat_rules(&self) -> Result<Vec<NatTable>, String> {
        if !self.net_admin() {
            return Err("meshinit lacks CAP_NET_ADMIN".into());
        }
        let find = |name: &str| self.executable(name, None).ok();
        let mut read = Vec::new();
        for family in ["iptables", "ip6tables"] {
            if family == "ip6tables" && !has_ipv6_beyond_loopback() {
                break;
            }
            let mut tools: Vec<PathBuf> = ["nft-save", "legacy-save"]
                .iter()
                .filter_map(|v| find(&format!("{family}-{v}")))
                .collect();
            if tools.is_empty() {
                tools.extend(find(&format!("{family}-save")));
            }
            for tool in tools {
                let text = iptables_save(&tool)?;
                let active = crate::mesh::tproxy::parse(&text).active();
                read.push(NatTable {
                    command: format!("{} -t nat", tool.display()),
                    text,
                });
                if active {
                    return Ok(read);
                }
            }
        }
        if read.is_empty() {
            return Err(
                "no iptables-save (iptables-nft-save, iptables-legacy-save) on PATH".into(),
            );
        }
        Ok(read)
    }

    fn euid(&self) -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn net_admin(&self) -> bool {
        std::fs::read_to_string("/proc/self/status").is_ok_and(|s| cap_eff_has_net_admin(&s))
    }

    fn temp_dir(&self) -> PathBuf {
        // As std::env::temp_dir, but from the given environment.
        self.env("TMPDIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
    }
}

/// This process's environment as `NAME=value` byte strings, read in place.
///
/// `std::env::vars_os` copies every name and value into two new strings;
/// two walks of it (the size check, the misspelt-variable lint) cost 70 k
/// instructions of every start, where counting bytes and matching a prefix
/// needs no copy.
fn environ() -> impl Iterator<Item = &'static [u8]> {
    // SAFETY: `environ` is the C library's NULL-terminated array of
    // NUL-terminated strings. meshinit reads it while it has one thread and
    // never changes its environment (the children's is set through
    // `Command`), so the array and its strings stay valid and unchanged.
    let mut p = unsafe { libc::environ } as *const *const libc::c_char;
    std::iter::from_fn(move || {
        if p.is_null() {
            return None;
        }
        // SAFETY: as above; `p` points into the array, before or at its NULL.
        let var = unsafe { *p };
        if var.is_null() {
            return None;
        }
        // SAFETY: as above.
        p = unsafe { p.add(1) };
        // SAFETY: every entry is a NUL-terminated string that lives as long
        // as the (unchanged) environment.
        Some(unsafe { std::ffi::CStr::from_ptr(var) }.to_bytes())
    })
}

/// Whether the file's owner, group and mode let `id` read it (what kuma-dp,
/// running as `--kuma-dp-user`, will need).
fn readable_by(m: &std::fs::Metadata, id: &Identity) -> bool {
    let mode = m.mode();
    if id.uid.is_root() {
        true
    } else if m.uid() == id.uid.as_raw() {
        mode & 0o400 != 0
    } else if m.gid() == id.gid.as_raw() || id.groups.iter().any(|g| g.as_raw() == m.gid()) {
        mode & 0o040 != 0
    } else {
        mode & 0o004 != 0
    }
}
