//! The outside of a sandbox: devbox as the trusted supervisor. It plans everything while
//! still single-threaded, clones the sandbox's init into new user, pid, mount, uts, ipc,
//! cgroup and (unless `net = "host"`) network namespaces, puts it in a cgroup, serves the
//! egress proxy and the control socket from the listeners the init hands out, forwards
//! signals (and kills the sandbox when a stop signal is not heeded within the grace
//! period), enforces the wall-clock timeout, and reports how the worker ended.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::unistd::Pid;

use super::audit::{AuditLog, Event};
use super::rootfs::{self, RealFs};
use super::sandbox::{self, Fds, Inside};
use super::spec::{MountKind, Net, RunSpec};
use crate::config::model::Decision;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Setup(String),
    #[error("exec of `{what}` denied by the policy: it is not in exec.allow")]
    ExecDenied { what: String },
    #[error("the sandbox could not be set up: {0}")]
    Inside(String),
    #[error("devbox run must start from a single-threaded process (this one has {0} threads)")]
    Threaded(usize),
    /// `Options::before_go` refused: the sandbox was killed before the worker started.
    #[error("{0}")]
    BeforeGo(String),
}

/// Options that are not part of the policy.
pub struct Options {
    pub audit: Arc<AuditLog>,
    /// Enforce `exec.allow` with mounts even when Landlock is available (tests the
    /// fallback; also `DEVBOX_NO_LANDLOCK=1`).
    pub no_landlock: bool,
    /// Called with each warning (missing paths, limits that could not be applied).
    pub warn: Box<dyn Fn(&str)>,
    /// Called once when the worker says READY on the control socket.
    pub on_ready: Option<Box<dyn FnOnce() + Send>>,
    /// Serve the control socket.
    pub control: bool,
    /// Called with the sandbox init's pid (as this process's pid namespace numbers it) once
    /// the init has set the sandbox up (ids mapped, loopback up, mounts done, root pivoted)
    /// and waits for "go", before the worker starts: the moment to open sockets in its
    /// network namespace (see `netns`). An `Err` kills the sandbox and `run` returns
    /// [`Error::BeforeGo`] with it.
    pub before_go: Option<BeforeGo>,
}

/// See [`Options::before_go`].
pub type BeforeGo = Box<dyn FnOnce(Pid) -> Result<(), String>>;

/// How the worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code to pass on: the worker's, or 128 + signal.
    pub code: i32,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub pids_limit_hit: bool,
    /// The worker could not be executed (not found, not allowed, …).
    pub exec_error: Option<String>,
    /// Why the sandbox was killed after a stop signal: the grace period ran out, or a
    /// second stop signal came.
    pub stop_killed: Option<String>,
}

/// How long a worker has to stop after SIGTERM, SIGINT or SIGHUP before its sandbox is
/// killed, unless `limits.stop_grace` or `--stop-grace` says otherwise (as `docker stop`).
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;

/// `/proc/self/status`, read once per run for the fields below.
fn proc_status() -> String {
    std::fs::read_to_string("/proc/self/status").unwrap_or_default()
}

/// A field of a `/proc/PID/status` text, trimmed.
fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The thread count in a status text (1 when it cannot be read).
fn threads_in(status: &str) -> usize {
    status_field(status, "Threads")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The calling process's thread count.
pub fn threads() -> usize {
    threads_in(&proc_status())
}

/// The signals a status text says are ignored (`SigIgn`, a hexadecimal mask of signal
/// numbers - 1); all but SIGKILL and SIGSTOP when it cannot be read, to be safe.
fn ignored_signals(status: &str) -> Vec<i32> {
    let Some(mask) = status_field(status, "SigIgn").and_then(|m| u64::from_str_radix(m, 16).ok())
    else {
        return (1..libc::SIGRTMAX())
            .filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
            .collect();
    };
    (1..=64).filter(|s| mask & (1u64 << (s - 1)) != 0).collect()
}

/// `prog` as an exec on `path` finds it: as given with a slash, else the first file.
fn which_in(prog: &str, path: &[PathBuf]) -> Option<PathBuf> {
    if prog.contains('/') {
        return Some(PathBuf::from(prog));
    }
    path.iter().map(|d| d.join(prog)).find(|p| p.is_file())
}

/// The signals forwarded to the worker, plus SIGCHLD, all read through signalfds.
fn forwarded() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        s.add(sig);
    }
    s
}

