//! `[[probes]]`: the checks `devbox verify` runs, one kind each.

use std::collections::BTreeMap;

use super::ctx::reference;
use super::paths::project_path;
use super::values::{check_user, mode, opt_duration, port_number, shell_words};
use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::{ExpectExit, StringOrList};
use crate::config::model::{ExitExpectation, FileType, Matcher, Owner, Probe, ProbeKind};
use crate::config::raw::RawProbe;

const PROBE_KINDS: &[&str] = &["tcp", "http", "uds", "file", "exec", "log", "loopback_only"];

/// Every probe that parsed, in file order; two with one name are refused.
pub(super) fn resolve_probes(cx: &mut Ctx, raw: &[Option<RawProbe>]) -> Vec<Probe> {
    let root = KeyPath::root();
    let mut probes = Vec::new();
    for (i, raw) in raw.iter().enumerate() {
        if let Some(raw) = raw {
            if let Some(p) = resolve_probe(cx, &root.key("probes").index(i), raw) {
                probes.push(p);
            }
        }
    }
    let mut seen = BTreeMap::new();
    for (i, p) in probes.iter().enumerate() {
        if let Some(first) = seen.insert(p.name.clone(), i) {
            cx.err(
                Diagnostic::error(
                    root.key("probes").index(i).key("name"),
                    format!("duplicate probe name `{}`", p.name),
                )
                .hint(format!(
                    "probe {} already uses this name; reports need names to tell probes apart",
                    first + 1
                )),
            );
        }
    }
    probes
}

fn resolve_probe(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe) -> Option<Probe> {
    let kind = probe_kind(cx, p, raw)?;
    check_keys_apply(cx, p, raw, kind);

    let names = cx.names;
    let services = &names.services;
    let in_service = raw.in_service.as_ref().and_then(|s| {
        reference(cx, &p.key("in"), "service", s, services, "services").then(|| s.clone())
    });
    for (i, a) in raw.after.iter().enumerate() {
        reference(
            cx,
            &p.key("after").index(i),
            "service",
            a,
            services,
            "services",
        );
    }
    let expect = raw.expect.as_deref().map(Matcher::parse);
    check_regex(cx, &p.key("expect"), expect.as_ref());
    let expect_stderr = raw.expect_stderr.as_deref().map(Matcher::parse);
    check_regex(cx, &p.key("expect_stderr"), expect_stderr.as_ref());
    let (kind, default_name) = match kind {
        "tcp" => tcp(cx, p, raw, expect),
        "http" => http(cx, p, raw, expect),
        "uds" => uds(raw, in_service, expect),
        "file" => file(cx, p, raw),
        "exec" => exec(cx, p, raw, in_service, expect, expect_stderr)?,
        "log" => log(cx, p, raw, expect)?,
        _ => loopback_only(cx, p, raw)?,
    };

    let within_ms = opt_duration(cx, &p.key("within"), raw.within.as_ref(), 5_000);
    let timeout_ms = opt_duration(cx, &p.key("timeout"), raw.timeout.as_ref(), 2_000);
    Some(Probe {
        name: raw.name.clone().unwrap_or(default_name),
        kind,
        within_ms,
        timeout_ms,
        after: raw.after.clone(),
    })
}

