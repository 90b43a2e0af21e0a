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
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for (start, end, advice) in own_mappings(&maps, &exe.to_string_lossy()) {
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
fn own_mappings(maps: &str, exe: &str) -> Vec<(usize, usize, nix::libc::c_int)> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            continue;
        }
        let path = f[5..].join(" ");
        let is_exe = path == exe;
        // Text of any file mapping (meshinit's own, libc's, the loader's)
        // is never written; read-only data only of meshinit itself.
        if !path.starts_with('/') || (!is_exe && f[1] != "r-xp") {
            continue;
        }
        let Some((a, b)) = f[0].split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        let advice = match f[1] {
            "r-xp" => nix::libc::MADV_DONTNEED,
            "r--p" => MADV_PAGEOUT,
            _ => continue,
        };
        out.push((a, b, advice));
    }
    out
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
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        let m = own_mappings(maps, "/usr/bin/meshinit");
        assert_eq!(
            m,
            vec![
                (0x55d0a0000000, 0x55d0a0100000, MADV_PAGEOUT),
                (0x55d0a0100000, 0x55d0a0300000, nix::libc::MADV_DONTNEED),
                (0x7f0000000000, 0x7f0000100000, nix::libc::MADV_DONTNEED)
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
        assert_eq!(own_mappings("", "x"), vec![]);
    }
}
