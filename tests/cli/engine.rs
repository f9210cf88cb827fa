//! The reference project on real engines — rootful Podman, rootless Podman (as the
//! unprivileged user `setup-engines.sh` names) and Docker — through the binary: up,
//! pong on loopback only, the client's log, converge, edit one service, knobs applied,
//! down keeping `.data`, and two concurrent `up`s.
//!
//! The sockets come from `DEVBOX_TEST_*` (printed by `scripts/setup-engines`).
//! Without them the tests skip, unless `DEVBOX_REQUIRE_ENGINES=1` makes that a failure.
//! All engine tests publish 127.0.0.1:7777, so they take one lock and run one at a time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{reference_dir, required, Output, BIN};

/// Which engine, and how devbox is run for it.
pub(crate) struct Engine {
    pub(crate) name: &'static str,
    pub(crate) env: Vec<(&'static str, String)>,
    /// Run devbox as this user (rootless Podman).
    pub(crate) user: Option<String>,
}

/// `name`'s engine from its `DEVBOX_TEST_*` variables or, when they are unset, where devbox
/// itself finds it (the engine's default socket, when it answers). Without one the test is
/// skipped, or fails with `DEVBOX_REQUIRE_ENGINES=1`. Never `None`; an `Option` for the
/// callers' `let … else`.
pub(crate) fn engine(name: &'static str) -> Option<Engine> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let answers = |sock: &str| std::os::unix::net::UnixStream::connect(sock).is_ok();
    let found = |k: &str, default: String| var(k).or_else(|| answers(&default).then_some(default));
    let e = match name {
        "podman" => found(
            "DEVBOX_TEST_PODMAN_SOCKET",
            "/run/podman/podman.sock".into(),
        )
        .map(|s| Engine {
            name,
            env: vec![
                ("DEVBOX_ENGINE", "podman".into()),
                ("CONTAINER_HOST", format!("unix://{s}")),
            ],
            user: None,
        }),
        "podman-rootless" => {
            let user = var("DEVBOX_TEST_ROOTLESS_USER").or_else(|| Some("devboxci".into()));
            let default = user
                .as_deref()
                .and_then(|u| nix::unistd::User::from_name(u).ok().flatten())
                .map(|u| format!("/run/user/{}/podman/podman.sock", u.uid))
                .unwrap_or_default();
            found("DEVBOX_TEST_PODMAN_ROOTLESS_SOCKET", default)
                .zip(user)
                .map(|(s, user)| {
                    let runtime = Path::new(&s)
                        .parent()
                        .and_then(Path::parent)
                        .expect("socket under XDG_RUNTIME_DIR/podman")
                        .display()
                        .to_string();
                    Engine {
                        name,
                        env: vec![
                            ("DEVBOX_ENGINE", "podman".into()),
                            ("XDG_RUNTIME_DIR", runtime),
                            ("HOME", format!("/home/{user}")),
                        ],
                        user: Some(user),
                    }
                })
        }
        "docker" => {
            found("DEVBOX_TEST_DOCKER_SOCKET", "/var/run/docker.sock".into()).map(|s| Engine {
                name,
                env: vec![
                    ("DEVBOX_ENGINE", "docker".into()),
                    ("DOCKER_HOST", format!("unix://{s}")),
                ],
                user: None,
            })
        }
        _ => unreachable!(),
    };
    if e.is_none() {
        assert!(
            !required(),
            "engine {name} is required (DEVBOX_REQUIRE_ENGINES=1) but no socket answers and its DEVBOX_TEST_* variable is not set; run scripts/setup-engines and export what it prints"
        );
        crate::harness::skip(format!(
            "no {name} engine: its DEVBOX_TEST_* variable is unset and its default socket does not answer (sudo scripts/setup-engines starts it)"
        ));
    }
    e
}

/// One engine test at a time: they all publish 127.0.0.1:7777. Held until dropped.
pub(crate) fn engine_lock() -> nix::fcntl::Flock<File> {
    let f = File::create(std::env::temp_dir().join("devbox-engine-tests.lock")).unwrap();
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap()
}

/// A copy of the reference project the engine's user owns.
struct RefProject {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn reference_copy(e: &Engine) -> RefProject {
    let dir = tempfile::Builder::new()
        .prefix("devbox-engine-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("refbox");
    std::fs::create_dir(&path).unwrap();
    for entry in std::fs::read_dir(reference_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), path.join(entry.file_name())).unwrap();
    }
    for entry in std::fs::read_dir(&path).unwrap() {
        let p = entry.unwrap().path();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
    }
    if let Some(user) = &e.user {
        let u = nix::unistd::User::from_name(user).unwrap().unwrap();
        for p in [dir.path().to_path_buf(), path.clone()]
            .into_iter()
            .chain(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()))
        {
            nix::unistd::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
        }
    }
    RefProject { _dir: dir, path }
}

