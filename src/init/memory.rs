//! Giving back the pages meshinit needed only to start.
//!
//! Parsing the command line, the configuration and the Dataplane touches
//! most of meshinit's code once; afterwards an idle supervisor runs a small
//! part of it. Those start-up pages would stay counted in its resident set
//! for the life of the service. Once the app runs, meshinit drops the text
//! pages of its executable and of its shared libraries from its page tables (`MADV_DONTNEED`: text is never written,
//! so the pages stay in the page cache and fault back in on use) and asks
//! the kernel to reclaim its read-only data (`MADV_PAGEOUT`, which never
//! discards data). Writable mappings, the loader-relocated read-only data
//! included, are left alone.

/// `MADV_PAGEOUT` (Linux 5.4); older kernels answer EINVAL, which is fine.
const MADV_PAGEOUT: nix::libc::c_int = 21;

/// Releases the executable's start-up pages; errors are ignored (this only
/// saves memory).
pub fn release_startup_pages() {
    use std::os::unix::ffi::OsStrExt;
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    // Bytes, not a `String`: the file is read on every start, and neither
    // UTF-8 validation nor splitting on Unicode whitespace is needed to find
    // a few ASCII fields (it cost 150 k instructions, 15% of a start).
    let Ok(maps) = std::fs::read("/proc/self/maps") else {
        return;
    };
    for (start, end, advice) in own_mappings(&maps, exe.as_os_str().as_bytes()) {
        // SAFETY: the range is one of this process's own mappings of its
        // executable as /proc/self/maps lists it: text (never written, so
        // dropping it loses nothing) or read-only data (paged out, never
        // discarded). madvise touches no Rust-visible memory.
        unsafe {
            nix::libc::madvise(start as *mut nix::libc::c_void, end - start, advice);
        }
    }
}

/// (start, end, advice) for every file-backed text mapping (the
/// executable's and the shared libraries') and the executable's read-only
/// data.
///
/// A line is `start-end perms offset dev inode` then, for a file mapping,
/// spaces and the path (which may itself hold spaces): the kernel writes the
/// first five fields with one space each.
fn own_mappings(maps: &[u8], exe: &[u8]) -> Vec<(usize, usize, nix::libc::c_int)> {
    let mut out = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        let mut f = line.splitn(6, |&b| b == b' ');
        let (Some(range), Some(perms), Some(_), Some(_), Some(_), Some(rest)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path = rest.trim_ascii_start();
        let is_exe = path == exe;
        // Text of any file mapping (meshinit's own, libc's, the loader's)
        // is never written; read-only data only of meshinit itself.
        if !path.starts_with(b"/") || (!is_exe && perms != b"r-xp") {
            continue;
        }
        let advice = match perms {
            b"r-xp" => nix::libc::MADV_DONTNEED,
            b"r--p" => MADV_PAGEOUT,
            _ => continue,
        };
        let Some(dash) = range.iter().position(|&b| b == b'-') else {
            continue;
        };
        let (Some(a), Some(b)) = (hex(&range[..dash]), hex(&range[dash + 1..])) else {
            continue;
        };
        out.push((a, b, advice));
    }
    out
}

/// A hexadecimal address as /proc/self/maps writes it (no prefix).
fn hex(digits: &[u8]) -> Option<usize> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_text_mappings_and_the_executables_read_only_data() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 42 /usr/bin/meshinit
55d0a0100000-55d0a0300000 r-xp 00100000 fd:01 42 /usr/bin/meshinit
55d0a0300000-55d0a0310000 rw-p 00300000 fd:01 42 /usr/bin/meshinit
7f0000000000-7f0000100000 r-xp 00000000 fd:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 fd:01 9                          /opt/my app/lib.so
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
7ffd00100000-7ffd00121000 r-xp 00000000 00:00 0 
";
        let m = own_mappings(maps.as_bytes(), b"/usr/bin/meshinit");
        assert_eq!(
            m,
            vec![
                (0x55d0a0000000, 0x55d0a0100000, MADV_PAGEOUT),
                (0x55d0a0100000, 0x55d0a0300000, nix::libc::MADV_DONTNEED),
                (0x7f0000000000, 0x7f0000100000, nix::libc::MADV_DONTNEED),
                (0x7f0000200000, 0x7f0000300000, nix::libc::MADV_DONTNEED)
            ]
        );
    }

    #[test]
    fn the_process_keeps_running_with_fewer_resident_pages() {
        let rss = || {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
                .unwrap()
        };
        let before = rss();
        release_startup_pages();
        let after = rss();
        // Code runs on (faulting back what it needs) and less is resident.
        assert!(after < before, "RssFile {before} kB -> {after} kB");
        assert_eq!(own_mappings(b"", b"x"), vec![]);
    }
}
