//! Is the app healthy: what a probe is (`spec`), running probes (`probe`:
//! HTTP, TCP and commands) and the small HTTP/1.1 client they share with
//! kuma-dp's ready URL and Envoy's admin API (`http`). Whether the results
//! make the app healthy is the lifecycle's to decide.

pub mod http;
pub(crate) mod probe;
pub mod spec;

pub use spec::{ProbeKind, ProbeSpec};
