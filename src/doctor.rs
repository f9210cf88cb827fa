//! `devbox doctor`'s checks: what this machine and user can run, each as pass / warn /
//! fail with what to do about it. Reads the machine and asks the engines; changes nothing.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;

use serde::Serialize;

use crate::engine::{self, ContainerInfo, Engine, EngineInfo, Kind};
use crate::plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do, when it is not a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(name: &str, status: Status, detail: String, fix: Option<&str>) -> Check {
    Check {
        check: name.to_owned(),
        status,
        detail,
        fix: fix.map(str::to_owned),
    }
}

/// The project's containers on the engine devbox would use for `choice`, when that engine
/// is among the `found` ones (or native, which needs no socket: its supervisor or its
/// records say what runs); none otherwise. Finding the engine blocks, so this runs
/// outside `rt`, and asks on it.
pub fn running(
    rt: &tokio::runtime::Runtime,
    choice: crate::config::model::EngineChoice,
    project: &str,
    found: &[(engine::Endpoint, EngineInfo)],
    limits: engine::Limits,
) -> Vec<ContainerInfo> {
    if choice == crate::config::model::EngineChoice::Native {
        return rt
            .block_on(engine::native::Native::new().list_containers(project))
            .unwrap_or_default();
    }
    match engine::discover(choice, limits) {
        Ok(engine::Selection::Ready(ep)) if found.iter().any(|(f, _)| f.socket == ep.socket) => {
            let e = engine::select::open(&ep, limits);
            rt.block_on(e.list_containers(project)).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// The engines: which sockets answer, with version and rootless or not.
pub async fn engines(
    out: &mut Vec<Check>,
    limits: engine::Limits,
) -> Vec<(engine::Endpoint, EngineInfo)> {
    let mut found = Vec::new();
    for (kind, socket, what) in engine::select::candidates() {
        let name = format!("engine: {what}");
        if !socket.exists() {
            out.push(check(
                &name,
                Status::Warn,
                format!("no socket at {}", socket.display()),
                Some(match kind {
                    Kind::Podman if what.contains("rootless") => {
                        "systemctl --user enable --now podman.socket (devbox also starts `podman system service` itself when needed)"
                    }
                    Kind::Podman => "systemctl enable --now podman.socket",
                    Kind::Docker => "systemctl enable --now docker",
                    Kind::Native => "devbox runs native services itself; nothing to start",
                }),
            ));
            continue;
        }
        let rw = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
        if let Err(e) = nix::unistd::access(&socket, rw) {
            out.push(check(
                &name,
                Status::Warn,
                format!(
                    "{} exists but this user cannot use it ({e})",
                    socket.display()
                ),
                Some(match kind {
                    Kind::Docker => "add the user to the `docker` group, or use rootless Podman",
                    Kind::Podman => "use your own rootless Podman socket, or run as root",
                    Kind::Native => "run devbox as the user who started the project",
                }),
            ));
            continue;
        }
        let ep = engine::Endpoint {
            kind,
            socket: socket.clone(),
            reason: what.clone(),
        };
        match engine::select::open(&ep, limits).info().await {
            Ok(info) => {
                out.push(check(
                    &name,
                    Status::Pass,
                    format!(
                        "{kind} {} answers on {} ({})",
                        info.version,
                        socket.display(),
                        if info.rootless { "rootless" } else { "rootful" }
                    ),
                    None,
                ));
                found.push((ep, info));
            }
            Err(e) => out.push(check(
                &name,
                Status::Fail,
                format!("{kind} at {}: {}", socket.display(), e.message.trim_end()),
                Some(if e.kind == engine::ErrorKind::TimedOut {
                    "it accepts connections but does not answer: restart the engine (or whatever serves the socket); --engine-timeout DURATION gives a slow engine longer"
                } else {
                    "check that the service runs and that you may use its socket"
                }),
            )),
        }
    }
    if found.is_empty() {
        out.push(check(
            "engine: any",
            Status::Fail,
            "no container engine answers".to_owned(),
            Some("install Podman (preferred, rootless) or Docker; scripts/setup-engines in devbox's repository does both on Debian and Ubuntu"),
        ));
    }
    found
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// subuid/subgid ranges, user namespaces, cgroups, /dev/net/tun, Landlock.
pub fn machine(out: &mut Vec<Check>) {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    let name = user
        .as_ref()
        .map_or_else(|| uid.to_string(), |u| u.name.clone());
    if uid.is_root() {
        out.push(check(
            "subordinate ids",
            Status::Pass,
            "running as root: rootful engines need no subordinate ids".to_owned(),
            None,
        ));
    } else {
        for (file, what) in [("/etc/subuid", "subuid"), ("/etc/subgid", "subgid")] {
            let count: u64 = read(file)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let who = f.next()?;
                    if who != name && who != uid.to_string() {
                        return None;
                    }
                    f.nth(1)?.trim().parse::<u64>().ok()
                })
                .sum();
            out.push(if count >= 65536 {
                check(
                    what,
                    Status::Pass,
                    format!("{name} has {count} ids in {file}"),
                    None,
                )
            } else {
                check(
                    what,
                    Status::Fail,
                    format!("{name} has {count} ids in {file}; rootless containers need 65536"),
                    Some(&format!(
                        "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}"
                    )),
                )
            });
        }
    }
    let max: u64 = read("/proc/sys/user/max_user_namespaces")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let clone = read("/proc/sys/kernel/unprivileged_userns_clone").map(|s| s.trim().to_owned());
    out.push(if max > 0 && clone.as_deref() != Some("0") {
        check(
            "user namespaces",
            Status::Pass,
            format!("enabled (max_user_namespaces = {max})"),
            None,
        )
    } else {
        check(
            "user namespaces",
            Status::Fail,
            format!(
                "disabled (max_user_namespaces = {max}, unprivileged_userns_clone = {})",
                clone.as_deref().unwrap_or("n/a")
            ),
            Some("sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1"),
        )
    });
    if engine::host_cgroup_version() == "2" {
        let controllers = read("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        let want = ["memory", "cpu", "pids"];
        let missing: Vec<&str> = want
            .iter()
            .copied()
            .filter(|c| !controllers.split_whitespace().any(|x| x == *c))
            .collect();
        out.push(if missing.is_empty() {
            check(
                "cgroups",
                Status::Pass,
                format!("v2 with {}: limits are enforced", controllers.trim()),
                None,
            )
        } else {
            check(
                "cgroups",
                Status::Warn,
                format!(
                    "v2 without {}: those limits are not enforced",
                    missing.join(", ")
                ),
                Some("enable the controllers (and delegate them to users for rootless engines)"),
            )
        });
    } else {
        let enabled: Vec<String> = read("/proc/cgroups")
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[3] == "1").then(|| f[0].to_owned())
            })
            .filter(|c| ["memory", "cpu", "pids"].contains(&c.as_str()))
            .collect();
        out.push(check(
            "cgroups",
            Status::Warn,
            format!(
                "v1 (legacy or hybrid), controllers {}: rootful engines enforce memory/cpus/pids; rootless ones cannot (devbox warns per service)",
                enabled.join(", ")
            ),
            Some("boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2, which rootless engines need for limits"),
        ));
    }
    let tun = Path::new("/dev/net/tun");
    out.push(
        match nix::unistd::access(
            tun,
            nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
        ) {
            Ok(()) => check(
                "/dev/net/tun",
                Status::Pass,
                "readable and writable: rootless networking (slirp4netns) works".to_owned(),
                None,
            ),
            Err(e) => check(
                "/dev/net/tun",
                if uid.is_root() {
                    Status::Warn
                } else {
                    Status::Fail
                },
                format!("not usable by {name}: {e}"),
                Some("chmod 0666 /dev/net/tun (slirp4netns needs it for rootless networking)"),
            ),
        },
    );
    let abi = crate::runner::landlock::abi();
    out.push(if abi > 0 {
        check("landlock", Status::Pass, format!("ABI version {abi}"), None)
    } else {
        check(
            "landlock",
            Status::Warn,
            "not available: the native runner falls back to mount-namespace isolation for file access".to_owned(),
            Some("a kernel ≥ 5.13 with CONFIG_SECURITY_LANDLOCK=y and landlock in the lsm= list"),
        )
    });
}

