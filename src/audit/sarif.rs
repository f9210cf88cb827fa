//! SARIF 2.1.0, the format code-scanning UIs read, so findings show on the right line.

use serde_json::{json, Value};

use super::{Finding, Severity, RULES};
use crate::config::Origin;

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

/// `located` pairs each finding with where it is in the file (if known).
pub fn render(located: &[(Finding, Option<Origin>)], file_uri: &str) -> Value {
    let rules: Vec<Value> = RULES
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
    let results: Vec<Value> = located
        .iter()
        .map(|(f, origin)| {
            let index = RULES.iter().position(|r| r.id == f.rule).unwrap_or(0);
            let (uri, line, column) = match origin {
                Some(Origin::File {
                    file, line, column, ..
                }) => (file.display().to_string(), *line, *column),
                _ => (file_uri.to_owned(), 1, 1),
            };
            let mut r = json!({
                "ruleId": f.rule,
                "ruleIndex": index,
                "level": level(f.severity),
                "message": { "text": format!("{} (key {})", f.message, f.key) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri },
                        "region": { "startLine": line, "startColumn": column },
                    },
                }],
            });
            if let Some(reason) = &f.waived {
                r["suppressions"] = json!([{ "kind": "inSource", "justification": reason }]);
            }
            r
        })
        .collect();
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
