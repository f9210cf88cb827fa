//! A recording engine for unit tests of the apply logic: it keeps resources in memory and
//! writes down every call that changes something. Never used outside tests of `apply`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{
    BuildSpec, ContainerInfo, ContainerSpec, Engine, EngineError, EngineInfo, ErrorKind,
    ExecOutput, ExecSpec, Kind, LogOptions, LogStream, NetworkSpec, PublishedPort, ResourceInfo,
    Result, VolumeSpec,
};
use crate::plan::names;

#[derive(Default)]
struct State {
    images: Vec<String>,
    /// In creation order; several may share a name when `duplicate_network_names`.
    networks: Vec<ResourceInfo>,
    volumes: BTreeMap<String, ResourceInfo>,
    containers: BTreeMap<String, ContainerInfo>,
    next_id: u32,
    calls: Vec<String>,
}

#[derive(Default)]
pub struct Fake {
    state: Mutex<State>,
    /// Health every started container reports (None: no healthcheck status).
    pub health: Option<String>,
    /// Accept a second network of a taken name, as Docker 20.10 does.
    pub duplicate_network_names: bool,
    /// Starting this container name fails, as a start whose host port was taken does.
    pub fail_start: Option<String>,
}

impl Fake {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake whose started containers report this health.
    pub fn with_health(health: &str) -> Self {
        Self {
            health: Some(health.to_owned()),
            ..Self::default()
        }
    }

    /// The calls that changed something, in order, like `create_container refbox-server`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// A network made behind devbox's back (another tool, or a racing `up`); returns its id.
    pub fn add_network(&self, name: &str, labels: &BTreeMap<String, String>) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = format!("net{:061x}", s.next_id);
        let created = format!("{:08}", s.next_id);
        s.networks.push(ResourceInfo {
            id: id.clone(),
            name: name.to_owned(),
            labels: labels.clone(),
            created,
        });
        id
    }

    /// Every network, in creation order.
    pub fn networks(&self) -> Vec<ResourceInfo> {
        self.state.lock().unwrap().networks.clone()
    }

    /// Sets a label on a container, as an older devbox may have set it.
    pub fn set_label(&self, container: &str, key: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        let c = s
            .containers
            .get_mut(container)
            .expect("a container of that name");
        c.labels.insert(key.to_owned(), value.to_owned());
    }

    pub fn add_image(&self, reference: &str) {
        self.state.lock().unwrap().images.push(reference.to_owned());
    }

    fn not_found(what: &str) -> EngineError {
        EngineError {
            engine: Kind::Podman,
            socket: "fake".into(),
            kind: ErrorKind::NotFound,
            message: format!("no such {what}"),
        }
    }

    fn record(&self, call: String) {
        self.state.lock().unwrap().calls.push(call);
    }
}

fn add(
    resources: &mut BTreeMap<String, ResourceInfo>,
    calls: &mut Vec<String>,
    call: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) {
    resources.insert(
        name.to_owned(),
        ResourceInfo {
            id: name.to_owned(),
            name: name.to_owned(),
            labels: labels.clone(),
            created: String::new(),
        },
    );
    calls.push(format!("{call} {name}"));
}

fn drop_one(
    resources: &mut BTreeMap<String, ResourceInfo>,
    calls: &mut Vec<String>,
    kind: &str,
    name: &str,
) -> Result<()> {
    resources
        .remove(name)
        .ok_or_else(|| Fake::not_found(kind))?;
    calls.push(format!("remove_{kind} {name}"));
    Ok(())
}

fn list(resources: &BTreeMap<String, ResourceInfo>, project: &str) -> Vec<ResourceInfo> {
    resources
        .values()
        .filter(|r| names::labelled_for(&r.labels, project))
        .cloned()
        .collect()
}

impl Engine for Fake {
    fn binds_host_ports(&self) -> bool {
        false
    }
    fn kind(&self) -> Kind {
        Kind::Podman
    }

    async fn info(&self) -> Result<EngineInfo> {
        Ok(EngineInfo {
            kind: Kind::Podman,
            version: "fake".into(),
            api_version: "fake".into(),
            rootless: true,
            cgroup_version: "2".into(),
        })
    }

