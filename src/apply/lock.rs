//! One lock per project: a `flock` on a file in devbox's state directory, keyed by the
//! project name and directory. The kernel drops it when the holder dies, so a crashed
//! `up` never leaves a stale lock. The holder writes its pid and command for the message
//! a waiting `up` prints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::fsutil::{PathError, WrapPath};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("project {project:?} is locked by {holder} ({})\nhint: wait for it, or run without --no-wait to wait", .path.display())]
    Busy {
        project: String,
        holder: String,
        path: PathBuf,
    },
}

pub struct ProjectLock {
    _lock: Flock<File>,
    pub path: PathBuf,
}

/// Where locks live: `$XDG_STATE_HOME/devbox/locks` (or the platform's equivalent),
/// else the temp dir.
pub fn lock_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "devbox")
        .and_then(|d| d.state_dir().map(Path::to_path_buf))
        .unwrap_or_else(|| std::env::temp_dir().join("devbox-state"))
        .join("locks")
}

pub fn lock_path(project: &str, dir: &Path) -> PathBuf {
    let h = hex::encode(Sha256::digest(dir.as_os_str().as_encoded_bytes()));
    lock_dir().join(format!("{project}-{}.lock", &h[..12]))
}

/// Takes the project lock. When another process holds it: with `wait`, calls
/// `on_wait(holder)` once and blocks until it is free; without, fails at once.
pub fn acquire(
    project: &str,
    dir: &Path,
    wait: bool,
    on_wait: impl FnOnce(&str),
) -> Result<ProjectLock, LockError> {
    let path = lock_path(project, dir);
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).wrap("creating", parent)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .wrap("opening", &path)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, _)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim().to_owned();
            let holder = if holder.is_empty() {
                "another devbox".to_owned()
            } else {
                holder
            };
            if !wait {
                return Err(LockError::Busy {
                    project: project.to_owned(),
                    holder,
                    path,
                });
            }
            on_wait(&holder);
            loop {
                match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(l) => break l,
                    Err((f, _)) => {
                        file = f;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    };
    let me = format!(
        "pid {} ({})",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = lock.write_all(me.as_bytes());
    let _ = lock.flush();
    Ok(ProjectLock { _lock: lock, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_fails_without_wait_and_gets_it_after_release() {
        let d = tempfile::tempdir().unwrap();
        let project = format!("locktest{}", std::process::id());
        let first = acquire(&project, d.path(), false, |_| {}).unwrap();
        match acquire(&project, d.path(), false, |_| {}) {
            Err(LockError::Busy { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a second lock was granted while the first is held"),
        }
        let path = first.path.clone();
        drop(first);
        let again = acquire(&project, d.path(), false, |_| {}).unwrap();
        assert_eq!(again.path, path);
        drop(again);
        let _ = std::fs::remove_file(path);
    }
}
