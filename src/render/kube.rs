//! The plan as Kubernetes YAML: one Pod per service, and a PersistentVolumeClaim per
//! named volume. Runs under `podman kube play`. Host paths are absolute.

use serde_json::{json, Map, Value};

use super::Rendered;
use crate::config::model::{HealthTest, Ident, Mount, Restart, Userns};
use crate::healthcheck::HttpTarget;
use crate::plan::{Plan, ServicePlan};

/// Kubernetes names allow lower-case letters, digits and `-`.
pub fn dns_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

pub fn render(plan: &Plan) -> Rendered {
    let mut warnings = Vec::new();
    let mut docs: Vec<Value> = Vec::new();
    for v in &plan.volumes {
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": { "name": dns_name(&v.name), "labels": labels(&v.labels) },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": "1Gi" } },
            },
        }));
    }
    for s in plan.services.iter().filter(|s| !s.spec.is_native()) {
        docs.push(pod(plan, s, &mut warnings));
    }
    if let Some(w) = super::native_left_out("kube", plan) {
        warnings.push(w);
    }
    for n in &plan.networks {
        if n.internal {
            warnings.push(format!(
                "kube: network {} is internal; Pods have no equivalent of an internal network (use a NetworkPolicy)",
                n.key
            ));
        }
    }
    if !plan.workers.is_empty() {
        warnings.push(format!(
            "kube: workers ({}) run on devbox's native runner and have no Kubernetes equivalent",
            plan.workers.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut text = format!(
        "# Rendered by devbox (project {}). Run with: podman kube play FILE\n",
        plan.project
    );
    for d in docs {
        text.push_str("---\n");
        text.push_str(&super::yaml::to_string(&d));
    }
    Rendered { text, warnings }
}

/// Label values allow at most 63 of `[A-Za-z0-9._-]`; the config hash is 64 hex digits,
/// so it is shortened.
fn labels(l: &std::collections::BTreeMap<String, String>) -> Value {
    let m: Map<String, Value> = l
        .iter()
        .map(|(k, v)| {
            let v = if k == crate::plan::LABEL_HASH {
                v[..16.min(v.len())].to_owned()
            } else {
                v.clone()
            };
            (k.clone(), json!(v))
        })
        .collect();
    Value::Object(m)
}

/// A Kubernetes quantity for bytes: the largest binary unit that divides it.
pub fn quantity(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

fn pod(plan: &Plan, s: &ServicePlan, warnings: &mut Vec<String>) -> Value {
    let spec = &s.spec;
    let name = dns_name(&s.container_name);
    let mut c = Map::new();
    c.insert("name".into(), json!(dns_name(&s.name)));
    c.insert("image".into(), json!(s.image));
    if let Some(e) = &spec.entrypoint {
        c.insert("command".into(), json!(e));
    }
    if let Some(cmd) = &spec.command {
        c.insert("args".into(), json!(cmd));
    }
    if let Some(w) = &spec.workdir {
        c.insert("workingDir".into(), json!(w));
    }
    if !spec.env.is_empty() {
        let env: Vec<Value> = spec
            .env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        c.insert("env".into(), json!(env));
    }
    if !spec.env_files.is_empty() {
        warnings.push(format!(
            "kube: services.{}.env_file is not rendered; use a ConfigMap",
            s.name
        ));
    }
    if !spec.ports.is_empty() {
        warnings.push(format!(
            "kube: services.{} publishes with hostPort, which `podman kube play` needs and the Pod Security baseline profile (Host Ports) forbids in a cluster; drop `ports` there and use a Service",
            s.name
        ));
        let ports: Vec<Value> = spec
            .ports
            .iter()
            .map(|p| {
                json!({
                    "containerPort": p.container,
                    "hostPort": p.host,
                    "hostIP": p.host_ip.to_string(),
                    "protocol": p.protocol.as_str().to_ascii_uppercase(),
                })
            })
            .collect();
        c.insert("ports".into(), json!(ports));
    }

    let (uid, gid) = (spec.user.user().id(), spec.user.group().and_then(Ident::id));
    if uid.is_none() {
        warnings.push(format!(
            "kube: services.{}.user \"{}\" is a name; Kubernetes needs numeric ids, so runAsUser is not set",
            s.name, spec.user
        ));
    }
    let mut sc = Map::new();
    sc.insert(
        "allowPrivilegeEscalation".into(),
        json!(!spec.no_new_privileges && !spec.privileged),
    );
    sc.insert("readOnlyRootFilesystem".into(), json!(spec.read_only));
    let mut caps = Map::new();
    if !spec.cap_drop.is_empty() {
        caps.insert("drop".into(), json!(spec.cap_drop));
    }
    if !spec.cap_add.is_empty() {
        caps.insert("add".into(), json!(spec.cap_add));
    }
    if !caps.is_empty() {
        sc.insert("capabilities".into(), Value::Object(caps));
    }
    if spec.privileged {
        sc.insert("privileged".into(), json!(true));
    }
    if let Some(u) = uid {
        sc.insert("runAsUser".into(), json!(u));
        sc.insert("runAsNonRoot".into(), json!(u != 0));
    }
    if let Some(g) = gid {
        sc.insert("runAsGroup".into(), json!(g));
    }
    let unconfined = spec
        .security_opt
        .iter()
        .any(|o| o == "seccomp=unconfined" || o == "seccomp:unconfined");
    sc.insert(
        "seccompProfile".into(),
        json!({ "type": if unconfined { "Unconfined" } else { "RuntimeDefault" } }),
    );
    for o in &spec.security_opt {
        if !o.starts_with("no-new-privileges") && !o.starts_with("seccomp") {
            warnings.push(format!(
                "kube: services.{}.security_opt \"{o}\" is not rendered",
                s.name
            ));
        }
    }
    c.insert("securityContext".into(), Value::Object(sc));

    let mut limits = Map::new();
    if let Some(m) = spec.memory {
        limits.insert("memory".into(), json!(quantity(m)));
    }
    if let Some(cpus) = spec.cpus {
        limits.insert(
            "cpu".into(),
            json!(format!("{}m", (cpus * 1000.0).round() as u64)),
        );
    }
    if !limits.is_empty() {
        c.insert("resources".into(), json!({ "limits": limits }));
    }
    if spec.pids_limit.is_some() {
        warnings.push(format!(
            "kube: services.{}.pids_limit has no Pod field (it is a kubelet setting); not rendered",
            s.name
        ));
    }
    if !spec.ulimits.is_empty() {
        warnings.push(format!(
            "kube: services.{}.ulimits have no Pod field; not rendered",
            s.name
        ));
    }

    if let Some(h) = &spec.healthcheck {
        let mut probe = match &h.test {
            HealthTest::Cmd(argv) => json!({ "exec": { "command": argv } }),
            HealthTest::Tcp(port) => json!({ "tcpSocket": { "port": port } }),
            HealthTest::Http(url) => {
                let t = HttpTarget::parse(&crate::healthcheck::http_url(url, spec));
                json!({ "httpGet": { "path": t.path, "port": t.port } })
            }
        };
        let secs = |ms: u64| ms.div_ceil(1000).max(1);
        if let Value::Object(p) = &mut probe {
            p.insert("periodSeconds".into(), json!(secs(h.interval_ms)));
            p.insert("timeoutSeconds".into(), json!(secs(h.timeout_ms)));
            p.insert("failureThreshold".into(), json!(h.retries));
            if h.start_period_ms > 0 {
                p.insert("initialDelaySeconds".into(), json!(secs(h.start_period_ms)));
            }
        }
        c.insert("livenessProbe".into(), probe);
    }

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        let vname = format!("mount-{i}");
        match m {
            Mount::Bind { source, .. } => {
                warnings.push(format!(
                    "kube: services.{}.volumes[{i}] is a hostPath volume, which the Pod Security baseline profile (HostPath Volumes) forbids in a cluster",
                    s.name
                ));
                volumes.push(json!({
                "name": vname,
                "hostPath": { "path": source.display().to_string(), "type": "DirectoryOrCreate" },
                }));
            }
            Mount::Volume { name, .. } => {
                let claim = plan
                    .volume(name)
                    .map_or_else(|| name.clone(), |v| v.name.clone());
                volumes.push(json!({
                    "name": vname,
                    "persistentVolumeClaim": { "claimName": dns_name(&claim) },
                }))
            }
        }
        mounts.push(json!({ "name": vname, "mountPath": m.target(), "readOnly": m.read_only() }));
    }
    for (i, t) in spec.tmpfs.iter().enumerate() {
        let vname = format!("tmpfs-{i}");
        let mut ed = Map::new();
        ed.insert("medium".into(), json!("Memory"));
        if let Some(b) = t.size() {
            ed.insert("sizeLimit".into(), json!(quantity(b)));
        }
        volumes.push(json!({ "name": vname, "emptyDir": ed }));
        mounts.push(json!({ "name": vname, "mountPath": t.path }));
    }
    if !mounts.is_empty() {
        c.insert("volumeMounts".into(), json!(mounts));
    }

    let mut pod_spec = Map::new();
    pod_spec.insert("containers".into(), json!([Value::Object(c)]));
    pod_spec.insert(
        "restartPolicy".into(),
        json!(match spec.restart {
            Restart::No => "Never",
            Restart::OnFailure(_) => "OnFailure",
            Restart::Always | Restart::UnlessStopped => "Always",
        }),
    );
    if let Restart::OnFailure(Some(n)) = spec.restart {
        warnings.push(format!(
            "kube: services.{}.restart on-failure:{n} loses its retry limit",
            s.name
        ));
    }
    if !volumes.is_empty() {
        pod_spec.insert("volumes".into(), json!(volumes));
    }
    match spec.network_mode.as_deref() {
        Some("host") => {
            pod_spec.insert("hostNetwork".into(), json!(true));
        }
        Some(other) if other != "bridge" => {
            warnings.push(format!(
                "kube: services.{}.network_mode \"{other}\" is not rendered",
                s.name
            ));
        }
        _ => {}
    }
    if spec.pid.as_deref() == Some("host") {
        pod_spec.insert("hostPID".into(), json!(true));
    }
    if spec.ipc.as_deref() == Some("host") {
        pod_spec.insert("hostIPC".into(), json!(true));
    }
    if !spec.sysctls.is_empty() {
        let sysctls: Vec<Value> = spec
            .sysctls
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        pod_spec.insert("securityContext".into(), json!({ "sysctls": sysctls }));
    }
    if !spec.extra_hosts.is_empty() {
        let aliases: Vec<Value> = spec
            .extra_hosts
            .iter()
            .filter_map(|h| h.split_once([':', '=']))
            .map(|(host, ip)| json!({ "ip": ip.trim_matches(['[', ']']), "hostnames": [host] }))
            .collect();
        pod_spec.insert("hostAliases".into(), json!(aliases));
    }
    if let Some(g) = spec.stop_grace_s {
        pod_spec.insert("terminationGracePeriodSeconds".into(), json!(g));
    }
    if let Some(n) = spec.stop_signal {
        warnings.push(format!(
            "kube: services.{}.stop_signal {} has no Pod field (Kubernetes sends SIGTERM); not rendered",
            s.name,
            crate::config::model::signal_name(n)
        ));
    }
    if !spec.devices.is_empty() {
        warnings.push(format!(
            "kube: services.{}.devices have no Pod field; not rendered",
            s.name
        ));
    }
    if !spec.depends_on.is_empty() {
        warnings.push(format!(
            "kube: services.{}.depends_on has no Pod equivalent; Pods start without ordering",
            s.name
        ));
    }

    let mut annotations = Map::new();
    match &spec.userns {
        Some(Userns::KeepId { uid, gid }) => {
            let opts: Vec<String> = [
                uid.map(|u| format!("uid={u}")),
                gid.map(|g| format!("gid={g}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            let v = if opts.is_empty() {
                "keep-id".to_owned()
            } else {
                format!("keep-id:{}", opts.join(","))
            };
            annotations.insert("io.podman.annotations.userns".into(), json!(v));
            warnings.push(format!(
                "kube: services.{}.userns \"{v}\" is a Podman annotation; other runtimes ignore it (or run `podman kube play --userns={v}`)",
                s.name
            ));
        }
        Some(Userns::Host) | Some(Userns::Auto) | None => {}
    }
    if !spec.defaults_applied.is_empty() {
        annotations.insert(
            "devbox.defaults-applied".into(),
            json!(spec.defaults_applied.join("; ")),
        );
    }
    for n in &s.notes {
        warnings.push(format!("kube: services.{}: {n}", s.name));
    }

    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    meta.insert("labels".into(), labels(&s.labels));
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": pod_spec,
    })
}
