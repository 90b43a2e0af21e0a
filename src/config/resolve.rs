//! Typing a merged value: parse it, or report it (with its origin) and
//! fall back to the option's default so that checking goes on and every
//! problem is found in one pass.

use std::collections::BTreeMap;

use super::layers::Raw;
use super::options::{self, OptDef};
use super::{Origin, Problem};

/// The merged values and the problems found while typing them.
pub(super) struct Resolver {
    merged: BTreeMap<&'static str, Raw>,
    pub problems: Vec<Problem>,
}

impl Resolver {
    pub fn new(merged: BTreeMap<&'static str, Raw>, problems: Vec<Problem>) -> Resolver {
        Resolver { merged, problems }
    }

    fn def(id: &str) -> &'static OptDef {
        options::find(id)
    }

    /// The default's text; for options whose default is a value.
    fn default_text(id: &str) -> &'static str {
        match Self::def(id).default {
            options::DefaultValue::Is(d) => d,
            _ => panic!("--{id} has no default value"),
        }
    }

    pub fn raw(&self, id: &str) -> Option<&Raw> {
        self.merged.get(id)
    }

    pub fn problem(&mut self, id: &str, origin: &Origin, message: String) {
        let def = Self::def(id);
        self.problems.push(Problem {
            message: format!("{}: {message}", def.yaml()),
            origin: Some(origin.clone()),
        });
    }

    /// Parses a single value with `f`, falling back to the default (which is
    /// known to parse) when the given value is bad, so checking goes on.
    pub fn typed<T>(&mut self, id: &str, f: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.raw(id).cloned();
        if let Some(raw) = raw {
            let text = raw.values.first().cloned().unwrap_or_default();
            match f(&text) {
                Ok(v) => return Some(v),
                Err(e) => self.problem(id, &raw.origin, e),
            }
        }
        match Self::def(id).default {
            options::DefaultValue::Is(d) => Some(f(d).expect("defaults parse")),
            _ => None,
        }
    }

    /// As `typed`, for an option with a default value: there is always one.
    pub fn value<T>(&mut self, id: &str, f: impl Fn(&str) -> Result<T, String>) -> T {
        self.typed(id, f)
            .unwrap_or_else(|| panic!("--{id} has no default value"))
    }

    /// Every value of a list; the default's (split at commas) when unset.
    pub fn list<T>(&mut self, id: &str, f: impl Fn(&str) -> Result<T, String>) -> Vec<T> {
        let Some(raw) = self.raw(id).cloned() else {
            return match Self::def(id).default {
                options::DefaultValue::Is(d) => d
                    .split(',')
                    .map(|v| f(v).expect("defaults parse"))
                    .collect(),
                _ => Vec::new(),
            };
        };
        let mut out = Vec::new();
        for v in &raw.values {
            match f(v) {
                Ok(t) => out.push(t),
                Err(e) => self.problem(id, &raw.origin, e),
            }
        }
        out
    }

    pub fn text(&self, id: &str) -> Option<String> {
        self.raw(id)
            .and_then(|r| r.values.first().cloned())
            .filter(|s| !s.is_empty())
    }

    /// The given text, or the default's when none (or an empty one) is given.
    pub fn text_or_default(&self, id: &str) -> String {
        self.text(id)
            .unwrap_or_else(|| Self::default_text(id).to_string())
    }

    pub fn origin(&self, id: &str) -> Origin {
        self.raw(id).map_or(Origin::Default, |r| r.origin.clone())
    }
}
