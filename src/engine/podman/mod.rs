//! Podman through its libpod REST API (v4.3.1), with `podman-api`.
//!
//! Some calls go through the crate's own transport (`containers-api`) with a request
//! devbox writes itself, where podman-api gets libpod wrong: container create (its builder
//! spells `no_new_privileges` as `no_new_privilages`, which Podman silently ignores),
//! stop (it sends `Timeout`, libpod reads `timeout`), build (it tars the whole context
//! itself and cannot honour `.containerignore`), inspect and logs (its models do not
//! match 4.3's JSON closely enough to read health and ports).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use containers_api::conn::hyper::{self, Body, Response, StatusCode};
use containers_api::conn::{Headers, Payload, RequestClient, Transport};
use futures_util::{Future, StreamExt, TryStreamExt};
use podman_api::opts::{
    ContainerDeleteOpts, ContainerListFilter, ContainerListOpts, ExecCreateOpts, ExecStartOpts,
    NetworkCreateOpts, NetworkListFilter, NetworkListOpts, UserOpt, VolumeCreateOpts,
    VolumeListFilter, VolumeListOpts,
};
use serde_json::{json, Value};

use super::{
    BuildSpec, ContainerInfo, ContainerSpec, Engine, EngineError, EngineInfo, ErrorKind,
    ExecOutput, ExecSpec, Kind, LogOptions, LogStream, NetworkSpec, PublishedPort, ResourceInfo,
    Result, VolumeSpec,
};
use crate::plan::names;

mod spec;

pub use spec::spec_json;

const API: &str = "/v4.3.1";

pub struct Podman {
    api: podman_api::Podman,
    raw: RequestClient<podman_api::Error>,
    socket: PathBuf,
}

fn validate(
    response: Response<Body>,
) -> Pin<Box<dyn Future<Output = Result<Response<Body>, podman_api::Error>> + Send + Sync>> {
    Box::pin(async move {
        let code = response.status();
        if code.is_success() || code == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let bytes = hyper::body::to_bytes(response.into_body())
            .await
            .map_err(containers_api::conn::Error::from)?;
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(podman_api::Error::Fault { code, message })
    })
}

impl Podman {
    pub fn new(socket: &Path) -> Self {
        let transport = Transport::Unix {
            client: hyper::Client::builder()
                .pool_max_idle_per_host(0)
                .build(containers_api::conn::get_unix_connector()),
            path: socket.to_path_buf(),
        };
        Self {
            api: podman_api::Podman::unix(socket),
            raw: RequestClient::new(transport, Box::new(validate)),
            socket: socket.to_path_buf(),
        }
    }

    fn err(&self, e: podman_api::Error) -> EngineError {
        /// libpod wraps some errors with their own cause again (`bind: address already
        /// in use: address already in use`); say it once.
        fn once(message: &str) -> String {
            let m = message.trim_end();
            for (i, _) in m.match_indices(": ") {
                let (head, tail) = (&m[..i], &m[i + 2..]);
                if head == tail || head.ends_with(&format!(": {tail}")) {
                    return head.to_owned();
                }
            }
            m.to_owned()
        }
        let (kind, message) = match &e {
            podman_api::Error::Fault { code, message } => (
                match *code {
                    StatusCode::NOT_FOUND => ErrorKind::NotFound,
                    StatusCode::CONFLICT => ErrorKind::Conflict,
                    // Volume create answers 500 for a taken name.
                    _ if message.contains("already exists") => ErrorKind::Conflict,
                    _ => ErrorKind::Other,
                },
                once(message),
            ),
            podman_api::Error::Error(containers_api::conn::Error::Hyper(h)) if h.is_connect() => (
                ErrorKind::Unreachable,
                format!("cannot connect to the socket: {h}"),
            ),
            other => {
                let text = other.to_string();
                let kind = if text.contains("No such file")
                    || text.contains("Connection refused")
                    || text.contains("error trying to connect")
                {
                    ErrorKind::Unreachable
                } else {
                    ErrorKind::Other
                };
                (kind, text)
            }
        };
        EngineError {
            engine: Kind::Podman,
            socket: self.socket.clone(),
            kind,
            message,
        }
    }
}

