//! The data tree changed while devbox works on it: a thread swaps a `.data` directory
//! with a symlink to a directory outside the project (`renameat2(RENAME_EXCHANGE)` in a
//! loop) while the command runs, many times over, and a canary tree outside the project
//! must stay byte for byte as it was (contents, modes, owners, no new names). A
//! container that bind-mounts `.data` can do the same swap, so the swapper need not be
//! the user. Also: leftovers of a killed devbox, a `reset` that cannot finish, and a
//! `down` with a link out in `.data`.
//!
//! `up`, `reset` and `down` need an engine before they reach `.data`: they run on
//! rootful Podman (`DEVBOX_TEST_PODMAN_SOCKET`), skipping without it unless
//! `DEVBOX_REQUIRE_ENGINES=1`. `devbox run WORKER` makes the data tree without one.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use crate::util::{test_var, Output, Project};

const PODMAN_HINT: &str =
    "export DEVBOX_TEST_PODMAN_SOCKET=/run/podman/podman.sock (rootful Podman's API socket)";
const DOCKER_HINT: &str =
    "export DEVBOX_TEST_DOCKER_SOCKET=/var/run/docker.sock (scripts/setup-engines prints it)";

/// Runs per test. A check and the action it guards are microseconds apart and the
/// swapper flips about every 10 µs, so before the data tree worked on descriptors a run
/// hit the window once in 30 to 100 runs here (measured: the first hit came at runs 8,
/// 9, 31, 43, 45 and 93): 200 runs catch a 1-in-40 window 99% of the time, in a few
/// seconds (devbox takes about 30 ms a run).
const RUNS: usize = 200;

/// Swaps `a` and `b` with `renameat2(RENAME_EXCHANGE)` until stopped.
struct Swapper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
    a: PathBuf,
    b: PathBuf,
}

impl Swapper {
    fn start(a: &Path, b: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, x, y) = (stop.clone(), a.to_path_buf(), b.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !flag.load(Ordering::Relaxed) {
                // Fails once devbox removed one of the names; keep trying until stopped.
                if renameat2(AT_FDCWD, &x, AT_FDCWD, &y, RenameFlags::RENAME_EXCHANGE).is_ok() {
                    swaps += 1;
                }
            }
            swaps
        });
        Self {
            stop,
            thread: Some(thread),
            a: a.to_path_buf(),
            b: b.to_path_buf(),
        }
    }

    /// Stops swapping and puts the real directory back at `a` (when both still exist).
    /// Returns how many swaps were made.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let swaps = self.thread.take().unwrap().join().unwrap();
        if self.a.is_symlink() && self.b.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            renameat2(
                AT_FDCWD,
                &self.a,
                AT_FDCWD,
                &self.b,
                RenameFlags::RENAME_EXCHANGE,
            )
            .unwrap();
        }
        swaps
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every entry under `root`, `root` included: kind, mode, owner, and the bytes of a
/// file or the target of a link.
type Snapshot = BTreeMap<PathBuf, (String, u32, u32, u32, Vec<u8>)>;

