//! `devbox down`: remove the project's containers and networks. `.data/` and named
//! volumes stay; `--volumes` removes the volumes after listing them and asking.
//! Stopping containers needs only the project's name and engine, so a data tree that
//! changed on disk (a link out of the project in `.data`, which a container can make)
//! does not keep `down` from stopping them.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use super::Global;
use crate::apply::{self, DownOptions, Progress};
use crate::config::{self, ConfigError, Diagnostic, LoadOptions, Loaded, Severity};
use crate::words::count;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also remove this project's named volumes (listed first, and asked).
    #[arg(long)]
    pub volumes: bool,
    /// Do not ask (needed for --volumes when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Seconds to wait for each container to stop before killing it; default each
    /// service's `stop_grace_period` (10 s unless set).
    #[arg(short, long)]
    pub timeout: Option<u32>,
    /// Act on the project even when its containers were made from another directory
    /// with the same [project] name (another checkout).
    #[arg(long)]
    pub take_over: bool,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = match super::load(g) {
        Ok(l) => l,
        Err(e) => project_only(g, &e)?.ok_or(e)?,
    };
    let project = loaded.config.project.name.clone();
    let _lock = super::lock_project(&project, &loaded.config.dir, true)?;
    let conn = super::engine::connect(&loaded)?;
    let rt = super::engine::runtime()?;
    rt.block_on(apply::check_checkout(
        &conn.engine,
        &project,
        &loaded.config.dir,
        a.take_over,
    ))?;
    let mut volumes = false;
    if a.volumes {
        let list = rt.block_on(apply::observe::volumes(&conn.engine, &project))?;
        if !list.is_empty() {
            eprintln!("named volumes of project {project} (their data is lost):");
            for v in &list {
                eprintln!("  {}", v.name);
            }
            volumes = confirm(a.yes, "remove these volumes?")?;
            if !volumes {
                eprintln!("keeping the volumes");
            }
        }
    }
    let opts = DownOptions {
        volumes,
        timeout_s: a.timeout.unwrap_or(apply::SERVICE_GRACE),
    };
    let r = rt.block_on(apply::down(
        &conn.engine,
        &project,
        &opts,
        &Progress::new(false),
    ))?;
    apply::ports::release(&crate::plan::plan(&loaded.config));
    println!(
        "{project} is down: {} and {} removed{}; .data kept",
        count(r.containers.len(), "container"),
        count(r.networks.len(), "network"),
        if r.volumes.is_empty() {
            String::new()
        } else {
            format!(", volumes removed: {}", r.volumes.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// What the file says once the problems are on disk rather than in the file: when every
/// error is a path that goes through a symlink leading out of the project, the file's
/// `[project]` table alone (with `sandbox.local.toml`'s on top), which is all stopping
/// the containers needs. The problems are printed as warnings. `None` otherwise.
fn project_only(g: &Global, e: &anyhow::Error) -> anyhow::Result<Option<Loaded>> {
    const ON_DISK: &str = "goes through a symlink that leads outside the project";
    let Some(ce) = e.downcast_ref::<ConfigError>() else {
        return Ok(None);
    };
    let errors: Vec<&Diagnostic> = ce
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if errors.is_empty() || !errors.iter().all(|d| d.message.contains(ON_DISK)) {
        return Ok(None);
    }
    let cwd = std::env::current_dir()?;
    let Some(file) = g
        .file
        .as_ref()
        .map(|f| config::absolute(f, &cwd))
        .or_else(|| config::find_file(&cwd))
    else {
        return Ok(None);
    };
    let parse = |path: &std::path::Path| -> Option<toml_edit::DocumentMut> {
        std::fs::read_to_string(path).ok()?.parse().ok()
    };
    let Some(main) = parse(&file) else {
        return Ok(None);
    };
    let mut reduced = toml_edit::DocumentMut::new();
    if let Some(p) = main.get("project") {
        reduced["project"] = p.clone();
    }
    let local = file.with_file_name(config::LOCAL_FILE_NAME);
    if local.is_file() {
        let Some(doc) = parse(&local) else {
            return Ok(None);
        };
        if let Some(t) = doc.get("project").and_then(|i| i.as_table_like()) {
            for (k, v) in t.iter() {
                reduced["project"][k] = v.clone();
            }
        }
    }
    let opts = LoadOptions {
        file: Some(file),
        cwd,
        engine: g.engine.map(Into::into),
        project_name: g.project_name.clone(),
        text: Some(reduced.to_string()),
        workers_only: false,
    };
    let Ok(loaded) = config::load(&opts) else {
        return Ok(None);
    };
    let mut err = std::io::stderr();
    for d in errors {
        let mut w = d.clone();
        w.label = Some("warning".into());
        let _ = writeln!(err, "{w}");
    }
    eprintln!(
        "note: stopping the containers of project {} does not need these paths; down goes on",
        loaded.config.project.name
    );
    Ok(Some(loaded))
}

/// Asks on the terminal; without one, only `--yes` says yes.
pub(super) fn confirm(yes: bool, question: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{question} needs an answer, and stdin is not a terminal\nhint: pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
