//! `devbox down`: remove the project's containers and networks. `.data/` and named
//! volumes stay; `--volumes` removes the volumes after listing them and asking.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use super::Global;
use crate::apply::{self, DownOptions, Progress};
use crate::engine::Engine;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also remove this project's named volumes (listed first, and asked).
    #[arg(long)]
    pub volumes: bool,
    /// Do not ask (needed for --volumes when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Seconds to wait for each container to stop before killing it.
    #[arg(short, long, default_value_t = 10)]
    pub timeout: u32,
    /// Act on the project even when its containers were made from another directory
    /// with the same [project] name (another checkout).
    #[arg(long)]
    pub take_over: bool,
}

pub fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
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
        let list = rt.block_on(conn.engine.list_volumes(&project))?;
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
        timeout_s: a.timeout,
    };
    let r = rt.block_on(apply::down(
        &conn.engine,
        &project,
        &opts,
        &Progress::new(false),
    ))?;
    apply::ports::release(&crate::plan::plan(&loaded.config));
    println!(
        "{project} is down: {} container{} and {} network{} removed{}; .data kept",
        r.containers.len(),
        if r.containers.len() == 1 { "" } else { "s" },
        r.networks.len(),
        if r.networks.len() == 1 { "" } else { "s" },
        if r.volumes.is_empty() {
            String::new()
        } else {
            format!(", volumes removed: {}", r.volumes.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; without one, only `--yes` says yes.
pub fn confirm(yes: bool, question: &str) -> anyhow::Result<bool> {
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
