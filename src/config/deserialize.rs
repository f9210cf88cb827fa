//! Deserializing the merged tree section by section and entry by entry, so that one run
//! reports every problem; figment's errors turned into diagnostics.

use std::collections::BTreeMap;

use figment::error::Kind;
use figment::value::{Dict, Value};
use serde::de::DeserializeOwned;

use super::diagnostic::{self, Diagnostic, KeyPath, Seg};
use super::origin::value_at;
use super::raw;
use super::source::Point;
use super::validate::{self, Names, Parsed};

const SECTIONS: &[&str] = &[
    "project", "data", "images", "volumes", "networks", "services", "probes", "workers",
];

/// Deserializes section by section and entry by entry, so that a bad service does not
/// hide a bad probe.
pub(super) fn parse_entries(root_value: &Value) -> (Parsed, Names, Vec<validate::Pending>) {
    let mut out = Vec::new();
    let mut parsed = Parsed::default();
    let mut names = Names::default();
    let empty = Dict::new();
    let root = root_value.as_dict().unwrap_or(&empty);
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let d = Diagnostic::error(KeyPath::root().key(key), format!("unknown key `{key}`"))
                .expected(format!("one of {}", SECTIONS.join(", ")));
            let d = d
                .suggest(key, SECTIONS.iter().copied())
                .or_hint("see `devbox schema` for every key");
            out.push((d, Point::Key));
        }
    }

    fn one<T: DeserializeOwned>(
        v: &Value,
        path: &KeyPath,
        root: &Value,
        out: &mut Vec<validate::Pending>,
    ) -> Option<T> {
        match v.deserialize::<T>() {
            Ok(t) => Some(t),
            Err(e) => retry_without_bad_keys(v, e, path, root, out),
        }
    }
    /// The entries of a table section, borrowed; a section of the wrong type is reported.
    fn entries<'a>(
        root: &'a Dict,
        section: &str,
        root_value: &Value,
        out: &mut Vec<validate::Pending>,
    ) -> Vec<(&'a String, &'a Value)> {
        match root.get(section) {
            None => Vec::new(),
            Some(Value::Dict(_, d)) => d.iter().collect(),
            Some(v) => {
                let _ = one::<BTreeMap<String, Value>>(
                    v,
                    &KeyPath::root().key(section),
                    root_value,
                    out,
                );
                Vec::new()
            }
        }
    }
    let base = KeyPath::root();
    if let Some(v) = root.get("project") {
        parsed.project = one(v, &base.key("project"), root_value, &mut out);
    }
    if let Some(v) = root.get("data") {
        // Entry by entry, so a bad dir does not hide a bad secret.
        let dp = base.key("data");
        if let Some(shell) = one::<DataShell>(v, &dp, root_value, &mut out) {
            let mut data = raw::RawData {
                root: shell.root,
                ..Default::default()
            };
            // Entries that failed are reported and left out; the config is invalid anyway.
            for (k, v) in shell.dirs {
                if let Some(d) = one(&v, &dp.key("dirs").key(&k), root_value, &mut out) {
                    data.dirs.insert(k, d);
                }
            }
            for (k, v) in shell.files {
                if let Some(f) = one(&v, &dp.key("files").key(&k), root_value, &mut out) {
                    data.files.insert(k, f);
                }
            }
            parsed.data = Some(data);
        }
    }
    macro_rules! section {
        ($name:literal, $field:ident, $names:expr) => {
            for (k, v) in entries(root, $name, root_value, &mut out) {
                $names.insert(k.clone());
                if let Some(t) = one(v, &base.key($name).key(k), root_value, &mut out) {
                    parsed.$field.insert(k.clone(), t);
                }
            }
        };
    }
    section!("images", images, names.images);
    section!("volumes", volumes, names.volumes);
    section!("networks", networks, names.networks);
    for (k, v) in entries(root, "services", root_value, &mut out) {
        names.services.insert(k.clone());
        let before = out.len();
        if let Some(t) = one(v, &base.key("services").key(k), root_value, &mut out) {
            parsed.services.insert(k.clone(), t);
        }
        if out.len() > before {
            parsed.repaired_services.insert(k.clone());
        }
    }
    let mut workers = std::collections::BTreeSet::new();
    section!("workers", workers, workers);
    if let Some(v) = root.get("probes") {
        if let Some(list) = one::<Vec<Value>>(v, &base.key("probes"), root_value, &mut out) {
            for (i, p) in list.iter().enumerate() {
                parsed
                    .probes
                    .push(one(p, &base.key("probes").index(i), root_value, &mut out));
            }
        }
    }
    (parsed, names, out)
}

/// serde stops at the first error in an entry. To report every problem in one run, the
/// offending key is removed and the entry deserialized again, until it parses or what
/// is left cannot (a required key was the bad one). The entry that finally parses is
/// still validated, so its other mistakes are found too; the config stays invalid.
fn retry_without_bad_keys<T: DeserializeOwned>(
    v: &Value,
    first: figment::Error,
    path: &KeyPath,
    root: &Value,
    out: &mut Vec<validate::Pending>,
) -> Option<T> {
    let mut cur = v.clone();
    let mut err = first;
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut suggested: Vec<Vec<String>> = Vec::new();
    for _ in 0..64 {
        let mut progressed = false;
        let mut blocked = false;
        for e in err {
            // A key we removed ourselves, or one a removed typo already suggests, is not
            // also reported as missing; but without it the entry cannot be built.
            if let Kind::MissingField(f) = &e.kind {
                let mut p = e.path.clone();
                p.push(f.to_string());
                if removed.contains(&p) || suggested.contains(&p) {
                    blocked = true;
                    continue;
                }
            }
            if let Kind::UnknownField(field, expected) = &e.kind {
                if let Some(s) = diagnostic::did_you_mean(field, expected.iter().copied()) {
                    let mut p = e.path.clone();
                    p.pop();
                    p.push(s.to_owned());
                    suggested.push(p);
                }
            }
            if let Some(k) = remove_nearest_key(&mut cur, &e.path) {
                removed.push(k);
                progressed = true;
            }
            out.extend(figment_diags(path, e, root));
        }
        if blocked || !progressed {
            return None;
        }
        match cur.deserialize::<T>() {
            Ok(t) => return Some(t),
            Err(e) => err = e,
        }
    }
    None
}

