//! An engine that stops answering must not hang devbox: fake sockets served here (one
//! that accepts and never reads, one that reads and never replies, one that sends its
//! headers a byte a second), and a proxy in front of a real engine that freezes on cue.
//! Every command gets a short `--engine-timeout` so each case takes a second or two.
//!
//! The fake-socket cases need no engine. The `auto`, proxy and streaming cases need the
//! real ones (`DEVBOX_TEST_*`, as in engine.rs) and skip without them, unless
//! `DEVBOX_REQUIRE_ENGINES=1` makes that a failure.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{test_var, Output, Project, BIN};

const HINT: &str = "hint: `devbox doctor` checks the engine and its socket; --engine-timeout DURATION (or DEVBOX_ENGINE_TIMEOUT) gives a slow engine longer\n";

/// How long past its deadline devbox may take to exit (start-up, a loaded machine).
const SLACK: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy)]
enum Fault {
    AcceptsNeverReads,
    ReadsNeverReplies,
    SlowHeaders,
}

/// A Unix socket served by this test that misbehaves as `fault` says, for as long as
/// the test runs.
fn fake_engine(fault: Fault) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("devbox-deadline-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("engine.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            match fault {
                Fault::AcceptsNeverReads => held.push(conn),
                Fault::ReadsNeverReplies | Fault::SlowHeaders => {
                    std::thread::spawn(move || {
                        read_request(&mut conn);
                        if let Fault::SlowHeaders = fault {
                            let reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
                            for b in reply {
                                if conn.write_all(&[*b]).is_err() {
                                    return;
                                }
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                        // Hold the connection open, never finishing.
                        loop {
                            std::thread::sleep(Duration::from_secs(60));
                        }
                    });
                }
            }
        }
    });
    (dir, socket)
}

/// Reads up to the end of a request's headers.
fn read_request(conn: &mut UnixStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// devbox as the user runs it, with only the engine variables given here.
fn devbox(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("DEVBOX_") || k == "CONTAINER_HOST" || k == "DOCKER_HOST" {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1").env("CI", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    cmd
}

/// A running devbox whose output is collected as it comes.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    started: Instant,
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let into = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("devbox starts");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits for the exit; a devbox still running after `limit` is killed and fails the
    /// test (it hangs).
    fn finish(mut self, limit: Duration) -> (Output, Duration) {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = self.started.elapsed();
                // The readers see the end of the pipes just after the exit.
                std::thread::sleep(Duration::from_millis(50));
                return (
                    Output {
                        code: status.code().unwrap_or(-1),
                        stdout: self.stdout(),
                        stderr: self.stderr.lock().unwrap().clone(),
                    },
                    took,
                );
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "devbox still running after {limit:?} (it hangs); so far:\n{}{}",
                    self.stdout(),
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is still running; kills it when it is.
    fn still_running(mut self) -> (bool, String, String) {
        let running = self.child.try_wait().unwrap().is_none();
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(50));
        (running, self.stdout(), self.stderr.lock().unwrap().clone())
    }
}

fn host_var(kind: &str) -> &'static str {
    if kind == "podman" {
        "CONTAINER_HOST"
    } else {
        "DOCKER_HOST"
    }
}

const SIMPLE: &str = "[project]\nname = \"dl\"\n[services.app]\nimage = \"localhost/x\"\n";

