//! The plan as a Compose file (the Compose Specification, as read by docker-compose and
//! podman-compose). Relative paths are relative to the project directory: write the
//! output next to `sandbox.toml`.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::Rendered;
use crate::config::model::{Condition, HealthTest, Mount, Userns};
use crate::plan::{Plan, ServicePlan};

pub fn render(plan: &Plan) -> Rendered {
    let mut warnings = Vec::new();
    let mut services = Map::new();
    for s in plan.services.iter().filter(|s| !s.spec.is_native()) {
        services.insert(s.name.clone(), service(plan, s, &mut warnings));
    }
    if let Some(w) = super::native_left_out("compose", plan) {
        warnings.push(w);
    }
    let mut doc = Map::new();
    if services.is_empty() {
        // docker-compose 1.x reads a version-less file with no services as the legacy
        // v1 format (where `services` would be a service); a version key prevents that.
        doc.insert("version".into(), json!("3.8"));
    }
    doc.insert("services".into(), Value::Object(services));
    // The project's name, for `devbox import` (docker-compose 1.x rejects `name`).
    doc.insert("x-devbox-project".into(), json!(plan.project));
    if !plan.volumes.is_empty() {
        let v: Map<String, Value> = plan
            .volumes
            .iter()
            .map(|v| (v.key.clone(), json!({ "labels": v.labels })))
            .collect();
        doc.insert("volumes".into(), Value::Object(v));
    }
    if !plan.networks.is_empty() {
        let n: Map<String, Value> = plan
            .networks
            .iter()
            .map(|n| {
                let mut m = Map::new();
                if n.internal {
                    m.insert("internal".into(), json!(true));
                }
                m.insert("labels".into(), json!(n.labels));
                (n.key.clone(), Value::Object(m))
            })
            .collect();
        doc.insert("networks".into(), Value::Object(n));
    }
    if !plan.workers.is_empty() {
        warnings.push(format!(
            "compose: workers ({}) run on devbox's native runner and have no compose equivalent",
            plan.workers.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !plan.data.dirs.is_empty() || !plan.data.files.is_empty() {
        warnings.push(format!(
            "compose: the [data] layout under {} (modes, secrets) is created by `devbox up`, not by compose",
            plan.data.root_rel
        ));
    }

    let mut text = String::new();
    text.push_str(&format!(
        "# Rendered by devbox from {} (project {}).\n# Run with: docker-compose -p {} -f FILE up   (write FILE next to sandbox.toml)\n",
        plan.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        plan.project,
        plan.project
    ));
    for s in plan.services.iter().filter(|s| !s.spec.is_native()) {
        if !s.spec.defaults_applied.is_empty() {
            text.push_str(&format!(
                "# {}: hardened defaults applied: {}\n",
                s.name,
                s.spec.defaults_applied.join(", ")
            ));
        }
    }
    text.push_str(&super::yaml::to_string(&Value::Object(doc)));
    Rendered { text, warnings }
}

/// A path as compose should see it: `./rel` inside the project, absolute outside.
pub fn project_relative(plan: &Plan, p: &Path) -> String {
    match p.strip_prefix(&plan.dir) {
        Ok(r) if r.as_os_str().is_empty() => ".".into(),
        Ok(r) => format!("./{}", r.display()),
        Err(_) => p.display().to_string(),
    }
}

fn service(plan: &Plan, s: &ServicePlan, warnings: &mut Vec<String>) -> Value {
    let spec = &s.spec;
    let mut m = Map::new();
    m.insert("image".into(), json!(s.image));
    if let crate::config::model::ImageRef::Built(key) = &spec.image {
        if let Some(img) = plan.image(key) {
            let mut b = Map::new();
            b.insert(
                "context".into(),
                json!(project_relative(plan, &img.spec.context)),
            );
            let cf = img
                .spec
                .containerfile
                .strip_prefix(&img.spec.context)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| project_relative(plan, &img.spec.containerfile));
            b.insert("dockerfile".into(), json!(cf));
            if !img.spec.args.is_empty() {
                b.insert("args".into(), json!(img.spec.args));
            }
            if let Some(t) = &img.spec.target {
                b.insert("target".into(), json!(t));
            }
            m.insert("build".into(), Value::Object(b));
        }
    }
    if let Some(e) = &spec.entrypoint {
        m.insert("entrypoint".into(), json!(e));
    }
    if let Some(c) = &spec.command {
        m.insert("command".into(), json!(c));
    }
    if !spec.env.is_empty() {
        m.insert("environment".into(), json!(spec.env));
    }
    if !spec.env_files.is_empty() {
        let files: Vec<String> = spec
            .env_files
            .iter()
            .map(|f| project_relative(plan, f))
            .collect();
        m.insert("env_file".into(), json!(files));
    }
    m.insert("user".into(), json!(spec.user));
    match &spec.userns {
        Some(Userns::KeepId { uid, gid }) => {
            let mut v = "keep-id".to_owned();
            let opts: Vec<String> = [
                uid.map(|u| format!("uid={u}")),
                gid.map(|g| format!("gid={g}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !opts.is_empty() {
                v = format!("keep-id:{}", opts.join(","));
            }
            m.insert("userns_mode".into(), json!(v));
            warnings.push(format!(
                "compose: services.{}.userns_mode \"{v}\" works with podman-compose only; Docker rejects it",
                s.name
            ));
        }
        Some(Userns::Host) => {
            m.insert("userns_mode".into(), json!("host"));
        }
        Some(Userns::Auto) => {
            m.insert("userns_mode".into(), json!("auto"));
        }
        None => {}
    }
    if let Some(w) = &spec.workdir {
        m.insert("working_dir".into(), json!(w));
    }
    if !spec.ports.is_empty() {
        let ports: Vec<String> = spec
            .ports
            .iter()
            .map(|p| {
                let ip = match p.host_ip {
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    v4 => v4.to_string(),
                };
                format!("{ip}:{}:{}/{}", p.host, p.container, p.protocol.as_str())
            })
            .collect();
        m.insert("ports".into(), json!(ports));
    }
    if !spec.mounts.is_empty() {
        let vols: Vec<String> = spec
            .mounts
            .iter()
            .map(|mt| {
                let (src, ro) = match mt {
                    Mount::Bind {
                        source, read_only, ..
                    } => (project_relative(plan, source), *read_only),
                    Mount::Volume {
                        name, read_only, ..
                    } => (name.clone(), *read_only),
                };
                format!("{src}:{}{}", mt.target(), if ro { ":ro" } else { "" })
            })
            .collect();
        m.insert("volumes".into(), json!(vols));
    }
    m.insert("read_only".into(), json!(spec.read_only));
    if !spec.tmpfs.is_empty() {
        let t: Vec<String> = spec
            .tmpfs
            .iter()
            .map(|t| {
                if t.options.is_empty() {
                    t.path.clone()
                } else {
                    let o: Vec<&str> = t.option_texts().collect();
                    format!("{}:{}", t.path, o.join(","))
                }
            })
            .collect();
        m.insert("tmpfs".into(), json!(t));
    }
    if !spec.cap_drop.is_empty() {
        m.insert("cap_drop".into(), json!(spec.cap_drop));
    }
    if !spec.cap_add.is_empty() {
        m.insert("cap_add".into(), json!(spec.cap_add));
    }
    let mut sec = Vec::new();
    if spec.no_new_privileges
        && !spec
            .security_opt
            .iter()
            .any(|o| o.starts_with("no-new-privileges"))
    {
        sec.push("no-new-privileges:true".to_owned());
    }
    sec.extend(spec.security_opt.iter().cloned());
    if !sec.is_empty() {
        m.insert("security_opt".into(), json!(sec));
    }
    if let Some(mem) = spec.memory {
        m.insert("mem_limit".into(), json!(mem));
    }
    if let Some(c) = spec.cpus {
        m.insert("cpus".into(), json!(c));
    }
    if let Some(p) = spec.pids_limit {
        m.insert("pids_limit".into(), json!(p));
    }
    if !spec.ulimits.is_empty() {
        let u: Map<String, Value> = spec
            .ulimits
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "soft": v.soft, "hard": v.hard })))
            .collect();
        m.insert("ulimits".into(), Value::Object(u));
    }
    if let Some(nm) = &spec.network_mode {
        m.insert("network_mode".into(), json!(nm));
    } else {
        m.insert("networks".into(), json!(s.networks));
    }
    if !spec.depends_on.is_empty() {
        let d: Map<String, Value> = spec
            .depends_on
            .iter()
            .map(|(k, c)| {
                let cond = match c {
                    Condition::Started => "service_started",
                    Condition::Healthy => "service_healthy",
                    Condition::Completed => "service_completed_successfully",
                };
                (k.clone(), json!({ "condition": cond }))
            })
            .collect();
        m.insert("depends_on".into(), Value::Object(d));
    }
    if let Some(h) = &spec.healthcheck {
        let test = crate::healthcheck::command(&h.test, spec);
        match &h.test {
            HealthTest::Cmd(_) => {}
            HealthTest::Tcp(port) => warnings.push(format!(
                "compose: services.{}.healthcheck tcp = {port} rendered as a shell test (listening socket in /proc/net/tcp, else `nc -z`), which needs sh and grep in the image",
                s.name
            )),
            HealthTest::Http(_) => warnings.push(format!(
                "compose: services.{}.healthcheck http rendered as `{}`, which needs wget in the image",
                s.name, test[1]
            )),
        }
        m.insert(
            "healthcheck".into(),
            json!({
                "test": test,
                "interval": format!("{}ms", h.interval_ms),
                "timeout": format!("{}ms", h.timeout_ms),
                "retries": h.retries,
                "start_period": format!("{}ms", h.start_period_ms),
            }),
        );
    }
    m.insert("restart".into(), json!(spec.restart.to_string()));
    let labels: std::collections::BTreeMap<_, _> = s
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != crate::plan::LABEL_HASH)
        .collect();
    m.insert("labels".into(), json!(labels));
    if spec.privileged {
        m.insert("privileged".into(), json!(true));
    }
    if let Some(p) = &spec.pid {
        m.insert("pid".into(), json!(p));
    }
    if let Some(i) = &spec.ipc {
        m.insert("ipc".into(), json!(i));
    }
    if !spec.devices.is_empty() {
        m.insert("devices".into(), json!(spec.devices));
    }
    if !spec.sysctls.is_empty() {
        m.insert("sysctls".into(), json!(spec.sysctls));
    }
    if !spec.extra_hosts.is_empty() {
        m.insert("extra_hosts".into(), json!(spec.extra_hosts));
    }
    if spec.init {
        m.insert("init".into(), json!(true));
    }
    if let Some(n) = spec.stop_signal {
        m.insert(
            "stop_signal".into(),
            json!(crate::config::model::signal_name(n)),
        );
    }
    if let Some(g) = spec.stop_grace_s {
        m.insert("stop_grace_period".into(), json!(format!("{g}s")));
    }
    for n in &s.notes {
        warnings.push(format!("compose: services.{}: {n}", s.name));
    }
    Value::Object(m)
}
