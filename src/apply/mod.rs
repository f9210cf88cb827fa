//! Apply: compare what the engine has (found by the `devbox.project` label) with the
//! plan, and do only what differs — build missing images, create missing networks and
//! volumes, create, recreate or start containers in dependency order, then wait until
//! every service is running and healthy.
//!
//! A container is kept when its `devbox.config-hash` label and image match the plan;
//! anything else about it is the engine's business. Never parses configuration.

pub mod context;
mod down;
mod images;
pub mod lock;
pub mod observe;
pub mod ports;
pub mod progress;
pub mod reconcile;
mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::model::{Condition, ImageRef, Mount, Userns};
use crate::data::{self, DataError};
use crate::engine::{
    container_spec, ContainerInfo, ContainerSpec, Engine, EngineError, EngineInfo, ErrorKind, Kind,
    NetworkSpec, ResourceInfo, VolumeSpec,
};
use crate::fsutil::PathError;
use crate::plan::names::{self, LABEL_DIR, LABEL_HASH, LABEL_STOP_GRACE};
use crate::plan::{NetworkPlan, Plan, ServicePlan};
pub use down::{down, DownOptions, DownReport, SERVICE_GRACE};
pub(crate) use images::context_skips;
pub use images::{build_images, image_tags};
pub use progress::Progress;
pub use reconcile::{reconcile, Reconciled, ServiceState};
pub use wait::{last_logs, wait_for};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("service `{service}` {problem}{}", logs_block(.logs))]
    Service {
        service: String,
        problem: String,
        logs: Vec<String>,
    },
    #[error("the container name `{name}` is taken by a container devbox did not create\nhint: remove or rename it (`{engine} rm {name}`), or set another [project] name")]
    NameTaken { name: String, engine: Kind },
    #[error("the network name `{name}` is taken by {} devbox did not create: {}\nhint: remove {} (`{engine} network rm {}`), or set another [project] name", if .ids.len() == 1 { "a network" } else { "networks" }, .ids.join(", "), if .ids.len() == 1 { "it" } else { "them" }, .ids.join(" "))]
    NetworkTaken {
        name: String,
        ids: Vec<String>,
        engine: Kind,
    },
    #[error("{}\nhint: stop what holds {}, or publish another host port in sandbox.toml; devbox changed nothing", busy_lines(.0), if .0.len() == 1 { "it" } else { "them" })]
    PortsInUse(Vec<ports::Busy>),
    #[error("project {project:?} is in use from another directory, {}\nhint: run devbox there, or pass --take-over to manage it from {} instead", .other.display(), .here.display())]
    OtherCheckout {
        project: String,
        other: PathBuf,
        here: PathBuf,
    },
}

