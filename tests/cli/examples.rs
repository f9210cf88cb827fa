//! Every example is a test: it validates, carries a working `#:schema` line, and the
//! committed schema accepts it (judged by check-jsonschema, an outside validator).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{reference_dir, repo, require, Devbox};

const SETUPS: &[&str] = &[
    "connector-runner",
    "hardened",
    "local-dev",
    "multi-tenant",
    "native-stack",
    "quickstart",
    "quickstart-containers",
    "supervisor-worker",
];

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("sandbox.toml").is_file())
        .collect();
    v.sort();
    v
}

/// Whether the example has services and every one is native (no `image`): it runs on
/// devbox's runner, not on Podman or Docker, so engine-backed loops leave it to the native
/// ones. (Examples of workers only have no services.)
pub(crate) fn is_native(example: &Path) -> bool {
    let out = Devbox::new(example)
        .args(["render", "--format", "json"])
        .run();
    assert_eq!(out.code, 0, "{}: {}", example.display(), out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let services = plan["services"].as_array().unwrap();
    !services.is_empty()
        && services
            .iter()
            .all(|s| s["spec"]["image"]["kind"] == "host")
}

#[test]
fn there_is_an_example_per_setup() {
    let names: Vec<String> = examples()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, SETUPS);
    for e in examples() {
        assert!(
            e.join("README.md").is_file(),
            "{} has no README.md",
            e.display()
        );
    }
}

#[test]
fn every_example_validates() {
    for e in examples() {
        let out = Devbox::new(&e).args(["check"]).run();
        assert_eq!(out.code, 0, "{}: {}", e.display(), out.stderr);
        assert_eq!(out.stderr, "", "{}: warnings", e.display());
    }
}

#[test]
fn every_example_points_editors_at_the_schema() {
    for e in examples() {
        let text = std::fs::read_to_string(e.join("sandbox.toml")).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let target = first.strip_prefix("#:schema ").unwrap_or_else(|| {
            panic!(
                "{}: first line must be `#:schema PATH`, is {first:?}",
                e.display()
            )
        });
        assert!(
            e.join(target).is_file(),
            "{}: {target} does not exist",
            e.display()
        );
    }
}

#[test]
fn the_committed_schema_accepts_every_example_template_and_the_reference() {
    if !require("check-jsonschema") {
        return;
    }
    let mut files: Vec<PathBuf> = examples().iter().map(|e| e.join("sandbox.toml")).collect();
    files.push(reference_dir().join("sandbox.toml"));
    for t in ["basic", "hardened", "worker"] {
        files.push(repo().join("templates").join(t).join("sandbox.toml"));
    }
    let out = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(repo().join("schema/sandbox.schema.json"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it is a real judge: a typo in a key is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[services.x]\nimage = \"a/b\"\nportz = [\"1\"]\n").unwrap();
    let out = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(repo().join("schema/sandbox.schema.json"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("'portz' was unexpected"));
}

#[test]
fn the_quickstart_is_native_and_its_container_form_is_not() {
    let native: Vec<String> = examples()
        .iter()
        .filter(|e| is_native(e))
        .map(|e| e.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Each of them verifies natively in tests/cli/native.rs.
    assert_eq!(native, ["native-stack", "quickstart"]);
}

/// One HTTP/1.0 request to 127.0.0.1:`port`; the whole answer.
fn get(port: u16, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

// The quickstart's server is the program its native service runs: it must serve the
// page, survive a client that sends nothing (the TCP healthcheck), and never serve a
// file outside its directory.
#[test]
fn the_quickstart_server_serves_its_site_and_nothing_else() {
    if !require("perl") {
        return;
    }
    let ex = repo().join("examples/quickstart");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("perl")
        .arg(ex.join("app/server.pl"))
        .arg(port.to_string())
        .arg(ex.join("site"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server.pl never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Connected and closed without a word, as a healthcheck does.
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    let page = get(port, "GET / HTTP/1.0\r\n\r\n");
    let index = std::fs::read_to_string(ex.join("site/index.html")).unwrap();
    assert!(
        page.starts_with("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n"),
        "{page}"
    );
    assert!(page.ends_with(&format!("\r\n\r\n{index}")), "{page}");
    assert!(
        index.contains("hello"),
        "the probe expects `hello`: {index}"
    );
    assert!(
        get(port, "GET /../sandbox.toml HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 400 "),
        "escaped its directory"
    );
    assert!(get(port, "GET /nope.html HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404 "));
    assert!(get(port, "POST / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405 "));
    server.kill().unwrap();
    server.wait().unwrap();
}
