//! Host ports and stopping, on each real engine through the binary: a published port held
//! by another process fails `up` before anything is made, naming the holder; `up` works
//! the first time once it is free; `doctor` tells the project's own container from another
//! process; `down` is quick with the default init and honours `stop_signal` and
//! `stop_grace_period`. Ports are picked free at run time, so no engine lock is needed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::engine::{containers, devbox, engine, ok, Engine};
use crate::util::test_var;

const IMAGE_HINT: &str = "export DEVBOX_TEST_BASE_IMAGE=localhost/devbox-busybox:latest";

/// A project directory the engine's user owns, named uniquely per test and engine.
struct Proj {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    name: String,
}

fn project(e: &Engine, what: &str, toml: &str) -> Proj {
    let tmp = tempfile::Builder::new()
        .prefix("devbox-ports-")
        .tempdir()
        .unwrap();
    let name = format!(
        "pt{what}{}{}",
        e.name.replace('-', ""),
        std::process::id() % 100_000
    );
    let dir = tmp.path().join(&name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("sandbox.toml"),
        format!("[project]\nname = \"{name}\"\n\n{toml}"),
    )
    .unwrap();
    if let Some(user) = &e.user {
        let u = nix::unistd::User::from_name(user).unwrap().unwrap();
        for p in [tmp.path(), dir.as_path(), &dir.join("sandbox.toml")] {
            nix::unistd::chown(p, Some(u.uid), Some(u.gid)).unwrap();
        }
    }
    Proj {
        _tmp: tmp,
        dir,
        name,
    }
}

/// Runs `devbox down -t 1` when dropped (also when the test panics).
struct Down<'a>(&'a Engine, &'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = devbox(self.0, self.1, &["down", "-t", "1"]);
    }
}

/// The names of the project's networks and volumes, as the engine's own CLI lists them.
fn engine_resources(e: &Engine, project: &str) -> Vec<String> {
    let tool = if e.name == "docker" {
        "docker"
    } else {
        "podman"
    };
    let mut out = Vec::new();
    for what in ["network", "volume"] {
        let mut cmd = match &e.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", "env"]);
                for (k, v) in &e.env {
                    c.arg(format!("{k}={v}"));
                }
                c.arg(tool);
                c
            }
            None => {
                let mut c = Command::new(tool);
                c.envs(e.env.iter().map(|(k, v)| (*k, v.as_str())));
                c
            }
        };
        let o = cmd
            .args([
                what,
                "ls",
                "-q",
                "--filter",
                &format!("label=devbox.project={project}"),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{tool} {what} ls: {o:?}");
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| format!("{what} {l}")),
        );
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn held_port_is_refused_then_up_works_first_time(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let Some(image) = test_var("DEVBOX_TEST_BASE_IMAGE", IMAGE_HINT) else {
        return;
    };
    let port = free_port();
    let p = project(
        &e,
        "held",
        &format!(
            "[services.web]\nimage = \"{image}\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/\"]\nports = [\"{port}:8080\"]\n"
        ),
    );
    let _down = Down(&e, &p.dir);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    // This test process holds the port; devbox as another user cannot see whose it is.
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let holder = if e.user.is_some() {
        String::new()
    } else {
        format!(" by pid {} ({})", std::process::id(), comm.trim_end())
    };

    let doc = devbox(&e, &p.dir, &["doctor"]);
    let want = format!(
        "port 127.0.0.1:{port}: in use {}, not by this project",
        if holder.is_empty() {
            "by another process"
        } else {
            holder.trim_start()
        }
    );
    assert!(
        doc.stdout.contains(&want),
        "[{name}] doctor, wanted {want:?}:\n{}",
        doc.stdout
    );

    // Before: the engine's message twice, a container left `created`, and a CNI duplicate
    // IP allocation on the next `up`.
    let o = devbox(&e, &p.dir, &["up"]);
    assert_eq!(o.code, 1, "[{name}] {o:?}", o = (&o.stdout, &o.stderr));
    assert_eq!(
        o.stderr,
        format!(
            "error: service `web` cannot publish 127.0.0.1:{port}: it is in use{holder}\nhint: stop what holds it, or publish another host port in sandbox.toml; devbox changed nothing\n"
        ),
        "[{name}]"
    );
    assert_eq!(o.stdout, "", "[{name}]");
    assert!(
        containers(&e, &p.dir).is_empty(),
        "[{name}] a container was made"
    );
    assert_eq!(
        engine_resources(&e, &p.name),
        Vec::<String>::new(),
        "[{name}] a network or volume was made"
    );

    drop(listener);
    let o = ok(&e, &p.dir, &["up"]);
    assert!(o.stdout.contains("1 created"), "[{name}] {}", o.stdout);
    let doc = devbox(&e, &p.dir, &["doctor"]);
    assert!(
        doc.stdout.contains(&format!(
            "port 127.0.0.1:{port}: held by this project's running container {}-web (service `web`)",
            p.name
        )),
        "[{name}] doctor:\n{}",
        doc.stdout
    );
    // Up to date: its own port is not "in use".
    ok(&e, &p.dir, &["up"]);
}

