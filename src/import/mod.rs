//! Compose files in devbox's terms: `devbox import` turns one into a `sandbox.toml`, and
//! `devbox audit --compose` audits one with devbox's rules, at the compose file's lines.
//!
//! One conversion serves both. In [`Mode::Import`] a knob the compose file leaves unset
//! gets devbox's hardened default (and a note says so); in [`Mode::Audit`] it gets what
//! compose would run with (root, a writable root filesystem, the engine's default
//! capabilities, no pids limit, ports on every address), so the audit sees the file as
//! compose runs it. Nothing is dropped silently: every setting devbox cannot express is a
//! note with its position.

pub mod yaml;

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use crate::config::diagnostic::KeyPath;
use yaml::{Loc, Node, V};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Import,
    Audit,
}

/// Something the user should know about the conversion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Note {
    /// The compose key, dotted (`services.web.container_name`).
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub text: String,
    /// The setting has no devbox equivalent and is not in the output.
    pub unmapped: bool,
}

/// A finding about a compose setting devbox cannot express at all (so no devbox key
/// carries it): `uts: host`, shared mount propagation.
#[derive(Debug, Clone)]
pub struct Extra {
    pub rule: &'static str,
    pub key: KeyPath,
    pub at: Loc,
    pub message: String,
}

pub struct Imported {
    pub project: String,
    pub toml: String,
    pub notes: Vec<Note>,
    /// In [`Mode::Audit`]: the services whose build context has no Containerfile, audited
    /// without their build (why, at the `build:` key).
    pub unbuilt: Vec<Note>,
    /// devbox key → where its setting is written in the compose file.
    pub locations: Vec<(KeyPath, Loc)>,
    pub extra: Vec<Extra>,
}

impl Imported {
    /// Where a devbox key's setting is in the compose file: the key itself, else the
    /// nearest enclosing key that was written there.
    pub fn locate(&self, key: &KeyPath) -> Option<Loc> {
        let mut k = key.0.clone();
        loop {
            if let Some((_, l)) = self.locations.iter().find(|(p, _)| p.0 == k) {
                return Some(*l);
            }
            k.pop()?;
        }
    }
}

#[derive(Debug)]
pub struct ImportError {
    pub at: Loc,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.at.line, self.at.column, self.message)
    }
}

/// Keys compose knows that devbox has no equivalent for, with why it matters.
const UNMAPPED: &[(&str, &str)] = &[
    ("container_name", "devbox names containers PROJECT-SERVICE"),
    ("hostname", "the container's hostname is its name"),
    ("domainname", "not supported"),
    ("stop_grace_period", "devbox stops with a 10 s grace period"),
    ("stop_signal", "devbox stops with SIGTERM"),
    ("init", "no init process is injected; use an image with one"),
    ("shm_size", "/dev/shm keeps the engine's default size"),
    ("platform", "images are built for the host's platform"),
    ("profiles", "every service is part of the environment"),
    ("logging", "logs stay with the engine's default driver"),
    ("dns", "the engine's DNS is used"),
    ("dns_search", "the engine's DNS is used"),
    ("dns_opt", "the engine's DNS is used"),
    (
        "links",
        "services reach each other by name on shared networks",
    ),
    ("external_links", "not supported"),
    (
        "secrets",
        "use a `[data.files]` secret mounted into the service",
    ),
    (
        "configs",
        "use a `[data.files]` file mounted into the service",
    ),
    ("group_add", "not supported"),
    ("tty", "not supported; `devbox exec` gives a terminal"),
    ("stdin_open", "not supported"),
    ("cgroup_parent", "not supported"),
    ("cgroup", "not supported"),
    ("runtime", "the engine's default runtime is used"),
    ("mac_address", "not supported"),
    ("oom_kill_disable", "not supported"),
    ("oom_score_adj", "not supported"),
    ("volumes_from", "mount the same named volumes instead"),
    ("annotations", "not supported"),
    ("scale", "one container per service"),
    ("pull_policy", "images are pulled when missing"),
    (
        "expose",
        "services reach each other on shared networks without it",
    ),
    ("memswap_limit", "swap follows the engine's default"),
    ("mem_reservation", "only limits are supported"),
    ("cpu_shares", "use `cpus`"),
    ("cpuset", "use `cpus`"),
    ("cpu_quota", "use `cpus`"),
    ("cpu_period", "use `cpus`"),
    ("blkio_config", "not supported"),
    ("storage_opt", "not supported"),
    ("isolation", "not supported"),
    ("attach", "not supported"),
    ("develop", "use `devbox watch`"),
    ("extends", "inline the extended service"),
    ("uts", "devbox never shares the host's UTS namespace"),
    ("userns_mode", "only keep-id, host and auto are supported"),
];

/// Settings devbox hardens by default: (key, devbox's default).
const HARDENED: &[(&str, &str)] = &[
    ("user", "user = \"65532:65532\""),
    ("read_only", "read_only = true"),
    ("cap_drop", "cap_drop = [\"ALL\"]"),
    ("no_new_privileges", "no_new_privileges = true"),
    ("pids_limit", "pids_limit = 256"),
];

struct Ctx<'a> {
    mode: Mode,
    project: String,
    dir: &'a Path,
    notes: Vec<Note>,
    unbuilt: Vec<Note>,
    locations: Vec<(KeyPath, Loc)>,
    extra: Vec<Extra>,
    images: Table,
    internal: BTreeSet<String>,
    declared_networks: BTreeSet<String>,
}

impl Ctx<'_> {
    fn note(&mut self, path: &str, at: Loc, text: impl Into<String>) {
        self.notes.push(Note {
            path: path.into(),
            line: at.line,
            column: at.column,
            text: text.into(),
            unmapped: false,
        });
    }

    fn unmapped(&mut self, path: &str, at: Loc, text: impl Into<String>) {
        self.notes.push(Note {
            path: path.into(),
            line: at.line,
            column: at.column,
            text: text.into(),
            unmapped: true,
        });
    }

    fn at(&mut self, key: KeyPath, at: Loc) {
        self.locations.push((key, at));
    }
}