pub(crate) fn devbox_cmd(e: &Engine, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = match &e.user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "env"]);
            for (k, v) in &e.env {
                c.arg(format!("{k}={v}"));
            }
            c.arg("NO_COLOR=1").arg(BIN);
            c
        }
        None => {
            let mut c = Command::new(BIN);
            c.envs(e.env.iter().map(|(k, v)| (*k, v.as_str())));
            c.env("NO_COLOR", "1");
            c
        }
    };
    for k in ["CONTAINER_HOST", "DOCKER_HOST"] {
        if !e.env.iter().any(|(n, _)| *n == k) {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    cmd
}

/// The same command as one shell line (for script(1)).
pub(crate) fn shell_line(e: &Engine, args: &[&str]) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut words: Vec<String> = Vec::new();
    if let Some(user) = &e.user {
        words.extend(["runuser", "-u", user, "--"].map(String::from));
    }
    words.push("env".into());
    for k in ["CONTAINER_HOST", "DOCKER_HOST"] {
        if !e.env.iter().any(|(n, _)| *n == k) {
            words.push(format!("-u{k}"));
        }
    }
    for (k, v) in &e.env {
        words.push(q(&format!("{k}={v}")));
    }
    words.push("NO_COLOR=1".into());
    words.push(q(BIN));
    words.extend(args.iter().map(|a| q(a)));
    words.join(" ")
}

pub(crate) fn devbox(e: &Engine, dir: &Path, args: &[&str]) -> Output {
    let out = devbox_cmd(e, dir, args).output().expect("devbox runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn ok(e: &Engine, dir: &Path, args: &[&str]) -> Output {
    let o = devbox(e, dir, args);
    assert_eq!(
        o.code,
        0,
        "[{}] devbox {} failed\nstdout:\n{}\nstderr:\n{}",
        e.name,
        args.join(" "),
        o.stdout,
        o.stderr
    );
    o
}

/// What the server answers on `addr` to `ping`.
fn ask(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"ping\n")?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    Ok(buf)
}

/// The host's main non-loopback IPv4 address (no packet is sent).
fn host_address() -> IpAddr {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9").unwrap();
    s.local_addr().unwrap().ip()
}

/// Path → (mode, uid, gid, bytes) of every file and directory under `root`.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let body = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        out.insert(p, (m.mode(), m.uid(), m.gid(), body));
    }
    out
}

/// Service → container id, from `status --json`; panics on orphans or duplicates.
pub(crate) fn containers(e: &Engine, dir: &Path) -> BTreeMap<String, String> {
    let o = ok(e, dir, &["status", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&o.stdout).unwrap();
    let mut ids = BTreeMap::new();
    for r in rows {
        assert_eq!(r["orphan"], false, "[{}] unexpected container {r}", e.name);
        if let Some(id) = r["id"].as_str() {
            let dup = ids.insert(r["service"].as_str().unwrap().to_owned(), id.to_owned());
            assert!(
                dup.is_none(),
                "[{}] two containers for one service: {r}",
                e.name
            );
        }
    }
    ids
}

/// Runs `devbox down` when dropped (also when the test panics).
pub(crate) struct Down<'a>(pub(crate) &'a Engine, pub(crate) &'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = devbox(self.0, self.1, &["down", "-t", "1"]);
    }
}

