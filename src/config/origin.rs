//! Where a value came from (a file position, an environment variable or a flag), for
//! locating diagnostics and for `devbox config --explain`.

use figment::value::Value;
use figment::{Figment, Profile, Provider};

use super::diagnostic::{KeyPath, Origin, Seg};
use super::source::{Point, SourceFile};
use super::Loaded;

/// The value at `path`, walking dicts and arrays.
pub(super) fn value_at<'a>(root: &'a Value, path: &KeyPath) -> Option<&'a Value> {
    let mut v = root;
    for seg in &path.0 {
        v = match (seg, v) {
            (Seg::Key(k), Value::Dict(_, d)) => d.get(k)?,
            (Seg::Index(i), Value::Array(_, a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Where the value at `path` came from: a file position, an environment variable or a flag.
pub(super) fn locate(
    figment: &Figment,
    root: &Value,
    sources: &[SourceFile],
    path: &KeyPath,
    point: Point,
) -> Option<Origin> {
    // The deepest existing value tells which provider supplied it.
    let mut p = path.clone();
    let meta = loop {
        if let Some(v) = value_at(root, &p) {
            if let Some(m) = figment.get_metadata(v.tag()) {
                break Some((m, p.clone()));
            }
        }
        if p.0.pop().is_none() {
            break None;
        }
    };
    if let Some((m, found)) = &meta {
        if m.name.contains("environment") || m.name == "command-line flag" {
            let keys: Vec<String> = found
                .0
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => k.clone(),
                    Seg::Index(i) => i.to_string(),
                })
                .collect();
            return Some(if m.name == "command-line flag" {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                Origin::Flag {
                    flag: m.interpolate(&Profile::Default, &keys),
                }
            } else {
                let generic = format!("DEVBOX__{}", keys.join("__").to_uppercase());
                let name = match keys.join(".").as_str() {
                    _ if std::env::var_os(&generic).is_some() => generic,
                    "project.engine" => "DEVBOX_ENGINE".to_owned(),
                    "project.name" => "DEVBOX_PROJECT_NAME".to_owned(),
                    _ => generic,
                };
                Origin::Env { var: name }
            });
        }
    }
    if let Some((m, _)) = &meta {
        if m.name == "devbox default" {
            return None;
        }
        if let Some(figment::Source::File(f)) = &m.source {
            if let Some(s) = sources.iter().find(|s| &s.path == f) {
                return s.locate(path, point);
            }
        }
    }
    // Files, highest priority first: the first that holds the key is where it was written.
    sources
        .iter()
        .rev()
        .find(|s| s.contains(path))
        .or_else(|| sources.first())
        .and_then(|s| s.locate(path, point))
}

/// Where `key` is in the loaded files (or the nearest enclosing entry that is).
pub fn locate_key(loaded: &Loaded, key: &KeyPath, point: Point) -> Option<Origin> {
    locate(&loaded.figment, &loaded.root, &loaded.sources, key, point)
}

/// Where the value of `key` (dotted) came from, for `devbox config --explain`.
pub fn explain(loaded: &Loaded, key: &str) -> Option<String> {
    let path = KeyPath(
        key.split('.')
            .map(|s| match s.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(s.to_owned()),
            })
            .collect(),
    );
    let root = loaded
        .figment
        .data()
        .ok()
        .and_then(|mut m| m.remove(&Profile::Default))
        .map(Value::from)?;
    let value = value_at(&root, &path)?;
    let meta = loaded.figment.get_metadata(value.tag());
    let origin = locate(&loaded.figment, &root, &loaded.sources, &path, Point::Value);
    let shown = serde_json::to_string(&value_to_json(value)).unwrap_or_default();
    let from = match (origin, meta) {
        (
            Some(Origin::File {
                file, line, column, ..
            }),
            _,
        ) => format!("{}:{line}:{column}", file.display()),
        (Some(Origin::Env { var }), _) => format!("environment variable {var}"),
        (Some(Origin::Flag { flag }), _) => format!("command-line flag {flag}"),
        (None, Some(m)) => m.name.to_string(),
        (None, None) => "unknown".to_owned(),
    };
    let mut out = format!("{key} = {shown}\n  from {from}");
    // `auto` as written, `native` as resolved: say which and why.
    if key == "project.engine" {
        if let Some(reason) = &loaded.config.project.engine_reason {
            out.push_str(&format!("\n  resolved: {reason}"));
        }
    }
    Some(out)
}

fn value_to_json(v: &Value) -> serde_json::Value {
    v.deserialize::<serde_json::Value>()
        .unwrap_or(serde_json::Value::Null)
}
