//! Everything about the data plane proxy: the Dataplane template
//! (`dataplane`, rendered and checked as kuma-dp would), Envoy's admin API
//! and stats (`envoy`, for the idle drain), kuma-dp's command line as far as
//! meshinit reads it (`kuma_dp`: its drain time, its work dir, the token
//! hidden when shown) kuma-dp's work directory (`workdir`), and the query that tells
//! kuma-dp's DNS server answers (`dns`).

pub mod dataplane;
pub mod dns;
pub mod envoy;
pub(crate) mod kuma_dp;
pub(crate) mod workdir;
