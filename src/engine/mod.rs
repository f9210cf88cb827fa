//! Engines: one [`Engine`] trait, backends chosen by the [`AnyEngine`] enum — `podman`
//! (libpod REST API through `podman-api`), `docker` (`bollard`), `native` (services
//! without an image, each in a sandbox of devbox's own runner) and a recording `fake`
//! for unit tests of the apply logic, compiled into test builds only.
//!
//! A backend translates the engine-neutral specs in this module into API calls and
//! reports what exists. It never decides *what* to create: that is [`crate::apply`].

pub mod deadline;
pub mod docker;
#[cfg(test)]
pub mod fake;
pub mod native;
pub mod podman;
pub mod select;
mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::plan::names;

pub use deadline::{Deadlined, Limits};
pub use select::{connect, discover, listening, Endpoint, Kind, Selection, ServiceGuard};
pub use spec::{container_spec, BuildSpec, ContainerSpec, HealthSpec, MountSpec, NativeSpec};

/// Something an engine said no to, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub struct EngineError {
    pub engine: Kind,
    pub socket: PathBuf,
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing asked about does not exist.
    NotFound,
    /// A name is taken (for example by a concurrent `up`).
    Conflict,
    /// The socket did not answer.
    Unreachable,
    /// The engine did not answer in time (see [`deadline`]).
    TimedOut,
    Other,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}: {}",
            self.engine,
            self.socket.display(),
            self.message.trim_end()
        )?;
        if self.kind == ErrorKind::TimedOut {
            write!(
                f,
                "\nhint: `devbox doctor` checks the engine and its socket; --engine-timeout DURATION (or DEVBOX_ENGINE_TIMEOUT) gives a slow engine longer"
            )?;
        } else if matches!(self.kind, ErrorKind::Unreachable | ErrorKind::Other) {
            write!(
                f,
                "\nhint: `devbox doctor` checks the engine and its socket"
            )?;
        }
        Ok(())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What `info` reports about the engine on the other end of the socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EngineInfo {
    pub kind: Kind,
    pub version: String,
    pub api_version: String,
    pub rootless: bool,
    /// "1" or "2".
    pub cgroup_version: String,
}

/// A container as the engine reports it, reduced to what devbox looks at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// created | running | exited | paused | …, as the engine says.
    pub state: String,
    /// healthy | unhealthy | starting, when the container has a healthcheck.
    pub health: Option<String>,
    pub exit_code: Option<i64>,
    pub ports: Vec<PublishedPort>,
    /// The container's first process as this host's kernel numbers it, while it runs
    /// (meaningless for an engine in a VM).
    pub pid: Option<u32>,
    /// The engine's monitor of the container (Podman's conmon), which runs as the caller
    /// in the engine's user namespace.
    pub monitor_pid: Option<u32>,
    /// How often the restart policy has started it again, when the engine counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
}

impl ContainerInfo {
    pub fn service(&self) -> Option<&str> {
        self.labels.get(names::LABEL_SERVICE).map(String::as_str)
    }

    pub fn config_hash(&self) -> Option<&str> {
        self.labels.get(names::LABEL_HASH).map(String::as_str)
    }

    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct PublishedPort {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

impl fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = if self.host_ip.contains(':') {
            format!("[{}]", self.host_ip)
        } else if self.host_ip.is_empty() {
            "0.0.0.0".to_owned()
        } else {
            self.host_ip.clone()
        };
        write!(
            f,
            "{ip}:{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// A network or volume as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResourceInfo {
    /// The engine's id: names are unique for volumes (the id is the name) but not for
    /// networks on Docker, which accepts two networks of one name.
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// When the engine made it (RFC 3339, sorts as text); empty when not reported.
    pub created: String,
}

/// A network devbox wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// A named volume devbox wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// One line of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339 with nanoseconds, as the engine stamped it (sorts as text).
    pub timestamp: String,
    pub stderr: bool,
    pub text: String,
}

/// Options for [`Engine::logs`].
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Unix seconds.
    pub since: Option<i64>,
    /// Only the last N lines.
    pub tail: Option<usize>,
}

/// How a command runs in [`Engine::exec`].
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub user: Option<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    /// Allocate a TTY and attach the caller's terminal.
    pub tty: bool,
    /// Forward the caller's stdin.
    pub stdin: bool,
}

/// What a non-interactive exec produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A boxed stream of log lines.
pub type LogStream<'a> = futures_util::stream::BoxStream<'a, Result<LogLine>>;

