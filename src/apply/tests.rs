//! The apply logic against the recording fake: what `up` creates, keeps and recreates.
//! The same behaviour is tested against real engines in `tests/engine`.

use std::path::Path;

use super::*;
use crate::config::{self, LoadOptions};
use crate::engine::fake::Fake;

const TWO: &str = r#"
[project]
name = "demo"

[images.app]
containerfile = "Containerfile"

[volumes.shared]

[services.db]
image = "localhost/base:latest"
volumes = ["shared:/var/db"]
healthcheck = { cmd = ["true"], interval = "1s" }

[services.web]
image = "app"
ports = ["8080:80"]
depends_on = { db = "healthy" }
"#;

fn plan_of(dir: &Path, text: &str) -> Plan {
    std::fs::write(dir.join("sandbox.toml"), text).unwrap();
    if !dir.join("Containerfile").exists() {
        std::fs::write(dir.join("Containerfile"), "FROM scratch\n").unwrap();
    }
    let loaded = config::load(&LoadOptions {
        file: Some(dir.join("sandbox.toml")),
        cwd: dir.to_path_buf(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    crate::plan::plan(&loaded.config)
}

fn fake() -> Fake {
    Fake::with_health("healthy")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn first_up_creates_in_order_and_second_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_of(d.path(), TWO);
    let e = fake();
    let rt = rt();
    let r = rt
        .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert_eq!(r.created, vec!["db", "web"]);
    assert_eq!(r.built, vec!["app"]);
    let calls = e.calls();
    let tag = calls[0].strip_prefix("build ").unwrap().to_owned();
    assert!(tag.starts_with("localhost/devbox-demo-app:"), "{tag}");
    assert_eq!(
        calls[1..],
        [
            "create_network demo",
            "create_volume demo_shared",
            // Everything is created first; starts follow dependency order.
            "create_container demo-db",
            "create_container demo-web",
            "start_container demo-db",
            "start_container demo-web",
        ]
    );

    e.clear_calls();
    let again = rt
        .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert!(!again.changed(), "{again:?}");
    assert_eq!(again.unchanged, vec!["db", "web"]);
    assert_eq!(e.calls(), Vec::<String>::new());
}

#[test]
fn editing_one_service_recreates_only_it() {
    let d = tempfile::tempdir().unwrap();
    let e = fake();
    let rt = rt();
    let plan = plan_of(d.path(), TWO);
    rt.block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    e.clear_calls();
    let edited = plan_of(d.path(), &TWO.replace("8080:80", "8081:80"));
    let r = rt
        .block_on(up(&e, &edited, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert_eq!(r.recreated, vec!["web"]);
    assert_eq!(r.unchanged, vec!["db"]);
    assert_eq!(
        e.calls(),
        [
            "stop_container demo-web",
            "remove_container demo-web",
            "create_container demo-web",
            "start_container demo-web",
        ]
    );
}

#[test]
fn changed_build_context_rebuilds_and_recreates_its_services() {
    let d = tempfile::tempdir().unwrap();
    let e = fake();
    let rt = rt();
    let plan = plan_of(d.path(), TWO);
    rt.block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    e.clear_calls();
    std::fs::write(d.path().join("app.sh"), "echo new\n").unwrap();
    let r = rt
        .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert_eq!(r.built, vec!["app"]);
    assert_eq!(r.recreated, vec!["web"]);
    assert_eq!(r.unchanged, vec!["db"]);
}

#[test]
fn removed_service_is_an_orphan_until_asked_to_remove_it() {
    let d = tempfile::tempdir().unwrap();
    let e = fake();
    let rt = rt();
    rt.block_on(up(
        &e,
        &plan_of(d.path(), TWO),
        &UpOptions::default(),
        &Progress::quiet(),
    ))
    .unwrap();
    let only_db = TWO.split("[services.web]").next().unwrap().to_owned();
    let plan = plan_of(d.path(), &only_db);
    let r = rt
        .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert_eq!(r.orphans, vec!["demo-web"]);
    assert!(r.removed_orphans.is_empty());
    let opts = UpOptions {
        remove_orphans: true,
        ..UpOptions::default()
    };
    e.clear_calls();
    let r = rt
        .block_on(up(&e, &plan, &opts, &Progress::quiet()))
        .unwrap();
    assert_eq!(r.removed_orphans, vec!["demo-web"]);
    assert_eq!(e.calls(), ["remove_container demo-web"]);
}

#[test]
fn a_foreign_container_with_our_name_is_reported_not_replaced() {
    let d = tempfile::tempdir().unwrap();
    let e = fake();
    let rt = rt();
    let plan = plan_of(d.path(), TWO);
    // A container named like ours but without devbox's labels.
    let mut spec = container_spec(&plan, plan.service("db").unwrap()).unwrap();
    spec.labels.clear();
    rt.block_on(e.create_container(&spec)).unwrap();
    let err = rt
        .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "the container name `demo-db` is taken by a container devbox did not create"
        ),
        "{err}"
    );
}

#[test]
fn down_removes_containers_and_networks_but_keeps_volumes() {
    let d = tempfile::tempdir().unwrap();
    let e = fake();
    let rt = rt();
    let plan = plan_of(d.path(), TWO);
    rt.block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    let r = rt
        .block_on(down(
            &e,
            "demo",
            &DownOptions::default(),
            &Progress::quiet(),
        ))
        .unwrap();
    assert_eq!(r.containers, vec!["demo-db", "demo-web"]);
    assert_eq!(r.networks, vec!["demo"]);
    assert!(r.volumes.is_empty());
    assert_eq!(
        rt.block_on(e.list_volumes("demo")).unwrap().len(),
        1,
        "the named volume survives down"
    );
}

// Rootful Podman forwarded the port to an internal network's address about half the
// time (its rules come in Go map order); internal networks are now joined after start.
#[test]
fn podman_joins_internal_networks_after_start_when_publishing() {
    let d = tempfile::tempdir().unwrap();
    let text = r#"
[project]
name = "demo"

[networks.back]
internal = true

[services.api]
image = "localhost/base:latest"
ports = ["8080:80"]
networks = ["back"]
"#;
    let plan = plan_of(d.path(), text);
    let e = fake();
    rt().block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert_eq!(
        e.calls(),
        [
            "create_network demo_back",
            "create_network demo",
            "create_container demo-api",
            "start_container demo-api",
            "disconnect_network demo-api demo_back",
            "connect_network demo-api demo_back",
        ]
    );
}

const ONE: &str = r#"
[project]
name = "demo"

[services.db]
image = "localhost/base:latest"
"#;

fn docker_like() -> Fake {
    let mut e = fake();
    e.duplicate_network_names = true;
    e
}

// Two `up`s racing on Docker 20.10 each made the project's network; from then on the
// name was ambiguous and every `up`, `down` and `reset` failed.
#[test]
fn duplicate_networks_devbox_made_are_reduced_to_the_oldest() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_of(d.path(), ONE);
    let e = docker_like();
    let labels = plan.network("default").unwrap().labels.clone();
    let first = e.add_network("demo", &labels);
    e.add_network("demo", &labels);
    let r = rt()
        .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert_eq!(r.created, vec!["db"]);
    assert_eq!(
        e.calls(),
        [
            "remove_network demo",
            "create_container demo-db",
            "start_container demo-db"
        ]
    );
    let left: Vec<String> = e.networks().into_iter().map(|n| n.id).collect();
    assert_eq!(left, vec![first.clone()]);
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("devbox had made network `demo` 2 times; kept net")),
        "{:?}",
        r.notes
    );
}

