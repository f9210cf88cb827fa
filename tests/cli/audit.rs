//! `devbox audit`: each rule has a fixture that triggers it and nothing else at or above
//! its severity; clean projects stay clean; SARIF validates against the published schema.

use std::process::Command;

use crate::util::{reference_dir, repo, require, Devbox, Project};

/// A service with every knob set so that it audits clean at every severity.
const CLEAN: &[(&str, &str)] = &[
    ("image", "\"app\""),
    ("memory", "\"64m\""),
    ("cpus", "0.5"),
    ("healthcheck", "{ tcp = 8080 }"),
];

/// (rule, keys to drop from CLEAN, lines to add to the service, extra sections)
const CASES: &[(&str, &[&str], &str, &str)] = &[
    ("DBX001", &[], "privileged = true", ""),
    ("DBX002", &[], "no_new_privileges = false", ""),
    ("DBX003", &[], "read_only = false", ""),
    ("DBX004", &[], "cap_drop = [\"NET_RAW\"]", ""),
    ("DBX005", &[], "cap_add = [\"CHOWN\"]", ""),
    ("DBX006", &[], "cap_add = [\"SYS_ADMIN\"]", ""),
    ("DBX007", &[], "user = \"0:0\"", ""),
    ("DBX008", &[], "user = \"1000:0\"", ""),
    ("DBX009", &[], "security_opt = [\"seccomp=unconfined\"]", ""),
    ("DBX010", &[], "security_opt = [\"apparmor=unconfined\"]", ""),
    ("DBX011", &[], "security_opt = [\"label=disable\"]", ""),
    ("DBX012", &[], "network_mode = \"host\"", ""),
    ("DBX013", &[], "pid = \"host\"", ""),
    ("DBX014", &[], "ipc = \"host\"", ""),
    ("DBX015", &[], "userns = \"host\"", ""),
    ("DBX016", &[], "ports = [\"0.0.0.0:8080:8080\"]", ""),
    ("DBX017", &[], "ports = [\"127.0.0.1:80:8080\"]", ""),
    ("DBX018", &[], "volumes = [{ source = \"/var/run/docker.sock\", target = \"/var/run/docker.sock\", allow_outside = true }]", ""),
    ("DBX019", &[], "volumes = [{ source = \"/etc\", target = \"/host-etc\", read_only = true, allow_outside = true }]", ""),
    ("DBX020", &[], "volumes = [{ source = \"/opt/shared\", target = \"/shared\", read_only = true, allow_outside = true }]", ""),
    ("DBX021", &[], "volumes = [\"./src:/src\"]", ""),
    ("DBX022", &[], "devices = [\"/dev/fuse\"]", ""),
    ("DBX023", &["memory"], "", ""),
    ("DBX024", &[], "pids_limit = -1", ""),
    ("DBX025", &["cpus"], "", ""),
    ("DBX026", &[], "restart = \"on-failure:10\"", ""),
    ("DBX027", &["healthcheck"], "", ""),
    ("DBX028", &["image"], "image = \"docker.io/library/redis\"", ""),
    ("DBX029", &[], "", "[data.dirs]\nauth = { mode = \"0700\" }\n[data.files.\"auth/token\"]\nsecret = \"hex:16\"\n"),
    ("DBX030", &[], "", "[data.dirs]\nauth = { mode = \"0755\" }\n[data.files.\"auth/token\"]\nsecret = \"hex:16\"\n"),
    ("DBX031", &[], "env = { DB_PASSWORD = \"hunter2\" }", ""),
    ("DBX032", &[], "sysctls = { \"kernel.msgmax\" = 65536 }", ""),
    ("DBX033", &[], "", "[workers.job]\ncommand = [\"/bin/true\"]\n[workers.job.policy]\nnet = \"host\"\nlimits = { memory = \"64m\", pids = 8 }\n"),
    ("DBX034", &[], "", "[workers.job]\ncommand = [\"/bin/true\"]\n[workers.job.policy]\nfs = { write = [\"/\"] }\nlimits = { memory = \"64m\", pids = 8 }\n"),
    ("DBX035", &[], "", "[workers.job]\ncommand = [\"/bin/true\"]\n"),
];

/// Rules about settings only compose can express (devbox refuses them outright): a
/// clean compose service plus one line. (rule, YAML lines under the service)
const COMPOSE_CASES: &[(&str, &str)] = &[
    ("DBX036", "    uts: host\n"),
    ("DBX037", "    volumes: [\"./app:/app:ro,rshared\"]\n"),
];

