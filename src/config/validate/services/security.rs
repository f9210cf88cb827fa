//! Who a service runs as and with what privileges: `user`, `userns`, `cap_drop`,
//! `cap_add`, `no_new_privileges`, `security_opt`.

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::model::{Ident, User, Userns};
use crate::config::raw::RawService;
use crate::config::validate::values::check_user;
use crate::config::validate::Ctx;

/// Default user for services that set none: the conventional "nonroot" uid.
pub const DEFAULT_USER: &str = "65532:65532";

pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// `user` (defaulted) and `userns`, which maps that user.
pub(super) fn identity(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: &RawService,
    defaults: &mut Vec<String>,
) -> (User, Option<Userns>) {
    let default = || User::parse(DEFAULT_USER).expect("the default user is valid");
    let user = match &raw.user {
        // An invalid user is an error already; the default stands in.
        Some(u) => check_user(cx, &p.key("user"), u).unwrap_or_else(default),
        None => {
            defaults.push(format!("user = \"{DEFAULT_USER}\""));
            default()
        }
    };
    let userns = raw
        .userns
        .as_ref()
        .and_then(|u| parse_userns(cx, &p.key("userns"), u, &user));
    (user, userns)
}

fn parse_userns(cx: &mut Ctx, p: &KeyPath, u: &str, user: &User) -> Option<Userns> {
    let numeric = |s: &str| s.parse::<u32>().ok();
    let (uid0, gid0) = (user.user().id(), user.group().and_then(Ident::id));
    match u {
        "host" => Some(Userns::Host),
        "auto" => Some(Userns::Auto),
        "keep-id" => Some(Userns::KeepId {
            uid: uid0,
            gid: gid0.or(uid0),
        }),
        _ => {
            if let Some(opts) = u.strip_prefix("keep-id:") {
                let mut uid = None;
                let mut gid = None;
                let mut ok = true;
                for o in opts.split(',') {
                    match o.split_once('=') {
                        Some(("uid", v)) => {
                            uid = numeric(v).or_else(|| {
                                ok = false;
                                None
                            })
                        }
                        Some(("gid", v)) => {
                            gid = numeric(v).or_else(|| {
                                ok = false;
                                None
                            })
                        }
                        _ => ok = false,
                    }
                }
                if ok {
                    return Some(Userns::KeepId { uid, gid });
                }
            }
            cx.err(
                Diagnostic::error(p.clone(), format!("unknown userns `{u}`"))
                    .expected("\"keep-id\", \"keep-id:uid=N,gid=N\", \"host\" or \"auto\"")
                    .hint("keep-id maps your host user to the service's user, so files in .data stay yours"),
            );
            None
        }
    }
}

pub(super) struct Privileges {
    pub(super) cap_drop: Vec<String>,
    pub(super) cap_add: Vec<String>,
    pub(super) no_new_privileges: bool,
}

/// Capabilities and no-new-privileges (defaulted), and the security options' names.
pub(super) fn privileges(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: &RawService,
    defaults: &mut Vec<String>,
) -> Privileges {
    let cap_drop = match &raw.cap_drop {
        Some(c) => caps(cx, &p.key("cap_drop"), c),
        None => {
            defaults.push("cap_drop = [\"ALL\"]".into());
            vec!["ALL".to_owned()]
        }
    };
    let cap_add = caps(cx, &p.key("cap_add"), &raw.cap_add);

    let no_new_privileges = raw.no_new_privileges.unwrap_or_else(|| {
        defaults.push("no_new_privileges = true".into());
        true
    });

    for (i, o) in raw.security_opt.iter().enumerate() {
        let k = o.split(['=', ':']).next().unwrap_or("");
        if !matches!(
            k,
            "no-new-privileges"
                | "seccomp"
                | "apparmor"
                | "label"
                | "systempaths"
                | "mask"
                | "unmask"
                | "proc-opts"
        ) {
            cx.err(
                Diagnostic::error(p.key("security_opt").index(i), format!("unknown security option `{o}`"))
                    .expected("no-new-privileges, seccomp=PROFILE|unconfined, apparmor=PROFILE|unconfined, label=..., systempaths=unconfined, mask=PATHS, unmask=PATHS"),
            );
        }
    }
    Privileges {
        cap_drop,
        cap_add,
        no_new_privileges,
    }
}

fn caps(cx: &mut Ctx, p: &KeyPath, list: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let up = c.to_ascii_uppercase();
        let name = up.strip_prefix("CAP_").unwrap_or(&up);
        if name == "ALL" || CAPABILITIES.contains(&name) {
            out.push(name.to_owned());
        } else {
            let d = Diagnostic::error(p.index(i), format!("unknown capability `{c}`"))
                .expected("ALL or a capability name such as NET_BIND_SERVICE");
            cx.err(
                d.suggest(
                    name,
                    std::iter::once("ALL").chain(CAPABILITIES.iter().copied()),
                )
                .or_hint("see capabilities(7)"),
            );
        }
    }
    out
}
