//! A small block-style YAML writer for JSON values.
//!
//! Compose files are read by PyYAML, which follows YAML 1.1: there `no` is false and
//! `1000:50` is a base-60 number. A string is therefore written plain only when it
//! cannot be read as anything but a string under 1.1 or 1.2; otherwise it is written
//! double-quoted with JSON escapes, which YAML accepts as is.

use std::fmt::Write;

use serde_json::Value;

pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        let _ = write!(out, "{:indent$}{}:", "", string(k));
        write_value(out, v, indent);
    }
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        let _ = write!(out, "{:indent$}-", "");
        match v {
            Value::Object(m) if !m.is_empty() => {
                // First key on the dash line, the rest aligned under it.
                let mut first = true;
                for (k, val) in m {
                    if first {
                        let _ = write!(out, " {}:", string(k));
                        first = false;
                    } else {
                        let _ = write!(out, "{:w$}{}:", "", string(k), w = indent + 2);
                    }
                    write_value(out, val, indent + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            other => {
                let _ = writeln!(out, " {}", scalar(other));
            }
        }
    }
}

fn write_value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, indent);
        }
        other => {
            let _ = writeln!(out, " {}", scalar(other));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Plain when unambiguous, else double-quoted.
pub fn string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("strings serialize")
    }
}

fn is_plain_safe(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "n", "yes", "no", "true", "false", "on", "off", "null", "~", "nan", "inf",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    if WORDS.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    // Anything starting like a number (including 1.1's base-60 `1:20` and `0x10`).
    if first.is_ascii_digit() || ((first == '-' || first == '+' || first == '.') && s.len() > 1) {
        return false;
    }
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if s.ends_with(':') || s.contains(": ") || s.contains(" #") || s.ends_with(' ') {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@=+, ".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ambiguous_strings_are_quoted() {
        // PyYAML (YAML 1.1) would read these as booleans, numbers or null.
        for s in [
            "no", "Yes", "on", "1000:50", "7777", "0x10", "1e3", "~", "null", "-1", "",
        ] {
            assert!(string(s).starts_with('"'), "{s} must be quoted");
        }
        for s in [
            "ALL",
            "/app/server.sh",
            "localhost/devbox-x:abc",
            "no-new-privileges:true",
        ] {
            assert_eq!(string(s), s);
        }
    }

    #[test]
    fn nested_structures_round_trip_through_a_yaml_parser() {
        let v = json!({
            "a": { "b": [1, "no", { "c": "d", "e": ["x", "1:20"] }], "empty": {}, "list": [] },
            "z": [[1, 2], "q: r"],
        });
        let text = to_string(&v);
        let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, v, "{text}");
    }
}
