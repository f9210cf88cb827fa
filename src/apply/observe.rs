//! What the project's containers are doing, for `status`, `logs`, `exec` and `down`:
//! the library side of those commands, so that the command line never talks to an
//! engine itself.

use crate::engine::{
    ContainerInfo, Engine, EngineError, ExecOutput, ExecSpec, LogOptions, LogStream, ResourceInfo,
};
use crate::plan::Plan;

use super::{reconcile, ApplyError, Reconciled};

/// The project's containers matched to the plan ([`reconcile`]). A running container
/// whose service has a healthcheck gets a fresh one first, on engines that do not
/// schedule healthchecks themselves.
pub async fn status<'p, E: Engine>(
    engine: &E,
    plan: &'p Plan,
) -> Result<Reconciled<'p>, ApplyError> {
    let mut found = Vec::new();
    for c in engine.list_containers(&plan.project).await? {
        let checked = c.running()
            && c.service()
                .and_then(|s| plan.service(s))
                .is_some_and(|s| s.spec.healthcheck.is_some());
        if checked && engine.run_healthcheck(&c.id).await.is_ok() {
            found.push(engine.inspect_container(&c.id).await.unwrap_or(c));
        } else {
            found.push(c);
        }
    }
    let info = engine.info().await?;
    reconcile(plan, found, &info)
}

/// The log streams of the project's containers of `services` (all when empty), each
/// with its service's name, in the engine's order; `None` when the project has no
/// container at all.
pub async fn logs<'e, E: Engine>(
    engine: &'e E,
    project: &str,
    services: &[String],
    opts: &LogOptions,
) -> Result<Option<Vec<(String, LogStream<'e>)>>, EngineError> {
    let containers = engine.list_containers(project).await?;
    if containers.is_empty() {
        return Ok(None);
    }
    let mut streams = Vec::new();
    for c in &containers {
        let Some(service) = c.service() else { continue };
        if services.is_empty() || services.iter().any(|s| s == service) {
            streams.push((service.to_owned(), engine.logs(&c.id, opts).await?));
        }
    }
    Ok(Some(streams))
}

/// The running container of `service`, if there is one.
pub async fn running<E: Engine>(
    engine: &E,
    project: &str,
    service: &str,
) -> Result<Option<ContainerInfo>, EngineError> {
    Ok(engine
        .list_containers(project)
        .await?
        .into_iter()
        .find(|c| c.service() == Some(service) && c.running()))
}

/// Runs `spec` in container `c` and collects its output.
pub async fn exec<E: Engine>(
    engine: &E,
    c: &ContainerInfo,
    spec: &ExecSpec,
) -> Result<ExecOutput, EngineError> {
    engine.exec(&c.id, spec).await
}

/// The project's named volumes (for `down --volumes` to list before it asks).
pub async fn volumes<E: Engine>(
    engine: &E,
    project: &str,
) -> Result<Vec<ResourceInfo>, EngineError> {
    engine.list_volumes(project).await
}

/// Everything devbox made for `project` on this engine: what `reset` lists before it asks.
#[derive(Debug, Default)]
pub struct Made {
    pub containers: Vec<ContainerInfo>,
    pub networks: Vec<ResourceInfo>,
    pub volumes: Vec<ResourceInfo>,
    /// Only when asked for.
    pub images: Vec<String>,
}

pub async fn made<E: Engine>(engine: &E, project: &str, images: bool) -> Result<Made, EngineError> {
    Ok(Made {
        containers: engine.list_containers(project).await?,
        networks: engine.list_networks(project).await?,
        volumes: engine.list_volumes(project).await?,
        images: if images {
            engine.list_images(project).await?
        } else {
            Vec::new()
        },
    })
}

/// Whether the project is up and holds host ports (which a `verify` of it would need).
pub async fn holds_ports<E: Engine>(engine: &E, project: &str) -> Result<bool, EngineError> {
    Ok(engine
        .list_containers(project)
        .await?
        .iter()
        .any(|c| c.running() && !c.ports.is_empty()))
}

/// Removes the images `reset` listed; one gone already (with an image it was a layer
/// of) is no error.
pub async fn remove_images<E: Engine>(engine: &E, images: &[String]) -> Result<(), EngineError> {
    for i in images {
        match engine.remove_image(i).await {
            Err(e) if e.kind == crate::engine::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}
