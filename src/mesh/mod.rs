//! Everything about the data plane proxy: the Dataplane template
//! (`dataplane`, rendered and checked as kuma-dp would), Envoy's admin API
//! and stats (`envoy`, for the idle drain), and kuma-dp's work directory
//! (`workdir`).

pub mod dataplane;
pub mod envoy;
pub(crate) mod workdir;
