//! What a probe is: its kind and its timing, as the configuration gives it.

use std::fmt;
use std::time::Duration;

use crate::basics::parse::Url;

/// How a probe checks the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Http(Url),
    Tcp {
        host: String,
        port: u16,
    },
    /// Run through `/bin/sh -c` (from `--probe-exec` or a YAML string).
    Shell(String),
    /// Run directly, no shell (a YAML list).
    Argv(Vec<String>),
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeKind::Http(u) => write!(f, "http GET {u}"),
            ProbeKind::Tcp { host, port } => {
                if host.contains(':') {
                    write!(f, "tcp [{host}]:{port}")
                } else {
                    write!(f, "tcp {host}:{port}")
                }
            }
            ProbeKind::Shell(cmd) => write!(f, "exec sh -c {cmd:?}"),
            ProbeKind::Argv(argv) => write!(f, "exec {}", crate::basics::parse::shell_words(argv)),
        }
    }
}

/// One probe with its own timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub startup_period: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}
