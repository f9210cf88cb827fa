//! Small readings of compose nodes and writings of TOML values that every part of the
//! conversion shares.

use std::path::{Component, Path, PathBuf};

use toml_edit::{Array, Table, Value};

use super::yaml::{Loc, Node, V};

/// A compose project name as devbox accepts it: lowercase letters, digits, `-`.
pub(super) fn sanitize_name(s: &str) -> String {
    let n: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let n = n.trim_matches('-').to_owned();
    if n.is_empty() {
        "imported".into()
    } else {
        n
    }
}

/// The labels devbox sets itself (its rendered files carry them).
fn is_devbox_label(k: &str) -> bool {
    crate::plan::names::RENDERED_LABELS.contains(&k)
}

/// `labels` as a map or a list of `K=V`, without devbox's own.
pub(super) fn labels(node: &Node) -> Vec<(String, String, Loc)> {
    match &node.v {
        V::Map(m) => m
            .iter()
            .filter(|(k, ..)| !is_devbox_label(k))
            .map(|(k, at, v)| (k.clone(), v.text().unwrap_or_default(), *at))
            .collect(),
        V::Seq(items) => items
            .iter()
            .filter_map(|i| {
                let t = i.text()?;
                let (k, v) = t.split_once('=').unwrap_or((t.as_str(), ""));
                (!is_devbox_label(k)).then(|| (k.to_owned(), v.to_owned(), i.at))
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn string_table(pairs: &[(String, String, Loc)]) -> Table {
    let mut t = Table::new();
    for (k, v, _) in pairs {
        t.insert(k, toml_edit::value(v.as_str()));
    }
    t
}

/// `KEY=VALUE` lists or maps, as compose writes `environment`, `sysctls`, `build.args`.
pub(super) fn pairs(node: &Node) -> Vec<(String, Option<String>, Loc)> {
    match &node.v {
        V::Map(m) => m
            .iter()
            .map(|(k, at, v)| (k.clone(), v.text(), *at))
            .collect(),
        V::Seq(items) => items
            .iter()
            .filter_map(|i| {
                let t = i.text()?;
                Some(match t.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned()), i.at),
                    None => (t, None, i.at),
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A command as compose reads it: a list as is, a string split like a shell would.
pub(super) fn argv(node: &Node) -> Option<Vec<String>> {
    match &node.v {
        V::Seq(items) => Some(items.iter().filter_map(Node::text).collect()),
        _ => shlex::split(&node.text()?),
    }
}

pub(super) fn str_array<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Array {
    let mut a = Array::new();
    for i in items {
        a.push(i.as_ref());
    }
    a
}

/// Resolves `..` and `.` without touching the file system.
pub(super) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

pub(super) fn scalar_value(v: &Node) -> Option<Value> {
    match &v.v {
        V::Int(i) => Some((*i).into()),
        _ => v.text().map(Into::into),
    }
}
