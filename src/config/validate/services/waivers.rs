//! `audit.allow`: waivers of audit findings, each for a known rule and with a reason.

use std::collections::BTreeMap;

use crate::audit::rules::{rule, RULES};
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::raw::RawAuditWaivers;
use crate::config::validate::Ctx;

pub(super) fn waivers(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<&RawAuditWaivers>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (i, w) in raw
        .map(|r| r.allow.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let known = rule(&w.rule).is_some();
        if !known {
            let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
            let d = Diagnostic::error(
                p.index(i).key("rule"),
                format!("unknown audit rule `{}`", w.rule),
            )
            .expected("a rule id from `devbox audit --rules`, such as DBX001");
            cx.err(d.suggest(&w.rule, ids.iter().copied()));
        }
        match w.reason.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => {
                if known {
                    out.insert(w.rule.clone(), r.to_owned());
                }
            }
            _ => cx.err_key(
                Diagnostic::error(p.index(i), format!("waiver for {} has no reason", w.rule))
                    .expected("reason = \"why this finding is acceptable here\"")
                    .hint("a waiver records a decision; say who needs it and why"),
            ),
        }
    }
    out
}
