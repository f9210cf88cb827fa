//! Interruptions and leftovers on real engines: `verify` stopped by SIGINT during a build
//! and after its containers exist removes its throwaway project; a SIGKILLed `verify` is
//! cleaned up by the next one, which leaves no image and no port claim; `up --build`
//! twice then `reset --images` leaves no untagged image.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::checkouts::owned_project;
use crate::engine::{devbox, devbox_cmd, engine, engine_cli, ok, Engine};

fn toml(name: &str, port: u16) -> String {
    format!(
        r#"[project]
name = "{name}"

[data.dirs]
db = {{}}

[images.app]
containerfile = "Containerfile"

[volumes.cache]

[networks.back]
internal = true

[services.app]
image = "app"
command = ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 100000"]
networks = ["back"]
volumes = ["cache:/cache"]
tmpfs = ["/tmp"]
ports = ["127.0.0.1:{port}:80"]

[services.app.healthcheck]
cmd = ["test", "-f", "/tmp/ready"]
interval = "200ms"

[[probes]]
name = "ready"
exec = ["test", "-f", "/tmp/ready"]
in = "app"
"#
    )
}

/// A running `devbox verify`: its pid (devbox's own, also under runuser) and its stderr
/// so far.
struct Running {
    child: Child,
    pid: i32,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn start(e: &Engine, dir: &Path, args: &[&str]) -> Self {
        let mut child = devbox_cmd(e, dir, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        // Under runuser, devbox is runuser's child (env execs it).
        let mut pid = child.id() as i32;
        if e.user.is_some() {
            let children = format!("/proc/{pid}/task/{pid}/children");
            let t = Instant::now();
            loop {
                let text = std::fs::read_to_string(&children).unwrap_or_default();
                let found = text.split_whitespace().next().and_then(|p| p.parse().ok());
                let is_devbox = |p: i32| {
                    std::fs::read_link(format!("/proc/{p}/exe"))
                        .is_ok_and(|x| x.ends_with("devbox"))
                };
                if let Some(p) = found.filter(|p| is_devbox(*p)) {
                    pid = p;
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "no devbox under runuser"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Self { child, pid, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `cond` holds (polled), failing after 60 s with what devbox said.
    fn until(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let t = Instant::now();
        while !cond(self) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{what} never happened; devbox said:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.pid), s).unwrap();
    }

    /// The exit code and all of stderr.
    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        // The reader thread ends at EOF.
        let t = Instant::now();
        while Arc::strong_count(&self.stderr) > 1 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        (status.code().unwrap_or(-1), self.stderr())
    }
}

fn cli_lines(e: &Engine, args: &[&str]) -> Vec<String> {
    let o = engine_cli(e, args);
    assert!(
        o.status.success(),
        "[{}] {args:?}: {}",
        e.name,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the engine still holds of throwaway project `p`, and images named for `name`.
fn remains(e: &Engine, name: &str, p: &str) -> Vec<String> {
    let label = format!("label=devbox.project={p}");
    let mut out = Vec::new();
    for (what, args) in [
        (
            "container",
            vec!["ps", "-a", "--filter", &label, "--format", "{{.Names}}"],
        ),
        (
            "network",
            vec!["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
        ),
        (
            "volume",
            vec!["volume", "ls", "--filter", &label, "--format", "{{.Name}}"],
        ),
    ] {
        out.extend(
            cli_lines(e, &args)
                .into_iter()
                .map(|l| format!("{what} {l}")),
        );
    }
    let prefix = format!("localhost/devbox-{name}-");
    out.extend(
        cli_lines(e, &["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .into_iter()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| format!("image {l}")),
    );
    out
}

/// `devboxintrbase` of `localhost/devboxintrbase:latest`.
fn base_name(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last)
}

fn scratch(name: &str, pid: i32) -> PathBuf {
    std::env::temp_dir().join(format!("devbox-verify-{name}-{pid}"))
}

/// The items of a `…: a, b, c` line that starts with `head`, as a set.
fn items(stderr: &str, head: &str) -> BTreeSet<String> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(head))
        .unwrap_or_else(|| panic!("no line starting {head:?} in:\n{stderr}"));
    line[head.len()..].split(", ").map(str::to_owned).collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

fn verify_flow(engine_name: &'static str, port: u16) {
    let Some(e) = engine(engine_name) else { return };
    let name = format!(
        "intr-{}",
        engine_name.replace("podman-rootless", "rootless")
    );
    let project = owned_project(&e, &toml(&name, port));
    let dir = project.path.as_path();
    // A base only this test builds from, so its build containers can be told apart.
    let base = format!("localhost/devbox{}base:latest", name.replace('-', ""));
    cli_lines(&e, &["tag", "localhost/devbox-busybox:latest", &base]);
    let containerfile = format!("FROM {base}\nRUN sleep 2 && echo built > /built\n");
    std::fs::write(dir.join("Containerfile"), containerfile).unwrap();
    if let Some(u) = &e.user {
        let u = nix::unistd::User::from_name(u).unwrap().unwrap();
        nix::unistd::chown(&dir.join("Containerfile"), Some(u.uid), Some(u.gid)).unwrap();
    }
    // Buildah's working containers are named after the base image (Docker's have
    // random names; its builder always removed them).
    let working = format!("{}-working-container", base_name(&base));
    let builders = || -> Vec<String> {
        if e.name == "docker" {
            return Vec::new();
        }
        cli_lines(&e, &["ps", "-a", "--external", "--format", "{{.Names}}"])
            .into_iter()
            .filter(|l| l.starts_with(&working))
            .collect()
    };
    let exists = |p: &str| {
        !cli_lines(
            &e,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label=devbox.project={p}"),
                "-q",
            ],
        )
        .is_empty()
    };

    // 1. SIGINT during the build: the build stops, nothing of it stays.
    let v = Running::start(&e, dir, &["verify"]);
    v.until("the build", |v| v.stderr().contains("image app: building"));
    std::thread::sleep(Duration::from_millis(800));
    v.signal(Signal::SIGINT);
    let pid = v.pid;
    let (code, stderr) = v.finish();
    let p = format!("{name}-verify-{pid}");
    let s = scratch(&name, pid);
    assert_eq!(code, 130, "[{engine_name}] {stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "devbox: interrupted; removed throwaway project {p}: directory {}",
            s.display()
        ),
        "[{engine_name}] {stderr}"
    );
    assert_eq!(
        remains(&e, &name, &p),
        Vec::<String>::new(),
        "[{engine_name}]"
    );
    // Podman lets a RUN step that is running finish, then removes its container.
    let t = Instant::now();
    while !builders().is_empty() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        builders(),
        Vec::<String>::new(),
        "[{engine_name}] build containers left"
    );
    assert!(!s.exists(), "[{engine_name}] {} left", s.display());

    // 2. SIGINT once the container exists: all of the throwaway project goes.
    let v = Running::start(&e, dir, &["verify"]);
    let p = format!("{name}-verify-{}", v.pid);
    v.until("the container", |_| exists(&p));
    v.signal(Signal::SIGINT);
    let pid = v.pid;
    let (code, stderr) = v.finish();
    let s = scratch(&name, pid);
    let tag = stderr
        .lines()
        .find_map(|l| l.strip_prefix("image app: built "))
        .unwrap_or_else(|| panic!("[{engine_name}] no build in {stderr}"))
        .to_owned();
    assert_eq!(code, 130, "[{engine_name}] {stderr}");
    let want = |p: &str, s: &Path| {
        set(&[
            format!("container {p}-app"),
            format!("network {p}"),
            format!("network {p}_back"),
            format!("volume {p}_cache"),
            format!("image {tag}"),
            format!("directory {}", s.display()),
        ])
    };
    assert_eq!(
        items(
            &stderr,
            &format!("devbox: interrupted; removed throwaway project {p}: ")
        ),
        want(&p, &s),
        "[{engine_name}] {stderr}"
    );
    assert_eq!(
        remains(&e, &name, &p),
        Vec::<String>::new(),
        "[{engine_name}]"
    );
    assert!(!s.exists(), "[{engine_name}] {} left", s.display());

    // 3. SIGKILL: the next verify removes what was left, and not the project's .data.
    std::fs::create_dir_all(dir.join(".data")).unwrap();
    std::fs::write(dir.join(".data/keep"), "mine").unwrap();
    let v = Running::start(&e, dir, &["verify"]);
    let p = format!("{name}-verify-{}", v.pid);
    v.until("the container", |_| exists(&p));
    v.signal(Signal::SIGKILL);
    let pid = v.pid;
    let _ = v.finish();
    let s = scratch(&name, pid);
    assert!(
        s.exists() && exists(&p),
        "[{engine_name}] nothing left to clean up"
    );
    let o = devbox(&e, dir, &["verify"]);
    assert_eq!(o.code, 0, "[{engine_name}] {}{}", o.stdout, o.stderr);
    assert_eq!(
        items(
            &o.stderr,
            &format!("note: removed what an unfinished `devbox verify` left (project {p}): ")
        ),
        want(&p, &s),
        "[{engine_name}] {}",
        o.stderr
    );
    assert_eq!(
        remains(&e, &name, &p),
        Vec::<String>::new(),
        "[{engine_name}]"
    );
    assert!(!s.exists(), "[{engine_name}] {} left", s.display());
    assert_eq!(
        std::fs::read_to_string(dir.join(".data/keep")).unwrap(),
        "mine",
        "[{engine_name}]"
    );

    // 4. A verify that passed leaves no image of its own and no port claim.
    assert_eq!(
        remains(&e, &name, &name),
        Vec::<String>::new(),
        "[{engine_name}]"
    );
    let doctor = devbox(&e, dir, &["doctor"]);
    assert!(
        doctor
            .stdout
            .lines()
            .chain(doctor.stderr.lines())
            .any(|l| l == format!("ok    port 127.0.0.1:{port}: free")),
        "[{engine_name}] {}{}",
        doctor.stdout,
        doctor.stderr
    );
    let _ = engine_cli(&e, &["rmi", &base]);
}

#[test]
fn interrupted_and_killed_verify_leave_nothing_on_rootful_podman() {
    verify_flow("podman", 7791);
}

#[test]
fn interrupted_and_killed_verify_leave_nothing_on_rootless_podman() {
    verify_flow("podman-rootless", 7792);
}

#[test]
fn interrupted_and_killed_verify_leave_nothing_on_docker() {
    verify_flow("docker", 7793);
}

// `up --build` left the image it replaced untagged, and `reset --images` did not see it.
fn rebuild_flow(engine_name: &'static str) {
    let Some(e) = engine(engine_name) else { return };
    let name = format!(
        "rebuild-{}",
        engine_name.replace("podman-rootless", "rootless")
    );
    let project = owned_project(
        &e,
        &format!(
            "[project]\nname = \"{name}\"\n\n[images.app]\ncontainerfile = \"Containerfile\"\n\n[services.app]\nimage = \"app\"\ncommand = [\"sleep\", \"100000\"]\n"
        ),
    );
    let dir = project.path.as_path();
    std::fs::write(
        dir.join("Containerfile"),
        "FROM localhost/devbox-busybox:latest\nRUN echo hi > /hi\n",
    )
    .unwrap();
    ok(&e, dir, &["up", "--build"]);
    ok(&e, dir, &["up", "--build"]);
    let labelled = || {
        cli_lines(
            &e,
            &[
                "images",
                "-a",
                "--filter",
                &format!("label=devbox.project={name}"),
                "--format",
                "{{.ID}} {{.Repository}}:{{.Tag}}",
            ],
        )
    };
    let before = labelled();
    let o = ok(&e, dir, &["reset", "--images", "--yes"]);
    if engine_name != "docker" {
        // Docker's layer cache gives the rebuild the same image; Podman's does not.
        assert!(
            o.stderr.contains(" (untagged: replaced by a rebuild)\n"),
            "[{engine_name}] {before:?}\n{}",
            o.stderr
        );
    }
    assert_eq!(
        labelled(),
        Vec::<String>::new(),
        "[{engine_name}] {}",
        o.stderr
    );
}

#[test]
fn reset_images_removes_what_up_build_replaced_on_rootful_podman() {
    rebuild_flow("podman");
}

#[test]
fn reset_images_removes_what_up_build_replaced_on_rootless_podman() {
    rebuild_flow("podman-rootless");
}

#[test]
fn reset_images_removes_what_up_build_replaced_on_docker() {
    rebuild_flow("docker");
}

/// A project of `name` whose image builds from a base only it uses (for 2 s), owned by the
/// engine's user; returns the project and the base.
fn slow_build_project(
    e: &Engine,
    name: &str,
    port: u16,
) -> (crate::checkouts::OwnedProject, String) {
    let project = owned_project(e, &toml(name, port));
    let base = format!("localhost/devbox{}base:latest", name.replace('-', ""));
    cli_lines(e, &["tag", "localhost/devbox-busybox:latest", &base]);
    let path = project.path.join("Containerfile");
    std::fs::write(
        &path,
        format!("FROM {base}\nRUN sleep 2 && echo built > /built\n"),
    )
    .unwrap();
    if let Some(u) = &e.user {
        let u = nix::unistd::User::from_name(u).unwrap().unwrap();
        nix::unistd::chown(&path, Some(u.uid), Some(u.gid)).unwrap();
    }
    (project, base)
}

// Ctrl-C during `up` printed nothing and left the build's working container.
#[test]
fn interrupted_up_stops_and_says_so_on_rootful_podman() {
    let Some(e) = engine("podman") else { return };
    let name = "intr-up";
    let (project, base) = slow_build_project(&e, name, 7794);
    let dir = project.path.as_path();
    let v = Running::start(&e, dir, &["up"]);
    v.until("the build", |v| v.stderr().contains("image app: building"));
    std::thread::sleep(Duration::from_millis(500));
    v.signal(Signal::SIGTERM);
    let (code, stderr) = v.finish();
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        "devbox: interrupted; stopped before intr-up was up: what was made so far stays (`devbox up` finishes it, `devbox down` removes it)",
        "{stderr}"
    );
    // Nothing was built, and the engine removes the build's container once its step ends.
    assert_eq!(remains(&e, name, name), Vec::<String>::new());
    let working = format!("{}-working-container", base_name(&base));
    let t = Instant::now();
    let left = || {
        cli_lines(&e, &["ps", "-a", "--external", "--format", "{{.Names}}"])
            .into_iter()
            .filter(|l| l.starts_with(&working))
            .collect::<Vec<_>>()
    };
    while !left().is_empty() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(left(), Vec::<String>::new());
    let _ = engine_cli(&e, &["rmi", &base]);
}

// A second Ctrl-C during verify's teardown exits at once; the next `up` removes the rest.
#[test]
fn verify_abandoned_by_a_second_signal_is_removed_by_the_next_up_on_rootful_podman() {
    let Some(e) = engine("podman") else { return };
    let name = "intr-twice";
    let (project, base) = slow_build_project(&e, name, 7795);
    let dir = project.path.as_path();
    // A failed run of this test may have left it up.
    let _ = devbox(&e, dir, &["-p", name, "down", "-t", "0", "--take-over"]);
    let v = Running::start(&e, dir, &["verify"]);
    let p = format!("{name}-verify-{}", v.pid);
    let s = scratch(name, v.pid);
    v.until("the container", |_| {
        !cli_lines(
            &e,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label=devbox.project={p}"),
                "-q",
            ],
        )
        .is_empty()
    });
    v.signal(Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(30));
    v.signal(Signal::SIGINT);
    let (code, stderr) = v.finish();
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "devbox: interrupted again; left throwaway project {p} (data in {}): the next `devbox verify`, `up` or `reset` of intr-twice removes it",
            s.display()
        ),
        "{stderr}"
    );
    let up = devbox(&e, dir, &["up"]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    assert!(
        up.stderr.contains(&format!(
            "note: removed what an unfinished `devbox verify` left (project {p}): "
        )),
        "{}",
        up.stderr
    );
    // (The image is the project's now: `up` built it.)
    let left: Vec<String> = remains(&e, name, &p)
        .into_iter()
        .filter(|r| !r.starts_with("image "))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert!(!s.exists(), "{} left", s.display());
    ok(&e, dir, &["down", "-t", "0"]);
    let _ = ok(&e, dir, &["reset", "--images", "--yes"]);
    let _ = engine_cli(&e, &["rmi", &base]);
}
