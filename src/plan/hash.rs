//! Config hashes: the sha2 that a resource's `devbox.config-hash` label carries, so that
//! `up` keeps a resource exactly when what it was made from is what it would be made
//! from now.
//!
//! A container's hash is taken in one place, [`config_hash`], over [`wire_form`]: an
//! explicit JSON object of what is sent to the engine, keyed by the names devbox's files
//! and the engines use (`cap_drop`, `pids_limit`, `stop_signal`, …), written out here
//! key by key rather than derived from the Rust struct, so that renaming a field,
//! reordering fields or changing a derive in the code changes no user's hash. JSON maps
//! are sorted (serde_json without `preserve_order`), so equal settings serialise equal.
//! Values that are devbox's own configuration types (ports, tmpfs, userns, restart,
//! ulimits, the native policy) are taken in their serde form, which is the form
//! `devbox config --resolved` prints; a test pins the whole wire form, so a change to
//! any of it fails that test instead of recreating every container.
//!
//! Changing the form on purpose changes every hash, and every container is recreated
//! once: bump [`HASH_VERSION`], which prefixes every hash, so that `up` can say why.

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::names::{LABEL_DIR, LABEL_HASH, LABEL_STOP_GRACE};
use crate::engine::{ContainerSpec, HealthSpec, MountSpec};

/// The version of [`wire_form`]; a container hash is `VERSION-SHA256HEX`. A hash
/// without this prefix was computed by an older devbox.
pub const HASH_VERSION: &str = "v2";

/// sha2 over the canonical JSON of `value` (maps are ordered, so equal settings hash
/// equal): the hash of images, volumes and networks, whose hashed values are tuples and
/// maps of the file's own values.
pub fn hash_of<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("plan values serialize");
    hex::encode(Sha256::digest(json))
}

/// The config hash of a container: `v2-` and the sha2 of its [`wire_form`].
pub fn config_hash(spec: &ContainerSpec) -> String {
    format!("{HASH_VERSION}-{}", hash_of(&wire_form(spec)))
}

/// Whether a container's hash label was computed by the current [`config_hash`]; when
/// not, a differing hash says nothing about the settings, only that devbox's hash form
/// changed.
pub fn is_current(hash: &str) -> bool {
    hash.strip_prefix(HASH_VERSION)
        .is_some_and(|rest| rest.starts_with('-'))
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("spec values serialize")
}

