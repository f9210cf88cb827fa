//! The raw model: a faithful mirror of `sandbox.toml`.
//!
//! Every table rejects unknown keys. Leaf values that have a short and a long form
//! (ports, volumes, commands, …) are parsed here only as far as their shape; their
//! meaning (ranges, units, references) is checked once, in [`super::validate`], where
//! a failure can name the key it came from.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::forms::{
    DependsOn, EnvValue, ExpectExit, HealthTest, NetPolicy, OneOrMany, PortSpec, SignalValue,
    SizeValue, StringOrList, Ulimit, VolumeSpec,
};

/// A whole `sandbox.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[schemars(title = "devbox sandbox.toml")]
pub struct RawConfig {
    /// Project identity and the engine to use.
    #[serde(default)]
    pub project: RawProject,
    /// The host-visible data tree (`.data/` by default): survives `down`, wiped by `reset`.
    #[serde(default)]
    pub data: RawData,
    /// Images built from a Containerfile, referenced by services by key.
    #[serde(default)]
    pub images: BTreeMap<String, RawImage>,
    /// Engine-managed named volumes; kept by `down`, removed by `reset`.
    #[serde(default)]
    pub volumes: BTreeMap<String, RawVolume>,
    /// Networks; `internal = true` has no route out of the host.
    #[serde(default)]
    pub networks: BTreeMap<String, RawNetwork>,
    /// Long-running services: containers (with `image`), or host programs run natively
    /// (without).
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    /// Checks that `devbox verify` runs against the started environment.
    #[serde(default)]
    pub probes: Vec<RawProbe>,
    /// Processes run by the native runner under an allow/deny/warn policy.
    #[serde(default)]
    pub workers: BTreeMap<String, RawWorker>,
}

/// `[project]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    /// Project name; default: the name of the directory holding `sandbox.toml`.
    pub name: Option<String>,
    /// Which engine runs the project.
    pub engine: Option<EngineChoice>,
}

/// `auto | podman | docker | native`
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    #[default]
    Auto,
    Podman,
    Docker,
    Native,
}

impl EngineChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Podman => "podman",
            Self::Docker => "docker",
            Self::Native => "native",
        }
    }
}

/// `[data]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    /// Directory relative to `sandbox.toml`; default `.data`.
    pub root: Option<String>,
    /// Directories under the root, by relative path.
    #[serde(default)]
    pub dirs: BTreeMap<String, RawDataDir>,
    /// Files under the root, by relative path.
    #[serde(default)]
    pub files: BTreeMap<String, RawDataFile>,
}

/// One `[data.dirs]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDataDir {
    /// Octal mode as a string, e.g. `"0700"`; default `"0755"`.
    #[schemars(regex(pattern = r"^0?[0-7]{3,4}$"))]
    pub mode: Option<String>,
}

/// One `[data.files]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDataFile {
    /// Octal mode as a string; default `"0644"`, `"0600"` for secrets.
    #[schemars(regex(pattern = r"^0?[0-7]{3,4}$"))]
    pub mode: Option<String>,
    /// Generate random content once: `"hex:N"` or `"base64:N"` (N random bytes).
    #[schemars(regex(pattern = r"^(hex|base64):[0-9]+$"))]
    pub secret: Option<String>,
    /// Literal content written when the file does not exist yet.
    pub content: Option<String>,
}

/// One `[images.NAME]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    /// Path of the Containerfile, relative to `sandbox.toml`; default `<context>/Containerfile`.
    pub containerfile: Option<String>,
    /// Build context directory, relative to `sandbox.toml`; default `.`.
    pub context: Option<String>,
    /// Build arguments.
    #[serde(default)]
    pub args: BTreeMap<String, EnvValue>,
    /// Multi-stage build target.
    pub target: Option<String>,
}