/// Each command, on each engine kind, against a socket with `fault`: it exits non-zero
/// within the deadline and says which engine, which socket, what it was doing, and
/// where to look.
fn every_command_gives_up_on(fault: Fault) {
    let (_dir, socket) = fake_engine(fault);
    let sock = socket.display().to_string();
    let mut runs = Vec::new();
    for kind in ["podman", "docker"] {
        for cmd in ["status", "up", "down", "logs", "doctor"] {
            // Each with its own state directory: `up` and `down` take the project's lock,
            // which is keyed by the project's name, and these all run at once.
            let p = Project::new();
            p.write("sandbox.toml", SIMPLE);
            let mut args = vec!["--engine", kind, cmd];
            if cmd == "up" {
                args.extend(["--timeout", "5s"]);
            }
            let env = [
                (host_var(kind), format!("unix://{sock}")),
                ("DEVBOX_ENGINE_TIMEOUT", "1s".to_owned()),
                (
                    "XDG_STATE_HOME",
                    p.path().join("state").display().to_string(),
                ),
            ];
            let run = Running::start(devbox(p.path(), &env, &args));
            runs.push((kind, cmd, p, run));
        }
    }
    for (kind, cmd, _p, run) in runs {
        let (o, took) = run.finish(Duration::from_secs(20));
        let what = format!("{kind} {cmd} against a socket that {fault:?}");
        assert_eq!(o.code, 1, "{what}: {o:?}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(1) + SLACK,
            "{what}: took {took:?}"
        );
        if cmd == "doctor" {
            let line = format!(
                "FAIL  engine: {}: {kind} at {sock}: did not answer within 1s while asking for its version\n      fix: it accepts connections but does not answer: restart the engine (or whatever serves the socket); --engine-timeout DURATION gives a slow engine longer\n",
                host_var(kind)
            );
            assert!(o.stdout.contains(&line), "{what}: {o:?}");
            continue;
        }
        // `up` too looks at the project's containers first (which checkout made them).
        let doing = "listing the containers of project dl";
        assert_eq!(
            o.stderr,
            format!("error: {kind} at {sock}: did not answer within 1s while {doing}\n{HINT}"),
            "{what}"
        );
    }
}

#[test]
fn a_socket_that_accepts_and_never_reads_ends_every_command_in_time() {
    every_command_gives_up_on(Fault::AcceptsNeverReads);
}

#[test]
fn a_socket_that_reads_and_never_replies_ends_every_command_in_time() {
    every_command_gives_up_on(Fault::ReadsNeverReplies);
}

#[test]
fn a_socket_that_sends_headers_a_byte_a_second_ends_every_command_in_time() {
    every_command_gives_up_on(Fault::SlowHeaders);
}

#[test]
fn a_bad_engine_timeout_is_refused() {
    let p = Project::new();
    p.write("sandbox.toml", SIMPLE);
    let (o, _) = Running::start(devbox(
        p.path(),
        &[("DEVBOX_ENGINE_TIMEOUT", "0s".into())],
        &["status"],
    ))
    .finish(Duration::from_secs(10));
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "error: invalid value '0s' for '--engine-timeout <DURATION>': must be more than 0\nhint: a duration like 30s or 2m, from --engine-timeout or DEVBOX_ENGINE_TIMEOUT\n\nFor more information, try '--help'.\n"
    );
    // The flag wins over the variable.
    let (o, _) = Running::start(devbox(
        p.path(),
        &[("DEVBOX_ENGINE_TIMEOUT", "5s".into())],
        &["--engine-timeout", "soon", "status"],
    ))
    .finish(Duration::from_secs(10));
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "error: invalid value 'soon' for '--engine-timeout <DURATION>': expected number at 0\nhint: a duration like 30s or 2m, from --engine-timeout or DEVBOX_ENGINE_TIMEOUT\n\nFor more information, try '--help'.\n"
    );
}

#[test]
fn auto_skips_sockets_that_do_not_answer_and_takes_the_next() {
    // `auto` took CONTAINER_HOST as given, so a hung socket there hung every command.
    let Some(_podman) = test_var(
        "DEVBOX_TEST_PODMAN_SOCKET",
        "run scripts/setup-engines and export what it prints",
    ) else {
        return;
    };
    let (_d1, dead_podman) = fake_engine(Fault::ReadsNeverReplies);
    let (_d2, dead_docker) = fake_engine(Fault::AcceptsNeverReads);
    let p = Project::new();
    p.write("sandbox.toml", SIMPLE);
    let env = [
        (
            "CONTAINER_HOST",
            format!("unix://{}", dead_podman.display()),
        ),
        ("DOCKER_HOST", format!("unix://{}", dead_docker.display())),
        // The probe is 5s, or the engine timeout when that is shorter.
        ("DEVBOX_ENGINE_TIMEOUT", "2s".to_owned()),
    ];
    let (o, took) = Running::start(devbox(p.path(), &env, &["--engine", "auto", "status"]))
        .finish(Duration::from_secs(30));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stderr,
        format!(
            "devbox: skipping podman at {} (CONTAINER_HOST): did not answer within 2s\ndevbox: skipping docker at {} (DOCKER_HOST): did not answer within 2s\n",
            dead_podman.display(),
            dead_docker.display()
        )
    );
    assert!(o.stdout.starts_with("SERVICE  STATE"), "{o:?}");
    assert!(took < Duration::from_secs(4) + SLACK, "took {took:?}");
}