#[test]
fn down_removes_duplicate_networks_by_id() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_of(d.path(), ONE);
    let e = docker_like();
    let rt = rt();
    rt.block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    e.add_network("demo", &plan.network("default").unwrap().labels);
    let r = rt
        .block_on(down(
            &e,
            "demo",
            &DownOptions::default(),
            &Progress::quiet(),
        ))
        .unwrap();
    assert_eq!(r.networks, vec!["demo", "demo"]);
    assert!(e.networks().is_empty());
}

#[test]
fn a_network_of_our_name_devbox_did_not_make_is_refused_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_of(d.path(), ONE);
    for e in [fake(), docker_like()] {
        let id = e.add_network("demo", &BTreeMap::new());
        let err = rt()
            .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the network name `demo` is taken by a network devbox did not create: {}\nhint: remove it (`podman network rm {}`), or set another [project] name",
                &id[..12],
                &id[..12]
            )
        );
        assert_eq!(e.calls(), Vec::<String>::new());
    }
}

#[test]
fn containers_of_another_checkout_are_refused_unless_taken_over() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let e = fake();
    let rt = rt();
    rt.block_on(up(
        &e,
        &plan_of(a.path(), ONE),
        &UpOptions::default(),
        &Progress::quiet(),
    ))
    .unwrap();
    assert!(rt
        .block_on(check_checkout(&e, "demo", a.path(), false))
        .is_ok());
    let err = rt
        .block_on(check_checkout(&e, "demo", b.path(), false))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "project \"demo\" is in use from another directory, {}\nhint: run devbox there, or pass --take-over to manage it from {} instead",
            a.path().display(),
            b.path().display()
        )
    );
    assert!(rt
        .block_on(check_checkout(&e, "demo", b.path(), true))
        .is_ok());
    // Taking over recreates the container, so that it names its new directory.
    e.clear_calls();
    let plan_b = plan_of(b.path(), ONE);
    let r = rt
        .block_on(up(&e, &plan_b, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert_eq!(r.recreated, vec!["db"]);
    let c = &rt.block_on(e.list_containers("demo")).unwrap()[0];
    assert_eq!(
        c.labels[crate::plan::names::LABEL_DIR],
        b.path().display().to_string()
    );
    assert!(rt
        .block_on(check_checkout(&e, "demo", a.path(), false))
        .is_err());
}

// Containers made before devbox recorded the directory have no label: adopted, not
// refused, and not recreated for it.
#[test]
fn a_container_without_the_directory_label_is_adopted() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_of(d.path(), ONE);
    let e = fake();
    let rt = rt();
    let info = rt.block_on(e.info()).unwrap();
    let mut spec = desired(&plan, plan.service("db").unwrap(), &info, &BTreeMap::new()).unwrap();
    spec.labels.remove(crate::plan::names::LABEL_DIR);
    rt.block_on(e.create_network(&network_spec(plan.network("default").unwrap())))
        .unwrap();
    let id = rt.block_on(e.create_container(&spec)).unwrap();
    rt.block_on(e.start_container(&id)).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    assert!(rt
        .block_on(check_checkout(&e, "demo", elsewhere.path(), false))
        .is_ok());
    let r = rt
        .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    assert_eq!(r.unchanged, vec!["db"]);
}