/// Runs `spec` to completion.
pub fn run(spec: &RunSpec, mut opts: Options) -> Result<Outcome, Error> {
    let status = proc_status();
    let n = threads_in(&status);
    if n > 1 {
        return Err(Error::Threaded(n));
    }
    let audit = opts.audit.clone();
    let start = Instant::now();
    let env_path: Vec<PathBuf> = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::env::split_paths(v).collect())
        .unwrap_or_default();
    let prog = spec
        .argv
        .first()
        .ok_or_else(|| Error::Setup("no command to run".into()))?;
    // With an allow list, the command itself must be on it: looked up as the worker's exec
    // will look it up, on the host, which the sandbox shows at the same paths.
    let exec = (!spec.exec_allow.is_empty()).then(|| {
        let resolved = which_in(prog, &env_path);
        let allowed = resolved.as_ref().is_some_and(|r| {
            let real = std::fs::canonicalize(r).unwrap_or_else(|_| r.clone());
            spec.exec_allow
                .iter()
                .any(|a| a == r || std::fs::canonicalize(a).is_ok_and(|ar| ar == real))
        });
        let what = resolved
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| prog.clone());
        (allowed, what)
    });
    let mut decided: Vec<Event<'_>> = spec
        .decisions
        .iter()
        .map(|d| Event {
            kind: d.kind,
            decision: d.decision,
            what: &d.what,
            rule: &d.rule,
        })
        .collect();
    if let Some((allowed, what)) = &exec {
        decided.push(Event {
            kind: "exec",
            decision: if *allowed {
                Decision::Allow
            } else {
                Decision::Deny
            },
            what,
            rule: "exec.allow",
        });
    }
    audit.record_all(&decided);
    if let Some((false, what)) = exec {
        return Err(Error::ExecDenied { what });
    }

    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let hostname = spec.hostname();
    let abi = super::landlock::abi();
    let use_landlock = abi > 0 && !opts.no_landlock;
    let exec_by_mounts = !spec.exec_allow.is_empty() && !use_landlock;
    let plan = rootfs::plan(
        spec,
        &RealFs,
        &rootfs::Options {
            uid,
            gid,
            hostname: hostname.clone(),
            control_dir: opts.control,
            exec_by_mounts,
            idmap_writable: uid == 0,
        },
    );
    for m in &spec.mounts {
        if m.kind == MountKind::ReadWrite && !m.path.exists() {
            return Err(Error::Setup(format!(
                "writable path {} does not exist\nhint: create it, or declare it under [data.dirs] so devbox makes it",
                m.path.display()
            )));
        }
    }
    for n in &plan.notes {
        (opts.warn)(n);
    }
    let landlock = use_landlock.then(|| landlock_rules(spec, &plan.shown, opts.control));
    let seccomp = super::seccomp::program().map_err(|e| Error::Setup(format!("seccomp: {e}")))?;

    let mut env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| sandbox::cstring(&format!("{k}={v}")))
        .collect();
    env.sort();
    let idmapped = plan.idmapped.clone();
    let wait_go = waits_for_go(spec, &opts);
    let inside = Inside {
        uid,
        gid,
        mapped_by_supervisor: uid == 0,
        hostname,
        loopback: spec.net != Net::Host,
        proxy: matches!(spec.net, Net::Proxy(_)),
        control: opts.control,
        wait_go,
        prepare: plan.prepare,
        enter: plan.enter,
        argv: spec.argv.iter().map(|a| sandbox::cstring(a)).collect(),
        env,
        path: env_path,
        workdir: spec.workdir.clone(),
        limits: spec.limits.clone(),
        // Decided after the clone, with the cgroup; the init hears it with "go".
        rlimit_fallback: false,
        landlock,
        seccomp,
        forwarded: forwarded(),
        ignored: ignored_signals(&status),
    };

    let (outer, inner) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::Setup(format!("socketpair: {e}")))?;
    let (alive_r, alive_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Setup(format!("pipe: {e}")))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Setup(format!("pipe: {e}")))?;

    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP;
    if spec.net != Net::Host {
        flags |= libc::CLONE_NEWNET;
    }
    let mask = forwarded();
    let old_mask = mask
        .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
        .map_err(|e| Error::Setup(format!("sigprocmask: {e}")))?;
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: the process is single-threaded (checked above), so the child may run
    // arbitrary code; a null stack makes clone behave like fork.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        drop(outer);
        drop(alive_w);
        drop(err_r);
        sandbox::init(
            inside,
            Fds {
                sock: inner,
                alive: alive_r,
                exec_err: err_w,
            },
        );
    }
    drop(inner);
    drop(alive_r);
    drop(err_w);
    if pid < 0 {
        let e = nix::errno::Errno::last();
        let _ = old_mask.thread_set_mask();
        return Err(Error::Setup(format!(
            "creating namespaces: {}{}",
            e.desc(),
            if e == nix::errno::Errno::EPERM || e == nix::errno::Errno::ENOSPC {
                "\nhint: user namespaces may be disabled; `devbox doctor` checks them"
            } else {
                ""
            }
        )));
    }
    let init = Pid::from_raw(pid as i32);
    if uid == 0 {
        if let Err(e) = super::idmap::hand_over(init, (uid, gid), &idmapped, &outer) {
            let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(init, None);
            let _ = old_mask.thread_set_mask();
            return Err(Error::Setup(e));
        }
    }
    // The cgroup (or rlimits, when none can be made) is made while the init builds the
    // sandbox on the other core.
    let mut cgroup = None;
    if needs_cgroup(spec) {
        match super::cgroup::create(&spec.name, &spec.limits, init) {
            Ok(super::cgroup::Placement::Cgroup(c)) => cgroup = Some(c),
            Ok(super::cgroup::Placement::Unavailable { reason }) => (opts.warn)(&format!(
                "no cgroup for the limits ({reason}); memory and pids are limited with rlimits instead{}",
                if spec.limits.cpus.is_some() { ", cpus not at all" } else { "" }
            )),
            Err(e) => (opts.warn)(&format!(
                "no cgroup for the limits ({e}); memory and pids are limited with rlimits instead"
            )),
        }
    }
    let result = supervise(
        spec,
        &mut opts,
        init,
        &outer,
        cgroup.as_ref(),
        start,
        wait_go,
    );
    // Whatever happened, nothing of the sandbox outlives this call.
    let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(init, None);
    drop(alive_w);
    let _ = old_mask.thread_set_mask();
    let mut outcome = result?;
    let mut err = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut err);
    if !err.is_empty() {
        outcome.exec_error = Some(err);
    }
    if let Some(c) = cgroup {
        outcome.oom_killed = c.oom_killed();
        outcome.pids_limit_hit = c.pids_limit_hit();
        c.remove();
    }
    let end = format!(
        "exit {}{}{}{} after {} ms",
        outcome.code,
        if outcome.timed_out { " (timeout)" } else { "" },
        if outcome.oom_killed {
            " (memory limit)"
        } else {
            ""
        },
        if outcome.pids_limit_hit {
            " (pids limit)"
        } else {
            ""
        },
        start.elapsed().as_millis()
    );
    audit.record(&Event {
        kind: "lifecycle",
        decision: if outcome.timed_out || outcome.oom_killed {
            Decision::Deny
        } else {
            Decision::Allow
        },
        what: &end,
        rule: if outcome.timed_out {
            "limits.timeout"
        } else if outcome.oom_killed {
            "limits.memory"
        } else {
            "exit"
        },
    });
    Ok(outcome)
}

