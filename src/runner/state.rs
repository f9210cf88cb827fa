//! A sandbox's lifecycle by id, as small records in a state directory: one
//! `ID.json` per sandbox, written atomically, so that whoever starts sandboxes
//! (the native engine's supervisor, `devbox run`, an OCI runtime) and whoever asks about
//! them later (a devbox that finds the supervisor gone, `devbox run --list`) read the same
//! thing. This module only stores records and says where devbox's runtime directory is;
//! it never starts or signals anything (see [`super::lifecycle`] for runs).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::fsutil::{PathError, WrapPath};

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being made: the record exists, the sandbox not yet.
    Creating,
    /// Made, never started (or started and removed from its process since).
    Created,
    Running,
    Stopped,
}

impl State {
    /// OCI's word: `creating`, `created`, `running`, `stopped`.
    pub fn word(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Created => "created",
            State::Running => "running",
            State::Stopped => "stopped",
        }
    }

    /// The word engines use: `created`, `running`, `exited`.
    pub fn engine_word(self) -> &'static str {
        match self {
            State::Creating | State::Created => "created",
            State::Running => "running",
            State::Stopped => "exited",
        }
    }
}

/// The lifecycle part of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// The process that holds the sandbox, as this host numbers it, while it runs: the
    /// native engine's sandbox init, a run's supervisor.
    pub pid: Option<u32>,
    /// When it last started (RFC 3339).
    pub started: Option<String>,
    pub state: State,
    pub exit_code: Option<i32>,
}

impl Record {
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            pid: None,
            started: None,
            state: State::Creating,
            exit_code: None,
        }
    }
}

/// devbox's runtime directory (what lives only as long as its processes): the user's
/// runtime directory's `devbox`, else `$XDG_RUNTIME_DIR/devbox`, else `/run/devbox` for
/// root, else `/tmp/devbox-UID`.
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = directories::ProjectDirs::from("", "", "devbox")
        .and_then(|d| d.runtime_dir().map(Path::to_path_buf))
    {
        return d;
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("devbox");
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        PathBuf::from("/run/devbox")
    } else {
        std::env::temp_dir().join(format!("devbox-{uid}"))
    }
}

/// Makes `dir` and its missing parents with mode 0700.
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))
}

/// A directory of `ID.json` records of type `T` (which embeds a [`Record`]).
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// A fresh id: 64 hex digits, as container engines give.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    // The kernel's random source does not fail once the system is up; a zero id would
    // still be unique per directory through `create_new`.
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// Whether `id` can name a record file (no path tricks).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn save<T: Serialize>(&self, id: &str, record: &T) -> Result<(), PathError> {
        make_private(&self.dir).wrap("creating", &self.dir)?;
        let text = serde_json::to_vec_pretty(record).expect("records serialize");
        crate::fsutil::write_atomic(&self.path(id), &text, 0o600)
    }

    /// The record of `id`; `Ok(None)` when there is none.
    pub fn load<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, PathError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let path = self.path(id);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(std::io::Error::other)
                .wrap("reading", &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).wrap("reading", &path),
        }
    }

    /// Every record, skipping files that are not (a temporary file of a write).
    pub fn list<T: DeserializeOwned>(&self) -> Result<Vec<T>, PathError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).wrap("listing", &self.dir),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json").filter(|i| valid_id(i)) {
                if let Some(r) = self.load(id)? {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    pub fn remove(&self, id: &str) -> Result<(), PathError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).wrap("removing", &path),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_list_skips_strays() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::new(&d.path().join("containers"));
        let id = new_id();
        assert_eq!(id.len(), 64);
        let mut r = Record::new(&id, "p-web");
        r.state = State::Running;
        r.pid = Some(42);
        s.save(&id, &r).unwrap();
        std::fs::write(d.path().join("containers/.x.json.devbox-1.tmp"), "{").unwrap();
        assert_eq!(s.load::<Record>(&id).unwrap(), Some(r.clone()));
        assert_eq!(s.list::<Record>().unwrap(), vec![r]);
        assert_eq!(s.load::<Record>("../../etc/passwd").unwrap(), None);
        s.remove(&id).unwrap();
        s.remove(&id).unwrap();
        assert!(s.list::<Record>().unwrap().is_empty());
        assert_eq!(State::Stopped.engine_word(), "exited");
        for st in [
            State::Creating,
            State::Created,
            State::Running,
            State::Stopped,
        ] {
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.word())
            );
        }
    }
}
