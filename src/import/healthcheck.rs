//! A service's `healthcheck` as devbox's `cmd`, `tcp` or `http` check, recognising the
//! checks devbox renders itself.

use toml_edit::{InlineTable, Item, Table, Value};

use super::values::str_array;
use super::yaml::{Loc, Node, V};
use super::Ctx;
use crate::config::diagnostic::KeyPath;

/// Parses a devbox-rendered tcp healthcheck back to its port.
pub(super) fn tcp_check_port(s: &str) -> Option<u16> {
    let port: u16 = s.rsplit_once("nc -z 127.0.0.1 ")?.1.trim().parse().ok()?;
    (crate::engine::tcp_check(port) == s).then_some(port)
}

pub(super) fn healthcheck(
    ctx: &mut Ctx,
    t: &mut Table,
    kp: &KeyPath,
    yp: &str,
    kloc: Loc,
    v: &Node,
) {
    if v.get("disable").and_then(Node::bool) == Some(true) {
        ctx.note(yp, kloc, "healthcheck disabled: the service has none");
        return;
    }
    let mut h = InlineTable::new();
    let test: Vec<String> = match v.get("test").map(|n| &n.v) {
        Some(V::Seq(items)) => items.iter().filter_map(Node::text).collect(),
        Some(_) => vec![
            "CMD-SHELL".into(),
            v.get("test").and_then(Node::text).unwrap_or_default(),
        ],
        None => Vec::new(),
    };
    match test.first().map(String::as_str) {
        Some("NONE") => {
            ctx.note(yp, kloc, "healthcheck NONE: the service has none");
            return;
        }
        Some("CMD") => {
            h.insert("cmd", Value::Array(str_array(&test[1..])));
        }
        Some("CMD-SHELL") => {
            let s = test[1..].join(" ");
            if let Some(port) = tcp_check_port(&s) {
                h.insert("tcp", i64::from(port).into());
            } else if let Some(url) = s
                .strip_prefix("wget -q -O /dev/null ")
                .filter(|u| !u.contains(' '))
            {
                h.insert("http", url.into());
            } else {
                h.insert("cmd", s.into());
            }
        }
        _ => {
            ctx.unmapped(
                yp,
                kloc,
                "a healthcheck without a test uses the image's; devbox needs the test written out",
            );
            return;
        }
    }
    for (k, kat, n) in v.entries() {
        match k.as_str() {
            "interval" | "timeout" | "start_period" => {
                if let Some(d) = n.text() {
                    h.insert(k, d.into());
                }
            }
            "retries" => {
                if let Some(r) = n.text().and_then(|s| s.parse::<i64>().ok()) {
                    h.insert("retries", r.into());
                }
            }
            "test" | "disable" => {}
            other => ctx.unmapped(&format!("{yp}.{other}"), *kat, "not supported"),
        }
    }
    t.insert("healthcheck", toml_edit::value(h));
    ctx.at(kp.clone(), kloc);
}

/// devbox renders `http = "/path"` as a URL on the first container port; the short
/// form is the same check.
pub(super) fn shorten_http(t: &mut Table) {
    let first_port = t
        .get("ports")
        .and_then(Item::as_array)
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .and_then(|p| p.rsplit(':').next())
        .map(|c| c.split('/').next().unwrap_or(c).to_owned());
    if let Some(h) = t.get_mut("healthcheck").and_then(Item::as_inline_table_mut) {
        let prefix = format!(
            "http://127.0.0.1:{}/",
            first_port.as_deref().unwrap_or("80")
        );
        let short = h
            .get("http")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix(prefix.as_str()))
            .map(|rest| format!("/{rest}"));
        if let Some(path) = short {
            h.insert("http", path.into());
        }
    }
}