fn reference_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let _lock = engine_lock();
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    // Down again whatever happens, so a failure does not hold the port for the next.
    let _down = Down(&e, dir);
    // A run that was killed may have left the project up.
    let _ = devbox(&e, dir, &["down", "-t", "1"]);

    // Up: built, created, healthy.
    let up = ok(&e, dir, &["up", "--timeout", "90s"]);
    assert!(
        up.stdout.contains("refbox is up on") && up.stdout.contains("2 created"),
        "[{name}] {}",
        up.stdout
    );
    match name {
        "podman-rootless" => assert!(
            up.stderr
                .contains("rootless podman on cgroup v1 cannot enforce memory")
                || !up.stderr.contains("cgroup v1"),
            "[{name}] {}",
            up.stderr
        ),
        _ => assert!(
            up.stderr.contains("made .data") && up.stderr.contains("owned by 1000:1000"),
            "[{name}] devbox says how it made .data writable without keep-id: {}",
            up.stderr
        ),
    }

    // The host gets pong on loopback, and nothing on its other address.
    let loopback: SocketAddr = "127.0.0.1:7777".parse().unwrap();
    let answer = ask(loopback).unwrap_or_else(|err| panic!("[{name}] 127.0.0.1:7777: {err}"));
    assert_eq!(answer.trim(), "pong", "[{name}]");
    let outside = SocketAddr::new(host_address(), 7777);
    match ask(outside) {
        Err(_) => {}
        Ok(a) => panic!("[{name}] {outside} answered {a:?}; the port must be loopback-only"),
    }

    // The client saw the shared volume.
    let logs = ok(&e, dir, &["logs", "client"]);
    assert!(
        logs.stdout.contains("client | sock_ok"),
        "[{name}] {}",
        logs.stdout
    );
    // -f follows: the line arrives and the command keeps running.
    let mut follow = devbox_cmd(&e, dir, &["logs", "-f", "client"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(follow.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "client | sock_ok\n", "[{name}]");
    assert!(
        follow.try_wait().unwrap().is_none(),
        "[{name}] logs -f exited"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // .data written by the container is the host user's (rootless, keep-id) or the
    // service's (rootful engines, made so by devbox).
    let smoke = dir.join(".data/database/smoke.json");
    let body = std::fs::read_to_string(&smoke).unwrap();
    assert!(body.contains(r#""ok":true"#), "[{name}] {body}");
    let owner = std::fs::metadata(&smoke).unwrap().uid();
    let expected = match &e.user {
        Some(u) => nix::unistd::User::from_name(u)
            .unwrap()
            .unwrap()
            .uid
            .as_raw(),
        None => 1000,
    };
    assert_eq!(owner, expected, "[{name}] owner of {}", smoke.display());
    let cred = std::fs::metadata(dir.join(".data/auth/credential")).unwrap();
    assert_eq!(cred.mode() & 0o7777, 0o600, "[{name}]");

    // The hardening knobs reached the container.
    let knobs = devbox(
        &e,
        dir,
        &[
            "exec",
            "server",
            "--",
            "sh",
            "-c",
            "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; id -u; touch /app/x 2>/dev/null && echo WRITABLE; true",
        ],
    );
    assert_eq!(knobs.code, 0, "[{name}] {}", knobs.stderr);
    assert!(
        knobs.stdout.contains("NoNewPrivs:\t1"),
        "[{name}] {}",
        knobs.stdout
    );
    assert!(
        knobs.stdout.contains("CapEff:\t0000000000000000"),
        "[{name}] {}",
        knobs.stdout
    );
    assert!(knobs.stdout.contains("1000\n"), "[{name}] {}", knobs.stdout);
    assert!(
        !knobs.stdout.contains("WRITABLE"),
        "[{name}] root fs is writable"
    );
    if e.user.is_none() {
        // Rootful engines on this machine enforce the limits (cgroup v1 paths).
        let limits = ok(
            &e,
            dir,
            &[
                "exec",
                "server",
                "--",
                "sh",
                "-c",
                "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max",
            ],
        );
        assert_eq!(limits.stdout, "128\n268435456\n", "[{name}]");
    }
    let code = devbox(&e, dir, &["exec", "server", "--", "sh", "-c", "exit 7"]).code;
    assert_eq!(code, 7, "[{name}] exec passes the exit code through");
    // On a terminal (script(1) makes one), exec is interactive.
    let line = shell_line(
        &e,
        &[
            "exec",
            "server",
            "--",
            "sh",
            "-c",
            "test -t 0 && echo TTY; exit 5",
        ],
    );
    let tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&tty.stdout).contains("TTY"),
        "[{name}] {}{}",
        String::from_utf8_lossy(&tty.stdout),
        String::from_utf8_lossy(&tty.stderr)
    );
    assert_eq!(tty.status.code(), Some(5), "[{name}]");

    // status shows state, health, ports, and why the server joined the default network.
    let st = ok(&e, dir, &["status"]);
    assert!(
        st.stdout
            .contains("running  healthy  127.0.0.1:7777->7777/tcp"),
        "[{name}] {}",
        st.stdout
    );
    assert!(
        st.stdout.contains("note: service `server` publishes ports but joins only internal networks; also joined `default`"),
        "[{name}] {}",
        st.stdout
    );

    // doctor reads the real binds: the port is this project's, on loopback only.
    let doc = ok(&e, dir, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&doc.stdout).unwrap();
    let by_name = |n: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("[{name}] no check {n:?} in {v}"))
    };
    let port = by_name("port 127.0.0.1:7777");
    assert_eq!(port["status"], "pass", "[{name}] {port}");
    assert!(
        port["detail"]
            .as_str()
            .unwrap()
            .starts_with("held by this project"),
        "[{name}] {port}"
    );
    let bind = by_name("bind 127.0.0.1:7777->7777/tcp");
    assert_eq!(bind["status"], "pass", "[{name}] {bind}");

    // A second up changes nothing: same containers.
    let before = containers(&e, dir);
    assert_eq!(before.len(), 2, "[{name}] {before:?}");
    let again = ok(&e, dir, &["up", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        r["unchanged"],
        serde_json::json!(["server", "client"]),
        "[{name}] {r}"
    );
    assert_eq!(
        containers(&e, dir),
        before,
        "[{name}] a no-op up kept the same ids"
    );

    // Editing one service recreates only it.
    let toml = std::fs::read_to_string(dir.join("sandbox.toml")).unwrap();
    let edited = toml.replace("memory = \"64m\"", "memory = \"80m\"");
    assert_ne!(edited, toml);
    std::fs::write(dir.join("sandbox.toml"), edited).unwrap();
    let r = ok(&e, dir, &["up", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        r["recreated"],
        serde_json::json!(["client"]),
        "[{name}] {r}"
    );
    assert_eq!(
        r["unchanged"],
        serde_json::json!(["server"]),
        "[{name}] {r}"
    );
    let after = containers(&e, dir);
    assert_eq!(after["server"], before["server"], "[{name}]");
    assert_ne!(after["client"], before["client"], "[{name}]");

    // down keeps .data byte for byte (and the named volume).
    let data = snapshot(&dir.join(".data"));
    let down = ok(&e, dir, &["down", "-t", "1"]);
    assert!(
        down.stdout.contains("2 containers and 2 networks removed"),
        "[{name}] {}",
        down.stdout
    );
    assert_eq!(
        snapshot(&dir.join(".data")),
        data,
        "[{name}] down changed .data"
    );
    assert!(containers(&e, dir).is_empty(), "[{name}]");
    assert!(
        ask(loopback).is_err(),
        "[{name}] port still answers after down"
    );

    // Two concurrent ups: one waits for the other's lock; no duplicates.
    let a = devbox_cmd(&e, dir, &["up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = devbox_cmd(&e, dir, &["up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(
            o.status.success(),
            "[{name}] concurrent up failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let waited = [&a, &b]
        .iter()
        .any(|o| String::from_utf8_lossy(&o.stderr).contains("waiting for the project lock"));
    assert!(waited, "[{name}] neither up waited for the lock");
    assert_eq!(containers(&e, dir).len(), 2, "[{name}]");

    // Named volumes go only when asked, and only with an answer; .data stays.
    let data = snapshot(&dir.join(".data"));
    let refused = devbox(&e, dir, &["down", "-t", "1", "--volumes"]);
    assert_eq!(refused.code, 1, "[{name}] {}", refused.stderr);
    assert!(
        refused.stderr.contains("refbox_sock") && refused.stderr.contains("hint: pass --yes"),
        "[{name}] {}",
        refused.stderr
    );
    let gone = ok(&e, dir, &["down", "-t", "1", "--volumes", "--yes"]);
    assert!(
        gone.stdout.contains("volumes removed: refbox_sock"),
        "[{name}] {}",
        gone.stdout
    );
    assert_eq!(
        snapshot(&dir.join(".data")),
        data,
        "[{name}] down --volumes changed .data"
    );
}

/// A build that fails and a service that dies: `up` exits 1 with the build's output or
/// the service's last log lines.
fn failure_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    let toml = format!(
        r#"[project]
name = "failing-{name}"

[images.broken]
containerfile = "Broken"

[services.app]
image = "broken"
"#
    );
    std::fs::write(dir.join("sandbox.toml"), &toml).unwrap();
    std::fs::write(
        dir.join("Broken"),
        "FROM localhost/devbox-busybox:latest\nRUN echo the-step-that-fails && false\n",
    )
    .unwrap();
    let _down = Down(&e, dir);
    let o = devbox(&e, dir, &["up"]);
    assert_eq!(o.code, 1, "[{name}] {}", o.stderr);
    assert!(
        o.stderr.contains(&format!("devbox-failing-{name}-broken"))
            && o.stderr.contains("the-step-that-fails"),
        "[{name}] a failed build shows its output: {}",
        o.stderr
    );

    let toml = format!(
        r#"[project]
name = "failing-{name}"

[services.app]
image = "localhost/devbox-busybox:latest"
command = ["sh", "-c", "echo about-to-fail; exit 3"]
"#
    );
    std::fs::write(dir.join("sandbox.toml"), toml).unwrap();
    let o = devbox(&e, dir, &["up", "--timeout", "30s"]);
    assert_eq!(o.code, 1, "[{name}] {}", o.stderr);
    assert!(
        o.stderr.contains("error: service `app` exited with code 3")
            && o.stderr.contains("  | about-to-fail"),
        "[{name}] a dead service shows its last log lines: {}",
        o.stderr
    );
}

#[test]
fn failures_on_rootful_podman() {
    failure_flow("podman");
}

#[test]
fn failures_on_rootless_podman() {
    failure_flow("podman-rootless");
}

#[test]
fn failures_on_docker() {
    failure_flow("docker");
}

#[test]
fn reference_on_rootful_podman() {
    reference_flow("podman");
}

#[test]
fn reference_on_rootless_podman() {
    reference_flow("podman-rootless");
}

#[test]
fn reference_on_docker() {
    reference_flow("docker");
}

#[test]
fn engine_errors_name_the_engine_and_socket_and_point_to_doctor() {
    let p = crate::util::Project::with_toml("[services.app]\nimage = \"localhost/x\"\n");
    let o = crate::util::Devbox::new(p.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["--engine", "docker", "status"])
        .run();
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .starts_with("error: docker at /nonexistent/docker.sock: "),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("hint: `devbox doctor`"), "{}", o.stderr);
}

// An engine error was exit 1 for `up` and 2 for `verify`, though it is the same failure;
// 2 is for a bad file or command line.
#[test]
fn an_engine_error_is_exit_1_for_up_and_verify_alike() {
    let p = crate::util::Project::with_toml("[services.app]\nimage = \"localhost/x\"\n");
    for cmd in ["up", "verify", "status", "down"] {
        let o = crate::util::Devbox::new(p.path())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .args(["--engine", "docker", cmd])
            .run();
        assert_eq!(o.code, 1, "{cmd}: {}", o.stderr);
        // verify names the engine it is about to use first.
        let err = o
            .stderr
            .strip_prefix("devbox: verifying on Docker (/nonexistent/docker.sock)\n")
            .filter(|_| cmd == "verify")
            .unwrap_or(&o.stderr);
        assert!(
            err.starts_with("error: docker at /nonexistent/docker.sock: "),
            "{cmd}: {}",
            o.stderr
        );
    }
}

#[test]
fn doctor_reports_the_machine_as_it_is() {
    let required = required();
    // A port some other process holds.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let p = crate::util::Project::with_toml(&format!(
        "[services.app]\nimage = \"localhost/x\"\nports = [\"{port}:80\"]\n"
    ));
    let o = crate::util::Devbox::new(p.path())
        .args(["doctor", "--json"])
        .run();
    let v: serde_json::Value =
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", o.stdout, o.stderr));
    let v1 = !Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(v["cgroup_version"], if v1 { "1" } else { "2" });
    let checks = v["checks"].as_array().unwrap();
    let find = |n: &str| checks.iter().find(|c| c["check"] == n).cloned();
    let cg = find("cgroups").unwrap();
    assert_eq!(cg["status"], if v1 { "warn" } else { "pass" }, "{cg}");
    let ns = find("user namespaces").unwrap();
    assert_eq!(ns["status"], "pass", "{ns}");
    let held_check = find(&format!("port 127.0.0.1:{port}")).unwrap();
    assert_eq!(held_check["status"], "fail", "{held_check}");
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(
        held_check["detail"],
        format!(
            "in use by pid {} ({}), not by this project",
            std::process::id(),
            comm.trim_end()
        )
    );
    assert_eq!(o.code, 1, "a failed check fails doctor");
    drop(held);
    if required {
        let engines: Vec<String> = v["engines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}@{}",
                    e["kind"].as_str().unwrap(),
                    e["socket"].as_str().unwrap()
                )
            })
            .collect();
        for want in [
            "podman@/run/podman/podman.sock",
            "docker@/var/run/docker.sock",
        ] {
            assert!(
                engines.iter().any(|e| e == want),
                "{want} not in {engines:?}"
            );
        }
    }
}

