//! The inside of a sandbox: the code that runs in the cloned process (pid 1 of the new pid
//! namespace, the "init") and in the worker it forks. Everything here was prepared by the
//! supervisor before cloning; this side only makes system calls, reports one line to the
//! supervisor on failure, and never returns.
//!
//! Sequence in the init: uid/gid maps (with `setgroups` denied first), hostname, loopback,
//! the root file system (see `rootfs`), the control socket, pivot_root, the proxy's
//! listener; then it hands the listeners to the supervisor, waits for "go", forks the
//! worker and reaps until the worker exits. The worker: new session, stray descriptors
//! closed, signals reset, working directory, rlimits, capabilities dropped (bounding set
//! included) with no_new_privs, Landlock, seccomp, execve.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::Pid;

use super::sys::{self, Kernel, Op};
use crate::config::model::Limits;

/// What the supervisor prepared for the inside.
pub struct Inside {
    /// The worker's uid and gid inside.
    pub uid: u32,
    pub gid: u32,
    /// The caller's uid and gid, which the init maps `uid` and `gid` to when it writes its
    /// own maps (`mapped_by_supervisor` false).
    pub host_uid: u32,
    pub host_gid: u32,
    /// The supervisor writes the id maps (a worker started by root runs as `nobody` on the
    /// host) and hands over the idmapped trees of the writable paths: wait for them.
    pub mapped_by_supervisor: bool,
    pub hostname: String,
    /// Bring up loopback (own network namespace).
    pub loopback: bool,
    /// Bind the egress proxy's listener on loopback.
    pub proxy: bool,
    /// Bind the control socket.
    pub control: bool,
    /// Wait for the supervisor's "go" before starting the worker: it has a cgroup to put
    /// the init in, or listeners to serve first.
    pub wait_go: bool,
    pub prepare: Vec<Op>,
    pub enter: Vec<Op>,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// The worker's `PATH`, for finding a command without a slash.
    pub path: Vec<PathBuf>,
    pub workdir: PathBuf,
    pub limits: Limits,
    /// Limits memory and pids with rlimits: no cgroup could be made.
    pub rlimit_fallback: bool,
    pub landlock: Option<super::landlock::Rules>,
    pub seccomp: seccompiler::BpfProgram,
    /// The signals the supervisor forwards (blocked here; read through a signalfd).
    pub forwarded: SigSet,
    /// Signals the supervisor ignores (its parent's `nohup`, Rust's SIGPIPE): execve keeps
    /// an ignored signal ignored, so the worker sets these back to default. (Caught ones
    /// are reset by execve itself.)
    pub ignored: Vec<i32>,
}

/// The descriptors the inside keeps: its end of the supervisor's socket, the read end of
/// the pipe only the supervisor holds open (EOF = the supervisor died), and the write end
/// of the pipe the worker reports an exec failure on.
pub struct Fds {
    pub sock: OwnedFd,
    pub alive: OwnedFd,
    pub exec_err: OwnedFd,
}

/// Exit code of the init when the sandbox could not be set up.
pub const EXIT_SETUP: i32 = 125;

/// Reports `msg` to the supervisor and exits.
fn fail(sock: RawFd, msg: &str) -> ! {
    report(sock, &format!("ERR {msg}"));
    unsafe { libc::_exit(EXIT_SETUP) }
}

fn write_file(path: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {path}: {e}"))
}

/// The init's whole life. Runs in the cloned child; never returns.
pub fn init(mut inside: Inside, fds: Fds) -> ! {
    let sock = fds.sock.as_raw_fd();
    // Die with the supervisor: PDEATHSIG for the common case, the `alive` pipe for
    // everything PDEATHSIG misses (it follows the parent *thread*).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if inside.mapped_by_supervisor {
        if let Err(e) = take_ids(&mut inside, sock) {
            fail(sock, &e);
        }
    }
    if let Err(e) = setup(&inside) {
        fail(sock, &e);
    }
    let mut listeners: Vec<OwnedFd> = Vec::new();
    let mut env = inside.env.clone();
    if inside.control {
        match std::os::unix::net::UnixListener::bind(super::rootfs::control_socket_staged()) {
            Ok(l) => listeners.push(l.into()),
            Err(e) => fail(sock, &format!("binding the control socket: {e}")),
        }
        env.push(cstring(&format!(
            "DEVBOX_CONTROL={}",
            super::rootfs::CONTROL_SOCKET
        )));
    }
    if let Err((e, what)) = sys::execute(&inside.enter, &mut Kernel) {
        fail(sock, &format!("{what}: {}", e.desc()));
    }
    let mut port = 0;
    if inside.proxy {
        match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => {
                port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                listeners.push(l.into());
            }
            Err(e) => fail(sock, &format!("binding the proxy port on loopback: {e}")),
        }
        let url = format!("http://127.0.0.1:{port}");
        for v in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            env.push(cstring(&format!("{v}={url}")));
        }
    }
    // Hand the listeners out; they live on in the supervisor only.
    let msg = format!("OK {port}");
    let raw: Vec<RawFd> = listeners.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
    if let Err(e) = sendmsg::<()>(
        sock,
        &[IoSlice::new(msg.as_bytes())],
        cmsgs,
        MsgFlags::empty(),
        None,
    ) {
        fail(sock, &format!("handing listeners to the supervisor: {e}"));
    }
    drop(listeners);
    // Wait for "go": the supervisor has put us in the cgroup and is serving the proxy; "go
    // rlimits" when no cgroup could be had.
    if inside.wait_go {
        let mut go = [0u8; 16];
        let mut iov = [IoSliceMut::new(&mut go)];
        match nix::sys::socket::recvmsg::<()>(sock, &mut iov, None, MsgFlags::empty()) {
            Ok(r) if r.bytes > 0 => inside.rlimit_fallback = r.bytes > 2,
            _ => unsafe { libc::_exit(EXIT_SETUP) },
        }
    }
    let worker = spawn_worker(&inside, &env, &fds)
        .unwrap_or_else(|e| fail(sock, &format!("starting the worker: {e}")));
    drop(fds.exec_err);
    reap(worker, &inside.forwarded, sock, fds.alive)
}

