//! The native runner: daemon-less isolation of worker processes in Linux namespaces,
//! driven by a resolved [`RunSpec`]. It owns namespaces, mounts, cgroups, rlimits,
//! capabilities, seccomp, Landlock, the egress proxy and the audit log of every policy
//! decision. It never reads TOML: `spec` turns a validated worker (or command-line flags)
//! into a `RunSpec`, and everything below works from that.

pub mod audit;
pub mod caps;
pub mod cgroup;
pub mod elf;
pub mod idmap;
pub mod landlock;
pub mod lifecycle;
pub mod netns;
pub mod proxy;
pub mod rlimit;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod supervisor;
pub mod sys;
#[cfg(test)]
pub(crate) mod testing;

pub use audit::{AuditLog, Event};
pub use spec::{Mount, MountKind, Net, NetRules, RunSpec};
