//! Where the native engine keeps things: records that outlive a boot (networks and
//! volumes) under devbox's data directory, and what lives only as long as the processes
//! (each project's supervisor, its socket, container records and logs) under the runtime
//! directory. Both are the caller's own: mode 0700.

use std::path::{Path, PathBuf};

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "devbox")
}

/// `/var/lib/devbox/native` for root, else the user's data directory's `native`.
pub fn data_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/devbox/native");
    }
    match project_dirs() {
        Some(d) => d.data_dir().join("native"),
        None => std::env::temp_dir()
            .join(format!("devbox-{}", nix::unistd::geteuid()))
            .join("data/native"),
    }
}

/// The runtime directory's `native` (see [`crate::runner::state::runtime_dir`]).
pub fn runtime_root() -> PathBuf {
    crate::runner::state::runtime_dir().join("native")
}

pub use crate::runner::state::make_private;

/// One project's runtime directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectDir {
    pub dir: PathBuf,
}

impl ProjectDir {
    pub fn new(root: &Path, project: &str) -> Self {
        Self {
            dir: root.join(project),
        }
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("supervisor.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("supervisor.pid")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("supervisor.lock")
    }
    /// The cgroup nest the supervisor and its services live in, when it has one.
    pub fn cgroup_file(&self) -> PathBuf {
        self.dir.join("supervisor.cgroup")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    pub fn containers(&self) -> PathBuf {
        self.dir.join("containers")
    }
    pub fn record(&self, id: &str) -> PathBuf {
        self.containers().join(format!("{id}.json"))
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
}
