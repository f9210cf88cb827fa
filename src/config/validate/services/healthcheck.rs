//! A service's `healthcheck`: one test (a command, a TCP port or an HTTP URL) and its
//! timing.

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::StringOrList;
use crate::config::model::{HealthTest, Healthcheck};
use crate::config::raw::RawHealthcheck;
use crate::config::validate::values::{opt_duration, port_number, shell_words};
use crate::config::validate::Ctx;

pub(super) fn resolve_healthcheck(
    cx: &mut Ctx,
    p: &KeyPath,
    h: &RawHealthcheck,
) -> Option<Healthcheck> {
    let kinds = [h.cmd.is_some(), h.tcp.is_some(), h.http.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if kinds != 1 {
        cx.err_key(
            Diagnostic::error(
                p.clone(),
                if kinds == 0 {
                    "healthcheck has no test".to_owned()
                } else {
                    "healthcheck has more than one test".to_owned()
                },
            )
            .expected("exactly one of `cmd`, `tcp`, `http`")
            .hint("for example healthcheck = { tcp = 8080 }"),
        );
        return None;
    }
    let test = if let Some(c) = &h.cmd {
        let v = shell_words(c);
        if matches!(c, StringOrList::Many(v) if v.is_empty()) {
            cx.err(
                Diagnostic::error(p.key("cmd"), "healthcheck command is empty").expected(
                    "a command such as [\"wget\", \"-q\", \"-O-\", \"http://127.0.0.1:8080/\"]",
                ),
            );
            return None;
        }
        HealthTest::Cmd(v)
    } else if let Some(t) = h.tcp {
        HealthTest::Tcp(port_number(cx, &p.key("tcp"), t, "healthcheck port")?)
    } else {
        let u = h.http.clone().unwrap_or_default();
        if !(u.starts_with("http://") || u.starts_with('/')) {
            cx.err(
                Diagnostic::error(p.key("http"), format!("invalid healthcheck URL `{u}`"))
                    .expected("\"http://127.0.0.1:PORT/PATH\" or a path such as \"/health\""),
            );
            return None;
        }
        HealthTest::Http(u)
    };
    let retries = match h.retries {
        None => 15,
        Some(n) if (1..=10_000).contains(&n) => n as u32,
        Some(n) => {
            cx.err(
                Diagnostic::error(p.key("retries"), format!("retries = {n} is out of range"))
                    .expected("a number from 1 to 10000"),
            );
            15
        }
    };
    Some(Healthcheck {
        test,
        interval_ms: opt_duration(cx, &p.key("interval"), h.interval.as_ref(), 2_000),
        timeout_ms: opt_duration(cx, &p.key("timeout"), h.timeout.as_ref(), 2_000),
        retries,
        start_period_ms: opt_duration(cx, &p.key("start_period"), h.start_period.as_ref(), 0),
    })
}
