//! The runner's one seam to the kernel for building a sandbox's file system: every mount,
//! pivot_root and file it makes is an [`Op`], planned ahead (in the supervisor, where
//! allocation and error reporting are easy) and executed in the sandbox by a [`Sys`]. The
//! real [`Kernel`] makes the system calls; [`Recorder`] lets the plan's sequencing be
//! unit-tested without privileges.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Mount attributes that can be added to a mount (and, when `recursive`, everything under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attrs {
    pub readonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

/// One step of building a sandbox's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Stop mount events from reaching the host: `mount --make-rprivate /`.
    MakePrivate,
    /// A tmpfs at `path` with `mode` (and `size` bytes when set).
    Tmpfs {
        path: PathBuf,
        mode: u32,
        size: Option<u64>,
        attrs: Attrs,
    },
    Mkdir(PathBuf),
    /// An empty file to bind a file onto.
    Touch(PathBuf),
    /// `path` becomes a symbolic link to `to`.
    Symlink {
        to: PathBuf,
        path: PathBuf,
    },
    /// Recursive bind of `src` onto `dst`.
    Bind {
        src: PathBuf,
        dst: PathBuf,
    },
    /// Moves the detached, idmapped copy of the host's `src` (made by the supervisor, its
    /// descriptor `fd` handed to the init) onto the existing `dst`.
    MoveIdmapped {
        src: PathBuf,
        dst: PathBuf,
        fd: i32,
    },
    /// Add attributes to the mount at `path` (and its submounts when `recursive`).
    SetAttrs {
        path: PathBuf,
        attrs: Attrs,
        recursive: bool,
    },
    /// A fresh procfs for the sandbox's pid namespace.
    Proc(PathBuf),
    WriteFile {
        path: PathBuf,
        contents: Vec<u8>,
        mode: u32,
    },
    Chdir(PathBuf),
    /// `pivot_root(new_root, put_old)`.
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    /// Lazy unmount: the old root leaves the sandbox's view entirely.
    Detach(PathBuf),
}

/// Who carries out the ops.
pub trait Sys {
    fn apply(&mut self, op: &Op) -> Result<(), Errno>;
}

/// Runs every op; the first failure names the op.
pub fn execute(ops: &[Op], sys: &mut impl Sys) -> Result<(), (Errno, String)> {
    for op in ops {
        sys.apply(op).map_err(|e| (e, describe(op)))?;
    }
    Ok(())
}

/// A short human description of an op, for the one error the sandbox reports.
pub fn describe(op: &Op) -> String {
    match op {
        Op::MakePrivate => "making mounts private".into(),
        Op::Tmpfs { path, .. } => format!("mounting a tmpfs on {}", path.display()),
        Op::Mkdir(p) => format!("creating directory {}", p.display()),
        Op::Touch(p) => format!("creating mount point {}", p.display()),
        Op::Symlink { to, path } => {
            format!("linking {} to {}", path.display(), to.display())
        }
        Op::Bind { src, dst } => format!("binding {} on {}", src.display(), dst.display()),
        Op::MoveIdmapped { src, dst, .. } => {
            format!("showing {} on {} idmapped", src.display(), dst.display())
        }
        Op::SetAttrs { path, .. } => format!("restricting the mount on {}", path.display()),
        Op::Proc(p) => format!("mounting proc on {}", p.display()),
        Op::WriteFile { path, .. } => format!("writing {}", path.display()),
        Op::Chdir(p) => format!("entering {}", p.display()),
        Op::PivotRoot { new_root, .. } => format!("pivot_root into {}", new_root.display()),
        Op::Detach(p) => format!("detaching {}", p.display()),
    }
}

/// The real kernel.
pub struct Kernel;

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub(super) const AT_RECURSIVE: nix::libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(super) fn cstr(p: &Path) -> Result<CString, Errno> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// `mount_setattr(dirfd, path, flags, {attr_set: set, userns_fd})`, the one raw call both
/// the rootfs plan and the idmapped trees make.
pub(super) fn mount_setattr(
    dirfd: std::ffi::c_int,
    path: &std::ffi::CStr,
    flags: nix::libc::c_uint,
    set: u64,
    userns_fd: u64,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd,
    };
    // SAFETY: a valid C string and a properly sized, initialised mount_attr.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

impl Kernel {
    /// `mount_setattr` (Linux 5.12) sets flags on a whole tree in one call and keeps the
    /// flags a user namespace may not clear; older kernels get a per-mount remount.
    fn set_attrs(path: &Path, a: Attrs, recursive: bool) -> Result<(), Errno> {
        let mut set = 0;
        if a.readonly {
            set |= MOUNT_ATTR_RDONLY;
        }
        if a.nosuid {
            set |= MOUNT_ATTR_NOSUID;
        }
        if a.nodev {
            set |= MOUNT_ATTR_NODEV;
        }
        if a.noexec {
            set |= MOUNT_ATTR_NOEXEC;
        }
        let c = cstr(path)?;
        let flags = if recursive { AT_RECURSIVE } else { 0 };
        match mount_setattr(nix::libc::AT_FDCWD, &c, flags, set, 0) {
            Err(Errno::ENOSYS) => Self::remount(path, a),
            r => r,
        }
    }