/// The engine's own CLI, as devbox's user, on the same socket.
pub(crate) fn engine_cli(e: &Engine, args: &[&str]) -> std::process::Output {
    let (program, flag, socket) = if e.name == "docker" {
        (
            "docker",
            "--host",
            e.env
                .iter()
                .find(|(k, _)| *k == "DOCKER_HOST")
                .unwrap()
                .1
                .clone(),
        )
    } else if e.user.is_some() {
        let runtime = &e
            .env
            .iter()
            .find(|(k, _)| *k == "XDG_RUNTIME_DIR")
            .unwrap()
            .1;
        (
            "podman",
            "--url",
            format!("unix://{runtime}/podman/podman.sock"),
        )
    } else {
        (
            "podman",
            "--url",
            e.env
                .iter()
                .find(|(k, _)| *k == "CONTAINER_HOST")
                .unwrap()
                .1
                .clone(),
        )
    };
    let mut cmd = match &e.user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", program]);
            c
        }
        None => Command::new(program),
    };
    cmd.arg(flag).arg(socket).args(args).output().unwrap()
}

fn verify_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let _lock = engine_lock();
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    let junit = dir.join("report.xml");
    let junit_s = junit.display().to_string();
    let o = devbox(&e, dir, &["verify", "--junit", &junit_s]);
    assert_eq!(o.code, 0, "[{name}] {}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("refbox: 6 of 6 probes passed (build "),
        "[{name}] {}",
        o.stdout
    );
    assert!(
        o.stdout
            .starts_with("✓ host reaches the server over loopback TCP ("),
        "[{name}] {}",
        o.stdout
    );
    // verify worked on a copy: the project's own .data was never made, nothing is left.
    assert!(!dir.join(".data").exists(), "[{name}] verify touched .data");
    assert!(containers(&e, dir).is_empty(), "[{name}]");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"6\" failures=\"0\""), "[{name}] {xml}");
}