/// The operations `apply` needs from a container engine. Names are engine names
/// (already prefixed with the project); `list_*` filter by the `devbox.project` label.
#[allow(async_fn_in_trait)]
pub trait Engine {
    fn kind(&self) -> Kind;
    async fn info(&self) -> Result<EngineInfo>;

    async fn image_exists(&self, reference: &str) -> Result<bool>;
    /// Tags of the images devbox built for the project (by label); the id of one that has
    /// lost its tag to a rebuild.
    async fn list_images(&self, project: &str) -> Result<Vec<String>>;
    async fn remove_image(&self, reference: &str) -> Result<()>;
    /// Builds from a tar of the context; `progress` gets each output line.
    async fn build(
        &self,
        spec: &BuildSpec,
        context_tar: Vec<u8>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<()>;

    async fn list_networks(&self, project: &str) -> Result<Vec<ResourceInfo>>;
    /// Every network called exactly `name`, whoever made it (Docker may hold several).
    async fn networks_named(&self, name: &str) -> Result<Vec<ResourceInfo>>;
    async fn create_network(&self, spec: &NetworkSpec) -> Result<()>;
    /// Removes a network by id (or by name, when the name is unique).
    async fn remove_network(&self, id: &str) -> Result<()>;

    async fn list_volumes(&self, project: &str) -> Result<Vec<ResourceInfo>>;
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()>;
    async fn remove_volume(&self, name: &str) -> Result<()>;

    /// Whether the containers' published ports are bound on this host, so that `up` can
    /// test them by binding first (the recording fake binds nothing).
    fn binds_host_ports(&self) -> bool {
        true
    }

    /// Every container of the project, running or not.
    async fn list_containers(&self, project: &str) -> Result<Vec<ContainerInfo>>;
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo>;
    /// Creates the container and returns its id.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    async fn stop_container(&self, id: &str, timeout_s: u32) -> Result<()>;
    /// Removes the container (forcefully, with its anonymous volumes).
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Joins a (running) container to a network, with `alias`.
    async fn connect_network(&self, id: &str, network: &str, alias: &str) -> Result<()>;
    /// Takes a container off a network.
    async fn disconnect_network(&self, id: &str, network: &str) -> Result<()>;

    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream<'_>>;
    /// Runs a command in a running container and collects its output.
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecOutput>;

    /// Runs the container's healthcheck once, for engines that leave scheduling it to
    /// someone else (Podman without systemd). Others do nothing.
    async fn run_healthcheck(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    /// Lets go of whatever serves `project` on this host once the project holds no
    /// container (the native engine's supervisor exits at once); no-op elsewhere.
    async fn release(&self, _project: &str) -> Result<()> {
        Ok(())
    }

    /// How long a just-started container must keep running before `up` trusts it: a
    /// process that dies at once still reads `running` for a moment on a daemon engine
    /// (its monitor, then the daemon, must notice).
    fn settle_time(&self) -> std::time::Duration {
        std::time::Duration::from_millis(100)
    }

    /// Whether `up` may start every service whose dependencies have started at once,
    /// rather than one after another.
    fn starts_at_once(&self) -> bool {
        false
    }
}

/// The engine devbox talks to, chosen at run time. Its `list_*` keep only resources
/// named the way devbox names them ([`names`]: `PROJECT-SERVICE`, an instance's
/// `PROJECT-SERVICE-INSTANCE`, `PROJECT`, `PROJECT_KEY`): files
/// rendered by devbox carry its labels, and what other tools create from them must never
/// be taken for devbox's own — least of all by `down --volumes`.
pub enum AnyEngine {
    Podman(Box<podman::Podman>),
    Docker(docker::Docker),
    Native(native::Native),
}

impl AnyEngine {
    /// Ties whatever the engine starts on this host to serve a project to this process,
    /// so that nothing of it outlives the process (`verify`); the daemon engines start
    /// nothing of the kind.
    pub fn tie_to_this_process(&mut self) {
        if let Self::Native(n) = self {
            n.tie_to_this_process();
        }
    }
}

macro_rules! each {
    ($self:ident, $e:ident => $body:expr) => {
        match $self {
            AnyEngine::Podman($e) => $body,
            AnyEngine::Docker($e) => $body,
            AnyEngine::Native($e) => $body,
        }
    };
}

impl Engine for AnyEngine {
    fn kind(&self) -> Kind {
        each!(self, e => e.kind())
    }
    fn binds_host_ports(&self) -> bool {
        each!(self, e => e.binds_host_ports())
    }
    fn settle_time(&self) -> std::time::Duration {
        each!(self, e => e.settle_time())
    }
    fn starts_at_once(&self) -> bool {
        each!(self, e => e.starts_at_once())
    }
    async fn info(&self) -> Result<EngineInfo> {
        each!(self, e => e.info().await)
    }
    async fn image_exists(&self, reference: &str) -> Result<bool> {
        each!(self, e => e.image_exists(reference).await)
    }
    async fn list_images(&self, project: &str) -> Result<Vec<String>> {
        let all = each!(self, e => e.list_images(project).await)?;
        Ok(all
            .into_iter()
            .filter(|t| names::is_image_of(project, t) || !t.contains('/'))
            .collect())
    }
    async fn remove_image(&self, reference: &str) -> Result<()> {
        each!(self, e => e.remove_image(reference).await)
    }
    async fn build(
        &self,
        spec: &BuildSpec,
        context_tar: Vec<u8>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<()> {
        each!(self, e => e.build(spec, context_tar, progress).await)
    }
    async fn list_networks(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let all = each!(self, e => e.list_networks(project).await)?;
        Ok(all
            .into_iter()
            .filter(|n| names::is_projects_resource(project, &n.name, &n.labels))
            .collect())
    }
    async fn networks_named(&self, name: &str) -> Result<Vec<ResourceInfo>> {
        each!(self, e => e.networks_named(name).await)
    }
    async fn create_network(&self, spec: &NetworkSpec) -> Result<()> {
        each!(self, e => e.create_network(spec).await)
    }
    async fn remove_network(&self, id: &str) -> Result<()> {
        each!(self, e => e.remove_network(id).await)
    }
    async fn list_volumes(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let all = each!(self, e => e.list_volumes(project).await)?;
        Ok(all
            .into_iter()
            .filter(|v| names::is_projects_resource(project, &v.name, &v.labels))
            .collect())
    }
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()> {
        each!(self, e => e.create_volume(spec).await)
    }
    async fn remove_volume(&self, name: &str) -> Result<()> {
        each!(self, e => e.remove_volume(name).await)
    }
    async fn list_containers(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        let all = each!(self, e => e.list_containers(project).await)?;
        Ok(projects_containers(project, all))
    }
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        each!(self, e => e.inspect_container(id).await)
    }
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        each!(self, e => e.create_container(spec).await)
    }
    async fn start_container(&self, id: &str) -> Result<()> {
        each!(self, e => e.start_container(id).await)
    }
    async fn stop_container(&self, id: &str, timeout_s: u32) -> Result<()> {
        each!(self, e => e.stop_container(id, timeout_s).await)
    }
    async fn remove_container(&self, id: &str) -> Result<()> {
        each!(self, e => e.remove_container(id).await)
    }
    async fn connect_network(&self, id: &str, network: &str, alias: &str) -> Result<()> {
        each!(self, e => e.connect_network(id, network, alias).await)
    }
    async fn disconnect_network(&self, id: &str, network: &str) -> Result<()> {
        each!(self, e => e.disconnect_network(id, network).await)
    }
    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream<'_>> {
        each!(self, e => e.logs(id, opts).await)
    }
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecOutput> {
        each!(self, e => e.exec(id, spec).await)
    }
    async fn run_healthcheck(&self, id: &str) -> Result<()> {
        each!(self, e => e.run_healthcheck(id).await)
    }
    async fn release(&self, project: &str) -> Result<()> {
        each!(self, e => e.release(project).await)
    }
}

