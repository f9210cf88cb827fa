//! The resolved description of one isolated run: what the sandbox sees (mounts), what it
//! may reach (net), run (exec), inherit (env) and use (limits). Built from a validated
//! `[workers.NAME]` or from `devbox run` flags; the rest of the runner trusts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::model::{Decision, Limits, NetPolicy, Worker};

/// Read-only paths a sandbox gets when its policy lists none: the system's programs and
/// libraries, the dynamic loader's cache and the TLS roots. Missing ones are skipped. Only
/// the public half of /etc/ssl: a worker run by root would own /etc/ssl/private's keys.
pub const DEFAULT_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
];

/// The size of a `RunSpec::tmpfs` mount when the limits set no memory limit: 64 MiB.
pub const TMPFS_SIZE: u64 = 64 << 20;

/// `PATH` inside the sandbox unless the policy sets one.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// One run, resolved.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunSpec {
    /// The worker's name (`adhoc` for `devbox run -- CMD`); in the audit log and hostname.
    pub name: String,
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    /// The whole environment of the worker, in order.
    pub env: Vec<(String, String)>,
    /// Paths shown inside, in mount order (parents first): at the same place as outside,
    /// or, with a `source`, another host path shown at `path`.
    pub mounts: Vec<Mount>,
    /// A private, writable tmpfs at each of these paths inside (created as needed), over
    /// whatever `mounts` show there; each holds at most `limits.memory` bytes, or
    /// [`TMPFS_SIZE`] without a memory limit. Mode 1777, like /tmp.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<PathBuf>,
    /// Extra lines of the sandbox's /etc/hosts (`("server", 127.0.0.2)` makes
    /// `127.0.0.2 server`), after localhost and the hostname. When the policy shows the
    /// host's /etc/hosts, a generated one with these lines is shown over it instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<(String, std::net::Ipv4Addr)>,
    /// The uid and gid the worker runs as inside; `None` keeps the caller's (root stays
    /// root inside). Either way the worker is the caller on the host when devbox runs as an
    /// ordinary user (files it writes to writable paths are the caller's), and `nobody`
    /// (65534) when devbox runs as root (files it writes are still root's, see `idmap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<(u32, u32)>,
    pub net: Net,
    /// When not empty, the only binaries the worker may execute.
    pub exec_allow: Vec<PathBuf>,
    pub limits: Limits,
    /// Decisions made while resolving (env pass/set/deny, fs read/write/deny), recorded in
    /// the audit log before the worker starts.
    pub decisions: Vec<Decided>,
}

impl RunSpec {
    /// The sandbox's hostname: `devbox-NAME`, with anything a hostname cannot hold as `-`.
    pub fn hostname(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(48)
            .collect();
        format!("devbox-{name}")
    }
}

/// A decision taken at resolve time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decided {
    pub kind: &'static str,
    pub decision: Decision,
    pub what: String,
    pub rule: String,
}

/// How a path appears inside the sandbox.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MountKind {
    ReadOnly,
    ReadWrite,
    /// Hidden: an empty read-only directory or file is mounted over it.
    Deny,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mount {
    /// Where it shows inside (and, without `source`, the host path shown).
    pub path: PathBuf,
    pub kind: MountKind,
    /// The host path shown at `path` when it is another one (a bind of `./site` at
    /// `/srv`): read-only or writable as `kind` says (a `Deny` ignores it), its mount point
    /// created in the sandbox's root as needed. It must exist: a missing one stops the run
    /// with an error naming it. `None` shows `path` itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
}

/// The worker's network.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum Net {
    /// Its own network namespace with only loopback.
    None,
    /// The host's network (no network namespace): an explicit, audited opt-out.
    Host,
    /// Its own network namespace; egress only through devbox's proxy on loopback.
    Proxy(NetRules),
}

pub use crate::config::model::NetRules;

impl From<&NetPolicy> for Net {
    fn from(p: &NetPolicy) -> Self {
        match p {
            NetPolicy::None => Net::None,
            NetPolicy::Host => Net::Host,
            NetPolicy::Proxy(rules) => Net::Proxy(rules.clone()),
        }
    }
}

/// Resolves a validated worker into a run; `host_env` is the caller's environment, for
/// `env.pass`.
pub fn resolve(
    name: &str,
    w: &Worker,
    extra_args: &[String],
    host_env: &BTreeMap<String, String>,
) -> RunSpec {
    let mut decisions = Vec::new();
    let env = environment(&w.policy.env, host_env, &mut decisions);
    let explicit_read = !w.policy.fs.read.is_empty();
    let read: Vec<PathBuf> = if explicit_read {
        w.policy.fs.read.clone()
    } else {
        DEFAULT_READ.iter().map(PathBuf::from).collect()
    };
    let mounts = mounts(
        &read,
        &w.policy.fs.write,
        &w.policy.fs.deny,
        explicit_read,
        &mut decisions,
    );
    let mut argv = w.command.clone();
    argv.extend(extra_args.iter().cloned());
    RunSpec {
        name: name.to_string(),
        argv,
        workdir: PathBuf::from(&w.workdir),
        env,
        mounts,
        tmpfs: vec![],
        hosts: vec![],
        user: None,
        net: Net::from(&w.policy.net),
        exec_allow: w.policy.exec_allow.iter().map(PathBuf::from).collect(),
        limits: w.policy.limits.clone(),
        decisions,
    }
}

