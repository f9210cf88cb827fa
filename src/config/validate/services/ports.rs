//! Published ports: each service's `ports`, and no host port published twice.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::diagnostic::{Diagnostic, KeyPath, Seg};
use crate::config::forms::PortSpec;
use crate::config::model::{Port, Protocol, Service};
use crate::config::raw::RawService;
use crate::config::validate::values::port_number;
use crate::config::validate::Ctx;

/// The ports that parse; where each was in the file is kept for the clash check.
pub(super) fn service_ports(cx: &mut Ctx, p: &KeyPath, raw: &RawService) -> Vec<Port> {
    let mut ports = Vec::new();
    let mut port_index = Vec::new();
    for (i, ps) in raw.ports.iter().enumerate() {
        if let Some(port) = parse_port(cx, &p.key("ports").index(i), ps) {
            ports.push(port);
            port_index.push(i);
        }
    }
    if let Some(Seg::Key(name)) = p.0.last() {
        cx.port_index.insert(name.clone(), port_index);
    }
    ports
}

fn parse_port(cx: &mut Ctx, p: &KeyPath, spec: &PortSpec) -> Option<Port> {
    let loopback: IpAddr = IpAddr::from([127, 0, 0, 1]);
    match spec {
        PortSpec::Number(n) => {
            let n = port_number(cx, p, *n, "port")?;
            Some(Port {
                host_ip: loopback,
                host: n,
                container: n,
                protocol: Protocol::Tcp,
            })
        }
        PortSpec::Long(l) => {
            let container = port_number(cx, &p.key("container"), l.container, "container port")?;
            let host = match l.host {
                Some(h) => port_number(cx, &p.key("host"), h, "host port")?,
                None => container,
            };
            let host_ip = match &l.host_ip {
                Some(ip) => match ip.trim_matches(['[', ']']).parse() {
                    Ok(ip) => ip,
                    Err(_) => {
                        cx.err(
                            Diagnostic::error(p.key("host_ip"), format!("invalid address `{ip}`"))
                                .expected("an IPv4 or IPv6 address such as \"127.0.0.1\""),
                        );
                        return None;
                    }
                },
                None => loopback,
            };
            let protocol = match l.protocol.as_deref() {
                None | Some("tcp") => Protocol::Tcp,
                Some("udp") => Protocol::Udp,
                Some(o) => {
                    cx.err(
                        Diagnostic::error(p.key("protocol"), format!("unknown protocol `{o}`"))
                            .expected("\"tcp\" or \"udp\""),
                    );
                    return None;
                }
            };
            Some(Port {
                host_ip,
                host,
                container,
                protocol,
            })
        }
        PortSpec::Short(s) => {
            let bad = |cx: &mut Ctx, why: &str| {
                cx.err(
                    Diagnostic::error(p.clone(), format!("invalid port `{s}`: {why}"))
                        .expected("\"PORT\", \"HOST:CONTAINER\", \"IP:HOST:CONTAINER\", optionally with /tcp or /udp")
                        .hint("for example \"8080:80\" or \"127.0.0.1:8080:80\""),
                );
            };
            let (body, protocol) = match s.rsplit_once('/') {
                Some((b, "tcp")) => (b, Protocol::Tcp),
                Some((b, "udp")) => (b, Protocol::Udp),
                Some(_) => {
                    bad(cx, "the protocol must be tcp or udp");
                    return None;
                }
                None => (s.as_str(), Protocol::Tcp),
            };
            // An IPv6 address is written in brackets: "[::1]:8080:80".
            let (ip, rest) = if let Some(r) = body.strip_prefix('[') {
                match r.split_once("]:") {
                    Some((ip, rest)) => (Some(ip), rest),
                    None => {
                        bad(
                            cx,
                            "an IPv6 address needs brackets and a port: \"[::1]:8080:80\"",
                        );
                        return None;
                    }
                }
            } else {
                let parts: Vec<&str> = body.split(':').collect();
                match parts.len() {
                    1 | 2 => (None, body),
                    3 => (Some(parts[0]), &body[parts[0].len() + 1..]),
                    _ => {
                        bad(cx, "too many `:`");
                        return None;
                    }
                }
            };
            let num = |cx: &mut Ctx, t: &str, what: &str| -> Option<u16> {
                if t.contains('-') {
                    bad(cx, "port ranges are not supported; list each port");
                    return None;
                }
                match t.parse::<i64>() {
                    Ok(n) => port_number(cx, p, n, what),
                    Err(_) => {
                        bad(cx, &format!("`{t}` is not a number"));
                        None
                    }
                }
            };
            let (host, container) = match rest.split_once(':') {
                Some((h, c)) => (num(cx, h, "host port")?, num(cx, c, "container port")?),
                None => {
                    let n = num(cx, rest, "port")?;
                    (n, n)
                }
            };
            let host_ip = match ip {
                None => loopback,
                Some(ip) => match ip.parse() {
                    Ok(a) => a,
                    Err(_) => {
                        bad(cx, &format!("`{ip}` is not an IP address"));
                        return None;
                    }
                },
            };
            Some(Port {
                host_ip,
                host,
                container,
                protocol,
            })
        }
    }
}

pub(super) fn check_port_clashes(cx: &mut Ctx, services: &BTreeMap<String, Service>) {
    /// The ports seen so far on one host port and protocol, by their order: the first,
    /// the first on an unspecified address, and the first on each address. The earliest
    /// port that clashes with a new one is among these, so each port is checked in
    /// constant time (a list scan made thousands of ports quadratic).
    #[derive(Default)]
    struct Seen {
        first: Option<usize>,
        unspecified: Option<usize>,
        by_ip: std::collections::HashMap<IpAddr, usize>,
    }
    let mut order: Vec<(&str, usize, &Port)> = Vec::new();
    let mut seen: std::collections::HashMap<(u16, &str), Seen> = Default::default();
    for (name, s) in services {
        let raw_index = cx.port_index.get(name).cloned().unwrap_or_default();
        for (k, port) in s.ports.iter().enumerate() {
            let i = raw_index.get(k).copied().unwrap_or(k);
            let at = seen.entry((port.host, port.protocol.as_str())).or_default();
            let clash = if port.host_ip.is_unspecified() {
                at.first
            } else {
                [at.by_ip.get(&port.host_ip).copied(), at.unspecified]
                    .into_iter()
                    .flatten()
                    .min()
            };
            let n = order.len();
            at.first.get_or_insert(n);
            if port.host_ip.is_unspecified() {
                at.unspecified.get_or_insert(n);
            }
            at.by_ip.entry(port.host_ip).or_insert(n);
            order.push((name, i, port));
            if let Some((other, j, o)) = clash.map(|c| order[c]) {
                cx.err(
                    Diagnostic::error(
                        KeyPath::root()
                            .key("services")
                            .key(name)
                            .key("ports")
                            .index(i),
                        format!(
                            "host port {}:{}/{} is already published by {other}",
                            port.host_ip,
                            port.host,
                            port.protocol.as_str()
                        ),
                    )
                    .hint(format!(
                        "services.{other}.ports[{j}] binds {}:{}; pick another host port",
                        o.host_ip, o.host
                    )),
                );
            }
        }
    }
}