/// Splits `1700000000.123456789`-style or RFC 3339 timestamps off an engine log line
/// (`TIMESTAMP TEXT`).
pub fn split_timestamp(line: &str) -> (String, String) {
    match line.split_once(' ') {
        Some((ts, rest)) if ts.len() >= 20 && ts.as_bytes()[4] == b'-' => {
            (ts.to_owned(), rest.to_owned())
        }
        _ => (String::new(), line.to_owned()),
    }
}

/// Turns a stream of `(is_stderr, bytes)` chunks into log lines, splitting on newlines
/// per stream and taking the engine's timestamp off each line.
pub fn lines<'a, S>(chunks: S) -> LogStream<'a>
where
    S: futures_util::Stream<Item = Result<(bool, Vec<u8>)>> + Send + 'a,
{
    use futures_util::StreamExt;
    let state = (Box::pin(chunks), Vec::<u8>::new(), Vec::<u8>::new(), false);
    futures_util::stream::unfold(state, |(mut s, mut out, mut err, done)| async move {
        if done {
            return None;
        }
        loop {
            match s.next().await {
                None => {
                    // A last line without a newline.
                    let mut rest = Vec::new();
                    for (buf, is_err) in [(&mut out, false), (&mut err, true)] {
                        if !buf.is_empty() {
                            rest.push(Ok(line_of(buf, is_err)));
                            buf.clear();
                        }
                    }
                    return if rest.is_empty() {
                        None
                    } else {
                        Some((rest, (s, out, err, true)))
                    };
                }
                Some(Err(e)) => return Some((vec![Err(e)], (s, out, err, true))),
                Some(Ok((is_err, bytes))) => {
                    let buf = if is_err { &mut err } else { &mut out };
                    buf.extend(bytes);
                    let mut ready = Vec::new();
                    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                        let l: Vec<u8> = buf.drain(..=nl).collect();
                        ready.push(Ok(line_of(&l[..l.len() - 1], is_err)));
                    }
                    if !ready.is_empty() {
                        return Some((ready, (s, out, err, false)));
                    }
                }
            }
        }
    })
    .flat_map(futures_util::stream::iter)
    .boxed()
}