/// What the worker's entry point needs, behind one pointer.
struct Start<'a> {
    inside: &'a Inside,
    env: &'a [CString],
    fds: &'a Fds,
}

extern "C" fn worker_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Start` on the init's stack, which outlives the worker's use
    // of it: the init is suspended (CLONE_VFORK) until the worker execs or exits.
    let start = unsafe { &*(arg as *const Start<'_>) };
    unsafe {
        libc::close(start.fds.sock.as_raw_fd());
        libc::close(start.fds.alive.as_raw_fd());
    }
    worker(start.inside, start.env, start.fds.exec_err.as_raw_fd())
}

/// Starts the worker the way posix_spawn does: sharing the init's memory (no page tables
/// to copy) on a stack of its own, the init suspended until the worker execs or exits.
/// The worker only allocates while the init sleeps, and never frees what the init owns.
fn spawn_worker(inside: &Inside, env: &[CString], fds: &Fds) -> Result<Pid, nix::errno::Errno> {
    const STACK: usize = 1 << 20;
    let mut stack = vec![0u8; STACK];
    let start = Start { inside, env, fds };
    // SAFETY: the stack is ours for the worker's life before exec; the entry point never
    // returns into this frame.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(STACK);
        let top = top.sub(top as usize % 16);
        libc::clone(
            worker_entry,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &start as *const Start<'_> as *mut libc::c_void,
        )
    };
    drop(stack);
    if pid < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(Pid::from_raw(pid))
}

/// `s` as a C string; a NUL inside (which no argument or variable can carry) is dropped.
pub(super) fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Waits for the supervisor's maps and idmapped trees, gives each `MoveIdmapped` its
/// descriptor, and becomes the mapped ids (host `nobody`): until then the init is still
/// host root by its credentials, and keeps host root's supplementary groups.
fn take_ids(inside: &mut Inside, sock: RawFd) -> Result<(), String> {
    let n = inside
        .prepare
        .iter()
        .filter(|o| matches!(o, Op::MoveIdmapped { .. }))
        .count();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((n.max(1) * std::mem::size_of::<RawFd>()) as u32) };
    let mut cmsg = vec![0u8; space as usize];
    let mut buf = [0u8; 16];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(|e| format!("waiting for the id maps: {e}"))?;
    let mut fds: Vec<RawFd> = Vec::new();
    for c in msg
        .cmsgs()
        .map_err(|e| format!("reading the idmapped trees: {e}"))?
    {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(r) = c {
            fds.extend(r);
        }
    }
    if fds.len() != n {
        return Err(format!("expected {n} idmapped trees, got {}", fds.len()));
    }
    let mut next = fds.into_iter();
    for op in &mut inside.prepare {
        if let Op::MoveIdmapped { fd, .. } = op {
            *fd = next.next().unwrap_or(-1);
        }
    }
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(inside.uid),
        nix::unistd::Gid::from_raw(inside.gid),
    );
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    // Capabilities stay: the init's old uid (host root) is not its namespace's root, so
    // the kernel's rule for leaving uid 0 does not apply.
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))
}

fn setup(inside: &Inside) -> Result<(), String> {
    if !inside.mapped_by_supervisor {
        // An unprivileged process may map only its own ids, and only after giving up
        // setgroups (else it could drop groups that deny it access).
        write_file("/proc/self/setgroups", "deny")?;
        write_file(
            "/proc/self/uid_map",
            &format!("{} {} 1", inside.uid, inside.host_uid),
        )?;
        write_file(
            "/proc/self/gid_map",
            &format!("{} {} 1", inside.gid, inside.host_gid),
        )?;
    }
    nix::unistd::sethostname(&inside.hostname).map_err(|e| format!("sethostname: {e}"))?;
    if inside.loopback {
        loopback_up().map_err(|e| format!("bringing up loopback: {e}"))?;
    }
    sys::execute(&inside.prepare, &mut Kernel).map_err(|(e, what)| format!("{what}: {}", e.desc()))
}

/// `ip link set lo up`, with one ioctl.
fn loopback_up() -> Result<(), nix::errno::Errno> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let s = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: a valid socket and a fully initialised ifreq.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// Pid 1's loop: reap every child; forward the supervisor's signals to the worker; when
/// the worker is gone, report how it ended and exit (the kernel then kills whatever is left
/// in the pid namespace). If the supervisor dies, exit at once.
fn reap(worker: Pid, forwarded: &SigSet, sock: RawFd, alive: OwnedFd) -> ! {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut mask = *forwarded;
    mask.add(Signal::SIGCHLD);
    let _ = mask.thread_block();
    let sfd = match SignalFd::new(&mask) {
        Ok(s) => s,
        Err(_) => unsafe { libc::_exit(EXIT_SETUP) },
    };
    loop {
        let mut fds = [
            PollFd::new(std::os::fd::AsFd::as_fd(&sfd), PollFlags::POLLIN),
            PollFd::new(std::os::fd::AsFd::as_fd(&alive), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        if fds[1].any().unwrap_or(false) {
            unsafe { libc::_exit(137) };
        }
        let Ok(Some(info)) = sfd.read_signal() else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig != libc::SIGCHLD {
            let _ = nix::sys::signal::kill(worker, Signal::try_from(sig).ok());
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == worker => {
                    report(sock, &format!("EXIT {code}"));
                    unsafe { libc::_exit(code) }
                }
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == worker => {
                    report(sock, &format!("SIGNAL {}", s as i32));
                    unsafe { libc::_exit(128 + s as i32) }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// One line to the supervisor (a datagram on the seqpacket socket).
fn report(sock: RawFd, line: &str) {
    // SAFETY: `sock` is the init's end of the supervisor's socket, open for its whole life.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(sock) };
    let _ = nix::unistd::write(sock, line.as_bytes());
}

/// Sets signal `sig` to its default action with the raw system call: glibc's `signal`
/// refuses 32 and 33, which it keeps for itself, but an ignored 32 or 33 would still be
/// inherited across execve.
fn default_disposition(sig: i32) {
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let sa = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: the kernel's struct sigaction as x86_64 and aarch64 lay it out (handler,
    // flags, restorer, mask), for the 8-byte signal set the kernel expects.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &sa as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

/// The fd the worker reports an exec failure on (close-on-exec, so success says nothing).
const EXEC_ERR_FD: RawFd = 3;

/// The worker: locks itself down and execs. Never returns.
fn worker(inside: &Inside, env: &[CString], err_fd: RawFd) -> ! {
    let die = |code: i32, msg: &str| -> ! {
        let _ = nix::unistd::write(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(EXEC_ERR_FD) },
            msg.as_bytes(),
        );
        unsafe { libc::_exit(code) }
    };
    // The error pipe at a known number; nothing else of ours or the host's past stdio.
    unsafe {
        if err_fd != EXEC_ERR_FD {
            libc::dup3(err_fd, EXEC_ERR_FD, libc::O_CLOEXEC);
        }
        libc::syscall(
            libc::SYS_close_range,
            EXEC_ERR_FD as u32 + 1,
            u32::MAX,
            0u32,
        );
    }
    // A new session: no controlling terminal, so TIOCSTI has nothing to push into.
    let _ = nix::unistd::setsid();
    // Signals as a fresh process has them: none ignored, none blocked (the init blocked
    // the ones it forwards).
    for &s in &inside.ignored {
        default_disposition(s);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    if let Err(e) = nix::unistd::chdir(&inside.workdir) {
        die(
            EXIT_SETUP,
            &format!(
                "working directory {}: {}",
                inside.workdir.display(),
                e.desc()
            ),
        );
    }
    if let Err(e) = super::rlimit::apply(&inside.limits, inside.rlimit_fallback) {
        die(EXIT_SETUP, &format!("rlimits: {e}"));
    }
    if let Err(e) = super::caps::drop_all() {
        die(EXIT_SETUP, &format!("dropping capabilities: {e}"));
    }
    if let Some(rules) = &inside.landlock {
        if let Err(e) = super::landlock::restrict(rules) {
            die(EXIT_SETUP, &format!("landlock: {e}"));
        }
    }
    if let Err(e) = super::seccomp::apply(&inside.seccomp) {
        die(EXIT_SETUP, &format!("seccomp: {e}"));
    }
    let prog = &inside.argv[0];
    let candidates: Vec<CString> = if prog.as_bytes().contains(&b'/') {
        vec![prog.clone()]
    } else {
        inside
            .path
            .iter()
            .map(|d| {
                let mut p = d.as_os_str().as_encoded_bytes().to_vec();
                p.push(b'/');
                p.extend_from_slice(prog.as_bytes());
                CString::new(p).unwrap_or_default()
            })
            .collect()
    };
    let mut worst = nix::errno::Errno::ENOENT;
    for c in &candidates {
        let e = nix::unistd::execve(c, &inside.argv, env).unwrap_err();
        if e != nix::errno::Errno::ENOENT {
            worst = e;
        }
    }
    let code = if worst == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    die(
        code,
        &format!("{}: {}", prog.to_string_lossy(), worst.desc()),
    )
}
