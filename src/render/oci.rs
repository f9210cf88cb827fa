//! A worker as an OCI runtime bundle for runc: `config.json` and an empty `rootfs/`, with
//! the isolation of `devbox run` as far as the runtime spec can say it. The root is
//! read-only and empty; everything the worker sees comes from mounts, laid out as
//! `runner::rootfs` lays out the native sandbox (same paths inside as outside, read-only
//! unless writable, denied paths covered, the host's symbolic links mirrored in `rootfs/`).
//! `exec.allow` is kept with noexec mounts, as `devbox run` keeps it without Landlock. What
//! runc cannot do (the egress proxy, the audit log, the wall-clock timeout) comes back as a
//! warning.
//!
//! It never touches the machine beyond writing the bundle directory: the host's file system
//! is only asked where its symbolic links lead, and [`Caller::current`] only reads ids and
//! limits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
use oci_spec::runtime::{
    Arch, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder, Mount,
    MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};
use oci_spec::OciSpecError;

use crate::config::absolute;
use crate::fsutil::{write_atomic, PathError, WrapPath};
use crate::runner::cgroup::{cpu_quota, CPU_PERIOD_US};
use crate::runner::rlimit::DEFAULT_NOFILE;
use crate::runner::rootfs::{is_library_dir, resolve, HostFs, Kind, Resolved};
use crate::runner::seccomp;
use crate::runner::spec::{MountKind, Net, RunSpec};

/// The annotation naming the worker; it marks a bundle as devbox's, so that rendering
/// again may replace it.
pub const ANNOTATION: &str = "devbox.worker";

/// Bundle files beside `config.json`, bound into the container.
const EMPTY: &str = "empty";
const ETC: &str = "etc";

/// `/proc` files that show host-wide state; runc's, Docker's and Podman's default set.
/// (Their `/sys` entries are left out: the container has no `/sys`.)
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
];

/// `/proc` knobs that stay readable but not writable: `devbox run`'s two, and the rest of
/// the engines' default set.
const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("building the OCI configuration: {0}")]
    Spec(#[from] OciSpecError),
    #[error("{} is not empty and holds no bundle devbox rendered; refusing to write into it\nhint: give a new or empty directory", .0.display())]
    NotOurs(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is in the way: the rootfs of a bundle devbox rendered holds only empty mount points and links\nhint: remove it, or give a new directory", .0.display())]
    Occupied(PathBuf),
    #[error("serializing {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Who renders: the container's root is mapped to the caller, and runc sets rlimits under
/// the caller's hard limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Hard limits (`RLIM_INFINITY` for none). runc sets rlimits from inside the
    /// container's user namespace, where raising one above them is refused.
    pub hard_nofile: u64,
    pub hard_fsize: u64,
}

impl Caller {
    /// The calling process's effective ids and hard limits.
    pub fn current() -> Self {
        let hard = |r| getrlimit(r).map(|(_, h)| h).unwrap_or(RLIM_INFINITY);
        Self {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            hard_nofile: hard(Resource::RLIMIT_NOFILE),
            hard_fsize: hard(Resource::RLIMIT_FSIZE),
        }
    }
}

/// A file beside `config.json`: its path relative to the bundle, contents and mode.
pub type BundleFile = (PathBuf, Vec<u8>, u32);

/// A rendered bundle, not yet written.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub spec: Spec,
    /// Files beside `config.json`, relative to the bundle.
    pub files: Vec<BundleFile>,
    /// Directories to make in `rootfs/`, as paths inside the container.
    pub dirs: Vec<PathBuf>,
    /// Symbolic links to make in `rootfs/`: the path inside the container and its target.
    pub links: Vec<(PathBuf, PathBuf)>,
    pub warnings: Vec<String>,
}

/// One mount of the policy's part of the tree, before it becomes an OCI mount.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Bind {
        path: PathBuf,
        readonly: bool,
        noexec: bool,
    },
    DenyDir(PathBuf),
    DenyFile(PathBuf),
}

/// A policy path as found on the host.
struct Found {
    real: PathBuf,
    links: Vec<(PathBuf, PathBuf)>,
    kind: MountKind,
    /// The library-and-allowed-binaries pass of `exec.allow`, after the policy's own binds.
    exec: bool,
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

fn strings(opts: &[&str]) -> Vec<String> {
    opts.iter().map(|s| s.to_string()).collect()
}

fn mount(dst: &Path, typ: &str, src: &Path, opts: Vec<String>) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(dst)
        .typ(typ)
        .source(src)
        .options(opts)
        .build()
}

