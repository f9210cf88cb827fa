//! The native engine's sandboxes, attacked. The escape attempts of
//! `tests/fixtures/runner/escape.py` (the ones `devbox run` is held to in runner.rs) run as
//! native services and through `devbox exec` into them, and must come out contained as
//! runner.rs expects; a command run by `exec` must be no stronger than its service; a
//! service reads no host secret and writes only its tmpfs and rw volumes; its published
//! port is on loopback only and its other ports are not on the host at all; and devbox's
//! own environment does not reach it. Every case runs as root and as the unprivileged user
//! DEVBOX_TEST_ROOTLESS_USER (through `runuser`), with no container engine to be found.
//! Every service carries a marker in its environment: whatever it started is found in
//! /proc, and must be gone after `down`.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::native::{each, Native, Out};
use crate::util::{repo, BIN};

const PY: &str = "/usr/bin/python3";

/// In the environment of every devbox command of these tests: no service may see either.
const HOST_VARS: [(&str, &str); 2] = [
    ("SECRET_FROM_HOST", "1"),
    ("DEVBOX_SECRET_TOKEN", "hunter2"),
];

/// A native project in a temporary directory holding escape.py, a host secret, `out/`
/// (a service's rw volume) and `gate/`, as one user, with its own runtime and data
/// directories. Dropping it takes the project down and kills whatever carries its marker.
struct Project(Native);

impl std::ops::Deref for Project {
    type Target = Native;
    fn deref(&self) -> &Native {
        &self.0
    }
}

/// The verdict of one case, as runner.rs reads it: it printed `CONTAINED:` and exited 0,
/// or the sandbox killed it (SIGSYS, SIGKILL) before it could say anything.
#[track_caller]
fn assert_contained(what: &str, code: i32, stdout: &str) {
    if stdout.contains("CONTAINED:") {
        assert_eq!(code, 0, "{what}: {stdout}");
        return;
    }
    assert!(
        code > 128 && !stdout.contains("ESCAPED"),
        "{what}: not contained (exit {code}): {stdout}"
    );
}

impl Project {
    /// `toml` with `{project}` and `{mark}` filled in.
    fn new(user: Option<&str>, name: &str, toml: &str) -> Self {
        let p = Self(Native::new(user, name, toml));
        std::fs::copy(
            repo().join("tests/fixtures/runner/escape.py"),
            p.path().join("escape.py"),
        )
        .unwrap();
        std::fs::write(p.path().join("secret.txt"), "host secret\n").unwrap();
        for d in ["out", "gate"] {
            std::fs::create_dir(p.path().join(d)).unwrap();
        }
        if let Some(u) = user {
            let st = Command::new("chown")
                .args(["-R", u, &p.path().display().to_string()])
                .status()
                .unwrap();
            assert!(st.success(), "chown to {u}");
        }
        p
    }

    fn host_path(&self, rel: &str) -> String {
        self.path().join(rel).display().to_string()
    }

    /// `program` as [`Native::base`] runs it, with [`HOST_VARS`] set.
    fn base(&self, program: &str) -> Command {
        let mut c = self.0.base(program);
        c.envs(HOST_VARS);
        c
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.base(BIN);
        c.args(args);
        c
    }

    fn output(mut c: Command) -> Out {
        let out = c.output().expect("runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        Self::output(self.command(args))
    }

    fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(o.code, 0, "devbox {args:?} as {:?}: {o:#?}", self.user);
        o
    }

    /// `sh -c SCRIPT` with descriptor 7 open on the host secret (not close-on-exec), and
    /// devbox itself as `$DEVBOX`.
    fn with_fd_7(&self, script: &str) -> Out {
        let mut c = self.base("/bin/sh");
        c.args(["-c", &format!("exec 7<secret.txt; {script}")])
            .env("DEVBOX", BIN);
        Self::output(c)
    }

