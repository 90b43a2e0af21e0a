//! The three sources of values and their merge: flags (from clap's
//! matches), `MESHINIT_*` env vars (from the injected environment) and the
//! YAML file, each value kept as text with where it came from. Typing is
//! done later, by the sections, so every bad value is reported at once.

use std::collections::BTreeMap;

use clap::parser::ValueSource;
use clap::ArgMatches;

use super::host::Host;
use super::options::{self, OPTIONS};
use super::yaml::{self, Item, Node};
use super::{Origin, Problem};

/// A raw value before typing: the text of each item and its origin.
#[derive(Clone, Debug)]
pub(super) struct Raw {
    pub values: Vec<String>,
    pub origin: Origin,
}

/// Every source merged: per option the value that wins, plus what only
/// the file can say.
pub(super) struct Layers {
    /// Option flag -> its winning value; absent options take their default.
    pub merged: BTreeMap<&'static str, Raw>,
    /// `app.command` from the file.
    pub command: Option<(Vec<String>, Origin)>,
    /// `probes.checks` from the file, each with its line.
    pub checks: Vec<(Item, Origin)>,
    /// `MESHINIT_*` variables that look like a misspelt option's.
    pub warnings: Vec<String>,
}

/// Reads every source and merges them with the precedence
/// flag > env var > file > default.
pub(super) fn read(matches: &ArgMatches, host: &dyn Host, problems: &mut Vec<Problem>) -> Layers {
    let env = &|name: &str| host.env(name);
    let config_path = matches
        .get_one::<String>(options::CONFIG_FLAG)
        .cloned()
        .or_else(|| env(options::CONFIG_ENV));
    let file = match &config_path {
        Some(p) => file_layer(p, host, problems),
        None => FileLayer::default(),
    };
    let mut merged = file.values;
    merged.extend(env_layer(env));
    merged.extend(flag_layer(matches));
    Layers {
        merged,
        command: file.command,
        checks: file.checks,
        warnings: misspelt_env(&host.meshinit_vars()),
    }
}

/// `MESHINIT_*` variables meshinit is given that are not options but are
/// not mistakes either: the systemd unit's (`MESHINIT_ARGS`,
/// `MESHINIT_APP_ARGS`, expanded into the command line by systemd) and the
/// test suite's (`MESHINIT_BLESS`).
pub(super) const NOT_OPTIONS: &[&str] = &["MESHINIT_ARGS", "MESHINIT_APP_ARGS", "MESHINIT_BLESS"];

/// A warning for each variable that is no option's but close to one's name:
/// a misspelt `MESHINIT_PROBE_HTPP` would otherwise be ignored without a
/// word, and the probe silently not run. A `MESHINIT_*` name far from every
/// option's belongs to something else (a script's own setting) and is left
/// alone.
fn misspelt_env(names: &[String]) -> Vec<String> {
    // Usually none is set: then no option's name needs building.
    if names.is_empty() {
        return Vec::new();
    }
    let known: Vec<String> = OPTIONS
        .iter()
        .map(|d| d.env())
        .chain(std::iter::once(options::CONFIG_ENV.to_string()))
        .collect();
    let mut names: Vec<&String> = names
        .iter()
        .filter(|n| !known.contains(n) && !NOT_OPTIONS.contains(&n.as_str()))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let best = closest(name, known.iter().map(String::as_str))?;
            Some(format!(
                "env {name} is not a meshinit option and is ignored; did you mean {best}?"
            ))
        })
        .collect()
}

