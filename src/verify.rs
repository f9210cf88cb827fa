//! `verify`: prove a sandbox works — under a throwaway project name and a throwaway copy
//! of the data root, so a running `up` and the user's `.data` are never touched: build,
//! up, wait for health, run every probe, tear down, report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::apply::{self, DownOptions, Progress, UpOptions};
use crate::config::model::{Config, Mount, ProbeKind};
use crate::engine::Engine;
use crate::probe::{self, report::Timings, Outcome};

/// The configuration `verify` runs: another project name, and the data root (and every
/// bind source and probed path under it) moved to `scratch`.
pub fn throwaway(config: &Config, scratch: &Path) -> Config {
    let mut c = config.clone();
    c.project.name = format!("{}-verify-{}", config.project.name, std::process::id());
    let old = config.data.root.clone();
    let moved =
        |p: &Path| -> Option<PathBuf> { p.strip_prefix(&old).ok().map(|r| scratch.join(r)) };
    c.data.root = scratch.to_path_buf();
    for s in c.services.values_mut() {
        for m in &mut s.mounts {
            if let Mount::Bind { source, .. } = m {
                if let Some(n) = moved(source) {
                    *source = n;
                }
            }
        }
    }
    for p in &mut c.probes {
        match &mut p.kind {
            ProbeKind::File { path, .. } => {
                if let Some(n) = moved(path) {
                    *path = n;
                }
            }
            ProbeKind::Uds {
                path,
                in_service: None,
                ..
            } => {
                let abs = config.dir.join(&*path);
                if let Some(n) = moved(&abs) {
                    *path = n.display().to_string();
                }
            }
            _ => {}
        }
    }
    c
}

pub struct Verified {
    pub project: String,
    pub outcomes: Vec<Outcome>,
    pub timings: Timings,
    /// Left running (`--keep` after a failure).
    pub kept: bool,
}

/// Runs the whole flow on `engine`. Tears down even when a step fails, unless `keep`
/// and something failed.
pub async fn verify<E: Engine>(
    engine: &E,
    config: &Config,
    scratch: &Path,
    keep: bool,
    opts: &UpOptions,
    ui: &Progress,
) -> Result<Verified, (apply::ApplyError, Option<Timings>)> {
    let c = throwaway(config, scratch);
    let mut plan = crate::plan::plan(&c);
    plan.image_project = config.project.name.clone();
    let mut timings = Timings::default();
    let result = async {
        let t = Instant::now();
        let report = apply::up(engine, &plan, opts, ui).await?;
        let total = t.elapsed().as_millis() as u64;
        timings.build_ms = report.build_ms;
        timings.up_ms = total.saturating_sub(report.build_ms);
        let t = Instant::now();
        let containers = probe::containers(engine, &plan.project).await?;
        let outcomes = probe::run_all(engine, &plan.probes, &containers).await;
        timings.probes_ms = t.elapsed().as_millis() as u64;
        Ok::<_, apply::ApplyError>(outcomes)
    }
    .await;
    let failed = result
        .as_ref()
        .map_or(true, |o| o.iter().any(|o| !o.passed));
    let kept = keep && failed;
    if !kept {
        let t = Instant::now();
        // Throwaway containers: no grace period.
        let down = DownOptions {
            volumes: true,
            timeout_s: 0,
        };
        let torn = apply::down(engine, &plan.project, &down, &Progress::quiet()).await;
        let _ = std::fs::remove_dir_all(scratch);
        timings.teardown_ms = t.elapsed().as_millis() as u64;
        if let (Ok(_), Err(e)) = (&result, torn) {
            return Err((e, Some(timings)));
        }
    }
    match result {
        Ok(outcomes) => Ok(Verified {
            project: plan.project,
            outcomes,
            timings,
            kept,
        }),
        Err(e) => Err((e, Some(timings))),
    }
}

/// Where `verify` keeps its copy of the data tree.
pub fn scratch_dir(project: &str) -> PathBuf {
    std::env::temp_dir().join(format!("devbox-verify-{project}-{}", std::process::id()))
}