    /// `devbox exec -T SERVICE -- ARGV`.
    fn exec(&self, service: &str, argv: &[&str]) -> Out {
        let mut args = vec!["exec", "-T", service, "--"];
        args.extend_from_slice(argv);
        self.run(&args)
    }

    /// The service's log lines, without the `SERVICE | ` prefix and the runner's warnings
    /// (an unprivileged user on cgroup v1 is told that its limits are rlimits).
    fn log(&self, service: &str) -> String {
        self.logs_of(&["logs", service])
            .remove(service)
            .unwrap_or_default()
    }

    /// Every service's log lines, as [`Project::log`] gives them.
    fn logs(&self) -> std::collections::BTreeMap<String, String> {
        self.logs_of(&["logs"])
    }

    fn logs_of(&self, args: &[&str]) -> std::collections::BTreeMap<String, String> {
        let mut logs = std::collections::BTreeMap::<String, String>::new();
        for line in self.ok(args).stdout.lines() {
            let Some((service, text)) = line.split_once(" | ") else {
                continue;
            };
            if !text.starts_with("devbox: warning: ") {
                let log = logs.entry(service.trim_end().to_owned()).or_default();
                log.push_str(text);
                log.push('\n');
            }
        }
        logs
    }

    /// The records of the project's containers (documented in docs/engines.md): name
    /// (without the project) to state and exit code.
    fn records(&self) -> std::collections::BTreeMap<String, (String, Option<i64>)> {
        let dir = self
            .path()
            .join("rt/devbox/native")
            .join(&self.project)
            .join("containers");
        let prefix = format!("{}-", self.project);
        let mut found = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue; // being written
            };
            let name = v["name"].as_str().unwrap_or_default();
            let name = name.strip_prefix(&prefix).unwrap_or(name).to_owned();
            let state = v["state"].as_str().unwrap_or_default().to_owned();
            found.insert(name, (state, v["exit_code"].as_i64()));
        }
        found
    }

    /// `down`, then (a little) wait for every marked process to be gone.
    fn down_leaving_nothing(&self) {
        self.ok(&["down"]);
        let end = Instant::now() + Duration::from_secs(5);
        while !self.leftovers().is_empty() {
            assert!(
                Instant::now() < end,
                "after down, still running as {:?}: {:?}",
                self.user,
                self.leftovers()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The host's first non-loopback IPv4 address, from `ip -4 -o addr`.
fn external_ip() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut words = l.split_whitespace().skip_while(|w| *w != "inet").skip(1);
        let ip = words.next()?.split('/').next()?.to_owned();
        (!ip.starts_with("127.")).then_some(ip)
    })
}

/// A port free on the host right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A one-shot case waits for `/gate/go` (so that `up` sees it running), then becomes
/// `python3 /x/escape.py CASE ARGS`: the case is the service's own program.
const GATE: &str = "import os, sys, time
while not os.path.exists('/gate/go'):
    time.sleep(0.02)
os.execv(sys.argv[1], sys.argv[1:])";

/// An exec target: writes what its own process is (status, cgroups, limits) to its tmpfs,
/// for exec'd commands to be compared with, and sleeps.
const BOX: &str = "import time
for f in ('status', 'cgroup', 'limits'):
    open('/tmp/service.' + f, 'w').write(open('/proc/self/' + f).read())
time.sleep(1000)";

/// The settings each case runs under, as runner.rs gives them to `devbox run`; each group
/// has an exec target `box-GROUP` beside its one-shot cases.
const GROUPS: &[(&str, &str)] = &[
    ("plain", ""),
    ("etc", r#"policy = { fs = { read = ["/etc"] } }"#),
    (
        "etcdeny",
        r#"policy = { fs = { read = ["/etc"], deny = ["/etc/shadow"] } }"#,
    ),
    (
        "exec",
        r#"policy = { exec = { allow = ["/usr/bin/python3"] } }"#,
    ),
    ("pids", "pids_limit = 32"),
    ("mem", r#"memory = "64m""#),
    ("fsize", "ulimits = { fsize = 1048576 }"),
    (
        "proxy",
        r#"policy = { net = { default = "deny", allow = ["127.0.0.1:{port}"] } }"#,
    ),
];

fn group_settings(group: &str) -> &'static str {
    GROUPS.iter().find(|(g, _)| *g == group).unwrap().1
}

fn service(name: &str, settings: &str, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"
[services.{name}]
command = [{argv}]
volumes = ["./escape.py:/x/escape.py:ro", "./gate:/gate:ro"]
tmpfs = ["/tmp"]
env = {{ NATIVE_TEST_MARK = "{{mark}}" }}
restart = "no"
{settings}
"#,
        argv = argv.join(", ")
    )
}

