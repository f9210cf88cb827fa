//! A service's resource limits: `memory`, `cpus`, `pids_limit`, `ulimits`.

use std::collections::BTreeMap;

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms;
use crate::config::model::UlimitPair;
use crate::config::raw::RawService;
use crate::config::validate::values::size;
use crate::config::validate::Ctx;

/// The process limit of services that set none.
pub const DEFAULT_PIDS_LIMIT: u32 = 256;

const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

pub(super) struct Resources {
    pub(super) memory: Option<u64>,
    pub(super) pids_limit: Option<u32>,
    pub(super) ulimits: BTreeMap<String, UlimitPair>,
}

/// The limits, the process limit defaulted; `cpus` is only checked (it is used as
/// written).
pub(super) fn resources(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: &RawService,
    defaults: &mut Vec<String>,
) -> Resources {
    let memory = raw
        .memory
        .as_ref()
        .and_then(|m| size(cx, &p.key("memory"), m));
    if let Some(m) = memory {
        if m < 6 * 1024 * 1024 {
            cx.err(
                Diagnostic::error(
                    p.key("memory"),
                    format!("memory limit of {m} bytes is below the engines' minimum"),
                )
                .expected("at least \"6m\"")
                .hint("sizes without a unit are bytes; write \"256m\" for megabytes"),
            );
        }
    }
    if let Some(c) = raw.cpus {
        if !(c > 0.0 && c.is_finite()) {
            cx.err(
                Diagnostic::error(
                    p.key("cpus"),
                    format!("cpus = {c} is not a positive number"),
                )
                .expected("a number of cores such as 0.5 or 2"),
            );
        }
    }
    let pids_limit = match raw.pids_limit {
        None => {
            defaults.push(format!("pids_limit = {DEFAULT_PIDS_LIMIT}"));
            Some(DEFAULT_PIDS_LIMIT)
        }
        Some(-1) => None,
        Some(n) if n > 0 => u32::try_from(n).ok(),
        Some(n) => {
            cx.err(
                Diagnostic::error(
                    p.key("pids_limit"),
                    format!("pids_limit = {n} is not a limit"),
                )
                .expected("a positive number of processes, or -1 for unlimited"),
            );
            None
        }
    };

    let mut ulimits = BTreeMap::new();
    for (name, u) in &raw.ulimits {
        let kp = p.key("ulimits").key(name);
        if !ULIMITS.contains(&name.as_str()) {
            let d = Diagnostic::error(kp.clone(), format!("unknown ulimit `{name}`"))
                .expected(ULIMITS.join(", "));
            cx.err_key(d.suggest(name, ULIMITS.iter().copied()));
            continue;
        }
        let (soft, hard) = match u {
            forms::Ulimit::Single(n) => (*n, *n),
            forms::Ulimit::Pair(pr) => (pr.soft, pr.hard),
        };
        if soft < -1 || hard < -1 || (hard >= 0 && soft > hard) {
            cx.err(
                Diagnostic::error(
                    kp,
                    format!("ulimit {name}: soft {soft} and hard {hard} are not a valid pair"),
                )
                .expected("0 <= soft <= hard (or -1 for unlimited)"),
            );
            continue;
        }
        ulimits.insert(name.clone(), UlimitPair { soft, hard });
    }
    Resources {
        memory,
        pids_limit,
        ulimits,
    }
}
