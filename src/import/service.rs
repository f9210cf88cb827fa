//! One compose service as a devbox `[services.NAME]` table: its image, its keys one by
//! one, then what the mode gives the knobs the file leaves unset.

use std::collections::BTreeSet;

use toml_edit::{Array, Item, Table};

use super::diagnostics::{HARDENED, UNMAPPED};
use super::healthcheck::{healthcheck, shorten_http};
use super::keys;
use super::networks::service_networks;
use super::ports::ports;
use super::values::{argv, labels, scalar_value, str_array, string_table};
use super::volumes::{append_tmpfs, mounts};
use super::yaml::{Loc, Node};
use super::{build, Ctx, Extra, Mode};
use crate::config::diagnostic::KeyPath;

/// A service being converted.
pub(super) struct Service<'a> {
    pub(super) name: &'a str,
    /// Where the service is: its devbox key, its dotted compose path, its line.
    pub(super) key: KeyPath,
    pub(super) path: String,
    pub(super) at: Loc,
    pub(super) node: &'a Node,
    /// The devbox table written so far.
    pub(super) t: Table,
    /// The hardened knobs the compose file sets itself.
    pub(super) set: BTreeSet<&'static str>,
}

pub(super) fn service(ctx: &mut Ctx, name: &str, at: Loc, node: &Node) -> Table {
    let mut s = Service {
        name,
        key: KeyPath::root().key("services").key(name),
        path: format!("services.{name}"),
        at,
        node,
        t: Table::new(),
        set: BTreeSet::new(),
    };
    build::image(ctx, &mut s);
    for (k, kloc, v) in node.entries() {
        entry(ctx, &mut s, k, *kloc, v);
    }
    shorten_http(&mut s.t);
    defaults(ctx, &mut s);
    s.t
}

