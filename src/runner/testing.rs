//! Real runs for the runner's own tests: a sandbox needs a single-threaded process, which
//! the test harness is not, so each run happens in a forked child (as root, or as an
//! ordinary user) that reports back through a pipe.

use std::io::Read;
use std::path::PathBuf;

use nix::libc;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use super::spec::{Mount, MountKind, Net, RunSpec, DEFAULT_PATH, DEFAULT_READ};
use crate::config::model::Limits;

/// The ordinary user the unprivileged runs become when the tests run as root.
pub(crate) const ORDINARY: (u32, u32) = (1001, 1001);

/// Who the forked child is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum As {
    /// The caller (root, when the tests run as root).
    Caller,
    /// An ordinary user: [`ORDINARY`] when the tests run as root, else the caller.
    Ordinary,
}

/// Runs `f` in a forked child, as `who`; its `Err` (or panic) comes back as `Err`.
pub(crate) fn in_fork(who: As, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    // SAFETY: the child runs only `f` and exits; it never returns into the harness.
    match unsafe { fork() }.map_err(|e| e.to_string())? {
        ForkResult::Child => {
            drop(r);
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if who == As::Ordinary {
                    become_ordinary()?;
                }
                f()
            }))
            .unwrap_or_else(|_| Err("the test panicked".into()));
            let code = match res {
                Ok(()) => 0,
                Err(e) => {
                    let _ = nix::unistd::write(&w, e.as_bytes());
                    1
                }
            };
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            match waitpid(child, None).map_err(|e| e.to_string())? {
                WaitStatus::Exited(_, 0) => Ok(()),
                WaitStatus::Exited(_, _) => Err(msg),
                other => Err(format!("the test's child ended with {other:?}: {msg}")),
            }
        }
    }
}

fn become_ordinary() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let (uid, gid) = ORDINARY;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let g = nix::unistd::Gid::from_raw(gid);
    let u = nix::unistd::Uid::from_raw(uid);
    nix::unistd::setresgid(g, g, g).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(u, u, u).map_err(|e| format!("setresuid: {e}"))?;
    // A changed uid makes the process undumpable, and its /proc files root's: the user
    // namespace's maps could not be written.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    Ok(())
}

/// `sh -c script` in a sandbox showing the default read-only paths and `rw` writable,
/// with no network and a 20 s timeout.
pub(crate) fn sh(script: &str, rw: &[PathBuf]) -> RunSpec {
    let mut mounts: Vec<Mount> = DEFAULT_READ
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .map(|path| Mount {
            path,
            kind: MountKind::ReadOnly,
            source: None,
        })
        .collect();
    mounts.extend(rw.iter().map(|p| Mount {
        path: p.clone(),
        kind: MountKind::ReadWrite,
        source: None,
    }));
    RunSpec {
        name: "test".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        workdir: "/tmp".into(),
        env: vec![("PATH".into(), DEFAULT_PATH.into())],
        mounts,
        tmpfs: vec![],
        hosts: vec![],
        user: None,
        net: Net::None,
        exec_allow: vec![],
        limits: Limits {
            timeout_ms: Some(20_000),
            ..Limits::default()
        },
        decisions: vec![],
    }
}

/// Options for a test run: no audit, warnings dropped.
pub(crate) fn options() -> super::supervisor::Options {
    super::supervisor::Options {
        audit: std::sync::Arc::new(super::AuditLog::discard()),
        no_landlock: false,
        warn: Box::new(|_| {}),
        on_ready: None,
        on_started: None,
        control: false,
        before_go: None,
    }
}

/// Whether a process `pid` exists.
pub(crate) fn alive(pid: nix::unistd::Pid) -> bool {
    nix::sys::signal::kill(pid, None).is_ok()
}