fn snapshot(root: &Path) -> Snapshot {
    fn walk(root: &Path, p: &Path, out: &mut Snapshot) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let (kind, body) = if m.is_symlink() {
            let t = std::fs::read_link(p).unwrap();
            ("link", t.into_os_string().into_encoded_bytes())
        } else if m.is_dir() {
            ("dir", Vec::new())
        } else {
            ("file", std::fs::read(p).unwrap())
        };
        out.insert(
            rel,
            (kind.into(), m.mode() & 0o7777, m.uid(), m.gid(), body),
        );
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(root, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

/// A directory outside the project whose names match what devbox works on in `.data`.
struct Canary {
    dir: tempfile::TempDir,
    before: Snapshot,
}

impl Canary {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("devbox-canary-")
            .tempdir()
            .unwrap();
        for i in 0..8 {
            std::fs::write(dir.path().join(format!("f{i}")), format!("precious {i}\n")).unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/deep"), "precious too\n").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let before = snapshot(dir.path());
        Self { dir, before }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Panics, saying what changed, unless the tree is as it was.
    fn check(&self, run: usize, what: &str, o: &Output) {
        let now = snapshot(self.path());
        if now != self.before {
            let changed: Vec<String> = self
                .before
                .keys()
                .chain(now.keys())
                .filter(|k| self.before.get(*k) != now.get(*k))
                .map(|k| {
                    format!(
                        "  {}: {:?} -> {:?}",
                        k.display(),
                        self.before.get(k).map(|v| (&v.0, v.1, v.2, v.3)),
                        now.get(k).map(|v| (&v.0, v.1, v.2, v.3))
                    )
                })
                .collect();
            panic!(
                "run {run}: {what} changed {} outside the project:\n{}\nexit {}\nstdout:\n{}stderr:\n{}",
                self.path().display(),
                changed.join("\n"),
                o.code,
                o.stdout,
                o.stderr
            );
        }
    }
}

/// `devbox ARGS` on rootful Podman.
fn podman(p: &Project, socket: &str, args: &[&str]) -> Output {
    on("podman", p, socket, args)
}

/// `devbox ARGS` on `engine` (`podman`, rootful, or `docker`) at `socket`.
fn on(engine: &str, p: &Project, socket: &str, args: &[&str]) -> Output {
    let host = if engine == "docker" {
        "DOCKER_HOST"
    } else {
        "CONTAINER_HOST"
    };
    p.devbox()
        .env("DEVBOX_ENGINE", engine)
        .env(host, &format!("unix://{socket}"))
        .args(args)
        .run()
}

/// Removes `p` whatever it is (a symlink is removed, never followed).
fn remove(p: &Path) {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).unwrap(),
        Ok(_) => std::fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

/// `.data/NAME` as a real directory holding `f0`..`f7` (the canary's names), and
/// `swap`, a symlink to the canary, next to `.data` in the project.
fn fresh_tree(p: &Project, name: &str, files: bool, canary: &Canary) -> (PathBuf, PathBuf) {
    let data = p.path().join(".data");
    remove(&data);
    let dir = data.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    if files {
        for i in 0..8 {
            std::fs::write(dir.join(format!("f{i}")), "junk\n").unwrap();
        }
    }
    let link = p.path().join("swap");
    remove(&link);
    std::os::unix::fs::symlink(canary.path(), &link).unwrap();
    (dir, link)
}

#[test]
fn reset_never_removes_files_outside_the_project_while_a_data_dir_is_swapped() {
    let Some(socket) = test_var("DEVBOX_TEST_PODMAN_SOCKET", PODMAN_HINT) else {
        return;
    };
    let p = Project::new();
    p.write(
        "sandbox.toml",
        "[project]\nname = \"race-reset\"\n\n[data.dirs.junk]\n",
    );
    let canary = Canary::new();
    let (mut swaps, mut wiped) = (0, 0);
    for run in 0..RUNS {
        let (dir, link) = fresh_tree(&p, "junk", true, &canary);
        let s = Swapper::start(&dir, &link);
        let o = podman(&p, &socket, &["reset", "--yes"]);
        swaps += s.finish();
        canary.check(run, "devbox reset --yes", &o);
        wiped += usize::from(o.code == 0);
    }
    eprintln!("{RUNS} resets, {wiped} finished, {swaps} swaps");
    assert!(swaps > RUNS as u64, "the swapper hardly ran: {swaps} swaps");
    // Without the swapper the same reset removes all of .data.
    fresh_tree(&p, "junk", true, &canary);
    let o = podman(&p, &socket, &["reset", "--yes"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (
            0,
            "race-reset reset: 0 containers, 0 networks, 0 volumes, 0 images, 10 data entries removed\n"
        ),
        "{o:?}"
    );
    assert!(!p.path().join(".data").exists());
}

const SECRET_TOML: &str = r#"[project]
name = "race-secret"

[data.dirs.auth]
mode = "0700"

[data.files."auth/credential"]
secret = "hex:32"

[workers.noop]
command = ["/bin/true"]
[workers.noop.policy]
fs = { read = ["/bin", "/lib", "/lib64", "/usr"] }
"#;

/// `run` makes the secret, then the swap: nothing appears in the canary, and once
/// the swapper stopped the secret is where it belongs.
fn secret_race(what: &str, runs: usize, run_devbox: impl Fn(&Project) -> Output) {
    let p = Project::new();
    p.write("sandbox.toml", SECRET_TOML);
    let canary = Canary::new();
    let mut swaps = 0;
    for run in 0..runs {
        let (dir, link) = fresh_tree(&p, "auth", false, &canary);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let s = Swapper::start(&dir, &link);
        let o = run_devbox(&p);
        swaps += s.finish();
        canary.check(run, what, &o);
    }
    assert!(swaps > RUNS as u64, "the swapper hardly ran: {swaps} swaps");
    fresh_tree(&p, "auth", false, &canary);
    let o = run_devbox(&p);
    assert_eq!(o.code, 0, "{o:?}");
    let cred = p.path().join(".data/auth/credential");
    assert_eq!(std::fs::metadata(&cred).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read(&cred).unwrap().len(), 64);
}

#[test]
fn up_never_writes_a_secret_outside_the_project_while_a_data_dir_is_swapped() {
    let Some(socket) = test_var("DEVBOX_TEST_PODMAN_SOCKET", PODMAN_HINT) else {
        return;
    };
    secret_race("devbox up", RUNS, |p| podman(p, &socket, &["up"]));
}

#[test]
fn run_never_writes_a_secret_outside_the_project_while_a_data_dir_is_swapped() {
    secret_race("devbox run noop", RUNS, |p| {
        p.devbox().args(["run", "noop"]).run()
    });
}

/// A service that runs as 4321:4321 without keep-id and mounts `.data/junk`: on rootful
/// Podman `up` makes that directory the service's own.
fn chown_toml(image: &str) -> String {
    format!(
        r#"[project]
name = "race-chown"

[data.dirs.junk]

[services.app]
image = "{image}"
command = ["sleep", "600"]
user = "4321:4321"
volumes = [".data/junk:/junk"]
"#
    )
}

/// Takes the project down when dropped.
struct Down<'a>(&'a str, &'a Project, &'a str);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = on(self.0, self.1, self.2, &["down", "-t", "1"]);
    }
}

/// On a rootful engine `up` chowns `.data/junk` for a service without keep-id, while a
/// swapper exchanges it with a link to a canary outside the project.
fn chown_race(engine: &str, socket: &str, note: &str) {
    let Some(image) = test_var(
        "DEVBOX_TEST_BASE_IMAGE",
        "export DEVBOX_TEST_BASE_IMAGE=localhost/devbox-busybox:latest",
    ) else {
        return;
    };
    let p = Project::new();
    p.write("sandbox.toml", &chown_toml(&image));
    let _down = Down(engine, &p, socket);
    let canary = Canary::new();
    let (dir, link) = fresh_tree(&p, "junk", false, &canary);
    let o = on(engine, &p, socket, &["up"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "note: {note} has no keep-id for service `app`: made .data/junk owned by 4321:4321 so it can write them"
        )),
        "{o:?}"
    );
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), 4321);
    let mut swaps = 0;
    for run in 0..RUNS {
        // Owned by root again, so that `up` changes it.
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
        let s = Swapper::start(&dir, &link);
        let o = on(engine, &p, socket, &["up"]);
        swaps += s.finish();
        canary.check(run, "devbox up", &o);
    }
    assert!(swaps > RUNS as u64, "the swapper hardly ran: {swaps} swaps");
}

