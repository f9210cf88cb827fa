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

use nix::errno::Errno;
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
    /// The spec's argv is empty.
    #[error("no command to run")]
    NoCommand,
    /// A mount's `source` (the host path shown at another place) is missing.
    #[error("{} to show at {} does not exist", host.display(), target.display())]
    SourceMissing { host: PathBuf, target: PathBuf },
    /// A writable path is missing: devbox shows it, it does not make it.
    #[error(
        "writable path {} does not exist\nhint: create it, or declare it under [data.dirs] so devbox makes it",
        path.display()
    )]
    WritableMissing { path: PathBuf },
    /// The seccomp filter could not be built.
    #[error("seccomp: {0}")]
    Seccomp(#[source] super::seccomp::Error),
    /// A system call of the supervisor's own (`socketpair`, `pipe`, `sigprocmask`,
    /// `signalfd`, `poll`) failed.
    #[error("{call}: {errno}")]
    Syscall {
        call: &'static str,
        #[source]
        errno: Errno,
    },
    /// The clone into new namespaces failed; EPERM and ENOSPC come with a hint that user
    /// namespaces may be disabled.
    #[error("creating namespaces: {}{}", errno.desc(), namespaces_hint(*errno))]
    Namespaces { errno: Errno },
    /// Under root: the id maps or idmapped trees could not be handed to the init.
    #[error("{0}")]
    IdMap(String),
    /// The init could not be put in its cgroup.
    #[error("joining the cgroup: {0}")]
    JoinCgroup(#[source] super::cgroup::Error),
    /// The control socket's server could not start.
    #[error("control socket: {0}")]
    Control(#[source] crate::ipc::control::ControlError),
    /// The egress proxy could not start.
    #[error("egress proxy: {0}")]
    Proxy(#[source] std::io::Error),
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

/// The hint [`Error::Namespaces`] gives for `errno`.
fn namespaces_hint(errno: Errno) -> &'static str {
    if errno == Errno::EPERM || errno == Errno::ENOSPC {
        "\nhint: user namespaces may be disabled; `devbox doctor` checks them"
    } else {
        ""
    }
}

/// Makes an errno of `call` an [`Error::Syscall`].
fn syscall(call: &'static str) -> impl FnOnce(Errno) -> Error {
    move |errno| Error::Syscall { call, errno }
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
    /// Called once the worker has started, with what was made for it (see [`Started`]):
    /// the moment a run is recorded `running`.
    pub on_started: Option<OnStarted>,
}

pub use super::lifecycle::Started;

/// See [`Options::on_started`].
pub type OnStarted = Box<dyn FnOnce(&Started)>;

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
    let prog = spec.argv.first().ok_or(Error::NoCommand)?;
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
    let (in_uid, in_gid) = spec.user.unwrap_or((uid, gid));
    let hostname = spec.hostname();
    let abi = super::landlock::abi();
    let use_landlock = abi > 0 && !opts.no_landlock;
    let exec_by_mounts = !spec.exec_allow.is_empty() && !use_landlock;
    let plan = rootfs::plan(
        spec,
        &RealFs,
        &rootfs::Options {
            uid: in_uid,
            gid: in_gid,
            hostname: hostname.clone(),
            control_dir: opts.control,
            exec_by_mounts,
            idmap_writable: uid == 0,
        },
    );
    for m in &spec.mounts {
        if let (Some(src), MountKind::ReadOnly | MountKind::ReadWrite) = (&m.source, m.kind) {
            if !src.exists() {
                return Err(Error::SourceMissing {
                    host: src.clone(),
                    target: m.path.clone(),
                });
            }
            continue;
        }
        if m.kind == MountKind::ReadWrite && !m.path.exists() {
            return Err(Error::WritableMissing {
                path: m.path.clone(),
            });
        }
    }
    for n in &plan.notes {
        (opts.warn)(n);
    }
    let landlock = use_landlock.then(|| landlock_rules(spec, &plan.shown, opts.control));
    let seccomp = super::seccomp::program().map_err(Error::Seccomp)?;

    let mut env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| sandbox::cstring(&format!("{k}={v}")))
        .collect();
    env.sort();
    let idmapped = plan.idmapped.clone();
    let wait_go = waits_for_go(spec, &opts);
    let inside = Inside {
        uid: in_uid,
        gid: in_gid,
        host_uid: uid,
        host_gid: gid,
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
    .map_err(syscall("socketpair"))?;
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(syscall("pipe"))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(syscall("pipe"))?;

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
        .map_err(syscall("sigprocmask"))?;
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
        let errno = Errno::last();
        let _ = old_mask.thread_set_mask();
        return Err(Error::Namespaces { errno });
    }
    let init = Pid::from_raw(pid as i32);
    if uid == 0 {
        let ids = ((in_uid, in_gid), (uid, gid));
        if let Err(e) = super::idmap::hand_over(init, ids, &idmapped, &outer) {
            let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(init, None);
            let _ = old_mask.thread_set_mask();
            return Err(Error::IdMap(e));
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
/// the same way come with their parent. (Also the rules of a command run in a native
/// service's sandbox, which must be the same.)
pub fn landlock_rules(
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
        c.add(init).map_err(Error::JoinCgroup)?;
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
            .map_err(Error::Control)?,
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
        .map_err(Error::Proxy)?;
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
    if let Some(f) = opts.on_started.take() {
        f(&Started {
            init: init.as_raw() as u32,
            cgroups: cgroup.map(|c| c.paths().to_vec()).unwrap_or_default(),
            control: opts.control.then(|| {
                PathBuf::from(format!(
                    "/proc/{init}/root{}",
                    super::rootfs::CONTROL_SOCKET
                ))
            }),
        });
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
    let sfd = nix::sys::signalfd::SignalFd::new(&forwarded()).map_err(syscall("signalfd"))?;
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
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(syscall("poll")(e)),
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
    fn setup_errors_read_as_before() {
        let cases = [
            (Error::NoCommand, "no command to run".to_string()),
            (
                Error::SourceMissing {
                    host: PathBuf::from("/home/dev/cache"),
                    target: PathBuf::from("/cache"),
                },
                "/home/dev/cache to show at /cache does not exist".into(),
            ),
            (
                Error::WritableMissing {
                    path: PathBuf::from("/srv/app/.data/out"),
                },
                "writable path /srv/app/.data/out does not exist\n\
                 hint: create it, or declare it under [data.dirs] so devbox makes it"
                    .into(),
            ),
            (
                syscall("pipe")(Errno::EMFILE),
                "pipe: EMFILE: Too many open files".into(),
            ),
            (
                Error::Namespaces {
                    errno: Errno::EPERM,
                },
                "creating namespaces: Operation not permitted\n\
                 hint: user namespaces may be disabled; `devbox doctor` checks them"
                    .into(),
            ),
            (
                Error::Namespaces {
                    errno: Errno::ENOSPC,
                },
                "creating namespaces: No space left on device\n\
                 hint: user namespaces may be disabled; `devbox doctor` checks them"
                    .into(),
            ),
            (
                Error::Namespaces {
                    errno: Errno::EINVAL,
                },
                "creating namespaces: Invalid argument".into(),
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text, "{e:?}");
        }
    }

    #[test]
    fn a_failed_syscall_is_named_and_carries_its_errno() {
        let e = syscall("socketpair")(Errno::ENFILE);
        assert!(matches!(
            e,
            Error::Syscall {
                call: "socketpair",
                errno: Errno::ENFILE
            }
        ));
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Errno>());
        assert_eq!(source, Some(&Errno::ENFILE));
    }

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

    /// Runs `spec` to a clean exit.
    fn ran(spec: &RunSpec) -> Result<(), String> {
        let out = run(spec, options()).map_err(|e| e.to_string())?;
        if out.code != 0 {
            return Err(format!("the worker failed: {out:?}"));
        }
        Ok(())
    }

    fn read(p: &std::path::Path) -> Result<String, String> {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Whether `p` is the caller's on the host.
    fn owned_by_caller(p: &std::path::Path) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        if (m.uid(), m.gid()) != me {
            return Err(format!(
                "{} is {}:{}, not {me:?}",
                p.display(),
                m.uid(),
                m.gid()
            ));
        }
        Ok(())
    }

    fn tempdir() -> Result<tempfile::TempDir, String> {
        tempfile::tempdir().map_err(|e| e.to_string())
    }

    /// A source shown read-only at one target and another writable at a second.
    fn sources_at_their_targets() -> Result<(), String> {
        let (site, out) = (tempdir()?, tempdir()?);
        std::fs::write(site.path().join("index.html"), "hello\n").map_err(|e| e.to_string())?;
        let mut spec = sh(
            "cat /srv/site/index.html > /data/out/copy \
             && ! touch /srv/site/x 2>/dev/null && ! touch /srv/y 2>/dev/null",
            &[],
        );
        for (target, source, kind) in [
            ("/srv/site", site.path(), MountKind::ReadOnly),
            ("/data/out", out.path(), MountKind::ReadWrite),
        ] {
            spec.mounts.push(crate::runner::Mount {
                path: target.into(),
                kind,
                source: Some(source.to_path_buf()),
            });
        }
        ran(&spec)?;
        let copy = out.path().join("copy");
        if read(&copy)? != "hello\n" || site.path().join("x").exists() {
            return Err("the binds were not shown as asked".into());
        }
        if std::path::Path::new("/srv/site").exists() {
            return Err("the target was made on the host".into());
        }
        owned_by_caller(&copy)
    }

    #[test]
    fn a_source_is_shown_at_its_target_as_root() {
        in_fork(As::Caller, sources_at_their_targets).unwrap();
    }

    #[test]
    fn a_source_is_shown_at_its_target_by_an_ordinary_user() {
        in_fork(As::Ordinary, sources_at_their_targets).unwrap();
    }

    #[test]
    fn a_missing_source_is_named() {
        let mut spec = sh("true", &[]);
        spec.mounts.push(crate::runner::Mount {
            path: "/srv".into(),
            kind: MountKind::ReadOnly,
            source: Some("/nonexistent/site".into()),
        });
        let err = in_fork(As::Caller, || ran(&spec)).unwrap_err();
        assert_eq!(err, "/nonexistent/site to show at /srv does not exist");
    }

    fn tmpfs_writable_in_a_read_only_root() -> Result<(), String> {
        let out = tempdir()?;
        let mut spec = sh(
            &format!(
                "echo hi > /scratch/f && cat /scratch/f > {0}/t \
                 && ! touch /x 2>/dev/null && ! touch /usr/x 2>/dev/null \
                 && stat -f -c '%b %S' /scratch > {0}/size",
                out.path().display()
            ),
            &[out.path().to_path_buf()],
        );
        spec.tmpfs = vec!["/scratch".into()];
        ran(&spec)?;
        let size: Vec<u64> = read(&out.path().join("size"))?
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if read(&out.path().join("t"))? != "hi\n" || size.iter().product::<u64>() != 64 << 20 {
            return Err(format!("tmpfs not as asked (size {size:?})"));
        }
        if std::path::Path::new("/scratch").exists() {
            return Err("the tmpfs's target was made on the host".into());
        }
        Ok(())
    }

    #[test]
    fn a_tmpfs_is_writable_while_the_root_stays_read_only() {
        in_fork(As::Caller, tmpfs_writable_in_a_read_only_root).unwrap();
        in_fork(As::Ordinary, tmpfs_writable_in_a_read_only_root).unwrap();
    }

    #[test]
    fn hosts_adds_names_to_etc_hosts() {
        in_fork(As::Caller, || {
            let out = tempdir()?;
            for show_etc in [false, true] {
                let mut spec = sh(
                    &format!("getent hosts server > {}/h", out.path().display()),
                    &[out.path().to_path_buf()],
                );
                spec.hosts = vec![("server".into(), std::net::Ipv4Addr::new(127, 0, 0, 2))];
                if show_etc {
                    // The host's /etc shown: the generated hosts goes over its own.
                    spec.mounts.insert(
                        0,
                        crate::runner::Mount {
                            path: "/etc".into(),
                            kind: MountKind::ReadOnly,
                            source: None,
                        },
                    );
                }
                ran(&spec)?;
                let h = read(&out.path().join("h"))?;
                if h.split_whitespace().collect::<Vec<_>>() != ["127.0.0.2", "server"] {
                    return Err(format!("with /etc shown {show_etc}: {h:?}"));
                }
            }
            Ok(())
        })
        .unwrap();
    }

    /// The worker as 1234:1235 inside; what it writes is still the caller's.
    fn runs_as_the_configured_user() -> Result<(), String> {
        let out = tempdir()?;
        let mut spec = sh(
            &format!("id -u > {0}/id && id -g >> {0}/id", out.path().display()),
            &[out.path().to_path_buf()],
        );
        spec.user = Some((1234, 1235));
        ran(&spec)?;
        let id = out.path().join("id");
        if read(&id)? != "1234\n1235\n" {
            return Err(format!("id said {:?}", read(&id)?));
        }
        owned_by_caller(&id)
    }

    #[test]
    fn user_sets_the_ids_inside_as_root() {
        in_fork(As::Caller, runs_as_the_configured_user).unwrap();
    }

    #[test]
    fn user_sets_the_ids_inside_for_an_ordinary_user() {
        in_fork(As::Ordinary, runs_as_the_configured_user).unwrap();
    }
}
