//! The resolved model: what [`super::validate`] makes of a raw file once every value
//! has been checked. Paths are absolute, ports parsed, sizes in bytes, durations in
//! milliseconds, defaults applied. The rest of devbox trusts these types.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

pub use super::raw::EngineChoice;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Config {
    /// The main file (`sandbox.toml`).
    pub file: PathBuf,
    /// The directory holding it; relative paths in the file are relative to it.
    pub dir: PathBuf,
    pub project: Project,
    pub data: Data,
    pub images: BTreeMap<String, Image>,
    pub volumes: BTreeMap<String, Volume>,
    pub networks: BTreeMap<String, Network>,
    pub services: BTreeMap<String, Service>,
    pub probes: Vec<Probe>,
    pub workers: BTreeMap<String, Worker>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Project {
    pub name: String,
    /// The engine to use: as written (or given by flag or environment), except that
    /// `auto` becomes `native` when every service is native.
    pub engine: EngineChoice,
    /// Why devbox chose the engine, when it chose it rather than being told: the one
    /// line it prints ("no service has an image: running natively (engine native)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Data {
    /// Absolute path of the data root.
    pub root: PathBuf,
    /// The root as written, relative to the project.
    pub root_rel: String,
    pub dirs: Vec<DataDir>,
    pub files: Vec<DataFile>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DataDir {
    /// Relative to the data root.
    pub path: String,
    #[serde(serialize_with = "ser_mode")]
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DataFile {
    /// Relative to the data root.
    pub path: String,
    #[serde(serialize_with = "ser_mode")]
    pub mode: u32,
    pub content: FileContent,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum FileContent {
    Empty,
    /// Literal text. Never a secret.
    Literal {
        text: String,
    },
    /// `bytes` random bytes, written once in this encoding.
    Secret {
        encoding: SecretEncoding,
        bytes: usize,
    },
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SecretEncoding {
    Hex,
    Base64,
}

pub fn ser_mode<S: serde::Serializer>(m: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{m:04o}"))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Image {
    pub containerfile: PathBuf,
    pub context: PathBuf,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Volume {
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Network {
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// Which image a service runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum ImageRef {
    /// A key of `[images]`, built by devbox.
    Built(String),
    /// An image reference used as is.
    Reference(String),
    /// No image: a host program run natively, in a sandbox of devbox's runner.
    Host,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Service {
    pub image: ImageRef,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub env_files: Vec<PathBuf>,
    pub user: User,
    pub userns: Option<Userns>,
    pub workdir: Option<String>,
    pub ports: Vec<Port>,
    pub mounts: Vec<Mount>,
    pub read_only: bool,
    pub tmpfs: Vec<Tmpfs>,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub security_opt: Vec<String>,
    /// Bytes.
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    /// `None` means unlimited (`-1` in the file).
    pub pids_limit: Option<u32>,
    pub ulimits: BTreeMap<String, UlimitPair>,
    pub networks: Vec<String>,
    pub depends_on: BTreeMap<String, Condition>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Restart,
    pub labels: BTreeMap<String, String>,
    pub privileged: bool,
    pub network_mode: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub devices: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub extra_hosts: Vec<String>,
    /// The stop signal's number, when the file sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// Seconds between the stop signal and the kill, when the file sets it (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_s: Option<u32>,
    /// An init as PID 1. Left out of the config hash when off, as containers were made
    /// before the key existed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Audit findings accepted for this service: rule id -> reason.
    pub waivers: BTreeMap<String, String>,
    /// A native service's sandbox policy (`policy.limits` stays empty: the service's own
    /// `memory`, `cpus`, `pids_limit` and `ulimits` are its limits); `None` for a service
    /// with an image. Left out of the config hash when `None`, as containers were made
    /// before the key existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The hardened defaults devbox filled in because the file left them unset,
    /// as `key = value` strings, for the rendered plan and `devbox config`.
    pub defaults_applied: Vec<String>,
}

/// `user` after validation: a user and, after a colon, a group, each a number or a name
/// (which the image's /etc/passwd and /etc/group resolve). Written out as the file wrote
/// it: engines and compose take the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    text: String,
    user: Ident,
    group: Option<Ident>,
}

/// One half of a [`User`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Id(u32),
    Name(String),
}

impl Ident {
    fn parse(s: &str) -> Option<Self> {
        if let Ok(n) = s.parse() {
            Some(Self::Id(n))
        } else if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            Some(Self::Name(s.to_owned()))
        } else {
            None
        }
    }

    pub fn id(&self) -> Option<u32> {
        match self {
            Self::Id(n) => Some(*n),
            Self::Name(_) => None,
        }
    }

    /// Number 0, or the name `root`.
    pub fn is_root(&self) -> bool {
        match self {
            Self::Id(n) => *n == 0,
            Self::Name(s) => s == "root",
        }
    }
}

impl User {
    /// `UID`, `UID:GID`, `NAME` or `NAME:GROUP` (numbers and names mixed as wished); `None`
    /// for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (Ident::parse(u)?, Some(Ident::parse(g)?)),
            None => (Ident::parse(s)?, None),
        };
        Some(Self {
            text: s.to_owned(),
            user,
            group,
        })
    }

    pub fn user(&self) -> &Ident {
        &self.user
    }

    pub fn group(&self) -> Option<&Ident> {
        self.group.as_ref()
    }

    /// The user as numbers, as a native service runs and as `.data` is shared: `UID:GID`,
    /// or `UID` with the gid equal to the uid. `None` when either is a name.
    pub fn ids(&self) -> Option<(u32, u32)> {
        let uid = self.user.id()?;
        let gid = match &self.group {
            Some(g) => g.id()?,
            None => uid,
        };
        Some((uid, gid))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for User {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// The grace period when the file sets none, as compose and the engines have it.
pub const DEFAULT_STOP_GRACE_S: u32 = 10;

impl Service {
    /// A host program run by devbox's runner rather than a container.
    pub fn is_native(&self) -> bool {
        self.image == ImageRef::Host
    }

    pub fn stop_grace_s(&self) -> u32 {
        self.stop_grace_s.unwrap_or(DEFAULT_STOP_GRACE_S)
    }
}

/// A signal's name as engines and compose write it (`SIGINT`, `SIGRTMIN+3`).
pub fn signal_name(n: i32) -> String {
    match nix::sys::signal::Signal::try_from(n) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) if n >= nix::libc::SIGRTMIN() && n <= nix::libc::SIGRTMAX() => {
            format!("SIGRTMIN+{}", n - nix::libc::SIGRTMIN())
        }
        Err(_) => n.to_string(),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum Userns {
    /// Rootless Podman: the host user becomes `uid:gid` inside.
    KeepId {
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Host,
    Auto,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Port {
    pub host_ip: IpAddr,
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Mount {
    /// A host path (absolute) mounted into the container.
    Bind {
        source: PathBuf,
        /// As written, relative to the project.
        source_rel: String,
        target: String,
        read_only: bool,
    },
    /// A named volume from `[volumes]`.
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Self::Bind { target, .. } | Self::Volume { target, .. } => target,
        }
    }

    pub fn read_only(&self) -> bool {
        match self {
            Self::Bind { read_only, .. } | Self::Volume { read_only, .. } => *read_only,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tmpfs {
    pub path: String,
    /// Mount options as written after the colon (`size=64m,mode=1777`), parsed.
    pub options: Vec<TmpfsOption>,
}

impl Tmpfs {
    /// The size limit in bytes, when an option sets one (the first, as kube reads it).
    pub fn size(&self) -> Option<u64> {
        self.options.iter().find_map(|o| match o.kind {
            TmpfsKind::Size(b) => Some(b),
            _ => None,
        })
    }

    /// The options as the file wrote them, for engines and compose.
    pub fn option_texts(&self) -> impl Iterator<Item = &str> {
        self.options.iter().map(TmpfsOption::as_str)
    }
}

/// One tmpfs mount option, parsed, and its text as written (`size=64m`, `mode=0755`),
/// which is what engines are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsOption {
    pub kind: TmpfsKind,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpfsKind {
    /// Bytes.
    Size(u64),
    Mode(u32),
    Uid(u64),
    Gid(u64),
    NrInodes(u64),
    Exec,
    NoExec,
    Suid,
    NoSuid,
    Dev,
    NoDev,
    Ro,
    Rw,
}

impl TmpfsOption {
    pub fn new(kind: TmpfsKind, text: impl Into<String>) -> Self {
        Self {
            kind,
            text: text.into(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Serialize for TmpfsOption {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct UlimitPair {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Started,
    Healthy,
    Completed,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Healthcheck {
    pub test: HealthTest,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum HealthTest {
    /// argv run in the container (a string is run with `sh -c`).
    Cmd(Vec<String>),
    Tcp(u16),
    /// A URL, or a path on the container's first port.
    Http(String),
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "policy", content = "max_retries")]
pub enum Restart {
    No,
    Always,
    OnFailure(Option<u32>),
    UnlessStopped,
}

impl Restart {
    /// The spellings the file takes, for messages.
    pub const EXPECTED: &'static str =
        "\"no\", \"always\", \"on-failure\", \"on-failure:N\" or \"unless-stopped\"";

    /// The policy's name as the file, compose and Podman spell it.
    pub fn policy(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Always => "always",
            Self::OnFailure(_) => "on-failure",
            Self::UnlessStopped => "unless-stopped",
        }
    }

    /// How many times `on-failure` restarts, when it is limited.
    pub fn max_retries(self) -> Option<u32> {
        match self {
            Self::OnFailure(n) => n,
            _ => None,
        }
    }
}

/// As the file and compose write it: `on-failure:3`.
impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.policy())?;
        match self.max_retries() {
            Some(n) => write!(f, ":{n}"),
            None => Ok(()),
        }
    }
}

/// The file's spelling (see [`Restart::EXPECTED`]).
impl std::str::FromStr for Restart {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (policy, max) = match s.split_once(':') {
            Some((p, n)) => (p, Some(n.parse::<u32>().map_err(|_| ())?)),
            None => (s, None),
        };
        let r = [
            Self::No,
            Self::Always,
            Self::OnFailure(None),
            Self::UnlessStopped,
        ]
        .into_iter()
        .find(|r| r.policy() == policy)
        .ok_or(())?;
        match (r, max) {
            (_, None) => Ok(r),
            (Self::OnFailure(_), Some(n)) => Ok(Self::OnFailure(Some(n))),
            _ => Err(()),
        }
    }
}

/// Text expected somewhere: a substring, or a regex written `/like this/`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Matcher {
    Substring(String),
    Regex(String),
}

impl Matcher {
    pub fn parse(s: &str) -> Self {
        if s.len() >= 2 && s.starts_with('/') && s.ends_with('/') {
            Self::Regex(s[1..s.len() - 1].to_owned())
        } else {
            Self::Substring(s.to_owned())
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Probe {
    pub name: String,
    pub kind: ProbeKind,
    pub within_ms: u64,
    pub timeout_ms: u64,
    pub after: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ProbeKind {
    Tcp {
        address: String,
        send: Option<String>,
        expect: Option<Matcher>,
    },
    Http {
        url: String,
        method: String,
        status: Option<u16>,
        headers: BTreeMap<String, String>,
        body: Option<String>,
        expect: Option<Matcher>,
    },
    Uds {
        path: String,
        in_service: Option<String>,
        send: Option<String>,
        expect: Option<Matcher>,
    },
    File {
        path: PathBuf,
        path_rel: String,
        #[serde(serialize_with = "ser_opt_mode")]
        mode: Option<u32>,
        owner: Option<Owner>,
        file_type: Option<FileType>,
        contains: Option<String>,
        json: bool,
    },
    Exec {
        argv: Vec<String>,
        in_service: String,
        user: Option<String>,
        expect_exit: ExitExpectation,
        expect: Option<Matcher>,
        expect_stderr: Option<Matcher>,
    },
    Log {
        service: String,
        expect: Matcher,
    },
    LoopbackOnly {
        port: u16,
    },
}

fn ser_opt_mode<S: serde::Serializer>(m: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => ser_mode(m, s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// The user running devbox.
    Host,
    Uid(u32),
    Name(String),
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    File,
    Dir,
    Socket,
    Symlink,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExitExpectation {
    Code(i32),
    Zero,
    Nonzero,
    /// Failed for lack of permission.
    Denied,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Worker {
    pub command: Vec<String>,
    pub workdir: String,
    /// Serve the control socket (`DEVBOX_CONTROL`).
    pub control: bool,
    pub policy: Policy,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Policy {
    pub net: NetPolicy,
    pub fs: FsPolicy,
    pub exec_allow: Vec<String>,
    pub env: EnvPolicy,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Warn,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum NetPolicy {
    /// No network at all (only loopback).
    None,
    /// The host's network: an explicit, audited opt-out.
    Host,
    /// Egress through devbox's proxy, decided per `host:port`.
    Proxy(NetRules),
}

/// `host:port` patterns (`*.example.com:443`, `10.0.0.1:*`) and the default decision:
/// a proxied policy's rules, as the runner's proxy decides them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetRules {
    pub default: Decision,
    pub allow: Vec<String>,
    pub warn: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FsPolicy {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub deny: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EnvPolicy {
    pub pass: Vec<String>,
    pub set: BTreeMap<String, String>,
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u32>,
    pub cpus: Option<f64>,
    pub nofile: Option<u64>,
    pub fsize: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// After a stop signal is forwarded, how long before the sandbox is killed (default
    /// `runner::supervisor::DEFAULT_STOP_GRACE_MS`).
    pub stop_grace_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_user(user: &str) -> Service {
        Service {
            image: ImageRef::Host,
            command: Some(vec!["/bin/true".into()]),
            entrypoint: None,
            env: BTreeMap::new(),
            env_files: Vec::new(),
            user: User::parse(user).unwrap(),
            userns: None,
            workdir: None,
            ports: Vec::new(),
            mounts: Vec::new(),
            read_only: true,
            tmpfs: Vec::new(),
            cap_drop: vec!["ALL".into()],
            cap_add: Vec::new(),
            no_new_privileges: true,
            security_opt: Vec::new(),
            memory: None,
            cpus: None,
            pids_limit: None,
            ulimits: BTreeMap::new(),
            networks: Vec::new(),
            depends_on: BTreeMap::new(),
            healthcheck: None,
            restart: Restart::No,
            labels: BTreeMap::new(),
            privileged: false,
            network_mode: None,
            pid: None,
            ipc: None,
            devices: Vec::new(),
            sysctls: BTreeMap::new(),
            extra_hosts: Vec::new(),
            stop_signal: None,
            stop_grace_s: None,
            init: true,
            waivers: BTreeMap::new(),
            policy: None,
            defaults_applied: Vec::new(),
        }
    }

    #[test]
    fn a_native_user_is_a_uid_and_a_gid() {
        assert_eq!(with_user("65532:65532").user.ids(), Some((65532, 65532)));
        assert_eq!(with_user("1000:100").user.ids(), Some((1000, 100)));
        assert_eq!(with_user("1000").user.ids(), Some((1000, 1000)));
        assert_eq!(with_user("app").user.ids(), None);
        assert_eq!(with_user("1000:staff").user.ids(), None);
        assert!(with_user("0").is_native());
    }

    #[test]
    fn a_user_is_parsed_once_and_written_as_it_was() {
        let u = User::parse("1000:staff").unwrap();
        assert_eq!(u.user(), &Ident::Id(1000));
        assert_eq!(u.group(), Some(&Ident::Name("staff".into())));
        assert_eq!(u.to_string(), "1000:staff");
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"1000:staff\"");
        let u = User::parse("app").unwrap();
        assert_eq!((u.user(), u.group()), (&Ident::Name("app".into()), None));
        assert!(User::parse("root:0").unwrap().user().is_root());
        assert!(User::parse("0").unwrap().user().is_root());
        assert!(!User::parse("1000:0").unwrap().user().is_root());
        assert!(User::parse("1000:0").unwrap().group().unwrap().is_root());
        for bad in ["", ":", "1000:", ":100", "a b", "1000:100:1", "ü"] {
            assert_eq!(User::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_restart_policy_is_written_as_it_is_read() {
        for (text, r) in [
            ("no", Restart::No),
            ("always", Restart::Always),
            ("on-failure", Restart::OnFailure(None)),
            ("on-failure:3", Restart::OnFailure(Some(3))),
            ("unless-stopped", Restart::UnlessStopped),
        ] {
            assert_eq!(text.parse::<Restart>(), Ok(r));
            assert_eq!(r.to_string(), text);
        }
        for bad in [
            "",
            "never",
            "on-failure:",
            "on-failure:x",
            "always:3",
            "on-failure:-1",
        ] {
            assert_eq!(bad.parse::<Restart>(), Err(()), "{bad}");
        }
        assert_eq!(Restart::OnFailure(Some(5)).policy(), "on-failure");
        assert_eq!(Restart::OnFailure(Some(5)).max_retries(), Some(5));
        assert_eq!(Restart::Always.max_retries(), None);
    }
}
