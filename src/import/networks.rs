//! Networks: the top-level `networks` and each service's `networks`, with compose's
//! implicit `default` network as devbox renders it.

use toml_edit::{Item, Table};

use super::values::{labels, str_array, string_table};
use super::yaml::{Loc, Node, V};
use super::Ctx;
use crate::config::diagnostic::KeyPath;

pub(super) fn networks(ctx: &mut Ctx, node: Option<&Node>) -> Option<Table> {
    let node = node?;
    let mut out = Table::new();
    out.set_implicit(true);
    for (name, at, n) in node.entries() {
        let path = format!("networks.{name}");
        let key = KeyPath::root().key("networks").key(name.as_str());
        ctx.at(key.clone(), *at);
        let mut t = Table::new();
        let mut only_devbox = true;
        for (k, kat, v) in n.entries() {
            match k.as_str() {
                "internal" => {
                    if v.bool() == Some(true) {
                        ctx.internal.insert(name.clone());
                        t.insert("internal", toml_edit::value(true));
                        ctx.at(key.key("internal"), *kat);
                    }
                    only_devbox = false;
                }
                "labels" => {
                    let l = labels(v);
                    if !l.is_empty() {
                        only_devbox = false;
                        t.insert("labels", Item::Table(string_table(&l)));
                    }
                }
                "name" | "driver" | "driver_opts" | "ipam" | "external" | "attachable"
                | "enable_ipv6" => {
                    only_devbox = false;
                    ctx.unmapped(
                        &format!("{path}.{k}"),
                        *kat,
                        "devbox creates its networks itself (bridge, named PROJECT_KEY)",
                    );
                }
                _ => {
                    only_devbox = false;
                    ctx.unmapped(&format!("{path}.{k}"), *kat, "unknown network key");
                }
            }
        }
        // Compose's implicit `default` network, as devbox renders it, is devbox's own.
        if name == "default" && only_devbox {
            continue;
        }
        ctx.declared_networks.insert(name.clone());
        out.insert(name, Item::Table(t));
    }
    (!out.is_empty()).then_some(out)
}

pub(super) fn service_networks(
    ctx: &mut Ctx,
    t: &mut Table,
    node: &Node,
    kp: &KeyPath,
    yp: &str,
    v: &Node,
) {
    let names: Vec<(String, Loc)> = match &v.v {
        V::Seq(items) => items
            .iter()
            .filter_map(|i| Some((i.text()?, i.at)))
            .collect(),
        V::Map(m) => {
            for (n, _, spec) in m {
                for (sk, sat, _) in spec.entries() {
                    ctx.unmapped(&format!("{yp}.{n}.{sk}"), *sat, "services reach each other by service name; aliases and fixed addresses are not supported");
                }
            }
            m.iter().map(|(n, a, _)| (n.clone(), *a)).collect()
        }
        _ => Vec::new(),
    };
    let publishes = node.get("ports").is_some_and(|p| !p.items().is_empty());
    let others: Vec<&(String, Loc)> = names.iter().filter(|(n, _)| n != "default").collect();
    let has_default = others.len() != names.len();
    // devbox joins `default` by itself when a service names no network, or publishes
    // ports but names only internal ones.
    let implied =
        others.is_empty() || (publishes && others.iter().all(|(n, _)| ctx.internal.contains(n)));
    let keep_default = has_default && !implied && !ctx.declared_networks.contains("default");
    let mut list: Vec<String> = Vec::new();
    for (n, a) in &names {
        if n == "default" && !keep_default && !ctx.declared_networks.contains("default") {
            continue;
        }
        ctx.at(kp.index(list.len()), *a);
        list.push(n.clone());
    }
    if keep_default {
        // Compose's implicit network, made explicit for devbox.
        ctx.declared_networks.insert("default".into());
        ctx.note(
            yp,
            v.at,
            "compose's implicit `default` network is declared as [networks.default]",
        );
    }
    if !list.is_empty() {
        t.insert("networks", toml_edit::value(str_array(&list)));
    }
}
