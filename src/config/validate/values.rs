//! Values every section checks the same way: modes, sizes, durations, port numbers,
//! environment variable names, users and commands.

use std::collections::BTreeMap;

use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::{EnvValue, SizeValue, StringOrList};
use crate::config::model::User;

pub fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if !(3..=4).contains(&digits.len()) || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

pub(super) fn mode(cx: &mut Ctx, path: &KeyPath, s: &str) -> Option<u32> {
    let m = parse_mode(s);
    if m.is_none() {
        cx.err(
            Diagnostic::error(path.clone(), format!("invalid mode `{s}`"))
                .expected("an octal mode as a string, such as \"0755\" or \"0600\"")
                .hint("each digit is 0-7: owner, group, others"),
        );
    }
    m
}

pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.is_empty() || t.starts_with('-') {
        return None;
    }
    parse_size::Config::new().with_binary().parse_size(t).ok()
}

pub(super) fn size(cx: &mut Ctx, path: &KeyPath, v: &SizeValue) -> Option<u64> {
    let r = match v {
        SizeValue::Bytes(b) => u64::try_from(*b).ok(),
        SizeValue::Text(s) => parse_size(s),
    };
    if r.is_none() {
        let shown = match v {
            SizeValue::Bytes(b) => b.to_string(),
            SizeValue::Text(s) => format!("\"{s}\""),
        };
        cx.err(
            Diagnostic::error(path.clone(), format!("invalid size {shown}"))
                .expected("a size such as \"512k\", \"256m\" or \"1g\" (powers of 1024), or a number of bytes"),
        );
    }
    r
}

pub fn parse_duration_ms(s: &str) -> Option<u64> {
    humantime::parse_duration(s.trim())
        .ok()
        .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
}

pub(super) fn duration(cx: &mut Ctx, path: &KeyPath, s: &str) -> Option<u64> {
    let r = parse_duration_ms(s);
    if r.is_none() {
        cx.err(
            Diagnostic::error(path.clone(), format!("invalid duration \"{s}\""))
                .expected("a duration such as \"500ms\", \"5s\", \"1m30s\"")
                .hint("units: ms, s, m, h"),
        );
    }
    r
}

pub(super) fn opt_duration(
    cx: &mut Ctx,
    path: &KeyPath,
    s: Option<&String>,
    default_ms: u64,
) -> u64 {
    s.and_then(|s| duration(cx, path, s)).unwrap_or(default_ms)
}

pub(super) fn port_number(cx: &mut Ctx, path: &KeyPath, n: i64, what: &str) -> Option<u16> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            cx.err(
                Diagnostic::error(path.clone(), format!("{what} {n} is out of range"))
                    .expected("a port number from 1 to 65535"),
            );
            None
        }
    }
}

pub(super) fn env_map(map: &BTreeMap<String, EnvValue>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

pub(super) fn check_env_names(
    cx: &mut Ctx,
    path: &KeyPath,
    keys: impl IntoIterator<Item = String>,
) {
    for k in keys {
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            cx.err_key(
                Diagnostic::error(
                    path.key(&k),
                    format!("invalid environment variable name `{k}`"),
                )
                .expected("letters, digits and `_`, not starting with a digit"),
            );
        }
    }
}

/// A command given as one string runs through `sh -c`, as in a Containerfile's shell form.
pub(super) fn shell_words(c: &StringOrList) -> Vec<String> {
    match c {
        StringOrList::One(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        StringOrList::Many(v) => v.clone(),
    }
}

pub(super) fn check_user(cx: &mut Ctx, p: &KeyPath, u: &str) -> Option<User> {
    let user = User::parse(u);
    if user.is_none() {
        cx.err(
            Diagnostic::error(p.clone(), format!("invalid user `{u}`"))
                .expected("\"UID\", \"UID:GID\" or a user name, such as \"1000:1000\""),
        );
    }
    user
}
