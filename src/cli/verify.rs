//! `devbox verify`: build, start, probe, tear down, report — under a throwaway project
//! name and data copy. Exit 0 all passed, 1 a probe failed or the environment could not be
//! built, started or reached (as for `up`), 2 a bad file or command line,
//! 130 interrupted (SIGINT or SIGTERM; the throwaway project is removed first).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::Global;
use crate::apply::{Progress, UpOptions};
use crate::probe::report;
use crate::verify::{Leftover, Stopped};

/// The exit code after SIGINT or SIGTERM (128 + SIGINT, as shells report it).
pub(super) const EXIT_INTERRUPTED: u8 = 130;

/// Says what was removed of earlier, unfinished `verify` runs.
pub(super) fn print_leftovers(found: &[Leftover]) {
    for l in found {
        if l.removed.is_empty() {
            continue;
        }
        eprintln!(
            "note: removed what an unfinished `devbox verify` left (project {}): {}",
            l.project,
            l.removed.join(", ")
        );
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Leave everything running when a probe fails, for inspection.
    #[arg(long)]
    pub keep: bool,
    /// Rebuild images even when an image with the same content exists.
    #[arg(long)]
    pub build: bool,
    /// How long to wait for the services to be running and healthy.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print build output in full.
    #[arg(short, long)]
    pub verbose: bool,
    /// Start even with critical audit findings (privileged, engine socket mounted, …).
    #[arg(long)]
    pub allow_insecure: bool,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    super::audit::refuse_critical(&loaded, a.allow_insecure)?;
    let config = &loaded.config;
    let _lock = super::lock_project(&config.project.name, &config.dir, true)?;
    // The environment could not be built, started or reached: the same failure, and
    // the same exit 1, as for `up`; 2 stays for a bad file or command line.
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(super::EXIT_FAILED))
    };
    let mut conn = match super::engine::connect(&loaded) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if !a.keep {
        conn.engine.tie_to_this_process();
    }
    eprintln!(
        "devbox: verifying on {} ({})",
        engine_name(&conn.endpoint),
        conn.endpoint.socket.display()
    );
    let rt = super::engine::runtime()?;
    let mut signals = {
        let _in = rt.enter();
        crate::verify::Signals::new()?
    };
    match rt.block_on(crate::verify::remove_leftovers(&conn.engine, config)) {
        Ok(found) => print_leftovers(&found),
        Err(e) => return fail(&e),
    }
    // Ports held by a running `up` of this project would make verify fail to bind.
    let plan = crate::plan::plan(config);
    if rt
        .block_on(crate::apply::observe::holds_ports(
            &conn.engine,
            &plan.project,
        ))
        .unwrap_or(false)
    {
        return fail(&format!(
            "project {} is up and holds its ports, which verify needs for its own copy\nhint: `devbox probe` checks the running environment; `devbox down` frees the ports",
            plan.project
        ));
    }
    let scratch = crate::verify::scratch_dir(&config.project.name);
    let ui = Progress::new(a.verbose);
    let opts = UpOptions {
        build: a.build,
        remove_orphans: false,
        timeout: a.timeout,
    };
    let v = rt.block_on(crate::verify::verify(
        &conn.engine,
        config,
        &scratch,
        a.keep,
        &opts,
        &ui,
        &mut signals,
    ));
    ui.finish();
    let v = match v {
        Ok(v) => v,
        Err(Stopped::Failed(e, _)) => return fail(&e),
        Err(Stopped::Interrupted {
            project,
            removed,
            left: None,
        }) => {
            eprintln!(
                "devbox: interrupted; removed {}",
                if removed.is_empty() {
                    format!("throwaway project {project} (nothing of it had been made yet)")
                } else {
                    format!("throwaway project {project}: {}", removed.join(", "))
                }
            );
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(Stopped::Interrupted {
            project,
            left: Some(e),
            ..
        }) => {
            eprintln!("error: {e}");
            eprintln!(
                "devbox: interrupted; could not remove throwaway project {project}: the next `devbox verify`, `up` or `reset` of {} removes it",
                config.project.name
            );
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(Stopped::Abandoned { project, scratch }) => {
            eprintln!(
                "devbox: interrupted again; left throwaway project {project} (data in {}): the next `devbox verify`, `up` or `reset` of {} removes it",
                scratch.display(),
                config.project.name
            );
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    if let Some(path) = &a.junit {
        crate::fsutil::write_atomic(
            path,
            report::junit(&v.project, &v.outcomes).as_bytes(),
            0o644,
        )?;
    }
    if a.json {
        println!(
            "{}",
            report::json(&v.project, &v.outcomes, Some(&v.timings))
        );
    } else {
        print!(
            "{}",
            report::human(&config.project.name, &v.outcomes, Some(&v.timings))
        );
    }
    if v.kept {
        eprintln!(
            "kept running for inspection: project {} (data in {}); the next `devbox verify`, `up` or `reset` removes it",
            v.project,
            scratch.display(),
        );
    }
    Ok(if v.outcomes.iter().all(|o| o.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILED)
    })
}

/// "rootless Podman", "rootful Podman", "Docker" or "rootless Docker": a rootless engine's
/// socket belongs to the user its daemon runs as, as `info` judges it too.
fn engine_name(ep: &crate::engine::Endpoint) -> &'static str {
    let rootless = crate::engine::socket_owned_by_user(&ep.socket);
    match (ep.kind, rootless) {
        (crate::engine::Kind::Podman, true) => "rootless Podman",
        (crate::engine::Kind::Podman, false) => "rootful Podman",
        (crate::engine::Kind::Docker, true) => "rootless Docker",
        (crate::engine::Kind::Docker, false) => "Docker",
        (crate::engine::Kind::Native, _) => "native",
    }
}
