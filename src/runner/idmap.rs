//! A worker started by root is not host root: its user namespace maps its uid and gid
//! inside (root's own, or `RunSpec::user`) to `nobody` (65534) on the host, so it reads
//! only what any user may read. The
//! supervisor (host root, with CAP_SETUID there) writes those maps for the init, and shows
//! each writable path through an idmapped mount (Linux 5.12; tmpfs 6.3) that makes the
//! caller's files the worker's and what the worker creates the caller's on disk. A path
//! whose file system cannot be idmapped is refused, never shown as root.
//!
//! It owns the maps and the detached mount trees; the init moves the trees into place.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;
use nix::unistd::Pid;

use super::sys::{cstr, mount_setattr, AT_RECURSIVE};

/// The host uid and gid a root-started worker runs as.
pub const NOBODY: u32 = 65534;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Maps `inside` (uid, gid) of the init `pid` to `host` (uid, gid), one id each.
pub fn write_maps(pid: Pid, inside: (u32, u32), host: (u32, u32)) -> Result<(), String> {
    for (file, i, h) in [("uid_map", inside.0, host.0), ("gid_map", inside.1, host.1)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, format!("{i} {h} 1")).map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}

/// A detached copy of each of `paths`, idmapped through the user namespace of `pid`: what
/// that namespace maps to the worker's host id on disk, the worker owns through it.
pub fn trees(pid: Pid, paths: &[PathBuf]) -> Result<Vec<OwnedFd>, String> {
    let ns_path = format!("/proc/{pid}/ns/user");
    let ns = std::fs::File::open(&ns_path).map_err(|e| format!("opening {ns_path}: {e}"))?;
    trees_through(ns.as_raw_fd(), paths)
}

fn trees_through(ns: i32, paths: &[PathBuf]) -> Result<Vec<OwnedFd>, String> {
    paths
        .iter()
        .map(|p| {
            tree(p, ns).map_err(|e| {
                format!(
                    "writable path {} cannot be shown to a worker started by root: idmapping its mount failed: {}\nhint: its file system may not support idmapped mounts (ext4, xfs and btrfs do from Linux 5.12, tmpfs from 6.3); run devbox as an unprivileged user, or choose a writable path on such a file system",
                    p.display(),
                    e.desc()
                )
            })
        })
        .collect()
}

fn tree(path: &Path, userns: i32) -> Result<OwnedFd, Errno> {
    let c = cstr(path)?;
    // SAFETY: a valid C string; the returned descriptor is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: open_tree returned a new descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    mount_setattr(
        fd.as_raw_fd(),
        c"",
        libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
        MOUNT_ATTR_IDMAP,
        userns as u64,
    )?;
    Ok(fd)
}

/// A user namespace that maps `ids` (uid, gid) to `nobody`, held by its descriptor: made
/// by a child that waits in it to be killed. The idmapped trees go through it when the
/// worker's ids inside are not the caller's, so that the caller's files on disk are still
/// the worker's, and what the worker writes still the caller's.
fn userns_mapping(ids: (u32, u32)) -> Result<OwnedFd, String> {
    // SAFETY: the process is single-threaded (the supervisor checked); the child only
    // waits, with raw calls, to be killed.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            loop {
                libc::pause();
            }
        }
    }
    if pid < 0 {
        return Err(format!(
            "creating a user namespace for the idmapped paths: {}",
            Errno::last().desc()
        ));
    }
    let pid = Pid::from_raw(pid as i32);
    let ns = write_maps(pid, ids, (NOBODY, NOBODY)).and_then(|()| {
        let path = format!("/proc/{pid}/ns/user");
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(|e| format!("opening {path}: {e}"))
    });
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    ns
}

/// Maps the init's ids (`ids.0`, the worker's inside) to `nobody`, makes the idmapped
/// trees of `paths` and sends them to the init, which waits for them before anything
/// else. The trees make the caller's (`ids.1`) files the worker's.
pub fn hand_over(
    pid: Pid,
    ids: ((u32, u32), (u32, u32)),
    paths: &[PathBuf],
    sock: &OwnedFd,
) -> Result<(), String> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let (inside, caller) = ids;
    write_maps(pid, inside, (NOBODY, NOBODY))?;
    let trees = if paths.is_empty() || inside == caller {
        trees(pid, paths)?
    } else {
        trees_through(userns_mapping(caller)?.as_raw_fd(), paths)?
    };
    let raw: Vec<i32> = trees.iter().map(|t| t.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(b"MAPPED")],
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("handing the id maps to the sandbox: {e}"))?;
    Ok(())
}

/// The uid the worker has on the host: `nobody` when devbox runs as root, else the caller's.
pub fn host_uid() -> nix::unistd::Uid {
    match nix::unistd::geteuid().as_raw() {
        0 => nix::unistd::Uid::from_raw(NOBODY),
        uid => nix::unistd::Uid::from_raw(uid),
    }
}
