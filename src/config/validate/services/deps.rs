//! `depends_on`: each service's dependencies, then across services the ones that can
//! never be met (healthy without a healthcheck, cycles).

use std::collections::BTreeMap;

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::DependsOn;
use crate::config::model::{Condition, Service};
use crate::config::raw::RawService;
use crate::config::validate::ctx::reference;
use crate::config::validate::Ctx;

/// The dependencies on services that exist, with the condition each waits for.
pub(super) fn depends_on(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: &RawService,
) -> BTreeMap<String, Condition> {
    let names = cx.names;
    let mut depends_on = BTreeMap::new();
    match &raw.depends_on {
        Some(DependsOn::List(l)) => {
            for (i, s) in l.iter().enumerate() {
                if reference(
                    cx,
                    &p.key("depends_on").index(i),
                    "service",
                    s,
                    &names.services,
                    "services",
                ) {
                    depends_on.insert(s.clone(), Condition::Started);
                }
            }
        }
        Some(DependsOn::Map(m)) => {
            for (s, c) in m {
                let kp = p.key("depends_on").key(s);
                let cond = match c.as_str() {
                    "started" => Some(Condition::Started),
                    "healthy" => Some(Condition::Healthy),
                    "completed" => Some(Condition::Completed),
                    _ => {
                        cx.err(
                            Diagnostic::error(kp.clone(), format!("unknown condition `{c}`"))
                                .expected("\"started\", \"healthy\" or \"completed\""),
                        );
                        None
                    }
                };
                let known = &names.services;
                if known.contains(s) {
                    if let Some(cond) = cond {
                        depends_on.insert(s.clone(), cond);
                    }
                } else {
                    reference(cx, &kp, "service", s, known, "services");
                }
            }
        }
        None => {}
    }
    depends_on
}

pub(super) fn check_healthy_deps(cx: &mut Ctx, services: &BTreeMap<String, Service>) {
    for (name, s) in services {
        for (dep, cond) in &s.depends_on {
            if *cond == Condition::Healthy
                && services.get(dep).is_some_and(|d| d.healthcheck.is_none())
            {
                cx.err(
                    Diagnostic::error(
                        KeyPath::root()
                            .key("services")
                            .key(name)
                            .key("depends_on")
                            .key(dep),
                        format!("`{dep}` can never become healthy: it has no healthcheck"),
                    )
                    .hint(format!(
                        "add a healthcheck to [services.{dep}], or wait for \"started\""
                    )),
                );
            }
        }
    }
}

pub(super) fn check_cycles(cx: &mut Ctx, services: &BTreeMap<String, Service>) {
    // Iterative DFS with colours; report each cycle once, at its first member.
    fn visit<'a>(
        n: &'a str,
        services: &'a BTreeMap<String, Service>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        state.insert(n, 1);
        stack.push(n);
        if let Some(s) = services.get(n) {
            for dep in s.depends_on.keys() {
                match state.get(dep.as_str()).copied().unwrap_or(0) {
                    0 => visit(dep, services, state, stack, cycles),
                    1 => {
                        let from = stack.iter().position(|x| *x == dep).unwrap_or(0);
                        let mut c: Vec<String> =
                            stack[from..].iter().map(|s| s.to_string()).collect();
                        c.push(dep.clone());
                        cycles.push(c);
                    }
                    _ => {}
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for n in services.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            visit(n, services, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    for c in cycles {
        let first = &c[0];
        let next = &c[1];
        cx.err(
            Diagnostic::error(
                KeyPath::root()
                    .key("services")
                    .key(first)
                    .key("depends_on")
                    .key(next),
                format!("dependency cycle: {}", c.join(" -> ")),
            )
            .hint("services must start in some order; remove one of these depends_on entries"),
        );
    }
}
