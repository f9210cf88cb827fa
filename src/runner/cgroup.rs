//! Cgroups for the native runner. It finds how the host mounts them (v2 unified, v1 one
//! hierarchy per controller, or not at all), makes one cgroup per run with the policy's
//! memory, pids and cpu limits, moves the sandbox's init into it, tells afterwards whether
//! a limit was hit, and removes it, killing whatever is left.
//!
//! Where: as root, `devbox/<run>` under each v1 hierarchy or under the v2 root; as an
//! ordinary user on v2, `devbox-<run>` under the caller's own cgroup when systemd (or
//! someone) delegated it. v1 is never delegated to ordinary users, so there they get
//! [`Placement::Unavailable`] and the caller falls back to rlimits.
//!
//! It never mounts or unmounts a cgroup file system, never removes a cgroup it did not
//! create (beyond empty leftovers of earlier devbox runs whose supervisor is gone), and
//! writes to a `cgroup.subtree_control` only to enable a controller the run needs that is
//! not enabled yet: in the v2 root and `devbox/` as root, in the delegated cgroup otherwise.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{AccessFlags, Pid};

use crate::config::model::Limits;
use crate::fsutil::{PathError, WrapPath};

/// The CFS period for `cpus`: the kernel's default, so `cpus = 0.5` reads as 50 ms of
/// every 100 ms.
const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts (1 ms).
const CPU_MIN_QUOTA_US: u64 = 1_000;
/// How long teardown keeps killing before it gives up on a cgroup.
const KILL_WAIT: Duration = Duration::from_secs(3);
/// Names of devbox's cgroups inside a delegated cgroup, which is shared with whatever
/// else the user runs there.
const DELEGATED_PREFIX: &str = "devbox-";
const EBUSY: i32 = Errno::EBUSY as i32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {} still has processes after {} ms of SIGKILL", path.display(), KILL_WAIT.as_millis())]
    StillBusy { path: PathBuf },
}

/// The outcome of [`create`].
#[derive(Debug)]
pub enum Placement {
    Cgroup(Cgroup),
    /// No cgroup could be had (or none was needed); `reason` is a lower-case clause for a
    /// warning, naming the fix where there is one.
    Unavailable {
        reason: String,
    },
}

/// Controllers devbox uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Pids => "pids",
            Self::Cpu => "cpu",
        }
    }
}

/// The controllers `limits` need, in a fixed order.
fn needed(limits: &Limits) -> Vec<Controller> {
    [
        (limits.memory.is_some(), Controller::Memory),
        (limits.pids.is_some(), Controller::Pids),
        (limits.cpus.is_some(), Controller::Cpu),
    ]
    .into_iter()
    .filter_map(|(set, c)| set.then_some(c))
    .collect()
}

/// How cgroups are mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 (unified) at `mount`; `root` is the mount's root within the hierarchy,
    /// `/` unless a subtree was bind-mounted.
    Unified {
        mount: PathBuf,
        root: String,
    },
    /// cgroup v1: the hierarchies with controllers devbox uses. Hybrid hosts also mount
    /// a v2 hierarchy without controllers, which is of no use for limits and ignored.
    Legacy {
        hierarchies: Vec<Hierarchy>,
    },
    None,
}

/// A mounted v1 hierarchy and the controllers bound to it (`cpu,cpuacct` share one on
/// many distributions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

/// The layout of the calling process's mount namespace.
pub fn detect() -> Result<Layout, Error> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).wrap("reading", path)?;
    Ok(parse_mountinfo(&text))
}

