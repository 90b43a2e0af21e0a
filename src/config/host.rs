//! What the configuration asks of the machine: executables on PATH,
//! directories, users, the files it reads and the token file it must not
//! read. The sections go through [`Host`], so their typing can be tested
//! against a made-up machine, and the real one ([`System`]) sees only the
//! environment it is given.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::parse::UserSpec;
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
    fn read_to_string(&self, path: &str) -> std::io::Result<String>;
    fn is_dir(&self, path: &Path) -> bool;
    /// Checks the dataplane token file without reading it: a problem, or
    /// `Ok` with a warning worth giving.
    fn token_file(&self, path: &str, reader: Option<&Identity>) -> Result<Option<String>, String>;
    /// Why kuma-dp cannot use `dir` (given with `--work-dir`) as `user`.
    fn work_dir_problem(&self, dir: &Path, user: Option<&Identity>) -> Option<String>;
    /// Where temporary directories go (`TMPDIR`, else /tmp).
    fn temp_dir(&self) -> PathBuf;
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
        find_executable(program, cwd, self.env("PATH"))
    }

    fn user(&self, spec: &UserSpec) -> Result<Identity, String> {
        user::resolve(spec)
    }

    fn read_to_string(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn token_file(&self, path: &str, reader: Option<&Identity>) -> Result<Option<String>, String> {
        let m = std::fs::metadata(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
        if !m.is_file() {
            return Err(format!("'{path}' is not a file"));
        }
        // Open it to prove it is readable; the content is never read into
        // meshinit's memory, let alone logged.
        std::fs::File::open(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
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

    fn temp_dir(&self) -> PathBuf {
        // As std::env::temp_dir, but from the given environment.
        self.env("TMPDIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
    }
}

/// Why a command cannot be run, with the exit code a shell (and tini,
/// and `docker run`) reports for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRunnable {
    /// Nothing by that name: 127.
    #[error("{0}")]
    Missing(String),
    /// It exists but cannot be executed (a directory, no execute bit): 126.
    #[error("{0}")]
    NotExecutable(String),
}

impl NotRunnable {
    /// 127 for a command that does not exist, 126 for one that cannot be executed.
    pub fn exit_code(&self) -> i32 {
        match self {
            NotRunnable::Missing(_) => crate::init::exit::EX_NOT_FOUND,
            NotRunnable::NotExecutable(_) => crate::init::exit::EX_NOT_EXECUTABLE,
        }
    }
}

/// Finds an executable: a path with a slash as given (relative to `cwd`),
/// otherwise the first match on `path` (PATH).
fn find_executable(
    program: &str,
    cwd: Option<&Path>,
    path: Option<String>,
) -> Result<PathBuf, NotRunnable> {
    let is_exec = |p: &Path| {
        p.metadata().is_ok_and(|m| m.is_file())
            && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
    };
    if program.contains('/') {
        let p = match cwd {
            Some(dir) if Path::new(program).is_relative() => dir.join(program),
            _ => PathBuf::from(program),
        };
        return match p.metadata() {
            Err(_) => Err(NotRunnable::Missing(format!("'{program}' does not exist"))),
            Ok(m) if !m.is_file() => Err(NotRunnable::NotExecutable(format!(
                "'{program}' is not a file"
            ))),
            Ok(_) if !is_exec(&p) => Err(NotRunnable::NotExecutable(format!(
                "'{program}' is not executable (chmod +x it)"
            ))),
            Ok(_) => Ok(p),
        };
    }
    let path = path.unwrap_or_else(|| crate::init::fds::DEFAULT_PATH.into());
    let candidates: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .collect();
    if let Some(p) = candidates.iter().find(|p| is_exec(p)) {
        return Ok(p.clone());
    }
    // As a shell: found, but not runnable, is 126; not found at all, 127.
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => Err(NotRunnable::NotExecutable(format!(
            "'{program}' was found on PATH as {} but is not an executable file",
            p.display()
        ))),
        None => Err(NotRunnable::Missing(format!(
            "'{program}' was not found on PATH"
        ))),
    }
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