#[test]
fn verify_passes_on_rootful_podman() {
    verify_flow("podman");
}

#[test]
fn verify_passes_on_rootless_podman() {
    verify_flow("podman-rootless");
}

#[test]
fn verify_passes_on_docker() {
    verify_flow("docker");
}

/// Wrong greeting, a 0644 credential, a port on 0.0.0.0, an exec that succeeds where
/// denial was expected: exactly those probes fail, with a report and valid JUnit.
fn broken_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let _lock = engine_lock();
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    let toml = std::fs::read_to_string(dir.join("sandbox.toml")).unwrap();
    let broken = toml
        .replace("expect = \"pong\"", "expect = \"pang\"")
        .replace(
            "mode = \"0600\"\nsecret = \"hex:32\"",
            "mode = \"0644\"\ncontent = \"not a secret\"",
        )
        .replace("ports = [\"7777\"]", "ports = [\"0.0.0.0:7777:7777\"]")
        + r#"
[[probes]]
name = "the server cannot read its greeting"
exec = ["cat", "/app/greeting"]
in = "server"
expect_exit = "denied"
"#;
    assert_ne!(broken, toml);
    std::fs::write(dir.join("sandbox.toml"), &broken).unwrap();
    let junit = dir.join("report.xml");
    let o = devbox(
        &e,
        dir,
        &["verify", "--junit", &junit.display().to_string()],
    );
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    let failed: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("✗ "))
        .map(|l| l.rsplit_once(" (").unwrap().0)
        .collect();
    assert_eq!(
        failed,
        [
            "host reaches the server over loopback TCP",
            "published port is loopback-only",
            "credential is private",
            "the server cannot read its greeting",
        ],
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("    expected: 127.0.0.1:7777 accepts a connection and answers \"pang\""),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("    saw:      answer \"pong\""),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("refbox: 3 of 7 probes passed"),
        "{}",
        o.stdout
    );
    // An outside XML parser accepts the JUnit file and counts the same.
    let check = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; s = E.parse(sys.argv[1]).getroot().find('testsuite'); print(s.get('tests'), s.get('failures'), len(s.findall('testcase/failure')))",
        ])
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "7 4 4",
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        containers(&e, dir).is_empty(),
        "verify tore down after the failure"
    );
}

#[test]
fn verify_reports_exactly_the_broken_probes_on_rootful_podman() {
    broken_flow("podman");
}

#[test]
fn verify_reports_exactly_the_broken_probes_on_rootless_podman() {
    broken_flow("podman-rootless");
}

#[test]
fn verify_reports_exactly_the_broken_probes_on_docker() {
    broken_flow("docker");
}

