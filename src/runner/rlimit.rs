//! Resource limits the worker sets on itself just before it execs. Always: no core dumps
//! (a core file of a sandboxed process can hold secrets and lands outside the policy's
//! view), a bounded number of open files and the policy's file size limit. Only when no
//! cgroup could be made (`fallback`): pids as `RLIMIT_NPROC` and memory as `RLIMIT_AS`.
//! Not both: `RLIMIT_NPROC` counts the same tasks as `pids.max` and is checked first, so
//! beside a cgroup it would stop the fork itself and the cgroup would never record the
//! hit devbox reports (seen on cgroup v2 as an ordinary user).
//!
//! It never raises a hard limit: a value above the current hard limit is clamped to it,
//! with a note for the caller to print (raising would need `CAP_SYS_RESOURCE`, and a
//! sandbox should not be the thing that widens what its parent was given). Soft and hard
//! are set to the same value, so the worker cannot raise its soft limit back.
//!
//! It never touches signal dispositions. The worker resets every signal to its default
//! before calling [`apply`], so writing past `RLIMIT_FSIZE` kills it with `SIGXFSZ`, the
//! way a limit is expected to end a process, instead of handing it `EFBIG` to ignore.
//!
//! `RLIMIT_NPROC`, as observed on Linux 6.18 (and as the kernel has counted it since 5.14,
//! with "ucounts"): the count is of tasks, threads included, of the real uid *within one
//! user namespace*, and the check walks up the namespaces: at each parent level the
//! creator's count is held against the `RLIMIT_NPROC` the creator had when it made the
//! namespace. Tasks whose real uid is root of the initial namespace are exempt, and so is
//! anything with `CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN` there. What that means here:
//! - the worker sets the limit inside its own user namespace, so an unprivileged host
//!   user's other processes do not count (seen: a user running podman, whose threads alone
//!   exceeded 5, could still fork 4 children under `nproc = 5` in a fresh namespace, and
//!   none without one);
//! - a supervisor running as root with the sandbox's root mapped to host root gets no
//!   limit at all (seen: 20 of 20 forks succeeded under `nproc = 5`); mapped to an
//!   unprivileged host uid (`0 100000 65536`), the limit holds again (4 forks).
//!
//! Before 5.14 the count was per host user across all namespaces, so the first point does
//! not hold there. Either way it is an approximation of `pids.max`, as `RLIMIT_AS` (address
//! space, per process, reserved as well as touched) is of `memory.max` (resident memory of
//! the whole sandbox).
//!
//! A native service's `ulimits` come on top ([`set_service_limits`]): each is set soft and
//! hard as written, in place of devbox's own value for that resource (the default core
//! and nofile limits), and beside a fallback limit of the same resource the lower of the
//! two holds. They too are clamped to the hard limit devbox runs under.

use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

use crate::config::model::Limits;

/// Open files when the policy sets none: enough for builds and language servers, and
/// within `FD_SETSIZE`, so `select()`-based programs cannot be handed a descriptor they
/// would overflow on.
pub const DEFAULT_NOFILE: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {name}: {}", source.desc())]
    Get {
        name: &'static str,
        #[source]
        source: Errno,
    },
    #[error("setting {name} to {value}: {}", source.desc())]
    Set {
        name: &'static str,
        value: u64,
        #[source]
        source: Errno,
    },
}