fn line_of(bytes: &[u8], stderr: bool) -> LogLine {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let (timestamp, text) = split_timestamp(text);
    LogLine {
        timestamp,
        stderr,
        text,
    }
}

/// Whether a Unix socket belongs to an unprivileged user — how a rootless engine's
/// socket looks (its daemon runs as that user).
pub fn socket_owned_by_user(socket: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(socket).is_ok_and(|m| m.uid() != 0)
}

/// "2" on a unified cgroup hierarchy, else "1" (legacy or hybrid).
pub fn host_cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

/// Inspects containers concurrently, sorted by name; one removed in the meantime is
/// skipped.
pub async fn inspect_all<E: Engine>(engine: &E, ids: &[String]) -> Result<Vec<ContainerInfo>> {
    let found =
        futures_util::future::join_all(ids.iter().map(|id| engine.inspect_container(id))).await;
    let mut out = Vec::new();
    for r in found {
        match r {
            Ok(c) => out.push(c),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Of the containers an engine lists by the project's label, those devbox made for it
/// (see [`names::is_projects_container`]): a service's and its instances'.
fn projects_containers(project: &str, all: Vec<ContainerInfo>) -> Vec<ContainerInfo> {
    all.into_iter()
        .filter(|c| names::is_projects_container(project, &c.name, &c.labels))
        .collect()
}

/// The spec of the first service of the `sandbox.toml` in `dir`, as `up` makes it (for
/// the engines' unit tests).
#[cfg(test)]
pub(crate) fn first_spec_in(dir: &std::path::Path) -> ContainerSpec {
    let loaded = crate::config::load(&crate::config::LoadOptions {
        file: Some(dir.join("sandbox.toml")),
        cwd: dir.to_path_buf(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let plan = crate::plan::plan(&loaded.config);
    container_spec(&plan, &plan.services[0]).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, labels: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: format!("id-{name}"),
            name: name.to_owned(),
            image: "localhost/x:1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            state: "running".into(),
            health: None,
            exit_code: None,
            ports: Vec::new(),
            pid: None,
            monitor_pid: None,
            restarts: None,
        }
    }

    // The listing kept only `PROJECT-SERVICE`, so an instance container of a service
    // (`PROJECT-SERVICE-INSTANCE`) would have been invisible to `down` and `status`.
    #[test]
    fn the_listing_keeps_a_services_instances_and_drops_what_others_named() {
        let web = [(names::LABEL_PROJECT, "p"), (names::LABEL_SERVICE, "web")];
        let instance = [
            (names::LABEL_PROJECT, "p"),
            (names::LABEL_SERVICE, "web"),
            (names::LABEL_INSTANCE, "acme"),
        ];
        let listed = projects_containers(
            "p",
            vec![
                container("p-web", &web),
                container(&names::instance_container("p", "web", "acme"), &instance),
                // `docker compose` on a rendered file: devbox's labels, compose's name.
                container("p-web-1", &web),
                container("p_web_1", &web),
            ],
        );
        let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["p-web", "p-web-acme"]);
    }
}
