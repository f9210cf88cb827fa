//! Rendered files judged by the tools that consume them: docker-compose, podman-compose,
//! kubernetes-validate, and a real `podman kube play`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{reference_dir, repo, require, required, Devbox, Output, Project};
use serde::Deserialize as _;

/// Every project the render tests judge: the reference and each example.
fn projects() -> Vec<std::path::PathBuf> {
    let mut v = vec![reference_dir()];
    if let Ok(rd) = std::fs::read_dir(repo().join("examples")) {
        let mut ex: Vec<_> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("sandbox.toml").is_file())
            .collect();
        ex.sort();
        v.extend(ex);
    }
    v
}

fn render(dir: &Path, format: &str) -> Output {
    let out = Devbox::new(dir).args(["render", "--format", format]).run();
    assert_eq!(out.code, 0, "{} {format}: {}", dir.display(), out.stderr);
    out
}

/// Runs a command: success, stdout, and stdout+stderr for messages.
fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout, all)
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let (ok, _, all) = run(cmd);
    (ok, all)
}

/// Renders `format` for `dir` into a file next to its sandbox.toml (compose resolves
/// relative paths from the file's directory), in a scratch copy of the project.
fn rendered_copy(dir: &Path, format: &str, name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(dir, tmp.path());
    let out = render(tmp.path(), format);
    std::fs::write(tmp.path().join(name), out.stdout).unwrap();
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() == ".data" {
                continue;
            }
            std::fs::create_dir_all(&dst).unwrap();
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            let mut perm = std::fs::metadata(&dst).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&dst, perm).unwrap();
        }
    }
}

#[test]
fn every_project_renders_in_every_format_deterministically() {
    for dir in projects() {
        for format in ["json", "compose", "kube"] {
            let a = render(&dir, format);
            let b = render(&dir, format);
            assert_eq!(
                a.stdout,
                b.stdout,
                "{} {format} is not deterministic",
                dir.display()
            );
            assert!(!a.stdout.is_empty());
        }
    }
}

#[test]
fn docker_compose_accepts_the_rendered_compose() {
    if !require("docker-compose") {
        return;
    }
    for dir in projects() {
        let tmp = rendered_copy(&dir, "compose", "compose.yml");
        let (ok, text) = sh(Command::new("docker-compose")
            .current_dir(tmp.path())
            .args(["-f", "compose.yml", "config", "-q"]));
        assert!(
            ok,
            "docker-compose rejects the compose of {}:\n{text}",
            dir.display()
        );
    }
}

#[test]
fn podman_compose_accepts_the_rendered_compose() {
    if !require("podman-compose") {
        return;
    }
    for dir in projects() {
        let tmp = rendered_copy(&dir, "compose", "compose.yml");
        let (ok, stdout, all) = run(Command::new("podman-compose")
            .current_dir(tmp.path())
            .args(["-f", "compose.yml", "config"]));
        assert!(
            ok,
            "podman-compose rejects the compose of {}:\n{all}",
            dir.display()
        );
        // The knobs survive podman-compose's own reading of the file.
        let v: serde_yaml::Value =
            serde_yaml::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        let services = v["services"].as_mapping().expect("services");
        for (name, s) in services {
            assert!(
                s.get("read_only").is_some(),
                "{name:?} lost read_only in {}",
                dir.display()
            );
            assert!(
                s.get("user").is_some(),
                "{name:?} lost user in {}",
                dir.display()
            );
        }
    }
}

#[test]
fn kubernetes_validate_accepts_the_rendered_pods() {
    if !require("kubernetes-validate") {
        return;
    }
    for dir in projects() {
        let tmp = rendered_copy(&dir, "kube", "kube.yml");
        let (ok, text) = sh(Command::new("kubernetes-validate")
            .current_dir(tmp.path())
            .args(["--strict", "kube.yml"]));
        assert!(
            ok,
            "kubernetes-validate rejects the kube YAML of {}:\n{text}",
            dir.display()
        );
        assert!(!text.contains("ERROR"), "{text}");
    }
}

