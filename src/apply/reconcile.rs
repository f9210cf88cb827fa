//! What `devbox status` reports against the plan: each service's container and whether it
//! was made from other settings than the file's, and the containers of the project no
//! service claims any more. Only compares; never talks to the engine.

use crate::engine::{ContainerInfo, EngineInfo};
use crate::plan::names::LABEL_HASH;
use crate::plan::{Plan, ServicePlan};

use super::{desired, image_tags, ApplyError};

/// A service of the plan and the container the engine has for it.
#[derive(Debug)]
pub struct ServiceState<'p> {
    pub service: &'p ServicePlan,
    pub container: Option<ContainerInfo>,
    /// The container was made from other settings than the file's (`up` recreates it).
    pub outdated: bool,
}

#[derive(Debug)]
pub struct Reconciled<'p> {
    /// In the plan's order.
    pub services: Vec<ServiceState<'p>>,
    /// The project's containers whose service is not in the file any more, in the order
    /// the engine listed them.
    pub orphans: Vec<ContainerInfo>,
}

/// Matches the project's containers (`found`, as the engine lists them) to the plan's
/// services. A container is outdated when its `devbox.config-hash` label differs from the
/// one `up` would give it on this engine now.
pub fn reconcile<'p>(
    plan: &'p Plan,
    mut found: Vec<ContainerInfo>,
    info: &EngineInfo,
) -> Result<Reconciled<'p>, ApplyError> {
    let tags = image_tags(plan)?;
    let mut services = Vec::new();
    for s in &plan.services {
        let pos = found
            .iter()
            .position(|c| c.service() == Some(s.name.as_str()));
        let container = pos.map(|i| found.remove(i));
        let want = desired(plan, s, info, &tags)?;
        let outdated = container
            .as_ref()
            .is_some_and(|c| c.config_hash() != want.labels.get(LABEL_HASH).map(String::as_str));
        services.push(ServiceState {
            service: s,
            container,
            outdated,
        });
    }
    Ok(Reconciled {
        services,
        orphans: found,
    })
}
