//! Security rules over a resolved configuration: each rule has a stable id, a title, a
//! default severity, a one-line fix and the outside checks it mirrors (CIS Docker
//! Benchmark v1.6.0, Kubernetes Pod Security Standards). Findings carry the key they are
//! about, so they can be located in the file like any diagnostic.
//!
//! Reads the configuration and, for secrets, the modes of files on disk; changes nothing.
//! The rules themselves are static data in [`rules`], which the configuration's waivers
//! are checked against.

pub mod rules;
pub mod sarif;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Serialize;

use crate::config::diagnostic::KeyPath;
use crate::config::model::{
    Config, Decision, FileContent, Ident, ImageRef, Mount, NetPolicy, NetRules, Policy, Restart,
    Service,
};

pub use rules::{rule, Rule, Severity, RULES};

/// One rule broken at one place.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    #[serde(serialize_with = "ser_key")]
    pub key: KeyPath,
    /// When a waiver in the file accepts this finding: its reason.
    pub waived: Option<String>,
}

impl Finding {
    /// A finding on `key`, for rules checked outside [`audit`] (compose-only settings).
    pub fn new(id: &'static str, key: KeyPath, message: impl Into<String>) -> Self {
        let r = rule(id).expect("rule ids are static");
        Self {
            rule: id,
            severity: r.severity,
            message: message.into(),
            key,
            waived: None,
        }
    }
}

fn ser_key<S: serde::Serializer>(k: &KeyPath, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(k)
}

struct Out<'a> {
    findings: Vec<Finding>,
    waivers: Option<&'a BTreeMap<String, String>>,
}

impl Out<'_> {
    fn add(&mut self, id: &'static str, key: KeyPath, message: impl Into<String>) {
        let r = rule(id).expect("rule ids are static");
        self.findings.push(Finding {
            rule: id,
            severity: r.severity,
            message: message.into(),
            key,
            waived: self.waivers.and_then(|w| w.get(id).cloned()),
        });
    }
}

/// Every finding, in file order of services, then data, then workers.
pub fn audit(config: &Config) -> Vec<Finding> {
    let mut all = Vec::new();
    for (name, s) in &config.services {
        let mut out = Out {
            findings: Vec::new(),
            waivers: Some(&s.waivers),
        };
        service(config, name, s, &mut out);
        all.extend(out.findings);
    }
    let mut out = Out {
        findings: Vec::new(),
        waivers: None,
    };
    data(config, &mut out);
    workers(config, &mut out);
    all.extend(out.findings);
    all
}

const DANGEROUS_CAPS: &[&str] = &["SYS_ADMIN", "SYS_MODULE", "NET_RAW", "ALL"];
const ENGINE_SOCKETS: &[&str] = &["docker.sock", "podman.sock", "containerd.sock", "crio.sock"];
const SENSITIVE: &[&str] = &[
    "/",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/sbin",
    "/root",
    "/home",
    "/var/lib/docker",
    "/var/lib/containers",
    "/run",
    "/var/run",
];
/// Namespaced sysctls the Kubernetes baseline profile allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "ACCESS_KEY",
];

