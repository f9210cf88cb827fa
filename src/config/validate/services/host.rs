//! What a service may share with the host: `pid` and `ipc` namespaces, `devices`,
//! `sysctls` and `extra_hosts`. Only checked here; they are used as written.

use std::net::IpAddr;

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::raw::RawService;
use crate::config::validate::Ctx;

pub(super) fn check_host_sharing(cx: &mut Ctx, p: &KeyPath, raw: &RawService) {
    for (label_key, label) in [("pid", &raw.pid), ("ipc", &raw.ipc)] {
        if let Some(v) = label {
            let ok = matches!(v.as_str(), "host" | "private")
                || (label_key == "ipc" && matches!(v.as_str(), "shareable" | "none"))
                || v.strip_prefix("container:").is_some_and(|s| !s.is_empty())
                || v.strip_prefix("service:").is_some_and(|s| !s.is_empty());
            if !ok {
                cx.err(
                    Diagnostic::error(p.key(label_key), format!("unknown {label_key} mode `{v}`"))
                        .expected("host, private, container:NAME or service:NAME"),
                );
            }
        }
    }
    for (i, d) in raw.devices.iter().enumerate() {
        let mut parts = d.split(':');
        let host = parts.next().unwrap_or("");
        let ok = host.starts_with("/dev/")
            && parts.next().is_none_or(|c| c.starts_with('/'))
            && parts
                .next()
                .is_none_or(|perm| !perm.is_empty() && perm.chars().all(|c| "rwm".contains(c)))
            && parts.next().is_none();
        if !ok {
            cx.err(
                Diagnostic::error(p.key("devices").index(i), format!("invalid device `{d}`"))
                    .expected(
                        "\"/dev/NAME\", \"/dev/NAME:/dev/INSIDE\" or \"/dev/NAME:/dev/INSIDE:rwm\"",
                    ),
            );
        }
    }
    for k in raw.sysctls.keys() {
        if !k.contains('.')
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        {
            cx.err_key(
                Diagnostic::error(
                    p.key("sysctls").key(k),
                    format!("invalid sysctl name `{k}`"),
                )
                .expected("a dotted kernel parameter such as net.ipv4.ip_unprivileged_port_start"),
            );
        }
    }
    for (i, h) in raw.extra_hosts.iter().enumerate() {
        let ok = h.split_once([':', '=']).is_some_and(|(name, ip)| {
            !name.is_empty()
                && (ip == "host-gateway" || ip.trim_matches(['[', ']']).parse::<IpAddr>().is_ok())
        });
        if !ok {
            cx.err(
                Diagnostic::error(
                    p.key("extra_hosts").index(i),
                    format!("invalid extra host `{h}`"),
                )
                .expected("\"NAME:IP\", such as \"db.local:10.0.0.2\""),
            );
        }
    }
}