const CLEAN_COMPOSE: &str = "services:
  api:
    image: docker.io/library/busybox:1.36
    user: \"10001:10001\"
    read_only: true
    cap_drop: [ALL]
    security_opt: [\"no-new-privileges:true\"]
    mem_limit: 64m
    cpus: 0.5
    pids_limit: 64
    healthcheck:
      test: [\"CMD\", \"true\"]
";

fn compose_findings(p: &Project, file: &str) -> Vec<(String, String)> {
    findings_of(p, &["--compose", file])
}

fn project(drop: &[&str], add: &str, extra: &str) -> Project {
    let mut body = String::from("[images.app]\n\n[services.web]\n");
    for (k, v) in CLEAN {
        if !drop.contains(k) {
            body.push_str(&format!("{k} = {v}\n"));
        }
    }
    if !add.is_empty() {
        body.push_str(add);
        body.push('\n');
    }
    body.push('\n');
    body.push_str(extra);
    Project::with_toml(&body)
}

fn findings(p: &Project) -> Vec<(String, String)> {
    findings_of(p, &[])
}

/// (rule, severity) of every finding of `devbox audit ARGS`.
fn findings_of(p: &Project, args: &[&str]) -> Vec<(String, String)> {
    let out = p
        .devbox()
        .args(
            ["audit"]
                .iter()
                .chain(args)
                .chain(&["--format", "json", "--fail-on", "critical"]),
        )
        .run();
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const ORDER: &[&str] = &["info", "low", "medium", "high", "critical"];

fn rank(s: &str) -> usize {
    ORDER.iter().position(|x| *x == s).unwrap()
}

#[test]
fn the_clean_service_has_no_findings_at_all() {
    assert_eq!(findings(&project(&[], "", "")), vec![]);
}

#[test]
fn each_rule_has_a_fixture_that_triggers_it_alone() {
    let rules = Devbox::new(&repo()).args(["audit", "--rules"]).run().stdout;
    let ids: Vec<&str> = rules
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(ids.len() >= 30, "{} rules", ids.len());
    let covered: Vec<&str> = CASES
        .iter()
        .map(|c| c.0)
        .chain(COMPOSE_CASES.iter().map(|c| c.0))
        .collect();
    assert_eq!(
        ids, covered,
        "every rule needs exactly one fixture, in order"
    );

    for (rule, drop, add, extra) in CASES {
        let p = project(drop, add, extra);
        if *rule == "DBX029" {
            // On disk, the secret exists with a mode wider than declared.
            let dir = p.path().join(".data/auth");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("token"), "x").unwrap();
            let mut perm = std::fs::metadata(dir.join("token")).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
            std::fs::set_permissions(dir.join("token"), perm).unwrap();
            let mut dperm = std::fs::metadata(&dir).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut dperm, 0o700);
            std::fs::set_permissions(&dir, dperm).unwrap();
        }
        assert_alone(rule, &findings(&p));
    }
}

/// `rule` is among `found`, and nothing else is at or above its severity.
fn assert_alone(rule: &str, found: &[(String, String)]) {
    let own = found
        .iter()
        .find(|(r, _)| r == rule)
        .unwrap_or_else(|| panic!("{rule} not triggered: {found:?}"));
    let at_or_above: Vec<&String> = found
        .iter()
        .filter(|(_, s)| rank(s) >= rank(&own.1))
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        at_or_above,
        vec![rule],
        "{rule}: other findings at or above {}: {found:?}",
        own.1
    );
}

#[test]
fn compose_only_rules_have_a_fixture_that_triggers_them_alone() {
    let p = Project::new();
    p.write("clean.yml", CLEAN_COMPOSE);
    std::fs::create_dir_all(p.path().join("app")).unwrap();
    assert_eq!(compose_findings(&p, "clean.yml"), vec![]);
    for (rule, line) in COMPOSE_CASES {
        let file = format!("{rule}.yml");
        p.write(&file, &format!("{CLEAN_COMPOSE}{line}"));
        assert_alone(rule, &compose_findings(&p, &file));
    }
}

#[test]
fn up_refuses_critical_findings_unless_allowed() {
    let p = project(&[], "privileged = true", "");
    let out = p.devbox().args(["up"]).run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "refusing to start: 1 critical audit finding, nothing was started:\n  sandbox.toml:"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("DBX001 privileged container"),
        "{}",
        out.stderr
    );
    let out = p.devbox().args(["verify"]).run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("refusing to start"), "{}", out.stderr);
    // With --allow-insecure it says which and goes on (here to an engine that is not
    // there: a Podman socket nothing listens on).
    let nowhere = format!("unix://{}/no-engine.sock", p.path().display());
    let out = p
        .devbox()
        .env("CONTAINER_HOST", &nowhere)
        .args(["up", "--allow-insecure", "--engine", "podman"])
        .run();
    assert!(
        out.stderr
            .contains("warning: starting despite 1 critical audit finding (--allow-insecure):"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("refusing"), "{}", out.stderr);
    // A waiver with a reason accepts it.
    let p = project(
        &[],
        "privileged = true\naudit = { allow = [{ rule = \"DBX001\", reason = \"needs /dev/kvm\" }] }",
        "",
    );
    let out = p
        .devbox()
        .env("CONTAINER_HOST", &nowhere)
        .args(["up", "--engine", "podman"])
        .run();
    assert!(!out.stderr.contains("refusing"), "{}", out.stderr);
    assert!(out.stderr.contains("no-engine.sock"), "{}", out.stderr);
}