#[test]
fn up_never_chowns_a_directory_outside_the_project_while_a_data_dir_is_swapped() {
    let Some(socket) = test_var("DEVBOX_TEST_PODMAN_SOCKET", PODMAN_HINT) else {
        return;
    };
    chown_race("podman", &socket, "rootful podman");
}

#[test]
fn up_never_chowns_a_directory_outside_the_project_while_a_data_dir_is_swapped_on_docker() {
    let Some(socket) = test_var("DEVBOX_TEST_DOCKER_SOCKET", DOCKER_HINT) else {
        return;
    };
    chown_race("docker", &socket, "docker");
}

#[test]
fn down_stops_the_containers_when_data_holds_a_link_out_of_the_project() {
    let Some(socket) = test_var("DEVBOX_TEST_PODMAN_SOCKET", PODMAN_HINT) else {
        return;
    };
    let Some(image) = test_var(
        "DEVBOX_TEST_BASE_IMAGE",
        "export DEVBOX_TEST_BASE_IMAGE=localhost/devbox-busybox:latest",
    ) else {
        return;
    };
    let p = Project::new();
    p.write(
        "sandbox.toml",
        &chown_toml(&image).replace("race-chown", "race-down"),
    );
    let _down = Down("podman", &p, &socket);
    let canary = Canary::new();
    let o = podman(&p, &socket, &["up"]);
    assert_eq!(o.code, 0, "{o:?}");
    // What a container that mounts .data can do: a link out where a directory was.
    let junk = p.path().join(".data/junk");
    std::fs::rename(&junk, p.path().join(".data/junk.real")).unwrap();
    std::os::unix::fs::symlink(canary.path(), &junk).unwrap();

    let o = podman(&p, &socket, &["down", "-t", "1"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (
            0,
            "race-down is down: 1 container and 1 network removed; .data kept\n"
        ),
        "{o:?}"
    );
    assert!(
        o.stderr.starts_with(
            "warning: data path `junk` goes through a symlink that leads outside the project: "
        ),
        "{o:?}"
    );
    assert!(
        o.stderr.contains(
            "\nnote: stopping the containers of project race-down does not need these paths; down goes on\n"
        ),
        "{o:?}"
    );
    assert!(junk.is_symlink(), "down leaves .data as it is");
    canary.check(0, "devbox down", &o);
    // Every other command still refuses the file.
    let o = podman(&p, &socket, &["up"]);
    assert_eq!(o.code, 2, "{o:?}");
    std::fs::remove_file(&junk).unwrap();
    std::fs::rename(p.path().join(".data/junk.real"), &junk).unwrap();
    let o = podman(&p, &socket, &["down", "-t", "1"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (
            0,
            "race-down is down: 0 containers and 0 networks removed; .data kept\n"
        ),
        "{o:?}"
    );
}

/// A read-only mount inside `.data` stops a wipe half-way; reset sees it first and
/// removes nothing: not the volume, not the secret.
#[test]
fn reset_removes_nothing_when_part_of_the_data_tree_cannot_be_removed() {
    let Some(socket) = test_var("DEVBOX_TEST_PODMAN_SOCKET", PODMAN_HINT) else {
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !crate::util::required(),
            "this test mounts a read-only bind mount and needs root (DEVBOX_REQUIRE_ENGINES=1)"
        );
        crate::harness::skip("not root (needed for a read-only bind mount)");
    }
    let p = Project::new();
    p.write(
        "sandbox.toml",
        r#"[project]
name = "race-rofs"

[data.dirs.zz]

[data.files."auth/credential"]
secret = "hex:32"

[volumes.keep]
"#,
    );
    let o = podman(&p, &socket, &["up"]);
    assert_eq!(o.code, 0, "{o:?}");
    let cred = p.path().join(".data/auth/credential");
    let secret = std::fs::read(&cred).unwrap();
    let ro = p.path().join(".data/zz");
    std::fs::write(ro.join("kept"), "x").unwrap();
    let mount = |flags: nix::mount::MsFlags| {
        nix::mount::mount(Some(&ro), &ro, None::<&str>, flags, None::<&str>).unwrap()
    };
    use nix::mount::MsFlags;
    mount(MsFlags::MS_BIND);
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let umount = Umount(ro.clone());
    mount(MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY);

    let o = podman(&p, &socket, &["reset", "--yes"]);
    assert_eq!((o.code, o.stdout.as_str()), (1, ""), "reset went on: {o:?}");
    assert_eq!(
        o.stderr,
        format!(
            "error: cannot remove what is in {}: Read-only file system (os error 30); nothing was removed\n",
            ro.display()
        )
    );
    assert_eq!(std::fs::read(&cred).unwrap(), secret, "the secret went");
    let exists = std::process::Command::new("podman")
        .args(["--url", &format!("unix://{socket}"), "volume", "exists"])
        .arg("race-rofs_keep")
        .status()
        .unwrap();
    assert!(exists.success(), "the volume went");

    drop(umount);
    let o = podman(&p, &socket, &["reset", "--yes"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (
            0,
            "race-rofs reset: 0 containers, 0 networks, 1 volume, 0 images, 5 data entries removed\n"
        ),
        "{o:?}"
    );
}

/// A devbox killed while creating a secret left its temporary file (a second link to
/// the secret, or an unfinished one); the next command that makes the layout removes
/// it. One a running devbox holds is left alone.
#[test]
fn leftovers_of_a_killed_devbox_are_removed_by_the_next_run() {
    let p = Project::new();
    p.write(
        "sandbox.toml",
        &SECRET_TOML.replace(
            "[workers.noop]",
            "[data.files.\"auth/token\"]\nsecret = \"base64:24\"\n\n[workers.noop]",
        ),
    );
    let o = p.devbox().args(["run", "noop"]).run();
    assert_eq!(o.code, 0, "{o:?}");
    let auth = p.path().join(".data/auth");
    let cred = auth.join("credential");
    let secret = std::fs::read(&cred).unwrap();
    std::fs::remove_file(auth.join("token")).unwrap();
    let dead = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let linked = auth.join(format!(".credential.devbox-{dead}.tmp"));
    std::fs::hard_link(&cred, &linked).unwrap();
    let unfinished = auth.join(format!(".token.devbox-{dead}.tmp"));
    std::fs::write(&unfinished, "").unwrap();
    let live = auth.join(format!(".token.devbox-{}.tmp", std::process::id()));
    std::fs::write(&live, "").unwrap();

    let o = p.devbox().args(["run", "noop"]).run();
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!linked.exists() && !unfinished.exists(), "leftovers stayed");
    assert!(live.exists(), "a live devbox's file went");
    assert_eq!(std::fs::read(&cred).unwrap(), secret);
    assert_eq!(std::fs::metadata(&cred).unwrap().nlink(), 1);
    assert_eq!(std::fs::read(auth.join("token")).unwrap().len(), 32);
}

// `devbox run` appended its audit log to `.data/logs/devbox-audit.jsonl` by path, so a
// `.data/logs` swapped for a link out made it create and write that file elsewhere.
#[test]
fn run_never_appends_its_audit_log_outside_the_project_while_logs_is_swapped() {
    let p = Project::new();
    p.write(
        "sandbox.toml",
        &SECRET_TOML
            .replace("race-secret", "race-log")
            .replace("[data.dirs.auth]\nmode = \"0700\"\n\n[data.files.\"auth/credential\"]\nsecret = \"hex:32\"\n", "[data.dirs.logs]\n"),
    );
    let canary = Canary::new();
    let mut swaps = 0;
    for run in 0..RUNS {
        let (dir, link) = fresh_tree(&p, "logs", false, &canary);
        let s = Swapper::start(&dir, &link);
        let o = p.devbox().args(["run", "noop"]).run();
        swaps += s.finish();
        canary.check(run, "devbox run noop", &o);
    }
    assert!(swaps > RUNS as u64, "the swapper hardly ran: {swaps} swaps");
    fresh_tree(&p, "logs", false, &canary);
    let o = p.devbox().args(["run", "noop"]).run();
    assert_eq!(o.code, 0, "{o:?}");
    let log = std::fs::read_to_string(p.path().join(".data/logs/devbox-audit.jsonl")).unwrap();
    assert!(log.contains("\"worker\":\"noop\""), "{log}");
}
