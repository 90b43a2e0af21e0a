//! Logs go to stderr, as text for people or JSON for collectors, with
//! structured fields (`phase`, `elapsed`, `pid`, ...).

use tracing::Level;

pub fn init(json: bool, level: Level) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
