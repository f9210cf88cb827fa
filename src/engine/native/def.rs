//! What a native container is made of, as the supervisor stores it: the service's
//! settings resolved on the client side (volumes to their directories, the user to ids,
//! `env.pass` against the caller's environment), so that the supervisor and the monitor
//! it starts for each run need nothing but the record.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::runner::state::Record;

/// A bind of a host path (a project path, `.data`, a named volume's directory) at a
/// target inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The service's network, from its policy's `net`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum NetDef {
    /// Its own network namespace (loopback, and the fabric's peers and ports).
    None,
    Host,
    /// Egress through devbox's proxy; decisions as `allow`, `warn`, `deny`.
    Proxy {
        default: String,
        allow: Vec<String>,
        warn: Vec<String>,
        deny: Vec<String>,
    },
}

/// A healthcheck, as the supervisor runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Check {
    /// argv run inside the sandbox, as `devbox exec` runs it.
    Cmd { argv: Vec<String> },
    /// A TCP connection to 127.0.0.1:PORT in the service's network namespace.
    Tcp { port: u16 },
    /// `GET PATH` on 127.0.0.1:PORT there; 2xx and 3xx pass.
    Http {
        port: u16,
        host: String,
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub check: Check,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum RestartDef {
    No,
    OnFailure { max: Option<u32> },
    Always,
    UnlessStopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortDef {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// Everything a run of the service needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Def {
    pub service: String,
    pub labels: BTreeMap<String, String>,
    pub argv: Vec<String>,
    /// The whole environment of the service (PATH and HOME defaults included).
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    /// uid and gid inside, when the service names a user.
    pub user: Option<(u32, u32)>,
    pub binds: Vec<Bind>,
    /// Paths hidden inside (the policy's `fs.deny`).
    pub deny: Vec<PathBuf>,
    pub tmpfs: Vec<PathBuf>,
    pub exec_allow: Vec<PathBuf>,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<u32>,
    /// Its `ulimits`: soft and hard by key, as written (-1 unlimited).
    #[serde(default)]
    pub ulimits: BTreeMap<String, (i64, i64)>,
    pub net: NetDef,
    pub ports: Vec<PortDef>,
    pub networks: BTreeMap<String, String>,
    /// Its peers' names and addresses (the supervisor's, at each start).
    #[serde(default)]
    pub hosts: Vec<(String, std::net::Ipv4Addr)>,
    pub health: Option<Health>,
    pub restart: RestartDef,
    pub stop_signal: i32,
    pub stop_grace_s: u32,
}

/// A container as the supervisor keeps it on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    #[serde(flatten)]
    pub record: Record,
    pub def: Def,
    /// How often the restart policy has started it again.
    #[serde(default)]
    pub restarts: u32,
    /// The monitor process of the current run.
    #[serde(default)]
    pub monitor: Option<u32>,
    #[serde(default)]
    pub health: Option<String>,
    /// Its run has ended and the restart policy starts it again after a pause: engines
    /// call that state `restarting`, and `up` waits through it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarting: bool,
}

/// A container as the protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: String,
    pub exit_code: Option<i64>,
    pub health: Option<String>,
    pub ports: Vec<PortDef>,
    pub pid: Option<u32>,
    pub monitor: Option<u32>,
    pub restarts: u32,
}

impl Container {
    pub fn status(&self) -> Status {
        let running = self.record.state == crate::runner::state::State::Running;
        Status {
            id: self.record.id.clone(),
            name: self.record.name.clone(),
            labels: self.def.labels.clone(),
            state: if self.restarting {
                "restarting".to_owned()
            } else {
                self.record.state.engine_word().to_owned()
            },
            exit_code: self.record.exit_code.map(i64::from),
            health: if self.def.health.is_some() {
                Some(
                    self.health
                        .clone()
                        .filter(|_| running)
                        .unwrap_or_else(|| "starting".to_owned()),
                )
            } else {
                None
            },
            ports: if running {
                self.def.ports.clone()
            } else {
                Vec::new()
            },
            pid: self.record.pid.filter(|_| running),
            monitor: self.monitor.filter(|_| running),
            restarts: self.restarts,
        }
    }
}

/// One request on the supervisor's socket (a JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Request {
    Create {
        name: String,
        def: Box<Def>,
    },
    Start {
        id: String,
    },
    Stop {
        id: String,
        timeout_s: u32,
    },
    Remove {
        id: String,
    },
    Inspect {
        id: String,
    },
    List,
    ConnectNetwork {
        id: String,
        network: String,
        alias: String,
    },
    DisconnectNetwork {
        id: String,
        network: String,
    },
    /// Exit now, if holding nothing (else a conflict): the last `down` of a project lets
    /// its supervisor go instead of leaving it idle.
    Shutdown,
    /// From a monitor: its sandbox's init is set up and waits; the answer lets it go.
    Started {
        id: String,
        monitor: u32,
        pid: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    NotFound,
    Conflict,
    Other,
}

/// The answer (a JSON line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<(Failure, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Status>,
}

impl Response {
    pub fn fail(kind: Failure, message: impl Into<String>) -> Self {
        Self {
            error: Some((kind, message.into())),
            ..Self::default()
        }
    }
}