fn busy_lines(busy: &[ports::Busy]) -> String {
    busy.iter()
        .map(|b| {
            format!(
                "service `{}` cannot publish {}: it is in use{}",
                b.service,
                b.addr,
                b.holder
                    .as_ref()
                    .map(|h| format!(" by {h}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn logs_block(logs: &[String]) -> String {
    if logs.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nlast log lines:");
    for l in logs {
        s.push_str("\n  | ");
        s.push_str(l);
    }
    s
}

/// Why `up` recreates a container whose hash label an older devbox computed
/// ([`crate::plan::hash::HASH_VERSION`]): its settings may be the same, but their hash
/// cannot be compared.
pub const FORMAT_CHANGED: &str = "devbox's configuration format changed";

#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Rebuild images even when their tag exists.
    pub build: bool,
    pub remove_orphans: bool,
    /// How long to wait for each service to become ready.
    pub timeout: Duration,
}

impl Default for UpOptions {
    fn default() -> Self {
        Self {
            build: false,
            remove_orphans: false,
            timeout: Duration::from_secs(120),
        }
    }
}

/// What `up` did, service by service.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpReport {
    pub built: Vec<String>,
    /// Time spent preparing contexts and building images.
    pub build_ms: u64,
    pub created: Vec<String>,
    pub recreated: Vec<String>,
    /// Why a service in `recreated` was, when it was not an edit of its settings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub reasons: BTreeMap<String, String>,
    pub started: Vec<String>,
    pub unchanged: Vec<String>,
    pub orphans: Vec<String>,
    pub removed_orphans: Vec<String>,
    pub notes: Vec<String>,
}

impl UpReport {
    /// Whether anything in the engine changed.
    pub fn changed(&self) -> bool {
        !(self.built.is_empty()
            && self.created.is_empty()
            && self.recreated.is_empty()
            && self.started.is_empty()
            && self.removed_orphans.is_empty())
    }
}

/// Whether the engine maps the service's user to the host user, so that bind-mounted
/// `.data` stays writable without devbox changing ownership: rootless Podman with
/// keep-id, and the native engine, whose sandboxes write as the caller (through an
/// idmapped mount when the caller is root).
fn keeps_host_user(info: &EngineInfo, s: &ServicePlan) -> bool {
    info.kind == Kind::Native
        || (info.kind == Kind::Podman
            && info.rootless
            && matches!(s.spec.userns, Some(Userns::KeepId { .. })))
}

/// On engines without keep-id, a service running as `uid:gid` cannot write the host's
/// `.data` directories (owned by the host user); make the declared ones its own. Each
/// directory is opened without following a symlink and changed through that descriptor,
/// so a directory swapped for a symlink meanwhile (by a container that mounts `.data`)
/// cannot make devbox change the owner of anything outside the project.
fn share_data_dirs(
    plan: &Plan,
    info: &EngineInfo,
    notes: &mut Vec<String>,
) -> Result<(), ApplyError> {
    let root = &plan.data.root;
    let mut dirs: Vec<(PathBuf, &str)> = vec![(root.clone(), "")];
    dirs.extend(
        plan.data
            .dirs
            .iter()
            .map(|d| (root.join(&d.path), d.path.as_str())),
    );
    for s in &plan.services {
        if keeps_host_user(info, s) {
            continue;
        }
        let Some((uid, gid)) = s.spec.user.ids() else {
            continue;
        };
        let mounted: Vec<&PathBuf> = s
            .spec
            .mounts
            .iter()
            .filter_map(|m| match m {
                Mount::Bind {
                    source, read_only, ..
                } if !read_only => Some(source),
                _ => None,
            })
            .collect();
        let targets: Vec<&(PathBuf, &str)> = dirs
            .iter()
            .filter(|(d, _)| mounted.iter().any(|m| d.starts_with(m)))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let mut changed = Vec::new();
        for (d, rel) in targets {
            // A symlink or a missing directory is left alone, as before `up` made it.
            let Ok(Some(dir)) = data::open_dir(&plan.data, std::path::Path::new(rel)) else {
                continue;
            };
            let meta = dir.stat()?;
            if meta.st_uid == uid && meta.st_gid == gid {
                continue;
            }
            if !nix::unistd::geteuid().is_root() {
                notes.push(format!(
                    "service `{}` runs as {uid}:{gid} without keep-id; {} is owned by {}:{} and devbox (not root) cannot change that",
                    s.name,
                    d.display(),
                    meta.st_uid,
                    meta.st_gid
                ));
                continue;
            }
            dir.chown(uid, gid)?;
            changed.push(d.strip_prefix(&plan.dir).unwrap_or(d).display().to_string());
        }
        if !changed.is_empty() {
            notes.push(format!(
                "{} has no keep-id for service `{}`: made {} owned by {uid}:{gid} so it can write them",
                match info.kind {
                    Kind::Docker => "docker",
                    Kind::Podman => "rootful podman",
                    Kind::Native => "the native engine",
                },
                s.name,
                changed.join(", ")
            ));
        }
    }
    Ok(())
}

/// The container devbox wants for a service on this engine. Its `devbox.config-hash`
/// label is a sha2 of everything sent to the engine — the plan's settings as this engine
/// takes them, the built image's content tag, env files' contents — so a container is
/// kept exactly when nothing it was made from has changed.
pub fn desired(
    plan: &Plan,
    s: &ServicePlan,
    info: &EngineInfo,
    tags: &BTreeMap<String, String>,
) -> Result<ContainerSpec, ApplyError> {
    let mut spec = container_spec(plan, s)?;
    if let ImageRef::Built(k) = &s.spec.image {
        if let Some(t) = tags.get(k) {
            spec.image = t.clone();
        }
    }
    if matches!(spec.userns, Some(Userns::KeepId { .. })) && !keeps_host_user(info, s) {
        // Only rootless Podman maps the host user; elsewhere the service runs as its
        // `user`, and share_data_dirs has made `.data` writable for it.
        spec.userns = None;
    }
    if info.kind == Kind::Podman && !spec.ports.is_empty() && spec.network_mode.is_none() {
        // Podman (CNI) forwards a published port to the container's address on every
        // network, in Go map order; the first rule wins, and an internal network's
        // address is unreachable from the host. Joining internal networks only after
        // start puts their rules last.
        let (late, now): (Vec<String>, Vec<String>) = s
            .networks
            .iter()
            .cloned()
            .partition(|k| plan.network(k).is_some_and(|n| n.internal));
        if !now.is_empty() {
            let name = |k: &String| {
                plan.network(k)
                    .map_or_else(|| k.clone(), |n| n.name.clone())
            };
            spec.networks = now.iter().map(name).collect();
            spec.late_networks = late.iter().map(name).collect();
        }
    }
    spec.labels
        .insert(LABEL_HASH.into(), crate::plan::hash::config_hash(&spec));
    // Derived from the (hashed) stop timeout, for `down`, which sees only containers.
    spec.labels
        .insert(LABEL_STOP_GRACE.into(), spec.stop_timeout_s.to_string());
    // Not hashed: moving a checkout is not a change of settings.
    spec.labels
        .insert(LABEL_DIR.into(), plan.dir.display().to_string());
    Ok(spec)
}

/// A container's grace period: its label, or the engines' 10 s for one made before it.
fn stop_grace(c: &ContainerInfo) -> u32 {
    c.labels
        .get(LABEL_STOP_GRACE)
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::config::model::DEFAULT_STOP_GRACE_S)
}

fn network_spec(n: &NetworkPlan) -> NetworkSpec {
    NetworkSpec {
        name: n.name.clone(),
        internal: n.internal,
        labels: n.labels.clone(),
    }
}

/// The first 12 characters of an engine id, as the engines' CLIs show them.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The network devbox uses for `n`, made when missing. A network of that name devbox did
/// not make for this project is refused, never joined. Docker accepts two networks of one
/// name (two `up`s making it at once), and then refuses the name as ambiguous: of
/// devbox's own the oldest is kept and the others are removed by id, so the name is
/// unique again before any container refers to it.
async fn ensure_network<E: Engine>(
    engine: &E,
    project: &str,
    n: &NetworkPlan,
    notes: &mut Vec<String>,
) -> Result<ResourceInfo, ApplyError> {
    let ours = |r: &ResourceInfo| names::labelled_for(&r.labels, project);
    let refuse_foreign = |found: &[ResourceInfo]| {
        let ids: Vec<String> = found
            .iter()
            .filter(|r| !ours(r))
            .map(|r| short(&r.id).to_owned())
            .collect();
        if ids.is_empty() {
            Ok(())
        } else {
            Err(ApplyError::NetworkTaken {
                name: n.name.clone(),
                ids,
                engine: engine.kind(),
            })
        }
    };
    let mut found = engine.networks_named(&n.name).await?;
    refuse_foreign(&found)?;
    if found.is_empty() {
        match engine.create_network(&network_spec(n)).await {
            // Made meanwhile by someone else: look again.
            Err(e) if e.kind == ErrorKind::Conflict => {}
            other => other?,
        }
        found = engine.networks_named(&n.name).await?;
        refuse_foreign(&found)?;
    }
    found.sort_by(|a, b| (created_key(&a.created), &a.id).cmp(&(created_key(&b.created), &b.id)));
    let mut found = found.into_iter();
    let Some(keep) = found.next() else {
        // Created, yet not listed (an engine that lists lazily): it is what was asked.
        return Ok(ResourceInfo {
            id: n.name.clone(),
            name: n.name.clone(),
            labels: n.labels.clone(),
            created: String::new(),
        });
    };
    let mut removed = Vec::new();
    for extra in found {
        match engine.remove_network(&extra.id).await {
            Ok(()) => removed.push(short(&extra.id).to_owned()),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !removed.is_empty() {
        notes.push(format!(
            "devbox had made network `{}` {} times; kept {} and removed {}",
            n.name,
            removed.len() + 1,
            short(&keep.id),
            removed.join(", ")
        ));
    }
    Ok(keep)
}

/// An engine's RFC 3339 creation time, made comparable as text: Go writes fractions with
/// their trailing zeros cut (`…:01.5Z`, `…:01.49Z`), which sort wrong as they are. The
/// fraction is padded to nine digits; what comes before and after it is kept.
fn created_key(created: &str) -> String {
    let Some(dot) = created.find('.') else {
        // No fraction: the same as `.000000000`, before the zone.
        let zone = created
            .char_indices()
            .skip_while(|&(i, _)| i <= created.find('T').unwrap_or(0))
            .find(|&(_, c)| c == 'Z' || c == '+' || c == '-')
            .map_or(created.len(), |(i, _)| i);
        return format!("{}.000000000{}", &created[..zone], &created[zone..]);
    };
    let digits = created[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    format!(
        "{}.{:0<9}{}",
        &created[..dot],
        &created[dot + 1..dot + 1 + digits],
        &created[dot + 1 + digits..]
    )
}

/// Whether two spellings name one directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Refuses to act on a project whose containers were made from another directory — a
/// second checkout with the same [project] name — unless `take_over`. A container without
/// the directory label predates it and is adopted (the label is set when it is next
/// recreated). Called before anything changes.
pub async fn check_checkout<E: Engine>(
    engine: &E,
    project: &str,
    dir: &Path,
    take_over: bool,
) -> Result<(), ApplyError> {
    if take_over {
        return Ok(());
    }
    for c in engine.list_containers(project).await? {
        if let Some(other) = c.labels.get(LABEL_DIR) {
            if !same_dir(Path::new(other), dir) {
                return Err(ApplyError::OtherCheckout {
                    project: project.to_owned(),
                    other: PathBuf::from(other),
                    here: dir.to_path_buf(),
                });
            }
        }
    }
    Ok(())
}

/// Brings the engine to the plan.
pub async fn up<E: Engine>(
    engine: &E,
    plan: &Plan,
    opts: &UpOptions,
    ui: &Progress,
) -> Result<UpReport, ApplyError> {
    let mut report = UpReport::default();
    let info = engine.info().await?;

    // 0. Every published host port can be bound (or is the project's own already), so a
    // port held elsewhere fails here, before anything is built or created.
    if engine.binds_host_ports() && plan.services.iter().any(|s| !s.spec.ports.is_empty()) {
        let own = engine.list_containers(&plan.project).await?;
        let busy = ports::busy(plan, &own);
        if !busy.is_empty() {
            return Err(ApplyError::PortsInUse(busy));
        }
    }

    // 1. The data tree.
    if !plan.data.dirs.is_empty() || !plan.data.files.is_empty() {
        let r = data::ensure(&plan.data)?;
        for p in r.leftovers {
            report.notes.push(format!(
                "removed {}, a temporary file left by a devbox that was killed while creating a file",
                p.display()
            ));
        }
        for (p, want, have) in r.mode_differs {
            report.notes.push(format!(
                "{} has mode {have:04o}, the file declares {want:04o}; devbox leaves existing data as it is",
                p.display()
            ));
        }
        share_data_dirs(plan, &info, &mut report.notes)?;
    }
    if info.rootless && info.cgroup_version == "1" {
        for s in &plan.services {
            let mut ignored = Vec::new();
            if s.spec.memory.is_some() {
                ignored.push("memory");
            }
            if s.spec.cpus.is_some() {
                ignored.push("cpus");
            }
            if s.spec.pids_limit.is_some() {
                ignored.push("pids_limit");
            }
            if !ignored.is_empty() {
                report.notes.push(format!(
                    "warning: rootless {} on cgroup v1 cannot enforce {} for service `{}`; they are set but not applied",
                    info.kind,
                    ignored.join(", "),
                    s.name
                ));
            }
        }
    }

    // 2. Images.
    let t = Instant::now();
    let tags = build_images(engine, plan, opts.build, ui, &mut report.built).await?;
    report.build_ms = t.elapsed().as_millis() as u64;

    // 3. Networks and volumes.
    let mut renewed_nets = BTreeSet::new();
    let mut net_ids = BTreeMap::new();
    for n in &plan.networks {
        let have = ensure_network(engine, &plan.project, n, &mut report.notes).await?;
        if have.labels.get(LABEL_HASH) != Some(&n.hash) {
            renewed_nets.insert(n.key.clone());
        }
        net_ids.insert(n.key.clone(), have.id);
    }
    let have_vols: BTreeSet<String> = engine
        .list_volumes(&plan.project)
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    for v in &plan.volumes {
        if !have_vols.contains(&v.name) {
            let made = engine
                .create_volume(&VolumeSpec {
                    name: v.name.clone(),
                    labels: v.labels.clone(),
                })
                .await;
            match made {
                Err(e) if e.kind == ErrorKind::Conflict => report.notes.push(format!(
                    "volume `{}` already exists and was not created by devbox; using it as it is (`down --volumes` and `reset` leave it alone)",
                    v.name
                )),
                other => other?,
            }
        }
    }

    // 4. Containers, in dependency order.
    let existing = engine.list_containers(&plan.project).await?;
    let mut by_service: BTreeMap<String, Vec<ContainerInfo>> = BTreeMap::new();
    for c in existing {
        if let Some(s) = c.service() {
            by_service.entry(s.to_owned()).or_default().push(c);
        }
    }
    for (name, cs) in &by_service {
        if plan.service(name).is_none() {
            for c in cs {
                report.orphans.push(c.name.clone());
                if opts.remove_orphans {
                    ui.step(name, "removing orphan");
                    engine.remove_container(&c.id).await?;
                    report.removed_orphans.push(c.name.clone());
                    ui.done(name, "removed (orphan)");
                }
            }
        }
    }
    // Networks whose settings changed are recreated once no container uses them.
    let mut must_recreate: BTreeSet<String> = BTreeSet::new();
    for s in &plan.services {
        if s.networks.iter().any(|n| renewed_nets.contains(n)) {
            must_recreate.insert(s.name.clone());
        }
    }
    if !renewed_nets.is_empty() {
        for s in &must_recreate {
            for c in by_service.remove(s).unwrap_or_default() {
                engine.remove_container(&c.id).await?;
                report.recreated.push(s.clone());
            }
        }
        for k in &renewed_nets {
            let n = plan
                .network(k)
                .expect("renewed networks come from the plan");
            let _ = engine.remove_network(&net_ids[k]).await;
            engine.create_network(&network_spec(n)).await?;
        }
    }

    let deadline = Instant::now() + opts.timeout;
    // 4a. Create what is missing or outdated (nothing starts yet), so creating later
    // services does not wait on earlier ones becoming healthy.
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut to_start: BTreeSet<String> = BTreeSet::new();
    let mut late: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &plan.services {
        report
            .notes
            .extend(s.notes.iter().map(|n| format!("service `{}` {n}", s.name)));
        let spec = desired(plan, s, &info, &tags)?;
        late.insert(s.name.clone(), spec.late_networks.clone());
        let mut found = by_service.remove(&s.name).unwrap_or_default();
        // More than one container for a service (an interrupted run): keep one.
        while found.len() > 1 {
            let extra = found.pop().expect("len > 1");
            engine.remove_container(&extra.id).await?;
        }
        let current = found.pop();
        // A container made from another directory is recreated, so that its label names
        // this one (the caller has refused unless the user asked to take over); one
        // without the label predates it and is adopted as it is.
        let up_to_date = current.as_ref().is_some_and(|c| {
            c.config_hash() == spec.labels.get(LABEL_HASH).map(String::as_str)
                && c.labels
                    .get(LABEL_DIR)
                    .is_none_or(|d| same_dir(Path::new(d), &plan.dir))
        });
        let id = match current {
            Some(c) if up_to_date => {
                if c.running() {
                    report.unchanged.push(s.name.clone());
                } else {
                    report.started.push(s.name.clone());
                    to_start.insert(s.name.clone());
                }
                c.id
            }
            other => {
                if let Some(c) = other {
                    if c.config_hash()
                        .is_some_and(|h| !crate::plan::hash::is_current(h))
                    {
                        report
                            .reasons
                            .insert(s.name.clone(), FORMAT_CHANGED.to_owned());
                    }
                    ui.step(&s.name, "recreating");
                    engine.stop_container(&c.id, stop_grace(&c)).await?;
                    engine.remove_container(&c.id).await?;
                    report.recreated.push(s.name.clone());
                } else if !report.recreated.contains(&s.name) {
                    report.created.push(s.name.clone());
                }
                ui.step(&s.name, "creating");
                let id = match engine.create_container(&spec).await {
                    Ok(id) => id,
                    Err(e) if e.kind == ErrorKind::Conflict => {
                        return Err(ApplyError::NameTaken {
                            name: spec.name.clone(),
                            engine: engine.kind(),
                        })
                    }
                    Err(e) => return Err(e.into()),
                };
                to_start.insert(s.name.clone());
                id
            }
        };
        ids.insert(s.name.clone(), id);
    }

    // 4b. Start in dependency order, each after its dependencies meet their condition;
    // on an engine that takes starts at once, every service whose dependencies have
    // started goes in the same wave.
    let mut waiting: Vec<&ServicePlan> = plan
        .services
        .iter()
        .filter(|s| to_start.contains(&s.name))
        .collect();
    let mut last_start: Option<Instant> = None;
    while !waiting.is_empty() {
        let wave: Vec<&ServicePlan> = if engine.starts_at_once() {
            let (ready, rest): (Vec<_>, Vec<_>) = waiting.iter().partition(|s| {
                s.spec
                    .depends_on
                    .keys()
                    .all(|d| !waiting.iter().any(|w| &w.name == d))
            });
            waiting = rest;
            ready
        } else {
            vec![waiting.remove(0)]
        };
        let starts = wave
            .into_iter()
            .map(|s| start_one(engine, plan, s, (&ids, &late), ui, deadline));
        for r in futures_util::future::join_all(starts).await {
            r?;
        }
        last_start = Some(Instant::now());
    }
    // A process that dies at once is still "running" for a moment after start; give the
    // last one started a short settle time before calling anything ready.
    if let Some(t) = last_start {
        if let Some(rest) = engine.settle_time().checked_sub(t.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }

    // 5. Ready: running, and healthy where there is a healthcheck.
    for s in &plan.services {
        let id = &ids[&s.name];
        let depended_to_complete = plan
            .services
            .iter()
            .any(|o| o.spec.depends_on.get(&s.name) == Some(&Condition::Completed));
        let cond = if depended_to_complete {
            Condition::Completed
        } else {
            Condition::Healthy
        };
        ui.step(
            &s.name,
            if s.spec.healthcheck.is_some() {
                "waiting for healthy"
            } else {
                "waiting for running"
            },
        );
        let c = wait_for(engine, s, id, cond, deadline).await?;
        let what = if report.created.contains(&s.name) {
            "created".to_owned()
        } else if report.recreated.contains(&s.name) {
            match report.reasons.get(&s.name) {
                Some(why) => format!("recreated: {why}"),
                None => "recreated".to_owned(),
            }
        } else if report.started.contains(&s.name) {
            "started".to_owned()
        } else {
            "up to date".to_owned()
        };
        let health = c
            .health
            .as_deref()
            .map(|h| format!(", {h}"))
            .unwrap_or_default();
        ui.done(&s.name, &format!("{what} ({}{health})", c.state));
    }
    ports::claim(plan);
    Ok(report)
}

/// Starts service `s` once its dependencies meet their conditions, then joins it to the
/// networks it joins late. `ids` and `late` are by service name.
async fn start_one<E: Engine>(
    engine: &E,
    plan: &Plan,
    s: &ServicePlan,
    (ids, late): (&BTreeMap<String, String>, &BTreeMap<String, Vec<String>>),
    ui: &Progress,
    deadline: Instant,
) -> Result<(), ApplyError> {
    for (dep, cond) in &s.spec.depends_on {
        if let (Some(d), Some(id)) = (plan.service(dep), ids.get(dep)) {
            ui.step(
                &s.name,
                &format!("waiting for {dep} ({cond:?})").to_lowercase(),
            );
            wait_for(engine, d, id, *cond, deadline).await?;
        }
    }
    ui.step(&s.name, "starting");
    let id = &ids[&s.name];
    if let Err(e) = engine.start_container(id).await {
        // A container that failed to start (a port taken meanwhile) stays `created` and,
        // on Podman, keeps its network address; remove it, so that the next `up` creates
        // it afresh.
        let _ = engine.remove_container(id).await;
        return Err(e.into());
    }
    for n in &late[&s.name] {
        // A restarted container is on the network already, with its rules in random
        // order again: leave and join.
        let _ = engine.disconnect_network(id, n).await;
        engine.connect_network(id, n, &s.name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
