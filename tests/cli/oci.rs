//! `devbox render --format oci WORKER DIR`: the bundle read back with oci-spec, the
//! refusals, and the bundle run by a real runc, with the isolation `devbox run` gives.

use std::path::Path;
use std::process::{Command, Stdio};

use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccompAction, Spec};

use crate::util::{repo, require, Output, Project};

/// A project holding the supervisor-worker example (`transform` writes `.data`).
fn supervisor_worker() -> Project {
    let p = Project::new();
    let toml = std::fs::read_to_string(repo().join("examples/supervisor-worker/sandbox.toml"))
        .expect("the example exists");
    p.write("sandbox.toml", &toml);
    p
}

fn render(p: &Project, worker: &str, dir: &Path) -> Output {
    let out = p
        .devbox()
        .args(["render", "--format", "oci", worker])
        .args([dir])
        .run();
    assert_eq!(out.code, 0, "render {worker}: {}", out.stderr);
    out
}

/// `runc run` on `bundle` under a fresh container id: success, stdout, stderr.
fn runc(bundle: &Path) -> (bool, String, String) {
    let id = format!(
        "devbox-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let out = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .expect("runc runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_bundle_reads_back_as_an_oci_spec_with_the_runners_isolation() {
    let p = supervisor_worker();
    let bundle = p.path().join("bundle");
    let out = render(&p, "transform", &bundle);
    assert_eq!(
        out.stdout,
        format!(
            "wrote {0}\nrun it with: runc run --bundle {0} devbox-transform\n",
            bundle.display()
        )
    );
    // What runc cannot do is said, not dropped.
    for w in [
        "warning: oci: exec.allow is kept with noexec mounts",
        "warning: oci: timeout (10s) has no OCI field",
        "warning: oci: runc keeps no audit log",
    ] {
        assert!(out.stderr.contains(w), "{w} in {}", out.stderr);
    }

    let spec = Spec::load(bundle.join("config.json")).expect("config.json loads");
    assert_eq!(spec.hostname().as_deref(), Some("devbox-transform"));
    let root = spec.root().as_ref().unwrap();
    assert_eq!(root.path(), Path::new("rootfs"));
    assert_eq!(root.readonly(), Some(true));
    let process = spec.process().as_ref().unwrap();
    assert_eq!(
        process.args().as_deref().unwrap(),
        [
            "/bin/sh",
            "-c",
            "tr a-z A-Z < /etc/hostname > /tmp/upper && cat /tmp/upper"
        ]
    );
    assert_eq!(process.no_new_privileges(), Some(true));
    assert!(process
        .env()
        .as_ref()
        .unwrap()
        .contains(&"STAGE=transform".to_string()));
    let linux = spec.linux().as_ref().unwrap();
    let ns: Vec<LinuxNamespaceType> = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    for t in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::User,
    ] {
        assert!(ns.contains(&t), "{t:?} in {ns:?}");
    }
    let seccomp = linux.seccomp().as_ref().unwrap();
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
    let mem = linux.resources().as_ref().unwrap().memory().unwrap();
    assert_eq!(mem.limit(), Some(64 << 20));
    // The writable path is bound read-write at its own place.
    let data_out = p.path().join(".data/out");
    let rw = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == &data_out)
        .expect("the writable path is mounted");
    assert!(rw.options().as_ref().unwrap().contains(&"rw".to_string()));
    assert!(bundle.join("rootfs").is_dir());
}

#[test]
fn a_directory_that_is_not_a_bundle_is_refused_and_an_earlier_bundle_replaced() {
    let p = supervisor_worker();
    p.write("notes/todo.txt", "mine\n");
    let notes = p.path().join("notes");
    let out = p
        .devbox()
        .args(["render", "--format", "oci", "transform"])
        .args([&notes])
        .run();
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: {} is not empty and holds no bundle devbox rendered; refusing to write into it\nhint: give a new or empty directory\n",
            notes.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(notes.join("todo.txt")).unwrap(),
        "mine\n"
    );

    let bundle = p.path().join("bundle");
    render(&p, "transform", &bundle);
    // runc leaves empty mount points in rootfs/; a second render clears them.
    std::fs::create_dir_all(bundle.join("rootfs/usr")).unwrap();
    std::fs::write(bundle.join("rootfs/etc-hostname"), "").unwrap();
    render(&p, "fetcher", &bundle);
    assert!(!bundle.join("rootfs/usr").exists());
    let spec = Spec::load(bundle.join("config.json")).unwrap();
    assert_eq!(spec.hostname().as_deref(), Some("devbox-fetcher"));
}

#[test]
fn an_unknown_worker_names_the_known_ones() {
    let p = supervisor_worker();
    let out = p
        .devbox()
        .args(["render", "--format", "oci", "nope", "bundle"])
        .run();
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: no worker `nope` in {}\nhint: the workers are fetcher, transform\n",
            p.path().join("sandbox.toml").display()
        )
    );
    assert!(!p.path().join("bundle").exists());
}

