//! cgroupfs reads and writes, and the names of devbox's directories: unique per run,
//! carrying the supervisor's pid so that leftovers of dead supervisors can be swept.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::Error;
use crate::fsutil::WrapPath;

/// Keeps one supervisor's runs apart; the pid in the name keeps supervisors apart.
pub(super) static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name for the run's directory that no directory in `bases` has yet.
pub(super) fn fresh_leaf(bases: &[PathBuf], prefix: &str, name: &str) -> String {
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
pub(super) fn owner_pid(dir_name: &str, prefix: &str) -> Option<u32> {
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
pub(super) fn sweep(base: &Path, prefix: &str) {
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

pub(super) fn mkdir_once(dir: &Path) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => Ok(r.wrap("creating cgroup", dir)?),
    }
}

/// Writes `value` to a cgroup file, which must exist (cgroupfs files are never created).
pub(super) fn write(path: &Path, value: &str) -> Result<(), Error> {
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
pub(super) fn read_list(path: &Path) -> Result<Vec<String>, Error> {
    let text = fs::read_to_string(path).wrap("reading", path)?;
    Ok(text.split_whitespace().map(str::to_owned).collect())
}

/// The number after `key` in a flat-keyed file (`memory.events`, `pids.events`, ...).
pub(super) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}