/// Ports the project declares: free, or held by this project; the real binds of its
/// containers on loopback unless the file asks otherwise; other projects' claims.
pub fn ports(out: &mut Vec<Check>, plan: &Plan, running: &[ContainerInfo]) {
    let claims = crate::apply::ports::claims();
    for s in &plan.services {
        for p in &s.spec.ports {
            let name = format!("port {}:{}", p.host_ip, p.host);
            // Only a running container holds its ports: one left `created` by a failed
            // start lists them and binds nothing.
            let held = running.iter().find(|c| {
                c.running()
                    && c.ports
                        .iter()
                        .any(|m| m.host_port == p.host && m.protocol == p.protocol.as_str())
            });
            let addr = SocketAddr::new(p.host_ip, p.host);
            let other: Vec<&String> = claims
                .iter()
                .filter(|(proj, ports)| {
                    proj.as_str() != crate::apply::ports::key(plan).as_str()
                        && ports.contains(&p.host)
                })
                .map(|(proj, _)| proj)
                .collect();
            if let Some(c) = held {
                out.push(check(
                    &name,
                    Status::Pass,
                    format!(
                        "held by this project's running container {} (service `{}`)",
                        c.name,
                        c.service().unwrap_or(&s.name)
                    ),
                    None,
                ));
            } else if TcpListener::bind(addr).is_ok() {
                if other.is_empty() {
                    out.push(check(&name, Status::Pass, "free".to_owned(), None));
                } else {
                    out.push(check(
                        &name,
                        Status::Warn,
                        format!(
                            "free now, but also claimed by devbox project {}",
                            join(&other)
                        ),
                        Some("give one of the projects another host port"),
                    ));
                }
            } else {
                out.push(check(
                    &name,
                    Status::Fail,
                    if other.is_empty() {
                        match crate::apply::ports::holder(p.protocol, p.host) {
                            Some(h) => format!("in use by {h}, not by this project"),
                            None => "in use by another process, not by this project".to_owned(),
                        }
                    } else {
                        format!("in use; devbox project {} claims it", join(&other))
                    },
                    Some(&format!("free it (`ss -ltnp 'sport = :{}'` shows who has it) or change the port in sandbox.toml", p.host)),
                ));
            }
        }
    }
    // What the engine really bound, against what the file says.
    let declared: BTreeMap<u16, IpAddr> = plan
        .services
        .iter()
        .flat_map(|s| s.spec.ports.iter().map(|p| (p.host, p.host_ip)))
        .collect();
    for c in running {
        for b in &c.ports {
            let ip: Option<IpAddr> = b.host_ip.parse().ok();
            let loopback = ip.is_some_and(|ip| ip.is_loopback());
            let asked_wide = declared
                .get(&b.host_port)
                .is_some_and(|ip| !ip.is_loopback());
            let name = format!("bind {}", b);
            out.push(if loopback {
                check(
                    &name,
                    Status::Pass,
                    format!("{} publishes on loopback only", c.name),
                    None,
                )
            } else if asked_wide {
                check(
                    &name,
                    Status::Warn,
                    format!("{} publishes beyond loopback, as sandbox.toml asks", c.name),
                    None,
                )
            } else {
                check(
                    &name,
                    Status::Fail,
                    format!(
                        "{} publishes beyond loopback, which sandbox.toml does not ask for",
                        c.name
                    ),
                    Some("`devbox up` recreates it with the file's binds"),
                )
            });
        }
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
