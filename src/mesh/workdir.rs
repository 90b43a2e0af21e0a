//! kuma-dp's work directory: where it writes Envoy's bootstrap and where
//! Envoy's admin socket lives (read by meshinit for the idle drain).
//!
//! Whoever controls that directory controls what Envoy runs with and what
//! meshinit reads back, so a directory made by meshinit is created the way
//! mkdtemp(3) does (a fresh name, created exclusively, mode 0700, never one
//! that was already there), and a directory given with `--kuma-dp-arg
//! --work-dir` that already exists must belong to the user kuma-dp runs as
//! (or to root).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::Uid;

use crate::init::user::Identity;

/// Attempts at a fresh name before giving up (mkdtemp tries many more, but
/// with 64 random bits a second collision means someone is guessing).
const ATTEMPTS: usize = 8;

/// Why kuma-dp's work directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    #[error("cannot create kuma-dp's work directory '{}': {source}", dir.display())]
    Create { dir: PathBuf, source: io::Error },
    #[error("'{}' is not a directory meshinit made for kuma-dp ({why}); it was replaced or tampered with, kuma-dp is not started with it", dir.display())]
    NotOurs { dir: PathBuf, why: String },
    #[error("no fresh name for kuma-dp's work directory after {ATTEMPTS} attempts (every name taken) in '{}'", parent.display())]
    Exhausted { parent: PathBuf },
}

/// The uid kuma-dp runs as.
pub fn owner_uid(user: Option<&Identity>) -> Uid {
    user.map_or_else(Uid::effective, |id| id.uid)
}

/// Creates a fresh directory for kuma-dp as mkdtemp(3) does: `first` if it
/// does not exist yet, else `<prefix>-<random>` names beside it until one
/// is new, never reusing one that exists. It is mode 0700 and owned by
/// kuma-dp's user. Returns the directory created.
pub fn create_fresh(first: &Path, user: Option<&Identity>) -> Result<PathBuf, WorkDirError> {
    let parent = first.parent().unwrap_or(Path::new("/")).to_path_buf();
    let stem = first
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "meshinit-kuma-dp".into());
    let mut dir = first.to_path_buf();
    for _ in 0..ATTEMPTS {
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                secure(&dir, user).map_err(|source| WorkDirError::Create {
                    dir: dir.clone(),
                    source,
                })?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Someone made it first (or guessed the name): never use it.
                dir = parent.join(format!("{stem}-{:016x}", random_u64()));
            }
            Err(source) => return Err(WorkDirError::Create { dir, source }),
        }
    }
    Err(WorkDirError::Exhausted { parent })
}

/// Before a restarted kuma-dp reuses the directory meshinit created: it
/// must still be that directory (a real directory, kuma-dp's user's, not
/// open to others). Gone meanwhile: created again, exclusively.
pub fn reuse(dir: &Path, user: Option<&Identity>) -> Result<(), WorkDirError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => secure(dir, user).map_err(|source| WorkDirError::Create {
                    dir: dir.to_path_buf(),
                    source,
                }),
                Err(source) => Err(WorkDirError::Create {
                    dir: dir.to_path_buf(),
                    source,
                }),
            }
        }
        Err(source) => Err(WorkDirError::Create {
            dir: dir.to_path_buf(),
            source,
        }),
        Ok(m) => {
            let owner = owner_uid(user);
            let why = if !m.file_type().is_dir() {
                Some("not a directory".to_string())
            } else if m.uid() != owner.as_raw() {
                Some(format!("owned by uid {}, not {}", m.uid(), owner))
            } else if m.mode() & 0o077 != 0 {
                Some(format!("mode {:o}, not 700", m.mode() & 0o777))
            } else {
                None
            };
            match why {
                Some(why) => Err(WorkDirError::NotOurs {
                    dir: dir.to_path_buf(),
                    why,
                }),
                None => Ok(()),
            }
        }
    }
}

fn secure(dir: &Path, user: Option<&Identity>) -> io::Result<()> {
    // The umask may have taken bits away, never added: set it exactly.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(id) = user {
        nix::unistd::chown(dir, Some(id.uid), Some(id.gid))?;
    }
    Ok(())
}