/// The candidate nearest to `word` when it is near enough to be a typo:
/// at most one edit (insert, delete, change or swap of neighbours) for
/// every four characters after any `MESHINIT_` prefix, at least one.
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let bare = |w: &'a str| w.strip_prefix("MESHINIT_").unwrap_or(w);
    let w = word.strip_prefix("MESHINIT_").unwrap_or(word);
    let limit = (w.chars().count() / 4).max(1);
    candidates
        .map(|c| (edit_distance(w, bare(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus the swap of two
/// neighbouring characters as one edit (`HTPP` for `HTTP`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Reads the flag layer from clap's matches.
fn flag_layer(matches: &ArgMatches) -> BTreeMap<&'static str, Raw> {
    let mut out = BTreeMap::new();
    for def in OPTIONS {
        let Some(values) = matches.get_many::<String>(def.flag) else {
            continue;
        };
        if matches.value_source(def.flag) != Some(ValueSource::CommandLine) {
            continue;
        }
        out.insert(
            def.flag,
            Raw {
                values: values.cloned().collect(),
                origin: Origin::Flag(def.flag.to_string()),
            },
        );
    }
    out
}

/// Reads the env var layer. A variable that is set counts, even empty (as
/// clap did): a value that must parse reports the empty text, a path or
/// name treats it as not given. A list splits at commas.
fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> BTreeMap<&'static str, Raw> {
    let mut out = BTreeMap::new();
    for def in OPTIONS {
        let name = def.env();
        let Some(value) = env(&name) else { continue };
        let values = match def.kind {
            options::Kind::List(_) => value.split(',').map(str::to_string).collect(),
            _ => vec![value],
        };
        out.insert(
            def.flag,
            Raw {
                values,
                origin: Origin::Env(name),
            },
        );
    }
    out
}

/// What the YAML file contributes.
#[derive(Default)]
struct FileLayer {
    values: BTreeMap<&'static str, Raw>,
    command: Option<(Vec<String>, Origin)>,
    checks: Vec<(Item, Origin)>,
}

fn file_layer(path: &str, host: &dyn Host, problems: &mut Vec<Problem>) -> FileLayer {
    let mut layer = FileLayer::default();
    let text = match host.read_file(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                message: format!("cannot read config file: {e}; check the path given to --config / MESHINIT_CONFIG"),
                origin: None,
            });
            return layer;
        }
    };
    let doc = match yaml::parse(&text) {
        Ok(d) => d,
        Err(e) => {
            problems.push(Problem {
                message: format!("config file is not valid YAML: {}", e.message),
                origin: Some(Origin::File {
                    path: path.into(),
                    line: e.line,
                }),
            });
            return layer;
        }
    };
    let at = |line: u64| Origin::File {
        path: path.to_string(),
        line,
    };
    refuse_nul_bytes(&doc, "", &|line| at(line), problems);
    let sections = match doc.node {
        Node::Map(s) => s,
        Node::Null => return layer,
        other => {
            problems.push(Problem {
                message: format!(
                    "the config file must be a mapping of sections, not {}",
                    other.kind()
                ),
                origin: Some(at(doc.line)),
            });
            return layer;
        }
    };
    let known_sections = options::Section::ALL.map(options::Section::name);
    for section in sections {
        if !known_sections.contains(&section.key.as_str()) {
            let hint = closest(&section.key, known_sections.iter().copied())
                .map(|c| format!("did you mean '{c}'? "))
                .unwrap_or_default();
            problems.push(Problem {
                message: format!(
                    "unknown section '{}' ({hint}known sections: {})",
                    section.key,
                    known_sections.join(", ")
                ),
                origin: Some(at(section.line)),
            });
            continue;
        }
        let entries = match section.value.node {
            Node::Map(e) => e,
            Node::Null => continue,
            other => {
                problems.push(Problem {
                    message: format!(
                        "section '{}' must be a mapping, not {}",
                        section.key,
                        other.kind()
                    ),
                    origin: Some(at(section.line)),
                });
                continue;
            }
        };
        for entry in entries {
            let origin = at(entry.line);
            let name = format!("{}.{}", section.key, entry.key);
            match (section.key.as_str(), entry.key.as_str()) {
                ("app", "command") => match scalars(&entry.value) {
                    Ok(v) => layer.command = Some((v, origin)),
                    Err(kind) => problems.push(Problem {
                        message: format!("{name} must be a list of strings, not {kind}"),
                        origin: Some(origin),
                    }),
                },
                ("probes", "checks") => match entry.value.node {
                    Node::Seq(items) => layer.checks.extend(items.into_iter().map(|i| {
                        let o = at(i.line);
                        (i, o)
                    })),
                    other => problems.push(Problem {
                        message: format!("{name} must be a list of probes, not {}", other.kind()),
                        origin: Some(origin),
                    }),
                },
                ("proxy", "dataplane-var") if matches!(entry.value.node, Node::Map(_)) => {
                    let Node::Map(vars) = entry.value.node else {
                        unreachable!()
                    };
                    let mut list = Vec::new();
                    for v in vars {
                        match v.value.node.as_scalar() {
                            Some(s) => list.push(format!("{}={s}", v.key)),
                            None if v.value.node == Node::Null => list.push(format!("{}=", v.key)),
                            None => problems.push(Problem {
                                message: format!(
                                    "{name}.{} must be a value, not {}",
                                    v.key,
                                    v.value.node.kind()
                                ),
                                origin: Some(at(v.line)),
                            }),
                        }
                    }
                    layer.values.insert(
                        "dataplane-var",
                        Raw {
                            values: list,
                            origin,
                        },
                    );
                }
                (s, k) => {
                    let Some(def) = OPTIONS.iter().find(|d| d.section.name() == s && d.key == k)
                    else {
                        let mut known: Vec<&str> = OPTIONS
                            .iter()
                            .filter(|d| d.section.name() == s)
                            .map(|d| d.key)
                            .collect();
                        known.extend(
                            options::FILE_ONLY
                                .iter()
                                .filter(|(fs, _)| fs.name() == s)
                                .map(|(_, k)| *k),
                        );
                        let hint = closest(k, known.iter().copied())
                            .map(|c| format!("did you mean '{c}'? "))
                            .unwrap_or_default();
                        problems.push(Problem {
                            message: format!(
                                "unknown key '{k}' in section '{s}' ({hint}known keys: {})",
                                known.join(", ")
                            ),
                            origin: Some(origin),
                        });
                        continue;
                    };
                    match scalars(&entry.value) {
                        Ok(values) if def.kind.is_multi() || values.len() == 1 => {
                            layer.values.insert(def.flag, Raw { values, origin });
                        }
                        Ok(_) => problems.push(Problem {
                            message: format!("{name} takes a single value, not a list"),
                            origin: Some(origin),
                        }),
                        Err(kind) => problems.push(Problem {
                            message: format!(
                                "{name} must be a value or a list of values, not {kind}"
                            ),
                            origin: Some(origin),
                        }),
                    }
                }
            }
        }
    }
    layer
}

