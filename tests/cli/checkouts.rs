//! Two checkouts of one project (the same `[project] name` in two directories): they share
//! one project lock, a waiter names the holder that holds it now, and on every engine the
//! second checkout refuses to touch the first one's containers unless told to take over.

use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::engine::{containers, devbox, engine, ok, Engine};
use crate::util::{require, Output, Project, BIN};

/// A Docker socket that accepts connections and answers nothing for a few seconds, so a
/// `devbox up` on it holds the project lock that long.
fn silent_socket(dir: &Path) -> PathBuf {
    let path = dir.join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                drop(conn);
            });
        }
    });
    path
}

/// `devbox ARGS` in `dir` on the silent socket, with its own state directory.
fn on_silent(state: &Path, socket: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("DEVBOX_") {
            c.env_remove(k);
        }
    }
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("XDG_STATE_HOME", state)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env_remove("CONTAINER_HOST")
        .args(["--engine", "docker"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn output(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The one lock file under `state`, once some process has written `text` into it.
fn lock_file_with(state: &Path, text: &str) -> PathBuf {
    let dir = state.join("devbox/locks");
    let start = Instant::now();
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if let [f] = &files[..] {
            if std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains(text)
            {
                return f.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no lock file naming {text:?} in {}: {files:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child in its own process group, killed with the group when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// An empty project directory that the engine's user owns, with `toml` as sandbox.toml.
pub(crate) struct OwnedProject {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

pub(crate) fn owned_project(e: &Engine, toml: &str) -> OwnedProject {
    let dir = tempfile::Builder::new()
        .prefix("devbox-engine-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("project");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("sandbox.toml"), toml).unwrap();
    if let Some(user) = &e.user {
        let u = nix::unistd::User::from_name(user).unwrap().unwrap();
        for p in [
            dir.path().to_path_buf(),
            path.clone(),
            path.join("sandbox.toml"),
        ] {
            nix::unistd::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
        }
    }
    OwnedProject { _dir: dir, path }
}

fn twins(name: &str) -> (Project, Project) {
    let toml = format!("[project]\nname = \"{name}\"\n\n[services.app]\nimage = \"localhost/devbox-busybox:latest\"\n");
    let (a, b) = (Project::new(), Project::new());
    a.write("sandbox.toml", &toml);
    b.write("sandbox.toml", &toml);
    (a, b)
}

// The lock was keyed by name and directory: `up` in a second checkout went ahead while
// the first checkout's `up` was running.
#[test]
fn two_checkouts_of_one_project_share_its_lock() {
    let state = tempfile::tempdir().unwrap();
    let socket = silent_socket(state.path());
    let (a, b) = twins("twinlock");
    let holder = Killed(
        on_silent(state.path(), &socket, a.path(), &["up"])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    lock_file_with(state.path(), &format!("pid {pid} "));
    let o = output(&mut on_silent(
        state.path(),
        &socket,
        b.path(),
        &["up", "--no-wait"],
    ));
    assert_eq!(o.code, 1, "{}", o.stderr);
    let first = o.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "error: project \"twinlock\" is locked by pid {pid} ({BIN} --engine docker up) in {} (",
            a.path().display()
        )),
        "{}",
        o.stderr
    );
}

// A waiter named the previous holder: the text a killed holder had left, read while the
// new holder had the lock but had not written its own.
#[test]
fn a_waiter_names_the_current_holder_not_the_previous_one() {
    if !require("flock") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let socket = silent_socket(state.path());
    let (a, _b) = twins("twinstale");
    let mut first = on_silent(state.path(), &socket, a.path(), &["up"])
        .spawn()
        .unwrap();
    let previous = first.id();
    let file = lock_file_with(state.path(), &format!("pid {previous} "));
    // Killed: it cannot clear its text.
    first.kill().unwrap();
    first.wait().unwrap();
    // The next holder has the lock and has written nothing yet.
    let mut next = Command::new("flock")
        .arg(&file)
        .args(["sh", "-c", "echo held; exec sleep 20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(next.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "held\n");
    let next = Killed(next);
    let o = output(&mut on_silent(
        state.path(),
        &socket,
        a.path(),
        &["up", "--no-wait"],
    ));
    assert_eq!(o.code, 1, "{}", o.stderr);
    let first_line = o.stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with(&format!(
            "error: project \"twinstale\" is locked by pid {} (flock {} sh -c echo held; exec sleep 20) (",
            next.0.id(),
            file.display()
        )),
        "named pid {previous}, which no longer holds the lock? {}",
        o.stderr
    );
}

/// `down --take-over` from `dir` when dropped, whichever checkout holds the project.
struct DownFrom<'a>(&'a Engine, &'a Path);

impl Drop for DownFrom<'_> {
    fn drop(&mut self) {
        if devbox(self.0, self.1, &["down", "-t", "1", "--take-over"]).code != 0 {
            let _ = devbox(self.0, self.1, &["down", "-t", "1"]);
        }
    }
}

// `up` from a second checkout silently recreated the first one's containers, and its
// `down` removed them.
fn second_checkout_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let project = format!("twin-{name}");
    let toml = format!(
        "[project]\nname = \"{project}\"\n\n[services.app]\nimage = \"localhost/devbox-busybox:latest\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 0.2; done\"]\n"
    );
    let (first, second) = (owned_project(&e, &toml), owned_project(&e, &toml));
    let (a, b) = (first.path.as_path(), second.path.as_path());
    let _down = DownFrom(&e, a);
    let _ = devbox(&e, a, &["down", "-t", "1"]);

    ok(&e, a, &["up", "--timeout", "60s"]);
    let ids = containers(&e, a);
    assert_eq!(ids.len(), 1, "[{name}] {ids:?}");
    let refusal = format!(
        "error: project \"{project}\" is in use from another directory, {}\nhint: run devbox there, or pass --take-over to manage it from {} instead\n",
        a.display(),
        b.display()
    );
    for args in [
        &["up", "--timeout", "60s"][..],
        &["down", "-t", "1"],
        &["reset", "--yes"],
    ] {
        let o = devbox(&e, b, args);
        assert_eq!(
            (o.code, o.stderr.as_str()),
            (1, refusal.as_str()),
            "[{name}] devbox {}",
            args.join(" ")
        );
        assert_eq!(
            containers(&e, a),
            ids,
            "[{name}] devbox {} from the second checkout changed the first one's containers",
            args.join(" ")
        );
    }

    // Taken over: the second checkout's now, and the first one is refused.
    let o = ok(&e, b, &["up", "--timeout", "60s", "--take-over"]);
    assert!(
        o.stdout.contains(": 1 recreated in "),
        "[{name}] {}",
        o.stdout
    );
    let after = containers(&e, b);
    assert_ne!(after, ids, "[{name}]");
    let o = devbox(&e, a, &["down", "-t", "1"]);
    assert_eq!(o.code, 1, "[{name}] {}", o.stderr);
    assert!(
        o.stderr.starts_with(&format!(
            "error: project \"{project}\" is in use from another directory, {}\n",
            b.display()
        )),
        "[{name}] {}",
        o.stderr
    );
    let o = ok(&e, b, &["down", "-t", "1"]);
    assert!(
        o.stdout.starts_with(&format!(
            "{project} is down: 1 container and 1 network removed"
        )),
        "[{name}] {}",
        o.stdout
    );
}

#[test]
fn second_checkout_is_refused_on_rootful_podman() {
    second_checkout_flow("podman");
}

#[test]
fn second_checkout_is_refused_on_rootless_podman() {
    second_checkout_flow("podman-rootless");
}

#[test]
fn second_checkout_is_refused_on_docker() {
    second_checkout_flow("docker");
}

// Containers made before devbox recorded the directory carry no label: they are adopted
// from any directory, not refused.
#[test]
fn containers_without_the_directory_label_are_adopted_on_docker() {
    let Some(e) = engine("docker") else { return };
    let project = "adopted";
    let dir = owned_project(
        &e,
        &format!("[project]\nname = \"{project}\"\n\n[services.app]\nimage = \"localhost/devbox-busybox:latest\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 0.2; done\"]\n"),
    );
    let _down = DownFrom(&e, &dir.path);
    let made = crate::engine::engine_cli(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "adopted-app",
            "--label",
            "devbox.project=adopted",
            "--label",
            "devbox.service=app",
            "localhost/devbox-busybox:latest",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.2; done",
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // Recreated (it has no config hash either), and labelled from then on.
    let o = ok(&e, &dir.path, &["up", "--timeout", "60s"]);
    assert!(o.stdout.contains(": 1 recreated in "), "{}", o.stdout);
    let o = ok(&e, &dir.path, &["down", "-t", "1"]);
    assert!(
        o.stdout
            .starts_with("adopted is down: 1 container and 1 network removed"),
        "{}",
        o.stdout
    );
}