/// Converts compose text. `project` overrides the file's `name`; the directory's name
/// is the last resort, as in compose.
pub fn convert(
    text: &str,
    dir: &Path,
    project: Option<&str>,
    mode: Mode,
) -> Result<Imported, ImportError> {
    let root = yaml::parse(text).map_err(|e| ImportError {
        at: e.at,
        message: e.message,
    })?;
    if !root.is_map() {
        return Err(ImportError {
            at: root.at,
            message: "a compose file is a mapping with `services`".into(),
        });
    }
    let Some(services) = root.get("services").filter(|s| s.is_map()) else {
        return Err(ImportError {
            at: root.at,
            message: "no `services` mapping: this is not a compose file".into(),
        });
    };
    let project = project
        .map(str::to_owned)
        .or_else(|| root.get("name").and_then(Node::text))
        .or_else(|| root.get("x-devbox-project").and_then(Node::text))
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "imported".into())
        });
    let project = sanitize_name(&project);
    let mut ctx = Ctx {
        mode,
        project: project.clone(),
        dir,
        notes: Vec::new(),
        unbuilt: Vec::new(),
        locations: Vec::new(),
        extra: Vec::new(),
        images: Table::new(),
        internal: BTreeSet::new(),
        declared_networks: BTreeSet::new(),
    };
    let mut doc = DocumentMut::new();
    let mut p = Table::new();
    p.insert("name", toml_edit::value(&project));
    if let Some(at) = root.key_at("name") {
        ctx.at(KeyPath::root().key("project").key("name"), at);
    }
    doc.insert("project", Item::Table(p));

    for (key, at, _) in root.entries() {
        match key.as_str() {
            "services" | "name" | "volumes" | "networks" => {}
            "version" => ctx.note("version", *at, "obsolete in compose; ignored"),
            k if k.starts_with("x-") => {}
            k => ctx.unmapped(k, *at, "top-level key devbox does not use"),
        }
    }

    let networks = networks(&mut ctx, root.get("networks"));
    let volumes = volumes(&mut ctx, root.get("volumes"));

    let mut svc_tables = Table::new();
    svc_tables.set_implicit(true);
    for (name, at, node) in services.entries() {
        let key = KeyPath::root().key("services").key(name.as_str());
        ctx.at(key.clone(), *at);
        let t = service(&mut ctx, name, *at, node);
        svc_tables.insert(name, Item::Table(t));
    }
    if !ctx.images.is_empty() {
        let mut images = std::mem::take(&mut ctx.images);
        images.set_implicit(true);
        doc.insert("images", Item::Table(images));
    }
    if let Some(v) = volumes {
        doc.insert("volumes", Item::Table(v));
    }
    if let Some(n) = networks {
        doc.insert("networks", Item::Table(n));
    }
    doc.insert("services", Item::Table(svc_tables));

    let mut toml = doc.to_string();
    if !toml.ends_with('\n') {
        toml.push('\n');
    }
    Ok(Imported {
        project,
        toml,
        notes: ctx.notes,
        unbuilt: ctx.unbuilt,
        locations: ctx.locations,
        extra: ctx.extra,
    })
}

/// A compose project name as devbox accepts it: lowercase letters, digits, `-`.
fn sanitize_name(s: &str) -> String {
    let n: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let n = n.trim_matches('-').to_owned();
    if n.is_empty() {
        "imported".into()
    } else {
        n
    }
}

/// The labels devbox sets itself (its rendered files carry them).
fn is_devbox_label(k: &str) -> bool {
    use crate::plan::{LABEL_HASH, LABEL_KIND, LABEL_PROJECT, LABEL_SERVICE};
    [LABEL_PROJECT, LABEL_SERVICE, LABEL_HASH, LABEL_KIND].contains(&k)
}

