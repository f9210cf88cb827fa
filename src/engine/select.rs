//! Which engine, on which socket: `--engine` / `DEVBOX_ENGINE` / `[project] engine` pick
//! the kind (already merged by config loading); the socket comes from
//! `CONTAINER_HOST` / `DOCKER_HOST`, then the usual places, each probed with a short
//! deadline so a socket that accepts and never answers is passed over. When Podman is
//! installed but nothing listens, devbox runs `podman system service` for the command's
//! duration.

use std::fmt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{AnyEngine, Deadlined, EngineError, ErrorKind, Limits};
use crate::config::model::EngineChoice;
use crate::process;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Podman,
    Docker,
    /// devbox's own runner: one sandbox per service, no container engine.
    Native,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Podman => "podman",
            Kind::Docker => "docker",
            Kind::Native => "native",
        })
    }
}

/// A socket to talk to, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: Kind,
    pub socket: PathBuf,
    pub reason: String,
}

/// The outcome of [`discover`]: an endpoint that answers, or one devbox should start.
#[derive(Debug)]
pub enum Selection {
    Ready(Endpoint),
    /// Podman is installed but no socket answers; `connect` starts a service here.
    StartPodman(PathBuf),
}

fn unix_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("unix://").map(PathBuf::from)
}

/// Whether something accepts connections on the socket.
pub fn listening(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

fn runtime_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let uid = nix::unistd::getuid();
            let p = PathBuf::from(format!("/run/user/{uid}"));
            p.is_dir().then_some(p)
        })
}

fn podman_candidates() -> Vec<(PathBuf, String)> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var("CONTAINER_HOST")
        .ok()
        .as_deref()
        .and_then(unix_path)
    {
        c.push((p, "CONTAINER_HOST".to_owned()));
    }
    if !nix::unistd::getuid().is_root() {
        if let Some(d) = runtime_dir() {
            c.push((
                d.join("podman/podman.sock"),
                "the rootless Podman socket".to_owned(),
            ));
        }
    }
    c.push((
        PathBuf::from("/run/podman/podman.sock"),
        "the rootful Podman socket".to_owned(),
    ));
    c
}

/// Every socket devbox considers, in the order `auto` tries them, each once.
pub fn candidates() -> Vec<(Kind, PathBuf, String)> {
    let mut seen = std::collections::BTreeSet::new();
    podman_candidates()
        .into_iter()
        .map(|(p, r)| (Kind::Podman, p, r))
        .chain(
            docker_candidates()
                .into_iter()
                .map(|(p, r)| (Kind::Docker, p, r)),
        )
        .filter(|(_, p, _)| seen.insert(p.clone()))
        .collect()
}

fn docker_candidates() -> Vec<(PathBuf, String)> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var("DOCKER_HOST")
        .ok()
        .as_deref()
        .and_then(unix_path)
    {
        c.push((p, "DOCKER_HOST".to_owned()));
    }
    c.push((
        PathBuf::from("/var/run/docker.sock"),
        "the Docker socket".to_owned(),
    ));
    c
}

fn podman_installed() -> bool {
    process::which("podman").is_some()
}

fn not_found(kind: Kind, tried: &[(PathBuf, String)]) -> EngineError {
    let list: Vec<String> = tried
        .iter()
        .map(|(p, why)| format!("{} ({why})", p.display()))
        .collect();
    EngineError {
        engine: kind,
        socket: tried.first().map(|t| t.0.clone()).unwrap_or_default(),
        kind: ErrorKind::Unreachable,
        message: format!("no engine answers; tried {}", list.join(", ")),
    }
}

/// Whether an engine answers on the socket within `within`: an HTTP status line in reply
/// to `GET /_ping` (Podman and Docker both serve it). `Err` says how it failed. Something
/// that accepts and then says nothing is as good as nothing.
pub fn answers(socket: &Path, within: Duration) -> Result<(), String> {
    if !socket.exists() {
        return Err("no socket".to_owned());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot probe: {e}"))?;
    rt.block_on(async {
        match tokio::time::timeout(within, ping(socket)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "did not answer within {}",
                super::deadline::show(within)
            )),
        }
    })
}

async fn ping(socket: &Path) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: devbox\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.contains(&b'\n') {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        if n == 0 {
            return Err("closed the connection without answering".to_owned());
        }
        got.extend_from_slice(&buf[..n]);
    }
    if got.starts_with(b"HTTP/1.") {
        Ok(())
    } else {
        Err("answered, but not in HTTP".to_owned())
    }
}

/// The first candidate that answers within the probe deadline; each that does not is
/// added to `tried`, and said on stderr when the user named it or it accepts connections
/// (a hung engine; a missing or refusing socket in a usual place is no news).
fn first_answering(
    candidates: Vec<(Kind, PathBuf, String)>,
    limits: Limits,
    tried: &mut Vec<(PathBuf, String)>,
) -> Option<Endpoint> {
    for (kind, socket, reason) in candidates {
        match answers(&socket, limits.probe()) {
            Ok(()) => {
                return Some(Endpoint {
                    kind,
                    socket,
                    reason,
                })
            }
            Err(why) => {
                if reason.ends_with("_HOST") || listening(&socket) {
                    eprintln!(
                        "devbox: skipping {kind} at {} ({reason}): {why}",
                        socket.display()
                    );
                }
                tried.push((socket, format!("{reason}: {why}")));
            }
        }
    }
    None
}

