//! A built cgroup: moving processes in, telling whether a limit was hit, and removal,
//! killing whatever is left.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::files::{read_key, write};
use super::{Error, KILL_WAIT};
use crate::fsutil::PathError;

const EBUSY: i32 = Errno::EBUSY as i32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    Legacy,
    Unified,
}

/// A run's cgroup: one directory on v2, one per hierarchy on v1. Dropping it removes it
/// (best effort); [`Cgroup::try_remove`] says what went wrong.
#[derive(Debug)]
pub struct Cgroup {
    pub(super) version: Version,
    pub(super) paths: Vec<PathBuf>,
    pub(super) memory: Option<PathBuf>,
    pub(super) pids: Option<PathBuf>,
    pub(super) cpu: Option<PathBuf>,
    removed: bool,
}

impl Cgroup {
    pub(super) fn new(version: Version) -> Self {
        Self {
            version,
            paths: Vec::new(),
            memory: None,
            pids: None,
            cpu: None,
            removed: false,
        }
    }

    /// The cgroup at `paths`, made for a run whose supervisor was killed before it could
    /// remove it (see `lifecycle`): only [`Cgroup::try_remove`] is meant for it.
    pub fn adopt(paths: Vec<PathBuf>) -> Self {
        let unified = paths.len() == 1 && paths[0].join("cgroup.controllers").exists();
        let mut c = Self::new(if unified {
            Version::Unified
        } else {
            Version::Legacy
        });
        c.paths = paths;
        c
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
