//! Everything about the data plane proxy: the Dataplane template
//! (`dataplane`, rendered and checked as kuma-dp would), Envoy's admin API
//! and stats (`envoy`, for the idle drain), kuma-dp's command line as far as
//! meshinit reads it (`kuma_dp`: its drain time, its work dir, the token
//! hidden when shown) and kuma-dp's work directory (`workdir`).

pub mod dataplane;
pub mod envoy;
pub(crate) mod kuma_dp;
pub mod tproxy;
pub(crate) mod workdir;
