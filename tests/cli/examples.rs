//! Every example is a test: it validates, carries a working `#:schema` line, and the
//! committed schema accepts it (judged by check-jsonschema, an outside validator).

use std::path::PathBuf;
use std::process::Command;

use crate::util::{reference_dir, repo, require, Devbox};

const SETUPS: &[&str] = &[
    "connector-runner",
    "hardened",
    "local-dev",
    "multi-tenant",
    "quickstart",
    "supervisor-worker",
];

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("sandbox.toml").is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn there_is_an_example_per_setup() {
    let names: Vec<String> = examples()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, SETUPS);
    for e in examples() {
        assert!(
            e.join("README.md").is_file(),
            "{} has no README.md",
            e.display()
        );
    }
}

#[test]
fn every_example_validates() {
    for e in examples() {
        let out = Devbox::new(&e).args(["check"]).run();
        assert_eq!(out.code, 0, "{}: {}", e.display(), out.stderr);
        assert_eq!(out.stderr, "", "{}: warnings", e.display());
    }
}

#[test]
fn every_example_points_editors_at_the_schema() {
    for e in examples() {
        let text = std::fs::read_to_string(e.join("sandbox.toml")).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let target = first.strip_prefix("#:schema ").unwrap_or_else(|| {
            panic!(
                "{}: first line must be `#:schema PATH`, is {first:?}",
                e.display()
            )
        });
        assert!(
            e.join(target).is_file(),
            "{}: {target} does not exist",
            e.display()
        );
    }
}

#[test]
fn the_committed_schema_accepts_every_example_template_and_the_reference() {
    if !require("check-jsonschema") {
        return;
    }
    let mut files: Vec<PathBuf> = examples().iter().map(|e| e.join("sandbox.toml")).collect();
    files.push(reference_dir().join("sandbox.toml"));
    for t in ["basic", "hardened", "worker"] {
        files.push(repo().join("templates").join(t).join("sandbox.toml"));
    }
    let out = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(repo().join("schema/sandbox.schema.json"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it is a real judge: a typo in a key is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[services.x]\nimage = \"a/b\"\nportz = [\"1\"]\n").unwrap();
    let out = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(repo().join("schema/sandbox.schema.json"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("'portz' was unexpected"));
}
