//! The registry of host ports devbox projects claim: one small JSON file per project in
//! devbox's state directory, written by `up` and removed by `down`, so `doctor` can say
//! that two projects on this machine want the same port before either fails to bind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::plan::Plan;

fn dir() -> PathBuf {
    super::lock::lock_dir()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("ports")
}

/// `PROJECT@DIR`, how a project is named in the registry.
pub fn key(plan: &Plan) -> String {
    format!("{}@{}", plan.project, plan.dir.display())
}

fn file(plan: &Plan) -> PathBuf {
    let h = hex::encode(Sha256::digest(key(plan).as_bytes()));
    dir().join(format!("{}-{}.json", plan.project, &h[..12]))
}

/// Records the host ports the plan publishes (best effort: the registry is advice).
pub fn claim(plan: &Plan) {
    let ports: Vec<u16> = plan
        .services
        .iter()
        .flat_map(|s| s.spec.ports.iter().map(|p| p.host))
        .collect();
    let path = file(plan);
    if ports.is_empty() {
        let _ = std::fs::remove_file(path);
        return;
    }
    let body = serde_json::json!({ "project": key(plan), "ports": ports }).to_string();
    if std::fs::create_dir_all(dir()).is_ok() {
        let _ = crate::fsutil::write_atomic(&path, body.as_bytes(), 0o644);
    }
}

/// Forgets the plan's claim.
pub fn release(plan: &Plan) {
    let _ = std::fs::remove_file(file(plan));
}

/// Every project's claimed ports.
pub fn claims() -> BTreeMap<String, Vec<u16>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir()) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let (Some(p), Some(ports)) = (v["project"].as_str(), v["ports"].as_array()) {
            out.insert(
                p.to_owned(),
                ports
                    .iter()
                    .filter_map(|x| x.as_u64().and_then(|n| u16::try_from(n).ok()))
                    .collect(),
            );
        }
    }
    out
}

/// A published host address that something else holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub service: String,
    /// `127.0.0.1:8080`, or `127.0.0.1:8080/udp`.
    pub addr: String,
    /// `pid 123 (python3)`, when /proc tells.
    pub holder: Option<String>,
}

/// The plan's published ports that cannot be bound now, leaving out those that `own`
/// (the project's running containers) publish: recreating those frees them first.
/// Binding is the only sure test; the socket is closed at once.
pub fn busy(plan: &Plan, own: &[crate::engine::ContainerInfo]) -> Vec<Busy> {
    use crate::config::model::Protocol;
    let mut out = Vec::new();
    for s in &plan.services {
        for p in &s.spec.ports {
            let ours = own.iter().any(|c| {
                c.running()
                    && c.service() == Some(s.name.as_str())
                    && c.ports
                        .iter()
                        .any(|q| q.host_port == p.host && q.protocol == p.protocol.as_str())
            });
            if ours {
                continue;
            }
            let at = std::net::SocketAddr::new(p.host_ip, p.host);
            let r = match p.protocol {
                Protocol::Tcp => std::net::TcpListener::bind(at).map(drop),
                Protocol::Udp => std::net::UdpSocket::bind(at).map(drop),
            };
            if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse) {
                out.push(Busy {
                    service: s.name.clone(),
                    addr: match p.protocol {
                        Protocol::Tcp => at.to_string(),
                        Protocol::Udp => format!("{at}/udp"),
                    },
                    holder: holder(p.protocol, p.host),
                });
            }
        }
    }
    out
}

/// The process with a socket bound to `port` (the kernel's socket tables give the inode,
/// a process's `fd/` links name it). `None` when it cannot be seen (another user's
/// process without privilege, another network namespace).
pub fn holder(proto: crate::config::model::Protocol, port: u16) -> Option<String> {
    use crate::config::model::Protocol;
    let tables: &[&str] = match proto {
        Protocol::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Protocol::Udp => &["/proc/net/udp", "/proc/net/udp6"],
    };
    let mut inodes = BTreeMap::new();
    for t in tables {
        let Ok(text) = std::fs::read_to_string(t) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let lport = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // TCP: listening (0A); UDP: any bound socket.
            let bound = proto == Protocol::Udp || *state == "0A";
            if lport == Some(port) && bound && *inode != "0" {
                inodes.insert(format!("socket:[{inode}]"), ());
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if inodes.contains_key(link.to_string_lossy().as_ref()) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim_end().to_owned())
                    .unwrap_or_default();
                return Some(format!("pid {pid} ({comm})"));
            }
        }
    }
    None
}