#[test]
fn what_a_format_cannot_express_is_a_warning_not_a_silent_drop() {
    let kube = render(&reference_dir(), "kube");
    assert!(
        kube.stderr
            .contains("warning: kube: services.server.pids_limit has no Pod field"),
        "{}",
        kube.stderr
    );
    assert!(
        kube.stderr
            .contains("warning: kube: network backplane is internal"),
        "{}",
        kube.stderr
    );
    assert!(
        kube.stderr
            .contains("warning: kube: workers (echo) run on devbox's native runner"),
        "{}",
        kube.stderr
    );
    let compose = render(&reference_dir(), "compose");
    assert!(
        compose.stderr.contains("warning: compose: services.server.userns_mode \"keep-id:uid=1000,gid=1000\" works with podman-compose only"),
        "{}",
        compose.stderr
    );
    // no-new-privileges has no compose key of its own; it travels as a security_opt.
    assert!(
        compose.stdout.contains("- no-new-privileges:true"),
        "{}",
        compose.stdout
    );
    assert!(
        compose.stdout.contains("- \"127.0.0.1:7777:7777/tcp\""),
        "{}",
        compose.stdout
    );
}

#[test]
fn compose_quotes_what_yaml_1_1_would_misread() {
    let p = Project::with_toml(
        r#"
[images.core]
[services.a]
image = "core"
user = "1000:50"
env = { FLAG = "no", COUNT = "7" }
restart = "no"
"#,
    );
    let out = p.devbox().args(["render", "--format", "compose"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("user: \"1000:50\""), "{}", out.stdout);
    assert!(out.stdout.contains("FLAG: \"no\""), "{}", out.stdout);
    assert!(out.stdout.contains("restart: \"no\""), "{}", out.stdout);
}

/// Tears a kube play down even when the test fails.
struct KubeDown<'a> {
    dir: &'a Path,
    volume: String,
}

impl Drop for KubeDown<'_> {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .current_dir(self.dir)
            .args(["kube", "down", "kube.yml"])
            .output();
        let _ = Command::new("podman")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// The rendered Pods run: the reference comes up under `podman kube play`, the host gets