/// Removes the key at `segs`, or its nearest ancestor that is a key of a table (never
/// an array element, so that later indices keep pointing at the same items).
fn remove_nearest_key(v: &mut Value, segs: &[String]) -> Option<Vec<String>> {
    (1..=segs.len()).rev().find_map(|end| {
        let key = &segs[end - 1];
        match node_at(v, &segs[..end - 1])? {
            Value::Dict(_, d) => d.remove(key).map(|_| segs[..end].to_vec()),
            _ => None,
        }
    })
}

fn node_at<'a>(v: &'a mut Value, segs: &[String]) -> Option<&'a mut Value> {
    match segs.split_first() {
        None => Some(v),
        Some((s, rest)) => {
            let next = match v {
                Value::Dict(_, d) => d.get_mut(s)?,
                Value::Array(_, a) => a.get_mut(s.parse::<usize>().ok()?)?,
                _ => return None,
            };
            node_at(next, rest)
        }
    }
}

/// `[data]` with its entries still unparsed.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DataShell {
    root: Option<String>,
    #[serde(default)]
    dirs: BTreeMap<String, Value>,
    #[serde(default)]
    files: BTreeMap<String, Value>,
}

/// serde's words for TOML's: a sequence is a list, a map a table.
fn toml_words(s: &str) -> String {
    let mut out = s
        .replace("a sequence", "a list")
        .replace("a map", "a table")
        .replace("a boolean", "true or false");
    for (from, to) in [
        ("signed int `", "integer "),
        ("unsigned int `", "integer "),
        ("floating point `", "number "),
        ("bool `", ""),
    ] {
        if let Some(i) = out.find(from) {
            let rest = &out[i + from.len()..];
            if let Some(j) = rest.find('`') {
                out = format!("{}{to}{}{}", &out[..i], &rest[..j], &rest[j + 1..]);
            }
        }
    }
    match out.as_str() {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        _ => out,
    }
}

/// Turns figment's errors (paths relative to the deserialized value) into diagnostics.
pub(super) fn figment_diags(
    prefix: &KeyPath,
    err: figment::Error,
    root: &Value,
) -> Vec<validate::Pending> {
    err.into_iter()
        .map(|e| {
            let is_array = |p: &KeyPath| matches!(value_at(root, p), Some(Value::Array(..)));
            let path = KeyPath::from_figment(prefix, &e.path, &is_array);
            let key_name = match path.0.last() {
                Some(Seg::Key(k)) => k.clone(),
                Some(Seg::Index(i)) => format!("[{i}]"),
                None => String::new(),
            };
            match &e.kind {
                Kind::UnknownField(field, expected) => {
                    let d = Diagnostic::error(path.clone(), format!("unknown key `{field}`"))
                        .expected(format!("one of {}", expected.join(", ")));
                    let d = d
                        .suggest(field, expected.iter().copied())
                        .or_hint("see `devbox schema` for every key");
                    (d, Point::Key)
                }
                Kind::MissingField(field) => (
                    Diagnostic::error(path.clone(), format!("missing key `{field}`"))
                        .hint(format!("add `{field} = ...` to this table")),
                    Point::Key,
                ),
                Kind::InvalidType(actual, expected) => {
                    let mut d = Diagnostic::error(
                        path.clone(),
                        format!(
                            "wrong type for `{key_name}`: found {}",
                            toml_words(&actual.to_string())
                        ),
                    )
                    .expected(toml_words(expected));
                    if key_name == "mode" {
                        d = d.hint("write the mode as a quoted octal string, e.g. mode = \"0700\"");
                    } else if expected.contains("string") && !expected.contains("table") {
                        d = d.hint("quote the value");
                    }
                    (d, Point::Value)
                }
                Kind::InvalidValue(actual, expected) => (
                    Diagnostic::error(
                        path.clone(),
                        format!("invalid value for `{key_name}`: {actual}"),
                    )
                    .expected(expected.clone()),
                    Point::Value,
                ),
                Kind::UnknownVariant(v, expected) => {
                    let d = Diagnostic::error(
                        path.clone(),
                        format!("unknown value `{v}` for `{key_name}`"),
                    )
                    .expected(format!("one of {}", expected.join(", ")));
                    let d = d.suggest(v, expected.iter().copied());
                    (d, Point::Value)
                }
                Kind::Message(m) => (
                    Diagnostic::error(path.clone(), format!("invalid value for `{key_name}`"))
                        .expected(m.clone()),
                    Point::Value,
                ),
                Kind::InvalidLength(n, expected) => (
                    Diagnostic::error(
                        path.clone(),
                        format!("wrong number of items for `{key_name}`: {n}"),
                    )
                    .expected(expected.clone()),
                    Point::Value,
                ),
                other => (
                    Diagnostic::error(path.clone(), other.to_string()),
                    Point::Value,
                ),
            }
        })
        .collect()
}
