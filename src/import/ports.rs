//! A service's `ports`, short and long form, as devbox's `[ip:]host:container[/proto]`.

use toml_edit::{Array, Table};

use super::yaml::{Node, V};
use super::{Ctx, Mode};
use crate::config::diagnostic::KeyPath;

pub(super) fn ports(ctx: &mut Ctx, t: &mut Table, kp: &KeyPath, yp: &str, v: &Node) {
    let mut out = Array::new();
    let mut defaulted = false;
    for item in v.items() {
        let (ip, host, container, proto) = match &item.v {
            V::Map(_) => {
                let Some(target) = item.get("target").and_then(Node::text) else {
                    ctx.unmapped(yp, item.at, "a port without `target`");
                    continue;
                };
                (
                    item.get("host_ip").and_then(Node::text),
                    item.get("published").and_then(Node::text),
                    target,
                    item.get("protocol").and_then(Node::text),
                )
            }
            _ => {
                let Some(s) = item.text() else { continue };
                let (body, proto) = match s.rsplit_once('/') {
                    Some((b, p)) => (b.to_owned(), Some(p.to_owned())),
                    None => (s.clone(), None),
                };
                // [ip:]host:container, container; IPv6 addresses in brackets.
                let (ip, rest) = if let Some(r) = body.strip_prefix('[') {
                    match r.split_once("]:") {
                        Some((ip, rest)) => (Some(ip.to_owned()), rest.to_owned()),
                        None => (None, body.clone()),
                    }
                } else {
                    let parts: Vec<&str> = body.split(':').collect();
                    if parts.len() == 3 {
                        (
                            Some(parts[0].to_owned()),
                            format!("{}:{}", parts[1], parts[2]),
                        )
                    } else {
                        (None, body.clone())
                    }
                };
                let (host, container) = match rest.split_once(':') {
                    Some((h, c)) => (Some(h.to_owned()), c.to_owned()),
                    None => (None, rest),
                };
                (ip, host.filter(|h| !h.is_empty()), container, proto)
            }
        };
        if container.contains('-') || host.as_deref().is_some_and(|h| h.contains('-')) {
            ctx.unmapped(yp, item.at, "port ranges are not supported; list each port");
            continue;
        }
        let ip = match ip.filter(|i| !i.is_empty()) {
            Some(i) => i,
            None if ctx.mode == Mode::Audit => "0.0.0.0".to_owned(),
            None => {
                defaulted = true;
                "127.0.0.1".to_owned()
            }
        };
        if host.is_none() && ctx.mode == Mode::Import {
            ctx.note(
                yp,
                item.at,
                format!("compose publishes container port {container} on a random host port; devbox publishes it on host port {container}"),
            );
        }
        let host = host.unwrap_or_else(|| container.clone());
        let ip_shown = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip
        };
        let proto = proto.map(|p| format!("/{p}")).unwrap_or_default();
        ctx.at(kp.index(out.len()), item.at);
        out.push(format!("{ip_shown}:{host}:{container}{proto}"));
    }
    if defaulted {
        ctx.note(
            yp,
            v.at,
            "ports without an address now bind 127.0.0.1 only (compose binds every address); write 0.0.0.0 to publish on the network",
        );
    }
    if !out.is_empty() {
        t.insert("ports", toml_edit::value(out));
    }
}
