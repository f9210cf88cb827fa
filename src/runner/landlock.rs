//! The worker's Landlock ruleset: which files it may read, write and execute once it runs,
//! whatever the mount table shows it, and that it may not signal or reach abstract UNIX
//! sockets outside its own sandbox. It owns turning [`Rules`] into kernel rules and saying
//! how much of that the running kernel enforced; it never decides which paths a worker
//! gets (`spec` does), and never touches the network: the network namespace and the egress
//! proxy own that, so Landlock's TCP rights (ABI 4) stay unused.
//!
//! [`restrict`] runs in the forked worker after `pivot_root`, so every path is resolved in
//! the worker's own root.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use ::landlock::{
    Access, AccessFs, BitFlags, LandlockStatus, PathBeneath, PathFd, PathFdError, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};

use super::elf;

/// The Landlock ABI whose rights devbox asks for and has been tested with. Newer kernels
/// enforce all of it; older ones get what they support and [`Status::Partial`]. Newer ABIs
/// are not asked for until tested: V7 adds only audit-log flags, V9's pathname-socket right
/// would start refusing connections to sockets under read-only paths (nscd, journald).
const TARGET: ABI = ABI::V6;

/// How deep `#!` and `PT_INTERP` chains are followed: the kernel itself gives up after
/// four rewrites of one `execve`.
const MAX_INTERPRETERS: usize = 5;

/// What the worker may touch. Paths that don't exist are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// List directories beneath these, and nothing more (the root: a worker may look
    /// around the view its mounts give it, and read only what its policy lists).
    pub list: Vec<PathBuf>,
    /// Read files and list directories beneath these (and run programs, when `exec` is
    /// empty).
    pub read: Vec<PathBuf>,
    /// Everything beneath these: read, write, create, remove, rename, truncate, device
    /// ioctls.
    pub write: Vec<PathBuf>,
    /// The only programs that may be executed (with the interpreters they need). Empty:
    /// any program the worker can read may run.
    pub exec: Vec<PathBuf>,
}

/// How much of the ruleset the running kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// All of it. `abi` is the running kernel's Landlock ABI version.
    Enforced { abi: i32 },
    /// The kernel's Landlock is older than ABI 6 (`TARGET`): what it knows is enforced, the rest
    /// (truncation, device ioctls, signal and socket scoping, by age) is not.
    Partial,
    /// No Landlock in this kernel, or it is disabled: nothing is enforced.
    Unsupported,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening {} for a landlock rule: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the interpreter of {}: {source}", path.display())]
    Interpreter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("adding the landlock rule for {}: {source}", path.display())]
    Rule {
        path: PathBuf,
        #[source]
        source: RulesetError,
    },
    #[error("creating the landlock ruleset: {0}")]
    Create(#[source] RulesetError),
    #[error("enforcing the landlock ruleset: {0}")]
    Enforce(#[source] RulesetError),
}

/// The rights of each kind of rule. Execute is granted by `exec` alone when it is set:
/// otherwise a writable directory would run whatever the worker drops into it.
struct Rights {
    read: BitFlags<AccessFs>,
    write: BitFlags<AccessFs>,
    exec: BitFlags<AccessFs>,
}

impl Rights {
    fn new(exec_listed: bool) -> Self {
        let execute = if exec_listed {
            BitFlags::EMPTY
        } else {
            BitFlags::from(AccessFs::Execute)
        };
        Rights {
            read: AccessFs::ReadFile | AccessFs::ReadDir | execute,
            write: (AccessFs::from_all(TARGET) & !AccessFs::Execute) | execute,
            // The kernel opens a program for reading as it executes it.
            exec: AccessFs::Execute | AccessFs::ReadFile,
        }
    }
}

/// Restricts the calling thread, and every process it starts, to `rules`. Best effort: on
/// a kernel older than ABI 6 (`TARGET`) the rights it doesn't know are left out, and the result
/// says so rather than failing; the worker's namespaces and seccomp filter don't depend
/// on it.
///
/// Scoping (ABI 6) is asked for too: the worker may then neither signal nor connect to an
/// abstract UNIX socket of any process outside its Landlock domain, which holds even if a
/// pid or network namespace were missing.
///
/// A program in `exec` brings its interpreter along (the kernel opens `ld.so` or a script's
/// `#!` program with execute rights), and that interpreter's own, and so on. That is also
/// the limit of `exec`: `ld.so` runs any ELF file it can read, and a script interpreter
/// any script, so `exec` keeps honest programs honest and is no wall against a worker that
/// means to run something else.
pub fn restrict(rules: &Rules) -> Result<Status, Error> {
    let rights = Rights::new(!rules.exec.is_empty());
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET))
        .and_then(|r| r.scope(Scope::from_all(TARGET)))
        .and_then(|r| r.create())
        .map_err(Error::Create)?;
    for path in &rules.list {
        ruleset = add(ruleset, path, AccessFs::ReadDir.into())?;
    }
    for path in &rules.read {
        ruleset = add(ruleset, path, rights.read)?;
    }
    for path in &rules.write {
        ruleset = add(ruleset, path, rights.write)?;
    }
    for path in &rules.exec {
        ruleset = add(ruleset, path, rights.exec)?;
        let mut program = path.clone();
        for _ in 0..MAX_INTERPRETERS {
            let interpreter = match elf::interpreter(&program) {
                Ok(Some(i)) => i,
                Ok(None) => break,
                // Missing (skipped above) or a directory: nothing to follow.
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(nix::libc::EISDIR) => break,
                Err(source) => {
                    return Err(Error::Interpreter {
                        path: program,
                        source,
                    })
                }
            };
            ruleset = add(ruleset, &interpreter, rights.exec)?;
            program = interpreter;
        }
    }
    let status = ruleset.restrict_self().map_err(Error::Enforce)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Status::Enforced {
            abi: kernel_abi(status.landlock),
        },
        RulesetStatus::PartiallyEnforced => Status::Partial,
        RulesetStatus::NotEnforced => Status::Unsupported,
    })
}