fn reset_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let _lock = engine_lock();
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    let _down = Down(&e, dir);
    let _ = devbox(&e, dir, &["down", "-t", "1"]);
    ok(&e, dir, &["up"]);
    // A volume with a devbox-like name that devbox did not make (no labels).
    let lookalike = "refbox_lookalike";
    let made = engine_cli(&e, &["volume", "create", lookalike]);
    assert!(
        made.status.success(),
        "[{name}] {}",
        String::from_utf8_lossy(&made.stderr)
    );

    // No terminal, no --yes: the list, and nothing removed.
    let o = devbox(&e, dir, &["reset"]);
    assert_eq!(o.code, 1, "[{name}] {}", o.stderr);
    assert!(
        o.stderr
            .contains("volume    refbox_sock (its data is lost)"),
        "[{name}] {}",
        o.stderr
    );
    assert!(!o.stderr.contains(lookalike), "[{name}] {}", o.stderr);
    assert_eq!(
        containers(&e, dir).len(),
        2,
        "[{name}] reset without --yes removed something"
    );
    assert!(dir.join(".data/auth/credential").exists(), "[{name}]");

    // A symlinked .data is refused before anything goes.
    let real = dir.join("real-data");
    std::fs::rename(dir.join(".data"), &real).unwrap();
    std::os::unix::fs::symlink(&real, dir.join(".data")).unwrap();
    let o = devbox(&e, dir, &["reset", "--yes"]);
    assert_ne!(o.code, 0, "[{name}]");
    assert!(o.stderr.contains("is a symlink"), "[{name}] {}", o.stderr);
    assert_eq!(
        containers(&e, dir).len(),
        2,
        "[{name}] a refused reset removed something"
    );
    std::fs::remove_file(dir.join(".data")).unwrap();
    std::fs::rename(&real, dir.join(".data")).unwrap();

    let o = ok(&e, dir, &["reset", "--yes"]);
    assert!(
        o.stdout
            .starts_with("refbox reset: 2 containers, 2 networks, 1 volume, 0 images, "),
        "[{name}] {}",
        o.stdout
    );
    assert!(!dir.join(".data").exists(), "[{name}] .data survived reset");
    assert!(containers(&e, dir).is_empty(), "[{name}]");
    let vols = engine_cli(&e, &["volume", "ls", "--format", "{{.Name}}"]);
    let vols = String::from_utf8_lossy(&vols.stdout);
    assert!(
        vols.lines().any(|v| v == lookalike),
        "[{name}] the look-alike volume went: {vols}"
    );
    assert!(!vols.lines().any(|v| v == "refbox_sock"), "[{name}] {vols}");
    engine_cli(&e, &["volume", "rm", lookalike]);

    // After reset, up makes everything again, secrets included.
    ok(&e, dir, &["up"]);
    let cred = std::fs::metadata(dir.join(".data/auth/credential")).unwrap();
    assert_eq!(cred.mode() & 0o7777, 0o600, "[{name}]");
}

#[test]
fn reset_on_rootful_podman() {
    reset_flow("podman");
}

#[test]
fn reset_on_rootless_podman() {
    reset_flow("podman-rootless");
}

#[test]
fn reset_on_docker() {
    reset_flow("docker");
}

/// The multi-tenant boundary: `agent` cannot read `core`'s 0700 directory — a probe
/// that passes as built and fails once the mode is loosened.
fn two_user_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    let containerfile = |dir_mode: &str, key_mode: &str| {
        format!(
            "FROM localhost/devbox-busybox:latest\n\
             RUN mkdir -p /etc /opt/core \
             && printf 'root:x:0:0::/root:/bin/sh\\ncore:x:2001:2001::/:/bin/sh\\nagent:x:2002:2002::/:/bin/sh\\n' > /etc/passwd \
             && printf 'root:x:0:\\ncore:x:2001:\\nagent:x:2002:\\n' > /etc/group \
             && echo secret > /opt/core/key && chown -R 2001:2001 /opt/core \
             && chmod {dir_mode} /opt/core && chmod {key_mode} /opt/core/key\n"
        )
    };
    std::fs::write(dir.join("Containerfile"), containerfile("0700", "0600")).unwrap();
    std::fs::write(
        dir.join("sandbox.toml"),
        format!(
            r#"[project]
name = "tenant-{name}"

[images.tenant]
containerfile = "Containerfile"

[services.tenant]
image = "tenant"
command = ["sleep", "100000"]
user = "2001:2001"

[[probes]]
name = "agent cannot read /opt/core"
exec = ["cat", "/opt/core/key"]
in = "tenant"
user = "agent"
expect_exit = "denied"
within = "2s"

[[probes]]
name = "core can"
exec = ["cat", "/opt/core/key"]
in = "tenant"
expect = "secret"
"#
        ),
    )
    .unwrap();
    let o = devbox(&e, dir, &["verify"]);
    assert_eq!(o.code, 0, "[{name}] {}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("✓ agent cannot read /opt/core"),
        "[{name}] {}",
        o.stdout
    );

    std::fs::write(dir.join("Containerfile"), containerfile("0755", "0644")).unwrap();
    let o = devbox(&e, dir, &["verify"]);
    assert_eq!(o.code, 1, "[{name}] {}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("✗ agent cannot read /opt/core"),
        "[{name}] {}",
        o.stdout
    );
    assert!(
        o.stdout.contains("saw:      exit 0, stdout \"secret\""),
        "[{name}] {}",
        o.stdout
    );
}

#[test]
fn two_users_on_rootful_podman() {
    two_user_flow("podman");
}

#[test]
fn two_users_on_rootless_podman() {
    two_user_flow("podman-rootless");
}

#[test]
fn two_users_on_docker() {
    two_user_flow("docker");
}

/// A static Unix-socket echo server (answers `echo:` and what it read), built for the
/// test's image: busybox has no Unix-socket program of its own.
const ECHO_SERVER_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) {
        perror(argv[1]);
        return 1;
    }
    printf("listening on %s\n", argv[1]);
    fflush(stdout);
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        char buf[4096];
        ssize_t n;
        if (write(c, "echo:", 5) != 5) { close(c); continue; }
        while ((n = read(c, buf, sizeof buf)) > 0)
            if (write(c, buf, n) != n) break;
        close(c);
    }
}
"#;