/// Renders `spec` as a bundle run by `caller`, asking `host` where paths lead.
pub fn render(spec: &RunSpec, host: &dyn HostFs, caller: &Caller) -> Result<Bundle, Error> {
    let mut warnings = Vec::new();
    let tree = tree(spec, host, &mut warnings);
    let name = spec.hostname();
    let (mounts, files) = mounts(spec, &tree, &name)?;
    let links = rootfs_links(spec, &tree, &mut warnings);
    // A workdir nothing shows is made in rootfs/, as `runner::rootfs` makes it.
    let dirs = if covered(spec, &spec.workdir) || spec.workdir.starts_with("/tmp") {
        Vec::new()
    } else {
        vec![spec.workdir.clone()]
    };
    let process = process(spec, caller, &mut warnings)?;
    let linux = linux(spec, caller)?;
    differences(spec, caller, &mut warnings);
    let oci = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()?,
        )
        .mounts(mounts)
        .process(process)
        .hostname(name)
        .annotations(HashMap::from([(ANNOTATION.to_string(), spec.name.clone())]))
        .linux(linux)
        .build()?;
    Ok(Bundle {
        spec: oci,
        files,
        dirs,
        links,
        warnings,
    })
}

/// The policy's part of the tree.
struct Tree {
    entries: Vec<Entry>,
    /// The real paths bound, in order.
    bound: Vec<PathBuf>,
    /// Symbolic links met on the way to them.
    links: BTreeMap<PathBuf, PathBuf>,
    exec_by_mounts: bool,
}

/// The policy's paths, resolved on the host, then ordered by where they really are:
/// parents before children, and at equal depth the policy's own binds, then the exec pass,
/// then denials, so that each covers what it should.
fn tree(spec: &RunSpec, host: &dyn HostFs, warnings: &mut Vec<String>) -> Tree {
    let exec_by_mounts = !spec.exec_allow.is_empty();
    let mut found: Vec<Found> = Vec::new();
    for m in &spec.mounts {
        match resolve(host, &m.path) {
            Some(Resolved { real, links, .. }) => found.push(Found {
                real,
                links,
                kind: m.kind,
                exec: false,
            }),
            // Kept, so the bundle works once the path is made.
            None if m.kind == MountKind::ReadWrite => {
                warnings.push(format!(
                    "oci: writable path {} does not exist; runc refuses the bundle until it does\nhint: create it, or run the worker once with `devbox run {}`, which makes the [data] layout",
                    m.path.display(),
                    spec.name
                ));
                found.push(Found {
                    real: absolute(&m.path, Path::new("/")),
                    links: Vec::new(),
                    kind: m.kind,
                    exec: false,
                });
            }
            None if m.kind == MountKind::ReadOnly => warnings.push(format!(
                "oci: {} does not exist on this machine; not shown in the container",
                m.path.display()
            )),
            None => {}
        }
    }
    if exec_by_mounts {
        found.extend(exec_pass(spec, host));
    }
    let rank = |f: &Found| match (f.kind, f.exec) {
        (MountKind::Deny, _) => 2,
        (_, true) => 1,
        _ => 0,
    };
    found.sort_by_key(|f| (depth(&f.real), rank(f)));

    let mut t = Tree {
        entries: Vec::new(),
        bound: Vec::new(),
        links: BTreeMap::new(),
        exec_by_mounts,
    };
    for f in &found {
        let entry = match f.kind {
            MountKind::Deny => {
                // Only what is shown needs covering.
                if !t.bound.iter().any(|b| f.real.starts_with(b)) {
                    continue;
                }
                if host.kind(&f.real) == Some(Kind::Dir) {
                    Entry::DenyDir(f.real.clone())
                } else {
                    Entry::DenyFile(f.real.clone())
                }
            }
            MountKind::ReadOnly | MountKind::ReadWrite => {
                let readonly = f.kind == MountKind::ReadOnly;
                // Under exec.allow nothing writable is executable, and of what is read-only
                // only the library directories and (in the exec pass) the allowed binaries.
                let noexec = exec_by_mounts && !(f.exec || readonly && is_library_dir(&f.real));
                Entry::Bind {
                    path: f.real.clone(),
                    readonly,
                    noexec,
                }
            }
        };
        if t.entries.contains(&entry) {
            continue;
        }
        if let Entry::Bind { path, .. } = &entry {
            t.bound.push(path.clone());
        }
        for (l, to) in &f.links {
            t.links.entry(l.clone()).or_insert_with(|| to.clone());
        }
        t.entries.push(entry);
    }
    t
}

/// Whether the policy shows `path` from the host.
fn covered(spec: &RunSpec, path: &Path) -> bool {
    spec.mounts
        .iter()
        .any(|m| m.kind != MountKind::Deny && path.starts_with(&m.path))
}

fn own_tmp(spec: &RunSpec) -> bool {
    !spec.mounts.iter().any(|m| m.path == Path::new("/tmp"))
}

