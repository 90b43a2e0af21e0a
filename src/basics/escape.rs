//! Text a child controls (an exec probe's output, a peer's answer) made
//! safe for a log line.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether logs are text (escaped here) or JSON (escaped by its encoder);
/// set once by the logging set-up.
static TEXT: AtomicBool = AtomicBool::new(true);

/// Logs are JSON (`true`) or text.
pub fn set_json(json: bool) {
    TEXT.store(!json, Ordering::Relaxed);
}

/// A value a child controls (an exec probe's output, a peer's answer) as a
/// log field: in text logs its control characters are escaped (`\n`, `\r`,
/// `\t`, `\\`, and `\u{1b}` for ESC and the like), so that it cannot end
/// the line and forge the next one, nor move the cursor or recolour a
/// terminal. JSON logs get the value as it is; their encoder escapes it.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !TEXT.load(Ordering::Relaxed) {
            return f.write_str(self.0);
        }
        f.write_str(&escape_control(self.0))
    }
}

/// Control characters (and the backslash, so that escapes read back
/// unambiguously) escaped as Rust writes them in a string literal.
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            escape_control("ok\n2026 INFO forged\r\x1b[31mred\x1b[0m\ttab \\ é ✓"),
            "ok\\n2026 INFO forged\\r\\u{1b}[31mred\\u{1b}[0m\\ttab \\\\ é ✓"
        );
        assert_eq!(escape_control("plain text"), "plain text");
    }
}
