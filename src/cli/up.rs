//! `devbox up`: make the engine match sandbox.toml, and wait until it is ready. Exit 130
//! when interrupted (SIGINT or SIGTERM), leaving what was made so far.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::Global;
use crate::apply::{self, Progress, UpOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rebuild images even when an image with the same content exists.
    #[arg(long)]
    pub build: bool,
    /// Remove containers of services no longer in the file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// How long to wait for the services to be running and healthy.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub timeout: Duration,
    /// Fail at once if another devbox holds the project lock, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Print build output in full.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print what was done as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Start even with critical audit findings (privileged, engine socket mounted, …).
    #[arg(long)]
    pub allow_insecure: bool,
    /// Act on the project even when its containers were made from another directory
    /// with the same [project] name (another checkout); this directory becomes its own.
    #[arg(long)]
    pub take_over: bool,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let loaded = super::load(g)?;
    super::audit::refuse_critical(&loaded, a.allow_insecure)?;
    let plan = crate::plan::plan(&loaded.config);
    let _lock = super::lock_project(&plan.project, &plan.dir, !a.no_wait)?;
    let conn = super::engine::connect(&loaded)?;
    let ui = Progress::new(a.verbose);
    let opts = UpOptions {
        build: a.build,
        remove_orphans: a.remove_orphans,
        timeout: a.timeout,
    };
    let rt = super::engine::runtime()?;
    let mut signals = {
        let _in = rt.enter();
        crate::verify::Signals::new()?
    };
    let work = async {
        let found = crate::verify::remove_leftovers(&conn.engine, &loaded.config).await?;
        super::verify::print_leftovers(&found);
        apply::check_checkout(&conn.engine, &plan.project, &plan.dir, a.take_over).await?;
        apply::up(&conn.engine, &plan, &opts, &ui).await
    };
    // Interrupted, up stops where it is: what it made stays (created, perhaps not
    // started), as the next `up` converges it; an unfinished build leaves nothing.
    let report = rt.block_on(async {
        tokio::select! {
            r = work => r.map(Some),
            () = signals.next() => Ok(None),
        }
    })?;
    ui.finish();
    let Some(report) = report else {
        eprintln!(
            "devbox: interrupted; stopped before {} was up: what was made so far stays (`devbox up` finishes it, `devbox down` removes it)",
            plan.project
        );
        return Ok(ExitCode::from(super::verify::EXIT_INTERRUPTED));
    };
    for n in &report.notes {
        ui.note(n);
    }
    if !report.orphans.is_empty() && report.removed_orphans.is_empty() {
        ui.note(&format!(
            "orphan containers (services no longer in the file): {}; `devbox up --remove-orphans` removes them",
            report.orphans.join(", ")
        ));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut parts = Vec::new();
        for (n, w) in [
            (report.built.len(), "built"),
            (report.created.len(), "created"),
            (report.recreated.len(), "recreated"),
            (report.started.len(), "started"),
            (report.unchanged.len(), "unchanged"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {w}"));
            }
        }
        if !report.removed_orphans.is_empty() {
            parts.push(format!(
                "{} removed",
                crate::words::count(report.removed_orphans.len(), "orphan")
            ));
        }
        println!(
            "{} is up on {} ({}): {} in {:.1}s",
            plan.project,
            conn.endpoint.kind,
            conn.endpoint.socket.display(),
            if parts.is_empty() {
                "nothing to do".to_owned()
            } else {
                parts.join(", ")
            },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