/// A limit as `ulimits` writes it: a resource by its name there, soft and hard, -1 for
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The `ulimits` keys and the resources they limit: every name the configuration accepts.
const KEYS: [(&str, Resource, &str); 16] = [
    ("as", Resource::RLIMIT_AS, "RLIMIT_AS"),
    ("core", Resource::RLIMIT_CORE, "RLIMIT_CORE"),
    ("cpu", Resource::RLIMIT_CPU, "RLIMIT_CPU"),
    ("data", Resource::RLIMIT_DATA, "RLIMIT_DATA"),
    ("fsize", Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
    ("locks", Resource::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
    ("memlock", Resource::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
    ("nice", Resource::RLIMIT_NICE, "RLIMIT_NICE"),
    ("nofile", Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
    ("nproc", Resource::RLIMIT_NPROC, "RLIMIT_NPROC"),
    ("rss", Resource::RLIMIT_RSS, "RLIMIT_RSS"),
    ("rtprio", Resource::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
    ("rttime", Resource::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    (
        "sigpending",
        Resource::RLIMIT_SIGPENDING,
        "RLIMIT_SIGPENDING",
    ),
    ("stack", Resource::RLIMIT_STACK, "RLIMIT_STACK"),
];

/// The resource `ulimits.NAME` limits.
pub fn resource(name: &str) -> Option<Resource> {
    KEYS.iter().find(|k| k.0 == name).map(|k| k.1)
}

impl Ulimit {
    /// `ulimits.NAME = { soft, hard }` (-1: unlimited); `None` for a name that is no
    /// resource.
    pub fn new(name: &str, soft: i64, hard: i64) -> Option<Self> {
        let value = |v: i64| u64::try_from(v).unwrap_or(RLIM_INFINITY);
        Some(Self {
            resource: resource(name)?,
            soft: value(soft),
            hard: value(hard),
        })
    }
}

/// The service limits of the sandboxes this process makes.
static SERVICE: OnceLock<Vec<Ulimit>> = OnceLock::new();

/// Makes `limits` the worker's own in every sandbox this process makes from now on (the
/// monitor of a native service, which makes one). They reach the worker the way the
/// rest of its setup does: in the memory the sandbox's init and the worker are forked
/// with. Only the first call counts.
pub fn set_service_limits(limits: Vec<Ulimit>) {
    let _ = SERVICE.set(limits);
}

/// What [`apply`] will say of the service limits in a worker of this process (which
/// inherits its hard limits): the ones lowered to the hard limit devbox runs under.
pub fn service_notes() -> Result<Vec<String>, Error> {
    let service = SERVICE.get().map_or(&[][..], Vec::as_slice);
    let (_, notes) = plan(&Limits::default(), false, service, current_hard)?;
    Ok(notes
        .into_iter()
        .filter(|n| n.starts_with("ulimit "))
        .collect())
}

fn current_hard(resource: Resource) -> Result<u64, Error> {
    getrlimit(resource)
        .map(|(_, hard)| hard)
        .map_err(|source| Error::Get {
            name: name(resource),
            source,
        })
}

/// Sets the limits on the calling process and returns notes (values clamped to the hard
/// limit devbox itself runs under) for the caller to print as warnings.
pub fn apply(limits: &Limits, fallback: bool) -> Result<Vec<String>, Error> {
    let service = SERVICE.get().map_or(&[][..], Vec::as_slice);
    let (wants, notes) = plan(limits, fallback, service, current_hard)?;
    for w in wants {
        setrlimit(w.resource, w.soft, w.value).map_err(|source| Error::Set {
            name: name(w.resource),
            value: w.value,
            source,
        })?;
    }
    Ok(notes)
}

/// One limit to set: `value` hard, and soft as well but for a service's own (`soft`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Want {
    resource: Resource,
    soft: u64,
    value: u64,
}

/// What [`apply`] will set, given the current hard limits; kept apart from the system
/// calls so the clamping can be tested without changing the test process's limits.
fn plan(
    limits: &Limits,
    fallback: bool,
    service: &[Ulimit],
    hard: impl Fn(Resource) -> Result<u64, Error>,
) -> Result<(Vec<Want>, Vec<String>), Error> {
    let mut wants = vec![Want {
        resource: Resource::RLIMIT_CORE,
        soft: 0,
        value: 0,
    }];
    let mut notes = Vec::new();
    let mut want = |resource: Resource, what: &str, value: Option<u64>| -> Result<(), Error> {
        let Some(value) = value else { return Ok(()) };
        let hard = hard(resource)?;
        let value = if hard != RLIM_INFINITY && value > hard {
            notes.push(format!(
                "{what} limit {value} lowered to {hard}, the hard limit devbox itself runs under ({})",
                name(resource)
            ));
            hard
        } else {
            value
        };
        wants.push(Want {
            resource,
            soft: value,
            value,
        });
        Ok(())
    };
    match limits.nofile {
        Some(n) => want(Resource::RLIMIT_NOFILE, "nofile", Some(n))?,
        // The default only ever lowers: below 1024 the inherited hard limit stands, unnoted.
        None => {
            let hard = hard(Resource::RLIMIT_NOFILE)?;
            want(
                Resource::RLIMIT_NOFILE,
                "nofile",
                Some(DEFAULT_NOFILE.min(hard)),
            )?
        }
    }
    want(Resource::RLIMIT_FSIZE, "fsize", limits.fsize)?;
    if fallback {
        want(Resource::RLIMIT_NPROC, "pids", limits.pids.map(u64::from))?;
        want(Resource::RLIMIT_AS, "memory", limits.memory)?;
    }
    for u in service {
        let hard_now = hard(u.resource)?;
        let mut value = u.hard;
        if hard_now != RLIM_INFINITY && (value == RLIM_INFINITY || value > hard_now) {
            notes.push(format!(
                "ulimit {} hard limit {} lowered to {hard_now}, the hard limit devbox itself runs under ({})",
                ulimit_name(u.resource),
                shown(value),
                name(u.resource)
            ));
            value = hard_now;
        }
        let mut soft = if u.soft == RLIM_INFINITY {
            value
        } else {
            u.soft.min(value)
        };
        let defaults = [Resource::RLIMIT_CORE, Resource::RLIMIT_NOFILE];
        if let Some(i) = wants.iter().position(|w| w.resource == u.resource) {
            let w = wants.remove(i);
            if !defaults.contains(&u.resource) {
                value = value.min(w.value);
                soft = soft.min(w.soft);
            }
        }
        wants.push(Want {
            resource: u.resource,
            soft,
            value,
        });
    }
    Ok((wants, notes))
}

/// A limit as a note shows it.
fn shown(value: u64) -> String {
    if value == RLIM_INFINITY {
        "unlimited".into()
    } else {
        value.to_string()
    }
}

/// The `ulimits` key of `resource`.
fn ulimit_name(resource: Resource) -> &'static str {
    KEYS.iter().find(|k| k.1 == resource).map_or("?", |k| k.0)
}

fn name(resource: Resource) -> &'static str {
    KEYS.iter()
        .find(|k| k.1 == resource)
        .map_or("a resource limit", |k| k.2)
}

#[cfg(test)]
mod tests {
    //! The effects are checked in a child: the test binary runs itself again with
    //! `DEVBOX_RLIMIT_CHILD` naming a case, so the limits land on a process of its own
    //! and never on the test runner.

    use std::collections::HashMap;
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;

    use nix::libc;
    use nix::unistd::{Gid, Uid};

    use super::*;

    const CHILD: &str = "DEVBOX_RLIMIT_CHILD";
    const MIB: u64 = 1 << 20;

    fn limits() -> Limits {
        Limits::default()
    }

    /// A `plan` over made-up hard limits (infinite unless listed).
    fn plan_with(
        limits: &Limits,
        fallback: bool,
        hard: &[(Resource, u64)],
    ) -> (Vec<(Resource, u64)>, Vec<String>) {
        let hard: HashMap<Resource, u64> = hard.iter().copied().collect();
        let (wants, notes) = plan(limits, fallback, &[], |r| {
            Ok(hard.get(&r).copied().unwrap_or(RLIM_INFINITY))
        })
        .unwrap();
        (
            wants.into_iter().map(|w| (w.resource, w.value)).collect(),
            notes,
        )
    }

    #[test]
    fn a_services_ulimits_replace_the_defaults_keep_soft_and_hard_and_yield_to_a_fallback() {
        let u = |name, soft, hard| Ulimit::new(name, soft, hard).unwrap();
        let l = Limits {
            pids: Some(50),
            ..limits()
        };
        let service = [
            u("core", -1, -1),
            u("nofile", 64, 128),
            u("nproc", 100, 200),
            u("stack", 1 << 20, -1),
            u("memlock", -1, -1),
        ];
        let hard: HashMap<Resource, u64> = [(Resource::RLIMIT_STACK, 8 * MIB)].into();
        let (wants, notes) = plan(&l, true, &service, |r| {
            Ok(hard.get(&r).copied().unwrap_or(RLIM_INFINITY))
        })
        .unwrap();
        let got: Vec<_> = wants
            .iter()
            .map(|w| (w.resource, w.soft, w.value))
            .collect();
        assert_eq!(
            got,
            [
                (Resource::RLIMIT_CORE, RLIM_INFINITY, RLIM_INFINITY),
                (Resource::RLIMIT_NOFILE, 64, 128),
                // Beside the fallback for pids_limit = 50, the lower of the two.
                (Resource::RLIMIT_NPROC, 50, 50),
                (Resource::RLIMIT_STACK, MIB, 8 * MIB),
                (Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY),
            ]
        );
        assert_eq!(
            notes,
            ["ulimit stack hard limit unlimited lowered to 8388608, the hard limit devbox itself runs under (RLIMIT_STACK)"]
        );
        assert_eq!(Ulimit::new("nofiles", 1, 1), None);
    }

    #[test]
    fn defaults_are_no_core_and_1024_files() {
        let (wants, notes) = plan_with(&limits(), false, &[]);
        assert_eq!(
            wants,
            [(Resource::RLIMIT_CORE, 0), (Resource::RLIMIT_NOFILE, 1024)]
        );
        assert!(notes.is_empty());
    }

    #[test]
    fn default_nofile_keeps_a_lower_hard_limit_without_a_note() {
        let (wants, notes) = plan_with(&limits(), false, &[(Resource::RLIMIT_NOFILE, 256)]);
        assert_eq!(wants[1], (Resource::RLIMIT_NOFILE, 256));
        assert!(notes.is_empty());
    }

    #[test]
    fn values_above_the_hard_limit_are_clamped_with_a_note() {
        let l = Limits {
            nofile: Some(4096),
            fsize: Some(10 * MIB),
            ..limits()
        };
        let (wants, notes) = plan_with(
            &l,
            false,
            &[
                (Resource::RLIMIT_NOFILE, 2048),
                (Resource::RLIMIT_FSIZE, MIB),
            ],
        );
        assert_eq!(
            wants,
            [
                (Resource::RLIMIT_CORE, 0),
                (Resource::RLIMIT_NOFILE, 2048),
                (Resource::RLIMIT_FSIZE, MIB)
            ]
        );
        assert_eq!(
            notes,
            [
                "nofile limit 4096 lowered to 2048, the hard limit devbox itself runs under (RLIMIT_NOFILE)",
                "fsize limit 10485760 lowered to 1048576, the hard limit devbox itself runs under (RLIMIT_FSIZE)",
            ]
        );
    }

    #[test]
    fn memory_and_pids_become_rlimits_only_as_a_fallback() {
        let l = Limits {
            memory: Some(256 * MIB),
            pids: Some(5),
            cpus: Some(1.0),
            ..limits()
        };
        let (wants, _) = plan_with(&l, false, &[]);
        assert!(wants[2..].is_empty(), "{wants:?}");
        let (wants, _) = plan_with(&l, true, &[]);
        assert_eq!(
            wants[2..],
            [
                (Resource::RLIMIT_NPROC, 5),
                (Resource::RLIMIT_AS, 256 * MIB)
            ]
        );
    }

    /// Runs `case` in a fresh copy of this test binary; `env` adds variables.
    fn run_child(case: &str, env: &[(&str, &str)]) -> std::process::Output {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = crate::process::command(exe.to_str().unwrap());
        cmd.args([
            "--exact",
            "runner::rlimit::tests::child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, case);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn describe(out: &std::process::Output) -> String {
        format!(
            "{:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Fails unless the child case exited 0.
    fn child_ok(case: &str) {
        let out = run_child(case, &[]);
        assert!(out.status.success(), "{}", describe(&out));
    }

    /// The child side: does nothing in a normal test run.
    #[test]
    fn child() {
        let Ok(case) = std::env::var(CHILD) else {
            return;
        };
        let code = match child_case(&case) {
            Ok(()) => 0,
            Err(why) => {
                eprintln!("child {case}: {why}");
                1
            }
        };
        std::process::exit(code);
    }

    fn child_case(case: &str) -> Result<(), String> {
        let get = |r| getrlimit(r).map_err(|e| e.to_string());
        match case {
            "fsize" | "fsize-ignored" => {
                let path = std::env::var("DEVBOX_RLIMIT_FILE").unwrap();
                // SAFETY: plain disposition changes, no handler.
                unsafe {
                    let how = if case == "fsize" {
                        libc::SIG_DFL
                    } else {
                        libc::SIG_IGN
                    };
                    libc::signal(libc::SIGXFSZ, how);
                }
                apply(
                    &Limits {
                        fsize: Some(MIB),
                        ..limits()
                    },
                    false,
                )
                .map_err(|e| e.to_string())?;
                let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
                let chunk = vec![0u8; 64 * 1024];
                for _ in 0..32 {
                    if let Err(e) = f.write_all(&chunk) {
                        let len = f.metadata().map_err(|e| e.to_string())?.len();
                        return match (e.raw_os_error(), len) {
                            (Some(libc::EFBIG), MIB) => Ok(()),
                            _ => Err(format!("write failed with {e} at length {len}")),
                        };
                    }
                }
                Err("2 MiB written past a 1 MiB limit".into())
            }
            "nofile" => {
                apply(
                    &Limits {
                        nofile: Some(16),
                        ..limits()
                    },
                    false,
                )
                .map_err(|e| e.to_string())?;
                let mut held = Vec::new();
                let err = loop {
                    match std::fs::File::open("/dev/null") {
                        Ok(f) => held.push(f),
                        Err(e) => break e,
                    }
                    if held.len() > 64 {
                        return Err("more than 64 files opened under nofile = 16".into());
                    }
                };
                // SAFETY: F_GETFD only asks whether the descriptor is open.
                let open_below_16 = (0..16)
                    .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } != -1)
                    .count();
                match (err.raw_os_error(), open_below_16) {
                    (Some(libc::EMFILE), 16) => Ok(()),
                    _ => Err(format!(
                        "open failed with {err} with {open_below_16} of descriptors 0..16 open"
                    )),
                }
            }
            "defaults" => {
                let want_nofile = DEFAULT_NOFILE.min(get(Resource::RLIMIT_NOFILE)?.1);
                let notes = apply(&limits(), false).map_err(|e| e.to_string())?;
                match (
                    get(Resource::RLIMIT_CORE)?,
                    get(Resource::RLIMIT_NOFILE)?,
                    notes.is_empty(),
                ) {
                    ((0, 0), (s, h), true) if s == want_nofile && h == want_nofile => Ok(()),
                    other => Err(format!("limits after apply: {other:?}")),
                }
            }
            "clamp" => {
                setrlimit(Resource::RLIMIT_NOFILE, 64, 64).map_err(|e| e.to_string())?;
                let notes = apply(
                    &Limits {
                        nofile: Some(100),
                        ..limits()
                    },
                    false,
                )
                .map_err(|e| e.to_string())?;
                let expected = ["nofile limit 100 lowered to 64, the hard limit devbox itself runs under (RLIMIT_NOFILE)"];
                match (get(Resource::RLIMIT_NOFILE)?, notes.as_slice()) {
                    ((64, 64), n) if n == expected => Ok(()),
                    other => Err(format!("after apply: {other:?}")),
                }
            }
            "memory" => {
                apply(
                    &Limits {
                        memory: Some(256 * MIB),
                        ..limits()
                    },
                    true,
                )
                .map_err(|e| e.to_string())?;
                if get(Resource::RLIMIT_AS)? != (256 * MIB, 256 * MIB) {
                    return Err(format!("RLIMIT_AS is {:?}", get(Resource::RLIMIT_AS)?));
                }
                // SAFETY: an anonymous mapping, unmapped below if it was made at all.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        512 << 20,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if p != libc::MAP_FAILED {
                    unsafe { libc::munmap(p, 512 << 20) };
                    return Err("mapped 512 MiB under a 256 MiB RLIMIT_AS".into());
                }
                match Errno::last() {
                    Errno::ENOMEM => Ok(()),
                    e => Err(format!("mmap failed with {e}")),
                }
            }
            "nproc" | "nproc-root" => {
                if case == "nproc" {
                    // An unused uid, so no other process counts against the limit.
                    let (uid, gid) = (Uid::from_raw(61234), Gid::from_raw(61234));
                    nix::unistd::setgroups(&[]).map_err(|e| e.to_string())?;
                    nix::unistd::setresgid(gid, gid, gid).map_err(|e| e.to_string())?;
                    nix::unistd::setresuid(uid, uid, uid).map_err(|e| e.to_string())?;
                }
                apply(
                    &Limits {
                        pids: Some(5),
                        ..limits()
                    },
                    true,
                )
                .map_err(|e| e.to_string())?;
                // The limit counts tasks, so this process's threads (the test runner's
                // and this test's) take their share of the 5.
                let threads = std::fs::read_dir("/proc/self/task")
                    .map_err(|e| e.to_string())?
                    .count();
                let (forked, err) = fork_until_failure(8);
                let expected = if case == "nproc" { 5 - threads } else { 8 };
                if forked == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "{forked} forks succeeded with {threads} threads (then {err:?})"
                    ))
                }
            }
            other => Err(format!("unknown case {other}")),
        }
    }

    /// Forks up to `max` children that wait to be killed; returns how many forked and the
    /// error that stopped it. The children make no call but `pause`, as they are forks of
    /// a threaded process.
    fn fork_until_failure(max: usize) -> (usize, Option<Errno>) {
        let mut kids = Vec::new();
        let mut err = None;
        for _ in 0..max {
            // SAFETY: the child only calls async-signal-safe functions.
            match unsafe { libc::fork() } {
                -1 => {
                    err = Some(Errno::last());
                    break;
                }
                0 => loop {
                    unsafe { libc::pause() };
                },
                pid => kids.push(pid),
            }
        }
        for pid in &kids {
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
                libc::waitpid(*pid, std::ptr::null_mut(), 0);
            }
        }
        (kids.len(), err)
    }

    #[test]
    fn writing_past_fsize_kills_with_sigxfsz() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        let out = run_child("fsize", &[("DEVBOX_RLIMIT_FILE", file.to_str().unwrap())]);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGXFSZ),
            "{}",
            describe(&out)
        );
        assert_eq!(std::fs::metadata(&file).unwrap().len(), MIB);
    }

    #[test]
    fn writing_past_fsize_with_sigxfsz_ignored_is_efbig_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        let out = run_child(
            "fsize-ignored",
            &[("DEVBOX_RLIMIT_FILE", file.to_str().unwrap())],
        );
        assert!(out.status.success(), "{}", describe(&out));
    }

    #[test]
    fn the_seventeenth_descriptor_under_nofile_16_is_emfile() {
        child_ok("nofile");
    }

    #[test]
    fn defaults_set_core_0_and_cap_nofile() {
        child_ok("defaults");
    }

    #[test]
    fn a_lowered_hard_limit_is_kept_and_noted() {
        child_ok("clamp");
    }

    #[test]
    fn fallback_memory_limits_address_space() {
        child_ok("memory");
    }

    #[test]
    fn fallback_pids_limits_an_unprivileged_uid_to_5_tasks() {
        if !nix::unistd::geteuid().is_root() {
            // Dropping to an unused uid is the only way to a count of zero other tasks.
            assert!(
                std::env::var("DEVBOX_REQUIRE_ENGINES").as_deref() != Ok("1"),
                "needs root (DEVBOX_REQUIRE_ENGINES=1)"
            );
            eprintln!("skipped: needs root to switch to an unused uid");
            return;
        }
        child_ok("nproc");
    }

    #[test]
    fn fallback_pids_does_not_bind_real_root() {
        // The kernel exempts host root from RLIMIT_NPROC: why a root supervisor must map the
        // sandbox to an unprivileged uid, or have a cgroup, for pids to be limited.
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: shows root's exemption, so needs root");
            return;
        }
        child_ok("nproc-root");
    }
}
