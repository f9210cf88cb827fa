//! The native engine's networking: how services in separate sandboxes reach each other by
//! name, and how their published ports reach the host.
//!
//! Each sandbox has its own network namespace with only loopback in it, so there is no
//! route between two of them and none to the host. The [`Fabric`] owned by the project's
//! supervisor makes the routes in user space:
//!
//! - Every declared service gets a stable loopback address, 127.0.0.K (K from 2 upward, the
//!   lowest free one at its first [`Fabric::declare`], so in order of declaration).
//!   [`Fabric::hosts_for`] gives the `/etc/hosts` lines of its sandbox: its own name and
//!   aliases as 127.0.0.1, and every peer that shares a network with it (the project's
//!   default network when it names none) as `NAME -> 127.0.0.K`, aliases too.
//! - [`Fabric::attach`], called when a sandbox is up (its init's pid known, before its
//!   program starts), binds inside that sandbox's network namespace a listener on
//!   127.0.0.K:PORT for every port of every peer it shares a network with, and on the
//!   host each of the service's published ports. A connection accepted there is forwarded
//!   to a fresh connection made inside the target's *current* network namespace to
//!   127.0.0.1:PORT; the target is looked up at each connection, so a connection to a
//!   peer that is not attached (or not listening on that port) is reset at once, and a
//!   restarted peer is reached in its new sandbox. Bytes are copied both ways in user space, half-close honoured.
//! - [`Fabric::detach`] drops a sandbox's listeners and host ports; [`Fabric::forget`]
//!   drops the service and its address.
//!
//! Sockets inside a sandbox are made with [`crate::runner::netns`] (a short-lived thread
//! that joins the namespace of the sandbox's init); that needs CAP_SYS_ADMIN over the
//! sandbox's user namespace, which the supervisor has as root, or after
//! [`crate::runner::netns::own_user_namespace`]. The pid a connection goes to is the one
//! last attached, so the supervisor detaches a sandbox as soon as it has reaped its init.
//!
//! Only TCP is forwarded: a published UDP port is an [`Error::Udp`], and
//! [`ServiceNet::ports`] are TCP ports. An `internal` network changes nothing here: a
//! sandbox has no route out anyway (egress is the runner's policy).
//!
//! The listeners for peers are made at [`Fabric::attach`] from the declarations then, like
//! the sandbox's `/etc/hosts`: a peer declared (or given a new port) later is reachable from
//! an already running sandbox after that sandbox's next start. Since a listener on
//! 127.0.0.K:PORT holds PORT for the wildcard address of that namespace, a program that
//! listens on 0.0.0.0 or `[::]` cannot use a port that a peer on its networks also listens
//! on ("address in use"); on 127.0.0.1 it can.
//!
//! The fabric decides nothing about *which* services exist or run: the supervisor tells it.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use nix::unistd::Pid;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::model::Protocol;
use crate::plan::DEFAULT_NETWORK;
use crate::runner::netns;

/// What the fabric needs to know of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNet {
    pub name: String,
    /// More names its peers know it by.
    pub aliases: Vec<String>,
    /// The networks it joins; none means the project's default network.
    pub networks: Vec<String>,
    /// The TCP ports peers may reach it on (its container ports).
    pub ports: Vec<u16>,
    pub publish: Vec<Publish>,
}

