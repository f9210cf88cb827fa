//! cgroup v2 for an ordinary user's long-lived devbox that starts runs of its own (the
//! native engine's supervisor, one monitor per service run): a subtree of the caller's
//! delegated cgroup whose every level may give its children memory, pids and cpu. v2
//! gives a cgroup's children controllers only while it holds no process, so the caller
//! first moves into a leaf of its own (as for `devbox run`), the supervisor lives in a
//! leaf of the subtree, and each monitor gets a cgroup of its own in which the runner
//! then builds the run's cgroup as in any delegated cgroup.
//!
//! `D/devbox-supervisor-PID-N`   the caller (`up`), once it has moved out of the way
//! `D/devbox-native-NAME-PID-N/` the [`Nest`]:
//!   `supervisor/`               the supervisor
//!   `svc-SERVICE-N/`            a monitor, and inside it the runner's own cgroups

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::delegate::{enable_in_own, DELEGATED_PREFIX};
use super::detect::{decide, detect, Host, Layout, Target};
use super::files::{fresh_leaf, sweep, write};
use super::v2::enable;
use super::{Controller, Error, Fail, KILL_WAIT};
use crate::fsutil::{PathError, WrapPath};

/// The controllers a nest hands down: every one devbox uses that the host delegates.
const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

/// A subtree of a delegated cgroup made by devbox (see the module's docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nest {
    dir: PathBuf,
}

/// Why no nest was made: a lower-case clause, as [`super::Placement::Unavailable`] gives.
pub type Declined = String;

impl Nest {
    /// Makes a nest called `name` in this process's own cgroup, moving this process
    /// into a leaf beside it first. Only an ordinary user on v2 in a delegated cgroup
    /// that holds no other process gets one; root needs none (runs go under the v2
    /// root), and everyone else is declined with the reason, and then falls back to
    /// what the runner does without (rlimits, with the runner's warning).
    pub fn make(name: &str) -> Result<Result<Self, Declined>, Error> {
        let layout = detect()?;
        if !matches!(layout, Layout::Unified { .. }) || nix::unistd::geteuid().is_root() {
            return Ok(Err("no nest is needed or possible here".into()));
        }
        let host = Host::probe(layout)?;
        let have = host
            .own
            .as_ref()
            .map(|o| o.controllers.clone())
            .unwrap_or_default();
        let wanted: Vec<Controller> = ALL
            .into_iter()
            .filter(|c| have.iter().any(|h| h == c.name()))
            .collect();
        if wanted.is_empty() {
            // Nothing to hand down: the runs say why they have no cgroup, as without one.
            return Ok(Err("no controller is delegated here".into()));
        }
        let own = match decide(&host, &wanted) {
            Ok(Target::Delegated { own }) => own,
            Ok(_) => return Ok(Err("this cgroup is not delegated".into())),
            Err(reason) => return Ok(Err(reason)),
        };
        let refused = |f: Fail| match f {
            Fail::Refused(why) => Ok(Err(why)),
            Fail::Error(e) => Err(e),
        };
        sweep(&own, DELEGATED_PREFIX);
        if let Err(f) = enable_in_own(&own, &wanted, &[]) {
            return refused(f);
        }
        let dir = own.join(fresh_leaf(
            std::slice::from_ref(&own),
            DELEGATED_PREFIX,
            &format!("native-{name}"),
        ));
        fs::create_dir(&dir).wrap("creating cgroup", &dir)?;
        let nest = Self { dir };
        let ready = fs::create_dir(nest.supervisor())
            .wrap("creating cgroup", &nest.supervisor())
            .map_err(Error::from)
            .and_then(|()| enable(&nest.dir, &wanted));
        if let Err(e) = ready {
            let _ = nest.remove();
            return Err(e);
        }
        Ok(Ok(nest))
    }

    /// A nest made earlier, from its directory (as [`Nest::dir`] gave it). Only a
    /// directory named as devbox names nests, in a cgroup v2 file system, is taken.
    pub fn at(dir: &Path) -> Option<Self> {
        let name = dir.file_name()?.to_str()?;
        let ours = name.starts_with(&format!("{DELEGATED_PREFIX}native-"));
        let cgroupfs = nix::sys::statfs::statfs(dir)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        (ours && cgroupfs).then(|| Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The leaf the supervisor lives in.
    pub fn supervisor(&self) -> PathBuf {
        self.dir.join("supervisor")
    }

    /// A fresh cgroup for one monitor (the runner, inside it, makes the run's own), with
    /// whatever controllers the nest hands down.
    pub fn child(&self, service: &str) -> Result<PathBuf, Error> {
        let dir = self
            .dir
            .join(fresh_leaf(std::slice::from_ref(&self.dir), "svc-", service));
        fs::create_dir(&dir).wrap("creating cgroup", &dir)?;
        Ok(dir)
    }

    /// Kills whatever is left in the nest and removes it, deepest first.
    pub fn remove(&self) -> Result<(), Error> {
        remove_tree(&self.dir)
    }
}

/// Makes `cmd`'s child move itself into `cgroup` before it execs, with nothing but
/// open(2) and write(2) between the fork and the exec (both async-signal-safe).
pub fn join_before_exec(cmd: &mut std::process::Command, cgroup: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let path = std::ffi::CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes())
        .map_err(io::Error::other)?;
    let join = move || {
        // SAFETY: open and write on a C string and a static buffer, as the child of a fork
        // may; the descriptor is closed before returning.
        unsafe {
            let fd = nix::libc::open(path.as_ptr(), nix::libc::O_WRONLY | nix::libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = nix::libc::write(fd, b"0".as_ptr().cast(), 1);
            let e = io::Error::last_os_error();
            nix::libc::close(fd);
            if n == 1 {
                Ok(())
            } else {
                Err(e)
            }
        }
    };
    // SAFETY: the closure only makes the async-signal-safe calls above.
    unsafe {
        cmd.pre_exec(join);
    }
    Ok(())
}

/// Kills every process in the cgroup tree at `dir` (v2's `cgroup.kill`) and removes it,
/// children before parents, waiting up to [`KILL_WAIT`] for the kernel to let go.
pub fn remove_tree(dir: &Path) -> Result<(), Error> {
    let _ = write(&dir.join("cgroup.kill"), "1");
    let deadline = Instant::now() + KILL_WAIT;
    remove_below(dir, deadline)
}

fn remove_below(dir: &Path, deadline: Instant) -> Result<(), Error> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_below(&e.path(), deadline)?;
            }
        }
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && Instant::now() < deadline => {
                let _ = write(&dir.join("cgroup.kill"), "1");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(source) => {
                return Err(Error::Io(PathError {
                    action: "removing cgroup",
                    path: dir.to_path_buf(),
                    source,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_nest_devbox_named_on_cgroupfs_is_taken_back() {
        // A path from a record is removed with all below it, so anything else is refused.
        let tmp = tempfile::tempdir().unwrap();
        let named = tmp.path().join("devbox-native-web-12-0");
        fs::create_dir(&named).unwrap();
        assert_eq!(Nest::at(&named), None, "not a cgroup file system");
        assert_eq!(
            Nest::at(Path::new("/sys/fs/cgroup")),
            None,
            "not devbox's name"
        );
        assert_eq!(Nest::at(Path::new("/")), None);
    }

    #[test]
    fn a_tree_is_removed_children_first_and_a_missing_one_is_no_error() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("nest");
        fs::create_dir_all(top.join("svc-a-1-0/devbox-a-2-0")).unwrap();
        fs::create_dir_all(top.join("supervisor")).unwrap();
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        remove_tree(&top).unwrap();
    }
}