#[test]
fn escape_cases_are_contained_in_native_services_and_in_exec() {
    each(|who| {
        // Host things the cases reach for: a loopback and an external listener, a process
        // of the same user, the project's secret (not shown to any service).
        let lo = TcpListener::bind("127.0.0.1:0").unwrap();
        let lo_port = lo.local_addr().unwrap().port().to_string();
        let ext = external_ip().map(|ip| {
            let l = TcpListener::bind((ip.as_str(), 0)).unwrap();
            let port = l.local_addr().unwrap().port().to_string();
            (l, ip, port)
        });
        let mut sleeper = match who {
            None => Command::new("sleep").arg("60").spawn().unwrap(),
            Some(u) => Command::new("setpriv")
                .args(["--reuid", u, "--regid", u, "--clear-groups", "sleep", "60"])
                .spawn()
                .unwrap(),
        };
        let sleeper_pid = sleeper.id().to_string();

        let p = Project::new(who, "nsec-escape", "");
        let dir = p.path().display().to_string();
        let secret = p.host_path("secret.txt");
        let mut cases: Vec<(&str, Vec<String>)> = vec![
            (
                "plain",
                vec!["write_outside".into(), "/x".into(), dir.clone()],
            ),
            (
                "plain",
                vec![
                    "read_host_file".into(),
                    secret.clone(),
                    "/root/.bashrc".into(),
                ],
            ),
            ("plain", vec!["shadow".into()]),
            ("etc", vec!["shadow".into()]),
            ("etcdeny", vec!["shadow".into()]),
            ("plain", vec!["proc_root".into(), secret.clone()]),
            ("plain", vec!["signal_host".into(), sleeper_pid.clone()]),
            (
                "plain",
                vec!["host_tcp".into(), "127.0.0.1".into(), lo_port.clone()],
            ),
            (
                "proxy",
                vec!["host_tcp".into(), "127.0.0.1".into(), lo_port.clone()],
            ),
            ("plain", vec!["leaked_fd".into()]),
            (
                "plain",
                vec!["environ".into(), "DEVBOX_SECRET_TOKEN".into()],
            ),
            ("plain", vec!["environ".into(), "SECRET_FROM_HOST".into()]),
            ("exec", vec!["exec".into(), "/usr/bin/id".into()]),
            ("pids", vec!["fork_bomb".into(), "400".into()]),
            ("mem", vec!["memory_hog".into(), "512".into()]),
            ("fsize", vec!["fsize".into()]),
        ];
        for case in [
            "ptrace",
            "mount",
            "userns",
            "setns",
            "chroot",
            "raw_socket",
            "tiocsti",
            "add_key",
            "keyctl",
            "x32",
            "bpf",
            "io_uring",
            "perf_event",
        ] {
            cases.push(("plain", vec![case.into()]));
        }
        // (This machine has one; the ports test says so when a machine has none.)
        if let Some((_, ip, port)) = &ext {
            cases.push(("plain", vec!["host_tcp".into(), ip.clone(), port.clone()]));
        }
        let settings = |group: &str| group_settings(group).replace("{port}", &lo_port);
        let mut toml = "[project]\nname = \"{project}\"\n".to_owned();
        for (group, _) in GROUPS {
            toml.push_str(&service(
                &format!("box-{group}"),
                &settings(group),
                &[PY, "-c", BOX],
            ));
        }
        for (i, (group, args)) in cases.iter().enumerate() {
            let mut argv = vec![PY, "-c", GATE, PY, "/x/escape.py"];
            argv.extend(args.iter().map(String::as_str));
            toml.push_str(&service(&format!("case-{i}"), &settings(group), &argv));
        }
        p.write_toml(&toml);

        // The first `up` starts the supervisor, with the caller's descriptor 7 open.
        let up = p.with_fd_7("exec \"$DEVBOX\" up");
        assert_eq!(up.code, 0, "{up:#?}");
        std::fs::write(p.path().join("gate/go"), "").unwrap();
        // Through exec first, while the service cases run; the fork bomb (whose children
        // sleep 5 s, holding exec's output open) beside the others.
        let in_exec = |group: &str, args: &[String]| {
            let what = format!("{args:?} in exec into box-{group} as {who:?}");
            let mut argv = vec![PY, "/x/escape.py"];
            argv.extend(args.iter().map(String::as_str));
            let o = if args[0] == "leaked_fd" {
                p.with_fd_7(&format!(
                    "exec \"$DEVBOX\" exec -T box-{group} -- {PY} /x/escape.py leaked_fd"
                ))
            } else {
                p.exec(&format!("box-{group}"), &argv)
            };
            assert_contained(&what, o.code, &o.stdout);
            check_case(&what, args, p.user.is_none(), o.code, &o.stdout);
        };
        std::thread::scope(|s| {
            let (bombs, rest): (Vec<_>, Vec<_>) =
                cases.iter().partition(|(_, a)| a[0] == "fork_bomb");
            let bombs = s.spawn(move || bombs.iter().for_each(|(g, a)| in_exec(g, a)));
            for (group, args) in rest {
                if args[0] != "exec" {
                    // see policy_exec_holds_for_a_command_run_by_exec
                    in_exec(group, args);
                }
            }
            bombs.join().unwrap();
        });

        let end = Instant::now() + Duration::from_secs(30);
        let records = loop {
            let r = p.records();
            let done = (0..cases.len()).all(|i| {
                r.get(&format!("case-{i}"))
                    .is_some_and(|(s, _)| s == "stopped")
            });
            if done {
                break r;
            }
            assert!(Instant::now() < end, "cases still running: {r:?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let logs = p.logs();
        for (i, (group, args)) in cases.iter().enumerate() {
            let name = format!("case-{i}");
            let what = format!("{args:?} as service {name} ({group}) as {who:?}");
            let code = records[&name].1.expect("an exit code") as i32;
            let log = logs.get(&name).map_or("", String::as_str);
            assert_contained(&what, code, log);
            check_case(&what, args, p.user.is_none(), code, log);
        }
        assert!(!p.path().join("devbox-escape").exists());
        assert!(
            sleeper.try_wait().unwrap().is_none(),
            "host process survives"
        );
        let o = p.exec("box-plain", &["/usr/bin/unshare", "-U", "true"]);
        assert_ne!(o.code, 0, "{o:?}");

        p.down_leaving_nothing();
        drop(p);
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        drop((lo, ext));
    });
}

/// What runner.rs asserts of a case beyond its verdict.
#[track_caller]
fn check_case(what: &str, args: &[String], root: bool, code: i32, out: &str) {
    match args[0].as_str() {
        "exec" => assert!(out.contains("EACCES"), "{what}: {out}"),
        // Python ignores SIGXFSZ, so the write fails instead of the process dying.
        "fsize" => assert!(out.contains("EFBIG"), "{what}: {out}"),
        // A real cgroup: the kernel's OOM killer stops it (an unprivileged user on
        // cgroup v1 has RLIMIT_AS, and a MemoryError).
        "memory_hog" if root => assert_eq!(code, 137, "{what}: {out}"),
        _ => {}
    }
}

#[test]
fn an_exec_is_no_stronger_than_its_service() {
    each(|who| {
        let mut toml = "[project]\nname = \"{project}\"\n".to_owned();
        for (group, settings) in [
            ("plain", ""),
            ("limited", "pids_limit = 32\nmemory = \"64m\""),
        ] {
            toml.push_str(&service(
                &format!("box-{group}"),
                settings,
                &[PY, "-c", BOX],
            ));
        }
        let p = Project::new(who, "nsec-strength", &toml);
        p.ok(&["up"]);
        for service in ["box-plain", "box-limited"] {
            let what = format!("{service} as {who:?}");
            let own = |file: &str| {
                let o = p.exec(service, &["cat", &format!("/proc/self/{file}")]);
                assert_eq!(o.code, 0, "{what}: {o:#?}");
                o.stdout
            };
            let its = |file: &str| {
                let o = p.exec(service, &["cat", &format!("/tmp/service.{file}")]);
                assert_eq!(o.code, 0, "{what}: {o:#?}");
                o.stdout
            };
            let fields = |status: &str| -> Vec<String> {
                status
                    .lines()
                    .filter(|l| {
                        [
                            "Uid:",
                            "Gid:",
                            "Groups:",
                            "CapInh:",
                            "CapPrm:",
                            "CapEff:",
                            "CapBnd:",
                            "CapAmb:",
                            "NoNewPrivs:",
                            "Seccomp:",
                        ]
                        .iter()
                        .any(|f| l.starts_with(f))
                    })
                    .map(str::to_owned)
                    .collect()
            };
            let exec_status = fields(&own("status"));
            for want in [
                "CapEff:\t0000000000000000",
                "CapPrm:\t0000000000000000",
                "CapBnd:\t0000000000000000",
                "NoNewPrivs:\t1",
                "Seccomp:\t2",
                "Uid:\t65532\t65532\t65532\t65532",
            ] {
                assert!(
                    exec_status.iter().any(|l| l == want),
                    "{what}: {exec_status:?}"
                );
            }
            assert_eq!(exec_status, fields(&its("status")), "{what}");
            // Its limits: the service's cgroups (those devbox made for its limits; this
            // host may place other processes on its own) and rlimits.
            let exec_cgroups = own("cgroup");
            let limited: Vec<String> = its("cgroup")
                .lines()
                .filter(|l| l.contains(":/devbox/"))
                .map(str::to_owned)
                .collect();
            if who.is_none() {
                assert!(!limited.is_empty(), "{what}: {}", its("cgroup"));
            }
            for l in &limited {
                assert!(
                    exec_cgroups.lines().any(|e| e == l),
                    "{what}: {l} not in {exec_cgroups}"
                );
            }
            assert_eq!(own("limits"), its("limits"), "{what}");
        }
        p.down_leaving_nothing();
    });
}

#[test]
fn a_native_service_reads_no_host_secret_and_writes_only_its_tmpfs_and_rw_volumes() {
    // Each attempt says what happened; the service runs it as its program, and exec again.
    let attempts = "for p in /usr/x /x /x/y /etc/x /gate/x /tmp/ok /out/ok; do \
        if touch $p 2>/dev/null; then echo wrote $p; else echo refused $p; fi; done; \
        if cat /etc/shadow >/dev/null 2>&1; then echo read /etc/shadow; \
        else echo no /etc/shadow; fi";
    let want = "refused /usr/x\nrefused /x\nrefused /x/y\nrefused /etc/x\nrefused /gate/x\n\
        wrote /tmp/ok\nwrote /out/ok\nno /etc/shadow\n";
    each(|who| {
        let toml = format!(
            r#"
[project]
name = "{{project}}"

[services.fs]
command = ["/bin/sh", "-c", "{attempts}; rm /out/ok; touch /tmp/done; exec sleep 1000"]
volumes = ["./escape.py:/x/escape.py:ro", "./gate:/gate:ro", "./out:/out"]
tmpfs = ["/tmp"]
env = {{ NATIVE_TEST_MARK = "{{mark}}" }}
healthcheck = {{ cmd = ["test", "-e", "/tmp/done"], interval = "100ms" }}

# It writes the same /out/ok: it starts once fs is done with it.
[services.etc]
command = ["/bin/sh", "-c", "{attempts}; rm /out/ok; exec sleep 1000"]
volumes = ["./escape.py:/x/escape.py:ro", "./gate:/gate:ro", "./out:/out"]
tmpfs = ["/tmp"]
env = {{ NATIVE_TEST_MARK = "{{mark}}" }}
policy = {{ fs = {{ read = ["/etc"] }} }}
depends_on = {{ fs = "healthy" }}
"#
        );
        let p = Project::new(who, "nsec-fs", &toml);
        let listing = || -> Vec<_> {
            let mut v: Vec<_> = std::fs::read_dir(p.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| !["rt", "share", "state", ".data"].iter().any(|d| n == d))
                .collect();
            v.sort();
            v
        };
        let before = listing();
        p.ok(&["up"]);
        for service in ["fs", "etc"] {
            let end = Instant::now() + Duration::from_secs(10);
            while !p.log(service).contains("/etc/shadow") {
                assert!(Instant::now() < end, "{}", p.log(service));
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(p.log(service), want, "{service} as {who:?}");
            let o = p.exec(service, &["/bin/sh", "-c", attempts]);
            assert_eq!((o.code, o.stdout.as_str()), (0, want), "{service}: {o:#?}");
            // The rw volume is the host's directory.
            assert!(p.path().join("out/ok").exists());
            std::fs::remove_file(p.path().join("out/ok")).unwrap();
        }
        for gone in ["/usr/x", "/x", "/etc/x"] {
            assert!(!Path::new(gone).exists(), "{gone} written on the host");
        }
        assert_eq!(listing(), before);
        assert_eq!(std::fs::read_dir(p.path().join("gate")).unwrap().count(), 0);
        p.down_leaving_nothing();
    });
}

/// Connects and reads what the server says first.
fn ask(addr: &str) -> std::io::Result<String> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

#[test]
fn a_published_port_is_on_loopback_only_and_an_unpublished_one_is_not_on_the_host() {
    let Some(ext) = external_ip() else {
        crate::harness::skip("this machine has no non-loopback IPv4 address (ip -4 -o addr)");
    };
    each(|who| {
        // Inside, the server listens on the wildcard address, on both ports.
        let (published, inside, unpublished) = (free_port(), free_port(), free_port());
        let toml = format!(
            r#"
[project]
name = "{{project}}"

[services.web]
command = ["/usr/bin/python3", "-c", '''
import socket, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    while True:
        c, _ = s.accept()
        c.sendall(b"port %d\n" % port)
        c.close()
threading.Thread(target=serve, args=({unpublished},), daemon=True).start()
serve({inside})
''']
env = {{ NATIVE_TEST_MARK = "{{mark}}" }}
ports = ["{published}:{inside}"]
healthcheck = {{ tcp = {inside}, interval = "200ms" }}
"#
        );
        let p = Project::new(who, "nsec-ports", &toml);
        p.ok(&["up"]);
        let end = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            match ask(&format!("127.0.0.1:{published}")) {
                Ok(a) if !a.is_empty() => break a,
                other => assert!(Instant::now() < end, "{other:?}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(answer, format!("port {inside}\n"));
        // The unpublished port answers inside the sandbox…
        let o = p.exec(
            "web",
            &[
                PY,
                "-c",
                &format!(
                    "import socket; print(socket.create_connection(('127.0.0.1', {unpublished})).recv(100).decode(), end='')"
                ),
            ],
        );
        assert_eq!(o.stdout, format!("port {unpublished}\n"), "{o:#?}");
        // …and nowhere on the host; the published one only on loopback.
        for addr in [
            format!("{ext}:{published}"),
            format!("127.0.0.1:{unpublished}"),
            format!("{ext}:{unpublished}"),
            format!("127.0.0.1:{inside}"),
            format!("{ext}:{inside}"),
        ] {
            let e = ask(&addr).expect_err(&addr);
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{addr} as {who:?}: {e}"
            );
        }
        p.down_leaving_nothing();
    });
}

#[test]
fn a_native_service_sees_none_of_devboxs_environment() {
    each(|who| {
        let toml = r#"
[project]
name = "{project}"

[services.env]
command = ["/bin/sh", "-c", "env; echo end; exec sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}", OWN = "set" }

[services.passed]
command = ["/bin/sh", "-c", "env; echo end; exec sleep 1000"]
env = { NATIVE_TEST_MARK = "{mark}" }
policy = { env = { pass = ["SECRET_FROM_HOST"] } }
"#;
        let p = Project::new(who, "nsec-env", toml);
        p.ok(&["up"]);
        let sorted = |text: &str| -> Vec<String> {
            let mut v: Vec<String> = text
                .lines()
                .filter(|l| *l != "end")
                .map(str::to_owned)
                .collect();
            v.sort();
            v
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !(p.log("env").contains("end\n") && p.log("passed").contains("end\n")) {
            assert!(Instant::now() < end, "{}", p.log("env"));
            std::thread::sleep(Duration::from_millis(50));
        }
        let path = "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
        let mark = p.mark.clone();
        // Exactly what sandbox.toml gives it (and the shell's PWD).
        assert_eq!(
            sorted(&p.log("env")),
            ["HOME=/", &mark, "OWN=set", path, "PWD=/"],
            "as {who:?}"
        );
        let o = p.exec("env", &["env"]);
        assert_eq!(
            sorted(&o.stdout),
            ["HOME=/", &mark, "OWN=set", path],
            "as {who:?}: {o:#?}"
        );
        // What it is told to pass does arrive: devbox had it.
        assert_eq!(
            sorted(&p.log("passed")),
            ["HOME=/", &mark, path, "PWD=/", "SECRET_FROM_HOST=1"],
            "as {who:?}"
        );
        p.down_leaving_nothing();
    });
}

#[test]
fn policy_exec_holds_for_a_command_run_by_exec() {
    each(|who| {
        let toml = format!(
            "[project]\nname = \"{{project}}\"\n{}",
            service("box-exec", group_settings("exec"), &[PY, "-c", BOX])
        );
        let p = Project::new(who, "nsec-execallow", &toml);
        p.ok(&["up"]);
        let o = p.exec("box-exec", &[PY, "/x/escape.py", "exec", "/usr/bin/id"]);
        assert_contained(&format!("exec as {who:?}"), o.code, &o.stdout);
        assert!(o.stdout.contains("EACCES"), "{o:#?}");
        p.down_leaving_nothing();
    });
}

#[test]
fn policy_exec_holds_for_a_cmd_healthcheck() {
    // A cmd check runs as exec does: under the service's Landlock ruleset, the program it
    // execs is refused, and the service never becomes healthy.
    let check = "import os; os.execv('/usr/bin/id', ['id'])";
    each(|who| {
        let settings = format!(
            "{}\nhealthcheck = {{ cmd = [{PY:?}, \"-c\", {check:?}], interval = \"300ms\", retries = 2 }}",
            group_settings("exec")
        );
        let toml = format!(
            "[project]\nname = \"{{project}}\"\n{}",
            service("checked", &settings, &[PY, "-c", BOX])
        );
        let p = Project::new(who, "nsec-checkexec", &toml);
        let up = p.run(&["up", "--timeout", "20s"]);
        assert_eq!(up.code, 1, "as {who:?}: {up:#?}");
        assert!(
            up.stderr
                .contains("error: service `checked` is unhealthy\nlast log lines:\n"),
            "as {who:?}: {up:#?}"
        );
        assert!(
            up.stderr.ends_with(&format!(
                "  | devbox: healthcheck failed: `{PY} -c {check}` exited with code 1\n"
            )),
            "as {who:?}: {up:#?}"
        );
        p.down_leaving_nothing();
    });
}