/// The mounts, in `runner::rootfs` order: /tmp first (policy paths may lie under it), the
/// policy's paths, then /proc, /dev and the generated files; and the bundle's files they
/// bind.
fn mounts(
    spec: &RunSpec,
    tree: &Tree,
    hostname: &str,
) -> Result<(Vec<Mount>, Vec<BundleFile>), OciSpecError> {
    let tmpfs = Path::new("tmpfs");
    let sealed = ["ro", "nosuid", "nodev", "noexec"];
    let mut mounts: Vec<Mount> = Vec::new();
    if own_tmp(spec) {
        let mut o = strings(&["nosuid", "nodev", "mode=1777"]);
        if tree.exec_by_mounts {
            o.push("noexec".into());
        }
        mounts.push(mount(Path::new("/tmp"), "tmpfs", tmpfs, o)?);
    }
    for e in &tree.entries {
        mounts.push(match e {
            Entry::Bind {
                path,
                readonly,
                noexec,
            } => {
                let mut o = strings(&[
                    "rbind",
                    if *readonly { "ro" } else { "rw" },
                    "nosuid",
                    "nodev",
                ]);
                if *noexec {
                    o.push("noexec".into());
                }
                mount(path, "bind", path, o)?
            }
            Entry::DenyDir(path) => {
                let mut o = strings(&sealed);
                o.extend(strings(&["mode=000", "size=4k"]));
                mount(path, "tmpfs", tmpfs, o)?
            }
            Entry::DenyFile(path) => {
                let mut o = strings(&["bind"]);
                o.extend(strings(&sealed));
                mount(path, "bind", Path::new(EMPTY), o)?
            }
        });
    }
    mounts.push(mount(
        Path::new("/proc"),
        "proc",
        Path::new("proc"),
        strings(&["nosuid", "nodev", "noexec"]),
    )?);
    // runc makes null, zero, full, random, urandom and tty in a /dev it does not bind,
    // plus the fd, stdin, stdout and stderr links: `runner::rootfs::DEVICES`, no more.
    mounts.push(mount(
        Path::new("/dev"),
        "tmpfs",
        tmpfs,
        strings(&["nosuid", "noexec", "strictatime", "mode=755", "size=65536k"]),
    )?);
    mounts.push(mount(
        Path::new("/dev/shm"),
        "tmpfs",
        Path::new("shm"),
        strings(&["nosuid", "nodev", "noexec", "mode=1777", "size=65536k"]),
    )?);

    let mut files: Vec<BundleFile> = Vec::new();
    if tree.entries.iter().any(|e| matches!(e, Entry::DenyFile(_))) {
        files.push((EMPTY.into(), Vec::new(), 0));
    }
    // The worker is root inside (see `linux`), so root and nobody are all there is.
    let generated = crate::runner::rootfs::etc_files(0, 0, hostname);
    for (file, text) in generated {
        let dst = Path::new("/etc").join(file);
        if covered(spec, &dst) {
            continue;
        }
        let src = Path::new(ETC).join(file);
        let mut o = strings(&["bind"]);
        o.extend(strings(&sealed));
        mounts.push(mount(&dst, "bind", &src, o)?);
        files.push((src, text.into_bytes(), 0o644));
    }
    Ok((mounts, files))
}

/// The links to make in `rootfs/`. Links under a bound directory show through the bind;
/// those under a tmpfs cannot be made (the tmpfs covers `rootfs/`), so only where they
/// lead shows there.
fn rootfs_links(
    spec: &RunSpec,
    tree: &Tree,
    warnings: &mut Vec<String>,
) -> Vec<(PathBuf, PathBuf)> {
    let own_tmp = own_tmp(spec);
    let mut out = Vec::new();
    for (link, to) in &tree.links {
        if tree.bound.iter().any(|b| link.starts_with(b)) {
            continue;
        }
        let tmpfs_over = ["/tmp", "/proc", "/dev"]
            .iter()
            .find(|t| link.starts_with(t) && (**t != "/tmp" || own_tmp));
        if let Some(t) = tmpfs_over {
            warnings.push(format!(
                "oci: {} is a symbolic link under {t}, which is a tmpfs in the container; only where it leads is shown",
                link.display()
            ));
            continue;
        }
        out.push((link.clone(), to.clone()));
    }
    out
}

/// What `devbox run` does that the bundle cannot, as warnings.
fn differences(spec: &RunSpec, caller: &Caller, warnings: &mut Vec<String>) {
    if (caller.uid, caller.gid) != (0, 0) {
        warnings.push(format!(
            "oci: runc needs root mapped in the container's user namespace, so the worker is uid 0 inside (uid {} outside, with no privilege there); `devbox run` keeps uid {} inside",
            caller.uid, caller.uid
        ));
        let l = &spec.limits;
        if l.memory.is_some() || l.pids.is_some() || l.cpus.is_some() {
            warnings.push(
                "oci: rootless runc applies the memory, pids and cpus limits only where it may create a cgroup (cgroup v2 with a delegated subtree) and refuses to start elsewhere; `devbox run` falls back to rlimits"
                    .into(),
            );
        }
    }
    if let Net::Proxy(_) = spec.net {
        warnings.push(
            "oci: net: egress through devbox's proxy is not available under runc; the container gets an empty network namespace (loopback only), so the connections the policy allows fail too"
                .into(),
        );
    }
    if !spec.exec_allow.is_empty() {
        warnings.push(
            "oci: exec.allow is kept with noexec mounts, as `devbox run` does without Landlock: the allowed binaries and everything in read-only library directories (lib, lib64, ...) stay executable"
                .into(),
        );
    }
    if let Some(ms) = spec.limits.timeout_ms {
        warnings.push(format!(
            "oci: timeout ({}) has no OCI field; runc lets the worker run until it exits",
            humantime::format_duration(std::time::Duration::from_millis(ms))
        ));
    }
    let passed: Vec<&str> = spec
        .decisions
        .iter()
        .filter(|d| d.kind == "env" && d.rule.starts_with("env.pass"))
        .map(|d| d.what.as_str())
        .collect();
    if !passed.is_empty() {
        warnings.push(format!(
            "oci: env.pass: the values of {} are copied into config.json as they are now; runc does not read the caller's environment",
            passed.join(", ")
        ));
    }
    warnings.push(
        "oci: runc keeps no audit log; the policy's decisions are recorded only by `devbox run`"
            .into(),
    );
}