/// One `[volumes.NAME]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawVolume {
    /// Extra labels on the volume.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One `[networks.NAME]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    /// No route out of the host.
    #[serde(default)]
    pub internal: bool,
    /// Extra labels on the network.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One `[services.NAME]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// A key of `[images]`, or an image reference such as `localhost/app:1`. Without it the
    /// service is a host program that devbox's runner sandboxes (a native service): it
    /// then needs `command` or `entrypoint`.
    pub image: Option<String>,
    pub command: Option<StringOrList>,
    pub entrypoint: Option<StringOrList>,
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Files of `KEY=VALUE` lines, relative to `sandbox.toml`.
    pub env_file: Option<OneOrMany>,
    /// `"UID[:GID]"` or a user name; default `"65532:65532"` (non-root).
    pub user: Option<String>,
    /// `keep-id` (rootless Podman maps the host user to `user`), `host`, or `auto`.
    pub userns: Option<String>,
    pub workdir: Option<String>,
    /// `"7777"`, `"8080:80"`, `"127.0.0.1:8080:80"`, `"8080:80/udp"` or `{ host, container, host_ip, protocol }`.
    /// Without an address a port binds `127.0.0.1`.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// `"SRC:DST[:ro]"` (SRC starting with `.` or `/` is a bind mount, a bare name a named volume) or `{ source, target, read_only }`.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    /// Read-only root filesystem; default `true`.
    pub read_only: Option<bool>,
    /// tmpfs mounts: `"/tmp"` or `"/tmp:size=64m,mode=1777"`.
    #[serde(default)]
    pub tmpfs: Vec<String>,
    /// Capabilities to drop; default `["ALL"]`.
    pub cap_drop: Option<Vec<String>>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// default `true`.
    pub no_new_privileges: Option<bool>,
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// Memory limit: bytes, or `"256m"`, `"1g"`.
    pub memory: Option<SizeValue>,
    /// CPU limit in cores, e.g. `0.5`.
    pub cpus: Option<f64>,
    /// Maximum number of processes; default 256, `-1` for unlimited.
    pub pids_limit: Option<i64>,
    /// `nofile = 1024` or `nofile = { soft = 1024, hard = 2048 }`.
    #[serde(default)]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Networks from `[networks]`; default the project's network.
    #[serde(default)]
    pub networks: Vec<String>,
    /// `["db"]` or `{ db = "healthy" }` (`started | healthy | completed`).
    pub depends_on: Option<DependsOn>,
    pub healthcheck: Option<RawHealthcheck>,
    /// `no | always | on-failure[:N] | unless-stopped`; default `no`.
    pub restart: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Escape hatch: full device and capability access. `devbox audit` reports it.
    pub privileged: Option<bool>,
    /// Escape hatch: `bridge`, `host`, `none`, `container:NAME`.
    pub network_mode: Option<String>,
    /// Escape hatch: `host` shares the host's PID namespace.
    pub pid: Option<String>,
    /// Escape hatch: `host`, `private`, `shareable`.
    pub ipc: Option<String>,
    /// Escape hatch: host devices, `"/dev/fuse"` or `"/dev/sda:/dev/xvda:rwm"`.
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, EnvValue>,
    /// `"host:ip"` entries for `/etc/hosts`.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// The signal that asks the service to stop: `"SIGINT"`, `"INT"` or a number; default
    /// the image's (`SIGTERM` unless the image says otherwise).
    pub stop_signal: Option<SignalValue>,
    /// How long `down` and a recreate wait after the stop signal before killing the
    /// service: a duration such as `"1s"` or `"1m30s"` (whole seconds, rounded up);
    /// default `"10s"`.
    pub stop_grace_period: Option<String>,
    /// Run a small init (catatonit on Podman, tini on Docker) as PID 1, which forwards
    /// signals and reaps zombies; default `true`.
    pub init: Option<bool>,
    /// Accepted `devbox audit` findings, each with its reason.
    pub audit: Option<RawAuditWaivers>,
    /// Native services only: what the sandbox lets the program reach (`net`, `fs`, `exec`,
    /// `env`), as for workers; limits are the service's own `memory`, `cpus`, `pids_limit`
    /// and `ulimits`.
    pub policy: Option<RawPolicy>,
}

/// `[services.NAME.audit]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAuditWaivers {
    /// `[{ rule = "DBX017", reason = "the proxy must bind port 443" }]`
    #[serde(default)]
    pub allow: Vec<RawWaiver>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawWaiver {
    /// A rule id such as `DBX017`.
    pub rule: String,
    /// Why the finding is accepted; required.
    pub reason: Option<String>,
}