fn service(config: &Config, name: &str, s: &Service, out: &mut Out) {
    let p = KeyPath::root().key("services").key(name);
    if s.privileged {
        out.add(
            "DBX001",
            p.key("privileged"),
            format!("service {name} runs privileged: every device and capability of the host"),
        );
    }
    if !s.no_new_privileges {
        out.add(
            "DBX002",
            p.key("no_new_privileges"),
            format!("service {name} lets setuid binaries raise privileges"),
        );
    }
    if !s.read_only {
        out.add(
            "DBX003",
            p.key("read_only"),
            format!("service {name} can change its image's files"),
        );
    }
    // A native service always drops every capability, whatever `cap_drop` says.
    if !s.is_native() && !s.cap_drop.iter().any(|c| c == "ALL") {
        out.add(
            "DBX004",
            p.key("cap_drop"),
            format!("service {name} keeps the engine's default capabilities"),
        );
    }
    for (i, c) in s.cap_add.iter().enumerate() {
        if DANGEROUS_CAPS.contains(&c.as_str()) {
            out.add(
                "DBX006",
                p.key("cap_add").index(i),
                format!("service {name} adds {c}"),
            );
        } else if c != "NET_BIND_SERVICE" {
            out.add(
                "DBX005",
                p.key("cap_add").index(i),
                format!("service {name} adds {c}"),
            );
        }
    }
    if s.user.user().is_root() {
        out.add(
            "DBX007",
            p.key("user"),
            format!("service {name} runs as root"),
        );
    } else if s.user.group().is_some_and(Ident::is_root) {
        out.add(
            "DBX008",
            p.key("user"),
            format!("service {name} runs with gid 0"),
        );
    }
    for (i, o) in s.security_opt.iter().enumerate() {
        let norm = o.replace(':', "=");
        let key = p.key("security_opt").index(i);
        match norm.as_str() {
            "seccomp=unconfined" => out.add(
                "DBX009",
                key,
                format!("service {name} runs without a seccomp filter"),
            ),
            "apparmor=unconfined" => out.add(
                "DBX010",
                key,
                format!("service {name} runs without AppArmor"),
            ),
            "label=disable" => out.add(
                "DBX011",
                key,
                format!("service {name} runs without SELinux separation"),
            ),
            _ => {}
        }
    }
    // A native service's `network_mode = "host"` goes with `policy.net = "host"`, which
    // is reported below.
    if !s.is_native() && s.network_mode.as_deref() == Some("host") {
        out.add(
            "DBX012",
            p.key("network_mode"),
            format!("service {name} uses the host's network stack"),
        );
    }
    if s.pid.as_deref() == Some("host") {
        out.add(
            "DBX013",
            p.key("pid"),
            format!("service {name} sees every host process"),
        );
    }
    if s.ipc.as_deref() == Some("host") {
        out.add(
            "DBX014",
            p.key("ipc"),
            format!("service {name} shares the host's IPC"),
        );
    }
    if matches!(s.userns, Some(crate::config::model::Userns::Host)) {
        out.add(
            "DBX015",
            p.key("userns"),
            format!("service {name} shares the host's user namespace"),
        );
    }
    for (i, port) in s.ports.iter().enumerate() {
        let key = p.key("ports").index(i);
        if port.host_ip.is_unspecified() {
            out.add(
                "DBX016",
                key.clone(),
                format!(
                    "service {name} publishes {}:{} to every network the host is on",
                    port.host_ip, port.host
                ),
            );
        }
        if port.host < 1024 {
            out.add(
                "DBX017",
                key,
                format!("service {name} publishes host port {}", port.host),
            );
        }
    }
    for (i, m) in s.mounts.iter().enumerate() {
        let Mount::Bind {
            source, read_only, ..
        } = m
        else {
            continue;
        };
        let key = p.key("volumes").index(i);
        let src = source.display().to_string();
        if ENGINE_SOCKETS.iter().any(|sock| src.ends_with(sock)) {
            out.add("DBX018", key, format!("service {name} mounts {src}"));
            continue;
        }
        if SENSITIVE.iter().any(|d| source == Path::new(d)) || is_home(source) {
            out.add("DBX019", key, format!("service {name} mounts {src}"));
            continue;
        }
        if !source.starts_with(&config.dir) {
            out.add(
                "DBX020",
                key,
                format!("service {name} mounts {src}, outside the project"),
            );
        } else if !source.starts_with(&config.data.root) && !*read_only {
            out.add(
                "DBX021",
                key,
                format!("service {name} mounts project path {src} writable"),
            );
        }
    }
    for (i, d) in s.devices.iter().enumerate() {
        out.add(
            "DBX022",
            p.key("devices").index(i),
            format!("service {name} gets host device {d}"),
        );
    }
    if s.memory.is_none() {
        out.add(
            "DBX023",
            p.key("memory"),
            format!("service {name} can use all the host's memory"),
        );
    }
    if s.pids_limit.is_none() {
        out.add(
            "DBX024",
            p.key("pids_limit"),
            format!("service {name} can start unlimited processes"),
        );
    }
    if s.cpus.is_none() {
        out.add(
            "DBX025",
            p.key("cpus"),
            format!("service {name} can use every CPU"),
        );
    }
    if let Restart::OnFailure(Some(n)) = s.restart {
        if n > 5 {
            out.add(
                "DBX026",
                p.key("restart"),
                format!("service {name} restarts up to {n} times"),
            );
        }
    }
    if s.healthcheck.is_none() {
        out.add(
            "DBX027",
            p.key("healthcheck"),
            format!("service {name} has no healthcheck"),
        );
    }
    if let ImageRef::Reference(r) = &s.image {
        let last = r.rsplit('/').next().unwrap_or(r);
        if !r.contains('@') && (!last.contains(':') || last.ends_with(":latest")) {
            out.add(
                "DBX028",
                p.key("image"),
                format!("service {name} runs {r}, which can change under it"),
            );
        }
    }
    for k in s.env.keys() {
        let up = k.to_ascii_uppercase();
        if SECRET_WORDS.iter().any(|w| up.contains(w)) {
            out.add("DBX031", p.key("env").key(k), format!("service {name} gets {k} in its environment, visible to anyone who can inspect it"));
        }
    }
    for k in s.sysctls.keys() {
        if !SAFE_SYSCTLS.contains(&k.as_str()) {
            out.add(
                "DBX032",
                p.key("sysctls").key(k),
                format!("service {name} sets {k}"),
            );
        }
    }
    if let Some(pol) = &s.policy {
        native_policy(name, &p.key("policy"), pol, out);
    }
}

