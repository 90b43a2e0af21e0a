//! Is the app healthy: the probes (`probe`: HTTP, TCP and commands, with
//! their thresholds) and the small HTTP/1.1 client they share with kuma-dp's
//! ready URL and Envoy's admin API (`http`).

pub mod http;
pub(crate) mod probe;