    async fn image_exists(&self, reference: &str) -> Result<bool> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .images
            .iter()
            .any(|i| i == reference))
    }

    async fn list_images(&self, project: &str) -> Result<Vec<String>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .images
            .iter()
            .filter(|i| names::is_image_of(project, i))
            .cloned()
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.images.retain(|i| i != reference);
        s.calls.push(format!("remove_image {reference}"));
        Ok(())
    }

    async fn build(
        &self,
        spec: &BuildSpec,
        _context_tar: Vec<u8>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<()> {
        progress("STEP 1/1: FROM scratch");
        let mut s = self.state.lock().unwrap();
        s.images.push(spec.tag.clone());
        s.calls.push(format!("build {}", spec.tag));
        Ok(())
    }

    async fn list_networks(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let s = self.state.lock().unwrap();
        Ok(s.networks
            .iter()
            .filter(|n| names::labelled_for(&n.labels, project))
            .cloned()
            .collect())
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<ResourceInfo>> {
        let s = self.state.lock().unwrap();
        Ok(s.networks
            .iter()
            .filter(|n| n.name == name)
            .cloned()
            .collect())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<()> {
        if !self.duplicate_network_names
            && self
                .state
                .lock()
                .unwrap()
                .networks
                .iter()
                .any(|n| n.name == spec.name)
        {
            return Err(EngineError {
                engine: Kind::Podman,
                socket: "fake".into(),
                kind: ErrorKind::Conflict,
                message: format!("network name {} already used", spec.name),
            });
        }
        self.add_network(&spec.name, &spec.labels);
        self.record(format!("create_network {}", spec.name));
        Ok(())
    }

    /// By id, or by name when only one network has it (else "ambiguous", as Docker says).
    async fn remove_network(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let hits: Vec<usize> = (0..s.networks.len())
            .filter(|i| s.networks[*i].id == id || s.networks[*i].name == id)
            .collect();
        match hits[..] {
            [] => Err(Self::not_found("network")),
            [i] => {
                let n = s.networks.remove(i);
                s.calls.push(format!("remove_network {}", n.name));
                Ok(())
            }
            _ => Err(EngineError {
                engine: Kind::Podman,
                socket: "fake".into(),
                kind: ErrorKind::Other,
                message: format!(
                    "network {id} is ambiguous ({} matches found based on name)",
                    hits.len()
                ),
            }),
        }
    }

    async fn list_volumes(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        Ok(list(&self.state.lock().unwrap().volumes, project))
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let s = &mut *s;
        add(
            &mut s.volumes,
            &mut s.calls,
            "create_volume",
            &spec.name,
            &spec.labels,
        );
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let s = &mut *s;
        drop_one(&mut s.volumes, &mut s.calls, "volume", name)
    }

    async fn list_containers(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        let s = self.state.lock().unwrap();
        Ok(s.containers
            .values()
            .filter(|c| names::labelled_for(&c.labels, project))
            .cloned()
            .collect())
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        let s = self.state.lock().unwrap();
        s.containers
            .values()
            .find(|c| c.id == id || c.name == id)
            .cloned()
            .ok_or_else(|| Self::not_found("container"))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        if s.containers.contains_key(&spec.name) {
            return Err(EngineError {
                engine: Kind::Podman,
                socket: "fake".into(),
                kind: ErrorKind::Conflict,
                message: format!("the container name {:?} is already in use", spec.name),
            });
        }
        s.next_id += 1;
        let id = format!("{:064x}", s.next_id);
        let ports = spec
            .ports
            .iter()
            .map(|p| PublishedPort {
                host_ip: p.host_ip.to_string(),
                host_port: p.host,
                container_port: p.container,
                protocol: p.protocol.as_str().to_owned(),
            })
            .collect();
        s.containers.insert(
            spec.name.clone(),
            ContainerInfo {
                id: id.clone(),
                name: spec.name.clone(),
                image: spec.image.clone(),
                labels: spec.labels.clone(),
                state: "created".into(),
                health: None,
                exit_code: None,
                ports,
                pid: None,
                monitor_pid: None,
                restarts: None,
            },
        );
        s.calls.push(format!("create_container {}", spec.name));
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let health = self.health.clone();
        let mut s = self.state.lock().unwrap();
        let c = s
            .containers
            .values_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| Self::not_found("container"))?;
        if self.fail_start.as_deref() == Some(c.name.as_str()) {
            let name = c.name.clone();
            s.calls.push(format!("start_container {name} (fails)"));
            return Err(EngineError {
                engine: Kind::Podman,
                socket: "/fake.sock".into(),
                kind: ErrorKind::Other,
                message: "cannot listen on the TCP port: address already in use".into(),
            });
        }
        c.state = "running".into();
        c.health = health;
        let name = c.name.clone();
        s.calls.push(format!("start_container {name}"));
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout_s: u32) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let c = s
            .containers
            .values_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| Self::not_found("container"))?;
        c.state = "exited".into();
        let name = c.name.clone();
        s.calls.push(format!("stop_container {name}"));
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let name = s
            .containers
            .values()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .ok_or_else(|| Self::not_found("container"))?;
        s.containers.remove(&name);
        s.calls.push(format!("remove_container {name}"));
        Ok(())
    }

    async fn connect_network(&self, id: &str, network: &str, _alias: &str) -> Result<()> {
        let name = self.inspect_container(id).await?.name;
        self.record(format!("connect_network {name} {network}"));
        Ok(())
    }

    async fn disconnect_network(&self, id: &str, network: &str) -> Result<()> {
        let name = self.inspect_container(id).await?.name;
        self.record(format!("disconnect_network {name} {network}"));
        Ok(())
    }

    async fn logs(&self, _id: &str, _opts: &LogOptions) -> Result<LogStream<'_>> {
        Ok(Box::pin(futures_util::stream::empty()))
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecOutput> {
        self.record(format!("exec {id} {}", spec.argv.join(" ")));
        Ok(ExecOutput::default())
    }
}