/// The worker's environment: `PATH`, then the passed host variables, then the set ones;
/// a name in `deny` is never passed or set, whatever else says so. Everything else of the
/// host's environment is scrubbed.
pub fn environment(
    p: &crate::config::model::EnvPolicy,
    host: &BTreeMap<String, String>,
    decisions: &mut Vec<Decided>,
) -> Vec<(String, String)> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut decide = |decision, what: &str, rule: String| {
        decisions.push(Decided {
            kind: "env",
            decision,
            what: what.to_string(),
            rule,
        })
    };
    let denied = |n: &str| p.deny.iter().any(|d| d == n);
    out.insert("PATH".into(), DEFAULT_PATH.into());
    for n in &p.pass {
        if denied(n) {
            decide(Decision::Deny, n, format!("env.deny \"{n}\""));
        } else if let Some(v) = host.get(n) {
            out.insert(n.clone(), v.clone());
            decide(Decision::Allow, n, format!("env.pass \"{n}\""));
        }
    }
    for (n, v) in &p.set {
        if denied(n) {
            decide(Decision::Deny, n, format!("env.deny \"{n}\""));
        } else {
            out.insert(n.clone(), v.clone());
            decide(Decision::Allow, n, format!("env.set \"{n}\""));
        }
    }
    for n in &p.deny {
        if host.contains_key(n) && !p.pass.contains(n) && !p.set.contains_key(n) {
            decide(Decision::Deny, n, format!("env.deny \"{n}\""));
        }
    }
    let scrubbed = host.keys().filter(|k| !out.contains_key(*k)).count();
    if scrubbed > 0 {
        decide(
            Decision::Deny,
            &format!("{scrubbed} other host variables"),
            "env (not passed)".into(),
        );
    }
    out.into_iter().collect()
}

/// The mount list: read-only paths, then writable ones, then denied ones, each group
/// sorted so that a parent is mounted before what lies under it. A read path that does not
/// exist is skipped (and recorded) when it came from the defaults, kept otherwise so the
/// sandbox can say which one is missing.
fn mounts(
    read: &[PathBuf],
    write: &[PathBuf],
    deny: &[PathBuf],
    explicit_read: bool,
    decisions: &mut Vec<Decided>,
) -> Vec<Mount> {
    let mut all: Vec<Mount> = Vec::new();
    let mut push = |path: &Path, kind: MountKind, rule: &str| {
        // The defaults differ between distributions; a missing one is not worth a word.
        let default = DEFAULT_READ.iter().any(|d| Path::new(d) == path);
        if kind == MountKind::ReadOnly && (default || !explicit_read) && !path.exists() {
            return;
        }
        decisions.push(Decided {
            kind: "fs",
            decision: if kind == MountKind::Deny {
                Decision::Deny
            } else {
                Decision::Allow
            },
            what: path.display().to_string(),
            rule: format!("fs.{rule}"),
        });
        all.retain(|m| m.path != path);
        all.push(Mount {
            path: path.to_path_buf(),
            kind,
            source: None,
        });
    };
    for p in read {
        push(p, MountKind::ReadOnly, "read");
    }
    for p in write {
        push(p, MountKind::ReadWrite, "write");
    }
    for p in deny {
        push(p, MountKind::Deny, "deny");
    }
    // Parents before children; at equal depth, deny last so it wins. A stable sort by
    // component count keeps the read < write < deny order among equals.
    all.sort_by_key(|m| m.path.components().count());
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::EnvPolicy;

    #[test]
    fn environment_is_scrubbed_and_deny_wins() {
        let host: BTreeMap<String, String> = [
            ("LANG", "C.UTF-8"),
            ("GITHUB_TOKEN", "secret"),
            ("HOME", "/root"),
            ("TZ", "UTC"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let p = EnvPolicy {
            pass: vec!["LANG".into(), "GITHUB_TOKEN".into(), "MISSING".into()],
            set: [("MODE".to_string(), "sandbox".to_string())].into(),
            deny: vec!["GITHUB_TOKEN".into()],
        };
        let mut d = Vec::new();
        let env = environment(&p, &host, &mut d);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["LANG", "MODE", "PATH"]);
        assert!(d
            .iter()
            .any(|x| x.what == "GITHUB_TOKEN" && x.decision == Decision::Deny));
        assert!(d.iter().any(|x| x.what == "3 other host variables"));
    }

    #[test]
    fn mounts_put_parents_first_and_deny_last() {
        let mut d = Vec::new();
        let m = mounts(
            &["/usr".into(), "/etc/hostname".into()],
            &["/tmp/x/data".into()],
            &["/usr/share".into()],
            true,
            &mut d,
        );
        let got: Vec<(String, MountKind)> = m
            .iter()
            .map(|m| (m.path.display().to_string(), m.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("/usr".to_string(), MountKind::ReadOnly),
                ("/etc/hostname".to_string(), MountKind::ReadOnly),
                ("/usr/share".to_string(), MountKind::Deny),
                ("/tmp/x/data".to_string(), MountKind::ReadWrite),
            ]
        );
    }
}
