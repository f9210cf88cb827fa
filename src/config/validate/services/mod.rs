//! `[services]`: each service resolved group of keys by group of keys (one file each),
//! then the checks across services: published ports and dependencies.

mod deps;
mod env;
mod healthcheck;
mod host;
mod lifecycle;
mod mounts;
mod native;
mod network;
mod ports;
mod resources;
mod security;
mod waivers;

use std::collections::{BTreeMap, BTreeSet};

use super::ctx::check_name;
use super::values::{env_map, shell_words};
use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::model::{ImageRef, Service};
use crate::config::raw::RawService;

pub use resources::DEFAULT_PIDS_LIMIT;
pub use security::{CAPABILITIES, DEFAULT_USER};

pub(super) fn resolve_services(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawService>,
    repaired: &BTreeSet<String>,
) -> BTreeMap<String, Service> {
    let mut services = BTreeMap::new();
    for (n, raw) in raw {
        let p = KeyPath::root().key("services").key(n);
        check_name(cx, &p, n, "service name", false);
        let repaired = repaired.contains(n);
        services.insert(n.clone(), resolve_service(cx, &p, raw, repaired));
    }
    ports::check_port_clashes(cx, &services);
    deps::check_healthy_deps(cx, &services);
    deps::check_cycles(cx, &services);
    services
}

/// One service. The steps keep one order: `defaults_applied` lists the defaults in it,
/// and diagnostics at the same place are shown in it.
fn resolve_service(cx: &mut Ctx, p: &KeyPath, raw: &RawService, repaired: bool) -> Service {
    let mut defaults = Vec::new();
    let image = image_ref(cx, p, raw);
    let policy = native::confinement(cx, p, raw, image == ImageRef::Host, repaired);
    let (user, userns) = security::identity(cx, p, raw, &mut defaults);
    if image == ImageRef::Host {
        native::check_user(cx, p, raw, &user);
    }
    let (env, env_files) = env::environment(cx, p, raw);
    let ports = ports::service_ports(cx, p, raw);
    let fs = mounts::filesystem(cx, p, raw, &mut defaults);
    let privileges = security::privileges(cx, p, raw, &mut defaults);
    let resources = resources::resources(cx, p, raw, &mut defaults);
    let networks = network::networks(cx, p, raw);
    let depends_on = deps::depends_on(cx, p, raw);
    let healthcheck = raw
        .healthcheck
        .as_ref()
        .and_then(|h| healthcheck::resolve_healthcheck(cx, &p.key("healthcheck"), h));
    let restart = lifecycle::restart(cx, p, raw);
    host::check_host_sharing(cx, p, raw);
    let (stop_signal, stop_grace_s) = lifecycle::stop(cx, p, raw);
    lifecycle::check_process(cx, p, raw);
    let waivers = waivers::waivers(cx, &p.key("audit").key("allow"), raw.audit.as_ref());

    Service {
        image,
        command: raw.command.as_ref().map(shell_words),
        entrypoint: raw.entrypoint.as_ref().map(shell_words),
        env,
        env_files,
        user,
        userns,
        workdir: raw.workdir.clone(),
        ports,
        mounts: fs.mounts,
        read_only: fs.read_only,
        tmpfs: fs.tmpfs,
        cap_drop: privileges.cap_drop,
        cap_add: privileges.cap_add,
        no_new_privileges: privileges.no_new_privileges,
        security_opt: raw.security_opt.clone(),
        memory: resources.memory,
        cpus: raw.cpus,
        pids_limit: resources.pids_limit,
        ulimits: resources.ulimits,
        networks,
        depends_on,
        healthcheck,
        restart,
        labels: raw.labels.clone(),
        privileged: raw.privileged.unwrap_or(false),
        network_mode: raw.network_mode.clone(),
        pid: raw.pid.clone(),
        ipc: raw.ipc.clone(),
        devices: raw.devices.clone(),
        sysctls: env_map(&raw.sysctls),
        extra_hosts: raw.extra_hosts.clone(),
        stop_signal,
        stop_grace_s,
        init: raw.init.unwrap_or(true),
        waivers,
        policy,
        defaults_applied: defaults,
    }
}

/// `image`: a key of `[images]`, a reference, or none (a native service).
fn image_ref(cx: &mut Ctx, p: &KeyPath, raw: &RawService) -> ImageRef {
    match raw.image.as_deref() {
        None => ImageRef::Host,
        Some(img) if cx.names.images.contains(img) => ImageRef::Built(img.to_owned()),
        Some(img) if img.contains(['/', ':', '@']) => ImageRef::Reference(img.to_owned()),
        Some(img) => {
            let d = Diagnostic::error(p.key("image"), format!("unknown image `{img}`")).expected(
                "a key of [images], or an image reference containing `/` or `:` (\"localhost/app:1\")",
            );
            cx.err(
                d.suggest(img, cx.names.images.iter().map(String::as_str))
                    .or_hint(format!(
                        "define [images.{img}] with a containerfile, or write a full reference"
                    )),
            );
            ImageRef::Reference(img.to_owned())
        }
    }
}