/// Adds a rule for `path` (skipped if missing), keeping only the rights that apply to a
/// file when it isn't a directory. The kernel refuses directory rights on a file, and the
/// crate would quietly drop them and report the whole ruleset as partial.
fn add(
    ruleset: RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<RulesetCreated, Error> {
    let fd = match PathFd::new(path) {
        Ok(fd) => fd,
        Err(e) => {
            let source = match e {
                PathFdError::OpenCall { source, .. } => source,
                other => io::Error::other(other),
            };
            if source.kind() == io::ErrorKind::NotFound {
                return Ok(ruleset);
            }
            return Err(Error::Open {
                path: path.to_owned(),
                source,
            });
        }
    };
    let is_dir = nix::sys::stat::fstat(fd.as_fd())
        .map(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR)
        .map_err(|e| Error::Open {
            path: path.to_owned(),
            source: e.into(),
        })?;
    let access = if is_dir {
        access
    } else {
        access & AccessFs::from_file(TARGET)
    };
    ruleset
        .add_rule(PathBeneath::new(fd, access))
        .map_err(|source| Error::Rule {
            path: path.to_owned(),
            source,
        })
}

/// The running kernel's Landlock ABI version, 0 or less when it has none:
/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
pub fn abi() -> i32 {
    // SAFETY: the documented version query; no pointer is dereferenced.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        ) as i32
    }
}

