//! A Unix-socket round trip made by devbox itself from inside a container's namespaces, so
//! a `uds` probe with `in = "SERVICE"` needs nothing from the image: no socat, nc or
//! python. devbox starts itself again (`devbox __probe-uds`, a fresh single-threaded
//! process, since a process with threads cannot join a user namespace), joins the
//! container's user namespace when it has its own, then its network namespace (abstract
//! sockets live there) and mount namespace, takes the container's root, and connects.
//!
//! Rootless Podman's containers run under subordinate uids that the caller cannot look
//! into from the host; the engine's monitor process (conmon) runs as the caller inside the
//! engine's user namespace, so devbox joins that namespace first, where it holds every
//! capability, and the container's from there.
//!
//! Only for engines on this host (a local socket and a pid the kernel here knows); the
//! probe falls back to a client in the image otherwise.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

/// The exit code of `devbox __probe-uds` when it could not enter the container (as
/// opposed to entering and finding the socket wrong); the probe then falls back.
pub const CANNOT_ENTER: i32 = 125;

/// Where the container's processes are, as the engine reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The container's first process, on this host.
    pub pid: u32,
    /// The engine's monitor of that container (Podman's conmon), in the engine's user
    /// namespace and running as the caller, when the engine has one.
    pub monitor_pid: Option<u32>,
}

fn open_ns(pid: u32, ns: &str) -> std::io::Result<File> {
    File::open(format!("/proc/{pid}/ns/{ns}"))
}

fn same_ns(a: &File, b: &File) -> bool {
    match (
        nix::sys::stat::fstat(a.as_fd()),
        nix::sys::stat::fstat(b.as_fd()),
    ) {
        (Ok(x), Ok(y)) => x.st_ino == y.st_ino && x.st_dev == y.st_dev,
        _ => false,
    }
}

fn join(f: &File, kind: CloneFlags, what: &str, pid: u32) -> Result<(), String> {
    setns(f.as_fd(), kind).map_err(|e| format!("joining the {what} namespace of pid {pid}: {e}"))
}

/// Joins `t`'s namespaces and root. Must run in a single-threaded process; afterwards the
/// process sees only the container's file system.
pub fn enter(t: Target) -> Result<(), String> {
    let pid = t.pid;
    let own_user =
        open_ns(std::process::id(), "user").map_err(|e| format!("own user namespace: {e}"))?;
    let user = match open_ns(pid, "user") {
        Ok(f) => f,
        // A container under subordinate uids: join the engine's namespace first.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let Some(monitor) = t.monitor_pid else {
                return Err(format!("cannot look into pid {pid}: {e}"));
            };
            let outer = open_ns(monitor, "user")
                .map_err(|e| format!("the engine's user namespace (pid {monitor}): {e}"))?;
            if !same_ns(&outer, &own_user) {
                join(&outer, CloneFlags::CLONE_NEWUSER, "user", monitor)?;
            }
            open_ns(pid, "user").map_err(|e| format!("user namespace of pid {pid}: {e}"))?
        }
        Err(e) => return Err(format!("user namespace of pid {pid}: {e}")),
    };
    let current =
        open_ns(std::process::id(), "user").map_err(|e| format!("own user namespace: {e}"))?;
    if !same_ns(&user, &current) {
        join(&user, CloneFlags::CLONE_NEWUSER, "user", pid)?;
    }
    let net = open_ns(pid, "net").map_err(|e| format!("network namespace of pid {pid}: {e}"))?;
    let mnt = open_ns(pid, "mnt").map_err(|e| format!("mount namespace of pid {pid}: {e}"))?;
    let root =
        File::open(format!("/proc/{pid}/root")).map_err(|e| format!("root of pid {pid}: {e}"))?;
    join(&net, CloneFlags::CLONE_NEWNET, "network", pid)?;
    join(&mnt, CloneFlags::CLONE_NEWNS, "mount", pid)?;
    nix::unistd::fchdir(root.as_fd())
        .map_err(|e| format!("entering the root of pid {pid}: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("taking the root of pid {pid}: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Connects to `path` (`@name` for an abstract socket), sends `send`, closes the writing
/// side and reads the answer until the peer closes or `timeout` has gone since the
/// connection (what was read by then is the answer, as with `socat -t`).
pub fn round_trip(path: &str, send: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let mut s = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
                .map_err(|e| format!("{path}: {e}"))?;
            UnixStream::connect_addr(&addr)
        }
        None => UnixStream::connect(path),
    }
    .map_err(|e| format!("{path}: {e}"))?;
    let start = Instant::now();
    s.set_write_timeout(Some(timeout))
        .and_then(|()| s.write_all(send))
        .map_err(|e| format!("{path}: sending: {e}"))?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left))
            .map_err(|e| format!("{path}: {e}"))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{path}: reading: {e}")),
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_reads_until_the_peer_closes_and_stops_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let p = path.to_str().unwrap().to_owned();
        let server = std::thread::spawn(move || {
            // Echo, then close: the answer is complete.
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            c.write_all(&got).unwrap();
            drop(c);
            // Answer and keep the connection open: the timeout ends the read.
            let (mut c, _) = l.accept().unwrap();
            c.write_all(b"hello").unwrap();
            std::thread::sleep(Duration::from_millis(600));
        });
        assert_eq!(
            round_trip(&p, b"ping", Duration::from_secs(5)).unwrap(),
            b"ping"
        );
        let t = Instant::now();
        assert_eq!(
            round_trip(&p, b"", Duration::from_millis(200)).unwrap(),
            b"hello"
        );
        assert!(
            t.elapsed() < Duration::from_millis(550),
            "{:?}",
            t.elapsed()
        );
        server.join().unwrap();
        let err = round_trip(
            dir.path().join("none").to_str().unwrap(),
            b"",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            err.ends_with("No such file or directory (os error 2)"),
            "{err}"
        );
    }
}
