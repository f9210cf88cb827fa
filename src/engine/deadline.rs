//! Deadlines on everything devbox asks an engine, at one seam: [`Deadlined`] wraps the
//! engine every command talks to, so an engine (or a proxy in front of it) that stops
//! answering ends the command with an error naming the engine, the socket and what devbox
//! was doing, instead of hanging it.
//!
//! Three kinds of call, three rules (the limit is [`Limits::call`], `--engine-timeout`):
//! - a question (list, inspect, create, start, remove, …) must be answered in full —
//!   connecting, the first byte and the whole body — within the limit (`stop` gets the
//!   stop timeout on top);
//! - a one-shot log read may go quiet between two chunks for at most the limit: the engine
//!   has the lines already;
//! - work whose length is the container's business — a build, an exec, a healthcheck run,
//!   `logs --follow` — has no deadline as a whole. When it has been quiet for the limit,
//!   devbox asks the engine whether it still answers (a ping, under the same limit) and
//!   ends the call only when it does not. A quiet service or a long `RUN` step is fine; a
//!   frozen engine is not.
//!
//! This module never retries and never changes what is asked.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{
    AnyEngine, BuildSpec, ContainerInfo, ContainerSpec, Engine, EngineError, EngineInfo, ErrorKind,
    ExecOutput, ExecSpec, Kind, LogOptions, LogStream, NetworkSpec, ResourceInfo, Result,
    VolumeSpec,
};

/// How long `auto` waits for a candidate socket to answer before trying the next: long
/// enough for a socket-activated Podman to start, short beside a hang.
const PROBE: Duration = Duration::from_secs(5);

/// How long devbox waits for an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One call, in full; also how long a stream may be quiet before devbox pings.
    pub call: Duration,
}

impl Limits {
    pub const DEFAULT: Duration = Duration::from_secs(30);

    /// How long `auto` gives each candidate socket: short, and never above `call`.
    pub fn probe(&self) -> Duration {
        self.call.min(PROBE)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call: Self::DEFAULT,
        }
    }
}

/// `1s`, `1m 30s`: a limit as messages print it.
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// An engine whose every call is bounded by [`Limits`].
pub struct Deadlined {
    inner: AnyEngine,
    socket: PathBuf,
    limits: Limits,
    /// Container names by id, as calls reveal them, so messages can say which container.
    names: Mutex<HashMap<String, String>>,
}

impl Deadlined {
    pub fn new(inner: AnyEngine, socket: &Path, limits: Limits) -> Self {
        Self {
            inner,
            socket: socket.to_path_buf(),
            limits,
            names: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// See [`AnyEngine::tie_to_this_process`].
    pub fn tie_to_this_process(&mut self) {
        self.inner.tie_to_this_process();
    }

    fn remember(&self, c: &ContainerInfo) {
        self.names
            .lock()
            .unwrap()
            .insert(c.id.clone(), c.name.clone());
    }

    /// `container NAME` when devbox has seen its name, else `container ID12`.
    fn container(&self, id: &str) -> String {
        match self.names.lock().unwrap().get(id) {
            Some(name) if !name.is_empty() => format!("container {name}"),
            _ => format!("container {}", id.chars().take(12).collect::<String>()),
        }
    }

    fn error(&self, message: String) -> EngineError {
        EngineError {
            engine: self.inner.kind(),
            socket: self.socket.clone(),
            kind: ErrorKind::TimedOut,
            message,
        }
    }

    fn no_answer(&self, limit: Duration, doing: &str) -> EngineError {
        self.error(format!(
            "did not answer within {} while {doing}",
            show(limit)
        ))
    }

    /// `fut`, unless the engine has not answered in full within `limit`.
    async fn call<T>(
        &self,
        limit: Duration,
        doing: impl FnOnce() -> String,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.no_answer(limit, &doing())),
        }
    }