#[test]
fn transform_under_runc_prints_what_devbox_run_prints() {
    if !require("runc") {
        return;
    }
    let p = supervisor_worker();
    std::fs::create_dir_all(p.path().join(".data/out")).unwrap();
    let bundle = p.path().join("bundle");
    render(&p, "transform", &bundle);
    let (ok, stdout, stderr) = runc(&bundle);
    assert!(ok, "runc run: {stderr}");
    let expected = std::fs::read_to_string("/etc/hostname")
        .unwrap()
        .to_ascii_uppercase();
    assert_eq!(stdout, expected);
    let native = p.devbox().args(["run", "transform"]).run();
    assert_eq!(native.code, 0, "devbox run transform: {}", native.stderr);
    assert_eq!(native.stdout, stdout);
}

/// A project whose worker `probe` runs `script` (from the project directory) under a
/// policy showing the system, the project read-only, `.data/out` writable and hiding
/// `/etc/shadow`; rendered to `bundle/`.
fn probe_project(script: &str) -> Project {
    let p = Project::new();
    p.write("probe.sh", script);
    p.write(
        "sandbox.toml",
        r#"[project]
name = "oci-probe"
engine = "native"

[data.dirs]
out = {}

[workers.probe]
command = ["/bin/sh", "probe.sh"]
workdir = "."

[workers.probe.policy]
fs = { read = ["/bin", "/lib", "/lib64", "/usr", "/etc", "."], write = [".data/out"], deny = ["/etc/shadow"] }
limits = { pids = 16, nofile = 64 }
"#,
    );
    std::fs::create_dir_all(p.path().join(".data/out")).unwrap();
    render(&p, "probe", &p.path().join("bundle"));
    p
}

#[test]
fn under_runc_the_worker_has_no_privilege_and_sees_only_its_policy() {
    if !require("runc") {
        return;
    }
    let p = probe_project(
        r#"id -u
grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status
touch /usr/devbox-oci-test 2>/dev/null && echo read-only path written || echo read-only path refused
echo hi > .data/out/f && echo writable path written
cat /etc/shadow >/dev/null 2>&1 && echo shadow read || echo shadow refused
unshare -U true 2>/dev/null && echo unshare ran || echo unshare refused
ulimit -n
hostname
"#,
    );
    let (ok, stdout, stderr) = runc(&p.path().join("bundle"));
    assert!(ok, "runc run: {stderr}");
    assert_eq!(
        stdout,
        format!(
            "{}\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nread-only path refused\nwritable path written\nshadow refused\nunshare refused\n64\ndevbox-probe\n",
            nix::unistd::geteuid()
        )
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join(".data/out/f")).unwrap(),
        "hi\n"
    );
}

/// The runner's argument rules, each tried where only the filter can be what refuses it
/// (stdin is /dev/null, so an unfiltered TIOCSTI would be ENOTTY, not EPERM).
#[cfg(target_arch = "x86_64")]
#[test]
fn under_runc_seccomp_refuses_what_the_runner_refuses() {
    if !require("runc") {
        return;
    }
    let p = probe_project(
        r#"/usr/bin/python3 - <<'PY'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(*args):
    r = libc.syscall(*[ctypes.c_long(a) for a in args])
    return "ok" if r >= 0 else os.strerror(ctypes.get_errno())
print("clone(CLONE_NEWUSER):", call(56, 0x10000000 | 17, 0, 0, 0, 0))
print("clone3:", call(435, 0, 0))
print("socket(AF_VSOCK):", call(41, 40, 1, 0))
print("ioctl(TIOCSTI):", call(16, 0, 0x5412, 0))
print("ioctl(TIOCSTI), upper half set:", call(16, 0, 0x1_0000_5412, 0))
PY
setarch x86_64 -R true 2>/dev/null && echo personality ADDR_NO_RANDOMIZE set || echo personality ADDR_NO_RANDOMIZE refused
setarch i386 true && echo personality PER_LINUX32 set
/usr/bin/python3 -c 'import ctypes; ctypes.CDLL(None).syscall(0x40000000 | 39)' 2>/dev/null
echo "x32 getpid: exit $?"
"#,
    );
    let (ok, stdout, stderr) = runc(&p.path().join("bundle"));
    assert!(ok, "runc run: {stderr}");
    assert_eq!(
        stdout,
        "clone(CLONE_NEWUSER): Operation not permitted
clone3: Function not implemented
socket(AF_VSOCK): Operation not permitted
ioctl(TIOCSTI): Operation not permitted
ioctl(TIOCSTI), upper half set: Operation not permitted
personality ADDR_NO_RANDOMIZE refused
personality PER_LINUX32 set
x32 getpid: exit 159
"
    );
}
