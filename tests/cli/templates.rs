//! The templates `devbox init` writes, as a new user gets them: each one with services
//! carries probes and verifies on rootful Podman, rootless Podman and Docker, leaving
//! nothing behind; `basic` comes up writing `.data/logs` as the user its engine makes it
//! (the host user on rootless Podman), and its notes start on lines of their own.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::engine::{devbox, engine, engine_cli, engine_lock, ok, shell_line, Down, Engine};
use crate::util::{repo, Devbox};

/// The templates that have services, so `devbox verify` has something to prove. The
/// `worker` template has only a worker: `devbox run` runs it (tests/cli/runner.rs).
const WITH_SERVICES: &[&str] = &["basic", "hardened"];

fn templates() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `devbox check --json` of the template as `init` writes it.
fn checked(t: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let o = Devbox::new(dir.path())
        .args(["init", "--template", t, "p"])
        .run();
    assert_eq!(o.code, 0, "{t}: {}", o.stderr);
    let o = Devbox::new(&dir.path().join("p"))
        .args(["check", "--json"])
        .run();
    assert_eq!(o.code, 0, "{t}: {}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap()
}

#[test]
fn every_template_with_services_carries_probes() {
    let mut with_services = Vec::new();
    for t in templates() {
        let v = checked(&t);
        let services = v["services"].as_array().unwrap().len();
        if services == 0 {
            assert!(
                !v["workers"].as_array().unwrap().is_empty(),
                "{t} has neither services nor workers"
            );
            continue;
        }
        with_services.push(t.clone());
        assert!(
            v["probes"].as_u64().unwrap() >= services as u64,
            "{t}: {} probes for {services} services",
            v["probes"]
        );
    }
    // A new template with services is verified on the engines below too.
    assert_eq!(with_services, WITH_SERVICES);
}

// The templates' first line pointed editors at a schema URL that does not exist.
#[test]
fn no_template_points_at_a_url() {
    for t in templates() {
        let text = std::fs::read_to_string(repo().join("templates").join(&t).join("sandbox.toml"))
            .unwrap();
        for line in text.lines().filter(|l| l.trim_start().starts_with('#')) {
            assert!(!line.contains("://"), "{t}: {line}");
        }
        assert!(
            text.contains("`devbox schema`"),
            "{t}: says where the schema is"
        );
    }
}

/// A fresh directory the engine's user owns, with `devbox init --template T tpl-T` run in
/// it as that user. Returns the directory and the project in it.
fn init(e: &Engine, t: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("devbox-template-")
        .tempdir()
        .unwrap();
    if let Some(user) = &e.user {
        let u = nix::unistd::User::from_name(user).unwrap().unwrap();
        nix::unistd::chown(dir.path(), Some(u.uid), Some(u.gid)).unwrap();
    }
    let name = format!("tpl-{t}");
    ok(e, dir.path(), &["init", "--template", t, &name]);
    let project = dir.path().join(&name);
    if let Some(user) = &e.user {
        let uid = nix::unistd::User::from_name(user).unwrap().unwrap().uid;
        let owner = std::fs::metadata(project.join("sandbox.toml"))
            .unwrap()
            .uid();
        assert_eq!(owner, uid.as_raw(), "init ran as {user}");
    }
    (dir, project)
}

/// What `verify` says it runs on: the engine and its socket.
fn verifying_line(e: &Engine) -> String {
    let var = |k: &str| {
        e.env
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let unix = |v: String| v.strip_prefix("unix://").unwrap().to_owned();
    let (what, socket) = match e.name {
        "podman" => ("rootful Podman", unix(var("CONTAINER_HOST"))),
        "podman-rootless" => (
            "rootless Podman",
            format!("{}/podman/podman.sock", var("XDG_RUNTIME_DIR")),
        ),
        _ => ("Docker", unix(var("DOCKER_HOST"))),
    };
    format!("devbox: verifying on {what} ({socket})")
}

/// Names of the engine's containers and networks that start with `prefix`.
fn leftovers(e: &Engine, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for args in [
        &["ps", "-a", "--format", "{{.Names}}"][..],
        &["network", "ls", "--format", "{{.Name}}"][..],
    ] {
        let o = engine_cli(e, args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|n| n.starts_with(prefix))
                .map(str::to_owned),
        );
    }
    out
}

fn verify_templates(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let _lock = engine_lock();
    for t in WITH_SERVICES {
        let probes = checked(t)["probes"].as_u64().unwrap();
        let (_dir, project) = init(&e, t);
        let o = devbox(&e, &project, &["verify"]);
        assert_eq!(o.code, 0, "[{name}] {t}: {}{}", o.stdout, o.stderr);
        assert_eq!(
            o.stderr.lines().next(),
            Some(verifying_line(&e).as_str()),
            "[{name}] {t}: {}",
            o.stderr
        );
        let summary = format!("tpl-{t}: {probes} of {probes} probes passed (build ");
        assert!(
            o.stdout.lines().last().unwrap().starts_with(&summary),
            "[{name}] {t}: {}",
            o.stdout
        );
        assert!(!project.join(".data").exists(), "[{name}] {t}");
        let left = leftovers(&e, &format!("tpl-{t}-verify-"));
        assert!(left.is_empty(), "[{name}] {t}: verify left {left:?}");
    }
}

#[test]
fn templates_verify_on_rootful_podman() {
    verify_templates("podman");
}

#[test]
fn templates_verify_on_rootless_podman() {
    verify_templates("podman-rootless");
}

#[test]
fn templates_verify_on_docker() {
    verify_templates("docker");
}

/// `devbox ARGS` on a terminal (script(1) makes one), so the progress lines are drawn;
/// what the terminal was sent, carriage returns left out.
fn on_a_terminal(e: &Engine, dir: &Path, args: &[&str]) -> (i32, String) {
    let line = format!("env -u CI {}", shell_line(e, args));
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    (o.status.code().unwrap_or(-1), text)
}

fn basic_up(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let _lock = engine_lock();
    let (_dir, project) = init(&e, "basic");
    let dir = project.as_path();
    let _down = Down(&e, dir);

    let (code, shown) = on_a_terminal(&e, dir, &["up", "--timeout", "60s"]);
    assert_eq!(code, 0, "[{name}] {shown}");
    assert!(
        shown.contains("\x1b["),
        "[{name}] no progress was drawn: {shown:?}"
    );
    // A note printed after the progress lines used to land at the end of the last one.
    let notes: Vec<&str> = shown.lines().filter(|l| l.contains("note: ")).collect();
    for l in &notes {
        assert!(
            l.starts_with("note: "),
            "[{name}] a note on a progress line: {l:?}"
        );
    }
    let summary = shown.lines().find(|l| l.contains("tpl-basic is up on"));
    assert!(
        summary.is_some_and(|l| l.starts_with("tpl-basic is up on")),
        "[{name}] {shown:?}"
    );
    let host_uid = e.user.as_ref().map(|u| {
        nix::unistd::User::from_name(u)
            .unwrap()
            .unwrap()
            .uid
            .as_raw()
    });
    if host_uid.is_none() {
        let engine = if name == "docker" {
            "docker"
        } else {
            "rootful podman"
        };
        let want = format!("note: {engine} has no keep-id for service `web`: made .data/logs owned by 65532:65532 so it can write them");
        assert!(notes.contains(&want.as_str()), "[{name}] {notes:?}");
    }

    // The probes pass against what up started: the page, and both logs in .data.
    let p = ok(&e, dir, &["probe"]);
    assert!(
        p.stdout.contains("tpl-basic: 3 of 3 probes passed"),
        "[{name}] {}",
        p.stdout
    );
    ok(&e, dir, &["down", "-t", "1"]);

    // The server wrote .data/logs as the host user (keep-id) or as 65532, whom devbox
    // made the directory's owner on engines without keep-id; down kept it.
    let log = dir.join(".data/logs/web.log");
    let body = std::fs::read_to_string(&log).unwrap();
    assert_eq!(body, "tpl-basic started\n", "[{name}]");
    let access = std::fs::read_to_string(dir.join(".data/logs/access.log")).unwrap();
    assert!(access.contains("response:200"), "[{name}] {access}");
    let owner = std::fs::metadata(&log).unwrap().uid();
    assert_eq!(
        owner,
        host_uid.unwrap_or(65532),
        "[{name}] owner of {}",
        log.display()
    );

    // verify on a terminal: its engine line first, its report after the progress lines.
    let (code, shown) = on_a_terminal(&e, dir, &["verify"]);
    assert_eq!(code, 0, "[{name}] {shown}");
    assert!(
        shown.starts_with(&format!("{}\n", verifying_line(&e))),
        "[{name}] {shown:?}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("✓ the page is served on loopback (")),
        "[{name}] the report is glued to a progress line: {shown:?}"
    );
}

#[test]
fn basic_comes_up_and_writes_its_logs_on_rootless_podman() {
    basic_up("podman-rootless");
}

#[test]
fn basic_comes_up_and_writes_its_logs_on_rootful_podman() {
    basic_up("podman");
}

#[test]
fn basic_comes_up_and_writes_its_logs_on_docker() {
    basic_up("docker");
}
