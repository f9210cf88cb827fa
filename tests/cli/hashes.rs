//! The config hash's form through the binary: a container whose hash label an older
//! devbox computed is recreated once, and `up` says why.

use std::process::Command;

use crate::checkouts::owned_project;
use crate::engine::{devbox, engine, ok, Down};

// An older devbox hashed another form of the settings, so every container it made differs
// from the plan by hash alone; `up` recreated them all and said nothing of why.
#[test]
fn a_hash_of_an_older_form_recreates_once_and_up_says_why() {
    let Some(e) = engine("podman") else { return };
    let toml = "[project]\nname = \"hashform\"\n\n[services.app]\nimage = \"localhost/devbox-busybox:latest\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 0.2; done\"]\n";
    let p = owned_project(&e, toml);
    let dir = p.path.as_path();
    let _down = Down(&e, dir);
    let _ = devbox(&e, dir, &["down", "-t", "1"]);

    // What the older devbox left: its labels, and a hash of 64 hex digits without a version.
    let url = e
        .env
        .iter()
        .find(|(k, _)| *k == "CONTAINER_HOST")
        .map(|(_, v)| v.clone())
        .unwrap();
    let made = Command::new("podman")
        .args(["--url", &url, "create", "--name", "hashform-app"])
        .args(["--label", "devbox.project=hashform"])
        .args(["--label", "devbox.service=app"])
        .args(["--label", "devbox.kind=service"])
        .arg("--label")
        .arg(format!("devbox.config-hash={}", "0".repeat(64)))
        .args(["localhost/devbox-busybox:latest", "sleep", "1000"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");

    let o = ok(&e, dir, &["up", "--timeout", "60s"]);
    assert!(
        o.stderr
            .lines()
            .any(|l| l == "app: recreated: devbox's configuration format changed (running)"),
        "{}",
        o.stderr
    );
    assert!(o.stdout.contains(": 1 recreated in "), "{}", o.stdout);

    // Once: the new container carries the current form.
    let again = ok(&e, dir, &["up", "--timeout", "60s"]);
    assert!(
        again.stdout.contains(": 1 unchanged in "),
        "{}",
        again.stdout
    );
    assert!(
        !again.stderr.contains("configuration format"),
        "{}",
        again.stderr
    );
    let o = ok(&e, dir, &["up", "--timeout", "60s", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(r.get("reasons"), None, "{r}");
}
