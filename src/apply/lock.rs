//! One lock per project: a `flock` on a file in devbox's state directory, keyed by the
//! project name — the name the engine knows the project's resources by — so that two
//! checkouts of one project are serialised too. The kernel drops it when the holder dies,
//! so a crashed `up` never leaves a stale lock. The holder writes its pid, command and
//! directory for the message a waiting `up` prints.
//!
//! What the file says is trusted only when the kernel agrees: the waiter reads the lock's
//! owner from `/proc/locks` and takes the text only when it names that pid. Text left by
//! a holder that was killed, or read before a new holder has written its own, names
//! someone else.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

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
    lock: Flock<File>,
    pub path: PathBuf,
}

impl Drop for ProjectLock {
    /// Clears the holder's text while still holding the lock, so that no one reads it
    /// after.
    fn drop(&mut self) {
        let _ = self.lock.set_len(0);
    }
}

/// Where locks live: `$XDG_STATE_HOME/devbox/locks` (or the platform's equivalent),
/// else the temp dir.
pub fn lock_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "devbox")
        .and_then(|d| d.state_dir().map(Path::to_path_buf))
        .unwrap_or_else(|| std::env::temp_dir().join("devbox-state"))
        .join("locks")
}

pub fn lock_path(project: &str) -> PathBuf {
    lock_dir().join(format!("{project}.lock"))
}

/// Takes the project lock for the project in `dir`. When another process holds it: with
/// `wait`, calls `on_wait(holder)` once and blocks until it is free; without, fails at
/// once.
pub fn acquire(
    project: &str,
    dir: &Path,
    wait: bool,
    on_wait: impl FnOnce(&str),
) -> Result<ProjectLock, LockError> {
    let path = lock_path(project);
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
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, _)) => {
            let holder = holder(&file);
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
        "pid {} ({}) in {}\n",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" "),
        dir.display()
    );
    // A reader may see nothing, or a prefix without the final newline: it reads again.
    let _ = lock.set_len(0);
    let _ = lock.write_all_at(me.as_bytes(), 0);
    Ok(ProjectLock { lock, path })
}

/// How long a waiter gives a new holder to write its text before naming it by its pid.
const HOLDER_GRACE: Duration = Duration::from_millis(500);

/// Who holds the lock on `file`: the holder's own text when it names the pid the kernel
/// says holds the lock, else that pid and its command line.
fn holder(file: &File) -> String {
    let ino = file.metadata().map(|m| m.ino()).ok();
    let start = Instant::now();
    loop {
        let pids = ino.and_then(flock_holders);
        let text = read_text(file);
        let named = text.as_deref().and_then(named_pid);
        match (&pids, named) {
            (Some(pids), Some(n)) if pids.contains(&n) => return text.unwrap_or_default(),
            // No /proc/locks to check against: the text is all there is.
            (None, Some(_)) => return text.unwrap_or_default(),
            _ => {}
        }
        if start.elapsed() >= HOLDER_GRACE {
            return match pids.as_deref() {
                Some([pid, ..]) => format!("pid {pid} ({})", command_of(*pid)),
                _ => "another devbox".to_owned(),
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The whole text, when the holder has finished writing it (it ends with a newline).
fn read_text(file: &File) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = file.read_at(&mut buf, 0).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.ends_with('\n')
        .then(|| text.trim_end().to_owned())
        .filter(|t| !t.is_empty())
}

fn named_pid(text: &str) -> Option<u32> {
    text.strip_prefix("pid ")?.split(' ').next()?.parse().ok()
}

/// The pids holding a `flock` on inode `ino`, from `/proc/locks` (None when it cannot be
/// read).
fn flock_holders(ino: u64) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    Some(parse_locks(&text, ino))
}

/// `1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF`; blocked requests (`1: -> FLOCK …`)
/// do not hold anything.
fn parse_locks(text: &str, ino: u64) -> Vec<u32> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1) != Some(&"FLOCK") {
                return None;
            }
            let this = f.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
            (this == ino).then(|| f.get(4)?.parse().ok()).flatten()
        })
        .collect()
}

fn command_of(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if words.is_empty() {
        "unknown command".to_owned()
    } else {
        words.join(" ")
    }
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

    // A waiter once named the previous holder: it read text a killed holder had left
    // before the new holder had written its own.
    #[test]
    fn text_naming_another_pid_is_not_taken_for_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let project = format!("lockstale{}", std::process::id());
        let path = lock_path(&project);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "pid 1 (devbox up) in /elsewhere\n").unwrap();
        let held = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusive).unwrap();
        match acquire(&project, d.path(), false, |_| {}) {
            Err(LockError::Busy { holder, .. }) => assert!(
                holder.starts_with(&format!("pid {} (", std::process::id())),
                "{holder}"
            ),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a second lock was granted while the first is held"),
        }
        drop(held);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn proc_locks_lines_give_the_holders_of_one_inode() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4343 fe:00:1234 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 99 fe:00:1234 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 77 fe:00:999 0 EOF\n";
        assert_eq!(parse_locks(text, 1234), vec![4242]);
        assert_eq!(parse_locks(text, 5), Vec::<u32>::new());
    }
}
