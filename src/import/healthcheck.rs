//! A service's `healthcheck` as devbox's `cmd`, `tcp` or `http` check, recognising the
//! checks devbox renders itself.

use toml_edit::{InlineTable, Item, Table, Value};

use super::values::str_array;
use super::yaml::{Loc, Node, V};
use super::Ctx;
use crate::config::diagnostic::KeyPath;
use crate::config::model::HealthTest;
use crate::healthcheck::{self, Parsed};

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
            healthcheck::CMD_SHELL.into(),
            v.get("test").and_then(Node::text).unwrap_or_default(),
        ],
        None => Vec::new(),
    };
    match healthcheck::parse(&test) {
        Parsed::Disabled => {
            ctx.note(yp, kloc, "healthcheck NONE: the service has none");
            return;
        }
        Parsed::Test(HealthTest::Cmd(argv)) => {
            h.insert("cmd", Value::Array(str_array(&argv)));
        }
        Parsed::Test(HealthTest::Tcp(port)) => {
            h.insert("tcp", i64::from(port).into());
        }
        Parsed::Test(HealthTest::Http(url)) => {
            h.insert("http", url.into());
        }
        Parsed::Shell(s) => {
            h.insert("cmd", s.into());
        }
        Parsed::Missing => {
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
        .map(|c| c.split('/').next().unwrap_or(c).parse::<u16>().ok());
    if let Some(h) = t.get_mut("healthcheck").and_then(Item::as_inline_table_mut) {
        let short = first_port
            .unwrap_or(Some(80))
            .and_then(|port| healthcheck::http_path(h.get("http")?.as_str()?, port));
        if let Some(path) = short {
            h.insert("http", path.into());
        }
    }
}