/// The layout a `/proc/<pid>/mountinfo` text describes.
pub fn parse_mountinfo(text: &str) -> Layout {
    let mut unified = None;
    let mut legacy: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        // Fields: id parent major:minor root mount-point options [optional...] - type source super-options
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let mut after = after.split(' ');
        let (Some(fstype), Some(_source), Some(options)) =
            (after.next(), after.next(), after.next())
        else {
            continue;
        };
        if fields.len() < 5 {
            continue;
        }
        let mount = PathBuf::from(unescape(fields[4]));
        match fstype {
            "cgroup2" if unified.is_none() => unified = Some((mount, unescape(fields[3]))),
            "cgroup" => {
                let controllers: Vec<String> = options
                    .split(',')
                    .filter(|o| ["memory", "pids", "cpu"].contains(o))
                    .map(str::to_owned)
                    .collect();
                let known = legacy.iter().any(|h| h.mount == mount);
                if !controllers.is_empty() && !known {
                    legacy.push(Hierarchy { mount, controllers });
                }
            }
            _ => {}
        }
    }
    match (legacy.is_empty(), unified) {
        (false, _) => Layout::Legacy {
            hierarchies: legacy,
        },
        (true, Some((mount, root))) => Layout::Unified { mount, root },
        (true, None) => Layout::None,
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v2 path of a process's cgroup, from its `/proc/<pid>/cgroup` text (`0::/path`).
fn parse_own_unified(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// What [`decide`] needs to know about the host; [`Host::probe`] reads it, tests make it up.
#[derive(Debug, Clone)]
struct Host {
    layout: Layout,
    root: bool,
    uid: u32,
    /// v2: the controllers the root cgroup offers.
    root_controllers: Vec<String>,
    /// v2: the caller's own cgroup.
    own: Option<Own>,
}

#[derive(Debug, Clone)]
struct Own {
    dir: PathBuf,
    /// The caller may make child cgroups and move processes in it: it was delegated.
    writable: bool,
    /// What it may enable for its children (`cgroup.controllers`).
    controllers: Vec<String>,
}

impl Host {
    fn probe(layout: Layout) -> Result<Self, Error> {
        let uid = nix::unistd::geteuid();
        let mut host = Host {
            layout,
            root: uid.is_root(),
            uid: uid.as_raw(),
            root_controllers: Vec::new(),
            own: None,
        };
        if let Layout::Unified { mount, root } = &host.layout {
            host.root_controllers = read_list(&mount.join("cgroup.controllers"))?;
            let path = Path::new("/proc/self/cgroup");
            let text = fs::read_to_string(path).wrap("reading", path)?;
            if let Some(own) = parse_own_unified(&text) {
                let rel = own.strip_prefix(root.as_str()).unwrap_or(own);
                let mut dir = mount.join(rel.trim_start_matches('/'));
                // A supervisor that already moved itself into a leaf (see `enable_in_own`)
                // keeps using the cgroup above it.
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.is_some_and(|n| owner_pid(&n, DELEGATED_PREFIX) == Some(std::process::id()))
                {
                    dir.pop();
                }
                let writable = ["", "cgroup.procs", "cgroup.subtree_control"]
                    .iter()
                    .all(|f| nix::unistd::eaccess(&dir.join(f), AccessFlags::W_OK).is_ok());
                let controllers = read_list(&dir.join("cgroup.controllers")).unwrap_or_default();
                host.own = Some(Own {
                    dir,
                    writable,
                    controllers,
                });
            }
        }
        Ok(host)
    }
}

/// Where the run's cgroup goes.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// v1, as root: `<mount>/devbox` of each hierarchy holding a needed controller, with
    /// the needed controllers it holds.
    Legacy(Vec<(PathBuf, Vec<Controller>)>),
    /// v2, as root: `<mount>/devbox`.
    UnifiedRoot { mount: PathBuf },
    /// v2, delegated: directly in the caller's own cgroup.
    Delegated { own: PathBuf },
}

/// The placement the host allows, or why there is none. Only facts, no I/O.
fn decide(host: &Host, needed: &[Controller]) -> Result<Target, String> {
    match &host.layout {
        Layout::None => Err("no cgroup file system is mounted".into()),
        Layout::Legacy { .. } if !host.root => {
            Err("cgroup v1 cannot be delegated to an unprivileged user".into())
        }
        Layout::Legacy { hierarchies } => {
            let mut target: Vec<(PathBuf, Vec<Controller>)> = Vec::new();
            for &c in needed {
                let Some(h) = hierarchies
                    .iter()
                    .find(|h| h.controllers.iter().any(|n| n == c.name()))
                else {
                    return Err(format!(
                        "the {} controller is not mounted (no cgroup v1 hierarchy has it)",
                        c.name()
                    ));
                };
                let base = h.mount.join("devbox");
                match target.iter_mut().find(|(b, _)| *b == base) {
                    Some((_, cs)) => cs.push(c),
                    None => target.push((base, vec![c])),
                }
            }
            Ok(Target::Legacy(target))
        }
        Layout::Unified { mount, .. } if host.root => {
            match missing(needed, &host.root_controllers) {
                Some(c) => Err(format!(
                    "the {c} controller is not available in {} (it may be bound to a cgroup v1 hierarchy)",
                    mount.display()
                )),
                None => Ok(Target::UnifiedRoot {
                    mount: mount.clone(),
                }),
            }
        }
        Layout::Unified { .. } => {
            let Some(own) = &host.own else {
                return Err("this process is in no cgroup v2 hierarchy".into());
            };
            if !own.writable {
                return Err(format!(
                    "cgroup {} is not delegated to uid {}; run devbox in a delegated scope: `systemd-run --user --scope -p Delegate=yes devbox ...`",
                    own.dir.display(),
                    host.uid
                ));
            }
            match missing(needed, &own.controllers) {
                Some(c) => Err(format!(
                    "the {c} controller is not delegated to {}; have systemd delegate it to users: `systemctl edit user@.service` with `[Service]` `Delegate=cpu memory pids`, then log in again",
                    own.dir.display()
                )),
                None => Ok(Target::Delegated {
                    own: own.dir.clone(),
                }),
            }
        }
    }
}

/// The first needed controller not in `have`.
fn missing(needed: &[Controller], have: &[String]) -> Option<&'static str> {
    needed
        .iter()
        .map(|c| c.name())
        .find(|n| !have.iter().any(|h| h == n))
}

/// Creates the run's cgroup with `limits`' memory, pids and cpus, or says why it cannot.
/// `name` (the worker's) only makes the directory recognisable; the supervisor's pid and
/// a counter make it unique. `init` is the sandbox's init, already cloned: in a delegated
/// cgroup it moves out of the way with the supervisor (see `enable_in_own`).
pub fn create(name: &str, limits: &Limits, init: Pid) -> Result<Placement, Error> {
    if needed(limits).is_empty() {
        return Ok(Placement::Unavailable {
            reason: "no memory, pids or cpus limit is set".into(),
        });
    }
    let host = Host::probe(detect()?)?;
    create_on(&host, name, limits, init)
}

