//! How a service starts and stops: `restart`, `stop_signal`, `stop_grace_period`,
//! `workdir`, `command` and `entrypoint`.

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::{SignalValue, StringOrList};
use crate::config::model::Restart;
use crate::config::raw::RawService;
use crate::config::validate::values::duration;
use crate::config::validate::Ctx;

pub(super) fn restart(cx: &mut Ctx, p: &KeyPath, raw: &RawService) -> Restart {
    match raw.restart.as_deref() {
        None => Restart::No,
        Some(r) => r.parse().unwrap_or_else(|()| {
            cx.err(
                Diagnostic::error(p.key("restart"), format!("unknown restart policy `{r}`"))
                    .expected(Restart::EXPECTED),
            );
            Restart::No
        }),
    }
}

/// The stop signal's number and the grace period in whole seconds.
pub(super) fn stop(cx: &mut Ctx, p: &KeyPath, raw: &RawService) -> (Option<i32>, Option<u32>) {
    let stop_signal = raw
        .stop_signal
        .as_ref()
        .and_then(|v| stop_signal(cx, &p.key("stop_signal"), v));
    let stop_grace_s = raw.stop_grace_period.as_ref().and_then(|g| {
        duration(cx, &p.key("stop_grace_period"), g)
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX))
    });
    (stop_signal, stop_grace_s)
}

/// A stop signal by name (`SIGINT`, `INT`, `SIGRTMIN+3`, any case) or number.
fn stop_signal(cx: &mut Ctx, path: &KeyPath, v: &SignalValue) -> Option<i32> {
    let (rtmin, rtmax) = (nix::libc::SIGRTMIN(), nix::libc::SIGRTMAX());
    let n = match v {
        SignalValue::Number(n) => i32::try_from(*n).ok().filter(|n| (1..=rtmax).contains(n)),
        SignalValue::Name(s) => {
            let up = s.trim().to_ascii_uppercase();
            let name = if up.starts_with("SIG") {
                up
            } else {
                format!("SIG{up}")
            };
            if let Some(off) = name.strip_prefix("SIGRTMIN+") {
                off.parse::<i32>()
                    .ok()
                    .map(|o| rtmin + o)
                    .filter(|n| *n <= rtmax)
            } else if name == "SIGRTMIN" {
                Some(rtmin)
            } else {
                name.parse::<nix::sys::signal::Signal>()
                    .ok()
                    .map(|s| s as i32)
            }
        }
    };
    let n = n.filter(|n| *n != nix::libc::SIGKILL && *n != nix::libc::SIGSTOP);
    if n.is_none() {
        let shown = match v {
            SignalValue::Number(n) => n.to_string(),
            SignalValue::Name(s) => format!("\"{s}\""),
        };
        cx.err(
            Diagnostic::error(path.clone(), format!("invalid stop signal {shown}"))
                .expected(format!("a signal that can be caught, such as \"SIGINT\", \"TERM\" or 2 (1 to {rtmax}, not KILL or STOP)")),
        );
    }
    n
}

/// `workdir` and `command`, which are used as written once they make sense.
pub(super) fn check_process(cx: &mut Ctx, p: &KeyPath, raw: &RawService) {
    if let Some(w) = &raw.workdir {
        if !w.starts_with('/') {
            cx.err(
                Diagnostic::error(p.key("workdir"), format!("workdir `{w}` is not absolute"))
                    .expected("an absolute path inside the container"),
            );
        }
    }
    for (k, list) in [("command", &raw.command), ("entrypoint", &raw.entrypoint)] {
        if let Some(StringOrList::Many(v)) = list {
            if v.is_empty() && k == "command" {
                cx.err(
                    Diagnostic::error(p.key(k), "command is an empty list")
                        .hint("remove `command` to run the image's default"),
                );
            }
        }
    }
}
