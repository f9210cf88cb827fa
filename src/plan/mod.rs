//! The plan: the resolved configuration turned into engine-neutral desired state —
//! resource names, labels, start order and a sha2 `config-hash` per resource that
//! changes exactly when that resource's effective settings change.
//!
//! Knows nothing of engines; never touches the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::model::{self, Config, EngineChoice, ImageRef, Mount};

pub mod names;

pub use names::{LABEL_DIR, LABEL_HASH, LABEL_KIND, LABEL_PARENT, LABEL_PROJECT, LABEL_SERVICE};

/// The network every service joins unless it names its own.
pub const DEFAULT_NETWORK: &str = "default";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub project: String,
    /// The project name built images are tagged under (`verify` runs under a throwaway
    /// name but reuses the project's images).
    #[serde(skip)]
    pub image_project: String,
    pub dir: PathBuf,
    pub file: PathBuf,
    pub engine: EngineChoice,
    pub data: model::Data,
    pub images: Vec<ImagePlan>,
    pub volumes: Vec<VolumePlan>,
    pub networks: Vec<NetworkPlan>,
    /// In start order: every service after the services it depends on.
    pub services: Vec<ServicePlan>,
    pub probes: Vec<model::Probe>,
    pub workers: BTreeMap<String, model::Worker>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImagePlan {
    pub key: String,
    /// `localhost/devbox-PROJECT-KEY:HASH12`
    pub tag: String,
    pub hash: String,
    pub labels: BTreeMap<String, String>,
    #[serde(flatten)]
    pub spec: model::Image,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VolumePlan {
    pub key: String,
    /// `PROJECT_KEY`
    pub name: String,
    pub hash: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetworkPlan {
    pub key: String,
    /// `PROJECT_KEY`
    pub name: String,
    pub internal: bool,
    pub hash: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServicePlan {
    pub name: String,
    /// `PROJECT-NAME`
    pub container_name: String,
    /// The image reference to run (a built image's tag, or the reference as written).
    pub image: String,
    /// Keys of [`Plan::networks`] this service joins.
    pub networks: Vec<String>,
    /// devbox's labels and the user's.
    pub labels: BTreeMap<String, String>,
    pub hash: String,
    /// Things devbox decided for this service that the user should know about.
    pub notes: Vec<String>,
    pub spec: model::Service,
}

impl Plan {
    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn image(&self, key: &str) -> Option<&ImagePlan> {
        self.images.iter().find(|i| i.key == key)
    }

    pub fn volume(&self, key: &str) -> Option<&VolumePlan> {
        self.volumes.iter().find(|v| v.key == key)
    }

    pub fn network(&self, key: &str) -> Option<&NetworkPlan> {
        self.networks.iter().find(|n| n.key == key)
    }
}

/// sha2 over the canonical JSON of `value` (maps are ordered, so equal settings hash
/// equal).
pub fn hash_of<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("plan values serialize");
    hex::encode(Sha256::digest(json))
}

/// Builds the plan. The config is valid, so this cannot fail.
pub fn plan(config: &Config) -> Plan {
    let project = config.project.name.clone();

    let images: Vec<ImagePlan> = config
        .images
        .iter()
        .map(|(key, spec)| {
            // Hash what the file says about the build, with paths relative to the
            // project so that moving the checkout does not rebuild.
            let rel = |p: &PathBuf| p.strip_prefix(&config.dir).unwrap_or(p).to_path_buf();
            let hash = hash_of(&(
                rel(&spec.containerfile),
                rel(&spec.context),
                &spec.args,
                &spec.target,
            ));
            let mut l = names::labels(&project, "image", &BTreeMap::new());
            l.insert(LABEL_HASH.into(), hash.clone());
            ImagePlan {
                key: key.clone(),
                tag: names::image_tag(&project, key, &hash),
                hash,
                labels: l,
                spec: spec.clone(),
            }
        })
        .collect();

    let volumes = config
        .volumes
        .iter()
        .map(|(key, v)| {
            let hash = hash_of(&v.labels);
            let mut l = names::labels(&project, "volume", &v.labels);
            l.insert(LABEL_HASH.into(), hash.clone());
            VolumePlan {
                key: key.clone(),
                name: names::resource(&project, key),
                hash,
                labels: l,
            }
        })
        .collect();

    let mut networks: Vec<NetworkPlan> = config
        .networks
        .iter()
        .map(|(key, n)| network_plan(&project, key, n.internal, &n.labels))
        .collect();

    let mut services = Vec::new();
    let mut need_default = false;
    for name in start_order(config) {
        let spec = &config.services[&name];
        let mut notes = Vec::new();
        let mut nets = spec.networks.clone();
        if spec.network_mode.is_none() {
            if nets.is_empty() {
                nets.push(DEFAULT_NETWORK.into());
                need_default = true;
            } else if !spec.ports.is_empty()
                && nets
                    .iter()
                    .all(|n| config.networks.get(n).is_some_and(|n| n.internal))
            {
                // Engines publish nothing for a container only on internal networks.
                nets.push(DEFAULT_NETWORK.into());
                need_default = true;
                notes.push(format!(
                    "publishes ports but joins only internal networks; also joined `{DEFAULT_NETWORK}` so the ports reach the host"
                ));
            }
        }
        let image = match &spec.image {
            ImageRef::Built(k) => images
                .iter()
                .find(|i| &i.key == k)
                .map(|i| i.tag.clone())
                .unwrap_or_default(),
            ImageRef::Reference(r) => r.clone(),
            // A native service runs a host program: there is no image.
            ImageRef::Host => String::new(),
        };
        // Named volumes and networks by their engine names, so renaming the project
        // recreates the service.
        let mounts: Vec<String> = spec
            .mounts
            .iter()
            .map(|m| match m {
                Mount::Volume { name, .. } => names::resource(&project, name),
                Mount::Bind { source, .. } => source.display().to_string(),
            })
            .collect();
        let hash = hash_of(&(&engine_view(spec), &image, &nets, &mounts, &project));
        let mut l = names::labels(&project, "service", &spec.labels);
        l.insert(LABEL_SERVICE.into(), name.clone());
        l.insert(LABEL_HASH.into(), hash.clone());
        services.push(ServicePlan {
            container_name: names::container(&project, &name),
            name,
            image,
            networks: nets,
            labels: l,
            hash,
            notes,
            spec: spec.clone(),
        });
    }
    if need_default && !config.networks.contains_key(DEFAULT_NETWORK) {
        let mut n = network_plan(&project, DEFAULT_NETWORK, false, &BTreeMap::new());
        // Named like the project itself (`PROJECT`), as devbox names a project's own
        // network; declared networks are `PROJECT_KEY`.
        n.name = names::default_network(&project);
        networks.push(n);
        networks.sort_by(|a, b| a.key.cmp(&b.key));
    }

    Plan {
        image_project: project.clone(),
        project,
        dir: config.dir.clone(),
        file: config.file.clone(),
        engine: config.project.engine,
        data: config.data.clone(),
        images,
        volumes,
        networks,
        services,
        probes: config.probes.clone(),
        workers: config.workers.clone(),
    }
}

/// A service as the engine sees it: without what only devbox's reports use (which
/// defaults were filled in, audit waivers, how a bind source was spelled), so that equal
/// containers hash equal however the file wrote them.
fn engine_view(spec: &model::Service) -> model::Service {
    let mut s = spec.clone();
    s.defaults_applied.clear();
    s.waivers.clear();
    for m in &mut s.mounts {
        if let Mount::Bind { source_rel, .. } = m {
            source_rel.clear();
        }
    }
    s
}

fn network_plan(
    project: &str,
    key: &str,
    internal: bool,
    extra: &BTreeMap<String, String>,
) -> NetworkPlan {
    let hash = hash_of(&(internal, extra));
    let mut l = names::labels(project, "network", extra);
    l.insert(LABEL_HASH.into(), hash.clone());
    NetworkPlan {
        key: key.into(),
        name: names::resource(project, key),
        internal,
        hash,
        labels: l,
    }
}

/// Services ordered so that each comes after its dependencies; ties by name. The
/// config has no cycles (validation rejects them).
pub fn start_order(config: &Config) -> Vec<String> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < config.services.len() {
        let before = order.len();
        for (name, s) in &config.services {
            if !done.contains(name)
                && s.depends_on
                    .keys()
                    .all(|d| done.contains(d) || !config.services.contains_key(d))
            {
                done.insert(name.clone());
                order.push(name.clone());
            }
        }
        if order.len() == before {
            // Unreachable with a validated config; keep the rest in name order.
            order.extend(
                config
                    .services
                    .keys()
                    .filter(|n| !done.contains(*n))
                    .cloned(),
            );
            break;
        }
    }
    order
}