fn create_on(host: &Host, name: &str, limits: &Limits, init: Pid) -> Result<Placement, Error> {
    let needed = needed(limits);
    let target = match decide(host, &needed) {
        Ok(t) => t,
        Err(reason) => return Ok(Placement::Unavailable { reason }),
    };
    let built = match target {
        Target::Legacy(bases) => build_legacy(&bases, name, limits),
        Target::UnifiedRoot { mount } => build_unified_root(&mount, &needed, name, limits),
        Target::Delegated { own } => build_delegated(&own, &needed, name, limits, init),
    };
    match built {
        Ok(c) => Ok(Placement::Cgroup(c)),
        Err(Fail::Refused(reason)) => Ok(Placement::Unavailable { reason }),
        Err(Fail::Error(e)) => Err(e),
    }
}

/// Why building stopped: the host refused (no cgroup for us here, fall back), or
/// something unexpected went wrong.
enum Fail {
    Refused(String),
    Error(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

/// Refusals are what a host says when it will not give us a cgroup: no permission, a
/// read-only mount, processes in the way, a controller missing.
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::EACCES
                | Errno::EPERM
                | Errno::EROFS
                | Errno::EBUSY
                | Errno::ENOENT
                | Errno::EOPNOTSUPP
        )
    )
}

/// For the steps the host may refuse (directories, controllers): a refusal means falling
/// back to rlimits, while a limit the kernel rejects later is a plain error.
fn prep<T>(r: Result<T, Error>) -> Result<T, Fail> {
    r.map_err(|e| {
        let source = match &e {
            Error::Io(p) => Some(&p.source),
            Error::Write { source, .. } => Some(source),
            Error::StillBusy { .. } => None,
        };
        match source {
            Some(s) if refused(s) => Fail::Refused(e.to_string()),
            _ => Fail::Error(e),
        }
    })
}

/// Keeps one supervisor's runs apart; the pid in the name keeps supervisors apart.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name for the run's directory that no directory in `bases` has yet.
fn fresh_leaf(bases: &[PathBuf], prefix: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = if clean.is_empty() {
        "sandbox".into()
    } else {
        clean
    };
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let leaf = format!("{prefix}{clean}-{}-{n}", std::process::id());
        if bases.iter().all(|b| !b.join(&leaf).exists()) {
            return leaf;
        }
    }
}

/// The supervisor pid a devbox directory name carries (`<prefix><name>-<pid>-<n>`).
fn owner_pid(dir_name: &str, prefix: &str) -> Option<u32> {
    let rest = dir_name.strip_prefix(prefix)?;
    let mut parts = rest.rsplitn(3, '-');
    let (n, pid, name) = (parts.next()?, parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(n) && numeric(pid) && !name.is_empty())
        .then(|| pid.parse().ok())
        .flatten()
}

/// Removes empty cgroups that crashed runs left in `base`: those whose supervisor is gone.
/// `rmdir` fails on a cgroup with processes or children, so anything in use stays.
fn sweep(base: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name, prefix) else {
            continue;
        };
        let gone = i32::try_from(pid)
            .is_ok_and(|p| p > 0 && kill(Pid::from_raw(p), None) == Err(Errno::ESRCH));
        if gone && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

fn mkdir_once(dir: &Path) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => Ok(r.wrap("creating cgroup", dir)?),
    }
}

/// Writes `value` to a cgroup file, which must exist (cgroupfs files are never created).
fn write(path: &Path, value: &str) -> Result<(), Error> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| Error::Write {
            path: path.to_path_buf(),
            value: value.to_owned(),
            source,
        })
}

/// A whitespace-separated list file (`cgroup.controllers`, `cgroup.subtree_control`).
fn read_list(path: &Path) -> Result<Vec<String>, Error> {
    let text = fs::read_to_string(path).wrap("reading", path)?;
    Ok(text.split_whitespace().map(str::to_owned).collect())
}

/// The number after `key` in a flat-keyed file (`memory.events`, `pids.events`, ...).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `cpus` as a CFS quota per [`CPU_PERIOD_US`].
fn cpu_quota(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(CPU_MIN_QUOTA_US)
}

fn build_legacy(
    bases: &[(PathBuf, Vec<Controller>)],
    name: &str,
    limits: &Limits,
) -> Result<Cgroup, Fail> {
    for (base, _) in bases {
        prep(mkdir_once(base))?;
        sweep(base, "");
    }
    let all: Vec<PathBuf> = bases.iter().map(|(b, _)| b.clone()).collect();
    let leaf = fresh_leaf(&all, "", name);
    let mut cg = Cgroup::new(Version::Legacy);
    for (base, controllers) in bases {
        let dir = base.join(&leaf);
        prep(
            fs::create_dir(&dir)
                .wrap("creating cgroup", &dir)
                .map_err(Error::from),
        )?;
        cg.paths.push(dir.clone());
        for c in controllers {
            match c {
                Controller::Memory => {
                    let m = limits.memory.unwrap_or_default().to_string();
                    write(&dir.join("memory.limit_in_bytes"), &m)?;
                    // Memory plus swap at the same value: swap is no way around the limit.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &m)?;
                    }
                    cg.memory = Some(dir.clone());
                }
                Controller::Pids => {
                    let p = limits.pids.unwrap_or_default().to_string();
                    write(&dir.join("pids.max"), &p)?;
                    cg.pids = Some(dir.clone());
                }
                Controller::Cpu => {
                    let quota = cpu_quota(limits.cpus.unwrap_or_default());
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    cg.cpu = Some(dir.clone());
                }
            }
        }
    }
    Ok(cg)
}

