//! A command inside a running native service (`devbox __native-exec`): a fresh,
//! single-threaded devbox joins the sandbox by its init's pid — user, mount, pid,
//! network, uts and ipc namespaces and its root, and its cgroups — and forks the command
//! there, as the service's user, with the service's rlimits, none of the caller's
//! descriptors past stdio, every capability dropped, `no_new_privs`, the service's
//! Landlock ruleset (built again from the record the service was started from, as the
//! runner built it) and the runner's seccomp filter: nothing run this way is stronger than
//! the service itself. Its exit code is passed on.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Uid};

use crate::runner::landlock::Rules;

/// The exit code when the command could not be started in the sandbox.
pub const EXIT_ENTER: i32 = 125;

/// `devbox __native-exec` for `argv` in the sandbox of `pid`, which runs container `id`
/// of the project whose runtime directory is `dir`.
pub fn command(
    dir: &Path,
    id: &str,
    pid: u32,
    user: Option<(u32, u32)>,
    workdir: Option<&str>,
    env: &BTreeMap<String, String>,
    argv: &[String],
) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding devbox itself: {e}"))?;
    let mut cmd = crate::process::command(&exe.display().to_string());
    cmd.arg("__native-exec")
        .arg("--dir")
        .arg(dir)
        .arg("--id")
        .arg(id)
        .arg("--pid")
        .arg(pid.to_string());
    if let Some((u, g)) = user {
        cmd.arg("--user").arg(format!("{u}:{g}"));
    }
    if let Some(w) = workdir {
        cmd.arg("--workdir").arg(w);
    }
    // The command's environment is this process's own: not in its argv, which every
    // user may read in /proc.
    cmd.env_clear().envs(env);
    cmd.arg("--").args(argv);
    Ok(cmd)
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

