//! Docker through its REST API, with `bollard` (version negotiated: Docker 20.10 speaks
//! API 1.41). API 1.41 attaches a new container to one network only, so further networks
//! are connected before the container starts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::errors::Error as BError;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HealthConfig, HostConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateOptions,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::{
    BuildSpec, ContainerInfo, ContainerSpec, Engine, EngineError, EngineInfo, ErrorKind,
    ExecOutput, ExecSpec, Kind, LogOptions, LogStream, MountSpec, NetworkSpec, PublishedPort,
    ResourceInfo, Result, VolumeSpec,
};
use crate::config::model::{Restart, Userns};
use crate::plan::names;

pub struct Docker {
    socket: PathBuf,
    client: OnceCell<bollard::Docker>,
}

impl Docker {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            client: OnceCell::new(),
        }
    }

    fn err(&self, e: BError) -> EngineError {
        let (kind, message) = match &e {
            BError::DockerResponseServerError {
                status_code,
                message,
            } => (
                match status_code {
                    404 => ErrorKind::NotFound,
                    409 => ErrorKind::Conflict,
                    _ => ErrorKind::Other,
                },
                message.clone(),
            ),
            BError::SocketNotFoundError(_)
            | BError::IOError { .. }
            | BError::HyperResponseError { .. }
            | BError::HyperLegacyError { .. } => (
                ErrorKind::Unreachable,
                format!("cannot connect to the socket: {}", chain(&e)),
            ),
            other => (ErrorKind::Other, other.to_string()),
        };
        EngineError {
            engine: Kind::Docker,
            socket: self.socket.clone(),
            kind,
            message,
        }
    }

    async fn client(&self) -> Result<&bollard::Docker> {
        self.client
            .get_or_try_init(|| async {
                let d = bollard::Docker::connect_with_unix(
                    &self.socket.to_string_lossy(),
                    120,
                    bollard::API_DEFAULT_VERSION,
                )
                .map_err(|e| self.err(e))?;
                d.negotiate_version().await.map_err(|e| self.err(e))
            })
            .await
    }
}

/// bollard takes HashMaps; devbox keeps BTreeMaps for stable output.
fn hash_map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// An error and its causes on one line (bollard's own text can be just "client error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![names::project_filter(project)])])
}

fn network_info(n: bollard::models::Network) -> ResourceInfo {
    ResourceInfo {
        id: n.id.unwrap_or_default(),
        name: n.name.unwrap_or_default(),
        labels: n.labels.unwrap_or_default().into_iter().collect(),
        created: n
            .created
            .map(|d| nine_digit_fraction(&d.to_string()))
            .unwrap_or_default(),
    }
}

/// Docker writes RFC 3339 with as many fraction digits as needed (`…08.5659Z`); with nine
/// each, timestamps of one daemon sort as text.
fn nine_digit_fraction(ts: &str) -> String {
    let Some(t) = ts.find('T') else {
        return ts.to_owned();
    };
    let rest = &ts[t..];
    let end = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(end);
    let (whole, frac) = time.split_once('.').unwrap_or((time, ""));
    format!("{}{whole}.{frac:0<9}{zone}", &ts[..t])
}

