//! The host-visible data tree (`.data/` by default): directories with their modes,
//! files and secrets made once, and a wipe that cannot be tricked into leaving the
//! project.
//!
//! Secrets are created with their final mode before they get a name: a temporary file
//! (0600, then its mode set on the open descriptor) is filled, synced and hard-linked
//! into place, which fails rather than replaces when the name exists. So a secret is
//! never overwritten, never visible with another mode, and never half-written.
//! Never touches containers.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;

use crate::config::model::{Data, FileContent, SecretEncoding};
use crate::fsutil::{PathError, WrapPath};

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
}

/// Creates the declared layout. Existing entries are kept as they are.
pub fn ensure(data: &Data) -> Result<Report, DataError> {
    let mut report = Report::default();
    ensure_dir(&data.root, 0o755, &mut report)?;
    // Undeclared parents get 0755; declared directories their own mode.
    let declared: std::collections::BTreeMap<PathBuf, u32> = data
        .dirs
        .iter()
        .map(|d| (data.root.join(&d.path), d.mode))
        .collect();
    let parents = |path: &Path, report: &mut Report| -> Result<(), DataError> {
        for parent in parents_within(&data.root, path) {
            let mode = declared.get(&parent).copied().unwrap_or(0o755);
            ensure_dir(&parent, mode, report)?;
        }
        Ok(())
    };
    for d in &data.dirs {
        let path = data.root.join(&d.path);
        parents(&path, &mut report)?;
        ensure_dir(&path, d.mode, &mut report)?;
    }
    for f in &data.files {
        let path = data.root.join(&f.path);
        parents(&path, &mut report)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(DataError::Symlink(path)),
            Ok(m) if !m.is_file() => {
                return Err(DataError::WrongType {
                    path,
                    expected: "file",
                })
            }
            Ok(m) => {
                note_mode(&path, f.mode, m.permissions().mode() & 0o7777, &mut report);
                report.kept.push(path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let body = match &f.content {
                    FileContent::Empty => Vec::new(),
                    FileContent::Literal { text } => text.clone().into_bytes(),
                    FileContent::Secret { encoding, bytes } => secret(&path, *encoding, *bytes)?,
                };
                if create_once(&path, &body, f.mode)? {
                    report.created.push(path);
                } else {
                    report.kept.push(path);
                }
            }
            Err(e) => {
                return Err(PathError {
                    action: "inspecting",
                    path,
                    source: e,
                }
                .into())
            }
        }
    }
    Ok(report)
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

/// The directories between `root` (exclusive) and `path` (exclusive), outermost first.
fn parents_within(root: &Path, path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = path.parent();
    while let Some(p) = cur {
        if p == root || !p.starts_with(root) {
            break;
        }
        out.push(p.to_path_buf());
        cur = p.parent();
    }
    out.reverse();
    out
}

fn note_mode(path: &Path, want: u32, have: u32, report: &mut Report) {
    if want != have {
        report.mode_differs.push((path.to_path_buf(), want, have));
    }
}

fn ensure_dir(path: &Path, mode: u32, report: &mut Report) -> Result<(), DataError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(DataError::Symlink(path.to_path_buf())),
        Ok(m) if !m.is_dir() => Err(DataError::WrongType {
            path: path.to_path_buf(),
            expected: "directory",
        }),
        Ok(m) => {
            if !report.kept.iter().any(|k| k == path) {
                note_mode(path, mode, m.permissions().mode() & 0o7777, report);
                report.kept.push(path.to_path_buf());
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match DirBuilder::new().mode(mode).create(path) {
                Ok(()) => {}
                // Someone else made it in between: theirs stands.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => {
                    return Err(PathError {
                        action: "creating",
                        path: path.to_path_buf(),
                        source: e,
                    }
                    .into())
                }
            }
            // The umask may have narrowed the mode of the empty directory just made.
            fs::set_permissions(path, Permissions::from_mode(mode))
                .wrap("setting the mode of", path)?;
            report.created.push(path.to_path_buf());
            Ok(())
        }
        Err(e) => Err(PathError {
            action: "inspecting",
            path: path.to_path_buf(),
            source: e,
        }
        .into()),
    }
}

/// Creates `path` with `body` and `mode` unless it exists. Returns whether it created it.
pub fn create_once(path: &Path, body: &[u8], mode: u32) -> Result<bool, DataError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.devbox-{}.tmp", std::process::id()));
    let result = (|| -> Result<bool, DataError> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(o_nofollow())
            .open(&tmp)
            .wrap("creating", &tmp)?;
        // On the descriptor, before the file has its name: the umask cannot narrow it.
        f.set_permissions(Permissions::from_mode(mode))
            .wrap("setting the mode of", &tmp)?;
        f.write_all(body).wrap("writing", &tmp)?;
        f.sync_all().wrap("syncing", &tmp)?;
        let created = match fs::hard_link(&tmp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                return Err(PathError {
                    action: "linking into place",
                    path: path.to_path_buf(),
                    source: e,
                }
                .into())
            }
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .wrap("syncing directory", dir)?;
        Ok(created)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

fn o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// What [`wipe`] would remove: the data root and everything in it, deepest first.
/// Refuses a data root that is a symlink, and any symlink inside that leads out of
/// `project`.
pub fn wipe_list(data: &Data, project: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    match fs::symlink_metadata(&data.root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(PathError {
                action: "inspecting",
                path: data.root.clone(),
                source: e,
            }
            .into())
        }
        Ok(m) if m.file_type().is_symlink() => return Err(DataError::Symlink(data.root.clone())),
        Ok(m) if !m.is_dir() => {
            return Err(DataError::WrongType {
                path: data.root.clone(),
                expected: "directory",
            })
        }
        Ok(_) => {}
    }
    let project = project.canonicalize().wrap("resolving", project)?;
    walk(&data.root, &project, &mut out)?;
    out.push(data.root.clone());
    Ok(out)
}

fn walk(dir: &Path, project: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .wrap("reading", dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .wrap("reading", dir)?;
    entries.sort();
    for p in entries {
        let m = fs::symlink_metadata(&p).wrap("inspecting", &p)?;
        if m.file_type().is_symlink() {
            let target = fs::read_link(&p).wrap("reading link", &p)?;
            let resolved = lexical(&p.parent().unwrap_or(dir).join(&target));
            if !resolved.starts_with(project) {
                return Err(DataError::SymlinkOutside { link: p, target });
            }
        } else if m.is_dir() {
            walk(&p, project, out)?;
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

/// Removes the data tree after [`wipe_list`] checked it. Symlinks are removed, never
/// followed. Returns what was removed.
pub fn wipe(data: &Data, project: &Path) -> Result<Vec<PathBuf>, DataError> {
    let list = wipe_list(data, project)?;
    for p in &list {
        let m = fs::symlink_metadata(p).wrap("inspecting", p)?;
        if m.is_dir() && !m.file_type().is_symlink() {
            fs::remove_dir(p).wrap("removing", p)?;
        } else {
            fs::remove_file(p).wrap("removing", p)?;
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{DataDir, DataFile};
    use std::os::unix::fs::MetadataExt;

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
            wipe(&data, tmp.path()),
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
        assert!(matches!(err, DataError::SymlinkOutside { .. }), "{err}");
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
        assert!(create_once(&p, b"one", 0o600).unwrap());
        assert!(!create_once(&p, b"two", 0o644).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode(&p), 0o600);
    }
}
