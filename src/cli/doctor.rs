//! `devbox doctor`: is this machine ready for devbox, and what to do where it is not.

use std::process::ExitCode;

use super::Global;
use crate::doctor::{self, Check, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let rt = super::engine::runtime()?;
    let mut checks: Vec<Check> = Vec::new();
    let limits = super::engine::limits();
    let found = rt.block_on(doctor::engines(&mut checks, limits));
    doctor::machine(&mut checks);
    // With a project in reach, its ports too (on the engine devbox would use).
    let loaded = match super::load(g) {
        Ok(l) => Some(l),
        Err(e) if g.file.is_some() => return Err(e),
        Err(_) => None,
    };
    let mut project = None;
    if let Some(loaded) = &loaded {
        let plan = crate::plan::plan(&loaded.config);
        let running = doctor::running(
            &rt,
            loaded.config.project.engine,
            &plan.project,
            &found,
            limits,
        );
        doctor::ports(&mut checks, &plan, &running);
        project = Some(plan.project.clone());
    }
    let worst = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Pass);
    if a.json {
        let v = serde_json::json!({
            "project": project,
            "status": worst,
            "cgroup_version": crate::engine::host_cgroup_version(),
            "engines": found.iter().map(|(ep, info)| serde_json::json!({
                "kind": ep.kind,
                "socket": ep.socket,
                "version": info.version,
                "rootless": info.rootless,
            })).collect::<Vec<_>>(),
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Pass => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{mark}  {}: {}", c.check, c.detail);
            if let Some(f) = &c.fix {
                println!("      fix: {f}");
            }
        }
    }
    Ok(if worst == Status::Fail {
        ExitCode::from(super::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
