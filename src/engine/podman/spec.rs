//! The libpod SpecGenerator body devbox sends to create a container (written by hand:
//! see the module above for why).

use serde_json::{json, Value};

use crate::config::model::Userns;
use crate::engine::{ContainerSpec, MountSpec};

/// The libpod SpecGenerator body for a container.
pub fn spec_json(s: &ContainerSpec) -> Value {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("name", json!(s.name));
    put("image", json!(s.image));
    put("labels", json!(s.labels));
    if let Some(c) = &s.command {
        put("command", json!(c));
    }
    if let Some(e) = &s.entrypoint {
        put("entrypoint", json!(e));
    }
    put("env", json!(s.env));
    put("user", json!(s.user));
    match &s.userns {
        Some(Userns::KeepId { uid, gid }) => {
            let mut opts = Vec::new();
            if let Some(u) = uid {
                opts.push(format!("uid={u}"));
            }
            if let Some(g) = gid {
                opts.push(format!("gid={g}"));
            }
            put(
                "userns",
                json!({ "nsmode": "keep-id", "value": opts.join(",") }),
            );
        }
        Some(Userns::Host) => put("userns", json!({ "nsmode": "host" })),
        Some(Userns::Auto) => put("userns", json!({ "nsmode": "auto" })),
        None => {}
    }
    if let Some(w) = &s.workdir {
        put("work_dir", json!(w));
    }
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            json!({
                "host_ip": p.host_ip.to_string(),
                "host_port": p.host,
                "container_port": p.container,
                "protocol": p.protocol.as_str(),
            })
        })
        .collect();
    put("portmappings", json!(ports));
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for mount in &s.mounts {
        match mount {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => {
                let mut o = vec!["rbind".to_owned()];
                if *read_only {
                    o.push("ro".into());
                }
                mounts.push(json!({
                    "type": "bind", "source": source, "destination": target, "options": o,
                }));
            }
            MountSpec::Volume {
                name,
                target,
                read_only,
            } => {
                let o: Vec<&str> = if *read_only { vec!["ro"] } else { vec![] };
                volumes.push(json!({ "Name": name, "Dest": target, "Options": o }));
            }
        }
    }
    for t in &s.tmpfs {
        let mut o = vec!["rw".to_owned(), "nosuid".into(), "nodev".into()];
        o.extend(t.option_texts().map(str::to_owned));
        mounts.push(json!({
            "type": "tmpfs", "source": "tmpfs", "destination": t.path, "options": o,
        }));
    }
    put("mounts", json!(mounts));
    put("volumes", json!(volumes));
    put("read_only_filesystem", json!(s.read_only));
    put("cap_drop", json!(s.cap_drop));
    put("cap_add", json!(s.cap_add));
    let mut nnp = s.no_new_privileges;
    let mut selinux = Vec::new();
    for o in &s.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "no-new-privileges" => nnp = v != "false",
            "label" => selinux.push(v.to_owned()),
            "apparmor" => put("apparmor_profile", json!(v)),
            "seccomp" => put("seccomp_profile_path", json!(v)),
            _ => {}
        }
    }
    put("no_new_privileges", json!(nnp));
    if !selinux.is_empty() {
        put("selinux_opts", json!(selinux));
    }
    let mut res = serde_json::Map::new();
    if let Some(mem) = s.memory {
        res.insert("memory".into(), json!({ "limit": mem }));
    }
    if let Some(c) = s.cpus {
        res.insert(
            "cpu".into(),
            json!({
                "quota": crate::runner::cgroup::cpu_quota(c),
                "period": crate::runner::cgroup::CPU_PERIOD_US,
            }),
        );
    }
    if let Some(p) = s.pids_limit {
        res.insert("pids".into(), json!({ "limit": p }));
    }
    if !res.is_empty() {
        put("resource_limits", Value::Object(res));
    }
    let rl: Vec<Value> = s
        .ulimits
        .iter()
        .map(|(k, v)| {
            json!({ "type": format!("RLIMIT_{}", k.to_uppercase()), "soft": v.soft, "hard": v.hard })
        })
        .collect();
    if !rl.is_empty() {
        put("r_limits", json!(rl));
    }
    match s.network_mode.as_deref() {
        Some(mode) => {
            let (ns, value) = mode.split_once(':').unwrap_or((mode, ""));
            let ns = if ns == "service" { "container" } else { ns };
            put("netns", json!({ "nsmode": ns, "value": value }));
        }
        None => {
            let nets: serde_json::Map<String, Value> = s
                .networks
                .iter()
                .map(|n| (n.clone(), json!({ "aliases": [s.service] })))
                .collect();
            put("netns", json!({ "nsmode": "bridge" }));
            put("Networks", Value::Object(nets));
        }
    }
    if let Some(h) = &s.healthcheck {
        put(
            "healthconfig",
            json!({
                "Test": h.test,
                "Interval": h.interval_ms * 1_000_000,
                "Timeout": h.timeout_ms * 1_000_000,
                "Retries": h.retries,
                "StartPeriod": h.start_period_ms * 1_000_000,
            }),
        );
    }
    put("restart_policy", json!(s.restart.policy()));
    if let Some(t) = s.restart.max_retries() {
        put("restart_tries", json!(t));
    }
    if s.privileged {
        put("privileged", json!(true));
    }
    if let Some(p) = &s.pid {
        put("pidns", json!({ "nsmode": p }));
    }
    if let Some(i) = &s.ipc {
        put("ipcns", json!({ "nsmode": i }));
    }
    if !s.devices.is_empty() {
        let d: Vec<Value> = s.devices.iter().map(|d| json!({ "path": d })).collect();
        put("devices", json!(d));
    }
    if !s.sysctls.is_empty() {
        put("sysctl", json!(s.sysctls));
    }
    if !s.extra_hosts.is_empty() {
        put("hostadd", json!(s.extra_hosts));
    }
    if s.init {
        // libpod runs its configured init_path (catatonit) as PID 1.
        put("init", json!(true));
    }
    if let Some(n) = s.stop_signal {
        put("stop_signal", json!(n));
    }
    put("stop_timeout", json!(s.stop_timeout_s));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(service: &str) -> ContainerSpec {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sandbox.toml"),
            format!("[project]\nname = \"p\"\n\n[services.web]\nimage = \"localhost/base:latest\"\n{service}"),
        )
        .unwrap();
        crate::engine::first_spec_in(dir.path())
    }

    #[test]
    fn cpus_become_the_runners_quota_and_period() {
        // The same figures the runner and `render oci` write for the same key.
        let body = spec_json(&spec_of("cpus = 0.5\n"));
        assert_eq!(
            body["resource_limits"]["cpu"],
            json!({ "quota": 50_000, "period": 100_000 })
        );
        let tiny = spec_json(&spec_of("cpus = 0.001\n"));
        assert_eq!(tiny["resource_limits"]["cpu"]["quota"], 1_000);
    }
}
