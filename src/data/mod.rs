//! The host-visible data tree (`.data/` by default): directories with their modes,
//! files and secrets made once, and a wipe that cannot be tricked into leaving the
//! project.
//!
//! Every operation works on directory descriptors opened from the project directory
//! down, one name at a time, never through a symlink ([`Dir`]): checking a path and then
//! acting on it by path again would follow a symlink swapped in between (a container
//! can write the `.data` directories it mounts).
//!
//! Secrets are created with their final mode before they get a name: an unnamed file
//! (`O_TMPFILE`, 0600, then its mode set on the open descriptor) is filled, synced and
//! linked into place, which fails rather than replaces when the name exists. So a secret
//! is never overwritten, never visible with another mode, and never half-written, and a
//! devbox killed meanwhile leaves nothing behind. Never touches containers.

mod tree;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;

use crate::config::model::{Data, FileContent, SecretEncoding};
use crate::fsutil::{PathError, WrapPath};
pub use tree::{Dir, Kind};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{} is a symlink; devbox never follows symlinks in the data tree", .0.display())]
    Symlink(PathBuf),
    #[error("{} is a symlink that leads outside the project ({})", .link.display(), .target.display())]
    SymlinkOutside { link: PathBuf, target: PathBuf },
    #[error("{} exists but is not a {expected}", .path.display())]
    WrongType {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("cannot remove what is in {}: {source}", .path.display())]
    NotRemovable { path: PathBuf, source: io::Error },
    #[error("cannot generate a secret for {}: {source}", .path.display())]
    Random {
        path: PathBuf,
        source: getrandom::Error,
    },
}

/// What [`ensure`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
    /// Existing entries whose mode differs from the declared one: (path, declared, actual).
    /// devbox reports them and leaves the user's data as it is.
    pub mode_differs: Vec<(PathBuf, u32, u32)>,
    /// Temporary files a killed devbox left while creating a file, removed.
    pub leftovers: Vec<PathBuf>,
}

/// The names of a relative path, `.` left out (configuration allows nothing else).
fn names(rel: impl AsRef<Path>) -> Vec<OsString> {
    rel.as_ref()
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            _ => None,
        })
        .collect()
}

/// The names from `project` to `root`, when `root` is below it.
fn steps_from(project: &Path, root: &Path) -> Option<Vec<OsString>> {
    let rel = root.strip_prefix(project).ok()?;
    let steps: Vec<OsString> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!steps.is_empty()).then_some(steps)
}

/// The project directory (the one path devbox opens as given) and the names from it to
/// the data root, from the root as written in the file.
fn locate(data: &Data) -> (PathBuf, Vec<OsString>) {
    let mut steps: Vec<OsString> = Vec::new();
    for c in Path::new(&data.root_rel).components() {
        match c {
            Component::Normal(s) => steps.push(s.to_os_string()),
            Component::ParentDir => {
                steps.pop();
            }
            _ => {}
        }
    }
    let mut project = data.root.clone();
    for _ in &steps {
        project.pop();
    }
    match steps_from(&project, &data.root) {
        Some(s) if s == steps => (project, steps),
        // Not made by the configuration: the root's own directory is the anchor.
        _ => {
            let parent = data.root.parent().unwrap_or(Path::new("/")).to_path_buf();
            let last = data.root.file_name().map(OsStr::to_os_string);
            (parent, last.into_iter().collect())
        }
    }
}

/// Opens the data root, walking from the project directory without following a
/// symlink. `None` when some directory on the way does not exist (nothing is made).
/// Returns the root's parent too.
fn open_root(data: &Data, project: &Path) -> Result<Option<(Dir, Dir)>, DataError> {
    let (project, steps) = match steps_from(project, &data.root) {
        Some(steps) => (project.to_path_buf(), steps),
        None => locate(data),
    };
    let Some((last, between)) = steps.split_last() else {
        return Ok(None);
    };
    let mut parent = Dir::anchor(&project)?;
    for s in between {
        match parent.open(s)? {
            Some(d) => parent = d,
            None => return Ok(None),
        }
    }
    Ok(parent.open(last)?.map(|root| (parent, root)))
}

