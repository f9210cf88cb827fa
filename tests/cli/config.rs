//! Loading, layering, the plan and its hashes, init.

use crate::util::{reference_dir, Devbox, Project};

const MINIMAL: &str = r#"
[images.core]
containerfile = "Containerfile"

[services.a]
image = "core"
ports = ["7001"]

[services.b]
image = "core"
memory = "64m"
"#;

fn plan_json(p: &Project) -> serde_json::Value {
    let out = p.devbox().args(["render", "--format", "json"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn service_hash(plan: &serde_json::Value, name: &str) -> String {
    plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn reference_file_validates_unchanged() {
    let out = Devbox::new(&reference_dir())
        .args(["check", "-f", "sandbox.toml"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "✓ sandbox.toml is valid: project refbox, 2 services, 1 image, 6 probes, 1 worker\naudit: 2 low (details: devbox audit)\n"
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn check_searches_upward_like_compose() {
    let p = Project::with_toml(MINIMAL);
    std::fs::create_dir_all(p.path().join("src/deep")).unwrap();
    let out = crate::util::Devbox::new(&p.path().join("src/deep"))
        .args(["check"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("2 services"), "{}", out.stdout);
}

#[test]
fn no_file_anywhere_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Devbox::new(dir.path()).args(["check"]).run();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no sandbox.toml in"), "{}", out.stderr);
    assert!(
        out.stderr.contains("hint: create one with `devbox init`"),
        "{}",
        out.stderr
    );
}

#[test]
fn hardened_defaults_are_applied_and_reported() {
    let p = Project::with_toml(MINIMAL);
    let plan = plan_json(&p);
    let a = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "a")
        .unwrap();
    assert_eq!(a["spec"]["user"], "65532:65532");
    assert_eq!(a["spec"]["read_only"], true);
    assert_eq!(a["spec"]["cap_drop"], serde_json::json!(["ALL"]));
    assert_eq!(a["spec"]["no_new_privileges"], true);
    assert_eq!(a["spec"]["pids_limit"], 256);
    assert_eq!(
        a["spec"]["defaults_applied"],
        serde_json::json!([
            "user = \"65532:65532\"",
            "read_only = true",
            "cap_drop = [\"ALL\"]",
            "no_new_privileges = true",
            "pids_limit = 256"
        ])
    );
    // A port without an address binds loopback.
    assert_eq!(a["spec"]["ports"][0]["host_ip"], "127.0.0.1");
    assert_eq!(a["labels"]["devbox.project"], plan["project"]);
    assert_eq!(a["labels"]["devbox.service"], "a");
    assert_eq!(a["labels"]["devbox.config-hash"], a["hash"]);
}

// The config-hash is what `up` compares to decide what to recreate: editing one
// service must change that service's hash and no other.
#[test]
fn config_hash_changes_exactly_with_the_service() {
    let p = Project::with_toml(MINIMAL);
    let before = plan_json(&p);
    let again = plan_json(&p);
    assert_eq!(before, again, "rendering is deterministic");

    p.write(
        "sandbox.toml",
        &MINIMAL.replace("memory = \"64m\"", "memory = \"128m\""),
    );
    let after = plan_json(&p);
    assert_eq!(service_hash(&before, "a"), service_hash(&after, "a"));
    assert_ne!(service_hash(&before, "b"), service_hash(&after, "b"));

    // Same effective value written differently: same hash.
    p.write(
        "sandbox.toml",
        &MINIMAL.replace("memory = \"64m\"", "memory = 67108864"),
    );
    let same = plan_json(&p);
    assert_eq!(service_hash(&before, "b"), service_hash(&same, "b"));

    // Changing a build arg changes the image tag, so both services that use it change.
    p.write(
        "sandbox.toml",
        &MINIMAL.replace(
            "containerfile = \"Containerfile\"",
            "containerfile = \"Containerfile\"\nargs = { GREETING = \"hi\" }",
        ),
    );
    let rebuilt = plan_json(&p);
    assert_ne!(service_hash(&before, "a"), service_hash(&rebuilt, "a"));
    assert_ne!(service_hash(&before, "b"), service_hash(&rebuilt, "b"));
}

#[test]
fn services_are_planned_in_dependency_order() {
    let p = Project::with_toml(
        r#"
[images.core]
[services.a]
image = "core"
depends_on = ["c"]
[services.b]
image = "core"
[services.c]
image = "core"
depends_on = { b = "started" }
"#,
    );
    let plan = plan_json(&p);
    let order: Vec<&str> = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["b", "c", "a"]);
}

#[test]
fn layers_override_in_order_and_explain_says_where() {
    let p = Project::with_toml(MINIMAL);
    let explain = |d: Devbox| d.args(["config", "--explain", "services.b.memory"]).run();

    let out = explain(p.devbox());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "services.b.memory = \"64m\"\n  from sandbox.toml:11:10\n"
    );

    p.write("sandbox.local.toml", "[services.b]\nmemory = \"96m\"\n");
    let out = explain(p.devbox());
    assert_eq!(
        out.stdout,
        "services.b.memory = \"96m\"\n  from sandbox.local.toml:2:10\n"
    );

    let out = explain(p.devbox().env("DEVBOX__SERVICES__B__MEMORY", "128m"));
    assert_eq!(
        out.stdout,
        "services.b.memory = \"128m\"\n  from environment variable DEVBOX__SERVICES__B__MEMORY\n"
    );

    let out = p
        .devbox()
        .env("DEVBOX_ENGINE", "docker")
        .args(["config", "--explain", "project.engine"])
        .run();
    assert_eq!(
        out.stdout,
        "project.engine = \"docker\"\n  from environment variable DEVBOX_ENGINE\n"
    );
    let out = p
        .devbox()
        .env("DEVBOX_ENGINE", "docker")
        .args([
            "--engine",
            "podman",
            "config",
            "--explain",
            "project.engine",
        ])
        .run();
    assert_eq!(
        out.stdout,
        "project.engine = \"podman\"\n  from command-line flag --engine\n"
    );

    let out = p.devbox().args(["config", "--explain", "data.root"]).run();
    assert_eq!(out.stdout, "data.root = \".data\"\n  from devbox default\n");
    // A default applied while resolving (here the hardened user) was "not set in any
    // layer", an error, though it is exactly what the service runs with.
    let out = p
        .devbox()
        .args(["config", "--explain", "services.b.user"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "services.b.user = \"65532:65532\"\n  from devbox default (no layer sets it; `devbox config --resolved` shows every resolved value)\n"
    );
    let out = p
        .devbox()
        .args(["config", "--explain", "services.b.nosuchkey"])
        .run();
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: `services.b.nosuchkey` is not set in any layer (file, sandbox.local.toml, DEVBOX_* environment, flags) and has no default\n"
    );
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let p = Project::with_toml(MINIMAL);
    let out = p
        .devbox()
        .env("DEVBOX__SERVICES__B__MEMORY", "lots")
        .args(["check"])
        .run();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "error: invalid size \"lots\"\n --> environment variable DEVBOX__SERVICES__B__MEMORY\n"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn merged_config_prints_as_toml() {
    let p = Project::with_toml(MINIMAL);
    p.write("sandbox.local.toml", "[services.b]\nmemory = \"96m\"\n");
    let out = p.devbox().args(["config"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: toml::Value = toml::from_str(&out.stdout).unwrap();
    assert_eq!(v["services"]["b"]["memory"].as_str(), Some("96m"));
    assert_eq!(v["services"]["a"]["ports"][0].as_str(), Some("7001"));
}

#[test]
fn init_creates_each_template_and_never_overwrites() {
    for t in ["basic", "hardened", "worker"] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("myproj");
        let out = Devbox::new(dir.path())
            .args(["init", "--template", t, "myproj"])
            .run();
        assert_eq!(out.code, 0, "{t}: {}", out.stderr);
        assert!(
            out.stdout.contains("created sandbox.toml"),
            "{}",
            out.stdout
        );
        let check = Devbox::new(&target).args(["check"]).run();
        assert_eq!(
            check.code, 0,
            "template {t} must validate: {}",
            check.stderr
        );
        assert!(check.stdout.contains("project myproj"), "{}", check.stdout);

        let before = std::fs::read(target.join("sandbox.toml")).unwrap();
        let again = Devbox::new(dir.path())
            .args(["init", "--template", t, "myproj"])
            .run();
        assert_eq!(again.code, 1);
        assert!(
            again.stderr.contains("not overwriting existing files"),
            "{}",
            again.stderr
        );
        assert_eq!(std::fs::read(target.join("sandbox.toml")).unwrap(), before);
    }
}

#[test]
fn init_rejects_an_unknown_template() {
    let dir = tempfile::tempdir().unwrap();
    let out = Devbox::new(dir.path())
        .args(["init", "--template", "nope"])
        .run();
    // A bad command line is exit 2, as the docs say, not 1.
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: unknown template `nope`; available: basic, hardened, worker\n"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn completions_and_man_page_come_from_the_same_definitions() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = Devbox::new(dir.path()).args(["completions", shell]).run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        for cmd in ["check", "render", "init", "schema"] {
            assert!(out.stdout.contains(cmd), "{shell} completions lack {cmd}");
        }
    }
    let man = Devbox::new(dir.path()).args(["man"]).run();
    assert_eq!(man.code, 0);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH devbox"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    assert!(man.stdout.contains("sandbox.toml"));
}

#[test]
fn check_json_summarizes_the_project() {
    let out = Devbox::new(&reference_dir())
        .args(["check", "--json"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["project"], "refbox");
    assert_eq!(v["valid"], true);
    assert_eq!(v["services"], serde_json::json!(["client", "server"]));
    assert_eq!(v["probes"], 6);
    assert_eq!(v["workers"], serde_json::json!(["echo"]));
}

const NATIVE: &str = r#"[project]
name = "hostweb"

[services.web]
command = ["/usr/bin/perl", "server.pl"]
ports = ["8080"]
volumes = ["./site:/srv:ro"]

[services.web.policy]
fs = { read = ["/usr", "/lib"] }
"#;

fn native_project() -> Project {
    let p = Project::with_toml(NATIVE);
    std::fs::create_dir_all(p.path().join("site")).unwrap();
    p
}

#[test]
fn a_service_without_an_image_is_a_native_service() {
    let p = native_project();
    let out = p.devbox().args(["check"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("✓ sandbox.toml is valid: project hostweb, 1 service, 0 images"),
        "{}",
        out.stdout
    );
    let plan = plan_json(&p);
    // `auto` with only native services is the native engine.
    assert_eq!(plan["engine"], "native");
    let web = &plan["services"][0];
    assert_eq!(web["image"], "");
    assert_eq!(web["spec"]["image"], serde_json::json!({ "kind": "host" }));
    assert_eq!(
        web["spec"]["policy"]["net"],
        serde_json::json!({ "mode": "none" })
    );
    assert_eq!(
        web["spec"]["policy"]["fs"]["read"],
        serde_json::json!(["/usr", "/lib"])
    );
    let out = p.devbox().args(["config"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("[services.web.policy.fs]\nread = ["),
        "{}",
        out.stdout
    );
}

#[test]
fn auto_says_why_it_chose_the_native_engine() {
    let p = native_project();
    let out = p.devbox().args(["config", "--resolved"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["project"]["engine"], "native", "{}", out.stdout);
    assert_eq!(
        v["project"]["engine_reason"],
        "no service has an image: running natively (engine native)"
    );
    let out = p
        .devbox()
        .args(["config", "--explain", "project.engine"])
        .run();
    assert_eq!(
        out.stdout,
        "project.engine = \"auto\"\n  from devbox default\n  resolved: no service has an image: running natively (engine native)\n"
    );
    // Told, devbox does not explain its choice.
    let out = p
        .devbox()
        .args(["config", "--resolved", "--engine", "native"])
        .run();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["project"]["engine"], "native");
    assert_eq!(v["project"].get("engine_reason"), None);
}

// The policy decides what the sandbox may reach: editing it must recreate the service.
#[test]
fn a_native_services_hash_covers_its_policy() {
    let p = native_project();
    let before = service_hash(&plan_json(&p), "web");
    p.write(
        "sandbox.toml",
        &NATIVE.replace("fs = {", "net = \"host\"\nfs = {"),
    );
    assert_ne!(before, service_hash(&plan_json(&p), "web"));
    p.write(
        "sandbox.toml",
        &NATIVE.replace("\"/usr\", \"/lib\"", "\"/usr\""),
    );
    assert_ne!(before, service_hash(&plan_json(&p), "web"));
    p.write("sandbox.toml", NATIVE);
    assert_eq!(before, service_hash(&plan_json(&p), "web"));
}

// A container's hash is pinned: a changed hash recreates every container of every user,
// so it changes only on purpose, with a new hash version (`up` then says why).
#[test]
fn a_containers_hash_is_what_it_was_before_native_services() {
    let p = Project::with_toml(
        r#"[project]
name = "hashpin"

[images.core]
containerfile = "Containerfile"

[services.a]
image = "core"
ports = ["7001"]

[services.b]
image = "localhost/b:1"
memory = "64m"
"#,
    );
    let plan = plan_json(&p);
    assert_eq!(
        service_hash(&plan, "a"),
        "v2-46424e773854b91de33021901811373f802422f911993ddc8d62b753253cdb72"
    );
    assert_eq!(
        service_hash(&plan, "b"),
        "v2-2e9216329fb492acf9eb402275b327ea5888fee4e6bca44b8af3e09d892cd01d"
    );
}

#[test]
fn engine_native_from_the_flag_refuses_an_image_service_at_its_line() {
    let p = Project::with_toml(MINIMAL);
    let out = p.devbox().args(["check", "--engine", "native"]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        r#"error: service `a` has an image, but the engine is `native`
 --> sandbox.toml:6:9
  |
6 | image = "core"
  |         ^^^^^^
  = key: services.a.image
  = hint: the native engine runs host programs: choose a container engine (engine = "auto", "podman" or "docker" in [project], or --engine), or remove `image` and give the service a `command` to run it natively

error: service `b` has an image, but the engine is `native`
  --> sandbox.toml:10:9
   |
10 | image = "core"
   |         ^^^^^^
   = key: services.b.image
   = hint: the native engine runs host programs: choose a container engine (engine = "auto", "podman" or "docker" in [project], or --engine), or remove `image` and give the service a `command` to run it natively

error: sandbox.toml has 2 problems; nothing was changed
"#
    );
    let out = native_project()
        .devbox()
        .env("DEVBOX_ENGINE", "docker")
        .args(["render", "--format", "json"])
        .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: service `web` has no image, but the engine is `docker`\n --> sandbox.toml:4:11\n"),
        "{}",
        out.stderr
    );
}

// Workers run on devbox's runner whatever the engine: an engine that does not suit the
// services must not stop `devbox run` or `render --format oci`.
#[test]
fn workers_run_and_render_whether_or_not_the_engine_suits_the_services() {
    let p = Project::with_toml(&format!(
        "{MINIMAL}\n[workers.echo]\ncommand = [\"/bin/echo\", \"hi\"]\n"
    ));
    let no_worker = format!(
        "error: no worker `nope` in {}\nhint: the workers are echo\n",
        p.path().join("sandbox.toml").display()
    );
    let out = p.devbox().args(["--engine", "native", "run", "nope"]).run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr, no_worker);
    // A worker rendered for runc, too.
    let out = p
        .devbox()
        .args([
            "--engine", "native", "render", "--format", "oci", "nope", "bundle",
        ])
        .run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr, no_worker);
}