/// For a `--work-dir` the operator gave kuma-dp: `Some(problem)` when it
/// exists and belongs to someone other than kuma-dp's user or root (that
/// user could replace Envoy's bootstrap or its admin socket). A missing
/// directory is fine: kuma-dp creates it.
pub fn check_given(dir: &Path, user: Option<&Identity>) -> Option<String> {
    let m = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("cannot inspect '{}': {e}", dir.display())),
    };
    if !m.is_dir() {
        return Some(format!(
            "'{}' exists and is not a directory; give kuma-dp a directory",
            dir.display()
        ));
    }
    let owner = owner_uid(user);
    if m.uid() == owner.as_raw() || m.uid() == 0 {
        return None;
    }
    let who = match user {
        Some(id) => format!("{} (uid {}, --kuma-dp-user)", id.name, id.uid),
        None => format!("uid {owner}, meshinit's own user"),
    };
    Some(format!(
        "'{}' already exists and is owned by uid {}, not by {who} who runs kuma-dp: that user could replace Envoy's bootstrap or admin socket; use a directory of kuma-dp's user, or remove it so that kuma-dp creates it",
        dir.display(),
        m.uid()
    ))
}

/// Eight random bytes from the kernel, for unguessable temporary names.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    u64::from_ne_bytes(buf) ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "meshinit-workdir-test-{tag}-{}-{:x}",
            std::process::id(),
            random_u64()
        ));
        std::fs::create_dir(&d).unwrap();
        d
    }

    /// Issue 13: an existing directory at meshinit's chosen name (made by
    /// someone else first) was accepted as kuma-dp's work dir.
    #[test]
    fn an_existing_directory_is_never_taken_over_a_fresh_one_is_made() {
        let base = scratch("fresh");
        let planted = base.join("meshinit-kuma-dp-1-00");
        std::fs::create_dir(&planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(planted.join("bootstrap.yaml"), "planted").unwrap();

        let made = create_fresh(&planted, None).unwrap();
        assert_ne!(made, planted, "the planted directory was used");
        assert!(made.starts_with(&base));
        let m = std::fs::symlink_metadata(&made).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o777, 0o700);
        assert_eq!(m.uid(), Uid::effective().as_raw());
        assert_eq!(std::fs::read_dir(&made).unwrap().count(), 0, "empty");
        // A restarted kuma-dp reuses it as long as it is still ours.
        reuse(&made, None).unwrap();
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = reuse(&made, None).unwrap_err().to_string();
        assert!(err.contains("mode 755"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_missing_name_is_created_as_is_and_recreated_for_a_restart() {
        let base = scratch("first");
        let first = base.join("wd");
        assert_eq!(create_fresh(&first, None).unwrap(), first);
        std::fs::remove_dir(&first).unwrap();
        reuse(&first, None).unwrap();
        assert!(first.is_dir());
        std::fs::remove_dir(&first).unwrap();
        std::os::unix::fs::symlink("/", &first).unwrap();
        let err = reuse(&first, None).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_given_directory_of_another_user_is_refused() {
        let base = scratch("given");
        assert_eq!(check_given(&base.join("missing"), None), None);
        assert_eq!(check_given(&base, None), None, "our own");
        std::fs::write(base.join("file"), "").unwrap();
        assert!(check_given(&base.join("file"), None)
            .unwrap()
            .contains("not a directory"));
        // Another user's directory: only root can make one here.
        if !Uid::effective().is_root() {
            std::fs::remove_dir_all(&base).unwrap();
            crate::testing::skip_or_fail(
                "a_given_directory_of_another_user_is_refused (part): needs root to chown a directory to another user",
            );
            return;
        }
        let other = Identity {
            name: "nobody".into(),
            uid: Uid::from_raw(65534),
            gid: nix::unistd::Gid::from_raw(65534),
            groups: Vec::new(),
        };
        nix::unistd::chown(&base, Some(Uid::from_raw(4242)), None).unwrap();
        let err = check_given(&base, Some(&other)).unwrap();
        assert!(
            err.contains("owned by uid 4242") && err.contains("nobody (uid 65534"),
            "{err}"
        );
        nix::unistd::chown(&base, Some(Uid::from_raw(65534)), None).unwrap();
        assert_eq!(check_given(&base, Some(&other)), None);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
