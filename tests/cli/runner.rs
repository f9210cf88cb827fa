//! The native runner, for real: `devbox run` in real namespaces with real mounts,
//! seccomp, Landlock, cgroups (or rlimits) and the egress proxy. Every case runs twice: as
//! root, and as the unprivileged user named by DEVBOX_TEST_ROOTLESS_USER (through
//! `runuser`), whose runs use user namespaces and, on cgroup v1, the rlimit fallbacks.
//!
//! The escape attempts live in `tests/fixtures/runner/escape.py`, run inside the sandbox;
//! `scripts/security-compare` runs the same script under bwrap for docs/security.md.

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{repo, test_var, BIN};

const PY: &str = "/usr/bin/python3";

/// Where and as whom `devbox run` is started.
struct Sandbox {
    user: Option<String>,
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn root() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("devbox-run-")
            .tempdir()
            .unwrap();
        // Open to others, as a project directory usually is: root's worker is `nobody`
        // on the host.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = Self { user: None, dir };
        s.setup();
        s
    }

    /// The unprivileged user's sandbox, or `None` (a skip) when no such user is set up
    /// and engines are not required.
    fn user() -> Option<Self> {
        let user = test_var(
            "DEVBOX_TEST_ROOTLESS_USER",
            "run scripts/setup-engines and export what it prints",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("devbox-run-")
            .tempdir()
            .unwrap();
        let s = Self {
            user: Some(user.clone()),
            dir,
        };
        s.setup();
        let st = Command::new("chown")
            .args(["-R", &user, &s.path().display().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "chown to {user}");
        Some(s)
    }

    fn setup(&self) {
        std::fs::copy(
            repo().join("tests/fixtures/runner/escape.py"),
            self.path().join("escape.py"),
        )
        .unwrap();
        std::fs::create_dir_all(self.path().join("out")).unwrap();
        std::fs::create_dir_all(self.path().join("cwd")).unwrap();
        std::fs::write(self.path().join("secret.txt"), "host secret\n").unwrap();
        // The runtime directory, where runs are recorded: the sandbox's own.
        let rt = self.path().join("rt");
        std::fs::create_dir(&rt).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn is_root(&self) -> bool {
        self.user.is_none()
    }

    /// `devbox ARGS` in the sandbox's directory, as its user, with `env` added.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = match &self.user {
            None => {
                let mut c = Command::new(BIN);
                c.args(args);
                c
            }
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", BIN]).args(args);
                c
            }
        };
        c.current_dir(self.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("DEVBOX_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", self.path());
        c.env("XDG_STATE_HOME", self.path().join(".state"));
        c.env("XDG_RUNTIME_DIR", self.path().join("rt"));
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let out = self.command(args, env).output().expect("devbox runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs one escape case with the script shown read-only and `flags` before `--`.
    fn escape(&self, flags: &[&str], case: &[&str]) -> Out {
        let script = self.path().join("escape.py").display().to_string();
        let mut args: Vec<&str> = vec!["run", "--audit", "-", "--ro", &script];
        args.extend_from_slice(flags);
        args.extend(["--", PY, &script]);
        args.extend_from_slice(case);
        // From a directory of its own: the one shown as the working directory holds nothing
        // the cases try to reach.
        let mut c = self.command(&args, &[]);
        c.current_dir(self.path().join("cwd"));
        let out = c.output().expect("devbox runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// The case's verdict: contained (with its reason), or a failure naming what escaped.
    #[track_caller]
    fn assert_contained(&self) {
        if self.stdout.contains("CONTAINED:") {
            assert_eq!(self.code, 0, "{self:?}");
            return;
        }
        // Killed by the sandbox (SIGSYS, SIGKILL, SIGXFSZ) before it could say anything.
        assert!(
            self.code > 128 && !self.stdout.contains("ESCAPED"),
            "not contained: {self:?}"
        );
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Defines `NAME::as_root` and `NAME::as_user` from one body taking a `&Sandbox`.
macro_rules! both {
    ($(#[$m:meta])* $name:ident, $body:expr) => {
        mod $name {
            use super::*;
            $(#[$m])*
            #[test]
            fn as_root() {
                let f: fn(&Sandbox) = $body;
                f(&Sandbox::root());
            }
            $(#[$m])*
            #[test]
            fn as_user() {
                let f: fn(&Sandbox) = $body;
                if let Some(s) = Sandbox::user() {
                    f(&s);
                }
            }
        }
    };
}

// ---- what a worker gets

both!(exit_code_and_output_are_the_workers, |s| {
    let o = s.run(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(o.code, 7, "{o:?}");
    assert_eq!(o.stdout, "out\n");
    assert!(o.stderr.ends_with("err\n"), "{o:?}");
});

both!(the_view_is_only_the_policy, |s| {
    let o = s.run(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "ls / | tr '\\n' ' '; echo; id -u; hostname; ls /dev | tr '\\n' ' '; echo; cat /proc/self/status | grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp|SigIgn|SigBlk):'",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    let root: Vec<&str> = lines[0].split_whitespace().collect();
    for must in ["usr", "bin", "proc", "dev", "tmp", "etc"] {
        assert!(root.contains(&must), "{must} missing from / {root:?}");
    }
    for never in ["root", "home", "work", "var", "srv", "boot"] {
        assert!(!root.contains(&never), "{never} visible in / {root:?}");
    }
    let uid = if s.is_root() {
        0
    } else {
        nix_uid(s.user.as_deref().unwrap())
    };
    assert_eq!(lines[1], uid.to_string(), "same uid inside as outside");
    assert_eq!(lines[2], "devbox-adhoc");
    let dev: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        dev,
        [
            "fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom",
            "zero"
        ]
    );
    assert!(o.stdout.contains("CapEff:\t0000000000000000"), "{o:?}");
    assert!(o.stdout.contains("CapBnd:\t0000000000000000"), "{o:?}");
    assert!(o.stdout.contains("NoNewPrivs:\t1"), "{o:?}");
    assert!(o.stdout.contains("Seccomp:\t2"), "{o:?}");
    // devbox itself ignores SIGPIPE and blocks the signals it forwards; the worker neither.
    assert!(o.stdout.contains("SigIgn:\t0000000000000000"), "{o:?}");
    assert!(o.stdout.contains("SigBlk:\t0000000000000000"), "{o:?}");
});

fn nix_uid(user: &str) -> u32 {
    let o = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

both!(writable_paths_are_writable_and_owned_by_the_caller, |s| {
    let out = s.path().join("out").display().to_string();
    let o = s.run(&[
        "run",
        "--rw",
        &out,
        "--",
        "/bin/sh",
        "-c",
        &format!("echo data > {out}/made && echo tmp > /tmp/t && cat /tmp/t"),
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let made = s.path().join("out/made");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "data\n");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&made).unwrap().uid();
    let want = s.user.as_deref().map(nix_uid).unwrap_or(0);
    assert_eq!(owner, want);
});

both!(environment_is_scrubbed, |s| {
    let o = s.run_env(
        &[
            "run",
            "--env-pass",
            "LANG",
            "--env",
            "MODE=sandbox",
            "--",
            "/usr/bin/env",
        ],
        &[("LANG", "C.UTF-8"), ("GITHUB_TOKEN", "ghp_secret")],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let mut names: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    names.sort();
    assert_eq!(names, ["LANG", "MODE", "PATH"], "{o:?}");
});

both!(signals_are_forwarded_to_the_worker, |s| {
    let mut child = s
        .command(
            &[
                "run",
                "--",
                "/bin/sh",
                "-c",
                "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
            ],
            &[],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    Command::new("kill")
        .args(["-TERM", &supervisor_pid(s, &child)])
        .status()
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(st.code(), Some(3));
});

/// Host pids whose command line is exactly `argv`: a sandbox's processes seen from outside
/// its pid namespace.
fn pids_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// A worker that ignores the stop signals, starts `sleep N` (N unique to the test: its
/// argv for [`pids_running`] is returned too) and prints "ready".
fn stubborn() -> (String, String) {
    let secs = format!("4{:05}", rand_suffix());
    let script = format!("trap '' TERM INT HUP; sleep {secs} & echo ready; wait; wait; wait");
    (script, secs)
}

/// Starts `devbox run --audit - FLAGS -- sh -c SCRIPT` with a [`stubborn`] script.
fn start_stubborn(s: &Sandbox, flags: &[&str]) -> (std::process::Child, String) {
    let (script, secs) = stubborn();
    let mut args = vec!["run", "--audit", "-"];
    args.extend_from_slice(flags);
    args.extend(["--", "/bin/sh", "-c", &script]);
    (until_ready(s, &args, &secs), secs)
}

/// Spawns `devbox ARGS` and returns once it printed "ready" and its `sleep SECS` runs.
fn until_ready(s: &Sandbox, args: &[&str], secs: &str) -> std::process::Child {
    let mut child = s
        .command(args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // The shell says "ready" once it forked; the sleep may take a moment to exec.
    let t = Instant::now();
    while pids_running(&["sleep", secs]).len() != 1 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the worker's sleep is not seen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Waits for `child` at most `limit`; kills it and fails when it is still running.
fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> (i32, String, Duration) {
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("devbox still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stderr, t.elapsed())
}

both!(
    a_worker_ignoring_sigterm_is_killed_after_the_stop_grace,
    |s| {
        // `devbox run` forwarded SIGTERM and waited forever on a worker that ignored it.
        let (mut child, secs) = start_stubborn(s, &["--stop-grace", "1s"]);
        Command::new("kill")
            .args(["-TERM", &supervisor_pid(s, &child)])
            .status()
            .unwrap();
        let (code, stderr, took) = wait_at_most(&mut child, Duration::from_secs(8));
        assert_eq!(code, 137, "{stderr}");
        assert!(
            took >= Duration::from_millis(900),
            "killed before the grace: {took:?}"
        );
        assert!(
            stderr.ends_with("devbox: `adhoc` was killed: still running 1s after SIGTERM\n"),
            "{stderr}"
        );
        assert!(
        stderr.contains("\"kind\":\"lifecycle\",\"decision\":\"deny\",\"what\":\"SIGKILL to the sandbox: still running 1s after SIGTERM\",\"rule\":\"limits.stop_grace\"}"),
        "{stderr}"
    );
        assert_eq!(
            pids_running(&["sleep", &secs]),
            Vec::<u32>::new(),
            "the sandbox's sleep outlived it"
        );
    }
);

both!(a_second_stop_signal_kills_the_sandbox_at_once, |s| {
    // Ctrl-C twice, as with compose: no waiting out the 10 s default grace.
    let (mut child, secs) = start_stubborn(s, &[]);
    let pid = supervisor_pid(s, &child);
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "one SIGINT is not a kill"
    );
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let (code, stderr, took) = wait_at_most(&mut child, Duration::from_secs(5));
    assert_eq!(code, 137, "{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        stderr.ends_with("devbox: `adhoc` was killed: a second SIGINT\n"),
        "{stderr}"
    );
    assert_eq!(
        pids_running(&["sleep", &secs]),
        Vec::<u32>::new(),
        "the sandbox's sleep outlived it"
    );
});

both!(stop_grace_is_read_from_the_workers_limits, |s| {
    let (script, secs) = stubborn();
    let toml = format!(
        "[project]\nname = \"grace\"\n\n[workers.stubborn]\ncommand = [\"/bin/sh\", \"-c\", {}]\npolicy.limits.stop_grace = \"500ms\"\n",
        serde_json::to_string(&script).unwrap()
    );
    std::fs::write(s.path().join("sandbox.toml"), toml).unwrap();
    let mut child = until_ready(s, &["run", "--audit", "-", "stubborn"], &secs);
    Command::new("kill")
        .args(["-TERM", &supervisor_pid(s, &child)])
        .status()
        .unwrap();
    let (code, stderr, _) = wait_at_most(&mut child, Duration::from_secs(8));
    assert_eq!(code, 137, "{stderr}");
    assert!(
        stderr.ends_with("devbox: `stubborn` was killed: still running 500ms after SIGTERM\n"),
        "{stderr}"
    );
    assert_eq!(pids_running(&["sleep", &secs]), Vec::<u32>::new());
});

both!(timeout_stops_the_worker, |s| {
    let t = Instant::now();
    let o = s.run(&[
        "run",
        "--audit",
        "-",
        "--timeout",
        "1s",
        "--",
        "/bin/sleep",
        "30",
    ]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(o.code, 128 + 15, "{o:?}");
    assert!(o.stderr.contains("stopped after its 1s timeout"), "{o:?}");
    assert!(o
        .audit_lines()
        .iter()
        .any(|l| l["rule"] == "limits.timeout" && l["decision"] == "deny"));
});

#[test]
fn flags_it_cannot_read_are_usage_errors_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for (flags, message) in [
        (
            vec!["--net", "bogus"],
            "error: --net bogus: expected none, host, allow=HOST:PORT, warn=HOST:PORT, deny=HOST:PORT or default=allow|warn|deny\n",
        ),
        (
            vec!["--net", "allow=nohost"],
            "error: `nohost` is not a destination: expected HOST:PORT, HOST may start with `*.` and PORT may be `*`\n",
        ),
        (vec!["--memory", "lots"], "error: --memory lots: expected a size such as 256m\n"),
        (vec!["--env", "NOEQUALS"], "error: --env NOEQUALS: expected VAR=VALUE\n"),
    ] {
        let mut args = vec!["run"];
        args.extend(flags);
        args.extend(["--rw", dir.path().to_str().unwrap(), "--", "/bin/sh", "-c", &touch]);
        let o = crate::util::Devbox::new(dir.path()).args(&args).run();
        assert_eq!((o.code, o.stderr.as_str()), (2, message), "{o:?}");
        assert!(!marker.exists());
    }
    let o = crate::util::Devbox::new(dir.path()).args(["run"]).run();
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "error: nothing to run\nhint: devbox run WORKER, or devbox run [FLAGS] -- CMD ARGS...\n")
    );
}

both!(a_missing_command_says_so, |s| {
    let o = s.run(&["run", "--", "/no/such/binary"]);
    assert_eq!(o.code, 127, "{o:?}");
    assert!(
        o.stderr
            .contains("devbox: /no/such/binary: No such file or directory"),
        "{o:?}"
    );
});

// ---- escape attempts (each asserts containment)

both!(write_outside_the_writable_paths, |s| {
    let dir = s.path().display().to_string();
    s.escape(&["--ro", &dir], &["write_outside", &dir])
        .assert_contained();
    assert!(!s.path().join("devbox-escape").exists());
});

both!(read_a_host_file_outside_the_policy, |s| {
    let secret = s.path().join("secret.txt").display().to_string();
    s.escape(&[], &["read_host_file", &secret, "/root/.bashrc"])
        .assert_contained();
});

both!(etc_shadow, |s| {
    s.escape(&[], &["shadow"]).assert_contained();
    // Shown /etc: root's worker, once host uid 0, read shadow; as nobody it cannot.
    s.escape(&["--ro", "/etc"], &["shadow"]).assert_contained();
    // Shown /etc, denied /etc/shadow: deny wins.
    s.escape(&["--ro", "/etc", "--deny", "/etc/shadow"], &["shadow"])
        .assert_contained();
});

both!(proc_1_root_reaching_the_host, |s| {
    let secret = s.path().join("secret.txt").display().to_string();
    s.escape(&[], &["proc_root", &secret]).assert_contained();
});

both!(signal_a_host_process, |s| {
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id().to_string();
    s.escape(&[], &["signal_host", &pid]).assert_contained();
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "host process survives"
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
});

both!(ptrace_the_supervisor, |s| {
    s.escape(&[], &["ptrace"]).assert_contained();
});

both!(mount, |s| {
    s.escape(&[], &["mount"]).assert_contained();
});

both!(nested_user_namespace, |s| {
    s.escape(&[], &["userns"]).assert_contained();
    let o = s.run(&["run", "--", "/usr/bin/unshare", "-U", "true"]);
    assert_ne!(o.code, 0, "{o:?}");
});

both!(setns_into_a_host_namespace, |s| {
    s.escape(&[], &["setns"]).assert_contained();
});

both!(chroot, |s| {
    s.escape(&[], &["chroot"]).assert_contained();
});

both!(raw_and_packet_sockets, |s| {
    s.escape(&[], &["raw_socket"]).assert_contained();
});

both!(connect_to_a_host_loopback_listener, |s| {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    s.escape(&[], &["host_tcp", "127.0.0.1", &port])
        .assert_contained();
    // Even with a proxy policy, a direct connection has no route.
    s.escape(
        &["--net", &format!("allow=127.0.0.1:{port}")],
        &["host_tcp", "127.0.0.1", &port],
    )
    .assert_contained();
});

both!(connect_to_the_hosts_external_address, |s| {
    let Some(ip) = external_ip() else {
        panic!("this machine has no external IPv4 address to test with");
    };
    let l = TcpListener::bind((ip.as_str(), 0)).unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    s.escape(&[], &["host_tcp", &ip, &port]).assert_contained();
});

/// The address the host would use to reach the outside (no packet is sent).
fn external_ip() -> Option<String> {
    let u = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    u.connect("192.0.2.123:9").ok()?;
    let ip = u.local_addr().ok()?.ip();
    (!ip.is_loopback()).then(|| ip.to_string())
}

both!(a_leaked_descriptor, |s| {
    // The caller's descriptor 7, open without close-on-exec, must not reach the worker.
    let script = s.path().join("escape.py").display().to_string();
    let secret = s.path().join("secret.txt").display().to_string();
    let shell = format!(
        "exec 7<'{secret}'; exec '{BIN}' run --audit - --ro '{script}' -- {PY} '{script}' leaked_fd"
    );
    let mut c = match &s.user {
        None => Command::new("sh"),
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "sh"]);
            c
        }
    };
    let o = c
        .args(["-c", &shell])
        .current_dir(s.path())
        .env("HOME", s.path())
        .output()
        .unwrap();
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    };
    out.assert_contained();
});

both!(the_supervisors_environment, |s| {
    let script = s.path().join("escape.py").display().to_string();
    let o = s.run_env(
        &[
            "run",
            "--audit",
            "-",
            "--ro",
            &script,
            "--",
            PY,
            &script,
            "environ",
            "DEVBOX_SECRET_TOKEN",
        ],
        &[("DEVBOX_SECRET_TOKEN", "hunter2")],
    );
    o.assert_contained();
});

both!(tiocsti, |s| {
    s.escape(&[], &["tiocsti"]).assert_contained();
});

both!(add_key_and_keyctl, |s| {
    s.escape(&[], &["add_key"]).assert_contained();
    s.escape(&[], &["keyctl"]).assert_contained();
});

both!(an_x32_syscall, |s| {
    s.escape(&[], &["x32"]).assert_contained();
});

both!(bpf, |s| {
    s.escape(&[], &["bpf"]).assert_contained();
});

both!(io_uring_and_perf_events, |s| {
    s.escape(&[], &["io_uring"]).assert_contained();
    s.escape(&[], &["perf_event"]).assert_contained();
});

both!(exec_of_a_binary_not_allowed, |s| {
    let o = s.escape(&["--exec-allow", PY], &["exec", "/usr/bin/id"]);
    o.assert_contained();
    assert!(o.stdout.contains("EACCES"), "{o:?}");
    // The same with mounts instead of Landlock.
    let script = s.path().join("escape.py").display().to_string();
    let o = s.run_env(
        &[
            "run",
            "--ro",
            &script,
            "--exec-allow",
            PY,
            "--",
            PY,
            &script,
            "exec",
            "/usr/bin/id",
        ],
        &[("DEVBOX_NO_LANDLOCK", "1")],
    );
    o.assert_contained();
    // And the command itself must be allowed.
    let o = s.run(&["run", "--exec-allow", PY, "--", "/usr/bin/id"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr
            .contains("exec of `/usr/bin/id` denied by the policy"),
        "{o:?}"
    );
});

both!(fork_bomb_stops_at_the_pids_limit, |s| {
    let o = s.escape(&["--pids", "32"], &["fork_bomb", "400"]);
    o.assert_contained();
});

both!(memory_hog_stops_at_the_memory_limit, |s| {
    let o = s.escape(&["--memory", "64m"], &["memory_hog", "512"]);
    o.assert_contained();
    if s.is_root() {
        // A real cgroup: the kernel's OOM killer stops it, and devbox says why.
        assert_eq!(o.code, 137, "{o:?}");
        assert!(o.stderr.contains("stopped at its memory limit"), "{o:?}");
    }
});

both!(file_larger_than_fsize, |s| {
    let o = s.escape(&["--fsize", "1m"], &["fsize"]);
    o.assert_contained();
    // Python ignores SIGXFSZ, so the write fails instead of the process dying.
    assert!(o.stdout.contains("EFBIG"), "{o:?}");
    let o = s.run(&[
        "run",
        "--fsize",
        "1m",
        "--",
        "/bin/sh",
        "-c",
        "head -c 2000000 /dev/zero > /tmp/big",
    ]);
    assert_eq!(o.code, 128 + 25, "killed by SIGXFSZ: {o:?}");
});

both!(sigkill_of_the_supervisor_leaves_no_worker, |s| {
    let marker = format!("{}.{}", 4000 + std::process::id() % 1000, rand_suffix());
    let child = s
        .command(&["run", "--", "/bin/sleep", &marker], &[])
        .spawn()
        .unwrap();
    // Killed whatever happens below, so a failing run leaves nothing behind either.
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let find = || {
        let o = Command::new("pgrep")
            .args(["-f", &format!("^/bin/sleep {marker}$")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    while find().is_empty() {
        assert!(Instant::now() < deadline, "the worker never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-KILL", &supervisor_pid(s, &child.0)])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !find().is_empty() {
        assert!(
            Instant::now() < deadline,
            "worker still running 5 s after the supervisor was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.0.wait();
});

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The supervisor's pid: devbox itself, or runuser's child (runuser re-raises the signals
/// it forwards, so they are sent past it).
fn supervisor_pid(s: &Sandbox, child: &std::process::Child) -> String {
    if s.is_root() {
        return child.id().to_string();
    }
    let o = Command::new("pgrep")
        .args(["-P", &child.id().to_string()])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(!pid.is_empty() && !pid.contains('\n'), "{pid:?}");
    pid
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u32::from_le_bytes(b) % 100_000
}

// ---- the egress proxy

/// A one-connection echo server on the host's loopback; returns its port.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 1024];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

const THROUGH_PROXY: &str = r#"
import os, socket, sys
proxy = os.environ["HTTPS_PROXY"].rsplit("/", 1)[1]
host, port = proxy.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=5)
s.sendall(f"CONNECT {sys.argv[1]} HTTP/1.1\r\nHost: {sys.argv[1]}\r\n\r\n".encode())
head = s.recv(4096).decode()
status = head.split(" ")[1]
if status != "200":
    print("refused", status)
    sys.exit(1)
s.sendall(b"ping")
print("echo", s.recv(100).decode())
"#;

both!(proxy_allows_warns_and_denies, |s| {
    let port = echo_server();
    std::fs::write(s.path().join("via.py"), THROUGH_PROXY).unwrap();
    if let Some(u) = &s.user {
        Command::new("chown")
            .args([u.as_str(), &s.path().join("via.py").display().to_string()])
            .status()
            .unwrap();
    }
    let via = s.path().join("via.py").display().to_string();
    let allowed = format!("127.0.0.1:{port}");
    let warned = format!("localhost:{port}");
    let denied = format!("127.0.0.2:{port}");
    let flags = |dest: &str| -> Vec<String> {
        vec![
            "run".into(),
            "--audit".into(),
            "-".into(),
            "--ro".into(),
            via.clone(),
            "--net".into(),
            format!("allow={allowed}"),
            "--warn-net".into(),
            warned.clone(),
            "--".into(),
            PY.into(),
            via.clone(),
            dest.into(),
        ]
    };
    let run = |dest: &str| {
        let f = flags(dest);
        s.run(&f.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let decision = |o: &Out, what: &str| -> String {
        o.audit_lines()
            .iter()
            .find(|l| l["kind"] == "net" && l["what"] == what)
            .map(|l| {
                format!(
                    "{} {}",
                    l["decision"].as_str().unwrap(),
                    l["rule"].as_str().unwrap()
                )
            })
            .unwrap_or_default()
    };
    let o = run(&allowed);
    assert_eq!(o.stdout, "echo ping\n", "{o:?}");
    assert_eq!(
        decision(&o, &allowed),
        format!("allow net.allow \"{allowed}\"")
    );
    let o = run(&warned);
    assert_eq!(o.stdout, "echo ping\n", "{o:?}");
    assert_eq!(decision(&o, &warned), format!("warn net.warn \"{warned}\""));
    let o = run(&denied);
    assert_eq!(o.stdout, "refused 403\n", "{o:?}");
    assert_eq!(decision(&o, &denied), "deny net.default");
});

// ---- the control plane

const CONTROL_FLOOD: &str = r#"
import os, socket, threading
path = os.environ["DEVBOX_CONTROL"]
def flood():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    try:
        for i in range(2500):
            s.sendall(b"\x00\xffGARBAGE" * 3 + b"\n")
        s.sendall(b"x" * 5000 + b"\n")
    except OSError:
        pass
ts = [threading.Thread(target=flood) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.sendall(b"READY\n")
print(s.recv(100).decode().strip())
s.sendall(b"STATUS\n")
print(s.recv(1000).decode().strip()[:2])
"#;

both!(a_flood_of_malformed_control_messages, |s| {
    std::fs::write(s.path().join("flood.py"), CONTROL_FLOOD).unwrap();
    let f = s.path().join("flood.py").display().to_string();
    if let Some(u) = &s.user {
        Command::new("chown")
            .args([u.as_str(), &f])
            .status()
            .unwrap();
    }
    let o = s.run(&["run", "--audit", "-", "--control", "--ro", &f, "--", PY, &f]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "OK\nOK\n", "{o:?}");
    let lines = o.audit_lines();
    assert!(lines.iter().any(|l| l["what"] == "READY"), "{o:?}");
    assert!(lines
        .iter()
        .any(|l| l["kind"] == "control" && l["decision"] == "deny"));
});

both!(wait_ready_returns_once_the_worker_says_so, |s| {
    let script = "printf 'READY\\n' | nc -U -q0 \"$DEVBOX_CONTROL\" 2>/dev/null || python3 -c \"import os,socket; s=socket.socket(socket.AF_UNIX); s.connect(os.environ['DEVBOX_CONTROL']); s.sendall(b'READY\\n'); s.recv(10)\"; sleep 30";
    let t = Instant::now();
    let o = s.run(&["run", "--wait-ready", "--", "/bin/sh", "-c", script]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "returned at READY, not at exit"
    );
    let pid: String = o
        .stderr
        .split("supervisor pid ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_string();
    Command::new("kill").args([pid.as_str()]).status().unwrap();
});

// ---- runs by id: --list and --stop

/// A worker that says READY on the control socket, starts `sleep SECS`, waits for it
/// and exits 3.
fn ready_then_sleep(secs: &str) -> String {
    format!("printf 'READY\\n' | nc -U -q0 \"$DEVBOX_CONTROL\" 2>/dev/null || python3 -c \"import os,socket; s=socket.socket(socket.AF_UNIX); s.connect(os.environ['DEVBOX_CONTROL']); s.sendall(b'READY\\n'); s.recv(10)\"; sleep {secs} & wait; exit 3")
}

/// A detached run (`--wait-ready FLAGS`) of [`ready_then_sleep`]: its id as devbox
/// printed it, its supervisor's pid and the worker's `sleep` argument.
fn detached(s: &Sandbox, flags: &[&str]) -> (String, String, String) {
    let secs = format!("5{:05}", rand_suffix());
    let script = ready_then_sleep(&secs);
    let mut args = vec!["run", "--wait-ready"];
    args.extend_from_slice(flags);
    args.extend(["--", "/bin/sh", "-c", &script]);
    let o = s.run(&args);
    assert_eq!(o.code, 0, "{o:?}");
    let part = |from: &str, to: char| -> String {
        let rest = o
            .stderr
            .split(from)
            .nth(1)
            .unwrap_or_else(|| panic!("{o:?}"));
        rest.split(to).next().unwrap().to_string()
    };
    let (id, pid) = (part("(run ", ','), part("supervisor pid ", ';'));
    let log = s.path().join(".state/devbox/adhoc.log");
    assert_eq!(
        o.stderr,
        format!(
            "devbox: `adhoc` is ready (run {id}, supervisor pid {pid}; output in {}; stop it with `devbox run --stop {id}`)\n",
            log.display()
        )
    );
    assert_eq!(id.len(), 12, "{id:?}");
    let t = Instant::now();
    while pids_running(&["sleep", &secs]).len() != 1 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the worker's sleep is not seen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (id, pid, secs)
}

/// `devbox run --list`'s rows, split into their columns (the command's words last), its
/// header checked.
fn listed(s: &Sandbox) -> Vec<Vec<String>> {
    let o = s.run(&["run", "--list"]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{o:?}");
    let mut lines = o.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "WORKER", "PID", "STATE", "SINCE", "COMMAND"]);
    lines
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// `devbox run --list --json`'s record of the one run there is.
fn the_record(s: &Sandbox) -> serde_json::Value {
    let o = s.run(&["run", "--list", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let all: Vec<serde_json::Value> = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(all.len(), 1, "{o:?}");
    all.into_iter().next().unwrap()
}

/// Whether process `pid` is gone (or a zombie: it has ended).
fn gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
        st.rsplit(')').next().unwrap().trim_start().starts_with('Z')
    })
}

both!(a_detached_run_is_listed_and_stopped_by_its_id, |s| {
    let (id, pid, secs) = detached(s, &[]);
    let rows = listed(s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        r[..4],
        [id.as_str(), "adhoc", pid.as_str(), "running"],
        "{r:?}"
    );
    assert!(
        humantime::parse_rfc3339(&r[4]).is_ok() && r[4].len() == 20,
        "since: {r:?}"
    );
    assert_eq!(r[5..8], ["/bin/sh", "-c", "printf"], "{r:?}");
    let rec = the_record(s);
    assert_eq!(rec["state"], "running");
    let init = rec["init"].to_string();
    assert!(!gone(&init), "{rec}");
    assert_eq!(
        rec["control"],
        format!("/proc/{init}/root/run/devbox/control.sock")
    );
    // A prefix of the id is enough when no other run shares it.
    let o = s.run(&["run", "--stop", &id[..6]]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            0,
            format!("devbox: stopped `adhoc` (run {id}, exit 143)\n").as_str()
        ),
        "{o:?}"
    );
    // Every process of the sandbox has gone by the time --stop returns.
    assert!(gone(&pid), "the supervisor {pid} is still there");
    assert!(gone(&init), "the sandbox's init {init} is still there");
    assert_eq!(pids_running(&["sleep", &secs]), Vec::<u32>::new());
    assert_eq!(listed(s), Vec::<Vec<String>>::new());
    let o = s.run(&["run", "--stop", &id]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            1,
            format!("error: no run `{id}`\nhint: `devbox run --list` shows the runs\n").as_str()
        )
    );
});

both!(
    a_killed_supervisor_is_listed_stopped_and_stop_removes_what_it_left,
    |s| {
        // With a pids limit, root's run has a cgroup of its own, which the killed supervisor
        // cannot remove.
        let (id, pid, secs) = detached(s, &["--pids", "64"]);
        let cgroups: Vec<String> = the_record(s)["cgroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        if s.is_root() {
            assert!(!cgroups.is_empty(), "root's run has a cgroup");
        }
        for c in &cgroups {
            assert!(Path::new(c).is_dir(), "{c}");
        }
        Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        let t = Instant::now();
        while !gone(&pid) || !pids_running(&["sleep", &secs]).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the sandbox outlived its supervisor"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let rows = listed(s);
        assert_eq!(rows.len(), 1, "{rows:?}");
        // Its record says running; its supervisor has gone, so it is not.
        assert_eq!(
            rows[0][..4],
            [id.as_str(), "adhoc", "-", "stopped"],
            "{rows:?}"
        );
        // Nor is it when the kernel has given its pid to another process since (here the
        // record is pointed at one of root's): the start time tells them apart, and nothing
        // is signalled.
        let mut decoy = s
            .is_root()
            .then(|| KillOnDrop(Command::new("sleep").arg("30").spawn().unwrap()));
        if let Some(decoy) = &decoy {
            let full = the_record(s)["id"].as_str().unwrap().to_owned();
            let file = s.path().join(format!("rt/devbox/runs/{full}.json"));
            let mut rec: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            rec["pid"] = decoy.0.id().into();
            std::fs::write(&file, rec.to_string()).unwrap();
            assert_eq!(listed(s)[0][2..4], ["-", "stopped"]);
        }
        let o = s.run(&["run", "--stop", &id]);
        assert_eq!(
            (o.code, o.stderr.as_str()),
            (
                0,
                format!("devbox: `adhoc` (run {id}) had already stopped; its record is removed\n")
                    .as_str()
            ),
            "{o:?}"
        );
        for c in &cgroups {
            assert!(!Path::new(c).exists(), "{c} is left");
        }
        assert_eq!(listed(s), Vec::<Vec<String>>::new());
        if let Some(decoy) = &mut decoy {
            assert!(
                decoy.0.try_wait().unwrap().is_none(),
                "the decoy was signalled"
            );
        }
    }
);

both!(
    a_detached_worker_that_ends_is_listed_with_its_exit_code_until_stop,
    |s| {
        let (id, _pid, secs) = detached(s, &[]);
        // The worker ends on its own: its sleep is killed, and the shell exits 3.
        let sleep = pids_running(&["sleep", &secs]);
        Command::new("kill")
            .args(["-KILL", &sleep[0].to_string()])
            .status()
            .unwrap();
        let t = Instant::now();
        loop {
            let rows = listed(s);
            if rows[0][3] != "running" {
                assert_eq!(
                    rows[0][..5],
                    [id.as_str(), "adhoc", "-", "stopped", "(3)"],
                    "{rows:?}"
                );
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "still running: {rows:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let o = s.run(&["run", "--stop", &id]);
        assert_eq!(
            (o.code, o.stderr.as_str()),
            (
                0,
                format!(
                "devbox: `adhoc` (run {id}, exit 3) had already stopped; its record is removed\n"
            )
                .as_str()
            ),
            "{o:?}"
        );
        assert_eq!(listed(s), Vec::<Vec<String>>::new());
    }
);

// The grace and then SIGKILL: a supervisor that cannot act on SIGTERM (stopped with
// SIGSTOP) is killed once the worker's grace and 5 s more have passed. Root only: the
// path is the same for an ordinary user, and it takes 6 s.
#[test]
fn stop_kills_a_supervisor_that_outlives_its_grace() {
    let s = Sandbox::root();
    let (id, pid, secs) = detached(&s, &["--stop-grace", "1s", "--pids", "64"]);
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let t = Instant::now();
    let o = s.run(&["run", "--stop", &id]);
    let took = t.elapsed();
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            0,
            format!("devbox: `adhoc` (run {id}) did not stop within its 1s stop grace and 5s more; its supervisor was killed\n").as_str()
        ),
        "{o:?}"
    );
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(9),
        "{took:?}"
    );
    assert!(gone(&pid), "the supervisor {pid} is still there");
    // Its cgroup went with the record, and every process in it.
    assert_eq!(pids_running(&["sleep", &secs]), Vec::<u32>::new());
    assert_eq!(listed(&s), Vec::<Vec<String>>::new());
}

#[test]
fn an_unknown_run_id_is_named_and_list_and_stop_take_no_command() {
    let s = Sandbox::root();
    let o = s.run(&["run", "--list"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "ID  WORKER  PID  STATE  SINCE  COMMAND\n")
    );
    for id in ["0123456789ab", "../etc/passwd"] {
        let o = s.run(&["run", "--stop", id]);
        assert_eq!(
            (o.code, o.stderr.as_str()),
            (
                1,
                format!("error: no run `{id}`\nhint: `devbox run --list` shows the runs\n")
                    .as_str()
            )
        );
    }
    for bad in [
        &["run", "--list", "--", "true"][..],
        &["run", "--stop", "0123", "transform"],
        &["run", "--json"],
    ] {
        let o = s.run(bad);
        assert_eq!(o.code, 2, "{bad:?}: {o:?}");
        assert!(o.stderr.starts_with("error: "), "{o:?}");
    }
}

// ---- workers from sandbox.toml

#[test]
fn the_supervisor_worker_example_transforms_and_logs_decisions() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/supervisor-worker"), dir.path());
    let o = crate::util::Devbox::new(dir.path())
        .args(["run", "transform"])
        .run();
    assert_eq!(o.code, 0, "{o:?}");
    let host = std::fs::read_to_string("/etc/hostname")
        .unwrap()
        .to_uppercase();
    assert_eq!(o.stdout, host);
    let log = std::fs::read_to_string(dir.path().join(".data/logs/devbox-audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |kind: &str, decision: &str, what: &str| {
        lines.iter().any(|l| {
            l["kind"] == kind
                && l["decision"] == decision
                && l["what"].as_str().unwrap().contains(what)
        })
    };
    assert!(has("env", "allow", "STAGE"), "{log}");
    assert!(has("fs", "deny", "/etc/shadow"), "{log}");
    assert!(has("fs", "allow", "/etc/hostname"), "{log}");
    assert!(has("exec", "allow", "/bin/sh"), "{log}");
    assert!(has("lifecycle", "allow", "exit 0"), "{log}");
}

#[test]
fn the_connector_example_answers_json_rpc_on_stdio() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/connector-runner"), dir.path());
    let mut c = Command::new(BIN)
        .args(["run", "connector"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"}\n")
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"pong\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32601,\"message\":\"method not found\"}}\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn an_unknown_worker_names_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/supervisor-worker"), dir.path());
    let o = crate::util::Devbox::new(dir.path())
        .args(["run", "transfrom"])
        .run();
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("no worker `transfrom` in ")
            && o.stderr
                .contains("hint: the workers are fetcher, transform"),
        "{o:?}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst: PathBuf = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every worker devbox ships or is judged by runs: the `worker` template as `init` writes
/// it, and the reference project's `echo`.
#[test]
fn the_worker_template_and_the_reference_worker_run() {
    let dir = tempfile::tempdir().unwrap();
    let o = crate::util::Devbox::new(dir.path())
        .args(["init", "--template", "worker"])
        .run();
    assert_eq!(o.code, 0, "{o:?}");
    let o = crate::util::Devbox::new(dir.path())
        .args(["run", "job"])
        .run();
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "job ran in sandbox\n"),
        "{o:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".data/work/out.txt")).unwrap(),
        "job ran in sandbox\n"
    );

    let r = tempfile::tempdir().unwrap();
    copy_dir(&crate::util::reference_dir(), r.path());
    let o = crate::util::Devbox::new(r.path())
        .args(["run", "echo"])
        .run();
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "hello from sandbox\n"),
        "{o:?}"
    );
}

#[test]
fn a_worker_opts_in_to_the_control_socket_in_sandbox_toml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sandbox.toml"),
        r#"[project]
name = "ctl"

[workers.status]
command = ["/usr/bin/python3", "-c", "import os, socket; s = socket.socket(socket.AF_UNIX); s.connect(os.environ['DEVBOX_CONTROL']); s.sendall(b'STATUS\\n'); print(s.recv(200).decode().strip())"]
control = true
"#,
    )
    .unwrap();
    let o = crate::util::Devbox::new(dir.path())
        .args(["run", "status"])
        .run();
    assert_eq!(o.code, 0, "{o:?}");
    let json: serde_json::Value =
        serde_json::from_str(o.stdout.trim().strip_prefix("OK ").unwrap()).unwrap();
    assert_eq!(json["worker"], "status");
}

// `devbox run --rw ./out ... -- python3 fetch.py`, as getting-started has it, ran in /tmp
// without the caller's directory: the script was not found.
both!(ad_hoc_runs_in_the_callers_directory, |s| {
    std::fs::write(
        s.path().join("fetch.sh"),
        "pwd; echo fetched > out/data; touch here 2>/dev/null || echo cwd read-only\n",
    )
    .unwrap();
    let o = s.run(&[
        "run",
        "--audit",
        "-",
        "--rw",
        "./out",
        "--net",
        "allow=pypi.org:443",
        "--",
        "sh",
        "fetch.sh",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let cwd = s.path().display().to_string();
    assert_eq!(o.stdout, format!("{cwd}\ncwd read-only\n"));
    assert_eq!(
        std::fs::read_to_string(s.path().join("out/data")).unwrap(),
        "fetched\n"
    );
    assert!(!s.path().join("here").exists());
    assert!(
        o.stderr.contains(&format!(
            r#""kind":"fs","decision":"allow","what":"{cwd}","rule":"fs.read""#
        )),
        "{o:?}"
    );
    // --workdir says where the command starts instead, and the directory stays unseen; a
    // --rw over the directory keeps it writable.
    let o = s.run(&[
        "run",
        "--workdir",
        "/tmp",
        "--",
        "sh",
        "-c",
        &format!("pwd; ls {cwd}"),
    ]);
    assert_eq!((o.code, o.stdout.as_str()), (2, "/tmp\n"), "{o:?}");
    let o = s.run(&[
        "run",
        "--rw",
        ".",
        "--",
        "sh",
        "-c",
        "touch here && ls here",
    ]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "here\n"), "{o:?}");
});

/// The worker's uid and gid on the host, read from outside while it runs.
fn host_ids_of_worker(s: &Sandbox, extra: &[&str]) -> (String, String) {
    // Apart for the root and the user run of the same test, which run at once.
    let marker = format!("{}.{}", 300 + u32::from(s.is_root()), rand_suffix());
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend(["--", "sleep", &marker]);
    let mut child = s.command(&args, &[]).spawn().unwrap();
    let want = format!("sleep\0{marker}\0");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let found = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            (cmd == want.as_bytes())
                .then(|| std::fs::read_to_string(e.path().join("status")).ok())
                .flatten()
        });
        if let Some(st) = found {
            break st;
        }
        assert!(Instant::now() < deadline, "the worker never showed up");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid:"), field("Gid:"))
}

// A worker started by root ran as host uid 0: with /etc shown it read /etc/shadow, and it
// owned every root file it could see. It is `nobody` on the host now, root only inside.
both!(a_worker_is_never_host_root, |s| {
    let (uid, gid) = host_ids_of_worker(s, &[]);
    let want = s.user.as_deref().map(nix_uid).unwrap_or(65534);
    assert_eq!(uid, format!("{want} {want} {want} {want}"));
    assert_eq!(gid.split(' ').count(), 4, "{gid}");
    assert!(!gid.split(' ').any(|g| g == "0"), "{gid}");
    let out = s.path().join("out").display().to_string();
    let o = s.run(&[
        "run",
        "--ro",
        "/etc",
        "--rw",
        &out,
        "--",
        "sh",
        "-c",
        &format!("id -u; echo x > {out}/made; mkdir {out}/sub; cat /etc/shadow"),
    ]);
    let caller = s.user.as_deref().map(nix_uid).unwrap_or(0);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (1, format!("{caller}\n").as_str()),
        "{o:?}"
    );
    assert!(
        o.stderr
            .ends_with("cat: can't open '/etc/shadow': Permission denied\n")
            || o.stderr.ends_with("cat: /etc/shadow: Permission denied\n"),
        "{o:?}"
    );
    // What it wrote under --rw is the caller's on the host.
    use std::os::unix::fs::MetadataExt;
    for p in ["out/made", "out/sub"] {
        let m = std::fs::metadata(s.path().join(p)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (caller, if s.is_root() { 0 } else { m.gid() }),
            "{p}"
        );
    }
});