    /// Whether the engine answers a ping within the limit: `None` when it does.
    async fn ping(&self, doing: &str) -> Option<EngineError> {
        let limit = self.limits.call;
        match tokio::time::timeout(limit, self.inner.info()).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(self.error(format!(
                "stopped answering while {doing}: {}",
                e.message.trim_end()
            ))),
            Err(_) => Some(self.error(format!(
                "did not answer a ping within {} while {doing}",
                show(limit)
            ))),
        }
    }

    /// `fut`, for as long as the engine is alive: whenever `last` (the last sign of
    /// progress) is a limit old, the engine is pinged; a ping it does not answer ends it.
    async fn watched<T>(
        &self,
        doing: &str,
        last: &Mutex<Instant>,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let limit = self.limits.call;
        tokio::pin!(fut);
        loop {
            let quiet_since = *last.lock().unwrap();
            let check = async {
                tokio::time::sleep_until((quiet_since + limit).into()).await;
                if last.lock().unwrap().elapsed() < limit {
                    return None;
                }
                let dead = self.ping(doing).await;
                *last.lock().unwrap() = Instant::now();
                dead
            };
            tokio::select! {
                out = &mut fut => return out,
                dead = check => if let Some(e) = dead {
                    return Err(e);
                },
            }
        }
    }

    /// A one-shot read: each chunk within the limit of the previous one.
    fn idle<'a>(&'a self, s: LogStream<'a>, doing: String) -> LogStream<'a> {
        let limit = self.limits.call;
        futures_util::stream::unfold(Some(s), move |s| {
            let doing = doing.clone();
            async move {
                let mut s = s?;
                match tokio::time::timeout(limit, s.next()).await {
                    Ok(Some(item)) => Some((item, Some(s))),
                    Ok(None) => None,
                    Err(_) => Some((Err(self.no_answer(limit, &doing)), None)),
                }
            }
        })
        .boxed()
    }

    /// A followed stream: quiet is fine while the engine answers pings.
    fn followed<'a>(&'a self, s: LogStream<'a>, doing: String) -> LogStream<'a> {
        futures_util::stream::unfold(Some(s), move |s| {
            let doing = doing.clone();
            async move {
                let mut s = s?;
                let last = Mutex::new(Instant::now());
                let next = async { Ok(s.next().await) };
                match self.watched(&doing, &last, next).await {
                    Ok(Some(item)) => Some((item, Some(s))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
        .boxed()
    }
}

impl Engine for Deadlined {
    fn kind(&self) -> Kind {
        self.inner.kind()
    }
    fn binds_host_ports(&self) -> bool {
        self.inner.binds_host_ports()
    }
    fn settle_time(&self) -> std::time::Duration {
        self.inner.settle_time()
    }
    fn starts_at_once(&self) -> bool {
        self.inner.starts_at_once()
    }
    async fn info(&self) -> Result<EngineInfo> {
        let limit = self.limits.call;
        self.call(limit, || "asking for its version".into(), self.inner.info())
            .await
    }
    async fn image_exists(&self, reference: &str) -> Result<bool> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("looking up image {reference}"),
            self.inner.image_exists(reference),
        )
        .await
    }
    async fn list_images(&self, project: &str) -> Result<Vec<String>> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("listing the images of project {project}"),
            self.inner.list_images(project),
        )
        .await
    }
    async fn remove_image(&self, reference: &str) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("removing image {reference}"),
            self.inner.remove_image(reference),
        )
        .await
    }
    async fn build(
        &self,
        spec: &BuildSpec,
        context_tar: Vec<u8>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<()> {
        let last = Mutex::new(Instant::now());
        let mut on_line = |l: &str| {
            *last.lock().unwrap() = Instant::now();
            progress(l);
        };
        let doing = format!("building {}", spec.tag);
        self.watched(
            &doing,
            &last,
            self.inner.build(spec, context_tar, &mut on_line),
        )
        .await
    }
    async fn list_networks(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("listing the networks of project {project}"),
            self.inner.list_networks(project),
        )
        .await
    }
    async fn networks_named(&self, name: &str) -> Result<Vec<ResourceInfo>> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("looking up the networks named {name}"),
            self.inner.networks_named(name),
        )
        .await
    }
    async fn create_network(&self, spec: &NetworkSpec) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("creating network {}", spec.name),
            self.inner.create_network(spec),
        )
        .await
    }
    async fn remove_network(&self, id: &str) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("removing network {id}"),
            self.inner.remove_network(id),
        )
        .await
    }
    async fn list_volumes(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("listing the volumes of project {project}"),
            self.inner.list_volumes(project),
        )
        .await
    }
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("creating volume {}", spec.name),
            self.inner.create_volume(spec),
        )
        .await
    }
    async fn remove_volume(&self, name: &str) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("removing volume {name}"),
            self.inner.remove_volume(name),
        )
        .await
    }
    async fn list_containers(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        let limit = self.limits.call;
        let list = self
            .call(
                limit,
                || format!("listing the containers of project {project}"),
                self.inner.list_containers(project),
            )
            .await?;
        list.iter().for_each(|c| self.remember(c));
        Ok(list)
    }
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        let limit = self.limits.call;
        let c = self
            .call(
                limit,
                || format!("inspecting {}", self.container(id)),
                self.inner.inspect_container(id),
            )
            .await?;
        self.remember(&c);
        Ok(c)
    }
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let limit = self.limits.call;
        let id = self
            .call(
                limit,
                || format!("creating container {}", spec.name),
                self.inner.create_container(spec),
            )
            .await?;
        self.names
            .lock()
            .unwrap()
            .insert(id.clone(), spec.name.clone());
        Ok(id)
    }
    async fn start_container(&self, id: &str) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("starting {}", self.container(id)),
            self.inner.start_container(id),
        )
        .await
    }
    async fn stop_container(&self, id: &str, timeout_s: u32) -> Result<()> {
        // The engine waits up to the stop timeout before it kills.
        let limit = self.limits.call + Duration::from_secs(timeout_s.into());
        self.call(
            limit,
            || format!("stopping {}", self.container(id)),
            self.inner.stop_container(id, timeout_s),
        )
        .await
    }
    async fn remove_container(&self, id: &str) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("removing {}", self.container(id)),
            self.inner.remove_container(id),
        )
        .await
    }
    async fn connect_network(&self, id: &str, network: &str, alias: &str) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || format!("connecting {} to network {network}", self.container(id)),
            self.inner.connect_network(id, network, alias),
        )
        .await
    }
    async fn disconnect_network(&self, id: &str, network: &str) -> Result<()> {
        let limit = self.limits.call;
        self.call(
            limit,
            || {
                format!(
                    "disconnecting {} from network {network}",
                    self.container(id)
                )
            },
            self.inner.disconnect_network(id, network),
        )
        .await
    }
    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream<'_>> {
        let limit = self.limits.call;
        let doing = if opts.follow {
            format!("following the logs of {}", self.container(id))
        } else {
            format!("reading the logs of {}", self.container(id))
        };
        let s = self
            .call(limit, || doing.clone(), self.inner.logs(id, opts))
            .await?;
        Ok(if opts.follow {
            self.followed(s, doing)
        } else {
            self.idle(s, doing)
        })
    }
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecOutput> {
        let doing = format!(
            "running `{}` in {}",
            spec.argv.join(" "),
            self.container(id)
        );
        let last = Mutex::new(Instant::now());
        self.watched(&doing, &last, self.inner.exec(id, spec)).await
    }
    async fn run_healthcheck(&self, id: &str) -> Result<()> {
        let doing = format!("running the healthcheck of {}", self.container(id));
        let last = Mutex::new(Instant::now());
        self.watched(&doing, &last, self.inner.run_healthcheck(id))
            .await
    }
    async fn release(&self, project: &str) -> Result<()> {
        let doing = format!("letting go of what served project {project}");
        let last = Mutex::new(Instant::now());
        self.watched(&doing, &last, self.inner.release(project))
            .await
    }
}
