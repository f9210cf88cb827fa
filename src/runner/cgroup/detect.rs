//! How the host mounts cgroups and what it lets the caller do with them, and from that
//! where the run's cgroup goes (only facts, no writes).

use std::fs;
use std::path::{Path, PathBuf};

use nix::unistd::AccessFlags;

use super::delegate::DELEGATED_PREFIX;
use super::files::{owner_pid, read_list};
use super::{Controller, Error};
use crate::fsutil::WrapPath;

/// How cgroups are mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 (unified) at `mount`; `root` is the mount's root within the hierarchy,
    /// `/` unless a subtree was bind-mounted.
    Unified {
        mount: PathBuf,
        root: String,
    },
    /// cgroup v1: the hierarchies with controllers devbox uses. Hybrid hosts also mount
    /// a v2 hierarchy without controllers, which is of no use for limits and ignored.
    Legacy {
        hierarchies: Vec<Hierarchy>,
    },
    None,
}

/// A mounted v1 hierarchy and the controllers bound to it (`cpu,cpuacct` share one on
/// many distributions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

/// The layout of the calling process's mount namespace.
pub fn detect() -> Result<Layout, Error> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).wrap("reading", path)?;
    Ok(parse_mountinfo(&text))
}

/// The layout a `/proc/<pid>/mountinfo` text describes.
pub fn parse_mountinfo(text: &str) -> Layout {
    let mut unified = None;
    let mut legacy: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        // Fields: id parent major:minor root mount-point options [optional...] - type source super-options
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let mut after = after.split(' ');
        let (Some(fstype), Some(_source), Some(options)) =
            (after.next(), after.next(), after.next())
        else {
            continue;
        };
        if fields.len() < 5 {
            continue;
        }
        let mount = PathBuf::from(unescape(fields[4]));
        match fstype {
            "cgroup2" if unified.is_none() => unified = Some((mount, unescape(fields[3]))),
            "cgroup" => {
                let controllers: Vec<String> = options
                    .split(',')
                    .filter(|o| ["memory", "pids", "cpu"].contains(o))
                    .map(str::to_owned)
                    .collect();
                let known = legacy.iter().any(|h| h.mount == mount);
                if !controllers.is_empty() && !known {
                    legacy.push(Hierarchy { mount, controllers });
                }
            }
            _ => {}
        }
    }
    match (legacy.is_empty(), unified) {
        (false, _) => Layout::Legacy {
            hierarchies: legacy,
        },
        (true, Some((mount, root))) => Layout::Unified { mount, root },
        (true, None) => Layout::None,
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
pub(super) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v2 path of a process's cgroup, from its `/proc/<pid>/cgroup` text (`0::/path`).
pub(super) fn parse_own_unified(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// What [`decide`] needs to know about the host; [`Host::probe`] reads it, tests make it up.
#[derive(Debug, Clone)]
pub(super) struct Host {
    pub(super) layout: Layout,
    pub(super) root: bool,
    pub(super) uid: u32,
    /// v2: the controllers the root cgroup offers.
    pub(super) root_controllers: Vec<String>,
    /// v2: the caller's own cgroup.
    pub(super) own: Option<Own>,
}

#[derive(Debug, Clone)]
pub(super) struct Own {
    pub(super) dir: PathBuf,
    /// The caller may make child cgroups and move processes in it: it was delegated.
    pub(super) writable: bool,
    /// What it may enable for its children (`cgroup.controllers`).
    pub(super) controllers: Vec<String>,
}

impl Host {
    pub(super) fn probe(layout: Layout) -> Result<Self, Error> {
        let uid = nix::unistd::geteuid();
        let mut host = Host {
            layout,
            root: uid.is_root(),
            uid: uid.as_raw(),
            root_controllers: Vec::new(),
            own: None,
        };
        if let Layout::Unified { mount, root } = &host.layout {
            host.root_controllers = read_list(&mount.join("cgroup.controllers"))?;
            let path = Path::new("/proc/self/cgroup");
            let text = fs::read_to_string(path).wrap("reading", path)?;
            if let Some(own) = parse_own_unified(&text) {
                let rel = own.strip_prefix(root.as_str()).unwrap_or(own);
                let mut dir = mount.join(rel.trim_start_matches('/'));
                // A supervisor that already moved itself into a leaf (see `enable_in_own`)
                // keeps using the cgroup above it.
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.is_some_and(|n| owner_pid(&n, DELEGATED_PREFIX) == Some(std::process::id()))
                {
                    dir.pop();
                }
                let writable = ["", "cgroup.procs", "cgroup.subtree_control"]
                    .iter()
                    .all(|f| nix::unistd::eaccess(&dir.join(f), AccessFlags::W_OK).is_ok());
                let controllers = read_list(&dir.join("cgroup.controllers")).unwrap_or_default();
                host.own = Some(Own {
                    dir,
                    writable,
                    controllers,
                });
            }
        }
        Ok(host)
    }
}

/// Where the run's cgroup goes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    /// v1, as root: `<mount>/devbox` of each hierarchy holding a needed controller, with
    /// the needed controllers it holds.
    Legacy(Vec<(PathBuf, Vec<Controller>)>),
    /// v2, as root: `<mount>/devbox`.
    UnifiedRoot { mount: PathBuf },
    /// v2, delegated: directly in the caller's own cgroup.
    Delegated { own: PathBuf },
}

/// The placement the host allows, or why there is none. Only facts, no I/O.
pub(super) fn decide(host: &Host, needed: &[Controller]) -> Result<Target, String> {
    match &host.layout {
        Layout::None => Err("no cgroup file system is mounted".into()),
        Layout::Legacy { .. } if !host.root => {
            Err("cgroup v1 cannot be delegated to an unprivileged user".into())
        }
        Layout::Legacy { hierarchies } => {
            let mut target: Vec<(PathBuf, Vec<Controller>)> = Vec::new();
            for &c in needed {
                let Some(h) = hierarchies
                    .iter()
                    .find(|h| h.controllers.iter().any(|n| n == c.name()))
                else {
                    return Err(format!(
                        "the {} controller is not mounted (no cgroup v1 hierarchy has it)",
                        c.name()
                    ));
                };
                let base = h.mount.join("devbox");
                match target.iter_mut().find(|(b, _)| *b == base) {
                    Some((_, cs)) => cs.push(c),
                    None => target.push((base, vec![c])),
                }
            }
            Ok(Target::Legacy(target))
        }
        Layout::Unified { mount, .. } if host.root => {
            match missing(needed, &host.root_controllers) {
                Some(c) => Err(format!(
                    "the {c} controller is not available in {} (it may be bound to a cgroup v1 hierarchy)",
                    mount.display()
                )),
                None => Ok(Target::UnifiedRoot {
                    mount: mount.clone(),
                }),
            }
        }
        Layout::Unified { .. } => {
            let Some(own) = &host.own else {
                return Err("this process is in no cgroup v2 hierarchy".into());
            };
            if !own.writable {
                return Err(format!(
                    "cgroup {} is not delegated to uid {}; run devbox in a delegated scope: `systemd-run --user --scope -p Delegate=yes devbox ...`",
                    own.dir.display(),
                    host.uid
                ));
            }
            match missing(needed, &own.controllers) {
                Some(c) => Err(format!(
                    "the {c} controller is not delegated to {}; have systemd delegate it to users: `systemctl edit user@.service` with `[Service]` `Delegate=cpu memory pids`, then log in again",
                    own.dir.display()
                )),
                None => Ok(Target::Delegated {
                    own: own.dir.clone(),
                }),
            }
        }
    }
}

/// The first needed controller not in `have`.
pub(super) fn missing(needed: &[Controller], have: &[String]) -> Option<&'static str> {
    needed
        .iter()
        .map(|c| c.name())
        .find(|n| !have.iter().any(|h| h == n))
}