/// The one kind of check a probe makes, or `None` (reported) when it names none or more.
fn probe_kind(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe) -> Option<&'static str> {
    let present: Vec<&str> = [
        ("tcp", raw.tcp.is_some()),
        ("http", raw.http.is_some()),
        ("uds", raw.uds.is_some()),
        ("file", raw.file.is_some()),
        ("exec", raw.exec.is_some()),
        ("log", raw.log.is_some()),
        ("loopback_only", raw.loopback_only.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    match present.as_slice() {
        [k] => Some(*k),
        [] => {
            cx.err_key(
                Diagnostic::error(p.clone(), "probe has no kind")
                    .expected(format!("exactly one of {}", PROBE_KINDS.join(", ")))
                    .hint("for example tcp = \"127.0.0.1:8080\""),
            );
            None
        }
        [_, second, ..] => {
            cx.err_key(
                Diagnostic::error(
                    p.key(*second),
                    format!("probe has more than one kind: {}", present.join(", ")),
                )
                .expected(format!("exactly one of {}", PROBE_KINDS.join(", ")))
                .hint("split it into one [[probes]] entry per check"),
            );
            None
        }
    }
}

/// Keys that belong to other kinds are mistakes, not silent no-ops.
fn check_keys_apply(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe, kind: &str) {
    let applies: &[&str] = match kind {
        "tcp" => &["send", "expect"],
        "http" => &["method", "status", "headers", "body", "expect"],
        "uds" => &["send", "expect", "in"],
        "file" => &["mode", "owner", "type", "contains", "json"],
        "exec" => &["in", "user", "expect_exit", "expect", "expect_stderr"],
        "log" => &["expect"],
        _ => &[],
    };
    let set: Vec<(&str, bool)> = vec![
        ("send", raw.send.is_some()),
        ("expect", raw.expect.is_some()),
        ("expect_stderr", raw.expect_stderr.is_some()),
        ("expect_exit", raw.expect_exit.is_some()),
        ("method", raw.method.is_some()),
        ("status", raw.status.is_some()),
        ("headers", !raw.headers.is_empty()),
        ("body", raw.body.is_some()),
        ("mode", raw.mode.is_some()),
        ("owner", raw.owner.is_some()),
        ("type", raw.file_type.is_some()),
        ("contains", raw.contains.is_some()),
        ("json", raw.json.is_some()),
        ("in", raw.in_service.is_some()),
        ("user", raw.user.is_some()),
    ];
    for (k, on) in set {
        if on && !applies.contains(&k) {
            cx.err_key(
                Diagnostic::error(p.key(k), format!("`{k}` does not apply to a {kind} probe"))
                    .expected(if applies.is_empty() {
                        format!(
                            "no other keys than name, within, timeout, after for a {kind} probe"
                        )
                    } else {
                        format!("for a {kind} probe: {}", applies.join(", "))
                    }),
            );
        }
    }
}

/// What a probe checks, and the name it gets when it has none.
type Checked = (ProbeKind, String);

fn tcp(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe, expect: Option<Matcher>) -> Checked {
    let a = raw.tcp.clone().unwrap_or_default();
    check_host_port(cx, &p.key("tcp"), &a);
    (
        ProbeKind::Tcp {
            address: a.clone(),
            send: raw.send.clone(),
            expect,
        },
        format!("tcp {a}"),
    )
}

fn http(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe, expect: Option<Matcher>) -> Checked {
    let u = raw.http.clone().unwrap_or_default();
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        cx.err(
            Diagnostic::error(p.key("http"), format!("invalid URL `{u}`"))
                .expected("\"http://HOST:PORT/PATH\""),
        );
    }
    let method = raw
        .method
        .clone()
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    if !matches!(
        method.as_str(),
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
    ) {
        cx.err(
            Diagnostic::error(p.key("method"), format!("unknown HTTP method `{method}`"))
                .expected("GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"),
        );
    }
    let status = raw.status.and_then(|s| match u16::try_from(s) {
        Ok(s) if (100..=599).contains(&s) => Some(s),
        _ => {
            cx.err(
                Diagnostic::error(p.key("status"), format!("status {s} is not an HTTP status"))
                    .expected("a number from 100 to 599"),
            );
            None
        }
    });
    (
        ProbeKind::Http {
            url: u.clone(),
            method,
            status,
            headers: raw.headers.clone(),
            body: raw.body.clone(),
            expect,
        },
        format!("http {u}"),
    )
}

fn uds(raw: &RawProbe, in_service: Option<String>, expect: Option<Matcher>) -> Checked {
    let path = raw.uds.clone().unwrap_or_default();
    (
        ProbeKind::Uds {
            path: path.clone(),
            in_service: in_service.clone(),
            send: raw.send.clone(),
            expect,
        },
        format!("uds {path}"),
    )
}

fn file(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe) -> Checked {
    let rel = raw.file.clone().unwrap_or_default();
    let abs = project_path(cx, &p.key("file"), &rel, "probed file").unwrap_or_default();
    let mode_v = raw
        .mode
        .as_deref()
        .and_then(|m| mode(cx, &p.key("mode"), m));
    let owner = raw.owner.as_ref().map(|o| match o.as_str() {
        "host" => Owner::Host,
        o => o
            .parse()
            .map(Owner::Uid)
            .unwrap_or_else(|_| Owner::Name(o.to_owned())),
    });
    let file_type = raw.file_type.as_deref().and_then(|t| match t {
        "file" => Some(FileType::File),
        "dir" => Some(FileType::Dir),
        "socket" => Some(FileType::Socket),
        "symlink" => Some(FileType::Symlink),
        _ => {
            cx.err(
                Diagnostic::error(p.key("type"), format!("unknown file type `{t}`"))
                    .expected("file, dir, socket or symlink"),
            );
            None
        }
    });
    (
        ProbeKind::File {
            path: abs,
            path_rel: rel.clone(),
            mode: mode_v,
            owner,
            file_type,
            contains: raw.contains.clone(),
            json: raw.json.unwrap_or(false),
        },
        format!("file {rel}"),
    )
}