/// `labels` as a map or a list of `K=V`, without devbox's own.
fn labels(node: &Node) -> Vec<(String, String, Loc)> {
    match &node.v {
        V::Map(m) => m
            .iter()
            .filter(|(k, ..)| !is_devbox_label(k))
            .map(|(k, at, v)| (k.clone(), v.text().unwrap_or_default(), *at))
            .collect(),
        V::Seq(items) => items
            .iter()
            .filter_map(|i| {
                let t = i.text()?;
                let (k, v) = t.split_once('=').unwrap_or((t.as_str(), ""));
                (!is_devbox_label(k)).then(|| (k.to_owned(), v.to_owned(), i.at))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn string_table(pairs: &[(String, String, Loc)]) -> Table {
    let mut t = Table::new();
    for (k, v, _) in pairs {
        t.insert(k, toml_edit::value(v.as_str()));
    }
    t
}

fn networks(ctx: &mut Ctx, node: Option<&Node>) -> Option<Table> {
    let node = node?;
    let mut out = Table::new();
    out.set_implicit(true);
    for (name, at, n) in node.entries() {
        let path = format!("networks.{name}");
        let key = KeyPath::root().key("networks").key(name.as_str());
        ctx.at(key.clone(), *at);
        let mut t = Table::new();
        let mut only_devbox = true;
        for (k, kat, v) in n.entries() {
            match k.as_str() {
                "internal" => {
                    if v.bool() == Some(true) {
                        ctx.internal.insert(name.clone());
                        t.insert("internal", toml_edit::value(true));
                        ctx.at(key.key("internal"), *kat);
                    }
                    only_devbox = false;
                }
                "labels" => {
                    let l = labels(v);
                    if !l.is_empty() {
                        only_devbox = false;
                        t.insert("labels", Item::Table(string_table(&l)));
                    }
                }
                "name" | "driver" | "driver_opts" | "ipam" | "external" | "attachable"
                | "enable_ipv6" => {
                    only_devbox = false;
                    ctx.unmapped(
                        &format!("{path}.{k}"),
                        *kat,
                        "devbox creates its networks itself (bridge, named PROJECT_KEY)",
                    );
                }
                _ => {
                    only_devbox = false;
                    ctx.unmapped(&format!("{path}.{k}"), *kat, "unknown network key");
                }
            }
        }
        // Compose's implicit `default` network, as devbox renders it, is devbox's own.
        if name == "default" && only_devbox {
            continue;
        }
        ctx.declared_networks.insert(name.clone());
        out.insert(name, Item::Table(t));
    }
    (!out.is_empty()).then_some(out)
}

fn volumes(ctx: &mut Ctx, node: Option<&Node>) -> Option<Table> {
    let node = node?;
    let mut out = Table::new();
    out.set_implicit(true);
    for (name, at, n) in node.entries() {
        let path = format!("volumes.{name}");
        ctx.at(KeyPath::root().key("volumes").key(name.as_str()), *at);
        let mut t = Table::new();
        for (k, kat, v) in n.entries() {
            match k.as_str() {
                "labels" => {
                    let l = labels(v);
                    if !l.is_empty() {
                        t.insert("labels", Item::Table(string_table(&l)));
                    }
                }
                "external" => ctx.unmapped(
                    &format!("{path}.{k}"),
                    *kat,
                    "devbox creates the volume as PROJECT_NAME; copy the data over if it must be kept",
                ),
                _ => ctx.unmapped(
                    &format!("{path}.{k}"),
                    *kat,
                    "devbox creates local volumes with the engine's default driver",
                ),
            }
        }
        out.insert(name, Item::Table(t));
    }
    (!out.is_empty()).then_some(out)
}

/// `KEY=VALUE` lists or maps, as compose writes `environment`, `sysctls`, `build.args`.
fn pairs(node: &Node) -> Vec<(String, Option<String>, Loc)> {
    match &node.v {
        V::Map(m) => m
            .iter()
            .map(|(k, at, v)| (k.clone(), v.text(), *at))
            .collect(),
        V::Seq(items) => items
            .iter()
            .filter_map(|i| {
                let t = i.text()?;
                Some(match t.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned()), i.at),
                    None => (t, None, i.at),
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A command as compose reads it: a list as is, a string split like a shell would.
fn argv(node: &Node) -> Option<Vec<String>> {
    match &node.v {
        V::Seq(items) => Some(items.iter().filter_map(Node::text).collect()),
        _ => shlex::split(&node.text()?),
    }
}

fn str_array<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Array {
    let mut a = Array::new();
    for i in items {
        a.push(i.as_ref());
    }
    a
}

/// Resolves `..` and `.` without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses a devbox-rendered tcp healthcheck back to its port.
fn tcp_check_port(s: &str) -> Option<u16> {
    let port: u16 = s.rsplit_once("nc -z 127.0.0.1 ")?.1.trim().parse().ok()?;
    (crate::engine::tcp_check(port) == s).then_some(port)
}

/// Why a build context has no Containerfile devbox could build, or `None` when it has one.
fn missing_containerfile(dir: &Path, context: &str, dockerfile: Option<&str>) -> Option<String> {
    let ctx_dir = dir.join(normalize(Path::new(context)));
    match dockerfile {
        Some(d) => (!ctx_dir.join(d).is_file()).then(|| format!("`{d}` is not in `{context}`")),
        None => (!["Containerfile", "Dockerfile"]
            .iter()
            .any(|f| ctx_dir.join(f).is_file()))
        .then(|| format!("no Containerfile or Dockerfile in `{context}`")),
    }
}

fn service(ctx: &mut Ctx, name: &str, at: Loc, node: &Node) -> Table {
    let key = KeyPath::root().key("services").key(name);
    let path = format!("services.{name}");
    let mut t = Table::new();
    let mut set: BTreeSet<&str> = BTreeSet::new();
    let get = |k: &str| node.get(k);
    let kat = |k: &str| node.key_at(k).unwrap_or(at);

    // image / build
    let image_text = get("image").and_then(Node::text);
    if let Some(b) = get("build") {
        let (context, dockerfile, args, target) = match &b.v {
            V::Map(_) => {
                for (k, a, _) in b.entries() {
                    if !matches!(k.as_str(), "context" | "dockerfile" | "args" | "target") {
                        ctx.unmapped(
                            &format!("{path}.build.{k}"),
                            *a,
                            "devbox builds with context, containerfile, args and target only",
                        );
                    }
                }
                (
                    b.get("context").and_then(Node::text).unwrap_or(".".into()),
                    b.get("dockerfile").and_then(Node::text),
                    b.get("args").map(pairs).unwrap_or_default(),
                    b.get("target").and_then(Node::text),
                )
            }
            _ => (b.text().unwrap_or(".".into()), None, Vec::new(), None),
        };
        // A reviewer audits compose files from other people's repositories, often without
        // the build contexts: the service is audited as compose runs it, minus the build.
        let missing = (ctx.mode == Mode::Audit)
            .then(|| missing_containerfile(ctx.dir, &context, dockerfile.as_deref()))
            .flatten();
        if let Some(why) = missing {
            let at = kat("build");
            ctx.unbuilt.push(Note {
                path: format!("{path}.build"),
                line: at.line,
                column: at.column,
                text: why,
                unmapped: false,
            });
            t.insert(
                "image",
                toml_edit::value(format!("localhost/devbox-{}-{name}:unbuilt", ctx.project)),
            );
            ctx.at(key.key("image"), at);
        } else {
            // devbox's own rendering tags `localhost/devbox-PROJECT-KEY:HASH`.
            let own = format!("localhost/devbox-{}-", ctx.project);
            let image_key = image_text
                .as_deref()
                .and_then(|i| i.strip_prefix(own.as_str()))
                .and_then(|r| r.split_once(':'))
                .map(|(k, _)| k.to_owned())
                .unwrap_or_else(|| name.to_owned());
            if let (Some(i), false) = (
                &image_text,
                image_text
                    .as_deref()
                    .is_some_and(|i| i.starts_with(own.as_str())),
            ) {
                ctx.note(
                    &format!("{path}.image"),
                    kat("image"),
                    format!("built images are tagged by devbox (localhost/devbox-{}-{image_key}:HASH), not `{i}`", ctx.project),
                );
            }
            let ikey = KeyPath::root().key("images").key(image_key.as_str());
            ctx.at(ikey.clone(), kat("build"));
            if !ctx.images.contains_key(&image_key) {
                let mut it = Table::new();
                let ctx_path = normalize(Path::new(&context));
                let cf = dockerfile.map(|d| {
                    if Path::new(&d).is_absolute() {
                        PathBuf::from(d)
                    } else {
                        normalize(&ctx_path.join(d))
                    }
                });
                if let Some(cf) = cf {
                    let shown = if cf.as_os_str().is_empty() {
                        ".".into()
                    } else {
                        cf.display().to_string()
                    };
                    it.insert("containerfile", toml_edit::value(shown));
                }
                let shown_ctx = if ctx_path.as_os_str().is_empty() {
                    ".".into()
                } else {
                    ctx_path.display().to_string()
                };
                it.insert("context", toml_edit::value(shown_ctx));
                let args: Vec<_> = args
                    .into_iter()
                    .filter_map(|(k, v, a)| match v {
                        Some(v) => Some((k, v, a)),
                        None => {
                            ctx.unmapped(
                                &format!("{path}.build.args.{k}"),
                                a,
                                "a build argument taken from the host environment; give it a value",
                            );
                            None
                        }
                    })
                    .collect();
                if !args.is_empty() {
                    let mut at = InlineTable::new();
                    for (k, v, _) in &args {
                        at.insert(k, v.as_str().into());
                    }
                    it.insert("args", toml_edit::value(at));
                }
                if let Some(tg) = target {
                    it.insert("target", toml_edit::value(tg));
                }
                ctx.images.insert(&image_key, Item::Table(it));
            }
            t.insert("image", toml_edit::value(&image_key));
            ctx.at(key.key("image"), kat("build"));
        }
    } else if let Some(i) = image_text {
        // A bare name is a Docker Hub library image at `latest`, as compose reads it.
        let i = if i.contains(['/', ':', '@']) {
            i
        } else {
            let full = format!("docker.io/library/{i}:latest");
            ctx.note(
                &format!("{path}.image"),
                kat("image"),
                format!("`{i}` written out as {full}"),
            );
            full
        };
        t.insert("image", toml_edit::value(i));
        ctx.at(key.key("image"), kat("image"));
    }

    for (k, kloc, v) in node.entries() {
        let kloc = *kloc;
        let kp = key.key(k.as_str());
        let yp = format!("{path}.{k}");
        match k.as_str() {
            "image" | "build" => {}
            "command" | "entrypoint" => {
                if let Some(a) = argv(v) {
                    t.insert(k, toml_edit::value(str_array(&a)));
                    ctx.at(kp, kloc);
                } else {
                    ctx.unmapped(&yp, kloc, "could not split this command like a shell");
                }
            }
            "environment" => {
                let mut env = Table::new();
                for (ek, ev, eat) in pairs(v) {
                    match ev {
                        Some(val) => {
                            env.insert(&ek, toml_edit::value(val));
                            ctx.at(key.key("env").key(ek.as_str()), eat);
                        }
                        None => ctx.unmapped(
                            &format!("{yp}.{ek}"),
                            eat,
                            "takes its value from the host environment; devbox passes no host variables, give it a value or use env_file",
                        ),
                    }
                }
                if !env.is_empty() {
                    t.insert("env", Item::Table(env));
                    ctx.at(key.key("env"), kloc);
                }
            }
            "env_file" => {
                let files: Vec<String> = v
                    .items()
                    .into_iter()
                    .filter_map(|i| i.text().or_else(|| i.get("path").and_then(Node::text)))
                    .collect();
                t.insert("env_file", toml_edit::value(str_array(&files)));
                ctx.at(kp, kloc);
            }
            "user" => {
                if let Some(u) = v.text() {
                    t.insert("user", toml_edit::value(u));
                    set.insert("user");
                    ctx.at(kp, kloc);
                }
            }
            "userns_mode" => match v.text().as_deref() {
                Some(m) if m == "host" || m == "auto" || m.starts_with("keep-id") => {
                    t.insert("userns", toml_edit::value(m));
                    ctx.at(key.key("userns"), kloc);
                }
                _ => ctx.unmapped(&yp, kloc, "only keep-id, host and auto are supported"),
            },
            "working_dir" => {
                if let Some(w) = v.text() {
                    t.insert("workdir", toml_edit::value(w));
                    ctx.at(key.key("workdir"), kloc);
                }
            }
            "ports" => ports(ctx, &mut t, &kp, &yp, v),
            "volumes" => mounts(ctx, &mut t, &key, &yp, v),
            "tmpfs" => {
                append_tmpfs(&mut t, v.items().into_iter().filter_map(Node::text));
                ctx.at(kp, kloc);
            }
            "read_only" | "privileged" => {
                if let Some(b) = v.bool() {
                    t.insert(k, toml_edit::value(b));
                    set.insert(if k == "read_only" {
                        "read_only"
                    } else {
                        "privileged"
                    });
                    ctx.at(kp, kloc);
                }
            }
            "cap_drop" | "cap_add" => {
                let caps: Vec<String> = v.items().into_iter().filter_map(Node::text).collect();
                t.insert(k, toml_edit::value(str_array(&caps)));
                if k == "cap_drop" {
                    set.insert("cap_drop");
                }
                for (i, item) in v.items().into_iter().enumerate() {
                    ctx.at(kp.index(i), item.at);
                }
                ctx.at(kp, kloc);
            }
            "security_opt" => {
                let mut rest = Vec::new();
                for item in v.items() {
                    let Some(o) = item.text() else { continue };
                    if let Some(val) = o
                        .strip_prefix("no-new-privileges")
                        .map(|r| r.trim_start_matches([':', '=']))
                    {
                        let on = val.is_empty() || val == "true";
                        t.insert("no_new_privileges", toml_edit::value(on));
                        set.insert("no_new_privileges");
                        ctx.at(key.key("no_new_privileges"), item.at);
                        continue;
                    }
                    // compose writes `seccomp:unconfined`; devbox `seccomp=unconfined`.
                    let o = match o.split_once(':') {
                        Some((kind, val))
                            if matches!(kind, "seccomp" | "apparmor" | "label")
                                && !o.contains('=') =>
                        {
                            format!("{kind}={val}")
                        }
                        _ => o,
                    };
                    ctx.at(kp.index(rest.len()), item.at);
                    rest.push(o);
                }
                if !rest.is_empty() {
                    t.insert("security_opt", toml_edit::value(str_array(&rest)));
                    ctx.at(kp, kloc);
                }
            }
            "mem_limit" => {
                if let Some(val) = scalar_value(v) {
                    t.insert("memory", toml_edit::value(val));
                    ctx.at(key.key("memory"), kloc);
                }
            }
            "cpus" => {
                if let Some(c) = v.text().and_then(|s| s.parse::<f64>().ok()) {
                    t.insert("cpus", toml_edit::value(c));
                    ctx.at(kp, kloc);
                }
            }
            "pids_limit" => {
                if let Some(p) = v.text().and_then(|s| s.parse::<i64>().ok()) {
                    t.insert("pids_limit", toml_edit::value(if p <= 0 { -1 } else { p }));
                    set.insert("pids_limit");
                    ctx.at(kp, kloc);
                }
            }
            "deploy" => deploy(ctx, &mut t, &key, &yp, v, &mut set),
            "ulimits" => {
                let mut u = InlineTable::new();
                for (uk, uat, uv) in v.entries() {
                    let val: Value = match (&uv.v, uv.get("soft"), uv.get("hard")) {
                        (V::Int(n), ..) => (*n).into(),
                        (_, Some(s), Some(h)) => {
                            let mut it = InlineTable::new();
                            it.insert(
                                "soft",
                                s.text()
                                    .and_then(|s| s.parse::<i64>().ok())
                                    .unwrap_or(0)
                                    .into(),
                            );
                            it.insert(
                                "hard",
                                h.text()
                                    .and_then(|s| s.parse::<i64>().ok())
                                    .unwrap_or(0)
                                    .into(),
                            );
                            it.into()
                        }
                        _ => {
                            ctx.unmapped(
                                &format!("{yp}.{uk}"),
                                *uat,
                                "expected a number or soft/hard",
                            );
                            continue;
                        }
                    };
                    u.insert(uk, val);
                    ctx.at(kp.key(uk.as_str()), *uat);
                }
                if !u.is_empty() {
                    t.insert("ulimits", toml_edit::value(u));
                }
            }
            "networks" => service_networks(ctx, &mut t, node, &kp, &yp, v),
            "network_mode" => {
                if let Some(m) = v.text() {
                    t.insert("network_mode", toml_edit::value(m));
                    ctx.at(kp, kloc);
                }
            }
            "depends_on" => {
                let mut d = InlineTable::new();
                let entries: Vec<(String, Loc, Option<&Node>)> = match &v.v {
                    V::Seq(items) => items
                        .iter()
                        .filter_map(|i| Some((i.text()?, i.at, None)))
                        .collect(),
                    V::Map(m) => m.iter().map(|(k, a, n)| (k.clone(), *a, Some(n))).collect(),
                    _ => Vec::new(),
                };
                for (dep, dat, spec) in entries {
                    let cond = match spec
                        .and_then(|s| s.get("condition"))
                        .and_then(Node::text)
                        .as_deref()
                    {
                        Some("service_healthy") => "healthy",
                        Some("service_completed_successfully") => "completed",
                        _ => "started",
                    };
                    if let Some(s) = spec {
                        for (sk, sat, _) in s.entries() {
                            if sk != "condition" {
                                ctx.unmapped(
                                    &format!("{yp}.{dep}.{sk}"),
                                    *sat,
                                    "devbox supports the condition only",
                                );
                            }
                        }
                    }
                    d.insert(&dep, cond.into());
                    ctx.at(kp.key(dep.as_str()), dat);
                }
                if !d.is_empty() {
                    t.insert("depends_on", toml_edit::value(d));
                    ctx.at(kp, kloc);
                }
            }
            "healthcheck" => healthcheck(ctx, &mut t, &kp, &yp, kloc, v),
            "restart" => {
                if let Some(r) = v.text() {
                    t.insert("restart", toml_edit::value(r));
                    ctx.at(kp, kloc);
                }
            }
            "labels" => {
                let l = labels(v);
                for (lk, _, lat) in &l {
                    ctx.at(kp.key(lk.as_str()), *lat);
                }
                if !l.is_empty() {
                    t.insert("labels", Item::Table(string_table(&l)));
                }
            }
            "pid" | "ipc" => {
                if let Some(m) = v.text() {
                    t.insert(k, toml_edit::value(m));
                    ctx.at(kp, kloc);
                }
            }
            "devices" => {
                let mut devs = Vec::new();
                for item in v.items() {
                    match item.text() {
                        Some(d) => {
                            ctx.at(kp.index(devs.len()), item.at);
                            devs.push(d);
                        }
                        None => ctx.unmapped(
                            &yp,
                            item.at,
                            "only the short `HOST[:CONTAINER[:PERMS]]` form is supported",
                        ),
                    }
                }
                if !devs.is_empty() {
                    t.insert("devices", toml_edit::value(str_array(&devs)));
                    ctx.at(kp, kloc);
                }
            }
            "sysctls" => {
                let mut s = Table::new();
                for (sk, sv, sat) in pairs(v) {
                    let val = sv.unwrap_or_default();
                    match val.parse::<i64>() {
                        Ok(n) => s.insert(&sk, toml_edit::value(n)),
                        Err(_) => s.insert(&sk, toml_edit::value(val)),
                    };
                    ctx.at(kp.key(sk.as_str()), sat);
                }
                if !s.is_empty() {
                    t.insert("sysctls", Item::Table(s));
                }
            }
            "extra_hosts" => {
                let hosts: Vec<String> = match &v.v {
                    V::Map(m) => m
                        .iter()
                        .map(|(h, _, ip)| format!("{h}:{}", ip.text().unwrap_or_default()))
                        .collect(),
                    _ => v
                        .items()
                        .into_iter()
                        .filter_map(Node::text)
                        .map(|h| match h.split_once('=') {
                            Some((n, ip)) => format!("{n}:{ip}"),
                            None => h,
                        })
                        .collect(),
                };
                t.insert("extra_hosts", toml_edit::value(str_array(&hosts)));
                ctx.at(kp, kloc);
            }
            "uts" => {
                if v.text().as_deref() == Some("host") {
                    ctx.extra.push(Extra {
                        rule: "DBX036",
                        key: key.key("uts"),
                        at: kloc,
                        message: format!("service {name} shares the host's UTS namespace"),
                    });
                }
                ctx.unmapped(&yp, kloc, "devbox never shares the host's UTS namespace");
            }
            k if k.starts_with("x-") => {}
            other => match UNMAPPED.iter().find(|(u, _)| *u == other) {
                Some((_, why)) => ctx.unmapped(&yp, kloc, *why),
                None => ctx.unmapped(&yp, kloc, "unknown compose key"),
            },
        }
    }

    // devbox renders `http = "/path"` as a URL on the first container port; the short
    // form is the same check.
    let first_port = t
        .get("ports")
        .and_then(Item::as_array)
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .and_then(|p| p.rsplit(':').next())
        .map(|c| c.split('/').next().unwrap_or(c).to_owned());
    if let Some(h) = t.get_mut("healthcheck").and_then(Item::as_inline_table_mut) {
        let prefix = format!(
            "http://127.0.0.1:{}/",
            first_port.as_deref().unwrap_or("80")
        );
        let short = h
            .get("http")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix(prefix.as_str()))
            .map(|rest| format!("/{rest}"));
        if let Some(path) = short {
            h.insert("http", path.into());
        }
    }

    match ctx.mode {
        Mode::Audit => {
            // What compose runs with when the file says nothing.
            if !set.contains("user") {
                t.insert("user", toml_edit::value("0:0"));
            }
            if !set.contains("read_only") {
                t.insert("read_only", toml_edit::value(false));
            }
            if !set.contains("cap_drop") {
                t.insert("cap_drop", toml_edit::value(Array::new()));
            }
            if !set.contains("no_new_privileges") {
                t.insert("no_new_privileges", toml_edit::value(false));
            }
            if !set.contains("pids_limit") {
                t.insert("pids_limit", toml_edit::value(-1));
            }
        }
        Mode::Import => {
            let hardened: Vec<String> = HARDENED
                .iter()
                .filter(|(k, _)| !set.contains(k))
                .map(|(_, d)| (*d).to_owned())
                .collect();
            if !hardened.is_empty() {
                ctx.note(
                    &path,
                    at,
                    format!(
                        "devbox's hardened defaults apply (compose ran it without them): {}; set a key if the service needs otherwise",
                        hardened.join(", ")
                    ),
                );
            }
        }
    }
    t
}

fn scalar_value(v: &Node) -> Option<Value> {
    match &v.v {
        V::Int(i) => Some((*i).into()),
        _ => v.text().map(Into::into),
    }
}

fn deploy(
    ctx: &mut Ctx,
    t: &mut Table,
    key: &KeyPath,
    yp: &str,
    v: &Node,
    set: &mut BTreeSet<&str>,
) {
    for (k, kat, n) in v.entries() {
        let yk = format!("{yp}.deploy.{k}");
        match k.as_str() {
            "resources" => {
                for (rk, rat, rn) in n.entries() {
                    if rk != "limits" {
                        ctx.unmapped(&format!("{yk}.{rk}"), *rat, "only limits are supported");
                        continue;
                    }
                    for (lk, lat, ln) in rn.entries() {
                        match lk.as_str() {
                            "memory" => {
                                if let Some(val) = scalar_value(ln) {
                                    t.insert("memory", toml_edit::value(val));
                                    ctx.at(key.key("memory"), *lat);
                                }
                            }
                            "cpus" => {
                                if let Some(c) = ln.text().and_then(|s| s.parse::<f64>().ok()) {
                                    t.insert("cpus", toml_edit::value(c));
                                    ctx.at(key.key("cpus"), *lat);
                                }
                            }
                            "pids" => {
                                if let Some(p) = ln.text().and_then(|s| s.parse::<i64>().ok()) {
                                    t.insert(
                                        "pids_limit",
                                        toml_edit::value(if p <= 0 { -1 } else { p }),
                                    );
                                    set.insert("pids_limit");
                                    ctx.at(key.key("pids_limit"), *lat);
                                }
                            }
                            _ => ctx.unmapped(&format!("{yk}.limits.{lk}"), *lat, "not supported"),
                        }
                    }
                }
            }
            "restart_policy" => {
                let cond = n.get("condition").and_then(Node::text);
                let max = n.get("max_attempts").and_then(Node::text);
                let r = match (cond.as_deref(), max) {
                    (Some("none"), _) => "no".to_owned(),
                    (Some("on-failure"), Some(m)) => format!("on-failure:{m}"),
                    (Some("on-failure"), None) => "on-failure".to_owned(),
                    _ => "always".to_owned(),
                };
                t.insert("restart", toml_edit::value(r));
                ctx.at(key.key("restart"), *kat);
                for (pk, pat, _) in n.entries() {
                    if pk != "condition" && pk != "max_attempts" {
                        ctx.unmapped(&format!("{yk}.{pk}"), *pat, "not supported");
                    }
                }
            }
            _ => ctx.unmapped(
                &yk,
                *kat,
                "swarm deployment settings do not apply to a dev environment",
            ),
        }
    }
}

fn ports(ctx: &mut Ctx, t: &mut Table, kp: &KeyPath, yp: &str, v: &Node) {
    let mut out = Array::new();
    let mut defaulted = false;
    for item in v.items() {
        let (ip, host, container, proto) = match &item.v {
            V::Map(_) => {
                let Some(target) = item.get("target").and_then(Node::text) else {
                    ctx.unmapped(yp, item.at, "a port without `target`");
                    continue;
                };
                (
                    item.get("host_ip").and_then(Node::text),
                    item.get("published").and_then(Node::text),
                    target,
                    item.get("protocol").and_then(Node::text),
                )
            }
            _ => {
                let Some(s) = item.text() else { continue };
                let (body, proto) = match s.rsplit_once('/') {
                    Some((b, p)) => (b.to_owned(), Some(p.to_owned())),
                    None => (s.clone(), None),
                };
                // [ip:]host:container, container; IPv6 addresses in brackets.
                let (ip, rest) = if let Some(r) = body.strip_prefix('[') {
                    match r.split_once("]:") {
                        Some((ip, rest)) => (Some(ip.to_owned()), rest.to_owned()),
                        None => (None, body.clone()),
                    }
                } else {
                    let parts: Vec<&str> = body.split(':').collect();
                    if parts.len() == 3 {
                        (
                            Some(parts[0].to_owned()),
                            format!("{}:{}", parts[1], parts[2]),
                        )
                    } else {
                        (None, body.clone())
                    }
                };
                let (host, container) = match rest.split_once(':') {
                    Some((h, c)) => (Some(h.to_owned()), c.to_owned()),
                    None => (None, rest),
                };
                (ip, host.filter(|h| !h.is_empty()), container, proto)
            }
        };
        if container.contains('-') || host.as_deref().is_some_and(|h| h.contains('-')) {
            ctx.unmapped(yp, item.at, "port ranges are not supported; list each port");
            continue;
        }
        let ip = match ip.filter(|i| !i.is_empty()) {
            Some(i) => i,
            None if ctx.mode == Mode::Audit => "0.0.0.0".to_owned(),
            None => {
                defaulted = true;
                "127.0.0.1".to_owned()
            }
        };
        if host.is_none() && ctx.mode == Mode::Import {
            ctx.note(
                yp,
                item.at,
                format!("compose publishes container port {container} on a random host port; devbox publishes it on host port {container}"),
            );
        }
        let host = host.unwrap_or_else(|| container.clone());
        let ip_shown = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip
        };
        let proto = proto.map(|p| format!("/{p}")).unwrap_or_default();
        ctx.at(kp.index(out.len()), item.at);
        out.push(format!("{ip_shown}:{host}:{container}{proto}"));
    }
    if defaulted {
        ctx.note(
            yp,
            v.at,
            "ports without an address now bind 127.0.0.1 only (compose binds every address); write 0.0.0.0 to publish on the network",
        );
    }
    if !out.is_empty() {
        t.insert("ports", toml_edit::value(out));
    }
}

fn mounts(ctx: &mut Ctx, t: &mut Table, key: &KeyPath, yp: &str, v: &Node) {
    let kp = key.key("volumes");
    let mut out = Array::new();
    let mut tmpfs = Vec::new();
    for item in v.items() {
        let (kind, source, target, ro, propagation, extra_opts) = match &item.v {
            V::Map(_) => {
                let kind = item
                    .get("type")
                    .and_then(Node::text)
                    .unwrap_or("volume".into());
                for (mk, mat, _) in item.entries() {
                    if !matches!(
                        mk.as_str(),
                        "type" | "source" | "target" | "read_only" | "bind" | "tmpfs" | "volume"
                    ) {
                        ctx.unmapped(&format!("{yp}.{mk}"), *mat, "not supported");
                    }
                }
                let prop = item
                    .get("bind")
                    .and_then(|b| b.get("propagation"))
                    .and_then(Node::text);
                if let Some(sz) = item
                    .get("tmpfs")
                    .and_then(|b| b.get("size"))
                    .and_then(Node::text)
                {
                    if kind == "tmpfs" {
                        if let Some(tg) = item.get("target").and_then(Node::text) {
                            tmpfs.push(format!("{tg}:size={sz}"));
                        }
                        continue;
                    }
                }
                (
                    kind,
                    item.get("source").and_then(Node::text),
                    item.get("target").and_then(Node::text).unwrap_or_default(),
                    item.get("read_only").and_then(Node::bool).unwrap_or(false),
                    prop,
                    Vec::new(),
                )
            }
            _ => {
                let Some(s) = item.text() else { continue };
                let parts: Vec<&str> = s.splitn(3, ':').collect();
                match parts.as_slice() {
                    [target] => (
                        "volume".into(),
                        None,
                        (*target).to_owned(),
                        false,
                        None,
                        Vec::new(),
                    ),
                    [src, target] | [src, target, _] => {
                        let opts: Vec<String> = parts
                            .get(2)
                            .map(|o| o.split(',').map(str::to_owned).collect())
                            .unwrap_or_default();
                        let ro = opts.iter().any(|o| o == "ro");
                        let prop = opts
                            .iter()
                            .find(|o| {
                                matches!(
                                    o.as_str(),
                                    "shared"
                                        | "rshared"
                                        | "slave"
                                        | "rslave"
                                        | "private"
                                        | "rprivate"
                                )
                            })
                            .cloned();
                        let extra: Vec<String> = opts
                            .iter()
                            .filter(|o| {
                                !matches!(o.as_str(), "ro" | "rw") && Some(*o) != prop.as_ref()
                            })
                            .cloned()
                            .collect();
                        let kind = if src.starts_with(['.', '/', '~']) {
                            "bind"
                        } else {
                            "volume"
                        };
                        (
                            kind.into(),
                            Some((*src).to_owned()),
                            (*target).to_owned(),
                            ro,
                            prop,
                            extra,
                        )
                    }
                    _ => continue,
                }
            }
        };
        if kind == "tmpfs" {
            tmpfs.push(target);
            continue;
        }
        for o in &extra_opts {
            ctx.unmapped(yp, item.at, format!("mount option `{o}` is not supported (devbox does not relabel or change consistency)"));
        }
        if let Some(p) = &propagation {
            if p == "shared" || p == "rshared" {
                ctx.extra.push(Extra {
                    rule: "DBX037",
                    key: kp.index(out.len()),
                    at: item.at,
                    message: format!("{target} is mounted with {p} propagation"),
                });
            }
            if p != "private" && p != "rprivate" {
                ctx.unmapped(
                    yp,
                    item.at,
                    format!("mount propagation `{p}` is not supported; devbox mounts are private"),
                );
            }
        }
        let Some(source) = source else {
            ctx.unmapped(
                yp,
                item.at,
                format!("anonymous volume at {target}: declare a named volume, or use tmpfs"),
            );
            continue;
        };
        let entry: Value = if kind == "bind" {
            let (src, outside) = bind_source(ctx.dir, &source);
            if outside || ro {
                let mut it = InlineTable::new();
                it.insert("source", src.as_str().into());
                it.insert("target", target.as_str().into());
                if ro {
                    it.insert("read_only", true.into());
                }
                if outside {
                    it.insert("allow_outside", true.into());
                }
                it.into()
            } else {
                format!("{src}:{target}").into()
            }
        } else {
            format!("{source}:{target}{}", if ro { ":ro" } else { "" }).into()
        };
        ctx.at(kp.index(out.len()), item.at);
        out.push(entry);
    }
    if !out.is_empty() {
        t.insert("volumes", toml_edit::value(out));
        if let Some(at) = v.items().first().map(|n| n.at) {
            ctx.at(kp, at);
        }
    }
    if !tmpfs.is_empty() {
        append_tmpfs(t, tmpfs);
    }
}

/// Adds to the service's `tmpfs` list: compose has both a `tmpfs` key and tmpfs volumes.
fn append_tmpfs(t: &mut Table, paths: impl IntoIterator<Item = String>) {
    let mut arr = t
        .get("tmpfs")
        .and_then(Item::as_array)
        .cloned()
        .unwrap_or_default();
    for p in paths {
        arr.push(p);
    }
    t.insert("tmpfs", toml_edit::value(arr));
}

/// A bind source as devbox writes it, and whether it leaves the project.
fn bind_source(dir: &Path, src: &str) -> (String, bool) {
    let expanded = match src.strip_prefix('~') {
        Some(rest) => std::env::var("HOME").unwrap_or_default() + rest,
        None => src.to_owned(),
    };
    let p = Path::new(&expanded);
    if p.is_absolute() {
        let inside = normalize(p).starts_with(normalize(dir));
        return (expanded.clone(), !inside);
    }
    let n = normalize(p);
    let outside = n.starts_with("..");
    let shown = if outside || n.as_os_str().is_empty() {
        expanded.clone()
    } else {
        format!("./{}", n.display())
    };
    (shown, outside)
}

fn service_networks(ctx: &mut Ctx, t: &mut Table, node: &Node, kp: &KeyPath, yp: &str, v: &Node) {
    let names: Vec<(String, Loc)> = match &v.v {
        V::Seq(items) => items
            .iter()
            .filter_map(|i| Some((i.text()?, i.at)))
            .collect(),
        V::Map(m) => {
            for (n, _, spec) in m {
                for (sk, sat, _) in spec.entries() {
                    ctx.unmapped(&format!("{yp}.{n}.{sk}"), *sat, "services reach each other by service name; aliases and fixed addresses are not supported");
                }
            }
            m.iter().map(|(n, a, _)| (n.clone(), *a)).collect()
        }
        _ => Vec::new(),
    };
    let publishes = node.get("ports").is_some_and(|p| !p.items().is_empty());
    let others: Vec<&(String, Loc)> = names.iter().filter(|(n, _)| n != "default").collect();
    let has_default = others.len() != names.len();
    // devbox joins `default` by itself when a service names no network, or publishes
    // ports but names only internal ones.
    let implied =
        others.is_empty() || (publishes && others.iter().all(|(n, _)| ctx.internal.contains(n)));
    let keep_default = has_default && !implied && !ctx.declared_networks.contains("default");
    let mut list: Vec<String> = Vec::new();
    for (n, a) in &names {
        if n == "default" && !keep_default && !ctx.declared_networks.contains("default") {
            continue;
        }
        ctx.at(kp.index(list.len()), *a);
        list.push(n.clone());
    }
    if keep_default {
        // Compose's implicit network, made explicit for devbox.
        ctx.declared_networks.insert("default".into());
        ctx.note(
            yp,
            v.at,
            "compose's implicit `default` network is declared as [networks.default]",
        );
    }
    if !list.is_empty() {
        t.insert("networks", toml_edit::value(str_array(&list)));
    }
}

fn healthcheck(ctx: &mut Ctx, t: &mut Table, kp: &KeyPath, yp: &str, kloc: Loc, v: &Node) {
    if v.get("disable").and_then(Node::bool) == Some(true) {
        ctx.note(yp, kloc, "healthcheck disabled: the service has none");
        return;
    }
    let mut h = InlineTable::new();
    let test: Vec<String> = match v.get("test").map(|n| &n.v) {
        Some(V::Seq(items)) => items.iter().filter_map(Node::text).collect(),
        Some(_) => vec![
            "CMD-SHELL".into(),
            v.get("test").and_then(Node::text).unwrap_or_default(),
        ],
        None => Vec::new(),
    };
    match test.first().map(String::as_str) {
        Some("NONE") => {
            ctx.note(yp, kloc, "healthcheck NONE: the service has none");
            return;
        }
        Some("CMD") => {
            h.insert("cmd", Value::Array(str_array(&test[1..])));
        }
        Some("CMD-SHELL") => {
            let s = test[1..].join(" ");
            if let Some(port) = tcp_check_port(&s) {
                h.insert("tcp", i64::from(port).into());
            } else if let Some(url) = s
                .strip_prefix("wget -q -O /dev/null ")
                .filter(|u| !u.contains(' '))
            {
                h.insert("http", url.into());
            } else {
                h.insert("cmd", s.into());
            }
        }
        _ => {
            ctx.unmapped(
                yp,
                kloc,
                "a healthcheck without a test uses the image's; devbox needs the test written out",
            );
            return;
        }
    }
    for (k, kat, n) in v.entries() {
        match k.as_str() {
            "interval" | "timeout" | "start_period" => {
                if let Some(d) = n.text() {
                    h.insert(k, d.into());
                }
            }
            "retries" => {
                if let Some(r) = n.text().and_then(|s| s.parse::<i64>().ok()) {
                    h.insert("retries", r.into());
                }
            }
            "test" | "disable" => {}
            other => ctx.unmapped(&format!("{yp}.{other}"), *kat, "not supported"),
        }
    }
    t.insert("healthcheck", toml_edit::value(h));
    ctx.at(kp.clone(), kloc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default_to_loopback_on_import_and_to_every_address_in_audit() {
        let y = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"8080:80\"\n      - 127.0.0.1:9000:9000\n";
        let i = convert(y, Path::new("/p"), Some("p"), Mode::Import).unwrap();
        assert!(
            i.toml
                .contains(r#"ports = ["127.0.0.1:8080:80", "127.0.0.1:9000:9000"]"#),
            "{}",
            i.toml
        );
        assert!(i
            .notes
            .iter()
            .any(|n| n.text.contains("now bind 127.0.0.1 only")));
        let a = convert(y, Path::new("/p"), Some("p"), Mode::Audit).unwrap();
        assert!(
            a.toml
                .contains(r#"ports = ["0.0.0.0:8080:80", "127.0.0.1:9000:9000"]"#),
            "{}",
            a.toml
        );
        let k = KeyPath::root()
            .key("services")
            .key("web")
            .key("ports")
            .index(0);
        assert_eq!(a.locate(&k), Some(Loc { line: 5, column: 9 }));
        // A key that is not in the file points at its service.
        let k = KeyPath::root().key("services").key("web").key("read_only");
        assert_eq!(a.locate(&k), Some(Loc { line: 2, column: 3 }));
    }

    #[test]
    fn nothing_is_dropped_silently() {
        let y = "services:\n  web:\n    image: nginx:1.27\n    container_name: w\n    uts: host\n    environment:\n      - HOME\n    volumes:\n      - /data\n      - ./x:/x:rshared\n";
        let i = convert(y, Path::new("/p"), Some("p"), Mode::Audit).unwrap();
        let unmapped: Vec<&str> = i
            .notes
            .iter()
            .filter(|n| n.unmapped)
            .map(|n| n.path.as_str())
            .collect();
        assert_eq!(
            unmapped,
            [
                "services.web.container_name",
                "services.web.uts",
                "services.web.environment.HOME",
                "services.web.volumes",
                "services.web.volumes",
            ],
            "{:#?}",
            i.notes
        );
        let rules: Vec<&str> = i.extra.iter().map(|e| e.rule).collect();
        assert_eq!(rules, ["DBX036", "DBX037"]);
    }

    #[test]
    fn devbox_tcp_healthchecks_come_back_as_tcp() {
        let s = crate::engine::tcp_check(7777);
        assert_eq!(tcp_check_port(&s), Some(7777));
        assert_eq!(tcp_check_port("nc -z 127.0.0.1 7777"), None);
    }
}
