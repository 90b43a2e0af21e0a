//! Shared by the fuzz targets (`#[path = "common.rs"] mod common;`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// A per-process scratch directory holding the files fuzzed options point at.
pub struct Fixture {
    pub dir: PathBuf,
    /// A valid Dataplane template using `{{ name }}`.
    pub template: PathBuf,
    /// A non-empty token file (mode 0600).
    pub token: PathBuf,
    /// An empty file.
    pub empty: PathBuf,
    /// Where the config targets write the YAML under test.
    pub config: PathBuf,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("meshinit-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir fuzz scratch");
        let template = dir.join("dp.yaml");
        std::fs::write(
            &template,
            "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8000\n    servicePort: 80\n    tags:\n      kuma.io/service: backend\n",
        )
        .expect("write template");
        let token = dir.join("token");
        std::fs::write(&token, "fuzz-token-secret").expect("write token");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let empty = dir.join("empty");
        std::fs::write(&empty, "").expect("write empty");
        Fixture {
            config: dir.join("meshinit.yaml"),
            dir,
            template,
            token,
            empty,
        }
    })
}

/// Maps a fuzzed byte to one of a few interesting paths: valid files, an
/// empty one, a directory, a missing one, the kuma-dp stand-in `/bin/true`.
pub fn path_for(b: u8) -> String {
    let f = fixture();
    let p = match b % 8 {
        0 => f.template.clone(),
        1 => f.token.clone(),
        2 => f.empty.clone(),
        3 => f.dir.clone(),
        4 => f.dir.join("missing"),
        5 => PathBuf::from("/bin/true"),
        6 => PathBuf::from("relative/path"),
        _ => PathBuf::from("true"),
    };
    p.to_string_lossy().into_owned()
}