/// Everything a container is created with, as the engine takes it, by wire names. Left
/// out: the labels devbox derives after hashing (the hash itself, the grace-period label
/// that repeats `stop_timeout_s`, the project directory, which moves with a checkout) and
/// the service name (the `devbox.service` label carries it).
pub fn wire_form(spec: &ContainerSpec) -> Value {
    let labels: std::collections::BTreeMap<&str, &str> = spec
        .labels
        .iter()
        .filter(|(k, _)| ![LABEL_HASH, LABEL_DIR, LABEL_STOP_GRACE].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mounts: Vec<Value> = spec
        .mounts
        .iter()
        .map(|m| match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => json!({
                "type": "bind",
                "source": source.display().to_string(),
                "target": target,
                "read_only": read_only,
            }),
            MountSpec::Volume {
                name,
                target,
                read_only,
            } => json!({
                "type": "volume",
                "source": name,
                "target": target,
                "read_only": read_only,
            }),
        })
        .collect();
    let healthcheck = spec.healthcheck.as_ref().map(|h: &HealthSpec| {
        json!({
            "test": h.test,
            "interval_ms": h.interval_ms,
            "timeout_ms": h.timeout_ms,
            "retries": h.retries,
            "start_period_ms": h.start_period_ms,
        })
    });
    let native = spec.native.as_ref().map(|n| {
        json!({
            "policy": n.policy.as_ref().map(to_value),
            "check": n.check.as_ref().map(to_value),
        })
    });
    json!({
        "name": spec.name,
        "image": spec.image,
        "labels": labels,
        "command": spec.command,
        "entrypoint": spec.entrypoint,
        "env": spec.env,
        "user": to_value(&spec.user),
        "userns": spec.userns.as_ref().map(to_value),
        "workdir": spec.workdir,
        "ports": to_value(&spec.ports),
        "mounts": mounts,
        "tmpfs": to_value(&spec.tmpfs),
        "read_only": spec.read_only,
        "cap_drop": spec.cap_drop,
        "cap_add": spec.cap_add,
        "no_new_privileges": spec.no_new_privileges,
        "security_opt": spec.security_opt,
        "memory": spec.memory,
        "cpus": spec.cpus,
        "pids_limit": spec.pids_limit,
        "ulimits": to_value(&spec.ulimits),
        "networks": spec.networks,
        "late_networks": spec.late_networks,
        "healthcheck": healthcheck,
        "restart": to_value(&spec.restart),
        "privileged": spec.privileged,
        "network_mode": spec.network_mode,
        "pid": spec.pid,
        "ipc": spec.ipc,
        "devices": spec.devices,
        "sysctls": spec.sysctls,
        "extra_hosts": spec.extra_hosts,
        "init": spec.init,
        "stop_signal": spec.stop_signal,
        "stop_timeout_s": spec.stop_timeout_s,
        "native": native,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::config::{self, LoadOptions};

    const BASE: &str = r#"
[project]
name = "hashes"

[volumes.shared]

[services.web]
image = "localhost/base:1"
command = ["httpd", "-f"]
env = { MODE = "dev" }
ports = ["8080:80"]
volumes = ["shared:/srv"]
cap_drop = ["ALL"]
memory = "64m"
pids_limit = 64
healthcheck = { cmd = ["true"], interval = "1s" }
"#;

    fn spec_of(dir: &Path, text: &str) -> ContainerSpec {
        std::fs::write(dir.join("sandbox.toml"), text).unwrap();
        let loaded = config::load(&LoadOptions {
            file: Some(dir.join("sandbox.toml")),
            cwd: dir.to_path_buf(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let plan = crate::plan::plan(&loaded.config);
        let s = plan.service("web").unwrap();
        let spec = crate::engine::container_spec(&plan, s).unwrap();
        assert_eq!(
            s.hash,
            config_hash(&spec),
            "the plan hashes what it describes"
        );
        spec
    }

    // Each setting that reaches the engine changes the hash; a changed hash is what makes
    // `up` recreate the container.
    #[test]
    fn every_effective_change_changes_the_hash() {
        let d = tempfile::tempdir().unwrap();
        let base = config_hash(&spec_of(d.path(), BASE));
        let edits: &[(&str, &str)] = &[
            (
                "image = \"localhost/base:1\"",
                "image = \"localhost/base:2\"",
            ),
            ("[\"httpd\", \"-f\"]", "[\"httpd\", \"-v\"]"),
            ("MODE = \"dev\"", "MODE = \"prod\""),
            ("\"8080:80\"", "\"8081:80\""),
            ("shared:/srv", "shared:/srv:ro"),
            ("cap_drop = [\"ALL\"]", "cap_drop = [\"NET_RAW\"]"),
            ("cap_drop", "read_only = false\ncap_drop"),
            ("cap_drop", "security_opt = [\"label=disable\"]\ncap_drop"),
            ("memory = \"64m\"", "memory = \"128m\""),
            ("pids_limit = 64", "pids_limit = 65"),
            ("memory", "cpus = 0.5\nmemory"),
            ("interval = \"1s\"", "interval = \"2s\""),
            ("memory", "stop_signal = \"SIGINT\"\nmemory"),
            ("memory", "stop_grace_period = \"3s\"\nmemory"),
            ("memory", "init = false\nmemory"),
            ("memory", "user = \"1000:1000\"\nmemory"),
            ("memory", "workdir = \"/srv\"\nmemory"),
            ("memory", "labels = { team = \"a\" }\nmemory"),
            ("memory", "tmpfs = [\"/run\"]\nmemory"),
            (
                "memory",
                "sysctls = { \"net.ipv4.ip_forward\" = \"1\" }\nmemory",
            ),
            ("memory", "restart = \"always\"\nmemory"),
        ];
        let mut seen = BTreeSet::from([base.clone()]);
        for (from, to) in edits {
            assert!(BASE.contains(from), "{from}");
            let text = BASE.replacen(from, to, 1);
            let h = config_hash(&spec_of(d.path(), &text));
            assert_ne!(h, base, "{to} left the hash as it was");
            assert!(seen.insert(h), "{to} gave the hash of another edit");
        }
    }

    #[test]
    fn what_only_devbox_derives_is_not_hashed() {
        let d = tempfile::tempdir().unwrap();
        let spec = spec_of(d.path(), BASE);
        let mut other = spec.clone();
        other.labels.insert(LABEL_DIR.into(), "/elsewhere".into());
        other.labels.insert(LABEL_STOP_GRACE.into(), "99".into());
        other.labels.insert(LABEL_HASH.into(), "v2-0".into());
        assert_eq!(config_hash(&spec), config_hash(&other));
        let h = config_hash(&spec);
        assert!(is_current(&h), "{h}");
        // A hash of the older form: bare hex.
        assert!(!is_current(&h["v2-".len()..]));
        assert!(!is_current("v20-abc"));
    }

    // The hash is over this form, key by key: renaming a field of the Rust types must
    // keep these names (or bump HASH_VERSION and recreate every container on purpose).
    #[test]
    fn the_wire_form_is_pinned() {
        let d = tempfile::tempdir().unwrap();
        let spec = spec_of(d.path(), BASE);
        // The whole form, nested values and defaults included: a change here recreates
        // the containers of every user.
        assert_eq!(
            config_hash(&spec),
            "v2-7de90ff2a4a4950477c8a0621f28f9c99aa10c7f743d97039f1ab61d88803960"
        );
        let form = wire_form(&spec);
        let keys: Vec<&str> = form
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "cap_add",
                "cap_drop",
                "command",
                "cpus",
                "devices",
                "entrypoint",
                "env",
                "extra_hosts",
                "healthcheck",
                "image",
                "init",
                "ipc",
                "labels",
                "late_networks",
                "memory",
                "mounts",
                "name",
                "native",
                "network_mode",
                "networks",
                "no_new_privileges",
                "pid",
                "pids_limit",
                "ports",
                "privileged",
                "read_only",
                "restart",
                "security_opt",
                "stop_signal",
                "stop_timeout_s",
                "sysctls",
                "tmpfs",
                "ulimits",
                "user",
                "userns",
                "workdir",
            ]
        );
        assert_eq!(
            form["mounts"],
            json!([{"type": "volume", "source": "hashes_shared", "target": "/srv", "read_only": false}])
        );
        assert_eq!(
            form["ports"],
            json!([{"host_ip": "127.0.0.1", "host": 8080, "container": 80, "protocol": "tcp"}])
        );
        assert_eq!(
            form["healthcheck"],
            json!({"test": ["CMD", "true"], "interval_ms": 1000, "timeout_ms": 2000, "retries": 15, "start_period_ms": 0})
        );
        assert_eq!(form["restart"], json!({"policy": "no"}));
        assert_eq!(
            form["labels"],
            json!({"devbox.kind": "service", "devbox.project": "hashes", "devbox.service": "web"})
        );
    }
}
