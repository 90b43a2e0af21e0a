//! A YAML document as a tree of nodes that remember their line, so that
//! every configuration and Dataplane problem can be reported at once with
//! the place it comes from.
//!
//! Parsing is done by `serde-saphyr` (a maintained, panic-free YAML 1.2
//! deserializer built on saphyr-parser; `serde_yaml` is deprecated upstream).
//! Its `Spanned<T>` wrapper gives each key and value its location.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One node of a YAML document. Scalars are kept as text; the consumer
/// decides what they mean (a duration, a port, ...).
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Scalar(String),
    Seq(Vec<Item>),
    Map(Vec<Entry>),
}

/// A node and the line it starts on (1-based; 0 when unknown).
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub node: Node,
    pub line: u64,
}

/// A mapping entry: the key (with its line) and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: u64,
    pub value: Item,
}

/// A syntax error, with its position when the parser knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "line {} column {}: {}",
                self.line, self.column, self.message
            )
        } else {
            f.write_str(&self.message)
        }
    }
}

/// Parses one YAML document. An empty document is `Node::Null`.
pub fn parse(text: &str) -> Result<Item, SyntaxError> {
    if text.trim().is_empty() {
        return Ok(Item {
            node: Node::Null,
            line: 0,
        });
    }
    let spanned: Spanned<Node> = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = diagnosis(&e);
        SyntaxError {
            message,
            line,
            column,
        }
    })?;
    Ok(Item {
        node: spanned.value,
        line: spanned.referenced.line(),
    })
}

/// What is wrong, in meshinit's words where saphyr's would address the
/// programmer using it ("set DuplicateKeyPolicy in Options", "budget
/// breached: Nodes { nodes: 250001 }"), else saphyr's own diagnosis: the
/// first line of its message (the rest is a rendered snippet, replaced by
/// our own "file:line").
fn diagnosis(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    use serde_saphyr::Error as E;
    let limits = serde_saphyr::Budget::default();
    let too_complex = "the YAML document is too large or too complex for a configuration file";
    match e.without_snippet() {
        E::DuplicateMappingKey { key: Some(k), .. } => {
            format!("duplicate key '{k}': a key may appear only once in a mapping; remove one")
        }
        E::DuplicateMappingKey { key: None, .. } => {
            "duplicate key: a key may appear only once in a mapping; remove one".into()
        }
        E::Budget { breach, .. } => match breach {
            B::Nodes { .. } => format!(
                "the YAML document is too large: over {} values",
                limits.max_nodes
            ),
            B::Depth { .. } => format!(
                "lists and mappings are nested more than {} levels deep",
                limits.max_depth
            ),
            B::Aliases { .. } | B::Anchors { .. } | B::AliasAnchorRatio { .. } => {
                format!("{too_complex}: too many anchors (&name) or aliases (*name)")
            }
            _ => too_complex.into(),
        },
        _ => {
            let message = e.to_string();
            let first = strip_position(message.lines().next().unwrap_or("invalid YAML"));
            if first.contains("recursion limit exceeded") {
                format!(
                    "lists and mappings are nested more than {} levels deep",
                    limits.max_depth
                )
            } else {
                first.to_string()
            }
        }
    }
}

/// saphyr's first line reads `error: line 6 column 11: <diagnosis>`; the
/// position is kept separately, so only the diagnosis is wanted.
fn strip_position(line: &str) -> &str {
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, rest)) if pos.contains("column") => rest,
        _ => line,
    }
}

impl Node {
    /// The scalar's text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Item> {
        match self {
            Node::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// A short description of the node's kind for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing",
            Node::Scalar(_) => "a value",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Spanned<Node>>()? {
            items.push(Item {
                line: v.referenced.line(),
                node: v.value,
            });
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Node>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            let key_text = match key.value {
                Node::Scalar(s) => s,
                Node::Null => "null".into(),
                other => {
                    return Err(de::Error::custom(format!(
                        "a mapping key must be a plain value, not {}",
                        other.kind()
                    )))
                }
            };
            if entries.iter().any(|e| e.key == key_text) {
                return Err(de::Error::custom(format!("duplicate key '{key_text}'")));
            }
            entries.push(Entry {
                key: key_text,
                line: key.referenced.line(),
                value: Item {
                    line: value.referenced.line(),
                    node: value.value,
                },
            });
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_of_keys_and_values() {
        let doc =
            parse("app:\n  stop-timeout: 5s\n  command: [a, b]\nlog:\n  level: debug\n").unwrap();
        let Node::Map(top) = &doc.node else {
            panic!("{doc:?}")
        };
        assert_eq!((top[0].key.as_str(), top[0].line), ("app", 1));
        assert_eq!((top[1].key.as_str(), top[1].line), ("log", 4));
        let Node::Map(app) = &top[0].value.node else {
            panic!()
        };
        assert_eq!((app[0].key.as_str(), app[0].line), ("stop-timeout", 2));
        assert_eq!(app[0].value.node, Node::Scalar("5s".into()));
        let Node::Seq(cmd) = &app[1].value.node else {
            panic!()
        };
        assert_eq!(cmd.len(), 2);
    }

    #[test]
    fn scalars_of_every_type_become_text() {
        let doc = parse("a: 15\nb: true\nc: 1.5\nd: ~\ne: 'x'\n").unwrap();
        let text = |k: &str| doc.node.get(k).map(|i| i.node.clone());
        assert_eq!(text("a"), Some(Node::Scalar("15".into())));
        assert_eq!(text("b"), Some(Node::Scalar("true".into())));
        assert_eq!(text("c"), Some(Node::Scalar("1.5".into())));
        assert_eq!(text("d"), Some(Node::Null));
        assert_eq!(text("e"), Some(Node::Scalar("x".into())));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("app:\n  a: [1, 2\n  b: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        assert!(!err.message.contains("line "), "position given once: {err}");
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err:?}");
    }

    /// The parser's words for its own API and internals do not reach users
    /// (issue 20): a duplicate key, a document over the node budget and one
    /// nested too deeply are each said in meshinit's words, with the line.
    #[test]
    fn parser_limits_and_duplicates_are_said_in_meshinits_words() {
        let err = parse("app:\n  stop-timeout: 1s\n  stop-timeout: 2s\n").unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.line),
            (
                "duplicate key 'stop-timeout': a key may appear only once in a mapping; remove one",
                3
            ),
            "{err:?}"
        );
        let many = format!("a: [{}]\n", vec!["x"; 260_000].join(","));
        let err = parse(&many).unwrap_err();
        assert_eq!(
            err.message, "the YAML document is too large: over 250000 values",
            "{err:?}"
        );
        let deep = format!("a: {}{}\n", "[".repeat(2000), "]".repeat(2000));
        let err = parse(&deep).unwrap_err();
        assert_eq!(
            err.message, "lists and mappings are nested more than 64 levels deep",
            "{err:?}"
        );
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("  \n").unwrap().node, Node::Null);
    }
}
