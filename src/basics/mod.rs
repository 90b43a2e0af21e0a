//! What several folders need and that depends on nothing else of
//! meshinit: value parsers and formatters, the YAML tree with its lines,
//! bounded reading of the files meshinit is given, escaping for log lines.
//! The bottom of the tree's strict descent (see `tests/architecture.rs`).

pub mod escape;
pub mod files;
pub mod parse;
pub mod yaml;
