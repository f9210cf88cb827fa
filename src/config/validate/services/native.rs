//! Services without an image, run natively: their sandbox policy, and the keys only a
//! container runtime could honour.

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::NetPolicy as NetPolicy_;
use crate::config::model::{Policy, User};
use crate::config::raw::{RawLimits, RawPolicy, RawService};
use crate::config::validate::policy::resolve_policy;
use crate::config::validate::Ctx;

/// A native service's keys checked and its `policy` resolved (the default sandbox when
/// it sets none); `policy` on a service with an image is refused.
pub(super) fn confinement(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: &RawService,
    native: bool,
    repaired: bool,
) -> Option<Policy> {
    if native {
        check_native(cx, p, raw, repaired);
    }
    match (&raw.policy, native) {
        (Some(pol), true) => {
            if pol.limits != RawLimits::default() {
                cx.err_key(
                    Diagnostic::error(
                        p.key("policy").key("limits"),
                        "`policy.limits` does not apply to a service",
                    )
                    .hint("a service's limits are its own `memory`, `cpus`, `pids_limit` and `ulimits` keys"),
                );
            }
            Some(resolve_policy(cx, &p.key("policy"), pol))
        }
        (None, true) => Some(resolve_policy(cx, &p.key("policy"), &RawPolicy::default())),
        (Some(_), false) => {
            cx.err_key(
                Diagnostic::error(
                    p.key("policy"),
                    "`policy` applies to native services only",
                )
                .hint("a service with an `image` is confined by its container: remove `policy`, or remove `image` and give a `command` to run a host program natively"),
            );
            None
        }
        (None, false) => None,
    }
}

/// What a native service cannot have: it needs a program to run, and the keys that only
/// a container runtime can honour are refused (each at its line, saying what to do
/// instead) rather than silently ignored.
fn check_native(cx: &mut Ctx, p: &KeyPath, raw: &RawService, repaired: bool) {
    if raw.command.is_none() && raw.entrypoint.is_none() && !repaired {
        cx.err_key(
            Diagnostic::error(p.clone(), "service has no `image` and no `command`")
                .expected("`image = ...` to run a container, or `command = [...]` to run a host program natively")
                .hint("a service without an image is a host program that devbox runs in its own sandbox; it needs a command"),
        );
    }
    let host_net = matches!(
        raw.policy.as_ref().and_then(|p| p.net.as_ref()),
        Some(NetPolicy_::Mode(m)) if m == "host"
    );
    let refused: [(&str, bool, &str); 13] = [
        (
            "privileged",
            raw.privileged == Some(true),
            "a native service never has privilege; give the service an `image` to run it in a privileged container",
        ),
        (
            "cap_add",
            !raw.cap_add.is_empty(),
            "a native service runs with no capabilities at all; give the service an `image` to add capabilities to a container",
        ),
        (
            "devices",
            !raw.devices.is_empty(),
            "a native service is given no host devices; give the service an `image` to pass devices to a container",
        ),
        (
            "userns",
            raw.userns.is_some(),
            "a native service always runs in a user namespace of its own, which devbox sets up",
        ),
        (
            "security_opt",
            !raw.security_opt.is_empty(),
            "a native service always runs with no_new_privileges, devbox's seccomp filter and Landlock; these options are a container runtime's",
        ),
        (
            "sysctls",
            !raw.sysctls.is_empty(),
            "a native service shares the host's kernel settings; set them on the host, or give the service an `image`",
        ),
        (
            "pid",
            raw.pid.is_some(),
            "a native service always has a PID namespace of its own",
        ),
        (
            "ipc",
            raw.ipc.is_some(),
            "a native service always has an IPC namespace of its own",
        ),
        (
            "network_mode",
            raw.network_mode.as_deref().is_some_and(|m| !(m == "host" && host_net)),
            "a native service's network is its `policy.net`: \"none\" (loopback only, the default), \"host\", or { default, allow, warn, deny } through devbox's proxy",
        ),
        (
            "extra_hosts",
            !raw.extra_hosts.is_empty(),
            "a native service reaches the other services by name without it; host entries are a container runtime's",
        ),
        (
            "read_only",
            raw.read_only == Some(false),
            "a native service sees the host read-only; make paths writable with `volumes` (a bind of a project path) or `tmpfs`",
        ),
        (
            "no_new_privileges",
            raw.no_new_privileges == Some(false),
            "a native service always runs with no_new_privileges",
        ),
        (
            "init",
            raw.init == Some(false),
            "a native service always has devbox's init as PID 1",
        ),
    ];
    for (key, set, hint) in refused {
        if set {
            cx.err_key(
                Diagnostic::error(
                    p.key(key),
                    format!("`{key}` does not apply to a native service"),
                )
                .hint(hint),
            );
        }
    }
}

/// A native service's `user` (as `identity` resolved it) is numbers: there is no image
/// to name it in.
pub(super) fn check_user(cx: &mut Ctx, p: &KeyPath, raw: &RawService, user: &User) {
    if raw.user.is_some() && user.ids().is_none() {
        cx.err(
            Diagnostic::error(p.key("user"), format!("user `{user}` is not numeric"))
                .expected("\"UID\" or \"UID:GID\", such as \"65532:65532\"")
                .hint("a native service has no image whose /etc/passwd could name the user"),
        );
    }
}
