//! `verify`: prove a sandbox works — under a throwaway project name and a throwaway copy
//! of the data root, so a running `up` and the user's `.data` are never touched: build,
//! up, wait for health, run every probe, tear down, report.
//!
//! Everything the throwaway project makes carries `devbox.parent` = the real project, and
//! a record in devbox's state directory names it before anything is made; a run that is
//! killed (or kept with `--keep`) is removed by the next `up`, `verify` or `reset` of the
//! real project, which hold the project lock verify holds while it runs. A SIGINT or
//! SIGTERM stops the work in progress and tears down what this run made.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::apply::{self, DownOptions, Progress, UpOptions};
use crate::config::model::{Config, Mount, ProbeKind};
use crate::engine::Engine;
use crate::fsutil::WrapPath;
use crate::plan::names::{self, LABEL_PARENT, LABEL_PROJECT};
use crate::probe::{self, report::Timings, Outcome};

/// The configuration `verify` runs: another project name, and the data root (and every
/// bind source and probed path under it) moved to `scratch`.
pub fn throwaway(config: &Config, scratch: &Path) -> Config {
    let mut c = config.clone();
    c.project.name = names::verify_project(&config.project.name, std::process::id());
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

/// Why `verify` ended without a report.
#[derive(Debug)]
pub enum Stopped {
    Failed(apply::ApplyError, Option<Timings>),
    /// A signal stopped the run; the throwaway project was torn down (`removed` says what
    /// went), or tearing down failed (`left`).
    Interrupted {
        project: String,
        removed: Vec<String>,
        left: Option<apply::ApplyError>,
    },
    /// A second signal during the teardown: exits at once, leaving the project.
    Abandoned {
        project: String,
        scratch: PathBuf,
    },
}

/// SIGINT and SIGTERM, listened to from the moment this is made (inside a runtime).
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Runs the whole flow on `engine`. Tears down even when a step fails, unless `keep`
/// and something failed. A signal stops the flow and tears down; a second one during
/// the teardown gives up on it.
pub async fn verify<E: Engine>(
    engine: &E,
    config: &Config,
    scratch: &Path,
    keep: bool,
    opts: &UpOptions,
    ui: &Progress,
    signals: &mut Signals,
) -> Result<Verified, Stopped> {
    let c = throwaway(config, scratch);
    let mut plan = crate::plan::plan(&c);
    plan.image_project = config.project.name.clone();
    mark_parent(&mut plan, &config.project.name);
    // Images verify builds are the project's (same tag `up` builds); those that were not
    // there before go at teardown.
    let mut had = BTreeSet::new();
    let mut fresh = Vec::new();
    if let Ok(tags) = apply::image_tags(&plan) {
        for t in tags.into_values() {
            if engine.image_exists(&t).await.unwrap_or(true) {
                had.insert(t);
            } else {
                fresh.push(t);
            }
        }
    }
    record(&config.project.name, scratch, &fresh);
    let mut timings = Timings::default();
    let work = async {
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
    };
    let result = tokio::select! {
        r = work => Some(r),
        () = signals.next() => None,
    };
    let Some(result) = result else {
        let teardown = async {
            // A request dropped mid-way may still be carried out by the engine: look twice.
            let mut removed =
                remove_throwaway(engine, &config.project.name, &plan, scratch, &had, true).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            removed.extend(
                remove_throwaway(engine, &config.project.name, &plan, scratch, &had, true).await?,
            );
            Ok::<_, apply::ApplyError>(removed)
        };
        let torn = tokio::select! {
            r = teardown => Some(r),
            () = signals.next() => None,
        };
        let project = plan.project;
        return Err(match torn {
            Some(Ok(removed)) => {
                forget(&config.project.name);
                Stopped::Interrupted {
                    project,
                    removed,
                    left: None,
                }
            }
            Some(Err(e)) => Stopped::Interrupted {
                project,
                removed: Vec::new(),
                left: Some(e),
            },
            None => Stopped::Abandoned {
                project,
                scratch: scratch.to_path_buf(),
            },
        });
    };
    let failed = result
        .as_ref()
        .map_or(true, |o| o.iter().any(|o| !o.passed));
    let kept = keep && failed;
    if !kept {
        let t = Instant::now();
        let torn = remove_throwaway(engine, &config.project.name, &plan, scratch, &had, true).await;
        if torn.is_ok() {
            forget(&config.project.name);
        }
        timings.teardown_ms = t.elapsed().as_millis() as u64;
        if let (Ok(_), Err(e)) = (&result, torn) {
            return Err(Stopped::Failed(e, Some(timings)));
        }
    }
    match result {
        Ok(outcomes) => Ok(Verified {
            project: plan.project,
            outcomes,
            timings,
            kept,
        }),
        Err(e) => Err(Stopped::Failed(e, Some(timings))),
    }
}

/// Labels everything the throwaway plan makes as `parent`'s; its images are `parent`'s
/// own (tagged as `up` tags them).
fn mark_parent(plan: &mut crate::plan::Plan, parent: &str) {
    let mark = |l: &mut std::collections::BTreeMap<String, String>| {
        l.insert(LABEL_PARENT.into(), parent.into());
    };
    plan.services.iter_mut().for_each(|s| mark(&mut s.labels));
    plan.networks.iter_mut().for_each(|n| mark(&mut n.labels));
    plan.volumes.iter_mut().for_each(|v| mark(&mut v.labels));
    for i in &mut plan.images {
        i.labels.insert(LABEL_PROJECT.into(), parent.into());
    }
}

/// Removes the throwaway project `plan.project` — containers (no grace period), networks,
/// volumes, its port claim, the scratch directory, and the images built meanwhile (not in
/// `had`, when `images`) — and says what went, one item each (`container NAME`, …).
async fn remove_throwaway<E: Engine>(
    engine: &E,
    parent: &str,
    plan: &crate::plan::Plan,
    scratch: &Path,
    had: &BTreeSet<String>,
    images: bool,
) -> Result<Vec<String>, apply::ApplyError> {
    let down = DownOptions {
        volumes: true,
        timeout_s: 0,
    };
    let r = apply::down(engine, &plan.project, &down, &Progress::quiet()).await?;
    let mut removed: Vec<String> = r
        .containers
        .iter()
        .map(|n| format!("container {n}"))
        .collect();
    removed.extend(r.networks.iter().map(|n| format!("network {n}")));
    removed.extend(r.volumes.iter().map(|n| format!("volume {n}")));
    if images {
        for t in apply::image_tags(plan).unwrap_or_default().into_values() {
            if !had.contains(&t) && engine.image_exists(&t).await? {
                engine.remove_image(&t).await?;
                removed.push(format!("image {t}"));
            }
        }
    }
    apply::ports::release(plan);
    if scratch.exists() && is_scratch_of(parent, scratch) {
        std::fs::remove_dir_all(scratch).wrap("removing", scratch)?;
        removed.push(format!("directory {}", scratch.display()));
    }
    Ok(removed)
}

/// Whether `dir` is named as [`scratch_dir`] names a verify of `parent`'s.
fn is_scratch_of(parent: &str, dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(&format!("devbox-verify-{parent}-")))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Where the records of `parent`'s throwaway projects live: one file per run, named by
/// its process id, holding the scratch directory and then the image tags the run may
/// build, a line each.
fn records(parent: &str) -> PathBuf {
    apply::lock::lock_dir()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("verify")
        .join(parent)
}

fn record(parent: &str, scratch: &Path, images: &[String]) {
    let dir = records(parent);
    let mut body = scratch.display().to_string();
    for t in images {
        body.push('\n');
        body.push_str(t);
    }
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = crate::fsutil::write_atomic(
            &dir.join(std::process::id().to_string()),
            body.as_bytes(),
            0o644,
        );
    }
}