/// Without Landlock `exec.allow` is kept by mounts: the library directories of read-only
/// paths (the loader maps code from them) and each allowed binary, bound again executable.
fn exec_pass(spec: &RunSpec, host: &dyn HostFs) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut push = |real: PathBuf, links: Vec<(PathBuf, PathBuf)>| {
        if !out.iter().any(|f| f.real == real) {
            out.push(Found {
                real,
                links,
                kind: MountKind::ReadOnly,
                exec: true,
            });
        }
    };
    for m in spec.mounts.iter().filter(|m| m.kind == MountKind::ReadOnly) {
        for lib in ["lib", "lib32", "lib64", "libx32"] {
            if let Some(r) = resolve(host, &m.path.join(lib)) {
                if r.dir {
                    push(r.real, r.links);
                }
            }
        }
    }
    for b in &spec.exec_allow {
        if let Some(r) = resolve(host, b) {
            push(r.real, r.links);
        }
    }
    out
}

fn rlimit(typ: PosixRlimitType, value: u64) -> Result<PosixRlimit, OciSpecError> {
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(value)
        .hard(value)
        .build()
}

fn process(
    spec: &RunSpec,
    caller: &Caller,
    warnings: &mut Vec<String>,
) -> Result<oci_spec::runtime::Process, OciSpecError> {
    let mut clamp = |what: &str, value: u64, hard: u64, name: &str| {
        if hard != RLIM_INFINITY && value > hard {
            warnings.push(format!(
                "oci: {what} limit {value} lowered to {hard}, the hard limit devbox render runs under ({name}); runc refuses rlimits above it"
            ));
            hard
        } else {
            value
        }
    };
    let mut rlimits = vec![rlimit(PosixRlimitType::RlimitCore, 0)?];
    let nofile = match spec.limits.nofile {
        Some(n) => clamp("nofile", n, caller.hard_nofile, "RLIMIT_NOFILE"),
        // The default only ever lowers, as in `devbox run`.
        None => DEFAULT_NOFILE.min(caller.hard_nofile),
    };
    rlimits.push(rlimit(PosixRlimitType::RlimitNofile, nofile)?);
    if let Some(f) = spec.limits.fsize {
        let f = clamp("fsize", f, caller.hard_fsize, "RLIMIT_FSIZE");
        rlimits.push(rlimit(PosixRlimitType::RlimitFsize, f)?);
    }
    let none = HashSet::new;
    ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .args(spec.argv.clone())
        .env(
            spec.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .cwd(&spec.workdir)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(none())
                .effective(none())
                .inheritable(none())
                .permitted(none())
                .ambient(none())
                .build()?,
        )
        .rlimits(rlimits)
        .no_new_privileges(true)
        .build()
}

fn linux(spec: &RunSpec, caller: &Caller) -> Result<oci_spec::runtime::Linux, OciSpecError> {
    use LinuxNamespaceType as T;
    let mut kinds = vec![T::Pid, T::Mount, T::Uts, T::Ipc, T::Cgroup];
    if spec.net != Net::Host {
        kinds.push(T::Network);
    }
    // A user namespace mapping one id, the container's root to the caller. For root (the
    // usual runc user) that is the identity `devbox run` makes, and runc accepts it: the
    // bind mounts, their read-only remounts, /proc and the devices (bound from the host,
    // as runc does in a user namespace) all work in it. runc cannot map the caller's id
    // to itself otherwise: it needs the container's root mapped ("no user mapping found"),
    // and without newuidmap only one id can be, so a rootless caller's worker is root
    // inside, without privilege outside.
    kinds.push(T::User);
    let namespaces = kinds
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()?;
    let map = |id: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(id)
            .size(1u32)
            .build()
            .map(|m| vec![m])
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .uid_mappings(map(caller.uid)?)
        .gid_mappings(map(caller.gid)?)
        .masked_paths(strings(MASKED))
        .readonly_paths(strings(READ_ONLY))
        .seccomp(seccomp_profile()?)
        .build()?;
    linux.set_resources(resources(spec)?);
    Ok(linux)
}

