//! The sandbox policy of a worker or a native service: network, file system, exec,
//! environment and limits.

use std::path::{Path, PathBuf};

use super::paths::{expand_home, lexical_join};
use super::values::{check_env_names, duration, env_map, size};
use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::NetPolicy as NetPolicy_;
use crate::config::model::{Decision, EnvPolicy, FsPolicy, Limits, NetPolicy, NetRules, Policy};
use crate::config::raw::RawPolicy;

/// A `HOST:PORT` destination pattern: HOST may start with `*.`, PORT may be `*`.
pub fn valid_destination(e: &str) -> bool {
    e.rsplit_once(':').is_some_and(|(h, port)| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.*[]:".contains(c))
            && (port == "*" || port.parse::<u16>().is_ok_and(|n| n > 0))
    })
}

/// A worker's or a native service's `policy` table.
pub(super) fn resolve_policy(cx: &mut Ctx, pp: &KeyPath, pol: &RawPolicy) -> Policy {
    let net = match &pol.net {
        None => NetPolicy::None,
        Some(NetPolicy_::Mode(m)) => match m.as_str() {
            "none" | "deny" => NetPolicy::None,
            "host" => NetPolicy::Host,
            _ => {
                cx.err(
                    Diagnostic::error(pp.key("net"), format!("unknown network policy `{m}`"))
                        .expected("\"none\", \"host\", or a table { default, allow, warn, deny }"),
                );
                NetPolicy::None
            }
        },
        Some(NetPolicy_::Rules(r)) => {
            let default = match r.default.as_deref() {
                None | Some("deny") => Decision::Deny,
                Some("allow") => Decision::Allow,
                Some("warn") => Decision::Warn,
                Some(o) => {
                    cx.err(
                        Diagnostic::error(
                            pp.key("net").key("default"),
                            format!("unknown decision `{o}`"),
                        )
                        .expected("\"deny\", \"allow\" or \"warn\""),
                    );
                    Decision::Deny
                }
            };
            for (list, entries) in [("allow", &r.allow), ("warn", &r.warn), ("deny", &r.deny)] {
                for (i, e) in entries.iter().enumerate() {
                    if !valid_destination(e) {
                        cx.err(
                            Diagnostic::error(pp.key("net").key(list).index(i), format!("invalid destination pattern `{e}`"))
                                .expected("\"HOST:PORT\" where HOST may start with `*.` and PORT may be `*`, such as \"*.example.com:443\""),
                        );
                    }
                }
            }
            NetPolicy::Proxy(NetRules {
                default,
                allow: r.allow.clone(),
                warn: r.warn.clone(),
                deny: r.deny.clone(),
            })
        }
    };
    let fs_list = |cx: &mut Ctx, k: &str, l: &[String]| -> Vec<PathBuf> {
        l.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                if s.is_empty() {
                    cx.err(
                        Diagnostic::error(pp.key("fs").key(k).index(i), "empty path").expected(
                            "an absolute path, a path relative to sandbox.toml, or ~/PATH",
                        ),
                    );
                    return None;
                }
                let e = expand_home(s);
                Some(if e.is_absolute() {
                    lexical_join(Path::new("/"), &e)
                } else {
                    lexical_join(cx.dir, &e)
                })
            })
            .collect()
    };
    let fs = FsPolicy {
        read: fs_list(cx, "read", &pol.fs.read),
        write: fs_list(cx, "write", &pol.fs.write),
        deny: fs_list(cx, "deny", &pol.fs.deny),
    };
    for (i, e) in pol.exec.allow.iter().enumerate() {
        if !e.starts_with('/') {
            cx.err(
                Diagnostic::error(
                    pp.key("exec").key("allow").index(i),
                    format!("exec allow entry `{e}` is not an absolute path"),
                )
                .expected("an absolute path of a binary, such as \"/bin/sh\""),
            );
        }
    }
    check_env_names(cx, &pp.key("env").key("set"), pol.env.set.keys().cloned());
    let lim = &pol.limits;
    let lp = pp.key("limits");
    let positive = |cx: &mut Ctx, k: &str, v: Option<i64>| -> Option<u64> {
        v.and_then(|n| {
            if n > 0 {
                Some(n as u64)
            } else {
                cx.err(
                    Diagnostic::error(lp.key(k), format!("{k} = {n} is not a limit"))
                        .expected("a positive number"),
                );
                None
            }
        })
    };
    let limits = Limits {
        memory: lim
            .memory
            .as_ref()
            .and_then(|m| size(cx, &lp.key("memory"), m)),
        pids: positive(cx, "pids", lim.pids).map(|n| n.min(u32::MAX as u64) as u32),
        cpus: lim.cpus.filter(|c| {
            let ok = *c > 0.0 && c.is_finite();
            if !ok {
                cx.err(
                    Diagnostic::error(
                        lp.key("cpus"),
                        format!("cpus = {c} is not a positive number"),
                    )
                    .expected("a number of cores such as 0.5"),
                );
            }
            ok
        }),
        nofile: positive(cx, "nofile", lim.nofile),
        fsize: lim
            .fsize
            .as_ref()
            .and_then(|m| size(cx, &lp.key("fsize"), m)),
        timeout_ms: lim
            .timeout
            .as_ref()
            .and_then(|t| duration(cx, &lp.key("timeout"), t)),
        stop_grace_ms: lim
            .stop_grace
            .as_ref()
            .and_then(|t| duration(cx, &lp.key("stop_grace"), t)),
    };
    Policy {
        net,
        fs,
        exec_allow: pol.exec.allow.clone(),
        env: EnvPolicy {
            pass: pol.env.pass.clone(),
            set: env_map(&pol.env.set),
            deny: pol.env.deny.clone(),
        },
        limits,
    }
}