#[test]
fn clean_projects_audit_clean_at_high() {
    let mut dirs = vec![reference_dir(), repo().join("examples/hardened")];
    dirs.extend(
        [
            "quickstart",
            "quickstart-containers",
            "local-dev",
            "multi-tenant",
            "connector-runner",
            "supervisor-worker",
        ]
        .map(|e| repo().join("examples").join(e)),
    );
    for d in dirs {
        let out = Devbox::new(&d).args(["audit"]).run();
        assert_eq!(out.code, 0, "{}: {}", d.display(), out.stdout);
        assert!(
            out.stdout.ends_with("; nothing at or above high\n"),
            "{}",
            out.stdout
        );
    }
    let hardened = Devbox::new(&repo().join("examples/hardened"))
        .args(["audit", "--fail-on", "info"])
        .run();
    assert_eq!(
        hardened.stdout,
        "audit: no findings; nothing at or above info\n"
    );
}

#[test]
fn failing_severity_sets_the_exit_code_and_the_report_points_at_the_key() {
    let p = project(&[], "ports = [\"0.0.0.0:8080:8080\"]", "");
    let out = p.devbox().args(["audit"]).run();
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stdout,
        "high DBX016: port published on every interface: service web publishes 0.0.0.0:8080 to every network the host is on\n --> sandbox.toml:8:10\n  |\n8 | ports = [\"0.0.0.0:8080:8080\"]\n  |          ^^^^^^^^^^^^^^^^^^^\n  = key: services.web.ports[0]\n  = hint: bind it to loopback: \"127.0.0.1:HOST:CONTAINER\", or leave the address out\n  = cis: Docker Benchmark v1.6.0 5.13 Ensure that incoming container traffic is bound to a specific host interface\n  = pss: baseline: Host Ports\n\naudit: 1 high; 1 at or above high: failing\n"
    );
    assert_eq!(
        p.devbox()
            .args(["audit", "--fail-on", "critical"])
            .run()
            .code,
        0
    );
}

