//! `devbox audit`: the security posture of sandbox.toml, as a report that fails the
//! build at a chosen severity.

use std::process::ExitCode;

use super::Global;
use crate::audit::{self, Finding, Severity, RULES};
use crate::config::{self, Diagnostic, Loaded, Origin, Point};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Sarif,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Exit 1 when an unwaived finding is at or above this severity.
    #[arg(long, value_enum, default_value = "high", value_name = "SEVERITY")]
    pub fail_on: Severity,
    /// List the rules and exit.
    #[arg(long)]
    pub rules: bool,
    /// Audit a docker-compose file instead, as compose would run it; findings point at
    /// its lines.
    #[arg(long, value_name = "FILE")]
    pub compose: Option<std::path::PathBuf>,
}

/// Findings paired with where they are in the file.
pub(super) fn located(loaded: &Loaded) -> Vec<(Finding, Option<Origin>)> {
    audit::audit(&loaded.config)
        .into_iter()
        .map(|f| {
            let o = config::locate_key(loaded, &f.key, Point::Key);
            (f, o)
        })
        .collect()
}

/// Stops `up` and `verify` before anything starts when the project has unwaived
/// critical findings, naming each at its place, unless `allow` (`--allow-insecure`).
pub(super) fn refuse_critical(loaded: &Loaded, allow: bool) -> anyhow::Result<()> {
    let critical: Vec<(Finding, Option<Origin>)> = located(loaded)
        .into_iter()
        .filter(|(f, _)| f.severity == Severity::Critical && f.waived.is_none())
        .collect();
    if critical.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = critical
        .iter()
        .map(|(f, o)| {
            let at = match o {
                Some(Origin::File {
                    file, line, column, ..
                }) => format!("{}:{line}:{column}: ", file.display()),
                _ => String::new(),
            };
            let r = audit::rule(f.rule).expect("known rule");
            format!(
                "  {at}{} {}: {} (fix: {})",
                f.rule, r.title, f.message, r.fix
            )
        })
        .collect();
    if allow {
        eprintln!(
            "warning: starting despite {} (--allow-insecure):\n{}",
            crate::words::count(critical.len(), "critical audit finding"),
            list.join("\n")
        );
        return Ok(());
    }
    anyhow::bail!(
        "refusing to start: {}, nothing was started:\n{}\n\
         fix them, waive each with a reason under [services.NAME.audit], or pass --allow-insecure",
        crate::words::count(critical.len(), "critical audit finding"),
        list.join("\n")
    )
}

/// A file that fails validation: its problems on stderr as `check` prints them, and on
/// stdout a SARIF log whose results are those problems at their lines; exit 2.
fn sarif_of_invalid(e: anyhow::Error) -> anyhow::Result<ExitCode> {
    let ce = e.downcast::<config::ConfigError>()?;
    eprintln!("{ce}");
    let uri = ce.file.display().to_string();
    println!(
        "{}",
        serde_json::to_string_pretty(&audit::sarif::render_invalid(&ce.diagnostics, &uri))?
    );
    Ok(ExitCode::from(super::EXIT_CONFIG))
}

/// `audit: 1 critical, 2 medium (1 waived)` or `audit: clean`.
pub(super) fn summary_line(found: &[(Finding, Option<Origin>)]) -> String {
    let findings: Vec<Finding> = found.iter().map(|(f, _)| f.clone()).collect();
    let counts: Vec<String> = audit::summary(&findings)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let waived = findings.iter().filter(|f| f.waived.is_some()).count();
    let mut line = if counts.is_empty() {
        "audit: no findings".to_owned()
    } else {
        format!("audit: {}", counts.join(", "))
    };
    if waived > 0 {
        line.push_str(&format!(" ({waived} waived)"));
    }
    line
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    if a.rules {
        for r in RULES {
            let cis = r
                .cis
                .map(|(n, t)| format!("  CIS 1.6.0 {n} {t}"))
                .unwrap_or_default();
            println!("{} {:<8} {}{cis}", r.id, r.severity.as_str(), r.title);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (found, uri) = match &a.compose {
        Some(file) => {
            let c = super::import::load_compose(g, file, crate::import::Mode::Audit)?;
            for n in &c.imported.unbuilt {
                eprintln!(
                    "warning: {}:{}:{}: {}: {}; audited without building it",
                    c.shown.display(),
                    n.line,
                    n.column,
                    n.path,
                    n.text
                );
            }
            let mut found: Vec<(Finding, Option<Origin>)> = audit::audit(&c.loaded.config)
                .into_iter()
                .map(|f| {
                    let o = c.origin(&f.key);
                    (f, o)
                })
                .collect();
            for e in &c.imported.extra {
                found.push((
                    Finding::new(e.rule, e.key.clone(), e.message.clone()),
                    Some(c.origin_at(e.at)),
                ));
            }
            // File order, as for sandbox.toml.
            found.sort_by_key(|(_, o)| match o {
                Some(Origin::File { line, column, .. }) => (*line, *column),
                _ => (usize::MAX, 0),
            });
            (found, c.shown.display().to_string())
        }
        None => {
            let loaded = match super::load(g) {
                Err(e) if matches!(a.format, Format::Sarif) => {
                    return sarif_of_invalid(e);
                }
                other => other?,
            };
            let uri = loaded.sources[0].display.display().to_string();
            (located(&loaded), uri)
        }
    };
    let failing = found
        .iter()
        .filter(|(f, _)| f.waived.is_none() && f.severity >= a.fail_on)
        .count();
    match a.format {
        Format::Json => {
            let v: Vec<serde_json::Value> = found
                .iter()
                .map(|(f, o)| {
                    let mut v = serde_json::to_value(f).expect("findings serialize");
                    let r = audit::rule(f.rule).expect("known rule");
                    v["title"] = r.title.into();
                    v["fix"] = r.fix.into();
                    v["cis"] = serde_json::to_value(r.cis).unwrap_or_default();
                    v["pss"] = serde_json::to_value(r.pss).unwrap_or_default();
                    v["location"] = serde_json::to_value(o).unwrap_or_default();
                    v
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "findings": v,
                    "fail_on": a.fail_on,
                    "failing": failing,
                }))?
            );
        }
        Format::Sarif => {
            println!(
                "{}",
                serde_json::to_string_pretty(&audit::sarif::render(&found, &uri))?
            );
        }
        Format::Human => {
            for (f, o) in &found {
                let r = audit::rule(f.rule).expect("known rule");
                let mut d =
                    Diagnostic::warning(f.key.clone(), format!("{}: {}", r.title, f.message))
                        .with_origin(o.clone());
                d.label = Some(format!("{} {}", f.severity, f.rule));
                d = d.hint(r.fix);
                if let Some((n, t)) = r.cis {
                    d.notes
                        .push(("cis".into(), format!("Docker Benchmark v1.6.0 {n} {t}")));
                }
                if let Some((p, c)) = r.pss {
                    d.notes.push(("pss".into(), format!("{p}: {c}")));
                }
                if let Some(w) = &f.waived {
                    d.notes.push(("waived".into(), w.clone()));
                }
                println!("{d}");
            }
            println!(
                "{}; {}",
                summary_line(&found),
                if failing == 0 {
                    format!("nothing at or above {}", a.fail_on)
                } else {
                    format!("{failing} at or above {}: failing", a.fail_on)
                }
            );
        }
    }
    Ok(if failing > 0 {
        ExitCode::from(super::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
