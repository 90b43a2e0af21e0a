//! Generates the man page and the shell completions from the clap command
//! that `src/config/cli.rs` builds from the options table
//! (`src/config/options.rs`), so they can never drift from the real flags.
//!
//! Output, next to the binaries so that cargo-deb finds it under its magic
//! `target/release/` prefix (whatever CARGO_TARGET_DIR, --target or profile
//! is in force):
//!
//! ```text
//! <target-dir>/[<triple>/]<profile>/meshinit-assets/
//!     meshinit.1.gz          man page (gzip, as Debian policy wants it)
//!     meshinit.bash          bash completion
//!     _meshinit              zsh completion
//!     meshinit.fish          fish completion
//! ```
//!
//! The profile directory is found from OUT_DIR, which cargo always places at
//! `<profile-dir>/build/meshinit-<hash>/out`. Writing outside OUT_DIR is
//! deliberate: cargo-deb resolves assets relative to the profile directory
//! only, and a glob over `build/meshinit-*/out` would pick up stale copies
//! from earlier builds. A copy is also kept in OUT_DIR.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

// Only `command()` and what it reads are used here.
#[allow(dead_code)]
#[path = "src/config/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "src/config/options.rs"]
mod options;

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=src/config/cli.rs");
    println!("cargo:rerun-if-changed=src/config/options.rs");
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut dirs = vec![out_dir.join("meshinit-assets")];
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        dirs.push(profile_dir.join("meshinit-assets"));
    }

    let mut cmd = cli::command();
    cmd.build();

    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut man)?;
    let man_gz = gzip_stored(&man);

    let mut completions = Vec::new();
    for (shell, file) in [
        (clap_complete::Shell::Bash, "meshinit.bash"),
        (clap_complete::Shell::Zsh, "_meshinit"),
        (clap_complete::Shell::Fish, "meshinit.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "meshinit", &mut buf);
        completions.push((file, buf));
    }

    for dir in &dirs {
        std::fs::create_dir_all(dir)?;
        write_if_changed(&dir.join("meshinit.1.gz"), &man_gz)?;
        for (file, data) in &completions {
            write_if_changed(&dir.join(file), data)?;
        }
    }
    Ok(())
}

/// Writes only when the content differs, so an unchanged page keeps its
/// mtime and nothing downstream rebuilds for nothing.
fn write_if_changed(path: &Path, data: &[u8]) -> io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)?.write_all(data)?;
    std::fs::rename(tmp, path)
}

/// A valid gzip file (RFC 1952) holding `data` in stored (uncompressed)
/// deflate blocks. cargo-deb does not compress assets taken from the target
/// directory, and `man` reads `.gz` pages whatever the deflate level; this
/// keeps the build script free of a compression dependency. The header has
/// no name and a zero mtime, so the output is reproducible.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65535 * 5 + 32);
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=3 (Unix)
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = u8::from(chunks.peek().is_none());
        let len = chunk.len() as u16;
        out.push(last); // BFINAL, BTYPE=00 (stored)
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected), bit by bit: the page is a few kB.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
