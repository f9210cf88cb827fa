//! `devbox import`: a compose file as a sandbox.toml, with what could not be mapped
//! listed; and the loading of a compose file that `audit --compose` shares.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use crate::config::{self, ConfigError, Diagnostic, KeyPath, LoadOptions, Loaded, Origin};
use crate::import::{self, yaml::Loc, Imported, Mode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The compose file (docker-compose.yml, compose.yaml, …).
    #[arg(value_name = "FILE")]
    pub compose: PathBuf,
    /// Write the sandbox.toml here instead of printing it.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace the output file when it exists.
    #[arg(long)]
    pub force: bool,
}

/// A compose file converted and loaded as devbox configuration.
pub(super) struct ComposeLoaded {
    pub imported: Imported,
    pub loaded: Loaded,
    /// The compose file as shown to the user.
    pub shown: PathBuf,
    pub text: String,
}

impl ComposeLoaded {
    /// Where a devbox key's setting is in the compose file, as a diagnostic origin.
    pub(super) fn origin(&self, key: &KeyPath) -> Option<Origin> {
        let at = self.imported.locate(key)?;
        Some(self.origin_at(at))
    }

    pub(super) fn origin_at(&self, at: Loc) -> Origin {
        yaml_origin(&self.shown, &self.text, at)
    }
}

/// A position in the compose file as a diagnostic origin (the line, a caret under the key).
fn yaml_origin(shown: &Path, text: &str, at: Loc) -> Origin {
    let line = text.lines().nth(at.line.saturating_sub(1)).unwrap_or("");
    let rest: String = line.chars().skip(at.column.saturating_sub(1)).collect();
    let width = rest
        .find(':')
        .filter(|&w| w > 0)
        .unwrap_or_else(|| rest.trim_end().chars().count().max(1));
    Origin::in_line(
        shown.to_path_buf(),
        at.line,
        at.column,
        line,
        byte_of_column(line, at.column),
        width,
    )
}

/// The byte offset of 1-based character `column` in `line`.
fn byte_of_column(line: &str, column: usize) -> usize {
    line.char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i)
}

/// Reads, converts and loads a compose file. A file devbox cannot read is a config
/// error at its line and column.
pub(super) fn load_compose(
    g: &Global,
    compose: &Path,
    mode: Mode,
) -> anyhow::Result<ComposeLoaded> {
    let cwd = std::env::current_dir()?;
    let path = config::absolute(compose, &cwd);
    let shown = config::display_path(&path, &cwd);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", shown.display()))?;
    let dir = path.parent().unwrap_or(&cwd).to_path_buf();
    let imported = import::convert(&text, &dir, g.project_name.as_deref(), mode).map_err(|e| {
        let line = text.lines().nth(e.at.line.saturating_sub(1)).unwrap_or("");
        ConfigError {
            file: shown.clone(),
            diagnostics: vec![Diagnostic::error(KeyPath::root(), e.message)
                .with_origin(Some(Origin::in_line(
                    shown.clone(),
                    e.at.line,
                    e.at.column,
                    line,
                    byte_of_column(line, e.at.column),
                    1,
                )))
                .expected("a compose file (YAML with a `services` mapping)")
                .hint("`docker compose -f FILE config` shows how compose reads it")],
        }
    })?;
    let opts = LoadOptions {
        file: Some(dir.join(config::FILE_NAME)),
        cwd: cwd.clone(),
        engine: g.engine.map(Into::into),
        project_name: None,
        text: Some(imported.toml.clone()),
        workers_only: false,
    };
    let loaded = match config::load(&opts) {
        Ok(l) => l,
        Err(e) => {
            // The conversion made something devbox rejects: each problem at the compose
            // setting it came from.
            let diagnostics = e
                .diagnostics
                .into_iter()
                .map(|d| {
                    let origin = imported
                        .locate(&d.key)
                        .map(|at| yaml_origin(&shown, &text, at));
                    let mut d = d.with_origin(origin);
                    d.message = format!("as devbox reads it: {}", d.message);
                    d
                })
                .collect();
            return Err(ConfigError {
                file: shown,
                diagnostics,
            }
            .into());
        }
    };
    Ok(ComposeLoaded {
        imported,
        loaded,
        shown,
        text,
    })
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    if let Some(out) = &a.output {
        if out.exists() && !a.force {
            anyhow::bail!(
                "{} exists; nothing was written (use --force to replace it)",
                out.display()
            );
        }
    }
    let c = load_compose(g, &a.compose, Mode::Import)?;
    let notes = &c.imported.notes;
    let mut header = format!(
        "# Imported by devbox from {}; check it with `devbox check` and `devbox audit`.\n",
        c.shown.display()
    );
    if !notes.is_empty() {
        header.push_str("#\n");
        for n in notes {
            header.push_str(&format!(
                "# {} {}:{} {}: {}\n",
                if n.unmapped { "NOT MAPPED" } else { "note" },
                n.line,
                n.column,
                n.path,
                n.text
            ));
        }
    }
    let text = format!("{header}\n{}", c.imported.toml);
    let mut err = std::io::stderr();
    for n in notes {
        let _ = writeln!(
            err,
            "{}:{}:{}: {}: {}: {}",
            c.shown.display(),
            n.line,
            n.column,
            if n.unmapped { "not mapped" } else { "note" },
            n.path,
            n.text
        );
    }
    let unmapped = notes.iter().filter(|n| n.unmapped).count();
    match &a.output {
        Some(out) => {
            crate::fsutil::write_atomic(out, text.as_bytes(), 0o644)?;
            let _ = writeln!(
                err,
                "wrote {} ({}; {} not mapped, listed above and in the file)",
                out.display(),
                crate::words::count(c.loaded.config.services.len(), "service"),
                crate::words::count(unmapped, "setting")
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