// A start that fails (its host port taken after the check) left the container `created`
// with its network address; `up` removes it, so the next `up` creates it afresh.
#[test]
fn a_container_that_fails_to_start_is_removed() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_of(d.path(), TWO);
    let mut e = fake();
    e.fail_start = Some("demo-web".into());
    let rt = rt();
    let err = rt
        .block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap_err();
    assert!(err.to_string().contains("address already in use"), "{err}");
    let calls = e.calls();
    let at = calls
        .iter()
        .position(|c| c == "start_container demo-web (fails)")
        .unwrap_or_else(|| panic!("{calls:?}"));
    assert_eq!(calls[at + 1..], ["remove_container demo-web"], "{calls:?}");
    let left: Vec<String> = rt
        .block_on(e.list_containers("demo"))
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(left, ["demo-db"]);
}

#[test]
fn reconcile_marks_edited_services_outdated_and_removed_ones_orphans() {
    let d = tempfile::tempdir().unwrap();
    let e = fake();
    let rt = rt();
    let plan = plan_of(d.path(), TWO);
    rt.block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    let found = || rt.block_on(e.list_containers("demo")).unwrap();
    let info = rt.block_on(e.info()).unwrap();
    let summary = |r: &Reconciled| {
        let services: Vec<(String, Option<String>, bool)> = r
            .services
            .iter()
            .map(|s| {
                let name = s.container.as_ref().map(|c| c.name.clone());
                (s.service.name.clone(), name, s.outdated)
            })
            .collect();
        let orphans: Vec<String> = r.orphans.iter().map(|c| c.name.clone()).collect();
        (services, orphans)
    };

    let r = reconcile(&plan, found(), &info).unwrap();
    assert_eq!(
        summary(&r),
        (
            vec![
                ("db".into(), Some("demo-db".into()), false),
                ("web".into(), Some("demo-web".into()), false),
            ],
            vec![]
        )
    );

    let edited = plan_of(d.path(), &TWO.replace("8080:80", "8081:80"));
    let r = reconcile(&edited, found(), &info).unwrap();
    assert_eq!(
        summary(&r).0,
        [
            ("db".into(), Some("demo-db".into()), false),
            ("web".into(), Some("demo-web".into()), true),
        ]
    );

    let only_db = TWO.split("[services.web]").next().unwrap().to_owned();
    let without_web = plan_of(d.path(), &only_db);
    let r = reconcile(&without_web, found(), &info).unwrap();
    assert_eq!(
        summary(&r),
        (
            vec![("db".into(), Some("demo-db".into()), false)],
            vec!["demo-web".into()]
        )
    );
}

