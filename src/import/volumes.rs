//! Storage: the top-level `volumes` and each service's `volumes` (named volumes, binds,
//! tmpfs), with the mount options and propagation devbox cannot express.

use std::path::Path;

use toml_edit::{Array, InlineTable, Item, Table, Value};

use super::values::{labels, normalize, string_table};
use super::yaml::{Node, V};
use super::{Ctx, Extra};
use crate::config::diagnostic::KeyPath;

pub(super) fn volumes(ctx: &mut Ctx, node: Option<&Node>) -> Option<Table> {
    let node = node?;
    let mut out = Table::new();
    out.set_implicit(true);
    for (name, at, n) in node.entries() {
        let path = format!("volumes.{name}");
        ctx.at(KeyPath::root().key("volumes").key(name.as_str()), *at);
        let mut t = Table::new();
        for (k, kat, v) in n.entries() {
            match k.as_str() {
                "labels" => {
                    let l = labels(v);
                    if !l.is_empty() {
                        t.insert("labels", Item::Table(string_table(&l)));
                    }
                }
                "external" => ctx.unmapped(
                    &format!("{path}.{k}"),
                    *kat,
                    "devbox creates the volume as PROJECT_NAME; copy the data over if it must be kept",
                ),
                _ => ctx.unmapped(
                    &format!("{path}.{k}"),
                    *kat,
                    "devbox creates local volumes with the engine's default driver",
                ),
            }
        }
        out.insert(name, Item::Table(t));
    }
    (!out.is_empty()).then_some(out)
}

/// One entry of a service's `volumes`, long or short form, before devbox writes it.
struct Mount {
    kind: String,
    source: Option<String>,
    target: String,
    ro: bool,
    propagation: Option<String>,
    extra_opts: Vec<String>,
}

pub(super) fn mounts(ctx: &mut Ctx, t: &mut Table, key: &KeyPath, yp: &str, v: &Node) {
    let kp = key.key("volumes");
    let mut out = Array::new();
    let mut tmpfs = Vec::new();
    for item in v.items() {
        let m = match &item.v {
            V::Map(_) => match long_form(ctx, yp, item, &mut tmpfs) {
                Some(m) => m,
                None => continue,
            },
            _ => {
                let Some(s) = item.text() else { continue };
                match short_form(&s) {
                    Some(m) => m,
                    None => continue,
                }
            }
        };
        let Mount {
            kind,
            source,
            target,
            ro,
            propagation,
            extra_opts,
        } = m;
        if kind == "tmpfs" {
            tmpfs.push(target);
            continue;
        }
        for o in &extra_opts {
            ctx.unmapped(yp, item.at, format!("mount option `{o}` is not supported (devbox does not relabel or change consistency)"));
        }
        if let Some(p) = &propagation {
            if p == "shared" || p == "rshared" {
                ctx.extra.push(Extra {
                    rule: "DBX037",
                    key: kp.index(out.len()),
                    at: item.at,
                    message: format!("{target} is mounted with {p} propagation"),
                });
            }
            if p != "private" && p != "rprivate" {
                ctx.unmapped(
                    yp,
                    item.at,
                    format!("mount propagation `{p}` is not supported; devbox mounts are private"),
                );
            }
        }
        let Some(source) = source else {
            ctx.unmapped(
                yp,
                item.at,
                format!("anonymous volume at {target}: declare a named volume, or use tmpfs"),
            );
            continue;
        };
        let entry: Value = if kind == "bind" {
            let (src, outside) = bind_source(ctx.dir, &source);
            if outside || ro {
                let mut it = InlineTable::new();
                it.insert("source", src.as_str().into());
                it.insert("target", target.as_str().into());
                if ro {
                    it.insert("read_only", true.into());
                }
                if outside {
                    it.insert("allow_outside", true.into());
                }
                it.into()
            } else {
                format!("{src}:{target}").into()
            }
        } else {
            format!("{source}:{target}{}", if ro { ":ro" } else { "" }).into()
        };
        ctx.at(kp.index(out.len()), item.at);
        out.push(entry);
    }
    if !out.is_empty() {
        t.insert("volumes", toml_edit::value(out));
        if let Some(at) = v.items().first().map(|n| n.at) {
            ctx.at(kp, at);
        }
    }
    if !tmpfs.is_empty() {
        append_tmpfs(t, tmpfs);
    }
}

