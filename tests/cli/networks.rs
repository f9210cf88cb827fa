//! Networks of devbox's name that are not one network: two that devbox made (Docker 20.10
//! accepts a second network of a taken name) and one that devbox did not make.

use std::path::Path;
use std::process::Command;

use crate::checkouts::{owned_project, OwnedProject};
use crate::engine::{containers, devbox, devbox_cmd, engine, engine_cli, ok, Engine};

/// A one-service project named `project`.
fn small_project(e: &Engine, project: &str) -> OwnedProject {
    owned_project(
        e,
        &format!("[project]\nname = \"{project}\"\n\n[services.app]\nimage = \"localhost/devbox-busybox:latest\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 0.2; done\"]\n"),
    )
}

/// Ids of the networks called exactly `name`.
fn networks_named(e: &Engine, name: &str) -> Vec<String> {
    let o = engine_cli(
        e,
        &[
            "network",
            "ls",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Name}}",
        ],
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, n)| *n == name)
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// A second network of a taken name, with `labels_json`, as Docker 20.10 makes it when
/// asked without CheckDuplicate (the CLI asks with it).
fn docker_duplicate(e: &Engine, name: &str, labels_json: &str) -> String {
    let socket = e
        .env
        .iter()
        .find(|(k, _)| *k == "DOCKER_HOST")
        .unwrap()
        .1
        .trim_start_matches("unix://")
        .to_owned();
    let body = format!(r#"{{"Name":"{name}","CheckDuplicate":false,"Labels":{labels_json}}}"#);
    let o = Command::new("curl")
        .args(["-sf", "--unix-socket", &socket])
        .args(["-H", "Content-Type: application/json", "-d", &body])
        .arg("http://localhost/v1.41/networks/create")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "creating {name}: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Id"].as_str().unwrap().to_owned()
}

/// `down` (and removing the test's own networks) when dropped.
struct Cleanup<'a>(&'a Engine, &'a Path, &'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = devbox(self.0, self.1, &["down", "-t", "1"]);
        for id in networks_named(self.0, self.2) {
            engine_cli(self.0, &["network", "rm", &id]);
        }
    }
}

// Two `up`s racing on Docker 20.10 each made the project's network; from then on every
// `up`, `down` and `reset` failed with "network … is ambiguous".
#[test]
fn duplicate_networks_devbox_made_are_resolved_on_docker() {
    let Some(e) = engine("docker") else { return };
    let project = "dupnet";
    let copy = small_project(&e, project);
    let dir = copy.path.as_path();
    let _clean = Cleanup(&e, dir, project);
    let _ = devbox(&e, dir, &["down", "-t", "1"]);

    // devbox's labels for the network, from one it made.
    ok(&e, dir, &["up", "--timeout", "60s"]);
    let o = engine_cli(
        &e,
        &[
            "network",
            "inspect",
            project,
            "--format",
            "{{json .Labels}}",
        ],
    );
    let labels = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(labels.contains(r#""devbox.project":"dupnet""#), "{labels}");
    ok(&e, dir, &["down", "-t", "1"]);

    // up: one of the two is kept, the other (empty) removed.
    let older = docker_duplicate(&e, project, &labels);
    let newer = docker_duplicate(&e, project, &labels);
    let o = ok(&e, dir, &["up", "--timeout", "60s"]);
    assert!(
        o.stderr.contains(&format!(
            "note: devbox had made network `dupnet` 2 times; kept {} and removed {}\n",
            &older[..12],
            &newer[..12]
        )),
        "{}",
        o.stderr
    );
    assert_eq!(networks_named(&e, project), vec![older]);
    assert_eq!(containers(&e, dir).len(), 1);

    // down: both go, by id.
    docker_duplicate(&e, project, &labels);
    let o = ok(&e, dir, &["down", "-t", "1"]);
    assert!(
        o.stdout
            .starts_with("dupnet is down: 1 container and 2 networks removed"),
        "{}",
        o.stdout
    );
    assert_eq!(networks_named(&e, project), Vec::<String>::new());

    // reset: the same.
    ok(&e, dir, &["up", "--timeout", "60s"]);
    docker_duplicate(&e, project, &labels);
    let o = ok(&e, dir, &["reset", "--yes"]);
    assert!(
        o.stdout
            .starts_with("dupnet reset: 1 container, 2 networks"),
        "{}",
        o.stdout
    );
    assert_eq!(networks_named(&e, project), Vec::<String>::new());
}

// An unlabelled network with devbox's name: Docker then held two of that name and every
// command failed as ambiguous; Podman refused the second and devbox joined the foreign one.
fn foreign_network_flow(name: &'static str) {
    let Some(e) = engine(name) else { return };
    let project = format!("alien-{name}");
    let copy = small_project(&e, &project);
    let dir = copy.path.as_path();
    let _clean = Cleanup(&e, dir, &project);
    let _ = devbox(&e, dir, &["down", "-t", "1"]);
    let made = engine_cli(&e, &["network", "create", &project]);
    assert!(
        made.status.success(),
        "[{name}] {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let ids = networks_named(&e, &project);
    assert_eq!(ids.len(), 1, "[{name}] {ids:?}");
    let id = &ids[0][..12];
    let program = if name == "docker" { "docker" } else { "podman" };

    let o = devbox(&e, dir, &["up", "--timeout", "60s"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            1,
            format!(
                "error: the network name `{project}` is taken by a network devbox did not create: {id}\nhint: remove it (`{program} network rm {id}`), or set another [project] name\n"
            )
            .as_str()
        ),
        "[{name}]"
    );
    assert!(containers(&e, dir).is_empty(), "[{name}]");
    let o = ok(&e, dir, &["down", "-t", "1"]);
    assert!(
        o.stdout.starts_with(&format!(
            "{project} is down: 0 containers and 0 networks removed"
        )),
        "[{name}] {}",
        o.stdout
    );
    let o = ok(&e, dir, &["reset", "--yes"]);
    assert_eq!(
        o.stdout,
        format!("{project}: nothing to remove\n"),
        "[{name}]"
    );
    assert_eq!(
        networks_named(&e, &project),
        ids,
        "[{name}] the foreign network went"
    );
}

#[test]
fn a_foreign_network_of_our_name_is_refused_on_rootful_podman() {
    foreign_network_flow("podman");
}

#[test]
fn a_foreign_network_of_our_name_is_refused_on_rootless_podman() {
    foreign_network_flow("podman-rootless");
}

#[test]
fn a_foreign_network_of_our_name_is_refused_on_docker() {
    foreign_network_flow("docker");
}

// The race itself: two `up`s that do not share a lock (different users' state
// directories on one Docker daemon) each made the network; Docker 20.10 kept both.
#[test]
fn racing_ups_leave_one_network_on_docker() {
    let Some(e) = engine("docker") else { return };
    let project = "racenet";
    let copy = small_project(&e, project);
    let dir = copy.path.as_path();
    let _clean = Cleanup(&e, dir, project);
    let states = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for round in 0..5 {
        ok(&e, dir, &["down", "-t", "1"]);
        let ups: Vec<_> = states
            .iter()
            .map(|s| {
                devbox_cmd(&e, dir, &["up", "--timeout", "60s"])
                    .env("XDG_STATE_HOME", s.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = ups
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        assert_eq!(
            networks_named(&e, project).len(),
            1,
            "round {round}: {:?}",
            outs.iter()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .collect::<Vec<_>>()
        );
        // Whichever lost the race, the project converges.
        ok(&e, dir, &["up", "--timeout", "60s"]);
        assert_eq!(containers(&e, dir).len(), 1, "round {round}");
    }
}