/// Enables `needed` in `dir`'s `cgroup.subtree_control`, writing only what is missing.
fn enable(dir: &Path, needed: &[Controller]) -> Result<(), Error> {
    let control = dir.join("cgroup.subtree_control");
    let on = read_list(&control)?;
    let add: Vec<String> = needed
        .iter()
        .filter(|c| !on.iter().any(|o| o == c.name()))
        .map(|c| format!("+{}", c.name()))
        .collect();
    if add.is_empty() {
        return Ok(());
    }
    write(&control, &add.join(" "))
}

fn build_unified_root(
    mount: &Path,
    needed: &[Controller],
    name: &str,
    limits: &Limits,
) -> Result<Cgroup, Fail> {
    // The root cgroup is exempt from "no internal processes", so it can always enable.
    prep(enable(mount, needed))?;
    let base = mount.join("devbox");
    prep(mkdir_once(&base))?;
    prep(enable(&base, needed))?;
    sweep(&base, "");
    build_unified_leaf(&base, "", needed, name, limits)
}

fn build_delegated(
    own: &Path,
    needed: &[Controller],
    name: &str,
    limits: &Limits,
    init: Pid,
) -> Result<Cgroup, Fail> {
    sweep(own, DELEGATED_PREFIX);
    enable_in_own(own, needed, init)?;
    build_unified_leaf(own, DELEGATED_PREFIX, needed, name, limits)
}

/// Enables `needed` for the children of our own cgroup. v2 gives a cgroup's children
/// domain controllers (memory) only while it holds no process ("no internal processes",
/// EBUSY), and a cgroup with processes that enables a threaded controller (pids, cpu)
/// becomes a thread root, whose children cannot take a process at all (EOPNOTSUPP). So
/// ours, the supervisor and the init it has just cloned, first move into a leaf of their
/// own, the way systemd, podman and youki do; when others share the cgroup, moving them
/// is not ours to do.
fn enable_in_own(own: &Path, needed: &[Controller], init: Pid) -> Result<(), Fail> {
    let procs_file = own.join("cgroup.procs");
    let procs = prep(
        fs::read_to_string(&procs_file)
            .wrap("reading", &procs_file)
            .map_err(Error::from),
    )?;
    let ours = [std::process::id().to_string(), init.to_string()];
    let (mine, others): (Vec<&str>, Vec<&str>) = procs
        .split_whitespace()
        .partition(|p| ours.iter().any(|o| o == p));
    if !others.is_empty() {
        return Err(Fail::Refused(format!(
            "cgroup {} also holds other processes ({}), and v2 cannot give children controllers while it does; run devbox in a scope of its own: `systemd-run --user --scope -p Delegate=yes devbox ...`",
            own.display(),
            others.join(" ")
        )));
    }
    if !mine.is_empty() {
        let leaf = own.join(fresh_leaf(
            &[own.to_path_buf()],
            DELEGATED_PREFIX,
            "supervisor",
        ));
        prep(
            fs::create_dir(&leaf)
                .wrap("creating cgroup", &leaf)
                .map_err(Error::from),
        )?;
        for (i, pid) in mine.iter().enumerate() {
            let moved = write(&leaf.join("cgroup.procs"), pid);
            if moved.is_err() && i == 0 {
                let _ = fs::remove_dir(&leaf);
            }
            prep(moved)?;
        }
    }
    prep(enable(own, needed))
}

fn build_unified_leaf(
    base: &Path,
    prefix: &str,
    needed: &[Controller],
    name: &str,
    limits: &Limits,
) -> Result<Cgroup, Fail> {
    let dir = base.join(fresh_leaf(&[base.to_path_buf()], prefix, name));
    prep(
        fs::create_dir(&dir)
            .wrap("creating cgroup", &dir)
            .map_err(Error::from),
    )?;
    let mut cg = Cgroup::new(Version::Unified);
    cg.paths.push(dir.clone());
    let have = read_list(&dir.join("cgroup.controllers"))?;
    if let Some(c) = missing(needed, &have) {
        return Err(Fail::Refused(format!(
            "the {c} controller is not enabled for {}",
            dir.display()
        )));
    }
    if let Some(m) = limits.memory {
        write(&dir.join("memory.max"), &m.to_string())?;
        // No swap: swap is no way around the limit. The file is missing without swap
        // accounting.
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, "0")?;
        }
        cg.memory = Some(dir.clone());
    }
    if let Some(p) = limits.pids {
        write(&dir.join("pids.max"), &p.to_string())?;
        cg.pids = Some(dir.clone());
    }
    if let Some(cpus) = limits.cpus {
        write(
            &dir.join("cpu.max"),
            &format!("{} {CPU_PERIOD_US}", cpu_quota(cpus)),
        )?;
        cg.cpu = Some(dir.clone());
    }
    Ok(cg)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Legacy,
    Unified,
}

/// A run's cgroup: one directory on v2, one per hierarchy on v1. Dropping it removes it
/// (best effort); [`Cgroup::try_remove`] says what went wrong.
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    paths: Vec<PathBuf>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    cpu: Option<PathBuf>,
    removed: bool,
}

