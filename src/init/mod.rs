//! The duties of an init process, each apart from the lifecycle's decisions:
//! taking signals (`signals`), reaping (`reaper`, the one `waitpid(-1)`),
//! starting children (`spawn`, as a `user`, with the inherited descriptors
//! of `fds`), finding and stopping what the app left behind (`descendants`),
//! turning how a child ended into meshinit's exit code (`exit`), and giving
//! back start-up memory (`memory`).

pub mod descendants;
pub(crate) mod exit;
pub(crate) mod fds;
pub(crate) mod memory;
pub(crate) mod path;
pub(crate) mod reaper;
pub(crate) mod signals;
pub(crate) mod spawn;
pub(crate) mod user;