fn forget(parent: &str) {
    let dir = records(parent);
    let _ = std::fs::remove_file(dir.join(std::process::id().to_string()));
    // Only when no other record is left in it.
    let _ = std::fs::remove_dir(&dir);
}

/// What was removed of one earlier throwaway project.
#[derive(Debug)]
pub struct Leftover {
    pub project: String,
    pub removed: Vec<String>,
}

/// Removes what earlier `verify` runs of `config`'s project left — killed, or kept with
/// `--keep`. The caller holds the project lock, which a running verify holds throughout,
/// so every recorded run has ended.
pub async fn remove_leftovers<E: Engine>(
    engine: &E,
    config: &Config,
) -> Result<Vec<Leftover>, apply::ApplyError> {
    let parent = &config.project.name;
    let dir = records(parent);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|p| *p != std::process::id())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let file = dir.join(pid.to_string());
        let body = std::fs::read_to_string(&file).unwrap_or_default();
        let mut lines = body.lines();
        let scratch = lines
            .next()
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && is_scratch_of(parent, p))
            .unwrap_or_default();
        let mut c = config.clone();
        c.project.name = names::verify_project(parent, pid);
        let mut plan = crate::plan::plan(&c);
        plan.image_project = parent.clone();
        let mut removed =
            remove_throwaway(engine, parent, &plan, &scratch, &BTreeSet::new(), false).await?;
        // The images that run built, by its record (the file may have changed since).
        for t in lines.filter(|t| names::is_image_of(parent, t)) {
            if engine.image_exists(t).await? {
                engine.remove_image(t).await?;
                removed.push(format!("image {t}"));
            }
        }
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_dir(&dir);
        out.push(Leftover {
            project: plan.project,
            removed,
        });
    }
    Ok(out)
}

/// Where `verify` keeps its copy of the data tree.
pub fn scratch_dir(project: &str) -> PathBuf {
    std::env::temp_dir().join(format!("devbox-verify-{project}-{}", std::process::id()))
}