#[test]
fn a_held_port_is_refused_naming_the_holder_on_podman() {
    held_port_is_refused_then_up_works_first_time("podman");
}

#[test]
fn a_held_port_is_refused_on_rootless_podman() {
    held_port_is_refused_then_up_works_first_time("podman-rootless");
}

#[test]
fn a_held_port_is_refused_naming_the_holder_on_docker() {
    held_port_is_refused_then_up_works_first_time("docker");
}

/// `down` of `toml`'s project, timed, after `up`.
fn timed_down(e: &Engine, what: &str, toml: &str) -> Duration {
    let p = project(e, what, toml);
    let _down = Down(e, &p.dir);
    ok(e, &p.dir, &["up"]);
    let t = Instant::now();
    ok(e, &p.dir, &["down"]);
    t.elapsed()
}

fn down_honours_init_and_stop_keys(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let Some(image) = test_var("DEVBOX_TEST_BASE_IMAGE", IMAGE_HINT) else {
        return;
    };
    // busybox httpd installs no SIGTERM handler; as PID 1 it ignored TERM for the whole
    // 10 s grace period, and the trapping service stops only on INT.
    let t = timed_down(
        &e,
        "init",
        &format!(
            r#"[services.web]
image = "{image}"
command = ["httpd", "-f", "-p", "8080", "-h", "/"]

[services.int]
image = "{image}"
command = ["sh", "-c", "trap '' TERM; trap 'exit 0' INT; while :; do sleep 0.1; done"]
stop_signal = "SIGINT"
"#
        ),
    );
    assert!(t < Duration::from_secs(5), "[{name}] down took {t:?}");
    // Ignores every signal it can: killed when its 1 s grace period is over.
    let t = timed_down(
        &e,
        "grace",
        &format!(
            r#"[services.stubborn]
image = "{image}"
command = ["sh", "-c", "trap '' TERM INT HUP QUIT; while :; do sleep 0.1; done"]
stop_grace_period = "1s"
"#
        ),
    );
    assert!(
        t >= Duration::from_millis(900) && t < Duration::from_secs(5),
        "[{name}] down took {t:?}"
    );
}

#[test]
fn down_is_quick_and_honours_stop_signal_and_grace_on_podman() {
    down_honours_init_and_stop_keys("podman");
}

#[test]
fn down_is_quick_and_honours_stop_signal_and_grace_on_rootless_podman() {
    down_honours_init_and_stop_keys("podman-rootless");
}

#[test]
fn down_is_quick_and_honours_stop_signal_and_grace_on_docker() {
    down_honours_init_and_stop_keys("docker");
}

fn port_taken_during_up_leaves_nothing(name: &'static str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let Some(e) = engine(name) else { return };
    let Some(image) = test_var("DEVBOX_TEST_BASE_IMAGE", IMAGE_HINT) else {
        return;
    };
    let port = free_port();
    let p = project(
        &e,
        "race",
        &format!(
            "[services.web]\nimage = \"{image}\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/\"]\nports = [\"{port}:8080\"]\n"
        ),
    );
    let _down = Down(&e, &p.dir);
    // Another process takes and frees the port over and over, so that it is sometimes
    // free when `up` checks and taken when the engine starts the container.
    let stop = Arc::new(AtomicBool::new(false));
    let toggler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let held = TcpListener::bind(("127.0.0.1", port));
                std::thread::sleep(Duration::from_millis(if held.is_ok() { 40 } else { 5 }));
                drop(held);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    let mut seen = [0u32; 3];
    for _ in 0..12 {
        let o = devbox(&e, &p.dir, &["up"]);
        if o.code == 0 {
            seen[2] += 1;
            ok(&e, &p.dir, &["down", "-t", "1"]);
            continue;
        }
        if o.stderr.starts_with("error: service `web` cannot publish") {
            seen[0] += 1;
            assert!(containers(&e, &p.dir).is_empty(), "[{name}] {}", o.stderr);
        } else {
            // Taken after the check: the start failed; the container is gone and the
            // engine's message is said once.
            seen[1] += 1;
            assert!(
                o.stderr.matches("address already in use").count() == 1,
                "[{name}] {}",
                o.stderr
            );
            assert!(
                containers(&e, &p.dir).is_empty(),
                "[{name}] a container was left after a failed start:\n{}",
                o.stderr
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    toggler.join().unwrap();
    eprintln!(
        "[{name}] refused by the check {}, failed start {}, up {}",
        seen[0], seen[1], seen[2]
    );
    // Free now: the next `up` works the first time (no stale address from a failed try).
    let o = ok(&e, &p.dir, &["up"]);
    assert!(o.stdout.contains("1 created"), "[{name}] {}", o.stdout);
}

#[test]
fn a_port_taken_during_up_leaves_no_container_on_podman() {
    port_taken_during_up_leaves_nothing("podman");
}

#[test]
fn a_port_taken_during_up_leaves_no_container_on_rootless_podman() {
    port_taken_during_up_leaves_nothing("podman-rootless");
}

#[test]
fn a_port_taken_during_up_leaves_no_container_on_docker() {
    port_taken_during_up_leaves_nothing("docker");
}
