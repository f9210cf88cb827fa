//! `devbox verify`: build, start, probe, tear down, report — under a throwaway project
//! name and data copy. Exit 0 all passed, 1 a probe failed, 2 config or engine error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::Global;
use crate::apply::{Progress, UpOptions};
use crate::probe::report;

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

pub fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    super::audit::refuse_critical(&loaded, a.allow_insecure)?;
    let config = &loaded.config;
    let _lock = super::lock_project(&config.project.name, &config.dir, true)?;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(super::EXIT_CONFIG))
    };
    let conn = match super::engine::connect(&loaded) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    eprintln!(
        "devbox: verifying on {} ({})",
        engine_name(&conn.endpoint),
        conn.endpoint.socket.display()
    );
    let rt = super::engine::runtime()?;
    // Ports held by a running `up` of this project would make verify fail to bind.
    let plan = crate::plan::plan(config);
    let running = rt.block_on(crate::engine::Engine::list_containers(
        &conn.engine,
        &plan.project,
    ));
    if running
        .as_ref()
        .is_ok_and(|r| r.iter().any(|c| c.running() && !c.ports.is_empty()))
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
    ));
    ui.finish();
    let v = match v {
        Ok(v) => v,
        Err((e, _)) => return fail(&e),
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
            "kept running for inspection: project {} (data in {}); `devbox -p {} down --volumes --yes` removes it",
            v.project,
            scratch.display(),
            v.project
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
    }
}