/// Opens the directory `rel` (relative to the data root, empty for the root itself)
/// without following a symlink anywhere from the project directory down. `None` when
/// it does not exist.
pub fn open_dir(data: &Data, rel: &Path) -> Result<Option<Dir>, DataError> {
    let (project, _) = locate(data);
    let Some((_, mut cur)) = open_root(data, &project)? else {
        return Ok(None);
    };
    for n in names(rel) {
        match cur.open(&n)? {
            Some(d) => cur = d,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// Opens `rel/name` under the data root for appending (made with `mode`; the directories
/// on the way made 0755 when missing), walking from the project directory without
/// following a symlink: a log devbox keeps in `.data` cannot be redirected out of it.
pub fn open_append(data: &Data, rel: &Path, name: &str, mode: u32) -> Result<File, DataError> {
    let (project, _) = locate(data);
    let Some((_, mut cur)) = open_root(data, &project)? else {
        return Err(DataError::WrongType {
            path: data.root.clone(),
            expected: "directory (run `devbox up` or `devbox run` to make the data tree)",
        });
    };
    for n in names(rel) {
        cur = match cur.open(&n)? {
            Some(d) => d,
            None => {
                cur.mkdir(&n, 0o755)?;
                cur.open(&n)?.ok_or_else(|| DataError::WrongType {
                    path: cur.join(&n),
                    expected: "directory",
                })?
            }
        };
    }
    cur.open_append(OsStr::new(name), mode)
}

/// Creates the declared layout. Existing entries are kept as they are. Every step is
/// taken relative to a directory devbox holds open, from the project directory down,
/// and a symlink anywhere on the way is refused, so a tree changed while this runs
/// cannot make devbox create, chmod or write anything elsewhere.
pub fn ensure(data: &Data) -> Result<Report, DataError> {
    let mut report = Report::default();
    let (project, steps) = locate(data);
    let mut root = Dir::anchor(&project)?;
    for (i, s) in steps.iter().enumerate() {
        // Only the root itself is reported; the directories above it are the project's.
        root = ensure_dir(&root, s, 0o755, i + 1 == steps.len(), &mut report)?;
    }
    // Undeclared parents get 0755; declared directories their own mode.
    let declared: BTreeMap<Vec<OsString>, u32> =
        data.dirs.iter().map(|d| (names(&d.path), d.mode)).collect();
    for d in &data.dirs {
        descend(&root, &names(&d.path), &declared, &mut report)?;
    }
    for f in &data.files {
        let parts = names(&f.path);
        let Some((name, dirs)) = parts.split_last() else {
            continue;
        };
        let sub = descend(&root, dirs, &declared, &mut report)?;
        let dir = sub.as_ref().unwrap_or(&root);
        let path = dir.join(name);
        report.leftovers.extend(dir.remove_leftovers(name)?);
        match dir.kind(name)? {
            Some((Kind::Symlink, _)) => return Err(DataError::Symlink(path)),
            Some((Kind::File, st)) => {
                note_mode(&path, f.mode, st.st_mode & 0o7777, &mut report);
                report.kept.push(path);
            }
            Some(_) => {
                return Err(DataError::WrongType {
                    path,
                    expected: "file",
                })
            }
            None => {
                let body = match &f.content {
                    FileContent::Empty => Vec::new(),
                    FileContent::Literal { text } => text.clone().into_bytes(),
                    FileContent::Secret { encoding, bytes } => secret(&path, *encoding, *bytes)?,
                };
                if dir.create_once(name, &body, f.mode)? {
                    report.created.push(path);
                } else {
                    report.kept.push(path);
                }
            }
        }
    }
    Ok(report)
}

/// Opens (making what is missing) the directories `parts` below `root`; `None` for no
/// parts (the root itself).
fn descend(
    root: &Dir,
    parts: &[OsString],
    declared: &BTreeMap<Vec<OsString>, u32>,
    report: &mut Report,
) -> Result<Option<Dir>, DataError> {
    let mut cur: Option<Dir> = None;
    for i in 0..parts.len() {
        let mode = declared.get(&parts[..=i]).copied().unwrap_or(0o755);
        let here = cur.as_ref().unwrap_or(root);
        cur = Some(ensure_dir(here, &parts[i], mode, true, report)?);
    }
    Ok(cur)
}

fn secret(path: &Path, encoding: SecretEncoding, n: usize) -> Result<Vec<u8>, DataError> {
    let mut raw = vec![0u8; n];
    getrandom::fill(&mut raw).map_err(|source| DataError::Random {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match encoding {
        SecretEncoding::Hex => hex::encode(raw).into_bytes(),
        SecretEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .encode(raw)
            .into_bytes(),
    })
}

fn note_mode(path: &Path, want: u32, have: u32, report: &mut Report) {
    if want != have {
        report.mode_differs.push((path.to_path_buf(), want, have));
    }
}

/// Opens the directory `name` in `parent`, making it with `mode` when missing.
fn ensure_dir(
    parent: &Dir,
    name: &OsStr,
    mode: u32,
    report_it: bool,
    report: &mut Report,
) -> Result<Dir, DataError> {
    let path = parent.join(name);
    if let Some(d) = parent.open(name)? {
        let seen = report.kept.contains(&path) || report.created.contains(&path);
        if report_it && !seen {
            note_mode(&path, mode, d.stat()?.st_mode & 0o7777, report);
            report.kept.push(path);
        }
        return Ok(d);
    }
    // Someone else may make it in between: theirs stands.
    let made = parent.mkdir(name, mode)?;
    let d = parent.open(name)?.ok_or_else(|| PathError {
        action: "creating",
        path: path.clone(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })?;
    if made {
        // The umask may have narrowed the mode of the empty directory just made.
        d.chmod(mode)?;
        if report_it {
            report.created.push(path);
        }
    }
    Ok(d)
}

/// What [`wipe`] would remove: the data root and everything in it, deepest first.
/// Refuses a data root that is a symlink (or reached through one), any symlink inside
/// that leads out of `project`, and a tree with a directory devbox could not remove
/// entries from (read-only, not writable), so that a wipe does not stop half-way.
pub fn wipe_list(data: &Data, project: &Path) -> Result<Vec<PathBuf>, DataError> {
    let Some((parent, root)) = open_root(data, project)? else {
        return Ok(Vec::new());
    };
    let canon = project.canonicalize().wrap("resolving", project)?;
    let mut out = Vec::new();
    list(&root, &canon, &mut out)?;
    parent.writable().map_err(|e| DataError::NotRemovable {
        path: parent.path().to_path_buf(),
        source: e.into(),
    })?;
    out.push(root.path().to_path_buf());
    Ok(out)
}

fn list(dir: &Dir, project: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    dir.writable().map_err(|e| DataError::NotRemovable {
        path: dir.path().to_path_buf(),
        source: e.into(),
    })?;
    for name in dir.names()? {
        let p = dir.join(&name);
        match dir.kind(&name)? {
            None => continue,
            Some((Kind::Symlink, _)) => {
                let target = dir.read_link(&name)?;
                let resolved = lexical(&dir.path().join(&target));
                if !resolved.starts_with(project) {
                    return Err(DataError::SymlinkOutside { link: p, target });
                }
            }
            Some((Kind::Dir, _)) => {
                if let Some(sub) = dir.open(&name)? {
                    list(&sub, project, out)?;
                }
            }
            Some(_) => {}
        }
        out.push(p);
    }
    Ok(())
}

fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A wipe that stopped: why, what it had removed, and what is still there.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct WipeError {
    pub error: DataError,
    pub removed: Vec<PathBuf>,
    /// What [`wipe_list`] listed and was not removed.
    pub left: Vec<PathBuf>,
}

/// Removes the data tree after [`wipe_list`] checked it. Works on directory
/// descriptors as `remove_dir_all` does: each directory is opened (never through a
/// symlink) and emptied by name relative to that descriptor, symlinks are removed,
/// never followed. Returns what was removed.
pub fn wipe(data: &Data, project: &Path) -> Result<Vec<PathBuf>, WipeError> {
    let stopped = |error, removed: Vec<PathBuf>, listed: &[PathBuf]| WipeError {
        left: listed
            .iter()
            .filter(|p| !removed.contains(p))
            .cloned()
            .collect(),
        error,
        removed,
    };
    let listed = wipe_list(data, project).map_err(|e| stopped(e, Vec::new(), &[]))?;
    let mut removed = Vec::new();
    let result = (|| {
        let Some((parent, root)) = open_root(data, project)? else {
            return Ok(());
        };
        for n in root.names()? {
            remove(&root, &n, &mut removed)?;
        }
        let path = root.path().to_path_buf();
        drop(root);
        let name = path.file_name().unwrap_or_default();
        parent.rmdir(name).wrap_errno("removing", &path)?;
        removed.push(path);
        Ok(())
    })();
    match result {
        Ok(()) => Ok(removed),
        Err(e) => Err(stopped(e, removed, &listed)),
    }
}

fn remove(parent: &Dir, name: &OsStr, removed: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let path = parent.join(name);
    match parent.open(name) {
        Ok(Some(dir)) => {
            for n in dir.names()? {
                remove(&dir, &n, removed)?;
            }
            drop(dir);
            parent.rmdir(name).wrap_errno("removing", &path)?;
        }
        Ok(None) => return Ok(()),
        Err(DataError::Symlink(_) | DataError::WrongType { .. }) => {
            parent.unlink(name).wrap_errno("removing", &path)?;
        }
        Err(e) => return Err(e),
    }
    removed.push(path);
    Ok(())
}

trait WrapErrno {
    /// A name already gone counts as removed.
    fn wrap_errno(self, action: &'static str, path: &Path) -> Result<(), DataError>;
}

impl WrapErrno for Result<(), nix::errno::Errno> {
    fn wrap_errno(self, action: &'static str, path: &Path) -> Result<(), DataError> {
        match self {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(PathError {
                action,
                path: path.to_path_buf(),
                source: e.into(),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{DataDir, DataFile};
    use std::fs::{self, Permissions};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn layout(root: &Path) -> Data {
        Data {
            root: root.to_path_buf(),
            root_rel: ".data".into(),
            dirs: vec![
                DataDir {
                    path: "database".into(),
                    mode: 0o755,
                },
                DataDir {
                    path: "auth".into(),
                    mode: 0o700,
                },
                DataDir {
                    path: "cache/deep".into(),
                    mode: 0o750,
                },
            ],
            files: vec![
                DataFile {
                    path: "auth/credential".into(),
                    mode: 0o600,
                    content: FileContent::Secret {
                        encoding: SecretEncoding::Hex,
                        bytes: 32,
                    },
                },
                DataFile {
                    path: "auth/token".into(),
                    mode: 0o400,
                    content: FileContent::Secret {
                        encoding: SecretEncoding::Base64,
                        bytes: 24,
                    },
                },
                DataFile {
                    path: "config/app.json".into(),
                    mode: 0o644,
                    content: FileContent::Literal {
                        text: "{}\n".into(),
                    },
                },
            ],
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_the_layout_with_exact_modes_and_secrets_once() {
        let tmp = tempfile::tempdir().unwrap();
        let data = layout(&tmp.path().join(".data"));
        let first = ensure(&data).unwrap();
        assert_eq!(first.created.len(), 9, "{first:?}");
        assert_eq!(mode(&data.root.join("auth")), 0o700);
        assert_eq!(mode(&data.root.join("cache/deep")), 0o750);
        assert_eq!(mode(&data.root.join("auth/credential")), 0o600);
        assert_eq!(mode(&data.root.join("auth/token")), 0o400);
        let cred = fs::read_to_string(data.root.join("auth/credential")).unwrap();
        assert_eq!(cred.len(), 64);
        assert!(cred.chars().all(|c| c.is_ascii_hexdigit()));
        let token = fs::read_to_string(data.root.join("auth/token")).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&token)
                .unwrap()
                .len(),
            24
        );
        assert_eq!(
            fs::read_to_string(data.root.join("config/app.json")).unwrap(),
            "{}\n"
        );

        // Second run: nothing created, the secret is the same bytes.
        let second = ensure(&data).unwrap();
        assert!(second.created.is_empty(), "{second:?}");
        assert_eq!(
            fs::read_to_string(data.root.join("auth/credential")).unwrap(),
            cred
        );
        // No temporary files left behind.
        let leftovers: Vec<_> = fs::read_dir(data.root.join("auth"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn existing_user_data_is_kept_and_a_mode_difference_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let data = layout(&tmp.path().join(".data"));
        fs::create_dir_all(data.root.join("auth")).unwrap();
        fs::set_permissions(data.root.join("auth"), Permissions::from_mode(0o755)).unwrap();
        fs::write(data.root.join("auth/credential"), "mine").unwrap();
        let r = ensure(&data).unwrap();
        assert_eq!(
            fs::read_to_string(data.root.join("auth/credential")).unwrap(),
            "mine"
        );
        assert!(
            r.mode_differs
                .contains(&(data.root.join("auth"), 0o700, 0o755)),
            "{r:?}"
        );
        assert_eq!(
            mode(&data.root.join("auth")),
            0o755,
            "devbox does not chmod existing data"
        );
    }

    // Modes must not depend on the user's umask: run this check again in a child
    // process started under `umask 077`.
    #[test]
    fn modes_do_not_depend_on_the_umask() {
        if std::env::var_os("DEVBOX_UMASK_CHILD").is_some() {
            let tmp = tempfile::tempdir().unwrap();
            let data = layout(&tmp.path().join(".data"));
            ensure(&data).unwrap();
            assert_eq!(mode(&data.root.join("database")), 0o755);
            assert_eq!(mode(&data.root.join("config/app.json")), 0o644);
            assert_eq!(mode(&data.root.join("auth/credential")), 0o600);
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = crate::process::command("sh")
            .args(["-c", "umask 077 && exec \"$0\" --exact data::tests::modes_do_not_depend_on_the_umask --test-threads 1"])
            .arg(exe)
            .env("DEVBOX_UMASK_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_symlinked_root_is_refused_by_ensure_and_wipe() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join("precious"), "x").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), tmp.path().join(".data")).unwrap();
        let data = layout(&tmp.path().join(".data"));
        assert!(matches!(ensure(&data), Err(DataError::Symlink(_))));
        assert!(matches!(
            wipe(&data, tmp.path()).map_err(|e| e.error),
            Err(DataError::Symlink(_))
        ));
        assert!(elsewhere.path().join("precious").exists());
    }

    #[test]
    fn wipe_refuses_a_symlink_leading_outside_and_removes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let data = layout(&tmp.path().join(".data"));
        ensure(&data).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), data.root.join("cache/out")).unwrap();
        let err = wipe(&data, tmp.path()).unwrap_err();
        assert!(
            matches!(err.error, DataError::SymlinkOutside { .. }),
            "{err}"
        );
        assert!(err.removed.is_empty(), "{err:?}");
        assert!(
            data.root.join("auth/credential").exists(),
            "nothing removed"
        );
    }

    #[test]
    fn wipe_removes_links_inside_without_following_them() {
        let tmp = tempfile::tempdir().unwrap();
        let data = layout(&tmp.path().join(".data"));
        ensure(&data).unwrap();
        fs::create_dir(tmp.path().join("src")).unwrap();
        fs::write(tmp.path().join("src/main.c"), "int main;").unwrap();
        std::os::unix::fs::symlink("../../src", data.root.join("cache/src")).unwrap();
        let removed = wipe(&data, tmp.path()).unwrap();
        assert_eq!(removed.last(), Some(&data.root));
        assert!(!data.root.exists());
        assert_eq!(
            fs::read_to_string(tmp.path().join("src/main.c")).unwrap(),
            "int main;"
        );
        // Listing an absent tree is empty, not an error.
        assert!(wipe_list(&data, tmp.path()).unwrap().is_empty());
    }

    #[test]
    fn create_once_never_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        let dir = Dir::anchor(tmp.path()).unwrap();
        assert!(dir.create_once(OsStr::new("f"), b"one", 0o600).unwrap());
        assert!(!dir.create_once(OsStr::new("f"), b"two", 0o644).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode(&p), 0o600);
    }

    /// Swaps `a` and `b` (RENAME_EXCHANGE) until `stop`.
    fn swapper(
        a: PathBuf,
        b: PathBuf,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<u64> {
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let flags = nix::fcntl::RenameFlags::RENAME_EXCHANGE;
                let at = nix::fcntl::AT_FDCWD;
                if nix::fcntl::renameat2(at, &a, at, &b, flags).is_ok() {
                    n += 1;
                }
            }
            n
        })
    }

    fn tree(root: &Path) -> Vec<(PathBuf, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(p) = todo.pop() {
            let m = fs::symlink_metadata(&p).unwrap();
            let body = if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.push((p.clone(), m.mode(), m.uid(), body));
            if m.is_dir() {
                todo.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        }
        out.sort();
        out
    }

    /// Many ensures and wipes while a data directory is swapped with a symlink to a
    /// directory outside the project: nothing outside changes.
    #[test]
    fn a_swapped_directory_never_leads_ensure_or_wipe_outside() {
        let project = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        for n in ["credential", "token", "f0", "f1"] {
            fs::write(outside.path().join(n), "precious").unwrap();
        }
        fs::remove_file(outside.path().join("credential")).unwrap();
        let before = tree(outside.path());
        let data = layout(&project.path().join(".data"));
        let link = project.path().join("swap");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let auth = data.root.join("auth");
        let (mut ok, mut swaps) = (0, 0);
        for _ in 0..100 {
            let _ = fs::remove_dir_all(&data.root);
            fs::create_dir_all(&auth).unwrap();
            fs::write(auth.join("f0"), "junk").unwrap();
            fs::write(auth.join("f1"), "junk").unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let t = swapper(auth.clone(), link.clone(), stop.clone());
            ok += usize::from(ensure(&data).is_ok());
            ok += usize::from(wipe(&data, project.path()).is_ok());
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            swaps += t.join().unwrap();
            if link.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                let _ = fs::remove_file(&auth);
                fs::remove_dir_all(&link).unwrap();
                std::os::unix::fs::symlink(outside.path(), &link).unwrap();
            }
            assert_eq!(tree(outside.path()), before, "after {ok} that worked");
        }
        assert!(swaps > 100, "{swaps} swaps");
    }
}