/// The Docker create body for a container (without networks beyond the first).
pub fn create_body(s: &ContainerSpec) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = HashMap::new();
    for p in &s.ports {
        let key = format!("{}/{}", p.container, p.protocol.as_str());
        exposed.insert(key.clone(), HashMap::new());
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.to_string()),
                host_port: Some(p.host.to_string()),
            });
    }
    let mut binds = Vec::new();
    for m in &s.mounts {
        match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => binds.push(format!(
                "{}:{target}{}",
                source.display(),
                if *read_only { ":ro" } else { "" }
            )),
            MountSpec::Volume {
                name,
                target,
                read_only,
            } => binds.push(format!(
                "{name}:{target}{}",
                if *read_only { ":ro" } else { "" }
            )),
        }
    }
    let tmpfs: HashMap<String, String> = s
        .tmpfs
        .iter()
        .map(|t| {
            let mut o = vec!["rw".to_owned(), "nosuid".into(), "nodev".into()];
            o.extend(t.option_texts().map(str::to_owned));
            (t.path.clone(), o.join(","))
        })
        .collect();
    let mut security_opt = s.security_opt.clone();
    if s.no_new_privileges
        && !security_opt
            .iter()
            .any(|o| o.starts_with("no-new-privileges"))
    {
        security_opt.push("no-new-privileges:true".into());
    }
    let restart = match s.restart {
        Restart::No => RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        },
        Restart::Always => RestartPolicy {
            name: Some(RestartPolicyNameEnum::ALWAYS),
            maximum_retry_count: None,
        },
        Restart::UnlessStopped => RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        },
        Restart::OnFailure(n) => RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: n.map(i64::from),
        },
    };
    let devices = s
        .devices
        .iter()
        .map(|d| {
            let mut parts = d.splitn(3, ':');
            let host = parts.next().unwrap_or_default().to_owned();
            let inside = parts.next().map_or_else(|| host.clone(), str::to_owned);
            let perms = parts.next().unwrap_or("rwm").to_owned();
            DeviceMapping {
                path_on_host: Some(host),
                path_in_container: Some(inside),
                cgroup_permissions: Some(perms),
            }
        })
        .collect::<Vec<_>>();
    let network_mode = match &s.network_mode {
        Some(m) => Some(m.clone()),
        None => s.networks.first().cloned(),
    };
    let endpoints = s
        .networks
        .first()
        .filter(|_| s.network_mode.is_none())
        .map(|n| {
            HashMap::from([(
                n.clone(),
                EndpointSettings {
                    aliases: Some(vec![s.service.clone()]),
                    ..Default::default()
                },
            )])
        });
    let host_config = HostConfig {
        binds: Some(binds),
        port_bindings: Some(port_bindings),
        tmpfs: Some(tmpfs),
        readonly_rootfs: Some(s.read_only),
        cap_drop: Some(s.cap_drop.clone()),
        cap_add: Some(s.cap_add.clone()),
        security_opt: Some(security_opt),
        memory: s.memory.map(|m| m as i64),
        nano_cpus: s.cpus.map(|c| (c * 1e9).round() as i64),
        pids_limit: s.pids_limit.map(i64::from),
        ulimits: Some(
            s.ulimits
                .iter()
                .map(|(k, v)| ResourcesUlimits {
                    name: Some(k.clone()),
                    soft: Some(v.soft),
                    hard: Some(v.hard),
                })
                .collect(),
        ),
        restart_policy: Some(restart),
        privileged: Some(s.privileged),
        network_mode,
        pid_mode: s.pid.clone(),
        ipc_mode: s.ipc.clone(),
        devices: Some(devices),
        sysctls: (!s.sysctls.is_empty()).then(|| hash_map(&s.sysctls)),
        extra_hosts: Some(s.extra_hosts.clone()),
        // Docker's docker-init (tini) as PID 1.
        init: s.init.then_some(true),
        userns_mode: match s.userns {
            Some(Userns::Host) => Some("host".into()),
            _ => None,
        },
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(s.image.clone()),
        cmd: s.command.clone(),
        entrypoint: s.entrypoint.clone(),
        env: Some(s.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user: Some(s.user.clone()),
        working_dir: s.workdir.clone(),
        labels: Some(hash_map(&s.labels)),
        exposed_ports: Some(exposed),
        healthcheck: s.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(h.interval_ms as i64 * 1_000_000),
            timeout: Some(h.timeout_ms as i64 * 1_000_000),
            retries: Some(i64::from(h.retries)),
            start_period: Some(h.start_period_ms as i64 * 1_000_000),
            start_interval: None,
        }),
        stop_signal: s.stop_signal.map(crate::config::model::signal_name),
        stop_timeout: Some(i64::from(s.stop_timeout_s)),
        host_config: Some(host_config),
        networking_config: endpoints.map(|e| NetworkingConfig {
            endpoints_config: Some(e),
        }),
        ..Default::default()
    }
}

