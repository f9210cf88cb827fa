//! Sockets in a sandbox's network namespace, made from outside it: a listener a worker
//! reaches at an address of its own loopback, or a connection to one a worker listens on.
//! Each socket is created by a short-lived thread that joins the namespace of the sandbox's
//! init (`setns`), so the calling thread never leaves its own; the socket stays in the
//! namespace it was made in after the thread is gone.
//!
//! `setns` into a network namespace needs CAP_SYS_ADMIN both in the user namespace that owns
//! it and in the caller's own. Root has both. An ordinary user has neither in its own user
//! namespace, so it first calls [`own_user_namespace`]: the sandboxes it starts after that
//! are nested in a user namespace it holds every capability of.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;

use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::Pid;

/// A TCP listener bound to `addr` in the network namespace of `pid`.
pub fn listen_tcp_in(pid: Pid, addr: SocketAddr) -> io::Result<TcpListener> {
    in_netns(pid, move || TcpListener::bind(addr))
}

/// A TCP connection to `addr` made in the network namespace of `pid`.
pub fn connect_tcp_in(pid: Pid, addr: SocketAddr) -> io::Result<TcpStream> {
    in_netns(pid, move || TcpStream::connect(addr))
}

/// Runs `f` on a thread that has joined the network namespace of `pid`.
fn in_netns<T: Send + 'static>(
    pid: Pid,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = File::open(&path).map_err(|e| named(e, &path))?;
    std::thread::Builder::new()
        .name("devbox-netns".into())
        .spawn(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| named(io::Error::from(e), &format!("joining {path}")))?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("the thread joining the network namespace panicked"))?
}

fn named(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// For a caller that is not root: moves it into a new user namespace of its own, its uid
/// and gid mapped to themselves, so that it may `setns` into the network namespaces of the
/// sandboxes it (or a child) starts afterwards. Files keep their owners; ids the caller's
/// user namespace does not map show as `nobody`, and `setgroups` is denied in it. Must be
/// called while the process has one thread (`unshare` refuses otherwise). A no-op for root.
pub fn own_user_namespace() -> io::Result<()> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if uid.is_root() {
        return Ok(());
    }
    unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| named(io::Error::from(e), "creating a user namespace"))?;
    for (path, text) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("{uid} {uid} 1")),
        ("/proc/self/gid_map", format!("{gid} {gid} 1")),
    ] {
        std::fs::write(path, text).map_err(|e| named(e, &format!("writing {path}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::runner::supervisor;
    use crate::runner::testing::{in_fork, options, sh, As};

    /// A worker that listens on 127.0.0.1:9090, says "from inside" to 127.0.0.2:8080, then
    /// serves one "served inside" on 9090.
    const WORKER: &str = r#"
        my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 9090,
            Listen => 1, ReuseAddr => 1) or die "listen: $!";
        my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.2", PeerPort => 8080)
            or die "connect: $!";
        print $c "from inside\n";
        close $c;
        my $a = $l->accept or die "accept: $!";
        print $a "served inside\n";
        close $a;
    "#;

    /// Runs [`WORKER`] with a listener made in its namespace from `before_go`; returns what
    /// came in on the listener and what the worker's own listener served.
    fn both_ways() -> Result<(String, String), String> {
        let mut spec = sh("", &[]);
        spec.argv = ["perl", "-MIO::Socket::INET", "-e", WORKER]
            .map(String::from)
            .to_vec();
        let (tx, rx) = mpsc::channel();
        let mut opts = options();
        opts.before_go = Some(Box::new(move |pid| {
            let l = listen_tcp_in(pid, "127.0.0.2:8080".parse().unwrap())
                .map_err(|e| format!("listen_tcp_in: {e}"))?;
            std::thread::spawn(move || {
                let got = (|| -> io::Result<(String, String)> {
                    let (mut c, _) = l.accept()?;
                    let mut heard = String::new();
                    c.read_to_string(&mut heard)?;
                    let mut s = connect_tcp_in(pid, "127.0.0.1:9090".parse().unwrap())?;
                    s.set_read_timeout(Some(Duration::from_secs(10)))?;
                    let mut served = String::new();
                    s.read_to_string(&mut served)?;
                    Ok((heard, served))
                })();
                let _ = tx.send(got.map_err(|e| e.to_string()));
            });
            Ok(())
        }));
        let out = supervisor::run(&spec, opts).map_err(|e| e.to_string())?;
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("no connection from the worker ({out:?})"))??;
        if out.code != 0 {
            return Err(format!("the worker failed: {out:?}"));
        }
        Ok(got)
    }

    fn expect_both_ways() -> Result<(), String> {
        let got = both_ways()?;
        if got != ("from inside\n".into(), "served inside\n".into()) {
            return Err(format!("got {got:?}"));
        }
        Ok(())
    }

    #[test]
    fn sockets_are_made_in_the_sandboxs_network_namespace_as_root() {
        in_fork(As::Caller, expect_both_ways).unwrap();
    }

    #[test]
    fn sockets_are_made_in_the_sandboxs_network_namespace_by_an_ordinary_user() {
        in_fork(As::Ordinary, || {
            own_user_namespace().map_err(|e| e.to_string())?;
            expect_both_ways()
        })
        .unwrap();
    }

    #[test]
    fn an_ordinary_user_needs_its_own_user_namespace() {
        // Without it, setns is refused (no CAP_SYS_ADMIN in the caller's user namespace).
        let err = in_fork(As::Ordinary, || both_ways().map(drop)).unwrap_err();
        assert!(
            err.starts_with("listen_tcp_in: joining /proc/")
                && err.ends_with("/ns/net: Operation not permitted (os error 1)"),
            "{err}"
        );
    }
}
