//! A small builder over the built `devbox` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_devbox");

/// The repository root (for `examples/`, `schema/`, `tests/fixtures/`).
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The reference project (`tests/fixtures/reference`): every key in it is part of devbox's
/// contract, so it is kept byte for byte as it was given.
pub(crate) fn reference_dir() -> PathBuf {
    repo().join("tests/fixtures/reference")
}

#[derive(Debug)]
pub(crate) struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) struct Devbox {
    cmd: Command,
}

impl Devbox {
    /// `devbox ARGS` run in `dir`, with no DEVBOX_* variables from the outside.
    pub(crate) fn new(dir: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("DEVBOX_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1");
        Self { cmd }
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub(crate) fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub(crate) fn run(mut self) -> Output {
        let out = self.cmd.output().expect("devbox runs");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A temporary project directory with files.
pub(crate) struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("devbox-test-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// A project holding the reference Containerfile and scripts plus `toml` as sandbox.toml.
    pub(crate) fn with_toml(toml: &str) -> Self {
        let p = Self::new();
        for f in ["Containerfile", "server.sh", "client.sh"] {
            std::fs::copy(reference_dir().join(f), p.path().join(f)).expect("copy reference file");
        }
        p.write("sandbox.toml", toml);
        p
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn write(&self, rel: &str, body: &str) -> &Self {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, body).unwrap();
        self
    }

    pub(crate) fn devbox(&self) -> Devbox {
        Devbox::new(self.path())
    }
}

/// Whether a missing engine, tool or test variable fails the test instead of skipping it
/// (`DEVBOX_REQUIRE_ENGINES=1`, as `.ci/run` sets).
pub(crate) fn required() -> bool {
    std::env::var("DEVBOX_REQUIRE_ENGINES").as_deref() == Ok("1")
}

/// The test variable `var` when set and not empty; otherwise the test is skipped (reported
/// as ignored, with the reason), or fails when [`required`]. `hint` says how to get it.
/// Returns an `Option` so callers read as before; it is never `None`.
pub(crate) fn test_var(var: &str, hint: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                !required(),
                "{var} is required (DEVBOX_REQUIRE_ENGINES=1); {hint}"
            );
            crate::harness::skip(format!("{var} is not set; {hint}"))
        }
    }
}

/// Whether the outside tool `tool` is installed; when it is not, the test is skipped (or
/// fails, with DEVBOX_REQUIRE_ENGINES=1). Never returns `false`.
pub(crate) fn require(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !required(),
            "{tool} is required (DEVBOX_REQUIRE_ENGINES=1) but not installed"
        );
        crate::harness::skip(format!("{tool} is not installed"));
    }
    found
}