/// The long form (`type:`, `source:`, `target:` …). A sized tmpfs goes straight to
/// `tmpfs` (`None`).
fn long_form(ctx: &mut Ctx, yp: &str, item: &Node, tmpfs: &mut Vec<String>) -> Option<Mount> {
    let kind = item
        .get("type")
        .and_then(Node::text)
        .unwrap_or("volume".into());
    for (mk, mat, _) in item.entries() {
        if !matches!(
            mk.as_str(),
            "type" | "source" | "target" | "read_only" | "bind" | "tmpfs" | "volume"
        ) {
            ctx.unmapped(&format!("{yp}.{mk}"), *mat, "not supported");
        }
    }
    let prop = item
        .get("bind")
        .and_then(|b| b.get("propagation"))
        .and_then(Node::text);
    if let Some(sz) = item
        .get("tmpfs")
        .and_then(|b| b.get("size"))
        .and_then(Node::text)
    {
        if kind == "tmpfs" {
            if let Some(tg) = item.get("target").and_then(Node::text) {
                tmpfs.push(format!("{tg}:size={sz}"));
            }
            return None;
        }
    }
    Some(Mount {
        kind,
        source: item.get("source").and_then(Node::text),
        target: item.get("target").and_then(Node::text).unwrap_or_default(),
        ro: item.get("read_only").and_then(Node::bool).unwrap_or(false),
        propagation: prop,
        extra_opts: Vec::new(),
    })
}

/// The short form, `[SOURCE:]TARGET[:OPTIONS]`.
fn short_form(s: &str) -> Option<Mount> {
    let parts: Vec<&str> = s.splitn(3, ':').collect();
    match parts.as_slice() {
        [target] => Some(Mount {
            kind: "volume".into(),
            source: None,
            target: (*target).to_owned(),
            ro: false,
            propagation: None,
            extra_opts: Vec::new(),
        }),
        [src, target] | [src, target, _] => {
            let opts: Vec<String> = parts
                .get(2)
                .map(|o| o.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            let ro = opts.iter().any(|o| o == "ro");
            let prop = opts
                .iter()
                .find(|o| {
                    matches!(
                        o.as_str(),
                        "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
                    )
                })
                .cloned();
            let extra: Vec<String> = opts
                .iter()
                .filter(|o| !matches!(o.as_str(), "ro" | "rw") && Some(*o) != prop.as_ref())
                .cloned()
                .collect();
            let kind = if src.starts_with(['.', '/', '~']) {
                "bind"
            } else {
                "volume"
            };
            Some(Mount {
                kind: kind.into(),
                source: Some((*src).to_owned()),
                target: (*target).to_owned(),
                ro,
                propagation: prop,
                extra_opts: extra,
            })
        }
        _ => None,
    }
}

/// Adds to the service's `tmpfs` list: compose has both a `tmpfs` key and tmpfs volumes.
pub(super) fn append_tmpfs(t: &mut Table, paths: impl IntoIterator<Item = String>) {
    let mut arr = t
        .get("tmpfs")
        .and_then(Item::as_array)
        .cloned()
        .unwrap_or_default();
    for p in paths {
        arr.push(p);
    }
    t.insert("tmpfs", toml_edit::value(arr));
}

/// A bind source as devbox writes it, and whether it leaves the project.
fn bind_source(dir: &Path, src: &str) -> (String, bool) {
    let expanded = match src.strip_prefix('~') {
        Some(rest) => std::env::var("HOME").unwrap_or_default() + rest,
        None => src.to_owned(),
    };
    let p = Path::new(&expanded);
    if p.is_absolute() {
        let inside = normalize(p).starts_with(normalize(dir));
        return (expanded.clone(), !inside);
    }
    let n = normalize(p);
    let outside = n.starts_with("..");
    let shown = if outside || n.as_os_str().is_empty() {
        expanded.clone()
    } else {
        format!("./{}", n.display())
    };
    (shown, outside)
}