/// A port published on the host: `host_ip:host_port` forwards to the service's
/// `127.0.0.1:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl From<&crate::config::model::Port> for Publish {
    fn from(p: &crate::config::model::Port) -> Self {
        Self {
            host_ip: p.host_ip,
            host_port: p.host,
            container_port: p.container,
            protocol: p.protocol,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{service} is not declared to the native network")]
    Undeclared { service: String },
    #[error("{service} publishes {host}/udp: the native engine forwards tcp ports only")]
    Udp { service: String, host: SocketAddr },
    #[error("joining the network namespace of {service}'s sandbox (/proc/{pid}/ns/net): {source}")]
    Netns {
        service: String,
        pid: Pid,
        source: io::Error,
    },
    #[error(
        "cannot listen on {addr} inside {service}'s sandbox (the address of {peer}): {source}"
    )]
    PeerPort {
        service: String,
        peer: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot publish {service}'s port {container_port} on {addr}: {source}")]
    HostPort {
        service: String,
        container_port: u16,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// The supervisor's networking (see the module doc). Cheap to clone: clones share one
/// state. Dropping the last clone closes every listener.
#[derive(Clone, Default)]
pub struct Fabric {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    declared: BTreeMap<String, Declared>,
    attached: BTreeMap<String, Attached>,
}

struct Declared {
    net: ServiceNet,
    addr: Ipv4Addr,
}

struct Attached {
    pid: Pid,
    /// The accept loops of its listeners; aborting one closes its connections too.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for State {
    fn drop(&mut self) {
        for a in self.attached.values() {
            a.abort();
        }
    }
}

impl Attached {
    fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Where an accepted connection goes, decided again at each connection.
#[derive(Debug, Clone)]
enum Route {
    /// From `from`'s sandbox to `to`'s port.
    Peer { from: String, to: String, port: u16 },
    /// From the host to the service's own port.
    Published { service: String, port: u16 },
}

/// The first loopback address handed out (127.0.0.1 is each sandbox's own).
const FIRST: u32 = 2;

fn networks(s: &ServiceNet) -> impl Iterator<Item = &str> {
    let default: &[&str] = if s.networks.is_empty() {
        &[DEFAULT_NETWORK]
    } else {
        &[]
    };
    s.networks
        .iter()
        .map(String::as_str)
        .chain(default.iter().copied())
}

fn share_a_network(a: &ServiceNet, b: &ServiceNet) -> bool {
    networks(a).any(|n| networks(b).any(|m| m == n))
}

impl Fabric {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `s` known (at create); declaring a name again replaces its declaration and
    /// keeps its address.
    pub fn declare(&self, s: ServiceNet) {
        let mut st = self.lock();
        if let Some(d) = st.declared.get_mut(&s.name) {
            d.net = s;
            return;
        }
        let taken: Vec<u32> = st.declared.values().map(|d| u32::from(d.addr)).collect();
        let base = u32::from(Ipv4Addr::new(127, 0, 0, 0));
        let addr = (base + FIRST..)
            .find(|a| !taken.contains(a))
            .map(Ipv4Addr::from)
            .expect("fewer services than loopback addresses");
        st.declared
            .insert(s.name.clone(), Declared { net: s, addr });
    }

    /// Drops `service` and frees its address (at remove). Its own listeners stop (call
    /// [`Fabric::detach`] first to wait for that); connections to it through other
    /// sandboxes' listeners are closed at once from then on.
    pub fn forget(&self, service: &str) {
        let mut st = self.lock();
        st.declared.remove(service);
        if let Some(a) = st.attached.remove(service) {
            a.abort();
        }
    }

    /// The loopback address peers reach `service` on.
    pub fn address(&self, service: &str) -> Option<Ipv4Addr> {
        self.lock().declared.get(service).map(|d| d.addr)
    }

    /// The extra `/etc/hosts` lines of `service`'s sandbox (`RunSpec.hosts`): its own
    /// names as 127.0.0.1, then every peer it shares a network with, in address order.
    pub fn hosts_for(&self, service: &str) -> Vec<(String, Ipv4Addr)> {
        let st = self.lock();
        let Some(me) = st.declared.get(service) else {
            return Vec::new();
        };
        let names = |s: &ServiceNet| {
            std::iter::once(s.name.clone())
                .chain(s.aliases.iter().cloned())
                .collect::<Vec<_>>()
        };
        let mut out: Vec<(String, Ipv4Addr)> = names(&me.net)
            .into_iter()
            .map(|n| (n, Ipv4Addr::LOCALHOST))
            .collect();
        let mut peers: Vec<&Declared> = st
            .declared
            .values()
            .filter(|d| d.net.name != service && share_a_network(&me.net, &d.net))
            .collect();
        peers.sort_by_key(|d| d.addr);
        for d in peers {
            out.extend(names(&d.net).into_iter().map(|n| (n, d.addr)));
        }
        out
    }

    /// `service`'s sandbox is up with init `pid`: binds, inside its network namespace, the
    /// addresses of its peers, and on the host its published ports. All or nothing: on an
    /// error nothing stays bound. Attaching again replaces the previous sandbox.
    pub async fn attach(&self, service: &str, pid: Pid) -> Result<(), Error> {
        let (peers, publish) = {
            let st = self.lock();
            let me = st.declared.get(service).ok_or_else(|| Error::Undeclared {
                service: service.to_string(),
            })?;
            if let Some(p) = me.net.publish.iter().find(|p| p.protocol == Protocol::Udp) {
                return Err(Error::Udp {
                    service: service.to_string(),
                    host: SocketAddr::new(p.host_ip, p.host_port),
                });
            }
            let mut peers: Vec<(String, SocketAddr)> = Vec::new();
            for d in st.declared.values() {
                if d.net.name == service || !share_a_network(&me.net, &d.net) {
                    continue;
                }
                for &port in &d.net.ports {
                    let addr = SocketAddr::V4(SocketAddrV4::new(d.addr, port));
                    if !peers.iter().any(|(_, a)| *a == addr) {
                        peers.push((d.net.name.clone(), addr));
                    }
                }
            }
            (peers, me.net.publish.clone())
        };
        self.detach(service).await;

        // Said plainly here rather than as the first listener's error (or not at all, for a
        // service with only published ports).
        std::fs::metadata(format!("/proc/{pid}/ns/net")).map_err(|source| Error::Netns {
            service: service.to_string(),
            pid,
            source,
        })?;
        // Registered with the runtime as they are bound, and spawned only once all are:
        // on an error, dropping `bound` closes every one of them here and now.
        let mut bound: Vec<(TcpListener, Route)> = Vec::new();
        for (peer, addr) in peers {
            let l = in_blocking(move || netns::listen_tcp_in(pid, addr))
                .await
                .and_then(tokio_listener)
                .map_err(|source| Error::PeerPort {
                    service: service.to_string(),
                    peer: peer.clone(),
                    addr,
                    source,
                })?;
            let route = Route::Peer {
                from: service.to_string(),
                to: peer,
                port: addr.port(),
            };
            bound.push((l, route));
        }
        for p in publish {
            let addr = SocketAddr::new(p.host_ip, p.host_port);
            let l = std::net::TcpListener::bind(addr)
                .and_then(tokio_listener)
                .map_err(|source| Error::HostPort {
                    service: service.to_string(),
                    container_port: p.container_port,
                    addr,
                    source,
                })?;
            let route = Route::Published {
                service: service.to_string(),
                port: p.container_port,
            };
            bound.push((l, route));
        }
        let tasks = bound
            .into_iter()
            .map(|(l, route)| tokio::spawn(serve(l, Arc::downgrade(&self.state), route)))
            .collect();
        let old = self
            .lock()
            .attached
            .insert(service.to_string(), Attached { pid, tasks });
        if let Some(old) = old {
            old.abort();
        }
        Ok(())
    }

    /// `service`'s sandbox is gone: closes its listeners and host ports and the
    /// connections through them; returns once they are closed, so the ports can be bound
    /// again at once.
    pub async fn detach(&self, service: &str) {
        let Some(a) = self.lock().attached.remove(service) else {
            return;
        };
        a.abort();
        for t in a.tasks {
            // Resolves once the task, and the listener it owns, is dropped.
            let _ = t.await;
        }
    }
}

fn tokio_listener(l: std::net::TcpListener) -> io::Result<TcpListener> {
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// The network namespace a connection on `route` goes to now, with the address in it.
fn target(state: &Weak<Mutex<State>>, route: &Route) -> Option<(Pid, SocketAddr)> {
    let state = state.upgrade()?;
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    let (service, port) = match route {
        Route::Peer { from, to, port } => {
            let from = st.declared.get(from)?;
            let to = st.declared.get(to)?;
            if !share_a_network(&from.net, &to.net) || !to.net.ports.contains(port) {
                return None;
            }
            (&to.net.name, *port)
        }
        Route::Published { service, port } => (service, *port),
    };
    let pid = st.attached.get(service)?.pid;
    Some((pid, SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}

/// Accepts on `listener` until aborted; dropping this future drops the listener and every
/// connection made through it.
async fn serve(listener: TcpListener, state: Weak<Mutex<State>>, route: Route) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, _)) => match target(&state, &route) {
                    Some((pid, addr)) => {
                        conns.spawn(splice(inbound, pid, addr));
                    }
                    None => refuse(inbound),
                },
                // Out of descriptors, or the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Connects inside `pid`'s network namespace to `addr` and copies both ways until both
/// sides have closed.
async fn splice(mut inbound: TcpStream, pid: Pid, addr: SocketAddr) {
    let out = in_blocking(move || netns::connect_tcp_in(pid, addr))
        .await
        .and_then(|out| {
            out.set_nonblocking(true)?;
            TcpStream::from_std(out)
        });
    let Ok(mut out) = out else {
        refuse(inbound);
        return;
    };
    // The ends decide about batching; the relay passes each piece on as it comes.
    let _ = inbound.set_nodelay(true);
    let _ = out.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional_with_sizes(&mut inbound, &mut out, BUF, BUF).await;
}

/// Closes a connection that has nowhere to go with a reset, so that the client sees a
/// failure (as it would on a refused connection) and not an empty answer.
fn refuse(inbound: TcpStream) {
    let _ = inbound.set_zero_linger();
    drop(inbound);
}

/// Each direction's copy buffer: big enough that a bulk transfer is not a syscall per
/// 8 KiB (tokio's default).
const BUF: usize = 64 * 1024;

/// Runs `f`, which waits on a thread of its own, off the runtime's threads.
async fn in_blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("making a socket in a sandbox: {e}")))?
}

#[cfg(test)]
mod tests;
