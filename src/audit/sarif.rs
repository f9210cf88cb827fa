//! SARIF 2.1.0, the format code-scanning UIs read, so findings show on the right line.

use serde_json::{json, Value};

use super::{Finding, Severity, RULES};
use crate::config::{Diagnostic, Origin, Severity as DiagnosticSeverity};

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's code scanning ranks by this 0-10 score.
fn score(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// The rule id of a problem that keeps the file from loading at all.
pub const INVALID_RULE: &str = "devbox-config";

/// A file that fails validation still gets a SARIF log, so code scanning shows its errors
/// at their lines instead of nothing: one result per diagnostic under [`INVALID_RULE`].
pub fn render_invalid(diagnostics: &[Diagnostic], file_uri: &str) -> Value {
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let mut text = format!("{} (key {})", d.message, d.key);
            if let Some(e) = &d.expected {
                text.push_str(&format!("; expected {e}"));
            }
            if let Some(h) = &d.hint {
                text.push_str(&format!("; hint: {h}"));
            }
            result(
                INVALID_RULE,
                RULES.len(),
                match d.severity {
                    DiagnosticSeverity::Error => "error",
                    DiagnosticSeverity::Warning => "warning",
                },
                text,
                d.origin.as_ref(),
                file_uri,
            )
        })
        .collect();
    log(results)
}

fn result(
    rule: &str,
    index: usize,
    level: &str,
    text: String,
    origin: Option<&Origin>,
    file_uri: &str,
) -> Value {
    let (uri, line, column) = match origin {
        Some(Origin::File {
            file, line, column, ..
        }) => (file.display().to_string(), *line, *column),
        _ => (file_uri.to_owned(), 1, 1),
    };
    json!({
        "ruleId": rule,
        "ruleIndex": index,
        "level": level,
        "message": { "text": text },
        "locations": [{
            "physicalLocation": {
                "artifactLocation": { "uri": uri },
                "region": { "startLine": line, "startColumn": column },
            },
        }],
    })
}

/// `located` pairs each finding with where it is in the file (if known).
pub fn render(located: &[(Finding, Option<Origin>)], file_uri: &str) -> Value {
    let results: Vec<Value> = located
        .iter()
        .map(|(f, origin)| {
            let index = RULES.iter().position(|r| r.id == f.rule).unwrap_or(0);
            let mut r = result(
                f.rule,
                index,
                level(f.severity),
                format!("{} (key {})", f.message, f.key),
                origin.as_ref(),
                file_uri,
            );
            if let Some(reason) = &f.waived {
                r["suppressions"] = json!([{ "kind": "inSource", "justification": reason }]);
            }
            r
        })
        .collect();
    log(results)
}

/// The whole log: devbox's rules (and the rule for a file that does not load, last) and
/// `results`.
fn log(results: Vec<Value>) -> Value {
    let mut rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            let mut tags = vec!["security".to_owned()];
            if let Some((n, _)) = r.cis {
                tags.push(format!("CIS-Docker-1.6.0-{n}"));
            }
            if let Some((profile, control)) = r.pss {
                tags.push(format!("PSS-{profile}: {control}"));
            }
            let mut help = format!("Fix: {}", r.fix);
            if let Some((n, t)) = r.cis {
                help.push_str(&format!("\nCIS Docker Benchmark v1.6.0 {n}: {t}"));
            }
            if let Some((p, c)) = r.pss {
                help.push_str(&format!("\nKubernetes Pod Security Standards ({p}): {c}"));
            }
            json!({
                "id": r.id,
                "name": r.title,
                "shortDescription": { "text": r.title },
                "help": { "text": help },
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": { "tags": tags, "security-severity": score(r.severity), "severity": r.severity.as_str() },
            })
        })
        .collect();
    rules.push(json!({
        "id": INVALID_RULE,
        "name": "sandbox.toml is not valid",
        "shortDescription": { "text": "sandbox.toml is not valid" },
        "help": { "text": "Fix the file: `devbox check` lists every problem with its line, what was expected and a hint." },
        "defaultConfiguration": { "level": "error" },
        "properties": { "tags": ["configuration"] },
    }));
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "devbox",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/devbox-dev/devbox",
                    "rules": rules,
                },
            },
            "results": results,
        }],
    })
}
