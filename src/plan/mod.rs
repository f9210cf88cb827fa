//! The plan: the resolved configuration turned into engine-neutral desired state —
//! resource names, labels, start order and a sha2 `config-hash` per resource that
//! changes exactly when that resource's effective settings change.
//!
//! Knows nothing of engines; never touches the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::config::model::{self, Config, EngineChoice, ImageRef};

pub mod hash;
pub mod names;

pub use hash::hash_of;

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
    /// `localhost/devbox-PROJECT-KEY:DIGEST12`, the tag `up` builds: a digest of `hash`
    /// and the context's files.
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
        let mut l = names::labels(&project, "service", &spec.labels);
        l.insert(LABEL_SERVICE.into(), name.clone());
        services.push(ServicePlan {
            container_name: names::container(&project, &name),
            name,
            image,
            networks: nets,
            labels: l,
            // Set below, once the plan's names are all known.
            hash: String::new(),
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

    let mut plan = Plan {
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
    };
    built_tags(&mut plan);
    for i in 0..plan.services.len() {
        let hash = service_hash(&plan, &plan.services[i]);
        let s = &mut plan.services[i];
        s.labels.insert(LABEL_HASH.into(), hash.clone());
        s.hash = hash;
    }
    plan
}

/// Tags each built image as `up` builds it, by the digest of its context
/// ([`crate::apply::context`]), so that what the plan (and every file rendered from it)
/// names is the image that is built. A context that cannot be read keeps the tag of its
/// settings alone; `up` reports the unreadable file when it builds.
fn built_tags(plan: &mut Plan) {
    let skip = crate::apply::context_skips(plan);
    for image in &mut plan.images {
        if let Ok(ctx) = crate::apply::context::prepare(&plan.project, image, &skip) {
            image.tag = ctx.tag;
        }
    }
    for s in &mut plan.services {
        if let ImageRef::Built(k) = &s.spec.image {
            if let Some(i) = plan.images.iter().find(|i| &i.key == k) {
                s.image = i.tag.clone();
            }
        }
    }
}

/// The config hash of the container the plan describes for `s`, before any engine's
/// adjustments: [`hash::config_hash`], the function `up` computes the label with over
/// what it sends. A built image counts here by its build settings (the tag of its
/// [`ImagePlan::hash`]), not by its context's files, so that the plan and the files
/// rendered from it change with the settings only; `up`'s label adds the content tag. An
/// env file that cannot be read is left out; `up` reports it.
fn service_hash(plan: &Plan, s: &ServicePlan) -> String {
    let mut s = s.clone();
    if let ImageRef::Built(k) = &s.spec.image {
        if let Some(i) = plan.image(k) {
            s.image = names::image_tag(&plan.project, k, &i.hash);
        }
    }
    let spec = crate::engine::container_spec(plan, &s).unwrap_or_else(|_| {
        s.spec.env_files.clear();
        crate::engine::container_spec(plan, &s).expect("only env files are read")
    });
    hash::config_hash(&spec)
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