/// Whether the init waits for "go" before starting the worker: only when the supervisor
/// has something to do first (a cgroup to put it in, listeners to serve, `before_go`);
/// otherwise the round trip is saved.
fn waits_for_go(spec: &RunSpec, opts: &Options) -> bool {
    opts.control
        || opts.before_go.is_some()
        || needs_cgroup(spec)
        || matches!(spec.net, Net::Proxy(_))
}

/// Memory, pids and cpus are cgroup limits (or, without one, rlimits).
fn needs_cgroup(spec: &RunSpec) -> bool {
    let l = &spec.limits;
    l.memory.is_some() || l.pids.is_some() || l.cpus.is_some()
}

/// Landlock's view of the policy, as a second wall behind the mounts: directories may be
/// listed anywhere in the view, files read only where the policy shows them (and in the
/// sandbox's own /proc, generated /etc files, working directory and control socket),
/// written only where it lets them be written and in the sandbox's scratch space (/tmp,
/// /dev), and executed only when allowed. One rule per shown path: nested paths shown
/// the same way come with their parent.
fn landlock_rules(
    spec: &RunSpec,
    shown: &[(PathBuf, bool)],
    control: bool,
) -> super::landlock::Rules {
    let mut read: Vec<PathBuf> = shown
        .iter()
        .filter(|(_, w)| !w)
        .map(|(p, _)| p.clone())
        .collect();
    let mut write: Vec<PathBuf> = shown
        .iter()
        .filter(|(_, w)| *w)
        .map(|(p, _)| p.clone())
        .collect();
    read.push(PathBuf::from("/proc"));
    write.extend(["/tmp", "/dev"].map(PathBuf::from));
    if !read
        .iter()
        .chain(&write)
        .any(|p| spec.workdir.starts_with(p))
    {
        read.push(spec.workdir.clone());
    }
    if control {
        read.push(PathBuf::from("/run/devbox"));
    }
    super::landlock::Rules {
        list: vec![PathBuf::from("/")],
        read,
        write,
        exec: spec.exec_allow.clone(),
    }
}