fn resources(spec: &RunSpec) -> Result<Option<oci_spec::runtime::LinuxResources>, OciSpecError> {
    let l = &spec.limits;
    if l.memory.is_none() && l.pids.is_none() && l.cpus.is_none() {
        return Ok(None);
    }
    let mut r = LinuxResourcesBuilder::default();
    if let Some(m) = l.memory {
        let m = i64::try_from(m).unwrap_or(i64::MAX);
        // Memory plus swap at the same value: swap is no way around the limit.
        r = r.memory(LinuxMemoryBuilder::default().limit(m).swap(m).build()?);
    }
    if let Some(p) = l.pids {
        r = r.pids(LinuxPidsBuilder::default().limit(i64::from(p)).build()?);
    }
    if let Some(c) = l.cpus {
        // The quota `devbox run` writes to its cgroup.
        let quota = i64::try_from(cpu_quota(c)).unwrap_or(i64::MAX);
        r = r.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()?,
        );
    }
    r.build().map(Some)
}

fn syscall(
    names: &[&str],
    errno: i32,
    args: &[(usize, LinuxSeccompOperator, u64, u64)],
) -> Result<LinuxSyscall, OciSpecError> {
    let mut b = LinuxSyscallBuilder::default()
        .names(strings(names))
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno as u32);
    if !args.is_empty() {
        b = b.args(
            args.iter()
                .map(|&(index, op, value, value_two)| {
                    LinuxSeccompArgBuilder::default()
                        .index(index)
                        .op(op)
                        .value(value)
                        .value_two(value_two)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    b.build()
}

/// `runner::seccomp`'s filter in the runtime spec's words, for runc's libseccomp.
///
/// Only the native architecture is listed. libseccomp answers a system call of any other
/// ABI (i386's `int 0x80`, x32's numbers on x86_64) with its bad-architecture action,
/// which runc leaves at killing the process: so does the runner for i386, while it answers
/// x32 with `ENOSYS`. Listing x32 would instead let its calls through to the kernel with
/// only the deny-list applied (tried with runc 1.1.5 and libseccomp 2.5.4, where both
/// kinds of call end in `SIGSYS`).
///
/// runc skips a name its libseccomp does not know (libseccomp 2.5.4: `open_tree_attr`),
/// and the spec has no way to give numbers instead; such a call is then left to the
/// kernel's own checks (`open_tree_attr` copying a mount needs `CAP_SYS_ADMIN`, which the
/// worker lacks).
fn seccomp_profile() -> Result<LinuxSeccomp, OciSpecError> {
    use nix::libc::{ENOSYS, EPERM};
    use LinuxSeccompOperator::ScmpCmpMaskedEq as MaskedEq;
    // The kernel reads these arguments as 32-bit ints; libseccomp compares all 64 bits, so
    // each rule masks the upper half away instead of comparing for equality.
    const LOW: u64 = 0xffff_ffff;
    let mut syscalls = vec![syscall(seccomp::DENIED, EPERM, &[])?];
    // clone3's flags are in memory, out of the filter's reach: ENOSYS makes libc fall back
    // to clone, where the rules below see them.
    syscalls.push(syscall(&["clone3"], ENOSYS, &[])?);
    for &f in seccomp::CLONE_NAMESPACE_FLAGS {
        syscalls.push(syscall(&["clone"], EPERM, &[(0, MaskedEq, f, f)])?);
    }
    for &r in seccomp::TERMINAL_INJECTION {
        syscalls.push(syscall(&["ioctl"], EPERM, &[(1, MaskedEq, LOW, r)])?);
    }
    for &f in seccomp::SOCKET_FAMILIES {
        syscalls.push(syscall(&["socket"], EPERM, &[(0, MaskedEq, LOW, f)])?);
    }
    for (mask, bits) in personality_rules() {
        syscalls.push(syscall(
            &["personality"],
            EPERM,
            &[(0, MaskedEq, mask, bits)],
        )?);
    }
    let mut profile = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(syscalls)
        .build()?;
    profile.set_architectures(native_arch().map(|a| vec![a]));
    Ok(profile)
}

/// `personality` is refused unless its argument is one of `seccomp::PERSONALITIES`. The
/// runner says "none of these values"; libseccomp cannot (it takes one comparison per
/// argument in a rule, rules are alternatives), so the refused values are spelled as
/// masked comparisons, `(mask, bits)`: the argument's bits under `mask` equal `bits`.
///
/// The allowed values are all ones and each combination of a few `free` bits. Any other
/// value has a set bit outside `free` and a clear bit somewhere, so somewhere a run of set
/// bits holding a bit outside `free` ends: bit `k` set, bit `k + 1` clear (cyclically).
/// One rule per `k` says exactly that, with the run's bits below `k` down to the first one
/// outside `free` when `k` itself is free.
fn personality_rules() -> Vec<(u64, u64)> {
    const ALL: u64 = 0xffff_ffff;
    let free = seccomp::PERSONALITIES
        .iter()
        .filter(|&&p| p != ALL)
        .fold(0, |acc, p| acc | p);
    let bit = |k: u32| 1u64 << (k % 32);
    (0..32)
        .map(|k| {
            let mut run = bit(k);
            let mut j = k;
            while free & bit(j) != 0 {
                j = (j + 31) % 32;
                run |= bit(j);
            }
            (run | bit(k + 1), run)
        })
        .collect()
}

/// The architecture the runner builds its filter for; elsewhere none is named and
/// libseccomp takes the native one.
fn native_arch() -> Option<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Arch::ScmpArchX86_64),
        "aarch64" => Some(Arch::ScmpArchAarch64),
        "riscv64" => Some(Arch::ScmpArchRiscv64),
        _ => None,
    }
}

