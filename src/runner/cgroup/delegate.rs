//! cgroup v2 for an ordinary user: the run's cgroup goes in the caller's own cgroup,
//! which systemd (or someone) delegated, after the supervisor moves out of its way.

use std::fs;
use std::path::Path;

use nix::unistd::Pid;

use super::files::{fresh_leaf, sweep, write};
use super::handle::Cgroup;
use super::v2::{build_unified_leaf, enable};
use super::{prep, Controller, Error, Fail};
use crate::config::model::Limits;
use crate::fsutil::WrapPath;

/// Names of devbox's cgroups inside a delegated cgroup, which is shared with whatever
/// else the user runs there.
pub(super) const DELEGATED_PREFIX: &str = "devbox-";

pub(super) fn build_delegated(
    own: &Path,
    needed: &[Controller],
    name: &str,
    limits: &Limits,
    init: Pid,
) -> Result<Cgroup, Fail> {
    sweep(own, DELEGATED_PREFIX);
    enable_in_own(own, needed, &[init])?;
    build_unified_leaf(own, DELEGATED_PREFIX, needed, name, limits)
}

/// Enables `needed` for the children of our own cgroup. v2 gives a cgroup's children
/// domain controllers (memory) only while it holds no process ("no internal processes",
/// EBUSY), and a cgroup with processes that enables a threaded controller (pids, cpu)
/// becomes a thread root, whose children cannot take a process at all (EOPNOTSUPP). So
/// ours, the supervisor and the init it has just cloned, first move into a leaf of their
/// own, the way systemd, podman and youki do; when others share the cgroup, moving them
/// is not ours to do. `also` are our children to move with us.
pub(super) fn enable_in_own(own: &Path, needed: &[Controller], also: &[Pid]) -> Result<(), Fail> {
    let procs_file = own.join("cgroup.procs");
    let procs = prep(
        fs::read_to_string(&procs_file)
            .wrap("reading", &procs_file)
            .map_err(Error::from),
    )?;
    let ours: Vec<String> = std::iter::once(std::process::id().to_string())
        .chain(also.iter().map(ToString::to_string))
        .collect();
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
