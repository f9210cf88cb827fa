//! Bad input: every case under tests/fixtures/bad/ is a sandbox.toml that `devbox check`
//! must refuse with exactly the text in its expected.stderr, exit 2, touching nothing.
//! `DEVBOX_BLESS=1 cargo test --test cli errors` rewrites the expected files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{repo, Devbox, Project};

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if m.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                stack.push(p);
            } else if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn copy_case(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "expected.stderr" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(to.join(&name)).unwrap();
            copy_case(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// Runs `devbox check` on a project and asserts it refused and changed nothing.
fn refuse(project: &Path) -> String {
    let before = snapshot(project);
    let out = Devbox::new(project).args(["check"]).run();
    assert_eq!(
        out.code,
        2,
        "{}: expected exit 2\nstdout: {}\nstderr: {}",
        project.display(),
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stdout, "");
    assert_eq!(
        snapshot(project),
        before,
        "{}: check changed the project directory",
        project.display()
    );
    out.stderr
}

#[test]
fn every_bad_fixture_is_refused_with_its_exact_message() {
    let root = repo().join("tests/fixtures/bad");
    let bless = std::env::var_os("DEVBOX_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 45, "only {} bad-input cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::Builder::new()
            .prefix("devbox-bad-")
            .tempdir()
            .unwrap();
        copy_case(case, tmp.path());
        if !tmp.path().join("Containerfile").exists() {
            std::fs::write(tmp.path().join("Containerfile"), "FROM scratch\n").unwrap();
        }
        let stderr = refuse(tmp.path());
        let expected_path = case.join("expected.stderr");
        if bless {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if stderr != expected {
            failures.push(format!(
                "── {name}\n── expected:\n{expected}\n── actual:\n{stderr}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ (DEVBOX_BLESS=1 to accept):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// Cases that cannot be committed as plain files: generated here.

#[test]
fn invalid_utf8_is_located() {
    let p = Project::new();
    std::fs::write(
        p.path().join("sandbox.toml"),
        b"[project]\nname = \"caf\xe9\"\n",
    )
    .unwrap();
    assert_eq!(
        refuse(p.path()),
        "error: invalid UTF-8 at byte 21\n --> sandbox.toml:2:12\n  |\n2 | name = \"caf\n  |            ^\n  = expected: a UTF-8 text file\n  = hint: re-save the file as UTF-8\n\nerror: sandbox.toml has 1 problem; nothing was changed\n"
    );
}

#[test]
fn a_ten_megabyte_file_is_refused_before_parsing() {
    let p = Project::new();
    let mut body = String::from("[project]\nname = \"big\"\n");
    while body.len() < 10 * 1024 * 1024 {
        body.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    p.write("sandbox.toml", &body);
    assert_eq!(
        refuse(p.path()),
        "error: sandbox.toml is 10.0 MiB; devbox reads at most 4 MiB\n  = hint: a sandbox.toml describes an environment; keep large data in files it references\n\nerror: sandbox.toml has 1 problem; nothing was changed\n"
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let p = Project::new();
    p.write(
        "sandbox.toml",
        &format!("x = {}{}\n", "[".repeat(10_000), "]".repeat(10_000)),
    );
    let err = refuse(p.path());
    assert!(err.starts_with("error: invalid TOML: "), "{err}");
    assert!(err.contains(" --> sandbox.toml:1:"), "{err}");
    assert!(
        err.contains("= hint: nest arrays and tables less deeply"),
        "{err}"
    );
}

#[test]
fn a_symlink_leading_out_of_the_project_is_refused() {
    let p = Project::with_toml("[data]\nroot = \"state\"\n[data.dirs]\nlogs = {}\n");
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path().join("state")).unwrap();
    let err = refuse(p.path());
    let expected = format!(
        "error: data root `state` goes through a symlink that leads outside the project: {}/state\n --> sandbox.toml:2:8\n  |\n2 | root = \"state\"\n  |        ^^^^^^^\n  = key: data.root\n  = expected: a path whose every component stays inside the project\n  = hint: replace the symlink with a real directory\n\n",
        p.path().display()
    );
    assert!(err.starts_with(&expected), "{err}");
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written through the link"
    );
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let p = Project::with_toml("[images.core]\n[services.a]\nimage = \"core\"\n");
    let before = snapshot(p.path());
    let out = p
        .devbox()
        .env("DEVBOX__SERVICES__A__PIDS_LIMIT", "0")
        .args(["check"])
        .run();
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: pids_limit = 0 is not a limit\n --> environment variable DEVBOX__SERVICES__A__PIDS_LIMIT\n  = key: services.a.pids_limit\n  = expected: a positive number of processes, or -1 for unlimited\n\nerror: sandbox.toml has 1 problem; nothing was changed\n"
    );
    assert_eq!(snapshot(p.path()), before);
}

// Huge or hostile input: the work and the output stay bounded.

/// `devbox ARGS` in `dir`, killed after `deadline`; keeps at most `cap` bytes of stderr
/// but counts all of it. A regression then fails in seconds, with the size it reached,
/// instead of filling memory with gigabytes of diagnostics.
fn run_bounded(dir: &Path, args: &[&str], deadline: Duration, cap: usize) -> Bounded {
    use std::io::Read;
    let mut cmd = std::process::Command::new(crate::util::BIN);
    cmd.current_dir(dir).args(args).env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("DEVBOX_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("devbox starts");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let (mut kept, mut total, mut buf) = (Vec::new(), 0usize, [0u8; 64 * 1024]);
            while let Ok(n @ 1..) = r.read(&mut buf) {
                total += n;
                let room = cap.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
            }
            (String::from_utf8_lossy(&kept).into_owned(), total)
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, _) = out.join().unwrap();
    let (stderr, stderr_bytes) = err.join().unwrap();
    Bounded {
        code,
        elapsed: start.elapsed(),
        stdout,
        stderr,
        stderr_bytes,
    }
}

#[derive(Debug)]
struct Bounded {
    /// None when it was killed at the deadline.
    code: Option<i32>,
    elapsed: Duration,
    stdout: String,
    stderr: String,
    stderr_bytes: usize,
}

#[test]
fn seventy_thousand_duplicate_ports_on_one_line_print_fifty_diagnostics_and_a_count() {
    // 70,000 copies of one port on a 1.4 MB line once took 6 GB and printed 12 GB: every
    // clash reprinted the whole line.
    let p = Project::new();
    p.write("Containerfile", "FROM scratch\n");
    let ports = vec!["\"127.0.0.1:8080:80\""; 70_000].join(", ");
    p.write(
        "sandbox.toml",
        &format!("[images.app]\n[services.a]\nimage = \"app\"\nports = [{ports}]\n"),
    );
    let out = run_bounded(p.path(), &["check"], Duration::from_secs(60), 1 << 20);
    assert_eq!(
        out.code,
        Some(2),
        "{:?} {}",
        out.elapsed,
        &out.stderr[..2000.min(out.stderr.len())]
    );
    assert!(
        out.stderr_bytes < 32 * 1024,
        "{} bytes of diagnostics",
        out.stderr_bytes
    );
    let window = |from: usize| {
        let line = format!("ports = [{ports}]");
        format!("…{}…", &line[from..from + 120])
    };
    let first = format!(
        "error: host port 127.0.0.1:8080/tcp is already published by a\n --> sandbox.toml:4:31\n  |\n4 | {}…\n  |                               ^^^^^^^^^^^^^^^^^^^\n  = key: services.a.ports[1]\n  = hint: services.a.ports[0] binds 127.0.0.1:8080; pick another host port\n\n",
        &format!("ports = [{ports}]")[..120]
    );
    assert!(out.stderr.starts_with(&first), "{}", &out.stderr[..2000]);
    // The 50th shown: ports[50], 40 characters of the line before its caret.
    let fiftieth = format!(
        "error: host port 127.0.0.1:8080/tcp is already published by a\n --> sandbox.toml:4:1060\n  |\n4 | {}\n  |                                          ^^^^^^^^^^^^^^^^^^^\n  = key: services.a.ports[50]\n  = hint: services.a.ports[0] binds 127.0.0.1:8080; pick another host port\n\nnote: and 69949 more like these, not shown (devbox prints the first 50)\n\nerror: sandbox.toml has 69999 problems; nothing was changed\n",
        window(1059 - 40)
    );
    assert!(out.stderr.ends_with(&fiftieth), "{}", out.stderr);
    assert_eq!(out.stderr.matches("\nerror: host port").count() + 1, 50);
    assert_eq!(out.stdout, "");
}

#[test]
fn a_long_line_is_shown_as_a_window_around_the_caret() {
    let p = Project::new();
    p.write("Containerfile", "FROM scratch\n");
    let mut ports: Vec<String> = (9000..9030)
        .map(|n| format!("\"127.0.0.1:{n}:80\""))
        .collect();
    ports.push("\"127.0.0.1:9000:80\"".into());
    ports.extend((9030..9040).map(|n| format!("\"127.0.0.1:{n}:80\"")));
    p.write(
        "sandbox.toml",
        &format!(
            "[images.app]\n[services.a]\nimage = \"app\"\nports = [{}]\n",
            ports.join(", ")
        ),
    );
    // Column 640 is the clash; the window keeps 40 characters before it, 120 in all.
    assert_eq!(
        refuse(p.path()),
        "error: host port 127.0.0.1:9000/tcp is already published by a\n --> sandbox.toml:4:640\n  |\n4 | …27.0.0.1:9028:80\", \"127.0.0.1:9029:80\", \"127.0.0.1:9000:80\", \"127.0.0.1:9030:80\", \"127.0.0.1:9031:80\", \"127.0.0.1:9032:8…\n  |                                          ^^^^^^^^^^^^^^^^^^^\n  = key: services.a.ports[30]\n  = hint: services.a.ports[0] binds 127.0.0.1:9000; pick another host port\n\nerror: sandbox.toml has 1 problem; nothing was changed\n"
    );
}

#[test]
fn control_bytes_from_the_file_are_escaped_not_sent_to_the_terminal() {
    // ESC ] 0 ; … BEL retitled the terminal and ESC [ 2 J cleared it.
    let p = Project::new();
    p.write("Containerfile", "FROM scratch\n");
    // Raw bytes in a comment: invalid TOML, so the line itself is shown.
    p.write(
        "sandbox.toml",
        "[project]\nname = \"x\" # \u{1b}]0;pwned\u{7} \u{1b}[2J\u{0}\n",
    );
    let raw = refuse(p.path());
    assert_eq!(
        raw,
        "error: invalid TOML: expected newline, `#`\n --> sandbox.toml:2:14\n  |\n2 | name = \"x\" # \\u{1b}]0;pwned\\u{7} \\u{1b}[2J\\u{0}\n  |              ^^^^^^\n  = hint: see https://toml.io for the syntax\n\nerror: sandbox.toml has 1 problem; nothing was changed\n"
    );
    // TOML escapes in a key: the line is harmless, the key and message were not.
    p.write(
        "sandbox.toml",
        "[images.app]\n[services.a]\nimage = \"app\"\n\"\\u001b]0;pwned\\u0007\\u0000\" = 1\n",
    );
    let key = refuse(p.path());
    assert!(
        key.starts_with("error: unknown key `\\u{1b}]0;pwned\\u{7}\\u{0}`\n --> sandbox.toml:4:1\n  |\n4 | \"\\u001b]0;pwned\\u0007\\u0000\" = 1\n  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  = key: services.a.\"\\u{1b}]0;pwned\\u{7}\\u{0}\"\n"),
        "{key}"
    );
    // A file name given with -f is shown escaped too.
    p.write("a\u{1b}[2Jb.toml", "x = 1\n");
    let named = p.devbox().args(["-f", "a\u{1b}[2Jb.toml", "check"]).run();
    assert_eq!(named.code, 2);
    assert_eq!(
        named.stderr,
        "error: unknown key `x`\n --> a\\u{1b}[2Jb.toml:1:1\n  |\n1 | x = 1\n  | ^\n  = key: x\n  = expected: one of project, data, images, volumes, networks, services, probes, workers\n  = hint: see `devbox schema` for every key\n\nerror: a\\u{1b}[2Jb.toml has 1 problem; nothing was changed\n"
    );
    for text in [raw, key, named.stderr] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "a control character reached the terminal: {text:?}"
        );
    }
}

#[test]
fn ten_thousand_services_check_in_seconds() {
    // 10,000 services with 30,000 audit findings took 223 s: every finding merged the
    // configuration layers again and rescanned the file for its line.
    let p = Project::new();
    p.write("Containerfile", "FROM scratch\n");
    let mut toml = String::from(
        "[project]\nname = \"big\"\n\n[images.app]\ncontainerfile = \"Containerfile\"\n\n",
    );
    for i in 0..10_000 {
        toml.push_str(&format!(
            "[services.svc{i}]\nimage = \"app\"\nuser = \"0:0\"\nports = [\"0.0.0.0:{}:8080\"]\n\n",
            20_000 + i
        ));
    }
    p.write("sandbox.toml", &toml);
    // Seconds in a debug build; before, many minutes. The bound is generous on purpose.
    let out = run_bounded(p.path(), &["check"], Duration::from_secs(90), 1 << 20);
    assert_eq!(out.code, Some(0), "after {:?}: {}", out.elapsed, out.stderr);
    assert_eq!(
        out.stdout,
        "✓ sandbox.toml is valid: project big, 10000 services, 1 image, 0 probes, 0 workers\naudit: 20000 high, 10000 medium, 20000 low (details: devbox audit)\n"
    );
}