// the greeting over loopback TCP and the client sees the shared volume. Rootful Podman:
// rootless Podman on cgroup v1 refuses the memory limits in a kube file.
#[test]
fn podman_kube_play_runs_the_rendered_reference() {
    if !require("podman") {
        return;
    }
    let is_root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if !is_root {
        assert!(!required(), "podman kube play test needs root");
        return;
    }
    let port = free_port();
    let project = format!("kubeplay{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&reference_dir(), tmp.path());
    let toml = std::fs::read_to_string(tmp.path().join("sandbox.toml"))
        .unwrap()
        .replace("7777", &port.to_string())
        .replace("name = \"refbox\"", &format!("name = \"{project}\""));
    std::fs::write(tmp.path().join("sandbox.toml"), toml).unwrap();

    let json: serde_json::Value = serde_json::from_str(&render(tmp.path(), "json").stdout).unwrap();
    let tag = json["images"][0]["tag"].as_str().unwrap().to_owned();
    let (ok, text) = sh(Command::new("podman").current_dir(tmp.path()).args([
        "build",
        "-q",
        "--network=none",
        "--build-arg",
        "GREETING=pong",
        "-t",
        &tag,
        "-f",
        "Containerfile",
        ".",
    ]));
    assert!(ok, "podman build: {text}");
    std::fs::write(
        tmp.path().join("kube.yml"),
        render(tmp.path(), "kube").stdout,
    )
    .unwrap();
    // What `devbox up` does on engines without keep-id: .data writable by the service's uid.
    let data = tmp.path().join(".data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(1000), Some(1000)).unwrap();

    let _down = KubeDown {
        dir: tmp.path(),
        volume: format!("{project}-sock"),
    };
    let (ok, text) = sh(Command::new("podman")
        .current_dir(tmp.path())
        .args(["kube", "play", "kube.yml"]));
    assert!(ok, "podman kube play: {text}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answer = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"ping\n");
            answer.clear();
            let _ = s.read_to_string(&mut answer);
            if answer.contains("pong") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        answer.contains("pong"),
        "no greeting on 127.0.0.1:{port}, got {answer:?}"
    );
    let mut logs = String::new();
    while Instant::now() < deadline {
        logs = sh(Command::new("podman").args(["logs", &format!("{project}-client-client")])).1;
        if logs.contains("sock_ok") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(logs.contains("sock_ok"), "client logs: {logs}");
    let smoke = std::fs::read_to_string(data.join("database/smoke.json")).unwrap();
    assert_eq!(smoke, "{\"ok\":true}\n");
    let (_, inspect) = sh(Command::new("podman").args([
        "inspect",
        &format!("{project}-server-server"),
        "--format",
        "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.HostConfig.CapDrop}}",
    ]));
    assert!(inspect.starts_with("true 1000:1000"), "{inspect}");
}

/// Every control of the Kubernetes Pod Security Standards "restricted" profile (which
/// includes "baseline"), checked on the rendered Pods of clean projects. The one
/// deviation is published ports (`hostPort`, which `podman kube play` needs): it must be
/// loopback-only and come with a warning.
#[test]
fn rendered_pods_of_clean_projects_meet_the_restricted_profile() {
    const BASELINE_CAPS: &[&str] = &[
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    const SAFE_SYSCTLS: &[&str] = &[
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    const VOLUME_TYPES: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut pods = 0;
    for ex in ["hardened", "quickstart-containers"] {
        let out = render(&repo().join("examples").join(ex), "kube");
        assert_eq!(out.code, 0, "{}", out.stderr);
        for doc in serde_yaml::Deserializer::from_str(&out.stdout) {
            let v = serde_yaml::Value::deserialize(doc).unwrap();
            let v: serde_json::Value = serde_json::to_value(v).unwrap();
            if v["kind"] != "Pod" {
                continue;
            }
            pods += 1;
            let name = v["metadata"]["name"].as_str().unwrap().to_owned();
            let spec = &v["spec"];
            let ctl = |c: &str| format!("{ex}/{name}: {c}");
            // Baseline: Host Namespaces, HostProcess.
            for k in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(spec[k].is_null() || spec[k] == false, "{}", ctl(k));
            }
            assert!(
                spec["securityContext"]["windowsOptions"].is_null(),
                "{}",
                ctl("HostProcess")
            );
            // Baseline: Sysctls.
            for s in spec["securityContext"]["sysctls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert!(
                    SAFE_SYSCTLS.contains(&s["name"].as_str().unwrap()),
                    "{}",
                    ctl("Sysctls")
                );
            }
            // Restricted: Volume Types (and so baseline HostPath Volumes).
            for vol in spec["volumes"].as_array().into_iter().flatten() {
                let kind: Vec<&String> = vol
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "name")
                    .collect();
                assert!(
                    kind.iter().all(|k| VOLUME_TYPES.contains(&k.as_str())),
                    "{}: {kind:?}",
                    ctl("Volume Types")
                );
            }
            let containers = spec["containers"].as_array().unwrap();
            assert!(!containers.is_empty());
            for c in containers
                .iter()
                .chain(spec["initContainers"].as_array().into_iter().flatten())
            {
                let sc = &c["securityContext"];
                let pod_sc = &spec["securityContext"];
                // Baseline: Privileged Containers, Capabilities, AppArmor, SELinux, /proc.
                assert!(
                    sc["privileged"].is_null() || sc["privileged"] == false,
                    "{}",
                    ctl("Privileged")
                );
                for cap in sc["capabilities"]["add"].as_array().into_iter().flatten() {
                    assert!(
                        BASELINE_CAPS.contains(&cap.as_str().unwrap()),
                        "{}",
                        ctl("Capabilities")
                    );
                    assert_eq!(
                        cap,
                        "NET_BIND_SERVICE",
                        "{}",
                        ctl("Capabilities (restricted)")
                    );
                }
                assert!(
                    sc["appArmorProfile"].is_null()
                        || sc["appArmorProfile"]["type"] != "Unconfined",
                    "{}",
                    ctl("AppArmor")
                );
                for se in [&sc["seLinuxOptions"], &pod_sc["seLinuxOptions"]] {
                    assert!(
                        se["user"].is_null() && se["role"].is_null(),
                        "{}",
                        ctl("SELinux")
                    );
                }
                assert!(
                    sc["procMount"].is_null() || sc["procMount"] == "Default",
                    "{}",
                    ctl("/proc Mount Type")
                );
                // Restricted: Privilege Escalation, Running as Non-root (user), Seccomp,
                // Capabilities (drop ALL).
                assert_eq!(
                    sc["allowPrivilegeEscalation"],
                    false,
                    "{}",
                    ctl("Privilege Escalation")
                );
                let non_root = sc["runAsNonRoot"] == true || pod_sc["runAsNonRoot"] == true;
                assert!(non_root, "{}", ctl("Running as Non-root"));
                for uid in [&sc["runAsUser"], &pod_sc["runAsUser"]] {
                    assert!(
                        uid.is_null() || uid.as_u64() != Some(0),
                        "{}",
                        ctl("Running as Non-root user")
                    );
                }
                let seccomp = if sc["seccompProfile"].is_null() {
                    &pod_sc["seccompProfile"]
                } else {
                    &sc["seccompProfile"]
                };
                assert!(
                    seccomp["type"] == "RuntimeDefault" || seccomp["type"] == "Localhost",
                    "{}",
                    ctl("Seccomp")
                );
                let drops = sc["capabilities"]["drop"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    drops.iter().any(|d| d == "ALL"),
                    "{}",
                    ctl("Capabilities drop ALL")
                );
                // Baseline: Host Ports, the known deviation: loopback only, and warned.
                for p in c["ports"].as_array().into_iter().flatten() {
                    if !p["hostPort"].is_null() {
                        assert_eq!(p["hostIP"], "127.0.0.1", "{}", ctl("Host Ports"));
                        assert!(
                            out.stderr
                                .contains("forbids in a cluster; drop `ports` there"),
                            "{}",
                            ctl("Host Ports warning")
                        );
                    }
                }
            }
        }
    }
    assert!(pods >= 2, "{pods} pods checked");
}

// The stop keys reach compose as they are and kube as far as a Pod can say them.
#[test]
fn stop_keys_render_to_compose_and_kube() {
    let p = Project::with_toml(
        "[project]\nname = \"stopkeys\"\n\n[services.web]\nimage = \"localhost/x:1\"\nstop_signal = \"int\"\nstop_grace_period = \"2500ms\"\n",
    );
    let c = render(p.path(), "compose");
    for want in [
        "init: true",
        "stop_signal: SIGINT",
        "stop_grace_period: \"3s\"",
    ] {
        assert!(
            c.stdout.contains(want),
            "compose lacks {want}:\n{}",
            c.stdout
        );
    }
    let k = render(p.path(), "kube");
    assert!(
        k.stdout.contains("terminationGracePeriodSeconds: 3"),
        "{}",
        k.stdout
    );
    assert!(
        k.stderr.contains("kube: services.web.stop_signal SIGINT has no Pod field (Kubernetes sends SIGTERM); not rendered"),
        "{}",
        k.stderr
    );
}

// A native service is a host program: no image, so no compose service and no Pod. It is
// left out, and said so, rather than given an image that would fail at run time.
#[test]
fn native_services_are_left_out_of_compose_and_kube_with_a_warning() {
    let p = Project::with_toml(
        "[services.web]\ncommand = [\"/bin/true\"]\nports = [\"8080\"]\n[services.worker]\ncommand = \"sleep 1\"\n",
    );
    let compose = render(p.path(), "compose");
    assert_eq!(
        compose.stderr,
        "warning: compose: native services (web, worker) have no image: they run on devbox's native runner and are left out\n"
    );
    assert!(
        compose.stdout.contains("services: {}\n"),
        "{}",
        compose.stdout
    );
    assert!(!compose.stdout.contains("web"), "{}", compose.stdout);
    let kube = render(p.path(), "kube");
    assert_eq!(
        kube.stderr,
        "warning: kube: native services (web, worker) have no image: they run on devbox's native runner and are left out\n"
    );
    assert!(!kube.stdout.contains("kind: Pod"), "{}", kube.stdout);
    // The JSON plan carries them, with no image.
    let json = render(p.path(), "json");
    assert_eq!(json.stderr, "");
    assert!(json.stdout.contains("\"image\": \"\""), "{}", json.stdout);
}
