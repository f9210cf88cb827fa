//! `down`: the project's containers, networks and (when asked) named volumes go; `.data`
//! never does.

use crate::engine::{Engine, EngineError, ErrorKind};

use super::{stop_grace, ApplyError, Progress};

/// A [`DownOptions::timeout_s`] that waits each container's own grace period.
pub const SERVICE_GRACE: u32 = u32::MAX;

#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    /// Also remove the project's named volumes (the caller has listed and confirmed them).
    pub volumes: bool,
    /// Seconds to wait before killing; [`SERVICE_GRACE`] gives each container its
    /// service's `stop_grace_period`.
    pub timeout_s: u32,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DownReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

/// Removes the project's containers and networks (and named volumes when asked).
/// Finds everything by label, so services since removed from the file go too. Never
/// touches `.data`.
pub async fn down<E: Engine>(
    engine: &E,
    project: &str,
    opts: &DownOptions,
    ui: &Progress,
) -> Result<DownReport, ApplyError> {
    let mut report = DownReport::default();
    let containers = engine.list_containers(project).await?;
    let stops = containers.iter().map(|c| async move {
        ui.step(&c.name, "stopping");
        if c.running() {
            let t = if opts.timeout_s == SERVICE_GRACE {
                stop_grace(c)
            } else {
                opts.timeout_s
            };
            engine.stop_container(&c.id, t).await?;
        }
        engine.remove_container(&c.id).await?;
        ui.done(&c.name, "removed");
        Ok::<_, EngineError>(c.name.clone())
    });
    for r in futures_util::future::join_all(stops).await {
        match r {
            Ok(n) => report.containers.push(n),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    // By id: Docker may hold two of one name, and then the name is ambiguous.
    for n in engine.list_networks(project).await? {
        match engine.remove_network(&n.id).await {
            Ok(()) => report.networks.push(n.name),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if opts.volumes {
        for v in engine.list_volumes(project).await? {
            match engine.remove_volume(&v.name).await {
                Ok(()) => report.volumes.push(v.name),
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Nothing that served the project outlives its `down`.
    engine.release(project).await?;
    Ok(report)
}
