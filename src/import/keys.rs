//! The service keys whose conversion takes more than a line or two: environment,
//! security options, limits, dependencies, devices, sysctls, hosts and `deploy`.

use std::collections::BTreeSet;

use toml_edit::{InlineTable, Item, Table, Value};

use super::values::{pairs, scalar_value, str_array};
use super::yaml::{Loc, Node, V};
use super::Ctx;
use crate::config::diagnostic::KeyPath;
use crate::config::model::Restart;

pub(super) fn environment(
    ctx: &mut Ctx,
    t: &mut Table,
    key: &KeyPath,
    yp: &str,
    kloc: Loc,
    v: &Node,
) {
    let mut env = Table::new();
    for (ek, ev, eat) in pairs(v) {
        match ev {
            Some(val) => {
                env.insert(&ek, toml_edit::value(val));
                ctx.at(key.key("env").key(ek.as_str()), eat);
            }
            None => ctx.unmapped(
                &format!("{yp}.{ek}"),
                eat,
                "takes its value from the host environment; devbox passes no host variables, give it a value or use env_file",
            ),
        }
    }
    if !env.is_empty() {
        t.insert("env", Item::Table(env));
        ctx.at(key.key("env"), kloc);
    }
}

pub(super) fn security_opt(
    ctx: &mut Ctx,
    t: &mut Table,
    set: &mut BTreeSet<&str>,
    key: &KeyPath,
    kloc: Loc,
    v: &Node,
) {
    let kp = key.key("security_opt");
    let mut rest = Vec::new();
    for item in v.items() {
        let Some(o) = item.text() else { continue };
        if let Some(val) = o
            .strip_prefix("no-new-privileges")
            .map(|r| r.trim_start_matches([':', '=']))
        {
            let on = val.is_empty() || val == "true";
            t.insert("no_new_privileges", toml_edit::value(on));
            set.insert("no_new_privileges");
            ctx.at(key.key("no_new_privileges"), item.at);
            continue;
        }
        // compose writes `seccomp:unconfined`; devbox `seccomp=unconfined`.
        let o = match o.split_once(':') {
            Some((kind, val))
                if matches!(kind, "seccomp" | "apparmor" | "label") && !o.contains('=') =>
            {
                format!("{kind}={val}")
            }
            _ => o,
        };
        ctx.at(kp.index(rest.len()), item.at);
        rest.push(o);
    }
    if !rest.is_empty() {
        t.insert("security_opt", toml_edit::value(str_array(&rest)));
        ctx.at(kp, kloc);
    }
}

pub(super) fn ulimits(ctx: &mut Ctx, t: &mut Table, kp: &KeyPath, yp: &str, v: &Node) {
    let mut u = InlineTable::new();
    for (uk, uat, uv) in v.entries() {
        let val: Value = match (&uv.v, uv.get("soft"), uv.get("hard")) {
            (V::Int(n), ..) => (*n).into(),
            (_, Some(s), Some(h)) => {
                let mut it = InlineTable::new();
                it.insert(
                    "soft",
                    s.text()
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(0)
                        .into(),
                );
                it.insert(
                    "hard",
                    h.text()
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(0)
                        .into(),
                );
                it.into()
            }
            _ => {
                ctx.unmapped(
                    &format!("{yp}.{uk}"),
                    *uat,
                    "expected a number or soft/hard",
                );
                continue;
            }
        };
        u.insert(uk, val);
        ctx.at(kp.key(uk.as_str()), *uat);
    }
    if !u.is_empty() {
        t.insert("ulimits", toml_edit::value(u));
    }
}

pub(super) fn depends_on(
    ctx: &mut Ctx,
    t: &mut Table,
    kp: &KeyPath,
    yp: &str,
    kloc: Loc,
    v: &Node,
) {
    let mut d = InlineTable::new();
    let entries: Vec<(String, Loc, Option<&Node>)> = match &v.v {
        V::Seq(items) => items
            .iter()
            .filter_map(|i| Some((i.text()?, i.at, None)))
            .collect(),
        V::Map(m) => m.iter().map(|(k, a, n)| (k.clone(), *a, Some(n))).collect(),
        _ => Vec::new(),
    };
    for (dep, dat, spec) in entries {
        let cond = match spec
            .and_then(|s| s.get("condition"))
            .and_then(Node::text)
            .as_deref()
        {
            Some("service_healthy") => "healthy",
            Some("service_completed_successfully") => "completed",
            _ => "started",
        };
        if let Some(s) = spec {
            for (sk, sat, _) in s.entries() {
                if sk != "condition" {
                    ctx.unmapped(
                        &format!("{yp}.{dep}.{sk}"),
                        *sat,
                        "devbox supports the condition only",
                    );
                }
            }
        }
        d.insert(&dep, cond.into());
        ctx.at(kp.key(dep.as_str()), dat);
    }
    if !d.is_empty() {
        t.insert("depends_on", toml_edit::value(d));
        ctx.at(kp.clone(), kloc);
    }
}

