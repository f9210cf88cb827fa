//! Engine-neutral descriptions of what to build and run, made from the plan. Backends map
//! these field by field onto their API; nothing here is specific to one engine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::model::{HealthTest, Mount, Policy, Port, Restart, Tmpfs, UlimitPair, Userns};
use crate::plan::{ImagePlan, Plan, ServicePlan};

/// An image to build from a context tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    pub tag: String,
    /// The Containerfile's path inside the context tar.
    pub containerfile: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl BuildSpec {
    pub fn new(image: &ImagePlan, containerfile_in_tar: String) -> Self {
        Self {
            tag: image.tag.clone(),
            containerfile: containerfile_in_tar,
            args: image.spec.args.clone(),
            target: image.spec.target.clone(),
            labels: image.labels.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A named volume, by its engine name.
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
}

/// A healthcheck as engines take it: a `CMD`/`CMD-SHELL` test and durations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

/// Everything a container is created with.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub service: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub user: String,
    pub userns: Option<Userns>,
    pub workdir: Option<String>,
    pub ports: Vec<Port>,
    pub mounts: Vec<MountSpec>,
    pub tmpfs: Vec<Tmpfs>,
    pub read_only: bool,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub security_opt: Vec<String>,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<u32>,
    pub ulimits: BTreeMap<String, UlimitPair>,
    /// Engine network names; the service name is the alias on each.
    pub networks: Vec<String>,
    /// Networks joined only after the container has started (see `apply::desired`).
    pub late_networks: Vec<String>,
    pub healthcheck: Option<HealthSpec>,
    pub restart: Restart,
    pub privileged: bool,
    pub network_mode: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub devices: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub extra_hosts: Vec<String>,
    /// Run the engine's init as PID 1.
    pub init: bool,
    /// The stop signal's number; `None` leaves the image's.
    pub stop_signal: Option<i32>,
    /// Seconds between the stop signal and the kill.
    pub stop_timeout_s: u32,
    /// What only the native engine takes, for a service without an image.
    pub native: Option<NativeSpec>,
}

/// A native service's policy and its healthcheck as written (the native engine runs
/// `tcp` and `http` checks itself, from outside the sandbox).
#[derive(Debug, Clone, PartialEq)]
pub struct NativeSpec {
    pub policy: Option<Policy>,
    /// An `http` test's URL is resolved (a path is on the service's first port).
    pub check: Option<HealthTest>,
}

/// Reads `KEY=VALUE` lines of an env file (`#` comments and blank lines skipped).
fn read_env_file(path: &std::path::Path) -> std::io::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        match line.split_once('=') {
            Some((k, v)) => {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(v);
                out.insert(k.trim().to_owned(), v.to_owned());
            }
            None => {
                out.insert(line.to_owned(), String::new());
            }
        }
    }
    Ok(out)
}

/// The container for one service of the plan. Env files are read here (the file's own
/// `env` wins over them, as in compose).
pub fn container_spec(
    plan: &Plan,
    s: &ServicePlan,
) -> Result<ContainerSpec, crate::fsutil::PathError> {
    use crate::fsutil::WrapPath;
    let spec = &s.spec;
    let mut env = BTreeMap::new();
    for f in &spec.env_files {
        env.extend(read_env_file(f).wrap("reading env file", f)?);
    }
    env.extend(spec.env.clone());
    let mounts = spec
        .mounts
        .iter()
        .map(|m| match m {
            Mount::Bind {
                source,
                target,
                read_only,
                ..
            } => MountSpec::Bind {
                source: source.clone(),
                target: target.clone(),
                read_only: *read_only,
            },
            Mount::Volume {
                name,
                target,
                read_only,
            } => MountSpec::Volume {
                name: plan
                    .volume(name)
                    .map_or_else(|| name.clone(), |v| v.name.clone()),
                target: target.clone(),
                read_only: *read_only,
            },
        })
        .collect();
    let healthcheck = spec.healthcheck.as_ref().map(|h| HealthSpec {
        test: crate::healthcheck::command(&h.test, spec),
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        retries: h.retries,
        start_period_ms: h.start_period_ms,
    });
    let networks = s
        .networks
        .iter()
        .map(|k| {
            plan.network(k)
                .map_or_else(|| k.clone(), |n| n.name.clone())
        })
        .collect();
    Ok(ContainerSpec {
        name: s.container_name.clone(),
        service: s.name.clone(),
        image: s.image.clone(),
        labels: s.labels.clone(),
        command: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env,
        user: spec.user.to_string(),
        userns: spec.userns.clone(),
        workdir: spec.workdir.clone(),
        ports: spec.ports.clone(),
        mounts,
        tmpfs: spec.tmpfs.clone(),
        read_only: spec.read_only,
        cap_drop: spec.cap_drop.clone(),
        cap_add: spec.cap_add.clone(),
        no_new_privileges: spec.no_new_privileges,
        security_opt: spec.security_opt.clone(),
        memory: spec.memory,
        cpus: spec.cpus,
        pids_limit: spec.pids_limit,
        ulimits: spec.ulimits.clone(),
        networks,
        late_networks: Vec::new(),
        healthcheck,
        restart: spec.restart,
        privileged: spec.privileged,
        network_mode: spec.network_mode.clone(),
        pid: spec.pid.clone(),
        ipc: spec.ipc.clone(),
        devices: spec.devices.clone(),
        sysctls: spec.sysctls.clone(),
        extra_hosts: spec.extra_hosts.clone(),
        init: spec.init,
        stop_signal: spec.stop_signal,
        stop_timeout_s: spec.stop_grace_s(),
        native: spec.is_native().then(|| NativeSpec {
            policy: spec.policy.clone(),
            check: spec
                .healthcheck
                .as_ref()
                .map(|h| crate::healthcheck::resolve(&h.test, spec)),
        }),
    })
}
