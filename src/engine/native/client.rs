//! The client side of a project's supervisor: starting it (once, under a lock, detached)
//! and asking it one question per connection.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use std::os::unix::ffi::OsStringExt;

use super::def::{Request, Response};
use super::paths::{make_private, ProjectDir};
use crate::runner::cgroup;

/// Why a question got no answer.
#[derive(Debug)]
pub enum AskError {
    /// No supervisor listens (none was started, or it has exited).
    Absent,
    Io(String),
}

/// The lock taken to start a supervisor (and by a supervisor on its way out).
pub fn lock(pd: &ProjectDir) -> std::io::Result<Flock<File>> {
    make_private(&pd.dir)?;
    let path = pd.lock_file();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::other(format!("locking {}: {e}", path.display())))
}

/// Starts the project's supervisor unless one answers, and waits for its socket. One
/// started with an `owner` exits when that process does.
pub fn ensure(pd: &ProjectDir, owner: Option<u32>) -> Result<(), String> {
    let _lock = lock(pd).map_err(|e| e.to_string())?;
    let socket = pd.socket();
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Ok(());
    }
    let exe: PathBuf =
        std::env::current_exe().map_err(|e| format!("finding devbox itself: {e}"))?;
    let log = crate::fsutil::open_append(&pd.supervisor_log(), 0o600).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = crate::process::command(&exe.display().to_string());
    cmd.arg("__native-supervisor")
        .arg("--dir")
        .arg(&pd.dir)
        .args(owner.map(|p| format!("--owner={p}")))
        .stdout(log)
        .stderr(err);
    let nest = nest_for(pd, &mut cmd)?;
    let mut child = cmd.spawn().map_err(|e| {
        forget_nest(pd, nest.as_ref());
        format!("starting the supervisor: {e}")
    })?;
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Ok(Some(s)) = child.try_wait() {
            return Err(format!(
                "the supervisor exited at once ({s}); see {}",
                pd.supervisor_log().display()
            ));
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "the supervisor did not listen on {} within 10s; see {}",
                socket.display(),
                pd.supervisor_log().display()
            ));
        }
        // It listens within a few milliseconds of its start.
        std::thread::sleep(Duration::from_millis(1));
    }
    // It lives on in its own session; this process does not wait for it.
    drop(child);
    Ok(())
}

/// An ordinary user's supervisor on cgroup v2 lives in a cgroup nest of its own, so that
/// its services can have cgroups with limits (`runner::cgroup::Nest`): made here, from
/// the caller's delegated cgroup, and joined by the supervisor before it execs. Where
/// none can be had, the services fall back as the runner does (each says why in its log).
/// A nest an earlier supervisor left (it was killed) goes first.
fn nest_for(
    pd: &ProjectDir,
    cmd: &mut std::process::Command,
) -> Result<Option<cgroup::Nest>, String> {
    remove_nest(pd);
    let name = pd
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nest = match cgroup::Nest::make(&name) {
        Ok(Ok(n)) => n,
        Ok(Err(_declined)) => return Ok(None),
        Err(e) => return Err(format!("making the supervisor's cgroup: {e}")),
    };
    let recorded = crate::fsutil::write_atomic(
        &pd.cgroup_file(),
        nest.dir().as_os_str().as_encoded_bytes(),
        0o600,
    );
    let joined = recorded.map_err(|e| e.to_string()).and_then(|()| {
        cgroup::join_before_exec(cmd, &nest.supervisor()).map_err(|e| e.to_string())
    });
    if let Err(e) = joined {
        forget_nest(pd, Some(&nest));
        return Err(format!("making the supervisor's cgroup: {e}"));
    }
    cmd.arg("--cgroup").arg(nest.dir());
    Ok(Some(nest))
}

fn forget_nest(pd: &ProjectDir, nest: Option<&cgroup::Nest>) {
    if let Some(n) = nest {
        let _ = n.remove();
    }
    let _ = std::fs::remove_file(pd.cgroup_file());
}

/// Removes the nest of a supervisor that has exited, with whatever is left in it.
fn remove_nest(pd: &ProjectDir) {
    let Ok(dir) = std::fs::read(pd.cgroup_file()) else {
        return;
    };
    let dir = PathBuf::from(std::ffi::OsString::from_vec(dir));
    forget_nest(pd, cgroup::Nest::at(&dir).as_ref());
}

/// Asks the project's supervisor to exit if it holds nothing, and waits until it has.
/// Whether one was there to ask, or holds something still, is all the same to the caller.
pub async fn release(pd: &ProjectDir) -> Result<(), AskError> {
    if !pd.dir.exists() {
        return Ok(());
    }
    let pid = std::fs::read_to_string(pd.pid_file())
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    if let Some(pid) = pid {
        match ask(pd, &Request::Shutdown).await {
            Ok(r) if r.error.is_none() => wait_for_exit(nix::unistd::Pid::from_raw(pid)).await?,
            // It holds something again (another `up`): it stays.
            Ok(_) => return Ok(()),
            Err(AskError::Absent) => {}
            Err(e) => return Err(e),
        }
    }
    // Its nest goes once no supervisor answers (also one left by a killed supervisor),
    // under the lock a supervisor starting takes.
    if let Ok(_lock) = lock(pd) {
        if std::os::unix::net::UnixStream::connect(pd.socket()).is_err() {
            remove_nest(pd);
        }
    }
    Ok(())
}

async fn wait_for_exit(pid: nix::unistd::Pid) -> Result<(), AskError> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        // This process's own child (it started it) is reaped, not left a zombie.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return Ok(()),
            Err(_) if ended(pid) => return Ok(()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(AskError::Io(format!(
        "the supervisor (pid {pid}) did not exit within 5s of being asked"
    )))
}

/// Whether `pid` is gone (or a zombie, whose parent is not this process).
fn ended(pid: nix::unistd::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// One request, one answer.
pub async fn ask(pd: &ProjectDir, req: &Request) -> Result<Response, AskError> {
    let socket = pd.socket();
    let mut s = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AskError::Absent)
        }
        Err(e) => return Err(AskError::Io(format!("{}: {e}", socket.display()))),
    };
    // A supervisor that exits (it held nothing) closes the connections it had not
    // answered: it never acted on them, since it exits holding its state's lock.
    let gone = |e: std::io::Error, doing: &str| match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => AskError::Absent,
        _ => AskError::Io(format!("{}: {doing}: {e}", socket.display())),
    };
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    s.write_all(&line).await.map_err(|e| gone(e, "sending"))?;
    let mut r = tokio::io::BufReader::new(s);
    let mut answer = String::new();
    let n = r
        .read_line(&mut answer)
        .await
        .map_err(|e| gone(e, "reading"))?;
    if n == 0 {
        // It exited between accepting and answering (it had nothing left to hold).
        return Err(AskError::Absent);
    }
    serde_json::from_str(&answer).map_err(|e| {
        AskError::Io(format!(
            "{}: an answer devbox cannot read: {e}",
            socket.display()
        ))
    })
}