/// The running kernel's ABI number, even when it is newer than any this crate knows.
fn kernel_abi(status: LandlockStatus) -> i32 {
    match status {
        LandlockStatus::Available {
            kernel_abi: Some(v),
            ..
        } => v,
        LandlockStatus::Available { effective_abi, .. } => effective_abi as i32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    //! Landlock restricts the calling thread for good, so each test that enforces rules
    //! runs itself again in a fresh test process (its "child mode", chosen by an
    //! environment variable) and checks from there; the parent only prepares files and
    //! reads the verdict.

    use super::*;
    use nix::errno::Errno;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const CHILD: &str = "DEVBOX_LANDLOCK_TEST_DIR";

    /// The directory the parent prepared, when this process is the child.
    fn child_dir() -> Option<PathBuf> {
        std::env::var_os(CHILD).map(PathBuf::from)
    }

    /// Runs test `name` of this module again in a child test process with `dir`, and fails
    /// with the child's output if the test failed there.
    fn run_child(name: &str, dir: &Path) {
        let exe = std::env::current_exe().expect("the test binary's path");
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let test = format!("{module}::{name}");
        let out = crate::process::command(exe.to_str().expect("a UTF-8 test binary path"))
            .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, dir)
            .output()
            .expect("running the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child run of {test} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
    }

    /// Landlock as this kernel has it, in the child. Hosts without it skip, except in CI
    /// where a runner that can't enforce its sandbox must fail loudly.
    fn enforced(status: Status) -> bool {
        match status {
            Status::Enforced { abi } => {
                assert!(abi >= TARGET as i32, "abi {abi}");
                true
            }
            other if std::env::var_os("DEVBOX_REQUIRE_ENGINES").is_some_and(|v| v == "1") => {
                panic!("landlock is {other:?} on this host")
            }
            other => {
                eprintln!("skipped: landlock is {other:?} on this host");
                false
            }
        }
    }

    fn errno(r: io::Result<impl Sized>) -> Option<Errno> {
        r.err().and_then(|e| e.raw_os_error()).map(Errno::from_raw)
    }

    /// System directories a dynamically linked program needs to load. (The spawning side
    /// also needs /dev/null, writable: `process::command` points stdin there.)
    fn system() -> Vec<PathBuf> {
        ["/usr", "/lib", "/lib64", "/etc", "/bin"]
            .map(PathBuf::from)
            .to_vec()
    }

    #[test]
    fn reads_and_writes_follow_the_rules() {
        let Some(dir) = child_dir() else {
            let tmp = tempfile::tempdir().unwrap();
            for d in ["ro", "rw", "outside"] {
                fs::create_dir(tmp.path().join(d)).unwrap();
            }
            fs::write(tmp.path().join("ro/file"), "ro").unwrap();
            fs::write(tmp.path().join("rw/file"), "rw").unwrap();
            fs::write(tmp.path().join("outside/secret"), "secret").unwrap();
            run_child("reads_and_writes_follow_the_rules", tmp.path());
            return;
        };
        let status = restrict(&Rules {
            list: vec![dir.join("outside")],
            read: vec![dir.join("ro"), dir.join("missing")],
            write: vec![dir.join("rw")],
            exec: vec![],
        })
        .unwrap();
        if !enforced(status) {
            return;
        }
        // Only listed: its names show, its contents do not.
        assert_eq!(
            fs::read_dir(dir.join("outside"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>(),
            ["secret"]
        );
        // Outside every read rule: not readable.
        assert_eq!(
            errno(fs::read(dir.join("outside/secret"))),
            Some(Errno::EACCES)
        );
        // Outside every rule: not even listable.
        assert_eq!(errno(fs::read_dir(&dir)), Some(Errno::EACCES));
        // Read-only: readable and listable, not writable, nothing created or removed.
        assert_eq!(fs::read_to_string(dir.join("ro/file")).unwrap(), "ro");
        assert!(fs::read_dir(dir.join("ro")).is_ok());
        let open_rw = fs::OpenOptions::new()
            .append(true)
            .open(dir.join("ro/file"));
        assert_eq!(errno(open_rw), Some(Errno::EACCES));
        assert_eq!(
            errno(fs::write(dir.join("ro/new"), "x")),
            Some(Errno::EACCES)
        );
        assert_eq!(
            errno(fs::remove_file(dir.join("ro/file"))),
            Some(Errno::EACCES)
        );
        // Writable: everything, reading included.
        fs::write(dir.join("rw/file"), "changed").unwrap();
        assert_eq!(fs::read_to_string(dir.join("rw/file")).unwrap(), "changed");
        fs::create_dir(dir.join("rw/sub")).unwrap();
        fs::rename(dir.join("rw/file"), dir.join("rw/sub/moved")).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(dir.join("rw/sub/moved"))
            .unwrap()
            .set_len(0)
            .unwrap();
        fs::remove_file(dir.join("rw/sub/moved")).unwrap();
        fs::remove_dir(dir.join("rw/sub")).unwrap();
        // Nothing moves from a writable tree into a read-only one (EXDEV would let `mv`
        // fall back to copying, which the read-only side refuses too).
        fs::write(dir.join("rw/escape"), "x").unwrap();
        let moved = errno(fs::rename(dir.join("rw/escape"), dir.join("ro/escape")));
        assert!(
            matches!(moved, Some(Errno::EACCES | Errno::EXDEV)),
            "{moved:?}"
        );
    }

    #[test]
    fn only_the_listed_programs_and_their_interpreters_run() {
        let Some(dir) = child_dir() else {
            let tmp = tempfile::tempdir().unwrap();
            let script = tmp.path().join("script");
            fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
            run_child(
                "only_the_listed_programs_and_their_interpreters_run",
                tmp.path(),
            );
            return;
        };
        let script = dir.join("script");
        let status = restrict(&Rules {
            list: vec![],
            read: system(),
            write: vec![PathBuf::from("/dev/null")],
            exec: vec![
                PathBuf::from("/bin/true"),
                PathBuf::from("/bin/busybox"),
                script.clone(),
            ],
        })
        .unwrap();
        if !enforced(status) {
            return;
        }
        let run = |program: &Path, args: &[&str]| {
            crate::process::command(program.to_str().unwrap())
                .args(args)
                .status()
        };
        // Dynamic: runs because its loader came along.
        assert!(run(Path::new("/bin/true"), &[]).unwrap().success());
        // Static: nothing else needed.
        assert!(run(Path::new("/bin/busybox"), &["true"]).unwrap().success());
        // A script: its #! interpreter (and that one's loader) came along.
        assert_eq!(run(&script, &[]).unwrap().code(), Some(3));
        // Readable, but not listed.
        assert_eq!(
            errno(run(Path::new("/usr/bin/env"), &[])),
            Some(Errno::EACCES)
        );
    }

    #[test]
    fn without_exec_rules_every_readable_program_runs() {
        let Some(_) = child_dir() else {
            run_child(
                "without_exec_rules_every_readable_program_runs",
                Path::new("/"),
            );
            return;
        };
        let status = restrict(&Rules {
            list: vec![],
            read: system(),
            write: vec![PathBuf::from("/dev/null")],
            ..Rules::default()
        })
        .unwrap();
        if !enforced(status) {
            return;
        }
        let env = crate::process::command("/usr/bin/env").arg("true").status();
        assert!(env.unwrap().success());
    }

    #[test]
    fn signals_and_abstract_sockets_stop_at_the_sandbox() {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
        let name = "devbox-landlock-test";
        let Some(_) = child_dir() else {
            let name = format!("{name}-{}", std::process::id());
            let addr = SocketAddr::from_abstract_name(&name).unwrap();
            let _listener = UnixListener::bind_addr(&addr).unwrap();
            run_child(
                "signals_and_abstract_sockets_stop_at_the_sandbox",
                Path::new(&name),
            );
            return;
        };
        let parent = nix::unistd::Pid::parent();
        let socket_name = child_dir().unwrap();
        let addr =
            SocketAddr::from_abstract_name(socket_name.as_os_str().as_encoded_bytes()).unwrap();
        // Both work before: the parent is ours to signal and its socket listens.
        nix::sys::signal::kill(parent, None).unwrap();
        UnixStream::connect_addr(&addr).unwrap();
        let status = restrict(&Rules::default()).unwrap();
        if !enforced(status) {
            return;
        }
        assert_eq!(nix::sys::signal::kill(parent, None), Err(Errno::EPERM));
        assert_eq!(errno(UnixStream::connect_addr(&addr)), Some(Errno::EPERM));
    }

    /// The worker's three lock-down steps in their real order (here, where the re-run
    /// harness is): each leaves the next one able to work, and a program still starts
    /// afterwards, threads and all (glibc's clone3 falls back to clone).
    #[test]
    fn the_whole_lock_down_leaves_a_working_program() {
        let Some(_) = child_dir() else {
            run_child(
                "the_whole_lock_down_leaves_a_working_program",
                Path::new("/"),
            );
            return;
        };
        let filter = crate::runner::seccomp::program().unwrap();
        crate::runner::caps::drop_all().unwrap();
        let status = restrict(&Rules {
            list: vec![],
            read: system(),
            write: vec![PathBuf::from("/dev/null")],
            ..Rules::default()
        })
        .unwrap();
        crate::runner::seccomp::apply(&filter).unwrap();
        assert!(enforced(status) || status == Status::Unsupported);
        let run = |program: &str, args: &[&str]| {
            crate::process::command(program)
                .args(args)
                .status()
                .unwrap()
        };
        assert!(run("/bin/true", &[]).success());
        assert!(std::thread::spawn(|| 7).join().is_ok_and(|n| n == 7));
        assert!(!run("/usr/bin/unshare", &["--user", "/bin/true"]).success());
        assert_eq!(
            nix::unistd::chroot("/"),
            Err(Errno::EPERM),
            "chroot without CAP_SYS_CHROOT"
        );
    }

    #[test]
    fn an_unreadable_interpreter_chain_names_the_program() {
        // Fails while building the ruleset, before anything is enforced: safe in-process.
        let tmp = tempfile::tempdir().unwrap();
        let broken = tmp.path().join("broken");
        fs::write(&broken, b"\x7fELF\x02\x01\x01").unwrap();
        let err = restrict(&Rules {
            list: vec![],
            exec: vec![broken.clone()],
            ..Rules::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "reading the interpreter of {}: truncated ELF header",
                broken.display()
            )
        );
    }

    #[test]
    fn rights_match_the_brief() {
        let open = Rights::new(false);
        assert!(open.read.contains(AccessFs::Execute));
        assert!(open.write.contains(AccessFs::from_all(TARGET)));
        let listed = Rights::new(true);
        assert_eq!(listed.read, AccessFs::ReadFile | AccessFs::ReadDir);
        assert!(!listed.write.contains(AccessFs::Execute));
        assert!(listed.write.contains(
            AccessFs::Refer | AccessFs::Truncate | AccessFs::IoctlDev | AccessFs::MakeDir
        ));
        assert_eq!(listed.exec, AccessFs::Execute | AccessFs::ReadFile);
    }
}
