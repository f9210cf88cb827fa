//! `devbox probe`: run the probes against the environment `up` started.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Global;
use crate::probe::{self, report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    let plan = crate::plan::plan(&loaded.config);
    let conn = super::engine::connect(&loaded)?;
    let rt = super::engine::runtime()?;
    let (running, containers) =
        rt.block_on(probe::running_containers(&conn.engine, &plan.project))?;
    if !running && !plan.services.is_empty() {
        anyhow::bail!(
            "nothing of project {} is up, so there is nothing to probe\nhint: `devbox up` starts it; `devbox verify` runs the probes on a throwaway copy",
            plan.project
        );
    }
    let outcomes = rt.block_on(probe::run_all(&conn.engine, &plan.probes, &containers));
    if let Some(path) = &a.junit {
        crate::fsutil::write_atomic(
            path,
            report::junit(&plan.project, &outcomes).as_bytes(),
            0o644,
        )?;
    }
    if a.json {
        println!("{}", report::json(&plan.project, &outcomes, None));
    } else {
        print!("{}", report::human(&plan.project, &outcomes, None));
    }
    Ok(if outcomes.iter().all(|o| o.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILED)
    })
}