/// Everything between the clone and the init's end; `wait_go` says whether the init waits
/// for "go".
fn supervise(
    spec: &RunSpec,
    opts: &mut Options,
    init: Pid,
    sock: &OwnedFd,
    cgroup: Option<&super::cgroup::Cgroup>,
    start: Instant,
    wait_go: bool,
) -> Result<Outcome, Error> {
    let mut on_ready = opts.on_ready.take();
    let before_go = opts.before_go.take();
    if let Some(c) = cgroup {
        c.add(init)
            .map_err(|e| Error::Setup(format!("joining the cgroup: {e}")))?;
    }
    // The init's report: "OK port" with the listeners, or "ERR why".
    let mut buf = [0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let (text, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::Inside(format!("no word from the sandbox: {e}")))?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs().map_err(|e| Error::Inside(e.to_string()))? {
            if let ControlMessageOwned::ScmRights(v) = c {
                // SAFETY: descriptors just received, owned by no one else.
                fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        let n = msg.bytes;
        (String::from_utf8_lossy(&buf[..n]).to_string(), fds)
    };
    if let Some(why) = text.strip_prefix("ERR ") {
        return Err(Error::Inside(why.to_string()));
    }
    if text.is_empty() {
        return Err(Error::Inside(
            "the sandbox's init exited during setup".into(),
        ));
    }
    let mut fds = fds.into_iter();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut control = None;
    if opts.control {
        let l = fds
            .next()
            .ok_or_else(|| Error::Inside("no control socket".into()))?;
        let listener = std::os::unix::net::UnixListener::from(l);
        let name = spec.name.clone();
        let started = start;
        control = Some(
            crate::ipc::control::ControlServer::start(
                listener,
                crate::ipc::control::same_pid_namespace(init, super::idmap::host_uid()),
                move || {
                    serde_json::json!({
                        "worker": name,
                        "pid": init.as_raw(),
                        "uptime_ms": started.elapsed().as_millis() as u64,
                    })
                },
                ready_tx,
            )
            .map_err(|e| Error::Setup(format!("control socket: {e}")))?,
        );
    }
    if let Net::Proxy(rules) = &spec.net {
        let l = fds
            .next()
            .ok_or_else(|| Error::Inside("no proxy listener".into()))?;
        super::proxy::serve(
            std::net::TcpListener::from(l),
            rules.clone(),
            opts.audit.clone(),
        )
        .map_err(|e| Error::Setup(format!("egress proxy: {e}")))?;
    }
    if let Some(f) = before_go {
        f(init).map_err(Error::BeforeGo)?;
    }
    // "go", or "go rlimits" when the limits must be rlimits.
    if wait_go {
        let go: &[u8] = if needs_cgroup(spec) && cgroup.is_none() {
            b"go rlimits"
        } else {
            b"go"
        };
        nix::unistd::write(sock, go)
            .map_err(|e| Error::Inside(format!("starting the worker: {e}")))?;
    }

    wait(
        spec,
        opts,
        init,
        sock,
        control.as_ref(),
        &ready_rx,
        start,
        &mut on_ready,
    )
}

#[allow(clippy::too_many_arguments)]
fn wait(
    spec: &RunSpec,
    opts: &Options,
    init: Pid,
    sock: &OwnedFd,
    control: Option<&crate::ipc::control::ControlServer>,
    events: &mpsc::Receiver<crate::ipc::control::ControlEvent>,
    start: Instant,
    on_ready: &mut Option<Box<dyn FnOnce() + Send>>,
) -> Result<Outcome, Error> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let sfd = nix::sys::signalfd::SignalFd::new(&forwarded())
        .map_err(|e| Error::Setup(format!("signalfd: {e}")))?;
    let deadline = spec
        .limits
        .timeout_ms
        .map(|ms| start + Duration::from_millis(ms));
    let mut timed_out = false;
    let mut kill_at: Option<Instant> = None;
    let grace = Duration::from_millis(spec.limits.stop_grace_ms.unwrap_or(DEFAULT_STOP_GRACE_MS));
    // The first stop signal forwarded (which, when), and when its grace runs out.
    let mut stopping: Option<(i32, Instant)> = None;
    let mut grace_ends: Option<Instant> = None;
    let mut stop_killed = None;
    let mut report = String::new();
    let mut done = false;
    loop {
        while let Ok(ev) = events.try_recv() {
            match ev {
                crate::ipc::control::ControlEvent::Ready => {
                    opts.audit.record(&Event {
                        kind: "lifecycle",
                        decision: Decision::Allow,
                        what: "READY",
                        rule: "control",
                    });
                    if let Some(f) = on_ready.take() {
                        f();
                    }
                }
                crate::ipc::control::ControlEvent::StopRequested => {
                    let _ = nix::sys::signal::kill(init, Signal::SIGTERM);
                }
                crate::ipc::control::ControlEvent::Rejected {
                    reason, excerpt, ..
                } => {
                    opts.audit.record(&Event {
                        kind: "control",
                        decision: Decision::Deny,
                        what: &excerpt,
                        rule: &format!("control: {reason}"),
                    });
                }
            }
        }
        if done {
            break;
        }
        let now = Instant::now();
        let next = [deadline.filter(|_| !timed_out), kill_at, grace_ends]
            .into_iter()
            .flatten()
            .min();
        let timeout = match next {
            Some(t) if t <= now => PollTimeout::ZERO,
            Some(t) => PollTimeout::from((t - now).as_millis().min(250) as u16),
            None if control.is_some() => PollTimeout::from(250u16),
            None => PollTimeout::NONE,
        };
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Setup(format!("poll: {e}"))),
        }
        if fds[0].any().unwrap_or(false) {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig != libc::SIGCHLD {
                    // The init relays it to the worker; a worker on the control plane
                    // also hears STOP for the signals that mean "stop".
                    let _ = nix::sys::signal::kill(init, Signal::try_from(sig).ok());
                    if let (Some(c), libc::SIGTERM | libc::SIGINT) = (control, sig) {
                        c.request_stop();
                    }
                    // A stop signal starts the grace period; a second one (Ctrl-C
                    // again) ends it at once.
                    if matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGHUP)
                        && stop_killed.is_none()
                    {
                        let now = Instant::now();
                        if stopping.is_none() {
                            stopping = Some((sig, now));
                            grace_ends = Some(now + grace);
                        } else {
                            let why = format!("a second {}", signal_name(sig));
                            kill_sandbox(opts, init, &why);
                            stop_killed = Some(why);
                            grace_ends = None;
                        }
                    }
                }
            }
        }
        if fds[1].any().unwrap_or(false) {
            let mut buf = [0u8; 64];
            // The init's last word; one more turn to read the control plane's events.
            if let Ok(n) = nix::unistd::read(sock.as_fd(), &mut buf) {
                report = String::from_utf8_lossy(&buf[..n]).to_string();
            }
            done = true;
            continue;
        }
        let now = Instant::now();
        if let Some(d) = deadline {
            if !timed_out && now >= d {
                timed_out = true;
                opts.audit.record(&Event {
                    kind: "limit",
                    decision: Decision::Deny,
                    what: &format!("wall clock {} ms", spec.limits.timeout_ms.unwrap_or(0)),
                    rule: "limits.timeout",
                });
                if let Some(c) = control {
                    c.request_stop();
                }
                let _ = nix::sys::signal::kill(init, Signal::SIGTERM);
                kill_at = Some(now + Duration::from_secs(2));
            }
        }
        if kill_at.is_some_and(|k| now >= k) {
            let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
            kill_at = None;
        }
        if let (Some(end), Some((sig, _))) = (grace_ends, stopping) {
            if now >= end {
                let why = format!(
                    "still running {} after {}",
                    humantime::format_duration(grace),
                    signal_name(sig)
                );
                kill_sandbox(opts, init, &why);
                stop_killed = Some(why);
                grace_ends = None;
            }
        }
    }
    let (code, signal) = if let Some(c) = report.strip_prefix("EXIT ") {
        (c.trim().parse().unwrap_or(1), None)
    } else if let Some(s) = report.strip_prefix("SIGNAL ") {
        let s: i32 = s.trim().parse().unwrap_or(9);
        (128 + s, Some(s))
    } else {
        // The init died without a word: killed (timeout, the memory limit, a signal).
        (137, Some(libc::SIGKILL))
    };
    Ok(Outcome {
        code,
        signal,
        timed_out,
        oom_killed: false,
        pids_limit_hit: false,
        exec_error: None,
        stop_killed,
    })
}

