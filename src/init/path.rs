//! Finding the program to run on PATH, as a shell does: one resolver for
//! `check` (which reports what it finds) and the spawn (which runs it).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The search path when PATH is unset, as the shells use.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

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

/// Finds an executable as a shell does: a path with a slash as given
/// (relative to `cwd`), otherwise the first executable regular file of that
/// name on `path` (PATH; the shells' default when unset). This is the one
/// resolver: `check` uses it to report, and the spawn (`init::fds`) to find
/// what it executes, so both agree on what runs.
///
/// As bash: a directory on PATH with the program's name is passed over (a
/// name found only as directories is "not found", 127), a regular file
/// without the execute bit is 126, and an empty name is not found.
pub fn find_executable(
    program: &OsStr,
    cwd: Option<&Path>,
    path: Option<OsString>,
) -> Result<PathBuf, NotRunnable> {
    let shown = program.to_string_lossy();
    if program.is_empty() {
        return Err(NotRunnable::Missing(
            "'' is empty: command not found".to_string(),
        ));
    }
    let is_exec = |p: &Path| {
        p.metadata().is_ok_and(|m| m.is_file())
            && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
    };
    if program.as_bytes().contains(&b'/') {
        let p = match cwd {
            Some(dir) if Path::new(program).is_relative() => dir.join(program),
            _ => PathBuf::from(program),
        };
        return match p.metadata() {
            Err(_) => Err(NotRunnable::Missing(format!("'{shown}' does not exist"))),
            Ok(m) if !m.is_file() => Err(NotRunnable::NotExecutable(format!(
                "'{shown}' is not a file"
            ))),
            Ok(_) if !is_exec(&p) => Err(NotRunnable::NotExecutable(format!(
                "'{shown}' is not executable (chmod +x it)"
            ))),
            Ok(_) => Ok(p),
        };
    }
    let path = path.unwrap_or_else(|| DEFAULT_PATH.into());
    let candidates: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .collect();
    if let Some(p) = candidates.iter().find(|p| is_exec(p)) {
        return Ok(p.clone());
    }
    // As bash: a regular file found but not runnable is 126; nothing, or
    // only directories, 127.
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Err(NotRunnable::NotExecutable(format!(
            "'{shown}' was found on PATH as {} but is not an executable file",
            p.display()
        ))),
        None => Err(NotRunnable::Missing(format!(
            "'{shown}' was not found on PATH"
        ))),
    }
}