    fn remount(path: &Path, a: Attrs) -> Result<(), Errno> {
        // A remount must repeat the flags the mount already has that an unprivileged user
        // namespace may not clear (nodev, nosuid, noexec on the host's mount).
        let st = nix::sys::statvfs::statvfs(path)?;
        use nix::sys::statvfs::FsFlags;
        let mut f = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
        let have = st.flags();
        if a.readonly || have.contains(FsFlags::ST_RDONLY) {
            f |= MsFlags::MS_RDONLY;
        }
        if a.nosuid || have.contains(FsFlags::ST_NOSUID) {
            f |= MsFlags::MS_NOSUID;
        }
        if a.nodev || have.contains(FsFlags::ST_NODEV) {
            f |= MsFlags::MS_NODEV;
        }
        if a.noexec || have.contains(FsFlags::ST_NOEXEC) {
            f |= MsFlags::MS_NOEXEC;
        }
        nix::mount::mount(None::<&str>, path, None::<&str>, f, None::<&str>)
    }
}

impl Sys for Kernel {
    fn apply(&mut self, op: &Op) -> Result<(), Errno> {
        use nix::mount::mount;
        match op {
            Op::MakePrivate => mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            ),
            Op::Tmpfs {
                path,
                mode,
                size,
                attrs,
            } => {
                let data = match size {
                    Some(s) => format!("mode={mode:o},size={s}"),
                    None => format!("mode={mode:o}"),
                };
                let mut f = MsFlags::empty();
                if attrs.nosuid {
                    f |= MsFlags::MS_NOSUID;
                }
                if attrs.nodev {
                    f |= MsFlags::MS_NODEV;
                }
                if attrs.noexec {
                    f |= MsFlags::MS_NOEXEC;
                }
                if attrs.readonly {
                    f |= MsFlags::MS_RDONLY;
                }
                mount(Some("tmpfs"), path, Some("tmpfs"), f, Some(data.as_str()))
            }
            Op::Mkdir(p) => match std::fs::create_dir_all(p) {
                Ok(()) => Ok(()),
                Err(e) => Err(Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))),
            },
            Op::Touch(p) => {
                // Already there (inside a read-only bind, say): nothing to create.
                if std::fs::symlink_metadata(p).is_ok() {
                    return Ok(());
                }
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(io_errno)?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(p)
                    .map(drop)
                    .map_err(io_errno)
            }
            Op::Symlink { to, path } => {
                // Already there: a link inside a bound directory is the host's own.
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Ok(());
                }
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_errno)?;
                }
                std::os::unix::fs::symlink(to, path).map_err(io_errno)
            }
            Op::Bind { src, dst } => mount(
                Some(src.as_path()),
                dst.as_path(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
            Op::MoveIdmapped { dst, fd, .. } => {
                const MOVE_MOUNT_F_EMPTY_PATH: nix::libc::c_uint = 4;
                let c = cstr(dst)?;
                // SAFETY: a descriptor the supervisor handed over, an empty source path and a
                // valid C string for the target.
                let r = unsafe {
                    nix::libc::syscall(
                        nix::libc::SYS_move_mount,
                        *fd,
                        c"".as_ptr(),
                        nix::libc::AT_FDCWD,
                        c.as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH,
                    )
                };
                if r < 0 {
                    return Err(Errno::last());
                }
                Ok(())
            }
            Op::SetAttrs {
                path,
                attrs,
                recursive,
            } => Self::set_attrs(path, *attrs, *recursive),
            Op::Proc(p) => mount(
                Some("proc"),
                p.as_path(),
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            ),
            Op::WriteFile {
                path,
                contents,
                mode,
            } => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_errno)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .mode(*mode)
                    .open(path)
                    .map_err(io_errno)?;
                f.write_all(contents).map_err(io_errno)
            }
            Op::Chdir(p) => nix::unistd::chdir(p.as_path()),
            Op::PivotRoot { new_root, put_old } => {
                nix::unistd::pivot_root(new_root.as_path(), put_old.as_path())
            }
            Op::Detach(p) => nix::mount::umount2(p.as_path(), MntFlags::MNT_DETACH),
        }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

/// Records ops instead of running them; fails the op at `fail_at` to test error paths.
#[derive(Default)]
pub struct Recorder {
    pub ops: Vec<Op>,
    pub fail_at: Option<usize>,
}

impl Sys for Recorder {
    fn apply(&mut self, op: &Op) -> Result<(), Errno> {
        if self.fail_at == Some(self.ops.len()) {
            return Err(Errno::EPERM);
        }
        self.ops.push(op.clone());
        Ok(())
    }
}