fn container_info(i: bollard::models::ContainerInspectResponse) -> ContainerInfo {
    let state = i.state.unwrap_or_default();
    let config = i.config.unwrap_or_default();
    let mut ports = Vec::new();
    if let Some(p) = i.network_settings.and_then(|n| n.ports) {
        for (key, binds) in p {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            for b in binds.into_iter().flatten() {
                ports.push(PublishedPort {
                    host_ip: b.host_ip.unwrap_or_default(),
                    host_port: b.host_port.and_then(|p| p.parse().ok()).unwrap_or_default(),
                    container_port: port.parse().unwrap_or_default(),
                    protocol: proto.to_owned(),
                });
            }
        }
    }
    ports.sort();
    ContainerInfo {
        id: i.id.unwrap_or_default(),
        name: i
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        exit_code: state.exit_code,
        ports,
        pid: state
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0),
        monitor_pid: None,
        restarts: None,
    }
}

impl Engine for Docker {
    fn kind(&self) -> Kind {
        Kind::Docker
    }

    async fn info(&self) -> Result<EngineInfo> {
        let c = self.client().await?;
        let v = c.version().await.map_err(|e| self.err(e))?;
        let info = c.info().await.map_err(|e| self.err(e))?;
        let rootless = info
            .security_options
            .unwrap_or_default()
            .iter()
            .any(|o| o.contains("rootless"));
        Ok(EngineInfo {
            kind: Kind::Docker,
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            rootless,
            cgroup_version: info
                .cgroup_version
                .map(|c| c.to_string())
                .unwrap_or_default(),
        })
    }