#[test]
fn a_waiver_needs_a_reason_and_then_accepts_the_finding() {
    let no_reason = project(
        &[],
        "ports = [\"0.0.0.0:8080:8080\"]\naudit = { allow = [{ rule = \"DBX016\" }] }",
        "",
    );
    let out = no_reason.devbox().args(["audit"]).run();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: waiver for DBX016 has no reason\n"),
        "{}",
        out.stderr
    );

    let unknown = project(
        &[],
        "audit = { allow = [{ rule = \"DBX16\", reason = \"x\" }] }",
        "",
    );
    let out = unknown.devbox().args(["check"]).run();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("unknown audit rule `DBX16`"),
        "{}",
        out.stderr
    );

    let waived = project(&[], "ports = [\"0.0.0.0:8080:8080\"]\naudit = { allow = [{ rule = \"DBX016\", reason = \"shared with the phone on the LAN\" }] }", "");
    let out = waived.devbox().args(["audit"]).run();
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("= waived: shared with the phone on the LAN"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("audit: no findings (1 waived); nothing at or above high\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn check_prints_the_audit_summary() {
    let p = project(&["cpus"], "cap_add = [\"SYS_ADMIN\"]", "");
    let out = p.devbox().args(["check"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .ends_with("audit: 1 critical, 1 low (details: devbox audit)\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn sarif_validates_against_the_published_schema() {
    if !require("check-jsonschema") {
        return;
    }
    let p = project(
        &["memory"],
        "ports = [\"0.0.0.0:80:8080\"]\nprivileged = true\naudit = { allow = [{ rule = \"DBX017\", reason = \"demo\" }] }",
        "",
    );
    let out = p.devbox().args(["audit", "--format", "sarif"]).run();
    assert_eq!(out.code, 1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let priv_ = results.iter().find(|r| r["ruleId"] == "DBX001").unwrap();
    assert_eq!(
        priv_["locations"][0]["physicalLocation"]["region"]["startLine"],
        8
    );
    assert_eq!(priv_["level"], "error");
    let waived = results.iter().find(|r| r["ruleId"] == "DBX017").unwrap();
    assert_eq!(waived["suppressions"][0]["justification"], "demo");
    assert_valid_sarif(p.path(), &out.stdout);
}

/// Validates SARIF text against the published 2.1.0 schema with check-jsonschema.
pub(crate) fn assert_valid_sarif(dir: &std::path::Path, sarif: &str) {
    let file = dir.join("out.sarif");
    std::fs::write(&file, sarif).unwrap();
    let judge = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(repo().join("tests/fixtures/sarif-schema-2.1.0.json"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        judge.status.success(),
        "{}{}",
        String::from_utf8_lossy(&judge.stdout),
        String::from_utf8_lossy(&judge.stderr)
    );
}

// `audit --format sarif` on a file that failed validation wrote nothing, so code scanning
// showed no problem at all where the file was broken.
#[test]
fn sarif_of_an_invalid_file_holds_its_errors_at_their_lines() {
    if !require("check-jsonschema") {
        return;
    }
    let dir = repo().join("tests/fixtures/bad/port-out-of-range");
    let out = Devbox::new(&dir).args(["audit", "--format", "sarif"]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    let check = Devbox::new(&dir).args(["check"]).run();
    assert_eq!(out.stderr, check.stderr, "stderr as `check` prints it");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    let problems = check.stderr.matches("\n  = key: ").count();
    assert!(problems > 0, "{}", check.stderr);
    assert_eq!(results.len(), problems, "{}", out.stdout);
    for r in results {
        assert_eq!(r["ruleId"], "devbox-config");
        assert_eq!(r["level"], "error");
        let loc = &r["locations"][0]["physicalLocation"];
        let line = loc["region"]["startLine"].as_u64().unwrap();
        let column = loc["region"]["startColumn"].as_u64().unwrap();
        let uri = loc["artifactLocation"]["uri"].as_str().unwrap();
        assert!(
            check
                .stderr
                .contains(&format!("--> {uri}:{line}:{column}\n")),
            "{r} not at a place `check` names:\n{}",
            check.stderr
        );
    }
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    let index = results[0]["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[index]["id"], "devbox-config");
    assert_valid_sarif(tempfile::tempdir().unwrap().path(), &out.stdout);
}

/// A native service set up to audit clean at every severity, plus `add` lines.
fn native_project(add: &str) -> Project {
    Project::with_toml(&format!(
        "[services.web]\ncommand = [\"/bin/true\"]\nmemory = \"64m\"\ncpus = 0.5\nhealthcheck = {{ tcp = 8080 }}\n{add}\n"
    ))
}

#[test]
fn the_rules_that_mean_something_natively_apply_to_native_services() {
    assert_eq!(findings(&native_project("")), vec![]);
    // The host's network, and writes to a sensitive host path, through the policy.
    assert_alone(
        "DBX012",
        &findings(&native_project("[services.web.policy]\nnet = \"host\"")),
    );
    assert_alone(
        "DBX019",
        &findings(&native_project(
            "[services.web.policy]\nfs = { write = [\"/etc\"] }",
        )),
    );
    assert_alone(
        "DBX034",
        &findings(&native_project(
            "[services.web.policy]\nfs = { write = [\"/\"] }",
        )),
    );
    assert_alone(
        "DBX033",
        &findings(&native_project(
            "[services.web.policy]\nnet = { default = \"allow\" }",
        )),
    );
    // A port on every interface, a writable project bind, no healthcheck: as for a container.
    assert_alone(
        "DBX016",
        &findings(&native_project("ports = [\"0.0.0.0:8080:8080\"]")),
    );
    let p = native_project("volumes = [\"./src:/src\"]");
    std::fs::create_dir_all(p.path().join("src")).unwrap();
    assert_alone("DBX021", &findings(&p));
    let p = Project::with_toml(
        "[services.web]\ncommand = [\"/bin/true\"]\nmemory = \"64m\"\ncpus = 0.5\n",
    );
    assert_alone("DBX027", &findings(&p));
}

#[test]
fn container_only_rules_skip_native_services() {
    // A native service drops every capability whatever `cap_drop` lists: no DBX004, which
    // the same line gives a container.
    assert_eq!(
        findings(&native_project("cap_drop = [\"NET_RAW\"]")),
        vec![]
    );
    assert_alone(
        "DBX004",
        &findings(&project(&[], "cap_drop = [\"NET_RAW\"]", "")),
    );
    // `network_mode = "host"` goes with `policy.net = "host"`: one finding, at the policy.
    let p = native_project("network_mode = \"host\"\n[services.web.policy]\nnet = \"host\"");
    let out = p.devbox().args(["audit", "--format", "json"]).run();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let keys: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["services.web.policy.net"], "{}", out.stdout);
}
