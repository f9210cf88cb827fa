//! cgroup v1, as root: one `devbox/<run>` directory in each hierarchy holding a needed
//! controller.

use std::fs;
use std::path::PathBuf;

use super::files::{fresh_leaf, mkdir_once, sweep, write};
use super::handle::{Cgroup, Version};
use super::{cpu_quota, prep, Controller, Error, Fail, CPU_PERIOD_US};
use crate::config::model::Limits;
use crate::fsutil::WrapPath;

pub(super) fn build_legacy(
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
