//! Reading the files meshinit is given (the YAML file, the Dataplane file,
//! `--state-file`): regular files only, bounded, never blocking on a FIFO.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::libc;

/// The most meshinit reads of a file it is given (the YAML file, the
/// Dataplane file, `--state-file`): each is a few KiB; the bound keeps
/// `--config /dev/zero` or a runaway file from growing meshinit's memory
/// without end.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// [`MAX_FILE_BYTES`] as it is written in messages.
pub const MAX_FILE_TEXT: &str = "1 MiB";

/// What is at a path, as `lstat(2)` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl FileKind {
    pub fn of(t: std::fs::FileType) -> FileKind {
        if t.is_file() {
            FileKind::Regular
        } else if t.is_dir() {
            FileKind::Dir
        } else if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Socket
        }
    }

    /// As a message says it: "a FIFO (named pipe)".
    pub fn described(self) -> &'static str {
        match self {
            FileKind::Regular => "a regular file",
            FileKind::Dir => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
        }
    }
}

/// Why a file meshinit reads could not be read, in meshinit's words.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("'{0}' does not exist")]
    Missing(String),
    #[error("'{path}' is {}, not a regular file", kind.described())]
    NotRegular { path: String, kind: FileKind },
    #[error("'{0}' is larger than {MAX_FILE_TEXT}, the most meshinit reads of a file it is given")]
    TooLarge(String),
    #[error("'{0}' is not UTF-8 text")]
    NotText(String),
    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Whether a symbolic link at the path itself is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    Yes,
    No,
}

/// Reads a regular file, at most [`MAX_FILE_BYTES`] of it. The file is
/// opened non-blocking (a FIFO would otherwise block the open until a
/// writer comes) and checked with `fstat` on the opened descriptor, so what
/// is read is what was checked, whatever is swapped in at the path.
pub fn read_regular(path: &Path, follow: Follow) -> Result<String, ReadError> {
    let shown = || path.display().to_string();
    let mut flags = libc::O_NONBLOCK;
    if follow == Follow::No {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                return ReadError::Missing(shown());
            }
            // A socket cannot be opened (ENXIO), a link refused by
            // O_NOFOLLOW is ELOOP: say what is there instead of errno's words.
            let meta = match follow {
                Follow::Yes => std::fs::metadata(path),
                Follow::No => std::fs::symlink_metadata(path),
            };
            match meta.map(|m| FileKind::of(m.file_type())) {
                Ok(kind) if kind != FileKind::Regular => ReadError::NotRegular {
                    path: shown(),
                    kind,
                },
                _ => ReadError::Io {
                    path: shown(),
                    source: e,
                },
            }
        })?;
    let io = |source| ReadError::Io {
        path: shown(),
        source,
    };
    let kind = FileKind::of(file.metadata().map_err(io)?.file_type());
    if kind != FileKind::Regular {
        return Err(ReadError::NotRegular {
            path: shown(),
            kind,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(shown()));
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText(shown()))
}