impl Cgroup {
    fn new(version: Version) -> Self {
        Self {
            version,
            paths: Vec::new(),
            memory: None,
            pids: None,
            cpu: None,
            removed: false,
        }
    }

    /// Moves `pid` (the whole process) into the cgroup, in every hierarchy.
    pub fn add(&self, pid: Pid) -> Result<(), Error> {
        for dir in &self.paths {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the kernel killed a process for going over the memory limit. On v1 before
    /// Linux 4.13 (no `oom_kill` count) it is whether the limit was ever reached, which
    /// reclaim may have survived.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory else {
            return false;
        };
        match self.version {
            Version::Unified => read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0) > 0,
            Version::Legacy => match read_key(&dir.join("memory.oom_control"), "oom_kill") {
                Some(n) => n > 0,
                None => fs::read_to_string(dir.join("memory.failcnt"))
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0),
            },
        }
    }

    /// Whether a fork failed because of the pids limit.
    pub fn pids_limit_hit(&self) -> bool {
        self.pids
            .as_ref()
            .and_then(|dir| read_key(&dir.join("pids.events"), "max"))
            .is_some_and(|n| n > 0)
    }

    /// The cgroup's directories: one on v2, one per hierarchy on v1.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Kills whatever is left in the cgroup and removes it, best effort (as dropping does).
    pub fn remove(self) {
        let _ = self.try_remove();
    }

    /// Kills whatever is left in the cgroup and removes it.
    pub fn try_remove(mut self) -> Result<(), Error> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), Error> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        if self.version == Version::Unified {
            // Kills every process at once, forks in flight included (Linux 5.14).
            for dir in &self.paths {
                let _ = write(&dir.join("cgroup.kill"), "1");
            }
        }
        let deadline = Instant::now() + KILL_WAIT;
        let mut first_error = None;
        for dir in &self.paths {
            if let Err(e) = empty_and_remove(dir, deadline) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// SIGKILLs every process in `dir` until it can be removed, up to `deadline`. The loop
/// wins against a fork bomb because each round kills more than the pids limit lets
/// be born, and on v1 (no `cgroup.kill`) it is all there is.
fn empty_and_remove(dir: &Path, deadline: Instant) -> Result<(), Error> {
    loop {
        let busy = match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(EBUSY) => e,
            Err(source) => {
                return Err(Error::Io(PathError {
                    action: "removing cgroup",
                    path: dir.to_path_buf(),
                    source,
                }))
            }
        };
        let procs = dir.join("cgroup.procs");
        let text = fs::read_to_string(&procs).unwrap_or_default();
        for pid in text
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if Instant::now() >= deadline {
            return Err(if text.trim().is_empty() {
                Error::Io(PathError {
                    action: "removing cgroup",
                    path: dir.to_path_buf(),
                    source: busy,
                })
            } else {
                Error::StillBusy {
                    path: dir.to_path_buf(),
                }
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    use super::*;

    const MIB: u64 = 1 << 20;

    /// This machine's mountinfo (hybrid: v1 controllers, an empty v2 at `unified`), with a
    /// `cpu,cpuacct` co-mount as most systemd distributions have it.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd host on cgroup v2 only.
    const UNIFIED: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// A container with no cgroup file system mounted.
    const NONE: &str = "\
600 500 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
601 600 0:52 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
";

    fn hybrid() -> Layout {
        parse_mountinfo(HYBRID)
    }

    fn hierarchy(mount: &str, controllers: &[&str]) -> Hierarchy {
        Hierarchy {
            mount: mount.into(),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn all_limits() -> Limits {
        Limits {
            memory: Some(32 * MIB),
            pids: Some(5),
            cpus: Some(0.5),
            ..Limits::default()
        }
    }

    #[test]
    fn mountinfo_of_a_hybrid_host_is_v1_with_the_controller_hierarchies() {
        assert_eq!(
            hybrid(),
            Layout::Legacy {
                hierarchies: vec![
                    hierarchy("/sys/fs/cgroup/cpu,cpuacct", &["cpu"]),
                    hierarchy("/sys/fs/cgroup/memory", &["memory"]),
                    hierarchy("/sys/fs/cgroup/pids", &["pids"]),
                ]
            }
        );
    }

    #[test]
    fn mountinfo_of_a_unified_host_is_v2() {
        assert_eq!(
            parse_mountinfo(UNIFIED),
            Layout::Unified {
                mount: "/sys/fs/cgroup".into(),
                root: "/".into()
            }
        );
    }

    #[test]
    fn mountinfo_without_cgroups_is_none() {
        assert_eq!(parse_mountinfo(NONE), Layout::None);
        assert_eq!(parse_mountinfo(""), Layout::None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        let text = "41 31 0:38 /a\\040b /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_mountinfo(text),
            Layout::Unified {
                mount: "/mnt/cg two".into(),
                root: "/a b".into()
            }
        );
        assert_eq!(unescape("\\134x\\04"), "\\x\\04");
    }

    #[test]
    fn own_cgroup_is_the_v2_line_of_proc_self_cgroup() {
        let text = "4:memory:/process_api/x\n0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope\n";
        assert_eq!(
            parse_own_unified(text),
            Some("/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope")
        );
        assert_eq!(parse_own_unified("4:memory:/x\n"), None);
    }

    #[test]
    fn limits_decide_the_controllers_and_cpus_the_quota() {
        assert_eq!(
            needed(&all_limits()),
            [Controller::Memory, Controller::Pids, Controller::Cpu]
        );
        let pids_only = Limits {
            pids: Some(1),
            nofile: Some(10),
            ..Limits::default()
        };
        assert_eq!(needed(&pids_only), [Controller::Pids]);
        assert_eq!(cpu_quota(0.5), 50_000);
        assert_eq!(cpu_quota(2.0), 200_000);
        // Below the kernel's 1 ms minimum the write would fail.
        assert_eq!(cpu_quota(0.001), 1_000);
    }

    #[test]
    fn run_names_carry_the_supervisor_pid() {
        let leaf = fresh_leaf(&[], "", "web/api \n");
        let pid = std::process::id();
        assert!(leaf.starts_with(&format!("web_api__-{pid}-")), "{leaf}");
        assert_eq!(owner_pid(&leaf, ""), Some(pid));
        assert_eq!(owner_pid("a-b-12-3", ""), Some(12));
        assert_eq!(owner_pid("devbox-a-12-3", DELEGATED_PREFIX), Some(12));
        assert_eq!(owner_pid("a-12-3", DELEGATED_PREFIX), None);
        assert_eq!(owner_pid("12-3", ""), None);
        assert_eq!(owner_pid("a-12-x", ""), None);
        assert_eq!(owner_pid("cgroup.procs", ""), None);
        let other = fresh_leaf(&[], "", "web/api \n");
        assert_ne!(leaf, other);
        assert!(fresh_leaf(&[], "", "").starts_with("sandbox-"));
    }

    fn host(layout: Layout, root: bool) -> Host {
        Host {
            layout,
            root,
            uid: if root { 0 } else { 1000 },
            root_controllers: strings(&["cpuset", "cpu", "io", "memory", "pids"]),
            own: None,
        }
    }

    fn own(writable: bool, controllers: &[&str]) -> Option<Own> {
        Some(Own {
            dir:
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope"
                    .into(),
            writable,
            controllers: strings(controllers),
        })
    }

    const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    #[test]
    fn v1_needs_root() {
        assert_eq!(
            decide(&host(hybrid(), false), &ALL),
            Err("cgroup v1 cannot be delegated to an unprivileged user".into())
        );
    }

    #[test]
    fn v1_as_root_uses_devbox_in_each_hierarchy() {
        assert_eq!(
            decide(&host(hybrid(), true), &ALL),
            Ok(Target::Legacy(vec![
                (
                    "/sys/fs/cgroup/memory/devbox".into(),
                    vec![Controller::Memory]
                ),
                ("/sys/fs/cgroup/pids/devbox".into(), vec![Controller::Pids]),
                (
                    "/sys/fs/cgroup/cpu,cpuacct/devbox".into(),
                    vec![Controller::Cpu]
                ),
            ]))
        );
        // Only the hierarchies of the limits that are set.
        assert_eq!(
            decide(&host(hybrid(), true), &[Controller::Pids]),
            Ok(Target::Legacy(vec![(
                "/sys/fs/cgroup/pids/devbox".into(),
                vec![Controller::Pids]
            )]))
        );
    }

    #[test]
    fn v1_without_a_needed_hierarchy_names_it() {
        let layout = Layout::Legacy {
            hierarchies: vec![hierarchy("/sys/fs/cgroup/memory", &["memory"])],
        };
        assert_eq!(
            decide(&host(layout, true), &ALL),
            Err("the pids controller is not mounted (no cgroup v1 hierarchy has it)".into())
        );
    }

    #[test]
    fn v2_as_root_uses_devbox_under_the_root() {
        assert_eq!(
            decide(&host(parse_mountinfo(UNIFIED), true), &ALL),
            Ok(Target::UnifiedRoot {
                mount: "/sys/fs/cgroup".into()
            })
        );
        let mut h = host(parse_mountinfo(UNIFIED), true);
        h.root_controllers = strings(&["pids"]);
        assert_eq!(
            decide(&h, &ALL),
            Err("the memory controller is not available in /sys/fs/cgroup (it may be bound to a cgroup v1 hierarchy)".into())
        );
    }

    #[test]
    fn v2_unprivileged_needs_a_delegated_cgroup_with_the_controllers() {
        let mut h = host(parse_mountinfo(UNIFIED), false);
        h.own = own(true, &["cpu", "memory", "pids"]);
        assert_eq!(
            decide(&h, &ALL),
            Ok(Target::Delegated {
                own: h.own.as_ref().unwrap().dir.clone()
            })
        );

        h.own = own(false, &["cpu", "memory", "pids"]);
        assert_eq!(
            decide(&h, &ALL),
            Err("cgroup /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope is not delegated to uid 1000; run devbox in a delegated scope: `systemd-run --user --scope -p Delegate=yes devbox ...`".into())
        );

        // Older systemd delegates memory and pids to users, not cpu.
        h.own = own(true, &["memory", "pids"]);
        assert_eq!(
            decide(&h, &ALL),
            Err("the cpu controller is not delegated to /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope; have systemd delegate it to users: `systemctl edit user@.service` with `[Service]` `Delegate=cpu memory pids`, then log in again".into())
        );
        assert!(decide(&h, &[Controller::Memory, Controller::Pids]).is_ok());
    }

    #[test]
    fn no_cgroup_file_system_is_unavailable() {
        assert_eq!(
            decide(&host(Layout::None, true), &ALL),
            Err("no cgroup file system is mounted".into())
        );
    }

    #[test]
    fn no_limits_need_no_cgroup() {
        let limits = Limits {
            nofile: Some(10),
            ..Limits::default()
        };
        match create("x", &limits, Pid::this()).unwrap() {
            Placement::Unavailable { reason } => {
                assert_eq!(reason, "no memory, pids or cpus limit is set")
            }
            Placement::Cgroup(c) => panic!("made {c:?}"),
        }
    }

    /// Whether this test may touch real cgroups; says why not. Under
    /// `DEVBOX_REQUIRE_ENGINES=1` not being root is a failure.
    fn can_run() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var("DEVBOX_REQUIRE_ENGINES").as_deref() != Ok("1"),
            "cgroup tests need root (DEVBOX_REQUIRE_ENGINES=1)"
        );
        eprintln!("skipped: creating cgroups on this host needs root");
        false
    }

    fn make(limits: &Limits) -> Cgroup {
        match create("test", limits, Pid::this()).unwrap() {
            Placement::Cgroup(c) => c,
            Placement::Unavailable { reason } => panic!("no cgroup as root: {reason}"),
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    #[test]
    fn limits_are_written_exactly() {
        if !can_run() {
            return;
        }
        let cg = make(&all_limits());
        let (m, p, c) = (
            cg.memory.clone().unwrap(),
            cg.pids.clone().unwrap(),
            cg.cpu.clone().unwrap(),
        );
        match cg.version {
            Version::Legacy => {
                assert_eq!(cg.paths().len(), 3, "{:?}", cg.paths());
                assert_eq!(read(&m.join("memory.limit_in_bytes")), "33554432");
                let memsw = m.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    assert_eq!(read(&memsw), "33554432");
                }
                assert_eq!(read(&p.join("pids.max")), "5");
                assert_eq!(read(&c.join("cpu.cfs_period_us")), "100000");
                assert_eq!(read(&c.join("cpu.cfs_quota_us")), "50000");
            }
            Version::Unified => {
                assert_eq!(cg.paths().len(), 1);
                assert_eq!(read(&m.join("memory.max")), "33554432");
                let swap = m.join("memory.swap.max");
                if swap.exists() {
                    assert_eq!(read(&swap), "0");
                }
                assert_eq!(read(&p.join("pids.max")), "5");
                assert_eq!(read(&c.join("cpu.max")), "50000 100000");
            }
        }
        for dir in cg.paths() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("test-"), "{name}");
        }
        let paths = cg.paths().to_vec();
        cg.try_remove().unwrap();
        for dir in paths {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
    }

    #[test]
    fn an_added_process_is_in_every_hierarchy_and_removal_kills_it() {
        if !can_run() {
            return;
        }
        let cg = make(&all_limits());
        let mut sleep = crate::process::command("sleep").arg("30").spawn().unwrap();
        let pid = Pid::from_raw(sleep.id() as i32);
        cg.add(pid).unwrap();
        for dir in cg.paths() {
            let procs = read(&dir.join("cgroup.procs"));
            assert!(
                procs.lines().any(|l| l == pid.to_string()),
                "{pid} not in {}: {procs:?}",
                dir.display()
            );
        }
        let paths = cg.paths().to_vec();
        // Not reaped yet: the kill leaves a zombie, which must not keep the cgroup busy.
        cg.try_remove().unwrap();
        for dir in &paths {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
        assert_eq!(sleep.wait().unwrap().signal(), Some(libc_sigkill()));
    }

    fn libc_sigkill() -> i32 {
        Signal::SIGKILL as i32
    }

    #[test]
    fn dropping_removes_the_cgroup() {
        if !can_run() {
            return;
        }
        let cg = make(&Limits {
            pids: Some(3),
            ..Limits::default()
        });
        let paths = cg.paths().to_vec();
        assert_eq!(paths.len(), 1);
        assert!(paths[0].exists());
        drop(cg);
        assert!(!paths[0].exists(), "{} left behind", paths[0].display());
    }

    /// A shell that waits for a line on stdin (so it is in the cgroup before it runs
    /// `script`), then runs it.
    fn held_shell(script: &str) -> std::process::Child {
        crate::process::command("sh")
            .args(["-c", &format!("read go; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn release(child: &mut std::process::Child) {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }

    /// Polls `cond` for up to 10 s.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cond()
    }

    #[test]
    fn forking_past_pids_max_is_reported() {
        if !can_run() {
            return;
        }
        let cg = make(&Limits {
            pids: Some(5),
            ..Limits::default()
        });
        assert!(!cg.pids_limit_hit());
        let mut sh =
            held_shell("i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done; sleep 30");
        cg.add(Pid::from_raw(sh.id() as i32)).unwrap();
        release(&mut sh);
        assert!(
            eventually(|| cg.pids_limit_hit()),
            "pids.events max stayed 0"
        );
        let dir = cg.pids.clone().unwrap();
        let current: u32 = read(&dir.join("pids.current")).parse().unwrap();
        assert!(current <= 5, "pids.current {current} over pids.max 5");
        assert!(!cg.oom_killed());
        cg.try_remove().unwrap();
        assert!(!dir.exists());
        sh.wait().unwrap();
    }

    #[test]
    fn a_memory_hog_is_oom_killed_and_reported() {
        if !can_run() {
            return;
        }
        if crate::process::which("python3").is_none() {
            assert!(
                std::env::var("DEVBOX_REQUIRE_ENGINES").as_deref() != Ok("1"),
                "python3 is required (DEVBOX_REQUIRE_ENGINES=1)"
            );
            eprintln!("skipped: no python3 to allocate memory with");
            return;
        }
        let cg = make(&Limits {
            memory: Some(32 * MIB),
            ..Limits::default()
        });
        // Bytes filled with b'x', so every page is touched (a zeroed bytearray might not be).
        let mut hog = crate::process::command("python3")
            .args([
                "-c",
                "import sys; sys.stdin.readline(); b = b'x' * (200 << 20); print(len(b))",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        cg.add(Pid::from_raw(hog.id() as i32)).unwrap();
        assert!(!cg.oom_killed());
        release(&mut hog);
        let out = hog.wait_with_output().unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc_sigkill()),
            "{:?}, printed {:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(cg.oom_killed());
        assert!(!cg.pids_limit_hit());
        cg.try_remove().unwrap();
    }

    /// The directories devbox's runs go in on this host, and the prefix of their names.
    fn bases() -> (Vec<PathBuf>, &'static str) {
        let host = Host::probe(detect().unwrap()).unwrap();
        match decide(&host, &[Controller::Memory]).unwrap() {
            Target::Legacy(b) => (b.into_iter().map(|(b, _)| b).collect(), ""),
            Target::UnifiedRoot { mount } => (vec![mount.join("devbox")], ""),
            Target::Delegated { own } => (vec![own], DELEGATED_PREFIX),
        }
    }

    #[test]
    fn leftovers_of_dead_supervisors_are_removed_when_empty() {
        if !can_run() {
            return;
        }
        // A run that crashed between create and remove left its directory behind.
        let mut t = crate::process::command("true").spawn().unwrap();
        let dead = t.id();
        t.wait().unwrap();
        let (bases, prefix) = bases();
        let base = &bases[0];
        fs::create_dir_all(base).unwrap();
        let stale = base.join(format!("{prefix}stale-{dead}-0"));
        let live = base.join(format!("{prefix}live-{}-999999", std::process::id()));
        let busy = base.join(format!("{prefix}busy-{dead}-1"));
        for d in [&stale, &live, &busy, &busy.join("inner")] {
            fs::create_dir(d).unwrap();
        }
        let cg = make(&Limits {
            memory: Some(64 * MIB),
            ..Limits::default()
        });
        let (stale_left, live_left, busy_left) = (stale.exists(), live.exists(), busy.exists());
        let _ = fs::remove_dir(busy.join("inner"));
        let _ = fs::remove_dir(&busy);
        let _ = fs::remove_dir(&live);
        let _ = fs::remove_dir(&stale);
        drop(cg);
        assert!(!stale_left, "empty leftover of pid {dead} kept");
        assert!(live_left, "a live supervisor's cgroup was removed");
        assert!(busy_left, "a non-empty leftover was removed");
    }

    #[test]
    fn a_v2_hierarchy_without_controllers_is_refused_untouched() {
        // Hybrid hosts mount an empty v2 hierarchy beside v1: as root, devbox must say the
        // controller is missing before it writes anything there.
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let only_v2: String = text
            .lines()
            .filter(|l| !l.contains(" - cgroup "))
            .map(|l| format!("{l}\n"))
            .collect();
        let layout = parse_mountinfo(&only_v2);
        let Layout::Unified { mount, .. } = &layout else {
            eprintln!("skipped: no cgroup2 mount here");
            return;
        };
        let mut host = Host::probe(layout.clone()).unwrap();
        if host.root_controllers.iter().any(|c| c == "memory") {
            eprintln!("skipped: {} has controllers", mount.display());
            return;
        }
        host.root = true;
        let had_devbox = mount.join("devbox").exists();
        match create_on(&host, "x", &all_limits(), Pid::this()).unwrap() {
            Placement::Unavailable { reason } => assert_eq!(
                reason,
                format!(
                    "the memory controller is not available in {} (it may be bound to a cgroup v1 hierarchy)",
                    mount.display()
                )
            ),
            Placement::Cgroup(c) => panic!("made {c:?}"),
        }
        assert_eq!(mount.join("devbox").exists(), had_devbox);
    }

    #[test]
    fn unprivileged_on_this_host() {
        // Runs as an ordinary user only: `runuser -u <user> -- <test binary> unprivileged`.
        if nix::unistd::geteuid().is_root() {
            eprintln!("skipped: shows what an ordinary user gets, so not as root");
            return;
        }
        let layout = detect().unwrap();
        match create("x", &all_limits(), Pid::this()).unwrap() {
            Placement::Unavailable { reason } => {
                if matches!(layout, Layout::Legacy { .. }) {
                    assert_eq!(
                        reason,
                        "cgroup v1 cannot be delegated to an unprivileged user"
                    );
                }
                eprintln!("unavailable: {reason}");
            }
            Placement::Cgroup(c) => eprintln!("delegated: {:?}", c.paths()),
        }
    }
}
