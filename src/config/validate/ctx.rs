//! What one validation run carries: the project directory, the names that exist, and the
//! diagnostics found so far; and the checks of names and of references to them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Names, Pending};
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::source::Point;

pub(super) struct Ctx<'a> {
    pub(super) dir: &'a Path,
    pub(super) names: &'a Names,
    pub(super) out: Vec<Pending>,
    /// For each service, the index in the file of each resolved port.
    pub(super) port_index: BTreeMap<String, Vec<usize>>,
    /// The project directory with symlinks resolved, computed once.
    pub(super) canon_dir: Option<PathBuf>,
    /// Regular expressions already compiled once and found valid.
    pub(super) valid_regexes: BTreeSet<String>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(dir: &'a Path, names: &'a Names) -> Self {
        Self {
            dir,
            names,
            out: Vec::new(),
            port_index: BTreeMap::new(),
            canon_dir: dir.canonicalize().ok(),
            valid_regexes: BTreeSet::new(),
        }
    }

    /// A problem with a value, shown at the value.
    pub(super) fn err(&mut self, d: Diagnostic) {
        self.out.push((d, Point::Value));
    }

    /// A problem with a key or a whole entry, shown at the key.
    pub(super) fn err_key(&mut self, d: Diagnostic) {
        self.out.push((d, Point::Key));
    }
}

pub(super) fn check_name(cx: &mut Ctx, path: &KeyPath, name: &str, what: &str, is_value: bool) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        let d = Diagnostic::error(path.clone(), format!("invalid {what} `{name}`"))
            .expected("1 to 63 lower-case letters, digits, `-` or `_`, starting and ending with a letter or digit")
            .hint("names become container, volume and network names, which engines restrict");
        if is_value {
            cx.err(d);
        } else {
            cx.err_key(d);
        }
    }
}

pub(super) fn reference(
    cx: &mut Ctx,
    path: &KeyPath,
    what: &str,
    name: &str,
    known: &BTreeSet<String>,
    section: &str,
) -> bool {
    if known.contains(name) {
        return true;
    }
    let mut d = Diagnostic::error(path.clone(), format!("unknown {what} `{name}`"));
    d = if known.is_empty() {
        d.expected(format!(
            "a {what} defined in [{section}], but there are none"
        ))
        .hint(format!("add [{section}.{name}]"))
    } else {
        d = d.expected(format!(
            "one of {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        d.suggest(name, known.iter().map(String::as_str))
            .or_hint(format!("add [{section}.{name}]"))
    };
    cx.err(d);
    false
}
