//! cgroup v2: enabling controllers for children, and the run's leaf with its limits,
//! under `devbox/` in the root (as root) or in a delegated cgroup.

use std::fs;
use std::path::Path;

use super::files::{fresh_leaf, mkdir_once, read_list, sweep, write};
use super::handle::{Cgroup, Version};
use super::{cpu_quota, detect::missing, prep, Controller, Error, Fail, CPU_PERIOD_US};
use crate::config::model::Limits;
use crate::fsutil::WrapPath;

/// Enables `needed` in `dir`'s `cgroup.subtree_control`, writing only what is missing.
pub(super) fn enable(dir: &Path, needed: &[Controller]) -> Result<(), Error> {
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

pub(super) fn build_unified_root(
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

pub(super) fn build_unified_leaf(
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