/// One key of the service.
fn entry(ctx: &mut Ctx, s: &mut Service, k: &str, kloc: Loc, v: &Node) {
    let kp = s.key.key(k);
    let yp = format!("{}.{k}", s.path);
    let (t, set, key, node) = (&mut s.t, &mut s.set, &s.key, s.node);
    match k {
        "image" | "build" => {}
        "command" | "entrypoint" => {
            if let Some(a) = argv(v) {
                t.insert(k, toml_edit::value(str_array(&a)));
                ctx.at(kp, kloc);
            } else {
                ctx.unmapped(&yp, kloc, "could not split this command like a shell");
            }
        }
        "environment" => keys::environment(ctx, t, key, &yp, kloc, v),
        "env_file" => {
            let files: Vec<String> = v
                .items()
                .into_iter()
                .filter_map(|i| i.text().or_else(|| i.get("path").and_then(Node::text)))
                .collect();
            t.insert("env_file", toml_edit::value(str_array(&files)));
            ctx.at(kp, kloc);
        }
        "user" => {
            if let Some(u) = v.text() {
                t.insert("user", toml_edit::value(u));
                set.insert("user");
                ctx.at(kp, kloc);
            }
        }
        "userns_mode" => match v.text().as_deref() {
            Some(m) if m == "host" || m == "auto" || m.starts_with("keep-id") => {
                t.insert("userns", toml_edit::value(m));
                ctx.at(key.key("userns"), kloc);
            }
            _ => ctx.unmapped(&yp, kloc, "only keep-id, host and auto are supported"),
        },
        "working_dir" => {
            if let Some(w) = v.text() {
                t.insert("workdir", toml_edit::value(w));
                ctx.at(key.key("workdir"), kloc);
            }
        }
        "ports" => ports(ctx, t, &kp, &yp, v),
        "volumes" => mounts(ctx, t, key, &yp, v),
        "tmpfs" => {
            append_tmpfs(t, v.items().into_iter().filter_map(Node::text));
            ctx.at(kp, kloc);
        }
        "read_only" | "privileged" => {
            if let Some(b) = v.bool() {
                t.insert(k, toml_edit::value(b));
                set.insert(if k == "read_only" {
                    "read_only"
                } else {
                    "privileged"
                });
                ctx.at(kp, kloc);
            }
        }
        "cap_drop" | "cap_add" => {
            let caps: Vec<String> = v.items().into_iter().filter_map(Node::text).collect();
            t.insert(k, toml_edit::value(str_array(&caps)));
            if k == "cap_drop" {
                set.insert("cap_drop");
            }
            for (i, item) in v.items().into_iter().enumerate() {
                ctx.at(kp.index(i), item.at);
            }
            ctx.at(kp, kloc);
        }
        "security_opt" => keys::security_opt(ctx, t, set, key, kloc, v),
        "mem_limit" => {
            if let Some(val) = scalar_value(v) {
                t.insert("memory", toml_edit::value(val));
                ctx.at(key.key("memory"), kloc);
            }
        }
        "cpus" => {
            if let Some(c) = v.text().and_then(|s| s.parse::<f64>().ok()) {
                t.insert("cpus", toml_edit::value(c));
                ctx.at(kp, kloc);
            }
        }
        "pids_limit" => {
            if let Some(p) = v.text().and_then(|s| s.parse::<i64>().ok()) {
                t.insert("pids_limit", toml_edit::value(if p <= 0 { -1 } else { p }));
                set.insert("pids_limit");
                ctx.at(kp, kloc);
            }
        }
        "deploy" => keys::deploy(ctx, t, key, &yp, v, set),
        "ulimits" => keys::ulimits(ctx, t, &kp, &yp, v),
        "networks" => service_networks(ctx, t, node, &kp, &yp, v),
        "network_mode" | "restart" | "pid" | "ipc" => {
            if let Some(m) = v.text() {
                t.insert(k, toml_edit::value(m));
                ctx.at(kp, kloc);
            }
        }
        "depends_on" => keys::depends_on(ctx, t, &kp, &yp, kloc, v),
        "healthcheck" => healthcheck(ctx, t, &kp, &yp, kloc, v),
        "labels" => {
            let l = labels(v);
            for (lk, _, lat) in &l {
                ctx.at(kp.key(lk.as_str()), *lat);
            }
            if !l.is_empty() {
                t.insert("labels", Item::Table(string_table(&l)));
            }
        }
        "devices" => keys::devices(ctx, t, &kp, &yp, kloc, v),
        "sysctls" => keys::sysctls(ctx, t, &kp, v),
        "extra_hosts" => keys::extra_hosts(ctx, t, &kp, kloc, v),
        "uts" => {
            if v.text().as_deref() == Some("host") {
                ctx.extra.push(Extra {
                    rule: "DBX036",
                    key: key.key("uts"),
                    at: kloc,
                    message: format!("service {} shares the host's UTS namespace", s.name),
                });
            }
            ctx.unmapped(&yp, kloc, "devbox never shares the host's UTS namespace");
        }
        k if k.starts_with("x-") => {}
        other => match UNMAPPED.iter().find(|(u, _)| *u == other) {
            Some((_, why)) => ctx.unmapped(&yp, kloc, *why),
            None => ctx.unmapped(&yp, kloc, "unknown compose key"),
        },
    }
}

/// The knobs the compose file leaves unset: what compose runs with (audit), or a note
/// that devbox's hardened defaults apply (import).
fn defaults(ctx: &mut Ctx, s: &mut Service) {
    let (t, set) = (&mut s.t, &s.set);
    match ctx.mode {
        Mode::Audit => {
            // What compose runs with when the file says nothing.
            if !set.contains("user") {
                t.insert("user", toml_edit::value("0:0"));
            }
            if !set.contains("read_only") {
                t.insert("read_only", toml_edit::value(false));
            }
            if !set.contains("cap_drop") {
                t.insert("cap_drop", toml_edit::value(Array::new()));
            }
            if !set.contains("no_new_privileges") {
                t.insert("no_new_privileges", toml_edit::value(false));
            }
            if !set.contains("pids_limit") {
                t.insert("pids_limit", toml_edit::value(-1));
            }
        }
        Mode::Import => {
            let hardened: Vec<String> = HARDENED
                .iter()
                .filter(|(k, _)| !set.contains(k))
                .map(|(_, d)| (*d).to_owned())
                .collect();
            if !hardened.is_empty() {
                ctx.note(
                    &s.path,
                    s.at,
                    format!(
                        "devbox's hardened defaults apply (compose ran it without them): {}; set a key if the service needs otherwise",
                        hardened.join(", ")
                    ),
                );
            }
        }
    }
}
