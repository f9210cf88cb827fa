//! Directory handles that never follow a symlink. Every name is one path component,
//! resolved by the kernel relative to a directory descriptor devbox holds
//! (`openat`, `mkdirat`, `fstatat`, `linkat`, `unlinkat` with `O_NOFOLLOW` /
//! `AT_SYMLINK_NOFOLLOW`), so swapping a directory for a symlink while devbox works
//! cannot redirect it: a symlink met on the way is an error, and a directory renamed
//! away keeps being the one devbox opened.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{linkat, unlinkat, AccessFlags, UnlinkatFlags};

use super::DataError;
use crate::fsutil::PathError;

/// What a name in a directory is, looked at without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

fn kind_of(st: &FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn err(action: &'static str, path: PathBuf, e: Errno) -> DataError {
    PathError {
        action,
        path,
        source: io::Error::from(e),
    }
    .into()
}

/// An open directory and the path it was reached by (for messages only: devbox never
/// resolves that path again).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Dir {
    /// Opens the project directory: the one path devbox takes as the user gave it.
    pub fn anchor(path: &Path) -> Result<Dir, DataError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = openat(AT_FDCWD, path, flags, Mode::empty())
            .map_err(|e| err("opening", path.to_path_buf(), e))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// What `name` is, without following it; `None` when it does not exist.
    pub fn kind(&self, name: &OsStr) -> Result<Option<(Kind, FileStat)>, DataError> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some((kind_of(&st), st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(err("inspecting", self.join(name), e)),
        }
    }

    /// This directory's own status.
    pub fn stat(&self) -> Result<FileStat, DataError> {
        fstat(&self.fd).map_err(|e| err("inspecting", self.path.clone(), e))
    }

    /// Opens the directory `name` in this one; `None` when it does not exist, an error
    /// when it is a symlink or not a directory.
    pub fn open(&self, name: &OsStr) -> Result<Option<Dir>, DataError> {
        let path = self.join(name);
        match openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir { fd, path })),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ELOOP) => Err(DataError::Symlink(path)),
            Err(Errno::ENOTDIR) => match self.kind(name)? {
                Some((Kind::Symlink, _)) => Err(DataError::Symlink(path)),
                _ => Err(DataError::WrongType {
                    path,
                    expected: "directory",
                }),
            },
            Err(e) => Err(err("opening", path, e)),
        }
    }

    /// Opens the file `name` in this directory for appending, creating it with `mode`;
    /// a symlink there is refused, never followed.
    pub fn open_append(&self, name: &OsStr, mode: u32) -> Result<File, DataError> {
        let flags = OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_CREAT
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC;
        match openat(&self.fd, name, flags, Mode::from_bits_truncate(mode)) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::ELOOP) => Err(DataError::Symlink(self.join(name))),
            Err(e) => Err(err("opening", self.join(name), e)),
        }
    }

    /// Makes the directory `name` with exactly `mode` unless something has that name.
    /// Returns whether it made it.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> Result<bool, DataError> {
        match mkdirat(&self.fd, name, Mode::from_bits_truncate(mode)) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(err("creating", self.join(name), e)),
        }
    }

    /// Sets this directory's mode on its descriptor (the umask may have narrowed it).
    pub fn chmod(&self, mode: u32) -> Result<(), DataError> {
        nix::sys::stat::fchmod(&self.fd, Mode::from_bits_truncate(mode))
            .map_err(|e| err("setting the mode of", self.path.clone(), e))
    }

    /// Changes this directory's owner on its descriptor.
    pub fn chown(&self, uid: u32, gid: u32) -> Result<(), DataError> {
        nix::unistd::fchown(
            &self.fd,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| err("changing the owner of", self.path.clone(), e))
    }

    /// The names in this directory (without `.` and `..`), sorted.
    pub fn names(&self) -> Result<Vec<OsString>, DataError> {
        let mut d = nix::dir::Dir::openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("reading", self.path.clone(), e))?;
        let mut out = Vec::new();
        for entry in d.iter() {
            let entry = entry.map_err(|e| err("reading", self.path.clone(), e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Where the symlink `name` points, as written.
    pub fn read_link(&self, name: &OsStr) -> Result<PathBuf, DataError> {
        nix::fcntl::readlinkat(&self.fd, name)
            .map(PathBuf::from)
            .map_err(|e| err("reading link", self.join(name), e))
    }

    /// Removes the non-directory `name` (a symlink is removed, never followed).
    pub fn unlink(&self, name: &OsStr) -> Result<(), Errno> {
        unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)
    }

    /// Removes the empty directory `name`.
    pub fn rmdir(&self, name: &OsStr) -> Result<(), Errno> {
        unlinkat(&self.fd, name, UnlinkatFlags::RemoveDir)
    }

    /// Whether devbox may add and remove names in this directory; the error says why
    /// not (read-only file system, permission denied, immutable).
    pub fn writable(&self) -> Result<(), Errno> {
        nix::unistd::faccessat(
            &self.fd,
            ".",
            AccessFlags::W_OK | AccessFlags::X_OK,
            AtFlags::AT_EACCESS,
        )
    }

    /// Flushes this directory's entries to disk.
    pub fn sync(&self) -> Result<(), DataError> {
        nix::unistd::fsync(&self.fd).map_err(|e| err("syncing directory", self.path.clone(), e))
    }

    /// Creates the file `name` holding `body` with `mode` unless the name exists, never
    /// replacing anything. Returns whether it created it.
    ///
    /// The file is written before it has a name (`O_TMPFILE`), so a crash leaves
    /// nothing behind; where the file system has no `O_TMPFILE`, a temporary name
    /// `.NAME.devbox-PID.tmp` is used and removed, and [`Dir::remove_leftovers`]
    /// clears one a killed devbox left.
    pub fn create_once(&self, name: &OsStr, body: &[u8], mode: u32) -> Result<bool, DataError> {
        let path = self.join(name);
        let flags = OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        let created = match openat(&self.fd, ".", flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => {
                let file = fill(File::from(fd), body, mode, &path)?;
                self.link_unnamed(&file, name)?
            }
            Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {
                self.create_once_named(name, body, mode)?
            }
            Err(e) => return Err(err("creating", path, e)),
        };
        self.sync()?;
        Ok(created)
    }

    /// Gives the unnamed file its name: through `/proc/self/fd` (any user may), or
    /// `AT_EMPTY_PATH` when `/proc` is not mounted.
    fn link_unnamed(&self, file: &File, name: &OsStr) -> Result<bool, DataError> {
        let path = self.join(name);
        let proc = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let r = match linkat(AT_FDCWD, &proc, &self.fd, name, AtFlags::AT_SYMLINK_FOLLOW) {
            Err(Errno::ENOENT) if !Path::new("/proc/self/fd").exists() => {
                linkat(file.as_fd(), "", &self.fd, name, AtFlags::AT_EMPTY_PATH)
            }
            r => r,
        };
        match r {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(err("linking into place", path, e)),
        }
    }

    fn create_once_named(&self, name: &OsStr, body: &[u8], mode: u32) -> Result<bool, DataError> {
        let path = self.join(name);
        let tmp = OsString::from(format!(
            ".{}.devbox-{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let tmp_path = self.join(&tmp);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            &self.fd,
            tmp.as_os_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| err("creating", tmp_path.clone(), e))?;
        let result = fill(File::from(fd), body, mode, &tmp_path).and_then(|_| {
            match linkat(&self.fd, tmp.as_os_str(), &self.fd, name, AtFlags::empty()) {
                Ok(()) => Ok(true),
                Err(Errno::EEXIST) => Ok(false),
                Err(e) => Err(err("linking into place", path, e)),
            }
        });
        let _ = self.unlink(&tmp);
        result
    }

    /// Removes the temporary files `.NAME.devbox-PID.tmp` a devbox that was killed
    /// while creating `name` left in this directory (empty, half-written, or a second
    /// link to the finished file). One whose process still runs is left alone.
    pub fn remove_leftovers(&self, name: &OsStr) -> Result<Vec<PathBuf>, DataError> {
        let prefix = format!(".{}.devbox-", name.to_string_lossy());
        let mut removed = Vec::new();
        for entry in self.names()? {
            let s = entry.to_string_lossy();
            let Some(pid) = s
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".tmp"))
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let ours = u32::try_from(pid).is_ok_and(|p| p == std::process::id());
            let dead = ours
                || pid <= 0
                || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    == Err(Errno::ESRCH);
            if !dead || !matches!(self.kind(&entry)?, Some((Kind::File, _))) {
                continue;
            }
            match self.unlink(&entry) {
                Ok(()) | Err(Errno::ENOENT) => removed.push(self.join(&entry)),
                Err(e) => return Err(err("removing", self.join(&entry), e)),
            }
        }
        Ok(removed)
    }
}

/// Sets the final mode on the descriptor (the umask cannot narrow it), writes and
/// syncs.
fn fill(mut f: File, body: &[u8], mode: u32, path: &Path) -> Result<File, DataError> {
    use std::os::unix::fs::PermissionsExt;
    let wrap = |action: &'static str| {
        move |source: io::Error| -> DataError {
            PathError {
                action,
                path: path.to_path_buf(),
                source,
            }
            .into()
        }
    };
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(wrap("setting the mode of"))?;
    f.write_all(body).map_err(wrap("writing"))?;
    f.sync_all().map_err(wrap("syncing"))?;
    Ok(f)
}