/// A proxy in front of a real engine's socket. It forwards both ways until it freezes —
/// on cue, or on the `nth` request that contains `pattern` (which it keeps) — and then
/// forwards nothing more, holding every connection open.
struct Proxy {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    frozen: Arc<AtomicBool>,
}

fn hold() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn pump(
    mut from: UnixStream,
    mut to: UnixStream,
    frozen: Arc<AtomicBool>,
    trigger: Option<(&'static str, Arc<Mutex<usize>>)>,
) {
    let mut buf = [0u8; 65536];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if let Some((pattern, left)) = &trigger {
            let text = String::from_utf8_lossy(&buf[..n]);
            let mut left = left.lock().unwrap();
            for _ in text.matches(pattern) {
                if *left > 0 {
                    *left -= 1;
                    if *left == 0 {
                        frozen.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
        if frozen.load(Ordering::SeqCst) {
            hold();
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn proxy(upstream: &Path, freeze_on: Option<(&'static str, usize)>) -> Proxy {
    let dir = tempfile::Builder::new()
        .prefix("devbox-proxy-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("engine.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let upstream = upstream.to_path_buf();
    let f = frozen.clone();
    let left = freeze_on.map(|(p, n)| (p, Arc::new(Mutex::new(n))));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { return };
            let Ok(server) = UnixStream::connect(&upstream) else {
                continue;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (f1, f2) = (f.clone(), f.clone());
            let trigger = left.clone();
            std::thread::spawn(move || pump(client, server, f1, trigger));
            std::thread::spawn(move || pump(s2, c2, f2, None));
        }
    });
    Proxy {
        _dir: dir,
        socket,
        frozen,
    }
}

/// The real engine `kind` runs on, or a skip (a failure with DEVBOX_REQUIRE_ENGINES=1).
fn real(kind: &str) -> Option<(PathBuf, String)> {
    let var = if kind == "podman" {
        "DEVBOX_TEST_PODMAN_SOCKET"
    } else {
        "DEVBOX_TEST_DOCKER_SOCKET"
    };
    let hint = "run scripts/setup-engines and export what it prints";
    let socket = test_var(var, hint)?;
    let image = test_var("DEVBOX_TEST_BASE_IMAGE", hint)?;
    Some((PathBuf::from(socket), image))
}

/// `NAME STATE` (`running`, `created`, …) of every container of `project` on the
/// engine, by its own CLI.
fn containers(kind: &str, socket: &Path, project: &str) -> Vec<String> {
    let url = if kind == "podman" { "--url" } else { "--host" };
    let out = Command::new(kind)
        .arg(url)
        .arg(format!("unix://{}", socket.display()))
        .args(["ps", "-a", "--filter"])
        .arg(format!("label=devbox.project={project}"))
        .args(["--format", "{{.Names}} {{.State}}"])
        .output()
        .expect("the engine's CLI runs");
    assert!(out.status.success(), "{out:?}");
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            // Podman says `Up 3 seconds ago` where Docker says `running`.
            let (name, state) = l.split_once(' ').unwrap_or((l, ""));
            let state = state.split(' ').next().unwrap_or_default().to_lowercase();
            let state = if state == "up" { "running" } else { &state };
            format!("{name} {state}")
        })
        .collect();
    list.sort();
    list
}

fn run(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    Running::start(devbox(dir, env, args))
        .finish(Duration::from_secs(60))
        .0
}

/// `up` through a proxy that freezes on the second container start: `up` fails with
/// the engine, the socket and the container it was starting; `down` on the real socket
/// then removes the half-started project.
fn frozen_proxy_mid_up(kind: &str) {
    let Some((socket, image)) = real(kind) else {
        return;
    };
    let project = format!("dlproxy-{kind}");
    let p = Project::new();
    p.write(
        "sandbox.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\n[services.a]\nimage = \"{image}\"\ncommand = [\"sleep\", \"600\"]\n\n[services.b]\nimage = \"{image}\"\ncommand = [\"sleep\", \"600\"]\ndepends_on = {{ a = \"started\" }}\n"
        ),
    );
    let direct = [(host_var(kind), format!("unix://{}", socket.display()))];
    // Leftovers of an earlier run would change what `up` asks.
    run(
        p.path(),
        &direct,
        &["--engine", kind, "down", "--timeout", "1"],
    );
    let px = proxy(&socket, Some(("/start", 2)));
    let via = [
        (host_var(kind), format!("unix://{}", px.socket.display())),
        ("DEVBOX_ENGINE_TIMEOUT", "5s".to_owned()),
    ];
    let (o, took) = Running::start(devbox(
        p.path(),
        &via,
        &["--engine", kind, "up", "--timeout", "30s"],
    ))
    .finish(Duration::from_secs(60));
    assert!(
        px.frozen.load(Ordering::SeqCst),
        "the proxy never froze: {o:?}"
    );
    assert_eq!(o.code, 1, "{o:?}");
    let error = format!(
        "error: {kind} at {}: did not answer within 5s while starting container {project}-b\n{HINT}",
        px.socket.display()
    );
    assert!(o.stderr.ends_with(&error), "{o:?}");
    assert!(took < Duration::from_secs(25), "took {took:?}");
    assert_eq!(
        containers(kind, &socket, &project),
        [
            format!("{project}-a running"),
            format!("{project}-b created")
        ]
    );
    let o = run(
        p.path(),
        &direct,
        &["--engine", kind, "down", "--timeout", "1"],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .starts_with(&format!("{project} is down: 2 containers and ")),
        "{o:?}"
    );
    assert_eq!(containers(kind, &socket, &project), Vec::<String>::new());
}

#[test]
fn up_through_a_proxy_that_freezes_fails_and_down_cleans_up_podman() {
    frozen_proxy_mid_up("podman");
}

#[test]
fn up_through_a_proxy_that_freezes_fails_and_down_cleans_up_docker() {
    frozen_proxy_mid_up("docker");
}

/// Logs and exec: a followed stream of a quiet service keeps going while the engine
/// answers; a followed stream ends once the engine (here the proxy) stops answering; a
/// one-shot read whose answer never comes ends after the deadline; a quiet exec
/// finishes, one whose start is never answered ends.
fn logs_and_exec_liveness(kind: &str) {
    let Some((socket, image)) = real(kind) else {
        return;
    };
    let project = format!("dllogs-{kind}");
    let p = Project::new();
    p.write(
        "sandbox.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\n[services.a]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"echo hello; exec sleep 600\"]\n"
        ),
    );
    let direct = [(host_var(kind), format!("unix://{}", socket.display()))];
    let o = run(p.path(), &direct, &["--engine", kind, "up"]);
    assert_eq!(o.code, 0, "{o:?}");

    // Quiet for three times the limit, and still following.
    let follow = ["--engine", kind, "--engine-timeout", "1s", "logs", "-f"];
    let r = Running::start(devbox(p.path(), &direct, &follow));
    std::thread::sleep(Duration::from_millis(3500));
    let (running, out, err) = r.still_running();
    assert!(running, "a quiet `logs -f` ended: {out}{err}");
    assert_eq!(out, "a | hello\n");

    // The engine freezes under a followed stream.
    let px = proxy(&socket, None);
    let via = [
        (host_var(kind), format!("unix://{}", px.socket.display())),
        ("DEVBOX_ENGINE_TIMEOUT", "2s".to_owned()),
    ];
    let r = Running::start(devbox(p.path(), &via, &["--engine", kind, "logs", "-f"]));
    let start = Instant::now();
    while !r.stdout().contains("hello") && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    px.frozen.store(true, Ordering::SeqCst);
    let frozen_at = Instant::now();
    let (o, _) = r.finish(Duration::from_secs(30));
    let took = frozen_at.elapsed();
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.stdout, "a | hello\n");
    assert_eq!(
        o.stderr,
        format!(
            "error: {kind} at {}: did not answer a ping within 2s while following the logs of container {project}-a\n{HINT}",
            px.socket.display()
        )
    );
    assert!(took < Duration::from_secs(4) + SLACK, "took {took:?}");

    // A one-shot read the engine never answers.
    let px = proxy(&socket, Some(("/logs", 1)));
    let via = [
        (host_var(kind), format!("unix://{}", px.socket.display())),
        ("DEVBOX_ENGINE_TIMEOUT", "2s".to_owned()),
    ];
    let (o, took) = Running::start(devbox(p.path(), &via, &["--engine", kind, "logs"]))
        .finish(Duration::from_secs(30));
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(
        o.stderr,
        format!(
            "error: {kind} at {}: did not answer within 2s while reading the logs of container {project}-a\n{HINT}",
            px.socket.display()
        )
    );
    assert!(took < Duration::from_secs(2) + SLACK, "took {took:?}");

    // An exec quiet for more than twice the limit finishes; one the engine never starts
    // ends.
    let exec = [
        "--engine",
        kind,
        "--engine-timeout",
        "2s",
        "exec",
        "a",
        "--",
        "sh",
        "-c",
        "sleep 5; echo done",
    ];
    let o = run(p.path(), &direct, &exec);
    assert_eq!((o.code, o.stdout.as_str()), (0, "done\n"), "{o:?}");
    let px = proxy(&socket, Some(("/exec/", 1)));
    let via = [
        (host_var(kind), format!("unix://{}", px.socket.display())),
        ("DEVBOX_ENGINE_TIMEOUT", "2s".to_owned()),
    ];
    let (o, took) = Running::start(devbox(
        p.path(),
        &via,
        &["--engine", kind, "exec", "a", "--", "sleep", "5"],
    ))
    .finish(Duration::from_secs(30));
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(
        o.stderr,
        format!(
            "error: {kind} at {}: did not answer a ping within 2s while running `sleep 5` in container {project}-a\n{HINT}",
            px.socket.display()
        )
    );
    assert!(took < Duration::from_secs(4) + SLACK, "took {took:?}");

    let o = run(
        p.path(),
        &direct,
        &["--engine", kind, "down", "--timeout", "1"],
    );
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn logs_and_exec_end_when_the_engine_freezes_podman() {
    logs_and_exec_liveness("podman");
}

#[test]
fn logs_and_exec_end_when_the_engine_freezes_docker() {
    logs_and_exec_liveness("docker");
}

/// Builds: a `RUN` step quiet for longer than the limit finishes, because the engine
/// answers the pings; a build whose engine freezes under it ends within twice the limit.
fn build_liveness(kind: &str) {
    let Some((socket, image)) = real(kind) else {
        return;
    };
    let project = format!("dlbuild-{kind}");
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let p = Project::new();
    p.write(
        "sandbox.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\n[images.app]\ncontainerfile = \"Containerfile\"\ncontext = \".\"\n\n[services.app]\nimage = \"app\"\ncommand = [\"sleep\", \"600\"]\n"
        ),
    );
    let direct = [
        (host_var(kind), format!("unix://{}", socket.display())),
        ("DEVBOX_ENGINE_TIMEOUT", "3s".to_owned()),
    ];
    // What earlier runs built.
    run(
        p.path(),
        &direct,
        &["--engine", kind, "reset", "--yes", "--images"],
    );

    // Quiet for 7s under a 3s limit: two pings, both answered.
    p.write(
        "Containerfile",
        &format!("FROM {image}\nRUN echo quiet-{nonce} && sleep 7\n"),
    );
    let o = run(p.path(), &direct, &["--engine", kind, "up"]);
    assert_eq!(o.code, 0, "{o:?}");

    let px = proxy(&socket, None);
    let via = [
        (host_var(kind), format!("unix://{}", px.socket.display())),
        ("DEVBOX_ENGINE_TIMEOUT", "3s".to_owned()),
    ];
    p.write(
        "Containerfile",
        &format!("FROM {image}\nRUN echo frozen-{nonce} && sleep 10\n"),
    );
    let r = Running::start(devbox(p.path(), &via, &["--engine", kind, "up", "-v"]));
    let start = Instant::now();
    while !r
        .stderr
        .lock()
        .unwrap()
        .contains(&format!("frozen-{nonce}"))
        && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    px.frozen.store(true, Ordering::SeqCst);
    let frozen_at = Instant::now();
    let (o, _) = r.finish(Duration::from_secs(30));
    let took = frozen_at.elapsed();
    assert_eq!(o.code, 1, "{o:?}");
    let error = format!(
        "\nerror: {kind} at {}: did not answer a ping within 3s while building localhost/devbox-{project}-app:",
        px.socket.display()
    );
    assert!(o.stderr.contains(&error), "{o:?}");
    assert!(o.stderr.ends_with(HINT), "{o:?}");
    assert!(took < Duration::from_secs(6) + SLACK, "took {took:?}");

    let o = run(
        p.path(),
        &direct,
        &["--engine", kind, "reset", "--yes", "--images"],
    );
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn a_quiet_build_finishes_and_a_frozen_one_ends_podman() {
    build_liveness("podman");
}

#[test]
fn a_quiet_build_finishes_and_a_frozen_one_ends_docker() {
    build_liveness("docker");
}