    async fn image_exists(&self, reference: &str) -> Result<bool> {
        match self.client().await?.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(BError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn list_images(&self, project: &str) -> Result<Vec<String>> {
        let opts = bollard::query_parameters::ListImagesOptions {
            filters: Some(project_filter(project)),
            ..Default::default()
        };
        let list = self
            .client()
            .await?
            .list_images(Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        // An image without a tag (`<none>`, replaced by a rebuild) by its id.
        Ok(list
            .into_iter()
            .flat_map(|i| {
                let tags: Vec<String> = i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect();
                if tags.is_empty() {
                    vec![i.id]
                } else {
                    tags
                }
            })
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let opts = bollard::query_parameters::RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        self.client()
            .await?
            .remove_image(reference, Some(opts), None)
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
        let c = self.client().await?;
        let opts = BuildImageOptions {
            dockerfile: spec.containerfile.clone(),
            t: Some(spec.tag.clone()),
            rm: true,
            forcerm: true,
            buildargs: Some(hash_map(&spec.args)),
            labels: Some(hash_map(&spec.labels)),
            target: spec.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut stream = c.build_image(opts, None, Some(bollard::body_full(context_tar.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                let mut err = self.err(e);
                err.message = format!("building {}: {}", spec.tag, err.message);
                err
            })?;
            if let Some(s) = info.stream {
                for l in s.lines() {
                    progress(l);
                }
            }
            if let Some(e) = info.error {
                return Err(EngineError {
                    engine: Kind::Docker,
                    socket: self.socket.clone(),
                    kind: ErrorKind::Other,
                    message: format!("building {}: {e}", spec.tag),
                });
            }
        }
        Ok(())
    }

    async fn list_networks(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let opts = ListNetworksOptions {
            filters: Some(project_filter(project)),
        };
        let nets = self
            .client()
            .await?
            .list_networks(Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        Ok(nets.into_iter().map(network_info).collect())
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<ResourceInfo>> {
        // The engine's name filter matches parts of names too.
        let opts = ListNetworksOptions {
            filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
        };
        let nets = self
            .client()
            .await?
            .list_networks(Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        Ok(nets
            .into_iter()
            .map(network_info)
            .filter(|n| n.name == name)
            .collect())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<()> {
        let req = NetworkCreateRequest {
            name: spec.name.clone(),
            internal: Some(spec.internal),
            labels: Some(hash_map(&spec.labels)),
            ..Default::default()
        };
        self.client()
            .await?
            .create_network(req)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn remove_network(&self, id: &str) -> Result<()> {
        self.client()
            .await?
            .remove_network(id)
            .await
            .map_err(|e| self.err(e))
    }

    async fn list_volumes(&self, project: &str) -> Result<Vec<ResourceInfo>> {
        let opts = ListVolumesOptions {
            filters: Some(project_filter(project)),
        };
        let vols = self
            .client()
            .await?
            .list_volumes(Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        Ok(vols
            .volumes
            .unwrap_or_default()
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
        let req = VolumeCreateOptions {
            name: Some(spec.name.clone()),
            labels: Some(hash_map(&spec.labels)),
            ..Default::default()
        };
        self.client()
            .await?
            .create_volume(req)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.client()
            .await?
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(|e| self.err(e))
    }

    async fn list_containers(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(project_filter(project)),
            ..Default::default()
        };
        let list = self
            .client()
            .await?
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        super::inspect_all(self, &ids).await
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo> {
        self.client()
            .await?
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map(container_info)
            .map_err(|e| self.err(e))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let c = self.client().await?;
        let opts = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let id = c
            .create_container(Some(opts), create_body(spec))
            .await
            .map_err(|e| self.err(e))?
            .id;
        if spec.network_mode.is_none() {
            for n in spec.networks.iter().skip(1) {
                let req = NetworkConnectRequest {
                    container: Some(id.clone()),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![spec.service.clone()]),
                        ..Default::default()
                    }),
                };
                if let Err(e) = c.connect_network(n, req).await {
                    let _ = self.remove_container(&id).await;
                    return Err(self.err(e));
                }
            }
        }
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.client()
            .await?
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| self.err(e))
    }

    async fn stop_container(&self, id: &str, timeout_s: u32) -> Result<()> {
        let opts = StopContainerOptions {
            t: Some(timeout_s as i32),
            signal: None,
        };
        match self.client().await?.stop_container(id, Some(opts)).await {
            Err(BError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            r => r.map_err(|e| self.err(e)),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        self.client()
            .await?
            .remove_container(id, Some(opts))
            .await
            .map_err(|e| self.err(e))
    }

    async fn connect_network(&self, id: &str, network: &str, alias: &str) -> Result<()> {
        let req = NetworkConnectRequest {
            container: Some(id.to_owned()),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(vec![alias.to_owned()]),
                ..Default::default()
            }),
        };
        self.client()
            .await?
            .connect_network(network, req)
            .await
            .map_err(|e| self.err(e))
    }

    async fn disconnect_network(&self, id: &str, network: &str) -> Result<()> {
        let req = bollard::models::NetworkDisconnectRequest {
            container: Some(id.to_owned()),
            force: Some(true),
        };
        self.client()
            .await?
            .disconnect_network(network, req)
            .await
            .map_err(|e| self.err(e))
    }

    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream<'_>> {
        let c = self.client().await?;
        let o = LogsOptions {
            follow: opts.follow,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: opts.since.unwrap_or(0) as i32,
            tail: opts
                .tail
                .map_or_else(|| "all".to_owned(), |t| t.to_string()),
            ..Default::default()
        };
        let socket = self.socket.clone();
        let chunks = c
            .logs(id, Some(o))
            .map_err(move |e| EngineError {
                engine: Kind::Docker,
                socket: socket.clone(),
                kind: ErrorKind::Other,
                message: e.to_string(),
            })
            .map_ok(|o| match o {
                bollard::container::LogOutput::StdErr { message } => (true, message.to_vec()),
                other => (false, other.into_bytes().to_vec()),
            });
        Ok(super::lines(chunks))
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecOutput> {
        let c = self.client().await?;
        let cfg = bollard::models::ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(spec.argv.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        let exec = c.create_exec(id, cfg).await.map_err(|e| self.err(e))?.id;
        let mut out = ExecOutput::default();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            c.start_exec(&exec, None).await.map_err(|e| self.err(e))?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| self.err(e))? {
                    bollard::container::LogOutput::StdErr { message } => {
                        out.stderr.extend_from_slice(&message)
                    }
                    other => out.stdout.extend_from_slice(&other.into_bytes()),
                }
            }
        }
        let info = c.inspect_exec(&exec).await.map_err(|e| self.err(e))?;
        out.exit_code = info.exit_code.unwrap_or(-1);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn network_timestamps_sort_as_text() {
        use super::nine_digit_fraction as n;
        assert_eq!(
            n("2026-12-01T17:02:08.5659Z"),
            "2026-12-01T17:02:08.565900000Z"
        );
        assert_eq!(n("2026-12-01T17:02:08Z"), "2026-12-01T17:02:08.000000000Z");
        assert!(n("2026-12-01T17:02:08.5659Z") < n("2026-12-01T17:02:08.56598Z"));
        assert_eq!(
            n("2026-12-01T17:02:08.5-01:00"),
            "2026-12-01T17:02:08.500000000-01:00"
        );
    }
}
