//! examples/local-dev on real engines: the server listens on a Unix socket on the shared
//! named volume, the client round-trips over it (logging `uds_ok`), and devbox's `uds`
//! probe makes the same round trip from inside the client. A server that takes the
//! request and never answers fails both.

use std::path::{Path, PathBuf};

use crate::engine::{devbox, engine, engine_lock, ok, Engine};
use crate::util::repo;

const UDS_PROBE: &str = "the server answers on its Unix socket, seen from the client";
const LOG_PROBE: &str = "the client round-trips over the Unix socket";
const OWNER_PROBE: &str = "the server wrote its database atomically";
/// What a base image built before it carried `uds` leads to.
const HINT: &str = "(a base image without /bin/uds? scripts/setup-engines rebuilds it)";

/// A copy of examples/local-dev (the engine's user owns it), and its path.
fn example_copy(e: &Engine) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("devbox-local-dev-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("local-dev");
    std::fs::create_dir(&path).unwrap();
    for entry in std::fs::read_dir(repo().join("examples/local-dev")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), path.join(entry.file_name())).unwrap();
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
    (dir, path)
}

fn outcome(v: &serde_json::Value, name: &str, probe: &str) -> serde_json::Value {
    v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == probe)
        .unwrap_or_else(|| panic!("[{name}] no probe {probe}: {v}"))
        .clone()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// `verify` of the example as it is: the Unix-socket probes pass, and so does every other
/// one, except that on Docker and rootful Podman (no keep-id) the database belongs to the
/// service's uid 1000 rather than to the host user, and that probe says so.
fn verify_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let _lock = engine_lock();
    let (_tmp, dir) = example_copy(&e);
    let o = devbox(&e, &dir, &["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|err| panic!("[{name}] {err} {HINT}: {}{}", o.stdout, o.stderr));
    let uds = outcome(&v, name, UDS_PROBE);
    assert_eq!(uds["passed"], true, "[{name}] {HINT} {uds}");
    assert_eq!(uds["saw"], "answer \"pong\"", "[{name}] {uds}");
    let log = outcome(&v, name, LOG_PROBE);
    assert_eq!(log["passed"], true, "[{name}] {HINT} {log}");
    let keep_id = e.user.is_some();
    for p in v["probes"].as_array().unwrap() {
        if p["name"] == OWNER_PROBE && !keep_id {
            assert_eq!(p["passed"], false, "[{name}] {p}");
            assert_eq!(p["saw"], "file mode 0644 owner 1000", "[{name}] {p}");
        } else {
            assert_eq!(p["passed"], true, "[{name}] {p}");
        }
    }
    assert_eq!(o.code, if keep_id { 0 } else { 1 }, "[{name}] {}", o.stderr);
    assert!(!dir.join(".data").exists(), "[{name}] verify touched .data");
}

#[test]
fn local_dev_round_trips_over_its_unix_socket_on_rootful_podman() {
    verify_flow("podman");
}

#[test]
fn local_dev_round_trips_over_its_unix_socket_on_rootless_podman() {
    verify_flow("podman-rootless");
}

#[test]
fn local_dev_round_trips_over_its_unix_socket_on_docker() {
    verify_flow("docker");
}

/// Runs `devbox reset -y` when dropped (also when the test panics).
struct Reset<'a>(&'a Engine, &'a Path);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        let _ = devbox(self.0, self.1, &["reset", "-y"]);
    }
}

/// The example with a server that accepts on the socket, reads the request and closes
/// without an answer (its healthcheck on TCP, so it comes up): the `uds` probe fails with
/// the empty answer, and the client logs no `uds_ok`, only failures.
#[test]
fn local_dev_fails_when_the_server_does_not_answer_on_the_socket() {
    let name = "podman-rootless";
    let Some(e) = engine(name) else { return };
    let _lock = engine_lock();
    let (_tmp, dir) = example_copy(&e);
    let toml = dir.join("sandbox.toml");
    edit(&toml, "name = \"local-dev\"", "name = \"local-dev-mute\"");
    edit(
        &toml,
        "healthcheck = { cmd = \"echo ping | uds connect -t 1 /run/sock/app.sock | grep -qx pong\", interval = \"1s\", timeout = \"2s\", retries = 30 }",
        "healthcheck = { tcp = 7777, interval = \"1s\", timeout = \"1s\", retries = 30 }",
    );
    edit(&toml, "within = \"20s\"", "within = \"4s\"");
    edit(
        &dir.join("answer.sh"),
        "if [ \"$request\" = ping ]; then",
        "exit 0\nif [ \"$request\" = ping ]; then",
    );
    let _reset = Reset(&e, &dir);
    let up = devbox(&e, &dir, &["up", "--timeout", "60s"]);
    assert_eq!(up.code, 0, "{HINT} {}{}", up.stdout, up.stderr);
    let o = devbox(&e, &dir, &["probe", "--json"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let uds = outcome(&v, name, UDS_PROBE);
    assert_eq!(uds["passed"], false, "{uds}");
    assert_eq!(uds["saw"], "answer \"\"", "{uds}");
    let log = outcome(&v, name, LOG_PROBE);
    assert_eq!(log["passed"], false, "{log}");
    let logs = ok(&e, &dir, &["logs", "client"]).stdout;
    assert!(!logs.contains("uds_ok"), "{logs}");
    assert!(logs.contains("uds_failed: \n"), "{logs}");
}
