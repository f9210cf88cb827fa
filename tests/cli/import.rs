//! `devbox import` and `devbox audit --compose`: real-world compose files (web, database
//! and cache stacks, with their bad habits) audit with the expected findings at the right
//! lines and import to a sandbox.toml that passes `check`; devbox's own rendered compose
//! imports back to the same plan (same config hashes).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::util::{repo, require, Devbox, Project};

/// A copy of the compose fixtures (with the files they mount and build) in a temp dir.
fn fixtures() -> Project {
    copy_of(&repo().join("tests/fixtures/compose"))
}

/// A temporary project holding a copy of `dir`.
fn copy_of(dir: &Path) -> Project {
    let p = Project::new();
    let st = Command::new("cp")
        .arg("-r")
        .arg(dir.join("."))
        .arg(p.path())
        .status()
        .unwrap();
    assert!(st.success());
    p
}

/// (rule, line) of every finding at or above `high`, plus the medium ones named.
fn findings(dir: &Path, file: &str) -> Vec<(String, u64)> {
    let out = Devbox::new(dir)
        .args(["audit", "--compose", file, "--format", "json"])
        .run();
    assert!(
        out.code == 0 || out.code == 1,
        "{}{}",
        out.stdout,
        out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            matches!(f["severity"].as_str(), Some("high" | "critical"))
                || matches!(f["rule"].as_str(), Some("DBX021" | "DBX037" | "DBX028"))
        })
        .map(|f| {
            assert_eq!(f["location"]["file"], file, "{f}");
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["location"]["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(r, l)| ((*r).to_owned(), *l)).collect()
}

#[test]
fn real_world_compose_files_audit_with_the_expected_findings() {
    let p = fixtures();
    // Keys compose leaves unset (user, cap_drop, no-new-privileges) point at the service.
    let unset = |line: u64, root: bool| {
        let mut v = vec![("DBX002", line), ("DBX004", line)];
        if root {
            v.push(("DBX007", line));
        }
        v
    };
    let mut web_db_cache = unset(9, true);
    web_db_cache.extend([
        ("DBX016", 19),
        ("DBX031", 22),
        ("DBX021", 24),
        ("DBX018", 25),
    ]);
    web_db_cache.extend(unset(33, true));
    web_db_cache.extend([("DBX031", 36), ("DBX016", 38)]);
    web_db_cache.extend(unset(47, true));
    web_db_cache.extend([("DBX028", 48), ("DBX001", 50)]);

    let mut django = vec![("DBX021", 13), ("DBX021", 13)];
    django.extend(unset(17, false));
    django.extend(unset(34, false));
    django.push(("DBX005", 38));
    django.extend(unset(43, true));
    django.push(("DBX016", 46));
    django.extend(unset(53, true));
    django.push(("DBX032", 59));
    django.extend(unset(61, true));

    let mut monitoring = unset(3, true);
    monitoring.extend([
        ("DBX013", 5),
        ("DBX012", 6),
        ("DBX019", 8),
        ("DBX019", 9),
        ("DBX019", 10),
    ]);
    monitoring.extend(unset(12, true));
    monitoring.extend([
        ("DBX028", 13),
        ("DBX001", 14),
        ("DBX022", 16),
        ("DBX018", 18),
        ("DBX019", 19),
        ("DBX016", 21),
    ]);
    monitoring.extend(unset(23, true));
    monitoring.extend([
        ("DBX028", 24),
        ("DBX021", 26),
        ("DBX037", 26),
        ("DBX036", 29),
        ("DBX014", 30),
        ("DBX009", 32),
    ]);

    for (file, want) in [
        ("web-db-cache.yml", web_db_cache),
        ("django-celery.yml", django),
        ("monitoring.yml", monitoring),
        ("clean.yml", vec![]),
    ] {
        assert_eq!(findings(p.path(), file), pairs(&want), "{file}");
    }
    // The clean file has no findings at any severity, and exits 0 at the default.
    let clean = p
        .devbox()
        .args(["audit", "--compose", "clean.yml", "--fail-on", "info"])
        .run();
    assert_eq!(clean.code, 0, "{}", clean.stdout);
    assert_eq!(
        clean.stdout,
        "audit: no findings; nothing at or above info\n"
    );
}

#[test]
fn the_human_report_points_at_the_compose_line() {
    let p = fixtures();
    let out = p
        .devbox()
        .args([
            "audit",
            "--compose",
            "monitoring.yml",
            "--fail-on",
            "critical",
        ])
        .run();
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains(
            "critical DBX018: container engine socket mounted: service cadvisor mounts /var/run/docker.sock\n  --> monitoring.yml:18:9\n   |\n18 |       - /var/run/docker.sock:/var/run/docker.sock:ro\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with(
            "audit: 6 critical, 16 high, 13 medium, 6 low; 6 at or above critical: failing\n"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn imports_pass_check_and_list_what_was_not_mapped() {
    let p = fixtures();
    for (file, unmapped) in [
        (
            "web-db-cache.yml",
            &["services.web.container_name", "services.web.logging"][..],
        ),
        ("django-celery.yml", &["services.broker.expose"][..]),
        (
            "monitoring.yml",
            &[
                "services.node-exporter.volumes",
                "services.prometheus.volumes",
                "services.prometheus.uts",
            ][..],
        ),
        ("clean.yml", &[][..]),
    ] {
        let out_file = format!("{file}.toml");
        let out = p.devbox().args(["import", file, "-o", &out_file]).run();
        assert_eq!(out.code, 0, "{file}: {}", out.stderr);
        let listed: Vec<&str> = out
            .stderr
            .lines()
            .filter_map(|l| l.split_once(": not mapped: "))
            .map(|(_, rest)| rest.split_once(':').unwrap().0)
            .collect();
        assert_eq!(listed, unmapped, "{file}: {}", out.stderr);
        let text = std::fs::read_to_string(p.path().join(&out_file)).unwrap();
        for u in unmapped {
            assert!(
                text.contains(&format!(" {u}: ")),
                "{file}: {u} not in the header"
            );
        }
        let check = p.devbox().args(["-f", &out_file, "check"]).run();
        assert_eq!(
            check.code, 0,
            "{file}: {}{}\n{text}",
            check.stdout, check.stderr
        );
    }
    // Ports without an address come in on loopback; the note says so.
    let text = std::fs::read_to_string(p.path().join("web-db-cache.yml.toml")).unwrap();
    assert!(text.contains("ports = [\"127.0.0.1:3000:3000\"]"), "{text}");
    assert!(text.contains("now bind 127.0.0.1 only"), "{text}");
    // Knobs written in compose survive, in devbox's terms.
    let text = std::fs::read_to_string(p.path().join("django-celery.yml.toml")).unwrap();
    for want in [
        "name = \"shop\"",
        "memory = \"512M\"",
        "cpus = 1.5",
        "pids_limit = 200",
        "user = \"1000:1000\"",
        "cap_add = [\"NET_ADMIN\"]",
        "restart = \"on-failure:10\"",
        "command = [\"gunicorn\", \"shop.wsgi\", \"-b\", \"0.0.0.0:8000\"]",
        "DJANGO_SETTINGS_MODULE = \"shop.settings\"",
        "depends_on = { broker = \"started\", db = \"started\" }",
        "\"kernel.shmmax\" = 1073741824",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}

#[test]
fn import_changes_nothing_on_bad_input() {
    let p = fixtures();
    p.write("existing.toml", "keep me\n");
    let out = p
        .devbox()
        .args(["import", "clean.yml", "-o", "existing.toml"])
        .run();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("existing.toml exists; nothing was written (use --force"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("existing.toml")).unwrap(),
        "keep me\n"
    );

    p.write("broken.yml", "services:\n  web:\n    image: [nginx\n");
    let out = p
        .devbox()
        .args(["import", "broken.yml", "-o", "new.toml"])
        .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--> broken.yml:"), "{}", out.stderr);
    assert!(!p.path().join("new.toml").exists());

    // Something devbox rejects is reported at the compose line it came from.
    p.write(
        "bad.yml",
        "services:\n  web:\n    image: nginx:1.27\n    depends_on: [nope]\n",
    );
    let out = p.devbox().args(["import", "bad.yml"]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--> bad.yml:4:18"), "{}", out.stderr);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
}

/// Service/network/volume/image key → config hash, from `render --format json`.
fn hashes(dir: &Path, file: &str) -> BTreeMap<String, String> {
    let out = Devbox::new(dir)
        .args(["-f", file, "render", "--format", "json"])
        .run();
    assert_eq!(out.code, 0, "{file}: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mut h = BTreeMap::new();
    for kind in ["images", "volumes", "networks", "services"] {
        for x in v[kind].as_array().unwrap() {
            let k = x.get("key").or_else(|| x.get("name")).unwrap();
            h.insert(
                format!("{kind}.{}", k.as_str().unwrap()),
                x["hash"].as_str().unwrap().to_owned(),
            );
        }
    }
    h
}

#[test]
fn devbox_rendered_compose_imports_back_to_the_same_plan() {
    let mut compared = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let ex = entry.unwrap().path();
        let p = copy_of(&ex);
        let rendered = p.devbox().args(["render", "--format", "compose"]).run();
        assert_eq!(rendered.code, 0, "{}", rendered.stderr);
        if rendered.stderr.contains("compose: native services (") {
            // Native services have no compose form: render leaves them out.
            continue;
        }
        p.write("compose.yml", &rendered.stdout);
        let out = p
            .devbox()
            .args(["import", "compose.yml", "-o", "imported.toml"])
            .run();
        assert_eq!(out.code, 0, "{}: {}", ex.display(), out.stderr);
        let before = hashes(p.path(), "sandbox.toml");
        let after = hashes(p.path(), "imported.toml");
        assert_eq!(before, after, "{}", ex.display());
        compared += before.keys().filter(|k| k.starts_with("services.")).count();
    }
    assert!(compared >= 6, "only {compared} services compared");
}

#[test]
fn compose_sarif_validates_and_points_at_the_compose_file() {
    if !require("check-jsonschema") {
        return;
    }
    let p = fixtures();
    let out = p
        .devbox()
        .args([
            "audit",
            "--compose",
            "web-db-cache.yml",
            "--format",
            "sarif",
        ])
        .run();
    assert_eq!(out.code, 1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    let sock = results.iter().find(|r| r["ruleId"] == "DBX018").unwrap();
    let loc = &sock["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "web-db-cache.yml");
    assert_eq!(loc["region"]["startLine"], 25);
    crate::audit::assert_valid_sarif(p.path(), &out.stdout);
}

// `audit --compose` refused to audit anything when a `build:` context had no Dockerfile,
// though a reviewer audits compose files from other people's repositories, often without
// the contexts. It warns at the `build:` key and audits the rest as compose runs it.
#[test]
fn a_build_context_without_a_dockerfile_is_warned_about_and_the_rest_audited() {
    let p = Project::new();
    p.write(
        "compose.yml",
        "services:\n  web:\n    build: ./app\n    ports: [\"8080:80\"]\n  db:\n    image: postgres:16\n    privileged: true\n",
    );
    std::fs::create_dir(p.path().join("app")).unwrap();
    let out = Devbox::new(p.path())
        .args(["audit", "--compose", "compose.yml", "--format", "json"])
        .run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stderr,
        "warning: compose.yml:3:5: services.web.build: no Containerfile or Dockerfile in `./app`; audited without building it\n"
    );
    let without = findings(p.path(), "compose.yml");
    assert!(
        without.contains(&("DBX016".to_owned(), 4)) && without.contains(&("DBX001".to_owned(), 7)),
        "{without:?}"
    );
    // With the Dockerfile there, the same findings and no warning.
    p.write("app/Dockerfile", "FROM scratch\n");
    let out = Devbox::new(p.path())
        .args(["audit", "--compose", "compose.yml", "--format", "json"])
        .run();
    assert_eq!(out.stderr, "");
    assert_eq!(findings(p.path(), "compose.yml"), without);
}

// The summary said "1 services": counts were plural whatever the number.
#[test]
fn the_import_summary_counts_one_in_the_singular() {
    let p = Project::new();
    std::fs::write(
        p.path().join("compose.yml"),
        "services:\n  web:\n    image: localhost/x\n    container_name: w\n",
    )
    .unwrap();
    let out = p
        .devbox()
        .args(["import", "compose.yml", "-o", "s.toml"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().last(),
        Some("wrote s.toml (1 service; 1 setting not mapped, listed above and in the file)"),
        "{}",
        out.stderr
    );
}
