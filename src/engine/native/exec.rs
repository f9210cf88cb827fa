//! A command inside a running native service (`devbox __native-exec`): a fresh,
//! single-threaded devbox joins the sandbox by its init's pid — user, mount, pid,
//! network, uts and ipc namespaces and its root — and forks the command there, as the
//! service's user, with every capability dropped, `no_new_privs` and the runner's seccomp
//! filter: nothing run this way is stronger than the service itself. Its exit code is
//! passed on.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Uid};

/// The exit code when the command could not be started in the sandbox.
pub const EXIT_ENTER: i32 = 125;

/// `devbox __native-exec` for `argv` in the sandbox of `pid`.
pub fn command(
    pid: u32,
    user: Option<(u32, u32)>,
    workdir: Option<&str>,
    env: &BTreeMap<String, String>,
    argv: &[String],
) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding devbox itself: {e}"))?;
    let mut cmd = crate::process::command(&exe.display().to_string());
    cmd.arg("__native-exec").arg("--pid").arg(pid.to_string());
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

/// In the forked child: become the service's user, lock down, exec. Never returns.
fn child(user: (u32, u32), workdir: &str, env: &[CString], argv: &[CString]) -> ! {
    let die = |msg: String| -> ! {
        eprintln!("devbox: {msg}");
        std::process::exit(EXIT_ENTER)
    };
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
pub fn main(pid: u32, user: Option<(u32, u32)>, workdir: Option<&str>, argv: &[String]) -> i32 {
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
    if let Err(e) = enter(pid) {
        eprintln!("devbox: {e}");
        return EXIT_ENTER;
    }
    let workdir = workdir.unwrap_or("/");
    // SAFETY: this process is single-threaded (a fresh devbox that started no runtime).
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => child(user, workdir, &env, &argv),
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