/// The outcome of probe `probe` in verify's JSON report `v`, on engine `name`.
fn probe_outcome(v: &serde_json::Value, name: &str, probe: &str) -> serde_json::Value {
    v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == probe)
        .unwrap_or_else(|| panic!("[{name}] no probe {probe}: {v}"))
        .clone()
}

/// Compiles [`ECHO_SERVER_C`] into `dir/echo-server`, static, for images that hold
/// nothing else.
fn build_echo_server(dir: &Path) {
    let cc = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.join("echo-server"))
        .args(["-x", "c", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(ECHO_SERVER_C.as_bytes())?;
            c.wait()
        })
        .expect("gcc (CI installs it)");
    assert!(cc.success());
}

/// Copies the host's perl (binary, shared libraries, perl-base modules) under `root`, the
/// way a Debian-based image carries it.
fn copy_host_perl(root: &Path) {
    let ldd = std::process::Command::new("ldd")
        .arg("/usr/bin/perl")
        .output()
        .unwrap();
    let mut files: Vec<PathBuf> = String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    files.push("/usr/bin/perl".into());
    for f in files {
        let to = root.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&f, &to).unwrap();
    }
    let lib = Path::new("/usr/lib/x86_64-linux-gnu/perl-base");
    std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
    let status = std::process::Command::new("cp")
        .args(["-rL", "--no-preserve=ownership"])
        .arg(lib)
        .arg(root.join("usr/lib/x86_64-linux-gnu/"))
        .status()
        .unwrap();
    assert!(status.success());
}

/// A Unix-socket echo between two services sharing a named volume, probed inside the
/// client through the engine (with the image's perl), and inside a service whose image
/// has no Unix-socket client (fails, saying so).
fn uds_in_service_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    build_echo_server(dir);
    copy_host_perl(&dir.join("rootfs"));
    std::fs::write(
        dir.join("Containerfile.server"),
        "FROM localhost/devbox-busybox:latest\n\
         COPY echo-server /usr/local/bin/echo-server\n\
         RUN mkdir -p /run/echo && chown 1000:1000 /run/echo\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("Containerfile.client"),
        "FROM localhost/devbox-busybox:latest\n\
         COPY rootfs/ /\n\
         RUN mkdir -p /run/echo && chown 1000:1000 /run/echo\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sandbox.toml"),
        format!(
            r#"[project]
name = "uds-{name}"

[images.server]
containerfile = "Containerfile.server"

[images.client]
containerfile = "Containerfile.client"

[volumes.sock]

[services.server]
image = "server"
command = ["/usr/local/bin/echo-server", "/run/echo/echo.sock"]
user = "1000:1000"
volumes = ["sock:/run/echo"]

[services.client]
image = "client"
command = ["sleep", "100000"]
user = "1000:1000"
volumes = ["sock:/run/echo"]
depends_on = ["server"]

[[probes]]
name = "echo through the shared volume"
uds = "/run/echo/echo.sock"
in = "client"
send = "ping"
expect = "echo:ping"
within = "10s"

[[probes]]
name = "a socket nobody listens on"
uds = "/run/echo/nobody.sock"
in = "client"
within = "1s"

[[probes]]
name = "the server's image has no client"
uds = "/run/echo/echo.sock"
in = "server"
within = "1s"
"#
        ),
    )
    .unwrap();
    // The clients in the image, as an engine in a VM gets them (devbox cannot enter the
    // namespaces there): uds_in_a_scratch_service_flow covers the way with no client.
    let out = devbox_cmd(&e, dir, &["verify", "--json"])
        .env("DEVBOX_UDS_PROBE", "exec")
        .output()
        .unwrap();
    let o = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(o.code, 1, "[{name}] {}{}", o.stdout, o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let outcome = |n: &str| probe_outcome(&v, name, n);
    let echo = outcome("echo through the shared volume");
    assert_eq!(echo["passed"], true, "[{name}] {echo}");
    assert_eq!(echo["saw"], "answer \"echo:ping\"", "[{name}] {echo}");
    let nobody = outcome("a socket nobody listens on");
    assert_eq!(nobody["passed"], false, "[{name}] {nobody}");
    assert!(
        nobody["saw"]
            .as_str()
            .unwrap()
            .contains("/run/echo/nobody.sock: No such file or directory"),
        "[{name}] {nobody}"
    );
    let none = outcome("the server's image has no client");
    assert_eq!(none["passed"], false, "[{name}] {none}");
    assert!(
        none["saw"].as_str().unwrap().starts_with(
            "the service has no Unix-socket client (socat, ncat, nc -U, python3 or perl)"
        ),
        "[{name}] {none}"
    );
    assert!(containers(&e, dir).is_empty(), "[{name}]");
}

#[test]
fn uds_in_a_service_on_rootful_podman() {
    uds_in_service_flow("podman");
}

#[test]
fn uds_in_a_service_on_rootless_podman() {
    uds_in_service_flow("podman-rootless");
}

#[test]
fn uds_in_a_service_on_docker() {
    uds_in_service_flow("docker");
}