/// Writes `bundle` to `dir`: a new or empty directory, or one holding a bundle devbox
/// rendered before (which is replaced). `config.json` is written last.
pub fn write(bundle: &Bundle, dir: &Path) -> Result<(), Error> {
    let config = dir.join("config.json");
    let rootfs = dir.join("rootfs");
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(Error::NotADirectory(dir.to_path_buf())),
        Ok(_) => {
            let empty = fs::read_dir(dir).wrap("reading", dir)?.next().is_none();
            if !empty {
                if !is_ours(&config) {
                    return Err(Error::NotOurs(dir.to_path_buf()));
                }
                if rootfs.exists() {
                    clear(&rootfs)?;
                }
                for stale in [EMPTY, "etc/passwd", "etc/group", "etc/hosts"] {
                    let p = dir.join(stale);
                    if p.symlink_metadata().is_ok() {
                        fs::remove_file(&p).wrap("removing", &p)?;
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            mkdir_all(dir)?;
        }
        Err(e) => {
            return Err(PathError {
                action: "reading",
                path: dir.to_path_buf(),
                source: e,
            }
            .into())
        }
    }
    mkdir_all(&rootfs)?;
    for d in &bundle.dirs {
        mkdir_all(&inside(&rootfs, d))?;
    }
    for (link, to) in &bundle.links {
        let at = inside(&rootfs, link);
        if let Some(parent) = at.parent() {
            mkdir_all(parent)?;
        }
        std::os::unix::fs::symlink(to, &at).wrap("creating the link", &at)?;
    }
    for (rel, data, mode) in &bundle.files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            mkdir_all(parent)?;
        }
        write_atomic(&p, data, *mode)?;
    }
    let mut text = serde_json::to_vec_pretty(&bundle.spec).map_err(|source| Error::Json {
        path: config.clone(),
        source,
    })?;
    text.push(b'\n');
    write_atomic(&config, &text, 0o644)?;
    Ok(())
}

/// `path` (absolute, inside the container) under `root`.
fn inside(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in absolute(path, Path::new("/")).components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

fn mkdir_all(p: &Path) -> Result<(), PathError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .wrap("creating", p)
}

/// Whether `config` is a `config.json` devbox rendered.
fn is_ours(config: &Path) -> bool {
    fs::read(config)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["annotations"][ANNOTATION].is_string())
}

