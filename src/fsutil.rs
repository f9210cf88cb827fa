//! File writes devbox can stand behind: atomic (temp file in the same directory, fsync,
//! rename, fsync the directory), created with their final mode, and every error naming
//! its path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An I/O error with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct PathError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// `.wrap(action, path)` on any I/O result.
pub trait WrapPath<T> {
    fn wrap(self, action: &'static str, path: &Path) -> Result<T, PathError>;
}

impl<T> WrapPath<T> for io::Result<T> {
    fn wrap(self, action: &'static str, path: &Path) -> Result<T, PathError> {
        self.map_err(|source| PathError {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Opens `path` for appending, made with `mode` (its parent directories too) when
/// missing. For logs outside `.data`; inside it, `data::open_append` walks held
/// directories instead.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let named = |e: io::Error, p: &Path| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| named(e, dir))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
        .map_err(|e| named(e, path))
}

/// Replaces `path` atomically with `data`, created with `mode` (not chmod-ed after).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PathError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.devbox-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .wrap("creating", &tmp)?;
        f.write_all(data).wrap("writing", &tmp)?;
        f.sync_all().wrap("syncing", &tmp)?;
        fs::rename(&tmp, path).wrap("renaming into place", path)?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .wrap("syncing directory", dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a file that must not exist yet (never overwrites), atomically.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), PathError> {
    if path.symlink_metadata().is_ok() {
        return Err(PathError {
            action: "refusing to overwrite",
            path: path.to_path_buf(),
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        });
    }
    write_atomic(path, data, mode)
}
