//! The native engine: services without an image, each a host program in its own
//! sandbox made by devbox's runner, with no container engine. Networks and volumes are
//! records under devbox's data directory; containers belong to a per-project supervisor
//! (a detached devbox, see [`supervisor`]) reached over a Unix socket in the runtime
//! directory. This module is the [`Engine`] face of it: it turns specs into the records
//! the supervisor runs and its answers into [`ContainerInfo`]. It never builds images.

pub mod client;
mod convert;
pub mod def;
pub mod exec;
mod health;
pub mod logs;
pub mod net;
pub mod paths;
pub mod service;
pub mod supervisor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use self::client::AskError;
use self::def::{Container, Failure, Request, Status};
use self::paths::ProjectDir;
use super::{
    BuildSpec, ContainerInfo, ContainerSpec, Engine, EngineError, EngineInfo, ErrorKind,
    ExecOutput, ExecSpec, Kind, LogOptions, LogStream, NetworkSpec, PublishedPort, ResourceInfo,
    Result, VolumeSpec,
};
use crate::plan::names::{self, LABEL_PROJECT};
use crate::runner::state;

pub use convert::resolve_user;

/// A service's user, environment and working directory, for commands run in it.
pub type ExecDefaults = (Option<(u32, u32)>, BTreeMap<String, String>, String);

/// What a command run in a service gets: its project's runtime directory (where the
/// record it was started from is), and the service's [`ExecDefaults`].
pub type ExecTarget = (PathBuf, ExecDefaults);

/// The native engine of this user.
pub struct Native {
    runtime: PathBuf,
    data: PathBuf,
    /// The process the supervisors this one starts die with (a `verify`).
    owner: Option<u32>,
}

impl Default for Native {
    fn default() -> Self {
        Self::new()
    }
}

/// A network as stored: `networks/NAME.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NetworkRecord {
    id: String,
    name: String,
    labels: BTreeMap<String, String>,
    internal: bool,
    created: String,
}

/// A volume's labels: `volumes/NAME.json` beside its directory `volumes/NAME/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VolumeRecord {
    name: String,
    labels: BTreeMap<String, String>,
    created: String,
}

/// A name devbox may use as a file name.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Native {
    pub fn new() -> Self {
        Self {
            runtime: paths::runtime_root(),
            data: paths::data_root(),
            owner: None,
        }
    }

    /// Ties the supervisors this engine starts to this process: they stop their services
    /// and exit when it ends, however it ends (`verify`, which keeps nothing running).
    pub fn tie_to_this_process(&mut self) {
        self.owner = Some(std::process::id());
    }

    /// Where the supervisors live (the engine's "socket" in messages).
    pub fn runtime_root(&self) -> &Path {
        &self.runtime
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> EngineError {
        EngineError {
            engine: Kind::Native,
            socket: self.runtime.clone(),
            kind,
            message: message.into(),
        }
    }

    fn project(&self, project: &str) -> ProjectDir {
        ProjectDir::new(&self.runtime, project)
    }

    fn networks_dir(&self) -> PathBuf {
        self.data.join("networks")
    }

    fn volumes_dir(&self) -> PathBuf {
        self.data.join("volumes")
    }

    /// The directory a named volume's data is in.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name)
    }

    fn networks(&self) -> Result<Vec<NetworkRecord>> {
        read_records(&self.networks_dir()).map_err(|e| self.err(ErrorKind::Other, e))
    }

    fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        read_records(&self.volumes_dir()).map_err(|e| self.err(ErrorKind::Other, e))
    }

    /// The project a container id belongs to: the runtime directory holding its record.
    fn locate(&self, id: &str) -> Result<(ProjectDir, Container)> {
        if state::valid_id(id) {
            if let Ok(dirs) = std::fs::read_dir(&self.runtime) {
                for d in dirs.flatten() {
                    let pd = ProjectDir { dir: d.path() };
                    let states = state::StateDir::new(&pd.containers());
                    if let Ok(Some(c)) = states.load::<Container>(id) {
                        return Ok((pd, c));
                    }
                }
            }
        }
        Err(self.err(
            ErrorKind::NotFound,
            format!("no such container: {}", &id[..id.len().min(12)]),
        ))
    }

    /// Asks the project's supervisor, starting it first when `start` (and again, once,
    /// when it exited between the start and the question).
    async fn ask(
        &self,
        pd: &ProjectDir,
        req: &Request,
        start: bool,
    ) -> Result<Option<def::Response>> {
        for _ in 0..3 {
            if start {
                let (pd, owner) = (pd.clone(), self.owner);
                tokio::task::spawn_blocking(move || client::ensure(&pd, owner))
                    .await
                    .map_err(|e| self.err(ErrorKind::Other, e.to_string()))?
                    .map_err(|e| self.err(ErrorKind::Unreachable, e))?;
            }
            match client::ask(pd, req).await {
                Ok(r) => {
                    if let Some((kind, message)) = r.error {
                        let kind = match kind {
                            Failure::NotFound => ErrorKind::NotFound,
                            Failure::Conflict => ErrorKind::Conflict,
                            Failure::Other => ErrorKind::Other,
                        };
                        return Err(self.err(kind, message));
                    }
                    return Ok(Some(r));
                }
                Err(AskError::Absent) if start => continue,
                Err(AskError::Absent) => return Ok(None),
                Err(AskError::Io(e)) => return Err(self.err(ErrorKind::Unreachable, e)),
            }
        }
        Err(self.err(
            ErrorKind::Unreachable,
            format!("the supervisor of {} kept exiting", pd.dir.display()),
        ))
    }

    /// What a command run in container `id` gets unless told otherwise: the service's
    /// user, environment and working directory.
    pub fn exec_defaults(&self, id: &str) -> Result<ExecTarget> {
        let (pd, c) = self.locate(id)?;
        Ok((
            pd.dir,
            (
                c.def.user,
                c.def.env.iter().cloned().collect(),
                c.def.workdir.display().to_string(),
            ),
        ))
    }

    fn info_of(s: Status) -> ContainerInfo {
        ContainerInfo {
            id: s.id,
            name: s.name,
            image: String::new(),
            labels: s.labels,
            state: s.state,
            health: s.health,
            exit_code: s.exit_code,
            ports: s
                .ports
                .into_iter()
                .map(|p| PublishedPort {
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    container_port: p.container_port,
                    protocol: p.protocol,
                })
                .collect(),
            pid: s.pid,
            monitor_pid: s.monitor,
            restarts: Some(s.restarts),
        }
    }

    /// A container whose supervisor is gone, as its record says: it died with it.
    fn orphaned(mut c: Container) -> ContainerInfo {
        if c.record.state == state::State::Running || c.record.state == state::State::Creating {
            c.record.state = state::State::Stopped;
            c.record.exit_code = Some(137);
        }
        Self::info_of(c.status())
    }
}

