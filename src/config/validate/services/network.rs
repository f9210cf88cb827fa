//! A service's networks: `networks` and `network_mode`.

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::raw::RawService;
use crate::config::validate::ctx::reference;
use crate::config::validate::Ctx;

/// The networks joined that exist; `network_mode` is checked against them and `ports`.
pub(super) fn networks(cx: &mut Ctx, p: &KeyPath, raw: &RawService) -> Vec<String> {
    let names = cx.names;
    let mut networks = Vec::new();
    for (i, n) in raw.networks.iter().enumerate() {
        if reference(
            cx,
            &p.key("networks").index(i),
            "network",
            n,
            &names.networks,
            "networks",
        ) {
            networks.push(n.clone());
        }
    }
    if let Some(nm) = &raw.network_mode {
        let ok = matches!(nm.as_str(), "bridge" | "host" | "none")
            || nm.strip_prefix("container:").is_some_and(|s| !s.is_empty())
            || nm.strip_prefix("service:").is_some_and(|s| !s.is_empty());
        if !ok {
            cx.err(
                Diagnostic::error(
                    p.key("network_mode"),
                    format!("unknown network_mode `{nm}`"),
                )
                .expected("bridge, host, none, container:NAME or service:NAME"),
            );
        } else if nm != "bridge" && !raw.networks.is_empty() {
            cx.err(
                Diagnostic::error(
                    p.key("network_mode"),
                    format!("network_mode = \"{nm}\" cannot be combined with networks"),
                )
                .hint("remove either `networks` or `network_mode`"),
            );
        } else if matches!(nm.as_str(), "host" | "none") && !raw.ports.is_empty() {
            cx.err(
                Diagnostic::error(
                    p.key("ports"),
                    format!("ports cannot be published with network_mode = \"{nm}\""),
                )
                .hint("remove `ports`, or the network_mode"),
            );
        }
        if let Some(s) = nm.strip_prefix("service:") {
            reference(
                cx,
                &p.key("network_mode"),
                "service",
                s,
                &names.services,
                "services",
            );
        }
    }
    networks
}