/// Kills the sandbox's init, and with it its pid namespace: every process of the sandbox.
fn kill_sandbox(opts: &Options, init: Pid, why: &str) {
    let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
    opts.audit.record(&Event {
        kind: "lifecycle",
        decision: Decision::Deny,
        what: &format!("SIGKILL to the sandbox: {why}"),
        rule: "limits.stop_grace",
    });
}

fn signal_name(sig: i32) -> &'static str {
    Signal::try_from(sig).map_or("a signal", Signal::as_str)
}

/// The host environment as a map, for `spec::environment`.
pub fn host_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::runner::testing::{alive, in_fork, options, sh, As};

    #[test]
    fn before_go_sees_the_sandbox_set_up_before_the_worker_starts() {
        in_fork(As::Caller, || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let mark = dir.path().join("started");
            let spec = sh(
                &format!("touch {}; exit 7", mark.display()),
                &[dir.path().to_path_buf()],
            );
            /// The init's pid and what was wrong with the sandbox when before_go ran.
            type Seen = Option<(Pid, Result<(), String>)>;
            let seen: Rc<RefCell<Seen>> = Rc::default();
            let mut opts = options();
            let (seen2, mark2) = (seen.clone(), mark.clone());
            opts.before_go = Some(Box::new(move |pid| {
                let check = (|| {
                    let ns = |p: &str| std::fs::read_link(p).map_err(|e| format!("{p}: {e}"));
                    if ns(&format!("/proc/{pid}/ns/net"))? == ns("/proc/self/ns/net")? {
                        return Err("the init shares this network namespace".to_string());
                    }
                    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
                        .map_err(|e| e.to_string())?;
                    if map.trim().is_empty() {
                        return Err("no uid map yet".into());
                    }
                    // Pivoted: the new root has the sandbox's /proc (its init is 1) and not /root.
                    let root = PathBuf::from(format!("/proc/{pid}/root"));
                    if !root.join("proc/1").exists() || root.join("root").exists() {
                        return Err("the root is not the sandbox's yet".into());
                    }
                    // Time enough for a worker that did not wait for "go" to show.
                    std::thread::sleep(Duration::from_millis(200));
                    if mark2.exists() {
                        return Err("the worker started before go".into());
                    }
                    Ok(())
                })();
                *seen2.borrow_mut() = Some((pid, check));
                Ok(())
            }));
            let out = run(&spec, opts).map_err(|e| e.to_string())?;
            let (pid, check) = seen.borrow_mut().take().ok_or("before_go not called")?;
            check?;
            if out.code != 7 || !mark.exists() {
                return Err(format!("the worker did not run: {out:?}"));
            }
            if alive(pid) {
                return Err(format!("the init {pid} outlived the run"));
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn an_err_from_before_go_kills_the_sandbox_and_is_returned() {
        in_fork(As::Caller, || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let mark = dir.path().join("started");
            let spec = sh(
                &format!("touch {}; sleep 30", mark.display()),
                &[dir.path().to_path_buf()],
            );
            let init: Rc<RefCell<Option<Pid>>> = Rc::default();
            let mut opts = options();
            let init2 = init.clone();
            opts.before_go = Some(Box::new(move |pid| {
                *init2.borrow_mut() = Some(pid);
                std::thread::sleep(Duration::from_millis(200));
                Err("port 8080 is taken".into())
            }));
            let started = Instant::now();
            match run(&spec, opts) {
                Err(e @ Error::BeforeGo(_)) if e.to_string() == "port 8080 is taken" => {}
                other => return Err(format!("expected the before_go error, got {other:?}")),
            }
            let pid = init.borrow_mut().take().ok_or("before_go not called")?;
            if alive(pid) || mark.exists() || started.elapsed() > Duration::from_secs(10) {
                return Err("the sandbox was left running or its worker started".into());
            }
            Ok(())
        })
        .unwrap();
    }
}