/// `healthcheck = { cmd | tcp | http, interval, timeout, retries, start_period }`
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHealthcheck {
    /// Command run in the container; healthy when it exits 0.
    pub cmd: Option<HealthTest>,
    /// Container port that must accept a TCP connection.
    pub tcp: Option<i64>,
    /// URL (or path on the container) that must answer 2xx.
    pub http: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<i64>,
    pub start_period: Option<String>,
}

/// One `[[probes]]` entry: exactly one of `tcp`, `http`, `uds`, `file`, `exec`, `log`, `loopback_only`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub name: Option<String>,
    /// `"HOST:PORT"`
    pub tcp: Option<String>,
    /// `"http://HOST:PORT/PATH"`
    pub http: Option<String>,
    /// Unix socket path (inside the service given by `in`, else on the host).
    pub uds: Option<String>,
    /// Host path, relative to `sandbox.toml`.
    pub file: Option<String>,
    /// Command run in the service given by `in`.
    pub exec: Option<StringOrList>,
    /// Service whose log must contain `expect`.
    pub log: Option<String>,
    /// Host port that must answer on loopback only.
    pub loopback_only: Option<i64>,

    /// Bytes to send (tcp, uds).
    pub send: Option<String>,
    /// Substring, or `/regex/`, expected in the answer (tcp, http, uds, exec stdout, log).
    pub expect: Option<String>,
    /// Expected on stderr (exec).
    pub expect_stderr: Option<String>,
    /// `0`, any number, `"zero"`, `"nonzero"`, or `"denied"` (failed for lack of permission).
    pub expect_exit: Option<ExpectExit>,
    /// HTTP method; default GET.
    pub method: Option<String>,
    /// Expected HTTP status; default any 2xx.
    pub status: Option<i64>,
    /// HTTP request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP request body.
    pub body: Option<String>,
    /// Expected octal mode (file).
    pub mode: Option<String>,
    /// Expected owner (file): `"host"`, a uid, or a user name.
    pub owner: Option<String>,
    /// Expected type (file): `file | dir | socket | symlink`.
    #[serde(rename = "type")]
    pub file_type: Option<String>,
    /// Substring expected in the file.
    pub contains: Option<String>,
    /// The file must hold valid JSON.
    pub json: Option<bool>,
    /// Service the probe runs in (exec, uds).
    #[serde(rename = "in")]
    pub in_service: Option<String>,
    /// User the exec runs as.
    pub user: Option<String>,
    /// Keep retrying until this much time has passed; default `"5s"`.
    pub within: Option<String>,
    /// Time allowed for one try; default `"2s"`.
    pub timeout: Option<String>,
    /// Services that must be up before the probe runs.
    #[serde(default)]
    pub after: Vec<String>,
}

/// One `[workers.NAME]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawWorker {
    pub command: StringOrList,
    /// Working directory inside the sandbox; default `/tmp`. A relative path is relative to
    /// the project directory.
    pub workdir: Option<String>,
    /// Serve the control socket: its path is in `DEVBOX_CONTROL` inside, and the worker may
    /// say `READY`, `STATUS` or `STOP` on it.
    #[serde(default)]
    pub control: bool,
    #[serde(default)]
    pub policy: RawPolicy,
}

/// `[workers.NAME.policy]`, and `[services.NAME.policy]` for a native service.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// `"none"`, `"host"`, or `{ default, allow, warn, deny }`.
    pub net: Option<NetPolicy>,
    #[serde(default)]
    pub fs: RawFsPolicy,
    #[serde(default)]
    pub exec: RawExecPolicy,
    #[serde(default)]
    pub env: RawEnvPolicy,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFsPolicy {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawExecPolicy {
    /// Binaries the worker may execute; empty means any binary visible in the sandbox.
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawEnvPolicy {
    #[serde(default)]
    pub pass: Vec<String>,
    #[serde(default)]
    pub set: BTreeMap<String, EnvValue>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory: Option<SizeValue>,
    pub pids: Option<i64>,
    pub cpus: Option<f64>,
    pub nofile: Option<i64>,
    pub fsize: Option<SizeValue>,
    /// Wall-clock limit, e.g. `"30s"`.
    pub timeout: Option<String>,
    /// How long the worker has to stop after a SIGTERM, SIGINT or SIGHUP is forwarded to
    /// it before its sandbox is killed, e.g. `"5s"` (default `"10s"`).
    pub stop_grace: Option<String>,
}
