//! What meshinit tells the world: the status endpoint (`status`) and the
//! Prometheus metrics it serves (`metrics`), systemd's notify protocol
//! (`notify`), and the logs (`logging`).

pub(crate) mod admission;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod notify;
pub mod snapshot;
pub(crate) mod state_file;
pub mod status;