fn network_info(n: podman_api::models::Network) -> ResourceInfo {
    ResourceInfo {
        id: n.id.unwrap_or_default(),
        name: n.name.unwrap_or_default(),
        labels: map(&n.labels),
        created: n
            .created
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string())
            .unwrap_or_default(),
    }
}

fn label_filter(project: &str) -> (String, String) {
    (names::LABEL_PROJECT.to_owned(), project.to_owned())
}

fn map<K: Clone + Ord, V: Clone>(m: &Option<std::collections::HashMap<K, V>>) -> BTreeMap<K, V> {
    m.iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A pid field of an inspect answer; 0 (not running) is none.
fn pid_at(i: &Value, pointer: &str) -> Option<u32> {
    i.pointer(pointer)
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0)
}

fn container_info(i: &Value) -> ContainerInfo {
    let str_at = |p: &str| {
        i.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut ports = Vec::new();
    if let Some(p) = i
        .pointer("/NetworkSettings/Ports")
        .and_then(Value::as_object)
    {
        for (key, binds) in p {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            for b in binds.as_array().into_iter().flatten() {
                ports.push(PublishedPort {
                    host_ip: b["HostIp"].as_str().unwrap_or_default().to_owned(),
                    host_port: b["HostPort"]
                        .as_str()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or_default(),
                    container_port: port.parse().unwrap_or_default(),
                    protocol: proto.to_owned(),
                });
            }
        }
    }
    ports.sort();
    let labels = i
        .pointer("/Config/Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    ContainerInfo {
        id: str_at("/Id"),
        name: str_at("/Name"),
        image: str_at("/ImageName"),
        labels,
        state: str_at("/State/Status"),
        health: Some(str_at("/State/Health/Status")).filter(|s| !s.is_empty()),
        exit_code: i.pointer("/State/ExitCode").and_then(Value::as_i64),
        ports,
        pid: pid_at(i, "/State/Pid"),
        monitor_pid: pid_at(i, "/State/ConmonPid"),
        restarts: None,
    }
}

impl Engine for Podman {
    fn kind(&self) -> Kind {
        Kind::Podman
    }

    /// From `_ping`'s headers, the socket's owner and the host's cgroup mount: libpod's
    /// `info` and `version` take 0.3–0.5 s each (they ask conmon and the OCI runtime for
    /// their versions), longer than a whole no-op `up` should.
    async fn info(&self) -> Result<EngineInfo> {
        let r = self
            .raw
            .get(format!("{API}/libpod/_ping"))
            .await
            .map_err(|e| self.err(e))?;
        let header = |k: &str| {
            r.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let version = header("Libpod-Api-Version");
        Ok(EngineInfo {
            kind: Kind::Podman,
            version: version.clone(),
            api_version: version,
            rootless: super::socket_owned_by_user(&self.socket),
            cgroup_version: super::host_cgroup_version().to_owned(),
        })
    }

    async fn image_exists(&self, reference: &str) -> Result<bool> {
        self.api
            .images()
            .get(reference)
            .exists()
            .await
            .map_err(|e| self.err(e))
    }

    async fn list_images(&self, project: &str) -> Result<Vec<String>> {
        let filters = json!({ "label": [names::project_filter(project)] }).to_string();
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("filters", &filters);
        let v: Value = self
            .raw
            .get_json(format!("{API}/libpod/images/json?{}", q.finish()))
            .await
            .map_err(|e| self.err(e))?;
        // An image without a name (`<none>`, replaced by a rebuild) by its id.
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| {
                let names: Vec<String> = i["Names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect();
                if names.is_empty() {
                    i["Id"].as_str().map(str::to_owned).into_iter().collect()
                } else {
                    names
                }
            })
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("images", reference)
            .append_pair("force", "true");
        self.raw
            .delete(format!("{API}/libpod/images/remove?{}", q.finish()))
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn build(
        &self,
        spec: &BuildSpec,
        context_tar: Vec<u8>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<()> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("t", &spec.tag)
            .append_pair("dockerfile", &spec.containerfile)
            .append_pair("layers", "true")
            .append_pair("rm", "true")
            // Without it a build whose connection drops (devbox interrupted) leaves its
            // buildah working container behind.
            .append_pair("forcerm", "true")
            .append_pair("buildargs", &json!(spec.args).to_string())
            .append_pair("labels", &json!(spec.labels).to_string());
        if let Some(t) = &spec.target {
            q.append_pair("target", t);
        }
        let ep = format!("{API}/libpod/build?{}", q.finish());
        let mut stream = Box::pin(self.raw.post_stream(
            ep,
            Payload::Tar(context_tar),
            Headers::none(),
        ));
        let mut buf = Vec::new();
        let mut failure: Option<String> = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(e))?;
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if let Some(s) = v.get("stream").and_then(Value::as_str) {
                    for l in s.lines() {
                        progress(l);
                    }
                }
                if let Some(e) = v.get("error").and_then(Value::as_str) {
                    failure = Some(e.to_owned());
                }
            }
        }
        match failure {
            Some(message) => Err(EngineError {
                engine: Kind::Podman,
                socket: self.socket.clone(),
                kind: ErrorKind::Other,
                message: format!("building {}: {message}", spec.tag),
            }),
            None => Ok(()),
        }
    }

    async fn list_networks(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let (k, v) = label_filter(project);
        let opts = NetworkListOpts::builder()
            .filter([NetworkListFilter::LabelKeyVal(k, v)])
            .build();
        let nets = self
            .api
            .networks()
            .list(&opts)
            .await
            .map_err(|e| self.err(e))?;
        Ok(nets.into_iter().map(network_info).collect())
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<ResourceInfo>> {
        // The engine's name filter matches parts of names too.
        let opts = NetworkListOpts::builder()
            .filter([NetworkListFilter::Name(name.to_owned())])
            .build();
        let nets = self
            .api
            .networks()
            .list(&opts)
            .await
            .map_err(|e| self.err(e))?;
        Ok(nets
            .into_iter()
            .map(network_info)
            .filter(|n| n.name == name)
            .collect())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<()> {
        let opts = NetworkCreateOpts::builder()
            .name(&spec.name)
            .internal(spec.internal)
            .dns_enabled(true)
            .labels(spec.labels.clone())
            .build();
        self.api
            .networks()
            .create(&opts)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn remove_network(&self, id: &str) -> Result<()> {
        self.api
            .networks()
            .get(id)
            .remove()
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn list_volumes(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let (k, v) = label_filter(project);
        let opts = VolumeListOpts::builder()
            .filter([VolumeListFilter::LabelKeyVal(k, v)])
            .build();
        let vols = self
            .api
            .volumes()
            .list(&opts)
            .await
            .map_err(|e| self.err(e))?;
        Ok(vols
            .into_iter()
            .map(|v| ResourceInfo {
                id: v.name.clone(),
                name: v.name,
                labels: v.labels.into_iter().collect(),
                created: String::new(),
            })
            .collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()> {
        let opts = VolumeCreateOpts::builder()
            .name(&spec.name)
            .labels(spec.labels.clone())
            .build();
        self.api
            .volumes()
            .create(&opts)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.api
            .volumes()
            .get(name)
            .remove()
            .await
            .map_err(|e| self.err(e))
    }

    async fn list_containers(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        let (k, v) = label_filter(project);
        let opts = ContainerListOpts::builder()
            .all(true)
            .filter([ContainerListFilter::LabelKeyVal(k, v)])
            .build();
        let list = self
            .api
            .containers()
            .list(&opts)
            .await
            .map_err(|e| self.err(e))?;
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        super::inspect_all(self, &ids).await
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        let v: Value = self
            .raw
            .get_json(format!("{API}/libpod/containers/{id}/json"))
            .await
            .map_err(|e| self.err(e))?;
        Ok(container_info(&v))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let body = spec_json(spec).to_string();
        let v: Value = self
            .raw
            .post_json(
                format!("{API}/libpod/containers/create"),
                Payload::Json(body),
                Headers::none(),
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(v.get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.api
            .containers()
            .get(id)
            .start(None)
            .await
            .map_err(|e| self.err(e))
    }

    async fn stop_container(&self, id: &str, timeout_s: u32) -> Result<()> {
        // podman-api sends the stop timeout as `Timeout`, which libpod ignores (it reads
        // `timeout`), so every stop would wait the default 10 s.
        let ep = format!("{API}/libpod/containers/{id}/stop?timeout={timeout_s}");
        match self.raw.post(ep, Payload::empty(), Headers::none()).await {
            // 304: already stopped.
            Err(podman_api::Error::Fault { code, .. }) if code == StatusCode::NOT_MODIFIED => {
                Ok(())
            }
            r => r.map(|_| ()).map_err(|e| self.err(e)),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let opts = ContainerDeleteOpts::builder()
            .force(true)
            .volumes(true)
            .build();
        self.api
            .containers()
            .get(id)
            .delete(&opts)
            .await
            .map_err(|e| self.err(e))
    }

    async fn connect_network(&self, id: &str, network: &str, alias: &str) -> Result<()> {
        let body = json!({ "container": id, "aliases": [alias] }).to_string();
        self.raw
            .post(
                format!("{API}/libpod/networks/{network}/connect"),
                Payload::Json(body),
                Headers::none(),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn disconnect_network(&self, id: &str, network: &str) -> Result<()> {
        let body = json!({ "Container": id }).to_string();
        self.raw
            .post(
                format!("{API}/libpod/networks/{network}/disconnect"),
                Payload::Json(body),
                Headers::none(),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream<'_>> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("stdout", "true")
            .append_pair("stderr", "true")
            .append_pair("timestamps", "true")
            .append_pair("follow", if opts.follow { "true" } else { "false" });
        if let Some(s) = opts.since {
            q.append_pair("since", &s.to_string());
        }
        if let Some(t) = opts.tail {
            q.append_pair("tail", &t.to_string());
        }
        let ep = format!("{API}/libpod/containers/{id}/logs?{}", q.finish());
        let bytes = Box::pin(
            self.raw
                .get_stream(ep)
                .map_err(|e| containers_api::conn::Error::Any(Box::new(e))),
        );
        let socket = self.socket.clone();
        let chunks = containers_api::conn::tty::decode(bytes).map_err(move |e| EngineError {
            engine: Kind::Podman,
            socket: socket.clone(),
            kind: ErrorKind::Other,
            message: e.to_string(),
        });
        Ok(super::lines(chunks.map_ok(|c| match c {
            containers_api::conn::TtyChunk::StdOut(b) => (false, b),
            containers_api::conn::TtyChunk::StdErr(b) => (true, b),
            containers_api::conn::TtyChunk::StdIn(_) => (false, Vec::new()),
        })))
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecOutput> {
        let mut b = ExecCreateOpts::builder()
            .command(spec.argv.clone())
            .attach_stdout(true)
            .attach_stderr(true)
            .env(spec.env.clone());
        if let Some(u) = &spec.user {
            b = b.user(UserOpt::User(u.clone()));
        }
        if let Some(w) = &spec.workdir {
            b = b.working_dir(w);
        }
        let container = self.api.containers().get(id);
        let exec = container
            .create_exec(&b.build())
            .await
            .map_err(|e| self.err(e))?;
        let start = ExecStartOpts::builder().build();
        let mut out = ExecOutput::default();
        if let Some(mut stream) = exec.start(&start).await.map_err(|e| self.err(e))? {
            while let Some(chunk) = stream.next().await {
                match chunk.map_err(|e| self.err(podman_api::Error::Error(e)))? {
                    containers_api::conn::TtyChunk::StdOut(b) => out.stdout.extend(b),
                    containers_api::conn::TtyChunk::StdErr(b) => out.stderr.extend(b),
                    containers_api::conn::TtyChunk::StdIn(_) => {}
                }
            }
        }
        let v = exec.inspect().await.map_err(|e| self.err(e))?;
        out.exit_code = v.get("ExitCode").and_then(Value::as_i64).unwrap_or(-1);
        Ok(out)
    }

    /// Podman leaves running healthchecks to systemd timers; where there is no systemd
    /// (containers, CI, WSL) a container stays `starting` forever. This runs the check
    /// once, as the timer would, and Podman records the result.
    async fn run_healthcheck(&self, id: &str) -> Result<()> {
        let r: Result<Value, _> = self
            .raw
            .get_json(format!("{API}/libpod/containers/{id}/healthcheck"))
            .await;
        r.map(|_| ()).map_err(|e| self.err(e))
    }
}
