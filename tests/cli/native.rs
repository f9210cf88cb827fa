//! The native engine, for real: services without an image brought up, inspected, entered
//! and torn down by devbox alone, with no container engine, each in a sandbox of devbox's
//! runner held by the project's supervisor. Every case runs as root and as the
//! unprivileged user DEVBOX_TEST_ROOTLESS_USER (through `runuser`). Each project's
//! services carry a marker in their environment, so that whatever they started is found
//! in /proc — and must be gone after `down`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{test_var, BIN};

/// A native project in a temporary directory, with its own runtime and data
/// directories, as one user. Dropping it takes the project down and kills whatever still
/// carries its marker.
pub(crate) struct Native {
    pub(crate) user: Option<String>,
    dir: tempfile::TempDir,
    pub(crate) project: String,
    pub(crate) mark: String,
}

#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `case` as root, then as the unprivileged user (a skip when there is none and
/// engines are not required).
pub(crate) fn each(case: impl Fn(Option<&str>)) {
    case(None);
    if let Some(user) = test_var(
        "DEVBOX_TEST_ROOTLESS_USER",
        "run scripts/setup-engines and export what it prints",
    ) {
        case(Some(&user));
    }
}

impl Native {
    /// `toml` with `{project}` and `{mark}` filled in.
    pub(crate) fn new(user: Option<&str>, name: &str, toml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("devbox-native-")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let who = if user.is_some() { "user" } else { "root" };
        let project = format!("{name}-{who}");
        let mark = format!("NATIVE_TEST_MARK={project}-{}", std::process::id());
        let n = Self {
            user: user.map(str::to_owned),
            dir,
            project,
            mark,
        };
        n.write_toml(toml);
        let rt = n.path().join("rt");
        std::fs::create_dir(&rt).unwrap();
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o700)).unwrap();
        if let Some(u) = user {
            let st = Command::new("chown")
                .args(["-R", u, &n.path().display().to_string()])
                .status()
                .unwrap();
            assert!(st.success(), "chown to {u}");
        }
        n
    }

    pub(crate) fn write_toml(&self, toml: &str) {
        let value = self.mark.split_once('=').unwrap().1;
        let text = toml
            .replace("{project}", &self.project)
            .replace("{mark}", value);
        std::fs::write(self.path().join("sandbox.toml"), text).unwrap();
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.base(BIN);
        c.args(args);
        c
    }

    /// `program` as the project's user, in its directory, with its runtime and data
    /// directories and no engine to be found.
    pub(crate) fn base(&self, program: &str) -> Command {
        let mut c = match &self.user {
            None => Command::new(program),
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", program]);
                c
            }
        };
        c.current_dir(self.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("DEVBOX_") {
                c.env_remove(k);
            }
        }
        // No engine to be found: the native engine needs none.
        c.env("CONTAINER_HOST", "unix:///nonexistent/podman.sock")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("HOME", self.path())
            .env("XDG_RUNTIME_DIR", self.path().join("rt"))
            .env("XDG_DATA_HOME", self.path().join("share"))
            .env("XDG_STATE_HOME", self.path().join("state"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("devbox runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(o.code, 0, "devbox {args:?} as {:?}: {o:#?}", self.user);
        o
    }

    /// Every process carrying this project's marker.
    pub(crate) fn leftovers(&self) -> Vec<u32> {
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|v| v == self.mark.as_bytes()) {
                found.push(pid);
            }
        }
        found
    }

    /// The services' rows of `status --json`.
    fn status(&self) -> Vec<serde_json::Value> {
        let o = self.ok(&["status", "--json"]);
        serde_json::from_str(&o.stdout).unwrap()
    }

    fn row(&self, service: &str) -> serde_json::Value {
        self.status()
            .into_iter()
            .find(|r| r["service"] == service)
            .unwrap_or_else(|| panic!("no row for {service}"))
    }

    fn supervisor_pid(&self) -> Option<u32> {
        let file = self
            .path()
            .join("rt/devbox/native")
            .join(&self.project)
            .join("supervisor.pid");
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// The live processes (not zombies) whose command line has `word` and this project's
    /// directory: its supervisors (`__native-supervisor`), a `verify` of it.
    fn processes(&self, word: &str) -> Vec<u32> {
        let dir = self.path().display().to_string();
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let here = cmd.contains(&dir) || cwd.starts_with(self.path());
            if cmd.contains(word) && here && !cmd.starts_with("runuser") {
                found.push(pid);
            }
        }
        found
    }

    fn supervisors(&self) -> Vec<u32> {
        self.processes("__native-supervisor")
    }

    /// Waits (a little) for every marked process to be gone.
    fn assert_no_leftovers(&self, after: &str) {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            if Instant::now() > end {
                let cmdlines: Vec<String> = left
                    .iter()
                    .map(|p| {
                        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                            .unwrap_or_default()
                            .replace('\0', " ")
                    })
                    .collect();
                panic!(
                    "after {after}, still running as {:?}: {cmdlines:?}",
                    self.user
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
        for pid in self.leftovers() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(pid) = self.supervisor_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Log lines without the runner's warnings (an unprivileged user on cgroup v1 is told
/// once per run that its limits are rlimits).
fn own_lines(logs: &str) -> String {
    logs.lines()
        .filter(|l| !l.contains("| devbox: warning: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

const WEB: &str = r#"
[project]
name = "{project}"

[services.web]
command = ["sh", "-c", "echo hello from web; exec sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
"#;

#[test]
fn native_services_come_up_answer_and_go_with_no_container_engine() {
    each(|who| {
        let n = Native::new(who, "nat-life", WEB);
        let up = n.ok(&["up"]);
        assert!(
            up.stderr
                .starts_with("devbox: no service has an image: running natively (engine native)\n"),
            "{up:#?}"
        );
        assert!(
            up.stdout
                .starts_with(&format!("{} is up on native (", n.project)),
            "{up:#?}"
        );
        let web = n.row("web");
        assert_eq!(web["state"], "running", "{web}");
        assert_eq!(web["image"], "", "{web}");
        let pid = web["pid"].as_u64().expect("a pid") as u32;
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the sandbox's init runs"
        );
        assert!(!n.leftovers().is_empty(), "the service runs");

        let logs = n.ok(&["logs", "web"]);
        assert_eq!(
            own_lines(&logs.stdout),
            "web | hello from web\n",
            "{logs:#?}"
        );

        let id = n.ok(&["exec", "-T", "web", "--", "id", "-u"]);
        let inside_uid = id.stdout.trim().parse::<u32>().expect("a uid");
        // The service's user (the hardened default), inside its own user namespace.
        assert_eq!(inside_uid, 65532, "{id:#?}");
        let failed = n.run(&[
            "exec",
            "-T",
            "web",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ]);
        assert_eq!(
            (failed.code, failed.stdout.as_str(), failed.stderr.as_str()),
            (7, "out\n", "err\n")
        );
        // An exec is no stronger than the service: no capabilities at all.
        let caps = n.ok(&[
            "exec",
            "-T",
            "web",
            "--",
            "grep",
            "^CapEff",
            "/proc/self/status",
        ]);
        assert_eq!(caps.stdout, "CapEff:\t0000000000000000\n");

        // The service's environment (and -e) reach the command, and no one can read it
        // in /proc while it runs: it is never on a command line.
        let exec = n.command(&[
            "exec",
            "-T",
            "-e",
            "EXTRA=given",
            "web",
            "--",
            "sh",
            "-c",
            "sleep 1; echo $EXTRA $NATIVE_TEST_MARK",
        ]);
        let running = std::thread::spawn({
            let mut exec = exec;
            move || exec.output().unwrap()
        });
        std::thread::sleep(Duration::from_millis(500));
        let mut seen = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(&n.mark) {
                    seen.push(cmdline);
                }
            }
        }
        let out = running.join().unwrap();
        let value = n.mark.split_once('=').unwrap().1;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("given {value}\n")
        );
        assert!(seen.is_empty(), "on a command line: {seen:?}");

        let down = n.ok(&["down"]);
        assert!(
            down.stdout
                .starts_with(&format!("{} is down: 1 container", n.project)),
            "{down:#?}"
        );
        n.assert_no_leftovers("down");
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        let after = n.row("web");
        assert_eq!(after["state"], "not created");
    });
}

#[test]
fn a_second_up_keeps_the_sandboxes_and_an_edit_restarts_only_its_service() {
    let two = r#"
[project]
name = "{project}"

[services.a]
command = ["sleep", "1000"]
env = { NATIVE_TEST_MARK = "{mark}" }

[services.b]
command = ["sleep", "1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
"#;
    each(|who| {
        let n = Native::new(who, "nat-converge", two);
        n.ok(&["up"]);
        let pids = |n: &Native| (n.row("a")["pid"].as_u64(), n.row("b")["pid"].as_u64());
        let first = pids(&n);
        assert!(first.0.is_some() && first.1.is_some(), "{first:?}");
        let again = n.ok(&["up"]);
        assert!(again.stdout.contains(": 2 unchanged in "), "{again:#?}");
        assert_eq!(pids(&n), first, "a second up keeps both sandboxes");

        n.write_toml(&two.replacen(
            r#"command = ["sleep", "1000"]"#,
            r#"command = ["sleep", "2000"]"#,
            1,
        ));
        let edited = n.ok(&["up"]);
        assert!(
            edited.stdout.contains(": 1 recreated, 1 unchanged in "),
            "{edited:#?}"
        );
        let now = pids(&n);
        assert_ne!(now.0, first.0, "the edited service was restarted");
        assert_eq!(now.1, first.1, "the other one was left alone");
        assert!(!Path::new(&format!("/proc/{}", first.0.unwrap())).exists());
        n.ok(&["down"]);
        n.assert_no_leftovers("down");
    });
}

#[test]
fn a_double_forked_daemon_does_not_outlive_down() {
    let daemon = r#"
[project]
name = "{project}"

[services.d]
command = ["sh", "-c", "setsid sh -c 'sleep 1000 & ' & exec sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
"#;
    each(|who| {
        let n = Native::new(who, "nat-daemon", daemon);
        n.ok(&["up"]);
        // The service, and the orphan its grandchild left in a session of its own.
        let end = Instant::now() + Duration::from_secs(5);
        while n.leftovers().len() < 2 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(n.leftovers().len(), 2, "{:?}", n.leftovers());
        n.ok(&["down"]);
        n.assert_no_leftovers("down");
    });
}

#[test]
fn a_killed_supervisor_takes_its_services_with_it_and_the_next_down_cleans_up() {
    each(|who| {
        let n = Native::new(who, "nat-kill", WEB);
        n.ok(&["up"]);
        let sup = n.supervisor_pid().expect("a supervisor pid file");
        assert!(!n.leftovers().is_empty());
        // Detached, it holds no directory of the project's.
        assert_eq!(
            std::fs::read_link(format!("/proc/{sup}/cwd")).unwrap(),
            Path::new("/")
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sup as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        n.assert_no_leftovers("SIGKILL of the supervisor");
        // Its records remain: the container is reported exited, and down removes it.
        let web = n.row("web");
        assert_eq!(web["state"], "exited", "{web}");
        let down = n.ok(&["down"]);
        assert!(
            down.stdout
                .starts_with(&format!("{} is down: 1 container", n.project)),
            "{down:#?}"
        );
        assert_eq!(n.row("web")["state"], "not created");
    });
}

#[test]
fn a_service_that_never_becomes_healthy_fails_up_with_its_last_lines() {
    let sick = r#"
[project]
name = "{project}"

[services.sick]
command = ["sh", "-c", "echo warming up; sleep 0.1; echo cannot bind >&2; exec sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
healthcheck = { cmd = ["false"], interval = "300ms", retries = 2 }
"#;
    each(|who| {
        let n = Native::new(who, "nat-sick", sick);
        let up = n.run(&["up", "--timeout", "20s"]);
        assert_eq!(up.code, 1, "{up:#?}");
        assert!(
            up.stderr
                .contains("error: service `sick` is unhealthy\nlast log lines:\n"),
            "{up:#?}"
        );
        assert!(
            up.stderr.ends_with(
                "  | warming up\n  | cannot bind\n  | devbox: healthcheck failed: `false` exited with code 1\n"
            ),
            "{up:#?}"
        );
        n.ok(&["down"]);
        n.assert_no_leftovers("down");
    });
}

#[test]
fn a_service_that_exits_at_once_fails_up_and_ten_others_start_side_by_side() {
    // Services with no dependency between them start together; one that dies at once is
    // caught by the settle time (25 ms natively), with its last lines.
    let mut toml = String::from("[project]\nname = \"{project}\"\n");
    for i in 0..10 {
        toml.push_str(&format!(
            "\n[services.s{i}]\ncommand = [\"sleep\", \"1000\"]\nenv = {{ NATIVE_TEST_MARK = \"{{mark}}\" }}\n"
        ));
    }
    let fine = toml.clone();
    toml.push_str(
        "\n[services.bad]\ncommand = [\"sh\", \"-c\", \"echo no config file >&2; exit 3\"]\nenv = { NATIVE_TEST_MARK = \"{mark}\" }\n",
    );
    each(|who| {
        let n = Native::new(who, "nat-once", &toml);
        let up = n.run(&["up"]);
        assert_eq!(up.code, 1, "{up:#?}");
        assert!(
            up.stderr.contains(
                "error: service `bad` exited with code 3 while starting\nlast log lines:\n"
            ) && up.stderr.ends_with("  | no config file\n"),
            "{up:#?}"
        );
        n.ok(&["down"]);
        n.write_toml(&fine);
        let up = n.ok(&["up"]);
        assert!(up.stdout.contains(": 10 created in "), "{up:#?}");
        let rows = n.status();
        assert_eq!(rows.len(), 10);
        assert!(rows.iter().all(|r| r["state"] == "running"), "{rows:#?}");
        n.ok(&["down"]);
        n.assert_no_leftovers("down");
    });
}

#[test]
fn on_failure_restarts_a_service_and_counts_it() {
    let flaky = r#"
[project]
name = "{project}"

[services.flaky]
command = ["sh", "-c", "echo attempt; sleep 0.2; exit 3"]
env = { NATIVE_TEST_MARK = "{mark}" }
restart = "on-failure:2"
"#;
    each(|who| {
        let n = Native::new(who, "nat-flaky", flaky);
        n.ok(&["up"]);
        // 0.2 s runs, 100 ms then 200 ms apart: the second restart ends within 2 s.
        let end = Instant::now() + Duration::from_secs(10);
        let row = loop {
            let r = n.row("flaky");
            if r["restarts"] == 2 && r["state"] == "exited" {
                break r;
            }
            assert!(Instant::now() < end, "{r}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(row["restarts"], 2, "{row}");
        let logs = n.ok(&["logs", "flaky"]);
        assert_eq!(
            own_lines(&logs.stdout),
            "flaky | attempt\n".repeat(3),
            "{logs:#?}"
        );
        let table = n.ok(&["status"]);
        assert!(
            table
                .stdout
                .contains("\nflaky    exited (2 restarts)  -       -      "),
            "{table:#?}"
        );
        // No third restart: on-failure:2.
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(n.row("flaky")["restarts"], 2);
        n.ok(&["down"]);
        n.assert_no_leftovers("down");
    });
}

/// A copy of `examples/NAME` as it is (its own project name), the user's when `who` is one.
fn example(who: Option<&str>, name: &str) -> Native {
    let n = Native::new(who, &format!("nat-{name}"), "");
    let src = crate::util::repo().join("examples").join(name);
    let st = Command::new("cp")
        .args([
            "-r",
            &format!("{}/.", src.display()),
            &n.path().display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    if let Some(u) = who {
        let st = Command::new("chown")
            .args(["-R", u, &n.path().display().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    n
}

#[test]
fn the_quickstart_verifies_natively() {
    each(|who| {
        // The example as it is, with its own project name.
        let n = example(who, "quickstart");
        let v = n.run(&["verify"]);
        assert_eq!(v.code, 0, "{v:#?}");
        // Verify's supervisor ended with it.
        assert_eq!(n.supervisors(), Vec::<u32>::new(), "after verify");
        assert!(
            v.stdout.starts_with("✓ the page is served (",)
                && v.stdout.contains("\n✓ the port is on loopback only (")
                && v.stdout.contains("\nquickstart: 2 of 2 probes passed ("),
            "{v:#?}"
        );
        assert!(
            v.stderr.starts_with(
                "devbox: no service has an image: running natively (engine native)\ndevbox: verifying on native ("
            ),
            "{v:#?}"
        );
    });
}

// Regression: as root, up made the service's .data directories its own (65532), as on
// rootful engines, so the sandbox (which writes as the caller) could not write them.
#[test]
fn the_native_stack_verifies_natively_and_writes_data_as_the_caller() {
    each(|who| {
        let n = example(who, "native-stack");
        // Its port, made free (engine tests publish 7777 too).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = n.path().join("sandbox.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("7777", &port.to_string())).unwrap();
        let v = n.run(&["verify"]);
        assert_eq!(v.code, 0, "{v:#?}");
        for probe in [
            "✓ host reaches the server over loopback (",
            "✓ published port is loopback-only (",
            "✓ the worker reaches the server by name (",
            "✓ the client round-trips over the unix socket (",
            "✓ the server's answers land in .data, owned by the host user (",
            "native-stack: 5 of 5 probes passed (",
        ] {
            assert!(v.stdout.contains(probe), "{probe}: {v:#?}");
        }
        // And with `up`: the declared directory stays the caller's, and the service writes it.
        let up = n.run(&["up"]);
        assert_eq!(up.code, 0, "{up:#?}");
        let log = n.path().join(".data/logs/server.log");
        let probe = n.run(&["probe"]);
        assert_eq!(probe.code, 0, "{probe:#?}");
        let owner = std::fs::metadata(n.path().join(".data/logs")).unwrap();
        let want = match who {
            None => 0,
            Some(u) => {
                let id = Command::new("id").args(["-u", u]).output().unwrap();
                String::from_utf8_lossy(&id.stdout).trim().parse().unwrap()
            }
        };
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&owner), want);
        assert!(
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("answered over tcp"),
            "{}",
            log.display()
        );
        let down = n.run(&["down"]);
        assert_eq!(down.code, 0, "{down:#?}");
    });
}

#[test]
fn services_reach_each_other_by_name() {
    let pair = r#"
[project]
name = "{project}"

[services.server]
command = ["/usr/bin/python3", "-c", '''
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9000))
s.listen()
while True:
    c, _ = s.accept()
    c.sendall(b"pong from server\n")
    c.close()
''']
env = { NATIVE_TEST_MARK = "{mark}" }
healthcheck = { tcp = 9000, interval = "200ms" }

[services.client]
command = ["sleep", "1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
depends_on = { server = "healthy" }
"#;
    each(|who| {
        let n = Native::new(who, "nat-pair", pair);
        n.ok(&["up"]);
        let ask = "import socket; print(socket.create_connection(('server', 9000), timeout=5).recv(100).decode(), end='')";
        let o = n.ok(&["exec", "-T", "client", "--", "/usr/bin/python3", "-c", ask]);
        assert_eq!(o.stdout, "pong from server\n", "{o:#?}");
        // The server itself is not on the client's loopback.
        let direct = n.run(&[
            "exec",
            "-T",
            "client",
            "--",
            "/usr/bin/python3",
            "-c",
            "import socket; socket.create_connection(('127.0.0.1', 9000), timeout=5)",
        ]);
        assert_eq!(direct.code, 1, "{direct:#?}");
        assert!(
            direct.stderr.contains("ConnectionRefusedError"),
            "{direct:#?}"
        );
        n.ok(&["down"]);
        n.assert_no_leftovers("down");
    });
}

#[test]
fn a_published_port_taken_on_the_host_starts_nothing() {
    each(|who| {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let toml = format!(
            r#"
[project]
name = "{{project}}"

[services.web]
command = ["sleep", "1000"]
env = {{ NATIVE_TEST_MARK = "{{mark}}" }}
ports = ["{port}:8080"]
"#
        );
        let n = Native::new(who, "nat-taken", &toml);
        let up = n.run(&["up"]);
        assert_eq!(up.code, 1, "{up:#?}");
        let want = format!("error: service `web` cannot publish 127.0.0.1:{port}: it is in use");
        assert!(up.stderr.contains(&want), "{up:#?}");
        assert!(
            up.stderr.ends_with(
                "\nhint: stop what holds it, or publish another host port in sandbox.toml; devbox changed nothing\n"
            ),
            "{up:#?}"
        );
        assert!(n.leftovers().is_empty());
        assert_eq!(n.row("web")["state"], "not created");
        // Freed, the same file comes up and publishes it.
        drop(held);
        n.ok(&["up"]);
        let web = n.row("web");
        assert_eq!(
            web["ports"][0],
            format!("127.0.0.1:{port}->8080/tcp"),
            "{web}"
        );
        // doctor asks the native engine, not a socket, whose the port is.
        let doctor = n.run(&["doctor"]);
        let line = format!(
            "ok    port 127.0.0.1:{port}: held by this project's running container {}-web (service `web`)\n",
            n.project
        );
        assert!(doctor.stdout.contains(&line), "{doctor:#?}");
        n.ok(&["down"]);
        n.assert_no_leftovers("down");
    });
}

#[test]
fn a_service_that_ignores_its_stop_signal_is_killed_after_its_grace_period() {
    let stubborn = r#"
[project]
name = "{project}"

[services.stubborn]
command = ["sh", "-c", "trap '' TERM; sleep 1000 & wait; sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
stop_grace_period = "1s"
"#;
    each(|who| {
        let n = Native::new(who, "nat-grace", stubborn);
        n.ok(&["up"]);
        let t = Instant::now();
        n.ok(&["down"]);
        let took = t.elapsed();
        // The whole sandbox goes at the end of the grace period, not before.
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{took:?}"
        );
        n.assert_no_leftovers("down");
    });
}

#[test]
fn exec_on_a_terminal_attaches_it_and_passes_the_exit_code_on() {
    each(|who| {
        let n = Native::new(who, "nat-tty", WEB);
        n.ok(&["up"]);
        // `script` gives devbox a terminal for its stdin, as a user at a shell has.
        let inner = format!("{BIN} exec web -- sh -c 'test -t 0 && echo on a terminal; exit 4'");
        let c = n.command(&[]);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let prog = c.get_program().to_string_lossy().into_owned();
        // Under runuser, devbox is its last argument so far: script runs the whole line.
        let line = if prog == "runuser" {
            format!("runuser {} {inner}", args[..args.len() - 1].join(" "))
        } else {
            inner
        };
        let mut s = Command::new("script");
        s.args(["-qec", &line, "/dev/null"]);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => s.env(k, v),
                None => s.env_remove(k),
            };
        }
        let out = s
            .current_dir(n.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(4), "{text}");
        assert!(text.contains("on a terminal"), "{text}");
    });
}

#[test]
fn a_named_volume_keeps_its_data_across_down_until_down_volumes() {
    let counter = r#"
[project]
name = "{project}"

[volumes.state]

[services.count]
command = ["sh", "-c", "echo run >> /state/runs; exec sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
volumes = ["state:/state"]
"#;
    each(|who| {
        let n = Native::new(who, "nat-vol", counter);
        n.ok(&["up"]);
        n.ok(&["down"]);
        n.ok(&["up"]);
        let runs = n.ok(&["exec", "-T", "count", "--", "cat", "/state/runs"]);
        assert_eq!(runs.stdout, "run\nrun\n", "down kept the volume: {runs:#?}");
        let dir = n
            .path()
            .join("share/devbox/native/volumes")
            .join(format!("{}_state", n.project));
        let store = if who.is_some() {
            dir
        } else {
            // Root's native data is the system's.
            Path::new("/var/lib/devbox/native/volumes").join(format!("{}_state", n.project))
        };
        assert_eq!(
            std::fs::read_to_string(store.join("runs")).unwrap(),
            "run\nrun\n"
        );
        n.ok(&["down", "--volumes", "--yes"]);
        assert!(
            !store.exists(),
            "down --volumes removed {}",
            store.display()
        );
        n.assert_no_leftovers("down");
    });
}

#[test]
fn down_lets_the_supervisor_go_before_it_returns() {
    each(|who| {
        let n = Native::new(who, "nat-release", WEB);
        n.ok(&["up"]);
        assert_eq!(n.supervisors().len(), 1, "one supervisor while up");
        n.ok(&["down"]);
        // No waiting: nothing that served the project outlives its `down`.
        assert_eq!(
            n.supervisors(),
            Vec::<u32>::new(),
            "a supervisor outlived down"
        );
        assert_eq!(n.supervisor_pid(), None);
        n.assert_no_leftovers("down");
        // And the next `up` starts one afresh.
        n.ok(&["up"]);
        assert_eq!(n.row("web")["state"], "running");
    });
}

#[test]
fn a_killed_verify_takes_its_supervisor_and_services_with_it() {
    let slow = r#"
[project]
name = "{project}"

[services.web]
command = ["sh", "-c", "exec sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}" }

[services.slow]
command = ["sleep", "1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
depends_on = { web = "started" }
healthcheck = { cmd = ["false"], interval = "1s", retries = 100 }
"#;
    each(|who| {
        let n = Native::new(who, "nat-vkill", slow);
        let mut verify = n.command(&["verify"]);
        let mut child = verify
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while n.leftovers().len() < 2 {
            assert!(Instant::now() < end, "verify never started both services");
            std::thread::sleep(Duration::from_millis(20));
        }
        let devbox = n.processes(" verify");
        assert_eq!(devbox.len(), 1, "one devbox verify: {devbox:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(devbox[0] as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = child.wait();
        n.assert_no_leftovers("SIGKILL of verify");
        let end = Instant::now() + Duration::from_secs(5);
        while !n.supervisors().is_empty() {
            assert!(Instant::now() < end, "verify's supervisor outlived it");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The next verify finds what the killed one left, and removes it.
        n.write_toml(WEB);
        let v = n.run(&["verify"]);
        assert_eq!(v.code, 0, "{v:#?}");
        assert!(
            v.stderr
                .contains("note: removed what an unfinished `devbox verify` left (project "),
            "{v:#?}"
        );
        assert_eq!(
            n.supervisors(),
            Vec::<u32>::new(),
            "after the second verify"
        );
    });
}

#[test]
fn up_right_after_down_meets_a_supervisor_on_its_way_out_and_still_comes_up() {
    // The supervisor exits once it holds nothing; an `up` that reaches it while it goes
    // must start a new one, not fail. A short idle time puts every `up` near that moment.
    each(|who| {
        let n = Native::new(who, "nat-idle", WEB);
        let idle = [("DEVBOX_NATIVE_IDLE_MS", "30")];
        for i in 0..10u64 {
            let up = n.run_with(&["up"], &idle);
            assert_eq!(up.code, 0, "cycle {i}: {up:#?}");
            assert_eq!(n.row("web")["state"], "running", "cycle {i}");
            let down = n.run_with(&["down"], &idle);
            assert_eq!(down.code, 0, "cycle {i}: {down:#?}");
            std::thread::sleep(Duration::from_millis(i * 7 % 50));
        }
        n.assert_no_leftovers("the last down");
        let end = Instant::now() + Duration::from_secs(5);
        while n.supervisor_pid().is_some() {
            assert!(
                Instant::now() < end,
                "the supervisor did not exit once empty"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn logs_follow_a_native_service_until_it_ends() {
    let short = r#"
[project]
name = "{project}"

[services.short]
command = ["sh", "-c", "echo first; sleep 1.5; echo second >&2; sleep 0.2"]
env = { NATIVE_TEST_MARK = "{mark}" }
"#;
    each(|who| {
        let n = Native::new(who, "nat-follow", short);
        n.ok(&["up"]);
        let t = Instant::now();
        let logs = n.ok(&["logs", "-f", "short"]);
        assert_eq!(
            own_lines(&logs.stdout),
            "short | first\nshort | second\n",
            "{logs:#?}"
        );
        // It waited for the second line, and stopped once the service had ended.
        assert!(
            t.elapsed() >= Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let tail = n.ok(&["logs", "--tail", "1", "short"]);
        assert_eq!(own_lines(&tail.stdout), "short | second\n", "{tail:#?}");
        n.ok(&["down"]);
    });
}

/// `/proc/self/limits` as (soft, hard) by the limit's name, for the lines `names` gives.
fn limits_of(text: &str, names: &[&str]) -> Vec<(String, String, String)> {
    names
        .iter()
        .map(|name| {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in {text}"));
            let mut cols = line[name.len()..].split_whitespace();
            let mut col = || cols.next().unwrap_or_default().to_owned();
            ((*name).to_owned(), col(), col())
        })
        .collect()
}

#[test]
fn a_native_services_ulimits_are_its_rlimits_soft_and_hard_as_written_and_an_execs_too() {
    // Only nofile and fsize used to apply, and soft alone (as hard too).
    let toml = r#"
[project]
name = "{project}"

[services.lim]
command = ["sh", "-c", "cat /proc/self/limits; echo end; exec sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
ulimits = { nproc = { soft = 100, hard = 200 }, stack = { soft = 1048576, hard = 4194304 }, memlock = 65536, nofile = { soft = 64, hard = 128 } }
"#;
    let names = [
        "Max processes",
        "Max stack size",
        "Max locked memory",
        "Max open files",
    ];
    let want: Vec<(String, String, String)> = [
        ("Max processes", "100", "200"),
        ("Max stack size", "1048576", "4194304"),
        ("Max locked memory", "65536", "65536"),
        ("Max open files", "64", "128"),
    ]
    .iter()
    .map(|(n, s, h)| ((*n).to_owned(), (*s).to_owned(), (*h).to_owned()))
    .collect();
    each(|who| {
        let n = Native::new(who, "nat-ulimits", toml);
        n.ok(&["up"]);
        let end = Instant::now() + Duration::from_secs(10);
        let log = loop {
            let log = own_lines(&n.ok(&["logs", "lim"]).stdout);
            if log.contains("| end\n") {
                break log.replace("lim | ", "");
            }
            assert!(Instant::now() < end, "{log}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            limits_of(&log, &names),
            want,
            "the service as {who:?}: {log}"
        );
        let o = n.ok(&["exec", "-T", "lim", "--", "cat", "/proc/self/limits"]);
        assert_eq!(
            limits_of(&o.stdout, &names),
            want,
            "exec as {who:?}: {o:#?}"
        );
        n.ok(&["down"]);
        n.assert_no_leftovers("down");
    });
}

#[test]
fn always_and_unless_stopped_restart_a_clean_exit_and_completed_waits_for_the_end() {
    let file = r#"
[project]
name = "{project}"

[data.dirs]
logs = {}

[services.setup]
command = ["sh", "-c", "echo prepared > /logs/setup.txt"]
volumes = [".data/logs:/logs"]
env = { NATIVE_TEST_MARK = "{mark}" }

[services.loop]
command = ["sh", "-c", "cat /logs/setup.txt; sleep 0.2; exit 0"]
volumes = [".data/logs:/logs:ro"]
env = { NATIVE_TEST_MARK = "{mark}" }
depends_on = { setup = "completed" }
restart = "always"

[services.steady]
command = ["sh", "-c", "sleep 0.2; exit 0"]
env = { NATIVE_TEST_MARK = "{mark}" }
restart = "unless-stopped"

[services.gone]
command = ["sleep", "1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
"#;
    each(|who| {
        let n = Native::new(who, "nat-policies", file);
        let up = n.ok(&["up"]);
        // `loop` started after `setup` had completed: its first run read setup's file.
        assert!(
            up.stderr.contains("loop: waiting for setup (completed)"),
            "{up:#?}"
        );
        assert_eq!(n.row("setup")["state"], "exited");
        // A clean exit is restarted under always and unless-stopped (on-failure would not).
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let (l, s) = (n.row("loop"), n.row("steady"));
            if l["restarts"].as_u64() >= Some(2) && s["restarts"].as_u64() >= Some(2) {
                break;
            }
            assert!(Instant::now() < end, "{l} {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(n.row("setup")["restarts"], 0);
        let logs = n.ok(&["logs", "loop"]);
        assert!(
            own_lines(&logs.stdout).starts_with("loop | prepared\nloop | prepared\n"),
            "{logs:#?}"
        );

        // A service taken out of the file is an orphan: kept by up, removed with
        // --remove-orphans, its sandbox gone.
        let gone_pid = n.row("gone")["pid"].as_u64().unwrap() as u32;
        n.write_toml(&file.replace(
            "\n[services.gone]\ncommand = [\"sleep\", \"1000\"]\nenv = { NATIVE_TEST_MARK = \"{mark}\" }\n",
            "",
        ));
        n.ok(&["up"]);
        assert!(std::path::Path::new(&format!("/proc/{gone_pid}")).exists());
        let up = n.ok(&["up", "--remove-orphans"]);
        assert!(up.stderr.contains("gone: removed (orphan)\n"), "{up:#?}");
        assert!(up.stdout.contains(", 1 orphan removed in "), "{up:#?}");
        assert!(n.status().iter().all(|r| r["service"] != "gone"));
        let end = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{gone_pid}")).exists() {
            assert!(
                Instant::now() < end,
                "the orphan's sandbox outlived its removal"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        // reset takes it all away: every process, and the data tree.
        let reset = n.ok(&["reset", "--yes"]);
        assert!(
            reset.stdout.contains(
                " reset: 3 containers, 1 network, 0 volumes, 0 images, 3 data entries removed\n"
            ),
            "{reset:#?}"
        );
        assert!(!n.path().join(".data/logs").exists(), "{reset:#?}");
        n.assert_no_leftovers("reset");
        for r in n.status() {
            assert!(r["pid"].is_null() && r["state"] != "running", "{r}");
        }
    });
}