pub(super) fn devices(ctx: &mut Ctx, t: &mut Table, kp: &KeyPath, yp: &str, kloc: Loc, v: &Node) {
    let mut devs = Vec::new();
    for item in v.items() {
        match item.text() {
            Some(d) => {
                ctx.at(kp.index(devs.len()), item.at);
                devs.push(d);
            }
            None => ctx.unmapped(
                yp,
                item.at,
                "only the short `HOST[:CONTAINER[:PERMS]]` form is supported",
            ),
        }
    }
    if !devs.is_empty() {
        t.insert("devices", toml_edit::value(str_array(&devs)));
        ctx.at(kp.clone(), kloc);
    }
}

pub(super) fn sysctls(ctx: &mut Ctx, t: &mut Table, kp: &KeyPath, v: &Node) {
    let mut s = Table::new();
    for (sk, sv, sat) in pairs(v) {
        let val = sv.unwrap_or_default();
        match val.parse::<i64>() {
            Ok(n) => s.insert(&sk, toml_edit::value(n)),
            Err(_) => s.insert(&sk, toml_edit::value(val)),
        };
        ctx.at(kp.key(sk.as_str()), sat);
    }
    if !s.is_empty() {
        t.insert("sysctls", Item::Table(s));
    }
}

pub(super) fn extra_hosts(ctx: &mut Ctx, t: &mut Table, kp: &KeyPath, kloc: Loc, v: &Node) {
    let hosts: Vec<String> = match &v.v {
        V::Map(m) => m
            .iter()
            .map(|(h, _, ip)| format!("{h}:{}", ip.text().unwrap_or_default()))
            .collect(),
        _ => v
            .items()
            .into_iter()
            .filter_map(Node::text)
            .map(|h| match h.split_once('=') {
                Some((n, ip)) => format!("{n}:{ip}"),
                None => h,
            })
            .collect(),
    };
    t.insert("extra_hosts", toml_edit::value(str_array(&hosts)));
    ctx.at(kp.clone(), kloc);
}

/// `deploy.resources.limits` and `deploy.restart_policy`; the rest is swarm's.
pub(super) fn deploy(
    ctx: &mut Ctx,
    t: &mut Table,
    key: &KeyPath,
    yp: &str,
    v: &Node,
    set: &mut BTreeSet<&str>,
) {
    for (k, kat, n) in v.entries() {
        let yk = format!("{yp}.{k}");
        match k.as_str() {
            "resources" => {
                for (rk, rat, rn) in n.entries() {
                    if rk != "limits" {
                        ctx.unmapped(&format!("{yk}.{rk}"), *rat, "only limits are supported");
                        continue;
                    }
                    for (lk, lat, ln) in rn.entries() {
                        match lk.as_str() {
                            "memory" => {
                                if let Some(val) = scalar_value(ln) {
                                    t.insert("memory", toml_edit::value(val));
                                    ctx.at(key.key("memory"), *lat);
                                }
                            }
                            "cpus" => {
                                if let Some(c) = ln.text().and_then(|s| s.parse::<f64>().ok()) {
                                    t.insert("cpus", toml_edit::value(c));
                                    ctx.at(key.key("cpus"), *lat);
                                }
                            }
                            "pids" => {
                                if let Some(p) = ln.text().and_then(|s| s.parse::<i64>().ok()) {
                                    t.insert(
                                        "pids_limit",
                                        toml_edit::value(if p <= 0 { -1 } else { p }),
                                    );
                                    set.insert("pids_limit");
                                    ctx.at(key.key("pids_limit"), *lat);
                                }
                            }
                            _ => ctx.unmapped(&format!("{yk}.limits.{lk}"), *lat, "not supported"),
                        }
                    }
                }
            }
            "restart_policy" => {
                let cond = n.get("condition").and_then(Node::text);
                let max = n.get("max_attempts").and_then(Node::text);
                // compose's conditions are `none`, `on-failure` and `any`; a
                // `max_attempts` that is no number is kept for `check` to point at.
                let r = match (cond.as_deref(), max) {
                    (Some("none"), _) => Restart::No.to_string(),
                    (Some("on-failure"), Some(m)) => match m.parse() {
                        Ok(n) => Restart::OnFailure(Some(n)).to_string(),
                        Err(_) => format!("{}:{m}", Restart::OnFailure(None)),
                    },
                    (Some("on-failure"), None) => Restart::OnFailure(None).to_string(),
                    _ => Restart::Always.to_string(),
                };
                t.insert("restart", toml_edit::value(r));
                ctx.at(key.key("restart"), *kat);
                for (pk, pat, _) in n.entries() {
                    if pk != "condition" && pk != "max_attempts" {
                        ctx.unmapped(&format!("{yk}.{pk}"), *pat, "not supported");
                    }
                }
            }
            _ => ctx.unmapped(
                &yk,
                *kat,
                "swarm deployment settings do not apply to a dev environment",
            ),
        }
    }
}