/// Joins the sandbox of `pid`: its namespaces, then its root.
fn enter(pid: u32) -> Result<(), String> {
    let open = |what: &str| {
        File::open(format!("/proc/{pid}/{what}")).map_err(|e| format!("/proc/{pid}/{what}: {e}"))
    };
    let user = open("ns/user")?;
    let own = File::open("/proc/self/ns/user").map_err(|e| format!("/proc/self/ns/user: {e}"))?;
    let others = [
        (open("ns/ipc")?, CloneFlags::CLONE_NEWIPC, "ipc"),
        (open("ns/uts")?, CloneFlags::CLONE_NEWUTS, "uts"),
        (open("ns/net")?, CloneFlags::CLONE_NEWNET, "network"),
        (open("ns/pid")?, CloneFlags::CLONE_NEWPID, "pid"),
        (open("ns/mnt")?, CloneFlags::CLONE_NEWNS, "mount"),
    ];
    let root = open("root")?;
    if !same_ns(&user, &own) {
        setns(user.as_fd(), CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("joining the user namespace of pid {pid}: {e}"))?;
    }
    for (f, kind, what) in &others {
        setns(f.as_fd(), *kind)
            .map_err(|e| format!("joining the {what} namespace of pid {pid}: {e}"))?;
    }
    nix::unistd::fchdir(root.as_fd())
        .map_err(|e| format!("entering the root of pid {pid}: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("taking the root of pid {pid}: {e}"))?;
    Ok(())
}

/// Moves this process into the cgroups of `pid` it is not in, in the hierarchies devbox
/// puts limits in: the service's limits hold for the command too.
fn join_cgroups(pid: u32) -> Result<(), String> {
    use crate::runner::cgroup::Layout;
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let theirs = read(&format!("/proc/{pid}/cgroup"))?;
    let ours = read("/proc/self/cgroup")?;
    let layout = crate::runner::cgroup::detect().map_err(|e| e.to_string())?;
    for line in theirs.lines().filter(|l| !ours.lines().any(|o| o == *l)) {
        let mut f = line.splitn(3, ':').skip(1);
        let (Some(controllers), Some(path)) = (f.next(), f.next()) else {
            continue;
        };
        let dir = match &layout {
            Layout::Unified { mount, root } if controllers.is_empty() => Some(
                mount.join(
                    path.strip_prefix(root.as_str())
                        .unwrap_or(path)
                        .trim_start_matches('/'),
                ),
            ),
            Layout::Legacy { hierarchies } => hierarchies
                .iter()
                .find(|h| {
                    controllers
                        .split(',')
                        .any(|c| h.controllers.iter().any(|x| x == c))
                })
                .map(|h| h.mount.join(path.trim_start_matches('/'))),
            _ => None,
        };
        if let Some(procs) = dir.map(|d| d.join("cgroup.procs")) {
            std::fs::write(&procs, std::process::id().to_string())
                .map_err(|e| format!("joining {}: {e}", procs.display()))?;
        }
    }
    Ok(())
}

/// The rlimits of the service's program (the first child of the sandbox's init `pid`).
fn service_rlimits(pid: u32) -> Vec<(u32, nix::libc::rlimit)> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let Some(worker) = children
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
    else {
        return Vec::new();
    };
    // Every resource Linux has, RLIMIT_CPU (0) to RLIMIT_RTTIME (15).
    (0..16u32)
        .filter_map(|r| {
            let mut l = nix::libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: reads one limit of another process into `l`.
            let got = unsafe { nix::libc::prlimit(worker, r, std::ptr::null(), &mut l) };
            (got == 0).then_some((r, l))
        })
        .collect()
}

/// The Landlock rules the service's worker got: its record made into the run the runner
/// made of it, the view planned over this host as the runner planned it (the
/// supervisor's own decision: a sandbox without a control socket, Landlock wherever the
/// kernel has it). `None` where the kernel has no Landlock, as for the service.
fn service_landlock(dir: &Path, id: &str) -> Result<Option<Rules>, String> {
    use crate::runner::rootfs;
    if crate::runner::landlock::abi() <= 0 {
        return Ok(None);
    }
    let pd = super::paths::ProjectDir {
        dir: dir.to_path_buf(),
    };
    let c: super::def::Container = crate::runner::state::StateDir::new(&pd.containers())
        .load(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no container {id} in {}", dir.display()))?;
    let spec = super::service::run_spec(&c.def)?;
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let (in_uid, in_gid) = spec.user.unwrap_or((uid, gid));
    let plan = rootfs::plan(
        &spec,
        &rootfs::RealFs,
        &rootfs::Options {
            uid: in_uid,
            gid: in_gid,
            hostname: spec.hostname(),
            control_dir: false,
            exec_by_mounts: false,
            idmap_writable: uid == 0,
        },
    );
    Ok(Some(crate::runner::supervisor::landlock_rules(
        &spec,
        &plan.shown,
        false,
    )))
}

/// In the forked child: become the service's user, lock down, exec. Never returns.
fn child(
    user: (u32, u32),
    workdir: &str,
    env: &[CString],
    argv: &[CString],
    limits: &[(u32, nix::libc::rlimit)],
    landlock: Option<&Rules>,
) -> ! {
    let die = |msg: String| -> ! {
        eprintln!("devbox: {msg}");
        std::process::exit(EXIT_ENTER)
    };
    // SAFETY: raw system calls on this process's own descriptors and limits. Nothing of
    // the caller's past stdio reaches the command; the service's limits are its own (one
    // above this process's hard limit cannot be raised to, and stays lower).
    unsafe {
        nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        for (r, l) in limits {
            nix::libc::setrlimit(*r, l);
        }
    }
    // SAFETY: prctl with constant arguments.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL, 0, 0, 0) };
    // Refused where the sandbox denied setgroups (an unprivileged caller's): its groups
    // are then the service's already.
    let _ = nix::unistd::setgroups(&[]);
    let (uid, gid) = (Uid::from_raw(user.0), Gid::from_raw(user.1));
    if let Err(e) = nix::unistd::setresgid(gid, gid, gid) {
        die(format!("setresgid {}: {e}", user.1));
    }
    if let Err(e) = nix::unistd::setresuid(uid, uid, uid) {
        die(format!("setresuid {}: {e}", user.0));
    }
    if let Err(e) = nix::unistd::chdir(workdir) {
        die(format!("working directory {workdir}: {e}"));
    }
    if let Err(e) = crate::runner::caps::drop_all() {
        die(format!("dropping capabilities: {e}"));
    }
    if let Some(rules) = landlock {
        if let Err(e) = crate::runner::landlock::restrict(rules) {
            die(format!("landlock: {e}"));
        }
    }
    match crate::runner::seccomp::program() {
        Ok(p) => {
            if let Err(e) = crate::runner::seccomp::apply(&p) {
                die(format!("seccomp: {e}"));
            }
        }
        Err(e) => die(format!("seccomp: {e}")),
    }
    let prog = argv[0].to_string_lossy().into_owned();
    let e = nix::unistd::execvpe(&argv[0], argv, env).unwrap_err();
    eprintln!("devbox: {prog}: {}", e.desc());
    std::process::exit(if e == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    })
}

/// Runs `argv` in the sandbox of `pid` with this process's environment (which
/// [`command`] set to the service's); returns the exit code to pass on.
pub fn main(
    dir: &Path,
    id: &str,
    pid: u32,
    user: Option<(u32, u32)>,
    workdir: Option<&str>,
    argv: &[String],
) -> i32 {
    if argv.is_empty() {
        eprintln!("devbox: nothing to run");
        return EXIT_ENTER;
    }
    // The runner's default: the worker runs as the caller's ids inside.
    let user = user.unwrap_or((
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    ));
    let cstr = |s: &String| CString::new(s.replace('\0', "")).unwrap_or_default();
    let argv: Vec<CString> = argv.iter().map(cstr).collect();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("PATH".into(), crate::runner::spec::DEFAULT_PATH.into());
    vars.extend(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    let env: Vec<CString> = vars
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect();
    if let Err(e) = join_cgroups(pid) {
        eprintln!("devbox: {e}");
        return EXIT_ENTER;
    }
    let limits = service_rlimits(pid);
    // Planned on the host, as the runner plans it; the paths are opened in the sandbox's
    // root, as the worker opens them.
    let landlock = match service_landlock(dir, id) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("devbox: the service's landlock rules: {e}");
            return EXIT_ENTER;
        }
    };
    if let Err(e) = enter(pid) {
        eprintln!("devbox: {e}");
        return EXIT_ENTER;
    }
    let workdir = workdir.unwrap_or("/");
    // SAFETY: this process is single-threaded (a fresh devbox that started no runtime).
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => child(user, workdir, &env, &argv, &limits, landlock.as_ref()),
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, c)) => return c,
                Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("devbox: waiting for the command: {e}");
                    return EXIT_ENTER;
                }
            }
        },
        Err(e) => {
            eprintln!("devbox: fork: {e}");
            EXIT_ENTER
        }
    }
}