// The plan tagged built images by their settings and `up` by their content, so a rendered
// file named an image that was never built.
#[test]
fn the_plan_names_the_tag_that_is_built_and_the_hash_that_is_labelled() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_of(d.path(), TWO);
    let e = fake();
    rt().block_on(up(&e, &plan, &UpOptions::default(), &Progress::quiet()))
        .unwrap();
    let tag = &plan.image("app").unwrap().tag;
    assert_eq!(e.calls()[0], format!("build {tag}"));
    assert_eq!(&plan.service("web").unwrap().image, tag);
    let web = rt().block_on(e.inspect_container("demo-web")).unwrap();
    assert_eq!(web.image, *tag);
    // The fake is no engine that adjusts what it is sent: the label is the one hash
    // function over what was sent.
    let sent = desired(
        &plan,
        plan.service("web").unwrap(),
        &rt().block_on(e.info()).unwrap(),
        &BTreeMap::from([("app".to_owned(), tag.clone())]),
    )
    .unwrap();
    assert_eq!(
        web.config_hash(),
        sent.labels.get(LABEL_HASH).map(String::as_str)
    );
    assert!(web.config_hash().is_some_and(crate::plan::hash::is_current));
}

// A container whose hash an older devbox computed is recreated once, and `up` says that
// its settings did not change, devbox's hash form did.
#[test]
fn a_hash_of_the_older_form_recreates_once_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let plan = plan_of(d.path(), TWO);
    let e = fake();
    let rt = rt();
    let opts = UpOptions::default();
    rt.block_on(up(&e, &plan, &opts, &Progress::quiet()))
        .unwrap();
    // What the release before the hash version wrote: 64 hex digits.
    e.set_label("demo-web", names::LABEL_HASH, &"0".repeat(64));
    let r = rt
        .block_on(up(&e, &plan, &opts, &Progress::quiet()))
        .unwrap();
    assert_eq!(r.recreated, vec!["web"]);
    assert_eq!(r.unchanged, vec!["db"]);
    assert_eq!(
        r.reasons,
        BTreeMap::from([("web".to_owned(), FORMAT_CHANGED.to_owned())])
    );
    let again = rt
        .block_on(up(&e, &plan, &opts, &Progress::quiet()))
        .unwrap();
    assert_eq!(again.unchanged, vec!["db", "web"]);
    assert!(again.reasons.is_empty());
    // An edit of the settings is no change of format: no reason given.
    let edited = plan_of(d.path(), &TWO.replace("8080:80", "8081:80"));
    let r = rt
        .block_on(up(&e, &edited, &opts, &Progress::quiet()))
        .unwrap();
    assert_eq!(r.recreated, vec!["web"]);
    assert!(r.reasons.is_empty(), "{:?}", r.reasons);
}

// Regression: two racing `up`s each made the network; one kept the older by its creation
// time as text, where Go's cut trailing zeros sort `.4Z` after `.41Z`, so the two kept
// different ones and one removed the network the other's container was on.
#[test]
fn creation_times_sort_by_time_whatever_their_fraction() {
    let mut times = vec![
        "2026-12-02T00:59:01.41Z",
        "2026-12-02T00:59:01.4Z",
        "2026-12-02T00:59:01Z",
        "2026-12-02T00:59:01.123456789Z",
        "2026-12-02T00:59:02.05+00:00",
    ];
    times.sort_by_key(|t| super::created_key(t));
    assert_eq!(
        times,
        [
            "2026-12-02T00:59:01Z",
            "2026-12-02T00:59:01.123456789Z",
            "2026-12-02T00:59:01.4Z",
            "2026-12-02T00:59:01.41Z",
            "2026-12-02T00:59:02.05+00:00",
        ]
    );
}