/// The rules a native service's sandbox policy can break. (The container-only rules
/// cannot fire for it: validation refuses the keys they are about.)
fn native_policy(name: &str, p: &KeyPath, pol: &Policy, out: &mut Out) {
    match &pol.net {
        NetPolicy::Host => out.add(
            "DBX012",
            p.key("net"),
            format!("service {name} uses the host's network stack"),
        ),
        NetPolicy::Proxy(NetRules {
            default: Decision::Allow,
            ..
        }) => out.add(
            "DBX033",
            p.key("net").key("default"),
            format!("service {name} may reach any destination not denied"),
        ),
        _ => {}
    }
    for (i, wr) in pol.fs.write.iter().enumerate() {
        let key = p.key("fs").key("write").index(i);
        if wr == Path::new("/") || is_home(wr) {
            out.add(
                "DBX034",
                key,
                format!("service {name} may write {}", wr.display()),
            );
        } else if SENSITIVE.iter().any(|d| wr == Path::new(d)) {
            out.add(
                "DBX019",
                key,
                format!("service {name} may write {}", wr.display()),
            );
        }
    }
}

fn is_home(p: &Path) -> bool {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    home.is_some_and(|h| p == h) || (p.starts_with("/home") && p.components().count() == 3)
}

fn data(config: &Config, out: &mut Out) {
    let base = KeyPath::root().key("data");
    for f in &config.data.files {
        if !matches!(f.content, FileContent::Secret { .. }) {
            continue;
        }
        let on_disk = config.data.root.join(&f.path);
        if let Ok(m) = std::fs::symlink_metadata(&on_disk) {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                out.add(
                    "DBX029",
                    base.key("files").key(&f.path),
                    format!("{} has mode {mode:04o} on disk", on_disk.display()),
                );
            }
        }
        let parent = Path::new(&f.path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(d) = config.data.dirs.iter().find(|d| d.path == parent) {
            if d.mode & 0o077 != 0 {
                out.add(
                    "DBX030",
                    base.key("dirs").key(&d.path).key("mode"),
                    format!(
                        "{} holds the secret {} with mode {:04o}",
                        d.path, f.path, d.mode
                    ),
                );
            }
        } else if !parent.is_empty() {
            out.add(
                "DBX030",
                base.key("files").key(&f.path),
                format!(
                    "{parent}/ holds the secret {} and is created with mode 0755",
                    f.path
                ),
            );
        }
    }
}

fn workers(config: &Config, out: &mut Out) {
    for (name, w) in &config.workers {
        let p = KeyPath::root().key("workers").key(name).key("policy");
        match &w.policy.net {
            NetPolicy::Host => out.add(
                "DBX033",
                p.key("net"),
                format!("worker {name} uses the host's network directly"),
            ),
            NetPolicy::Proxy(NetRules {
                default: Decision::Allow,
                ..
            }) => out.add(
                "DBX033",
                p.key("net").key("default"),
                format!("worker {name} may reach any destination not denied"),
            ),
            _ => {}
        }
        for (i, wr) in w.policy.fs.write.iter().enumerate() {
            if wr == Path::new("/") || is_home(wr) {
                out.add(
                    "DBX034",
                    p.key("fs").key("write").index(i),
                    format!("worker {name} may write {}", wr.display()),
                );
            }
        }
        let l = &w.policy.limits;
        if l.memory.is_none() && l.pids.is_none() {
            out.add(
                "DBX035",
                p.key("limits"),
                format!("worker {name} has no memory or process limit"),
            );
        }
    }
}

/// Counts of unwaived findings per severity, highest first.
pub fn summary(findings: &[Finding]) -> Vec<(Severity, usize)> {
    [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ]
    .into_iter()
    .map(|s| {
        (
            s,
            findings
                .iter()
                .filter(|f| f.waived.is_none() && f.severity == s)
                .count(),
        )
    })
    .collect()
}