fn exec(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: &RawProbe,
    in_service: Option<String>,
    expect: Option<Matcher>,
    expect_stderr: Option<Matcher>,
) -> Option<Checked> {
    let services = &cx.names.services;
    let argv = raw.exec.as_ref().map(shell_words).unwrap_or_default();
    if matches!(&raw.exec, Some(StringOrList::Many(v)) if v.is_empty()) {
        cx.err(
            Diagnostic::error(p.key("exec"), "exec probe command is empty")
                .expected("a command such as [\"id\", \"-u\"]"),
        );
    }
    if raw.in_service.is_none() {
        cx.err_key(
            Diagnostic::error(
                p.key("exec"),
                "exec probe does not say which service it runs in",
            )
            .expected("`in = \"SERVICE\"`")
            .hint(format!(
                "services: {}",
                services
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    let svc = in_service.clone()?;
    let expect_exit = match &raw.expect_exit {
        None => ExitExpectation::Zero,
        Some(ExpectExit::Code(0)) => ExitExpectation::Zero,
        Some(ExpectExit::Code(n)) => match i32::try_from(*n) {
            Ok(n) if (0..=255).contains(&n) => ExitExpectation::Code(n),
            _ => {
                cx.err(
                    Diagnostic::error(
                        p.key("expect_exit"),
                        format!("exit code {n} is out of range"),
                    )
                    .expected("a number from 0 to 255"),
                );
                ExitExpectation::Zero
            }
        },
        Some(ExpectExit::Word(w)) => match w.as_str() {
            "zero" => ExitExpectation::Zero,
            "nonzero" => ExitExpectation::Nonzero,
            "denied" => ExitExpectation::Denied,
            _ => {
                cx.err(
                    Diagnostic::error(p.key("expect_exit"), format!("unknown expect_exit `{w}`"))
                        .expected("a number, \"zero\", \"nonzero\" or \"denied\""),
                );
                ExitExpectation::Zero
            }
        },
    };
    if let Some(u) = &raw.user {
        check_user(cx, &p.key("user"), u);
    }
    Some((
        ProbeKind::Exec {
            argv: argv.clone(),
            in_service: svc.clone(),
            user: raw.user.clone(),
            expect_exit,
            expect,
            expect_stderr,
        },
        format!("exec {} in {svc}", argv.join(" ")),
    ))
}

fn log(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe, expect: Option<Matcher>) -> Option<Checked> {
    let services = &cx.names.services;
    let svc = raw.log.clone().unwrap_or_default();
    reference(cx, &p.key("log"), "service", &svc, services, "services");
    let Some(expect) = expect else {
        cx.err_key(
            Diagnostic::error(p.key("log"), "log probe has nothing to look for")
                .expected("`expect = \"TEXT\"` or `expect = \"/REGEX/\"`"),
        );
        return None;
    };
    Some((
        ProbeKind::Log {
            service: svc.clone(),
            expect,
        },
        format!("log of {svc}"),
    ))
}

fn loopback_only(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe) -> Option<Checked> {
    let port = port_number(
        cx,
        &p.key("loopback_only"),
        raw.loopback_only.unwrap_or(0),
        "port",
    )?;
    Some((
        ProbeKind::LoopbackOnly { port },
        format!("port {port} is loopback-only"),
    ))
}

fn check_regex(cx: &mut Ctx, p: &KeyPath, m: Option<&Matcher>) {
    if let Some(Matcher::Regex(r)) = m {
        if cx.valid_regexes.contains(r) {
            return;
        }
        if let Err(e) = regex::Regex::new(r) {
            let msg = e.to_string();
            let last = msg.lines().last().unwrap_or("").trim().to_owned();
            cx.err(
                Diagnostic::error(p.clone(), format!("invalid regular expression /{r}/: {}", last.trim_start_matches("error: ")))
                    .hint("a value written /like this/ is a regex; drop the slashes to match the text literally"),
            );
        } else {
            cx.valid_regexes.insert(r.clone());
        }
    }
}

fn check_host_port(cx: &mut Ctx, p: &KeyPath, a: &str) {
    let ok = a
        .rsplit_once(':')
        .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
    if !ok {
        cx.err(
            Diagnostic::error(p.clone(), format!("invalid address `{a}`"))
                .expected("\"HOST:PORT\", such as \"127.0.0.1:8080\""),
        );
    }
}
