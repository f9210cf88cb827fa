use crate::util::{repo, Devbox};

// The committed schema is what editors validate against; it must match the types.
#[test]
fn committed_schema_is_current() {
    let out = Devbox::new(&repo()).args(["schema"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let committed = std::fs::read_to_string(repo().join("schema/sandbox.schema.json")).unwrap();
    assert!(
        committed == out.stdout,
        "schema/sandbox.schema.json is stale: run `cargo run -- schema > schema/sandbox.schema.json`"
    );
}

#[test]
fn schema_describes_every_section() {
    let out = Devbox::new(&repo()).args(["schema"]).run();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let props = v["properties"].as_object().unwrap();
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["data", "images", "networks", "probes", "project", "services", "volumes", "workers"]
    );
    assert_eq!(v["additionalProperties"], serde_json::json!(false));
}
