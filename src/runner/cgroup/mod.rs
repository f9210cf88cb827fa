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
//! not enabled yet: in the v2 root and `devbox/` as root, in the delegated cgroup (and a
//! nest devbox made in it) otherwise.
//!
//! Files: [`detect`] reads the host (mounts, the caller's cgroup, delegation) and decides
//! where the run's cgroup goes; `v1`, `v2` and `delegate` build it there; `handle` is the
//! built cgroup; `files` reads and writes cgroupfs and names devbox's directories;
//! `nest` makes, for a long-lived devbox that starts runs (the native supervisor), a
//! subtree of a delegated cgroup whose every level can hand controllers down.

mod delegate;
mod detect;
mod files;
mod handle;
mod nest;
mod v1;
mod v2;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::config::model::Limits;
use crate::fsutil::PathError;

pub use detect::{detect, parse_mountinfo, Hierarchy, Layout};
pub use handle::Cgroup;
pub use nest::{join_before_exec, remove_tree, Declined, Nest};

use delegate::build_delegated;
use detect::{decide, Host, Target};
use v1::build_legacy;
use v2::build_unified_root;

/// The CFS period for `cpus`: the kernel's default, so `cpus = 0.5` reads as 50 ms of
/// every 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts (1 ms).
const CPU_MIN_QUOTA_US: u64 = 1_000;
/// How long teardown keeps killing before it gives up on a cgroup.
const KILL_WAIT: Duration = Duration::from_secs(3);

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

/// `cpus` as a CFS quota per [`CPU_PERIOD_US`] (`devbox render oci` writes the same).
pub fn cpu_quota(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(CPU_MIN_QUOTA_US)
}

#[cfg(test)]
mod tests;
