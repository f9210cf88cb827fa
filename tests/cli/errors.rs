//! Bad input: every case under tests/fixtures/bad/ is a sandbox.toml that `devbox check`
//! must refuse with exactly the text in its expected.stderr, exit 2, touching nothing.
//! `DEVBOX_BLESS=1 cargo test --test cli errors` rewrites the expected files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::{repo, Devbox, Project};

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if m.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                stack.push(p);
            } else if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn copy_case(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "expected.stderr" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(to.join(&name)).unwrap();
            copy_case(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// Runs `devbox check` on a project and asserts it refused and changed nothing.
fn refuse(project: &Path) -> String {
    let before = snapshot(project);
    let out = Devbox::new(project).args(["check"]).run();
    assert_eq!(
        out.code,
        2,
        "{}: expected exit 2\nstdout: {}\nstderr: {}",
        project.display(),
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stdout, "");
    assert_eq!(
        snapshot(project),
        before,
        "{}: check changed the project directory",
        project.display()
    );
    out.stderr
}

#[test]
fn every_bad_fixture_is_refused_with_its_exact_message() {
    let root = repo().join("tests/fixtures/bad");
    let bless = std::env::var_os("DEVBOX_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 45, "only {} bad-input cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::Builder::new()
            .prefix("devbox-bad-")
            .tempdir()
            .unwrap();
        copy_case(case, tmp.path());
        if !tmp.path().join("Containerfile").exists() {
            std::fs::write(tmp.path().join("Containerfile"), "FROM scratch\n").unwrap();
        }
        let stderr = refuse(tmp.path());
        let expected_path = case.join("expected.stderr");
        if bless {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if stderr != expected {
            failures.push(format!(
                "── {name}\n── expected:\n{expected}\n── actual:\n{stderr}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ (DEVBOX_BLESS=1 to accept):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// Cases that cannot be committed as plain files: generated here.

#[test]
fn invalid_utf8_is_located() {
    let p = Project::new();
    std::fs::write(
        p.path().join("sandbox.toml"),
        b"[project]\nname = \"caf\xe9\"\n",
    )
    .unwrap();
    assert_eq!(
        refuse(p.path()),
        "error: invalid UTF-8 at byte 21\n --> sandbox.toml:2:12\n  |\n2 | name = \"caf\n  |            ^\n  = expected: a UTF-8 text file\n  = hint: re-save the file as UTF-8\n\nerror: sandbox.toml has 1 problem; nothing was changed\n"
    );
}

#[test]
fn a_ten_megabyte_file_is_refused_before_parsing() {
    let p = Project::new();
    let mut body = String::from("[project]\nname = \"big\"\n");
    while body.len() < 10 * 1024 * 1024 {
        body.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    p.write("sandbox.toml", &body);
    assert_eq!(
        refuse(p.path()),
        "error: sandbox.toml is 10.0 MiB; devbox reads at most 4 MiB\n  = hint: a sandbox.toml describes an environment; keep large data in files it references\n\nerror: sandbox.toml has 1 problem; nothing was changed\n"
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let p = Project::new();
    p.write(
        "sandbox.toml",
        &format!("x = {}{}\n", "[".repeat(10_000), "]".repeat(10_000)),
    );
    let err = refuse(p.path());
    assert!(err.starts_with("error: invalid TOML: "), "{err}");
    assert!(err.contains(" --> sandbox.toml:1:"), "{err}");
    assert!(
        err.contains("= hint: nest arrays and tables less deeply"),
        "{err}"
    );
}

#[test]
fn a_symlink_leading_out_of_the_project_is_refused() {
    let p = Project::with_toml("[data]\nroot = \"state\"\n[data.dirs]\nlogs = {}\n");
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path().join("state")).unwrap();
    let err = refuse(p.path());
    let expected = format!(
        "error: data root `state` goes through a symlink that leads outside the project: {}/state\n --> sandbox.toml:2:8\n  |\n2 | root = \"state\"\n  |        ^^^^^^^\n  = key: data.root\n  = expected: a path whose every component stays inside the project\n  = hint: replace the symlink with a real directory\n\n",
        p.path().display()
    );
    assert!(err.starts_with(&expected), "{err}");
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written through the link"
    );
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let p = Project::with_toml("[images.core]\n[services.a]\nimage = \"core\"\n");
    let before = snapshot(p.path());
    let out = p
        .devbox()
        .env("DEVBOX__SERVICES__A__PIDS_LIMIT", "0")
        .args(["check"])
        .run();
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: pids_limit = 0 is not a limit\n --> environment variable DEVBOX__SERVICES__A__PIDS_LIMIT\n  = key: services.a.pids_limit\n  = expected: a positive number of processes, or -1 for unlimited\n\nerror: sandbox.toml has 1 problem; nothing was changed\n"
    );
    assert_eq!(snapshot(p.path()), before);
}