// `devbox probe` with nothing up waited out every probe's retries (5 s) and then reported
// "connection refused", as if the service were broken rather than not started.
fn probe_with_nothing_up_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    let toml = format!(
        "[project]\nname = \"unstarted-{name}\"\n\n[services.app]\nimage = \"localhost/devbox-busybox:latest\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\"]\nports = [\"8080\"]\n\n[[probes]]\nname = \"served\"\ntcp = \"127.0.0.1:8080\"\n"
    );
    std::fs::write(dir.join("sandbox.toml"), &toml).unwrap();
    let o = devbox(&e, dir, &["probe"]);
    assert_eq!(o.code, 1, "[{name}] {}", o.stderr);
    assert_eq!(
        o.stderr,
        format!("error: nothing of project unstarted-{name} is up, so there is nothing to probe\nhint: `devbox up` starts it; `devbox verify` runs the probes on a throwaway copy\n"),
        "[{name}]"
    );
    assert_eq!(o.stdout, "", "[{name}]");
    // `logs` printed nothing at all and exited 0.
    let o = devbox(&e, dir, &["logs"]);
    assert_eq!(o.code, 1, "[{name}] {}", o.stderr);
    assert_eq!(
        o.stderr,
        format!("error: project unstarted-{name} has no containers, so there are no logs (`devbox down` removes containers and their logs)\nhint: `devbox up` starts it\n"),
        "[{name}]"
    );
}

#[test]
fn probe_with_nothing_up_says_so_on_rootful_podman() {
    probe_with_nothing_up_flow("podman");
}

#[test]
fn probe_with_nothing_up_says_so_on_rootless_podman() {
    probe_with_nothing_up_flow("podman-rootless");
}

#[test]
fn probe_with_nothing_up_says_so_on_docker() {
    probe_with_nothing_up_flow("docker");
}

// A `uds` probe with `in = "SERVICE"` worked only when the image carried socat, ncat,
// `nc -U`, python3 or perl; real images (a static binary on scratch, distroless) have
// none. devbox now makes the round trip itself from inside the service's namespaces.
fn uds_in_a_scratch_service_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    build_echo_server(dir);
    std::fs::write(
        dir.join("Containerfile.server"),
        "FROM scratch\nCOPY echo-server /echo-server\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sandbox.toml"),
        format!(
            r#"[project]
name = "uds-scratch-{name}"

[images.server]
containerfile = "Containerfile.server"

[services.server]
image = "server"
command = ["/echo-server", "/run/echo/echo.sock"]
tmpfs = ["/run/echo"]

[[probes]]
name = "echo from a service that has nothing but its server"
uds = "/run/echo/echo.sock"
in = "server"
send = "ping"
expect = "echo:ping"
within = "10s"

[[probes]]
name = "a socket nobody listens on"
uds = "/run/echo/nobody.sock"
in = "server"
within = "1s"
"#
        ),
    )
    .unwrap();
    let o = devbox(&e, dir, &["verify", "--json"]);
    assert_eq!(o.code, 1, "[{name}] {}{}", o.stdout, o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let outcome = |n: &str| probe_outcome(&v, name, n);
    let echo = outcome("echo from a service that has nothing but its server");
    assert_eq!(echo["passed"], true, "[{name}] {echo}");
    assert_eq!(echo["saw"], "answer \"echo:ping\"", "[{name}] {echo}");
    let nobody = outcome("a socket nobody listens on");
    assert_eq!(nobody["passed"], false, "[{name}] {nobody}");
    assert_eq!(
        nobody["saw"], "/run/echo/nobody.sock: No such file or directory (os error 2)",
        "[{name}] {nobody}"
    );
    assert!(containers(&e, dir).is_empty(), "[{name}]");
}

#[test]
fn uds_in_a_scratch_service_on_rootful_podman() {
    uds_in_a_scratch_service_flow("podman");
}

#[test]
fn uds_in_a_scratch_service_on_rootless_podman() {
    uds_in_a_scratch_service_flow("podman-rootless");
}

#[test]
fn uds_in_a_scratch_service_on_docker() {
    uds_in_a_scratch_service_flow("docker");
}

// A tmpfs's options, the user and a restart limit go to each engine as the file wrote
// them after validation has parsed them: the mount has its size and mode, the process its
// ids, and the tcp healthcheck `up` waits for passes in the container.
fn typed_service_keys_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let project = reference_copy(&e);
    let dir = project.path.as_path();
    std::fs::write(
        dir.join("sandbox.toml"),
        format!(
            r#"[project]
name = "typed-{name}"

[services.web]
image = "localhost/devbox-busybox:latest"
command = ["httpd", "-f", "-p", "8080"]
user = "1234:1234"
tmpfs = ["/scratch:size=1m,mode=1777"]
restart = "on-failure:3"
healthcheck = {{ tcp = 8080, interval = "200ms", retries = 50 }}

[[probes]]
name = "mount and ids"
exec = ["sh", "-c", "stat -c 'mode %a' /scratch; df -k /scratch | tail -n 1 | awk '{{print \"size \" $2}}'; echo ids $(id -u):$(id -g)"]
in = "web"
expect = "mode 1777\nsize 1024\nids 1234:1234"
"#
        ),
    )
    .unwrap();
    let o = devbox(&e, dir, &["verify", "--json"]);
    assert_eq!(o.code, 0, "[{name}] {}{}", o.stdout, o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let p = probe_outcome(&v, name, "mount and ids");
    assert_eq!(p["passed"], true, "[{name}] {p}");
    assert!(containers(&e, dir).is_empty(), "[{name}]");
}

#[test]
fn typed_service_keys_reach_rootful_podman() {
    typed_service_keys_flow("podman");
}

#[test]
fn typed_service_keys_reach_rootless_podman() {
    typed_service_keys_flow("podman-rootless");
}

#[test]
fn typed_service_keys_reach_docker() {
    typed_service_keys_flow("docker");
}