/// The `*.json` records in `dir`.
fn read_records<T: for<'de> Deserialize<'de>>(dir: &Path) -> std::result::Result<Vec<T>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        out.push(
            serde_json::from_slice(&text).map_err(|e| format!("reading {}: {e}", p.display()))?,
        );
    }
    Ok(out)
}

fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

impl Engine for Native {
    fn kind(&self) -> Kind {
        Kind::Native
    }

    /// The supervisor hears of a run's end from the monitor's exit, within a millisecond
    /// or two of the program's: a program that dies at once has died by then.
    fn settle_time(&self) -> std::time::Duration {
        std::time::Duration::from_millis(25)
    }

    /// Each start is a monitor of its own; the supervisor serves them side by side.
    fn starts_at_once(&self) -> bool {
        true
    }

    async fn info(&self) -> Result<EngineInfo> {
        Ok(EngineInfo {
            kind: Kind::Native,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            api_version: "1".to_owned(),
            rootless: !nix::unistd::geteuid().is_root(),
            cgroup_version: super::host_cgroup_version().to_owned(),
        })
    }

    async fn image_exists(&self, reference: &str) -> Result<bool> {
        Ok(reference.is_empty())
    }

    async fn list_images(&self, _project: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn remove_image(&self, _reference: &str) -> Result<()> {
        Ok(())
    }

    async fn build(
        &self,
        spec: &BuildSpec,
        _context_tar: Vec<u8>,
        _progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<()> {
        Err(self.err(
            ErrorKind::Other,
            format!(
                "the native engine runs host programs and builds no images (asked to build {})\nhint: give the services images and pass --engine podman|docker",
                spec.tag
            ),
        ))
    }

    async fn list_networks(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        Ok(self
            .networks()?
            .into_iter()
            .filter(|n| names::labelled_for(&n.labels, project))
            .map(|n| ResourceInfo {
                id: n.id,
                name: n.name,
                labels: n.labels,
                created: n.created,
            })
            .collect())
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<ResourceInfo>> {
        Ok(self
            .networks()?
            .into_iter()
            .filter(|n| n.name == name)
            .map(|n| ResourceInfo {
                id: n.id,
                name: n.name,
                labels: n.labels,
                created: n.created,
            })
            .collect())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<()> {
        if !plain_name(&spec.name) {
            return Err(self.err(
                ErrorKind::Other,
                format!("`{}` cannot name a network", spec.name),
            ));
        }
        let r = NetworkRecord {
            id: state::new_id(),
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            internal: spec.internal,
            created: now(),
        };
        let path = self.networks_dir().join(format!("{}.json", spec.name));
        paths::make_private(&self.networks_dir())
            .map_err(|e| self.err(ErrorKind::Other, e.to_string()))?;
        let text = serde_json::to_vec_pretty(&r).expect("records serialize");
        crate::fsutil::write_new(&path, &text, 0o600).map_err(|e| {
            if e.source.kind() == std::io::ErrorKind::AlreadyExists {
                self.err(
                    ErrorKind::Conflict,
                    format!("network {} already exists", spec.name),
                )
            } else {
                self.err(ErrorKind::Other, e.to_string())
            }
        })
    }

    async fn remove_network(&self, id: &str) -> Result<()> {
        let Some(n) = self
            .networks()?
            .into_iter()
            .find(|n| n.id == id || n.name == id)
        else {
            return Err(self.err(ErrorKind::NotFound, format!("no such network: {id}")));
        };
        let path = self.networks_dir().join(format!("{}.json", n.name));
        std::fs::remove_file(&path).map_err(|e| {
            self.err(
                ErrorKind::Other,
                format!("removing {}: {e}", path.display()),
            )
        })
    }

    async fn list_volumes(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        Ok(self
            .volumes()?
            .into_iter()
            .filter(|v| names::labelled_for(&v.labels, project))
            .map(|v| ResourceInfo {
                id: v.name.clone(),
                name: v.name,
                labels: v.labels,
                created: v.created,
            })
            .collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()> {
        if !plain_name(&spec.name) {
            return Err(self.err(
                ErrorKind::Other,
                format!("`{}` cannot name a volume", spec.name),
            ));
        }
        let dir = self.volume_dir(&spec.name);
        let path = self.volumes_dir().join(format!("{}.json", spec.name));
        if path.exists() || dir.exists() {
            return Err(self.err(
                ErrorKind::Conflict,
                format!("volume {} already exists", spec.name),
            ));
        }
        let other = |e: String| self.err(ErrorKind::Other, e);
        paths::make_private(&self.volumes_dir()).map_err(|e| other(e.to_string()))?;
        let r = VolumeRecord {
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            created: now(),
        };
        let text = serde_json::to_vec_pretty(&r).expect("records serialize");
        crate::fsutil::write_new(&path, &text, 0o600).map_err(|e| other(e.to_string()))?;
        // The service writes in it: owned by the caller, like a data directory.
        std::fs::create_dir(&dir).map_err(|e| other(format!("creating {}: {e}", dir.display())))
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let path = self.volumes_dir().join(format!("{name}.json"));
        if !plain_name(name) || !path.exists() {
            return Err(self.err(ErrorKind::NotFound, format!("no such volume: {name}")));
        }
        let dir = self.volume_dir(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                self.err(ErrorKind::Other, format!("removing {}: {e}", dir.display()))
            })?;
        }
        std::fs::remove_file(&path).map_err(|e| {
            self.err(
                ErrorKind::Other,
                format!("removing {}: {e}", path.display()),
            )
        })
    }

    async fn list_containers(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        let pd = self.project(project);
        if !pd.dir.exists() {
            return Ok(Vec::new());
        }
        if let Some(r) = self.ask(&pd, &Request::List, false).await? {
            return Ok(r.containers.into_iter().map(Self::info_of).collect());
        }
        let states = state::StateDir::new(&pd.containers());
        let records: Vec<Container> = states
            .list()
            .map_err(|e| self.err(ErrorKind::Other, e.to_string()))?;
        Ok(records.into_iter().map(Self::orphaned).collect())
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        let (pd, c) = self.locate(id)?;
        match self
            .ask(&pd, &Request::Inspect { id: id.to_owned() }, false)
            .await?
        {
            Some(r) => r
                .containers
                .into_iter()
                .next()
                .map(Self::info_of)
                .ok_or_else(|| self.err(ErrorKind::NotFound, format!("no such container: {id}"))),
            None => Ok(Self::orphaned(c)),
        }
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let def = self.def(spec)?;
        let project = spec
            .labels
            .get(LABEL_PROJECT)
            .cloned()
            .unwrap_or_else(|| spec.name.clone());
        if !plain_name(&project) {
            return Err(self.err(
                ErrorKind::Other,
                format!("`{project}` cannot name a project"),
            ));
        }
        let pd = self.project(&project);
        let req = Request::Create {
            name: spec.name.clone(),
            def: Box::new(def),
        };
        let r = self.ask(&pd, &req, true).await?.unwrap_or_default();
        r.id.ok_or_else(|| self.err(ErrorKind::Other, "the supervisor gave no id"))
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let (pd, _) = self.locate(id)?;
        self.ask(&pd, &Request::Start { id: id.to_owned() }, true)
            .await?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_s: u32) -> Result<()> {
        let (pd, _) = self.locate(id)?;
        let req = Request::Stop {
            id: id.to_owned(),
            timeout_s,
        };
        self.ask(&pd, &req, false).await?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let (pd, c) = self.locate(id)?;
        if self
            .ask(&pd, &Request::Remove { id: id.to_owned() }, false)
            .await?
            .is_none()
        {
            // No supervisor: its sandboxes died with it; only the record is left.
            let states = state::StateDir::new(&pd.containers());
            states
                .remove(id)
                .map_err(|e| self.err(ErrorKind::Other, e.to_string()))?;
            let log = pd.log(&c.record.name);
            let _ = std::fs::remove_file(logs::old_file(&log));
            let _ = std::fs::remove_file(&log);
        }
        Ok(())
    }

    async fn connect_network(&self, id: &str, network: &str, alias: &str) -> Result<()> {
        let (pd, _) = self.locate(id)?;
        let req = Request::ConnectNetwork {
            id: id.to_owned(),
            network: network.to_owned(),
            alias: alias.to_owned(),
        };
        self.ask(&pd, &req, false).await?;
        Ok(())
    }

    async fn disconnect_network(&self, id: &str, network: &str) -> Result<()> {
        let (pd, _) = self.locate(id)?;
        let req = Request::DisconnectNetwork {
            id: id.to_owned(),
            network: network.to_owned(),
        };
        self.ask(&pd, &req, false).await?;
        Ok(())
    }

    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream<'_>> {
        use futures_util::StreamExt;
        let (pd, c) = self.locate(id)?;
        let path = pd.log(&c.record.name);
        let (first, pos) = logs::read(&path, opts.since, opts.tail);
        let head = futures_util::stream::iter(first.into_iter().map(Ok));
        if !opts.follow {
            return Ok(head.boxed());
        }
        let id = id.to_owned();
        let more = futures_util::stream::unfold(
            (path, pos, id, false),
            move |(path, pos, id, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let (lines, next) = logs::read_from(&path, pos);
                    if !lines.is_empty() {
                        return Some((lines, (path, next, id, false)));
                    }
                    // Follow while the container runs, as the engines do.
                    let running = self.inspect_container(&id).await.is_ok_and(|c| c.running());
                    if !running {
                        let (lines, next) = logs::read_from(&path, next);
                        return Some((lines, (path, next, id, true)));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            },
        )
        .flat_map(|v| futures_util::stream::iter(v.into_iter().map(Ok)));
        Ok(head.chain(more).boxed())
    }

    async fn release(&self, project: &str) -> Result<()> {
        client::release(&self.project(project))
            .await
            .map_err(|e| match e {
                AskError::Absent => self.err(ErrorKind::Unreachable, "the supervisor vanished"),
                AskError::Io(m) => self.err(ErrorKind::Unreachable, m),
            })
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecOutput> {
        let info = self.inspect_container(id).await?;
        let Some(pid) = info.pid.filter(|_| info.running()) else {
            return Err(self.err(
                ErrorKind::Other,
                format!("container {} is not running", info.name),
            ));
        };
        let (dir, (user, mut env, workdir)) = self.exec_defaults(id)?;
        let user = match &spec.user {
            Some(u) => resolve_user(u).map_err(|e| self.err(ErrorKind::Other, e))?,
            None => user,
        };
        env.extend(spec.env.clone());
        let workdir = spec.workdir.clone().unwrap_or(workdir);
        let cmd = exec::command(&dir, id, pid, user, Some(&workdir), &env, &spec.argv)
            .map_err(|e| self.err(ErrorKind::Other, e))?;
        let out = tokio::process::Command::from(cmd)
            .output()
            .await
            .map_err(|e| {
                self.err(
                    ErrorKind::Other,
                    format!("running devbox __native-exec: {e}"),
                )
            })?;
        Ok(ExecOutput {
            exit_code: i64::from(out.status.code().unwrap_or(1)),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