/// A scalar or a list of scalars as text.
pub(super) fn scalars(item: &Item) -> Result<Vec<String>, &'static str> {
    match &item.node {
        Node::Scalar(s) => Ok(vec![s.clone()]),
        Node::Seq(items) => items
            .iter()
            .map(|i| i.node.as_scalar().map(str::to_string).ok_or(i.node.kind()))
            .collect(),
        Node::Null => Ok(Vec::new()),
        other => Err(other.kind()),
    }
}

/// Every string of the file with a NUL byte (`"\0"` in a double-quoted YAML
/// string). None can be passed on: an argument, a path or an environment
/// variable ends at the first NUL, so the app would not start (71) or an
/// exec probe would fail forever. `check` refuses it instead, naming where.
fn refuse_nul_bytes(
    item: &Item,
    name: &str,
    at: &dyn Fn(u64) -> Origin,
    problems: &mut Vec<Problem>,
) {
    match &item.node {
        Node::Scalar(s) if s.contains('\0') => {
            let name = if name.is_empty() { "the value" } else { name };
            // A kuma-dp argument may carry an inline dataplane token, which
            // is never shown: the key, index and line say where it is.
            let shown = if name.contains("kuma-dp-arg") || name.contains("token") {
                String::new()
            } else {
                format!(" \"{}\"", s.escape_debug())
            };
            problems.push(Problem {
                message: format!(
                    "{name}{shown} contains a NUL byte (\\0), which no argument, path or environment variable can hold; remove it"
                ),
                origin: Some(at(item.line)),
            })
        }
        Node::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                refuse_nul_bytes(it, &format!("{name}[{i}]"), at, problems);
            }
        }
        Node::Map(entries) => {
            for e in entries {
                let key = if name.is_empty() {
                    e.key.clone()
                } else {
                    format!("{name}.{}", e.key)
                };
                refuse_nul_bytes(&e.value, &key, at, problems);
            }
        }
        _ => {}
    }
}