/// Empties an earlier bundle's `rootfs/` of what runc and devbox leave there: empty mount
/// points (directories and files) and symbolic links. Anything else is someone's data.
fn clear(dir: &Path) -> Result<(), Error> {
    for e in fs::read_dir(dir).wrap("reading", dir)? {
        let p = e.wrap("reading", dir)?.path();
        let m = fs::symlink_metadata(&p).wrap("reading", &p)?;
        if m.is_dir() {
            clear(&p)?;
            fs::remove_dir(&p).wrap("removing", &p)?;
        } else if m.file_type().is_symlink() || (m.is_file() && m.len() == 0) {
            fs::remove_file(&p).wrap("removing", &p)?;
        } else {
            return Err(Error::Occupied(p));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Limits;

    use crate::runner::rootfs::fake::{spec, Fake};

    fn root() -> Caller {
        Caller {
            uid: 0,
            gid: 0,
            hard_nofile: 20_000,
            hard_fsize: RLIM_INFINITY,
        }
    }

    fn transform() -> RunSpec {
        spec(&[
            ("/bin", MountKind::ReadOnly),
            ("/lib", MountKind::ReadOnly),
            ("/lib64", MountKind::ReadOnly),
            ("/usr", MountKind::ReadOnly),
            ("/etc/hostname", MountKind::ReadOnly),
            ("/etc/shadow", MountKind::Deny),
            ("/home/u/.ssh", MountKind::Deny),
            ("/p/.data/out", MountKind::ReadWrite),
        ])
    }

    #[test]
    fn the_personality_rules_refuse_exactly_what_the_runner_refuses() {
        let rules = personality_rules();
        assert_eq!(rules.len(), 32);
        let refused = |v: u64| rules.iter().any(|&(m, b)| v & m == b);
        let mut values: Vec<u64> = (0..1u64 << 20).collect();
        for high in [1u64, 0x7ff, 0x800, 0xfff] {
            values.extend((0..1u64 << 12).map(|low| high << 20 | low << 8 | 0x08));
        }
        values.extend((0..32).map(|b| 0xffff_ffff ^ (1u64 << b)));
        values.push(0xffff_ffff);
        values.push(0x0040_0000); // ADDR_NO_RANDOMIZE
        for v in values {
            assert_eq!(
                refused(v),
                !seccomp::PERSONALITIES.contains(&v),
                "personality({v:#x})"
            );
        }
        // The upper half is ignored, as the kernel ignores it.
        assert!(!refused(0x1_0000_0008));
    }

    /// Each mount as `destination type source options`, in order.
    fn mounts(b: &Bundle) -> Vec<String> {
        b.spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{} {} {} {}",
                    m.destination().display(),
                    m.typ().as_deref().unwrap_or(""),
                    m.source().as_ref().unwrap().display(),
                    m.options().as_ref().unwrap().join(",")
                )
            })
            .collect()
    }

    #[test]
    fn the_tree_is_the_policys_at_the_real_paths_with_links_in_rootfs() {
        let b = render(&transform(), &Fake::debian(), &root()).unwrap();
        assert_eq!(
            mounts(&b),
            [
                "/tmp tmpfs tmpfs nosuid,nodev,mode=1777",
                "/usr bind /usr rbind,ro,nosuid,nodev",
                "/usr/bin bind /usr/bin rbind,ro,nosuid,nodev",
                "/usr/lib bind /usr/lib rbind,ro,nosuid,nodev",
                "/usr/lib64 bind /usr/lib64 rbind,ro,nosuid,nodev",
                "/etc/hostname bind /etc/hostname rbind,ro,nosuid,nodev",
                "/p/.data/out bind /p/.data/out rbind,rw,nosuid,nodev",
                "/proc proc proc nosuid,nodev,noexec",
                "/dev tmpfs tmpfs nosuid,noexec,strictatime,mode=755,size=65536k",
                "/dev/shm tmpfs shm nosuid,nodev,noexec,mode=1777,size=65536k",
                "/etc/passwd bind etc/passwd bind,ro,nosuid,nodev,noexec",
                "/etc/group bind etc/group bind,ro,nosuid,nodev,noexec",
                "/etc/hosts bind etc/hosts bind,ro,nosuid,nodev,noexec",
            ]
        );
        // /etc/shadow is not shown (only /etc/hostname is), so nothing covers it.
        assert_eq!(
            b.links,
            [
                (PathBuf::from("/bin"), PathBuf::from("usr/bin")),
                ("/lib".into(), "usr/lib".into()),
                ("/lib64".into(), "/usr/lib64".into()),
            ]
        );
        let hosts = b
            .files
            .iter()
            .find(|f| f.0 == Path::new("etc/hosts"))
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&hosts.1),
            "127.0.0.1 localhost devbox-transform\n::1 localhost\n"
        );
        assert_eq!(b.spec.hostname().as_deref(), Some("devbox-transform"));
    }

    #[test]
    fn denied_paths_are_covered_where_shown() {
        let b = render(
            &spec(&[
                ("/etc", MountKind::ReadOnly),
                ("/etc/shadow", MountKind::Deny),
                ("/etc/ssl", MountKind::Deny),
            ]),
            &Fake::debian(),
            &root(),
        )
        .unwrap();
        let m = mounts(&b);
        assert!(m.contains(&"/etc/shadow bind empty bind,ro,nosuid,nodev,noexec".to_string()));
        assert!(
            m.contains(&"/etc/ssl tmpfs tmpfs ro,nosuid,nodev,noexec,mode=000,size=4k".to_string())
        );
        // The host's /etc is shown, so no passwd is generated over it.
        assert!(!m.iter().any(|m| m.starts_with("/etc/passwd")));
        assert_eq!(b.files, [(PathBuf::from("empty"), vec![], 0)]);
    }

    #[test]
    fn exec_allow_leaves_only_libraries_and_the_allowed_binaries_executable() {
        let mut s = transform();
        s.exec_allow = vec!["/bin/sh".into(), "/usr/bin/tr".into()];
        let b = render(&s, &Fake::debian(), &root()).unwrap();
        let m = mounts(&b);
        let opts = |dst: &str| {
            m.iter()
                .filter(|l| l.split(' ').next() == Some(dst))
                .map(|l| l.rsplit(' ').next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(opts("/tmp"), ["nosuid,nodev,mode=1777,noexec"]);
        assert_eq!(opts("/usr"), ["rbind,ro,nosuid,nodev,noexec"]);
        assert_eq!(opts("/usr/bin"), ["rbind,ro,nosuid,nodev,noexec"]);
        assert_eq!(opts("/usr/lib"), ["rbind,ro,nosuid,nodev"]);
        assert_eq!(opts("/usr/bin/dash"), ["rbind,ro,nosuid,nodev"]);
        assert_eq!(opts("/usr/bin/tr"), ["rbind,ro,nosuid,nodev"]);
        // sh's link below the root shows through the bind of /usr/bin.
        assert!(!b.links.iter().any(|(l, _)| l == Path::new("/usr/bin/sh")));
        // Writable is never executable, even a `lib` directory in it.
        assert_eq!(opts("/p/.data/out"), ["rbind,rw,nosuid,nodev,noexec"]);
        assert!(opts("/p/.data/out/lib").is_empty());
        assert!(b.warnings.iter().any(|w| w.contains("exec.allow")));
    }

    #[test]
    fn limits_become_rlimits_clamped_to_the_hard_limit_and_cgroup_resources() {
        let mut s = transform();
        s.limits = Limits {
            memory: Some(64 << 20),
            pids: Some(8),
            cpus: Some(0.5),
            nofile: Some(40_000),
            fsize: Some(1 << 20),
            timeout_ms: Some(10_000),
            stop_grace_ms: None,
        };
        let b = render(&s, &Fake::debian(), &root()).unwrap();
        let rl: Vec<(PosixRlimitType, u64, u64)> = b
            .spec
            .process()
            .as_ref()
            .unwrap()
            .rlimits()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| (r.typ(), r.soft(), r.hard()))
            .collect();
        assert_eq!(
            rl,
            [
                (PosixRlimitType::RlimitCore, 0, 0),
                (PosixRlimitType::RlimitNofile, 20_000, 20_000),
                (PosixRlimitType::RlimitFsize, 1 << 20, 1 << 20),
            ]
        );
        assert!(b.warnings.contains(&"oci: nofile limit 40000 lowered to 20000, the hard limit devbox render runs under (RLIMIT_NOFILE); runc refuses rlimits above it".to_string()));
        assert!(b.warnings.iter().any(|w| w.contains("timeout (10s)")));
        let json = serde_json::to_value(&b.spec).unwrap();
        let r = &json["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["swap"], 64 << 20);
        assert_eq!(r["pids"]["limit"], 8);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
    }

    #[test]
    fn the_process_has_no_capabilities_and_root_mapped_to_the_caller() {
        let caller = Caller {
            uid: 1000,
            gid: 1001,
            ..root()
        };
        let b = render(&transform(), &Fake::debian(), &caller).unwrap();
        let json = serde_json::to_value(&b.spec).unwrap();
        let p = &json["process"];
        assert_eq!(p["user"], serde_json::json!({"uid": 0, "gid": 0}));
        assert_eq!(p["noNewPrivileges"], true);
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            assert_eq!(p["capabilities"][set], serde_json::json!([]), "{set}");
        }
        let l = &json["linux"];
        assert_eq!(
            l["uidMappings"],
            serde_json::json!([{"hostID": 1000, "containerID": 0, "size": 1}])
        );
        let ns: Vec<&str> = l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            ns,
            ["pid", "mount", "uts", "ipc", "cgroup", "network", "user"]
        );
        assert_eq!(
            json["root"],
            serde_json::json!({"path": "rootfs", "readonly": true})
        );
        assert!(b
            .warnings
            .iter()
            .any(|w| w.contains("the worker is uid 0 inside (uid 1000 outside")));
        let root = render(&transform(), &Fake::debian(), &root()).unwrap();
        let json = serde_json::to_value(&root.spec).unwrap();
        assert_eq!(
            json["linux"]["gidMappings"],
            serde_json::json!([{"hostID": 0, "containerID": 0, "size": 1}])
        );
        assert!(!root.warnings.iter().any(|w| w.contains("uid 0 inside")));
    }

    #[test]
    fn host_networking_keeps_the_hosts_network_and_the_proxy_is_a_warning() {
        let mut s = transform();
        s.net = Net::Host;
        let b = render(&s, &Fake::debian(), &root()).unwrap();
        let json = serde_json::to_value(&b.spec).unwrap();
        assert!(!json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        s.net = Net::Proxy(crate::runner::spec::NetRules {
            default: crate::config::model::Decision::Deny,
            allow: vec!["pypi.org:443".into()],
            warn: vec![],
            deny: vec![],
        });
        let b = render(&s, &Fake::debian(), &root()).unwrap();
        assert!(b.warnings.iter().any(|w| w.starts_with("oci: net: egress")));
    }

    #[test]
    fn seccomp_denies_the_runners_list_and_masks_arguments_to_32_bits() {
        let b = render(&transform(), &Fake::debian(), &root()).unwrap();
        let json = serde_json::to_value(&b.spec).unwrap();
        let s = &json["linux"]["seccomp"];
        assert_eq!(s["defaultAction"], "SCMP_ACT_ALLOW");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(s["architectures"], serde_json::json!(["SCMP_ARCH_X86_64"]));
        let calls = s["syscalls"].as_array().unwrap();
        let denied: Vec<&str> = calls[0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(denied, seccomp::DENIED);
        assert_eq!(calls[0]["errnoRet"], 1);
        assert_eq!(calls[1]["names"], serde_json::json!(["clone3"]));
        assert_eq!(calls[1]["errnoRet"], 38);
        let tiocsti = calls.iter().find(|c| c["names"][0] == "ioctl").unwrap();
        assert_eq!(
            tiocsti["args"],
            serde_json::json!([{"index": 1, "value": 0xffff_ffffu64, "valueTwo": 0x5412, "op": "SCMP_CMP_MASKED_EQ"}])
        );
    }
}