/// `podman system service` on the first Podman socket path, when Podman is installed and
/// nothing listens there (never on a socket something holds, however dead).
fn start_podman(tried: &[(PathBuf, String)]) -> Result<Selection, EngineError> {
    let first = podman_candidates().swap_remove(0).0;
    if podman_installed() && !listening(&first) {
        return Ok(Selection::StartPodman(first));
    }
    Err(not_found(Kind::Podman, tried))
}

/// Finds the engine to use without starting anything. `auto` (and `podman` without
/// `CONTAINER_HOST`) take the first socket that answers within [`Limits::probe`].
pub fn discover(choice: EngineChoice, limits: Limits) -> Result<Selection, EngineError> {
    let ready = |kind, (socket, reason): (PathBuf, String)| {
        Selection::Ready(Endpoint {
            kind,
            socket,
            reason,
        })
    };
    let mut tried = Vec::new();
    match choice {
        EngineChoice::Podman => {
            let c = podman_candidates();
            // An explicit CONTAINER_HOST is used as given, answering or not.
            if std::env::var_os("CONTAINER_HOST").is_some() {
                return Ok(ready(Kind::Podman, c[0].clone()));
            }
            let c = c.into_iter().map(|(p, r)| (Kind::Podman, p, r)).collect();
            if let Some(ep) = first_answering(c, limits, &mut tried) {
                return Ok(Selection::Ready(ep));
            }
            start_podman(&tried)
        }
        EngineChoice::Docker => {
            let c = docker_candidates();
            Ok(ready(Kind::Docker, c[0].clone()))
        }
        EngineChoice::Auto | EngineChoice::Native => {
            // CONTAINER_HOST and DOCKER_HOST first, then the usual places.
            let mut order = candidates();
            order.sort_by_key(|(_, _, reason)| !reason.ends_with("_HOST"));
            if let Some(ep) = first_answering(order, limits, &mut tried) {
                return Ok(Selection::Ready(ep));
            }
            start_podman(&tried)
        }
    }
}

/// A `podman system service` devbox started; stopped when dropped.
pub struct ServiceGuard(Option<std::process::Child>);

impl ServiceGuard {
    /// Nothing to stop.
    pub fn none() -> Self {
        Self(None)
    }
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connects to the chosen engine, starting `podman system service` when needed.
pub fn connect(
    choice: EngineChoice,
    limits: Limits,
) -> Result<(Deadlined, Endpoint, ServiceGuard), EngineError> {
    match discover(choice, limits)? {
        Selection::Ready(ep) => Ok((open(&ep, limits), ep, ServiceGuard(None))),
        Selection::StartPodman(socket) => {
            let socket = if socket
                .parent()
                .is_some_and(|p| std::fs::create_dir_all(p).is_ok())
            {
                socket
            } else {
                std::env::temp_dir().join(format!("devbox-podman-{}.sock", std::process::id()))
            };
            let child = process::spawn_quiet(
                "podman",
                &[
                    "system",
                    "service",
                    "--time=0",
                    &format!("unix://{}", socket.display()),
                ],
            )
            .map_err(|e| EngineError {
                engine: Kind::Podman,
                socket: socket.clone(),
                kind: ErrorKind::Unreachable,
                message: format!("starting `podman system service`: {e}"),
            })?;
            let guard = ServiceGuard(Some(child));
            let start = Instant::now();
            while !listening(&socket) {
                if start.elapsed() > Duration::from_secs(10) {
                    return Err(EngineError {
                        engine: Kind::Podman,
                        socket,
                        kind: ErrorKind::Unreachable,
                        message:
                            "started `podman system service`, but it did not answer within 10s"
                                .into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "devbox: no Podman socket was listening; started `podman system service` on {} for this command (`systemctl --user enable --now podman.socket` keeps one running)",
                socket.display()
            );
            let ep = Endpoint {
                kind: Kind::Podman,
                socket,
                reason: "started by devbox".into(),
            };
            Ok((open(&ep, limits), ep, guard))
        }
    }
}

/// The engine on the endpoint, every call bounded by `limits`.
pub fn open(ep: &Endpoint, limits: Limits) -> Deadlined {
    let inner = match ep.kind {
        Kind::Podman => AnyEngine::Podman(Box::new(super::podman::Podman::new(&ep.socket))),
        Kind::Docker => AnyEngine::Docker(super::docker::Docker::new(&ep.socket)),
        Kind::Native => AnyEngine::Native(super::native::Native::new()),
    };
    Deadlined::new(inner, &ep.socket, limits)
}
