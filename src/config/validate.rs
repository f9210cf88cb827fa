//! Semantic validation: turns the raw model into the resolved one, collecting every
//! problem (not just the first) as a diagnostic with its key path.
//!
//! Reads the file system only to check that referenced paths exist and do not escape
//! the project through symlinks; never writes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use super::diagnostic::{Diagnostic, KeyPath, Seg};
use super::forms::{
    self, DependsOn, EnvValue, ExpectExit, PortSpec, SignalValue, SizeValue, StringOrList,
    VolumeSpec,
};
use super::model::*;
use super::raw::*;
use super::source::Point;

/// A diagnostic waiting to be located in a file.
pub type Pending = (Diagnostic, Point);

/// Names of every entry that exists in the file, even ones whose body failed to parse,
/// so that references to them are not reported as unknown.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pub images: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub networks: BTreeSet<String>,
    pub services: BTreeSet<String>,
}

/// Default user for services that set none: the conventional "nonroot" uid.
pub const DEFAULT_USER: &str = "65532:65532";
pub const DEFAULT_PIDS_LIMIT: u32 = 256;

pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

struct Ctx<'a> {
    dir: &'a Path,
    names: &'a Names,
    out: Vec<Pending>,
    /// For each service, the index in the file of each resolved port.
    port_index: BTreeMap<String, Vec<usize>>,
    /// The project directory with symlinks resolved, computed once.
    canon_dir: Option<PathBuf>,
    /// Regular expressions already compiled once and found valid.
    valid_regexes: BTreeSet<String>,
}

impl Ctx<'_> {
    fn err(&mut self, d: Diagnostic) {
        self.out.push((d, Point::Value));
    }

    fn err_key(&mut self, d: Diagnostic) {
        self.out.push((d, Point::Key));
    }
}

/// A raw file whose entries were deserialized one by one: entries that failed are
/// absent here but present in `names`.
#[derive(Debug, Default)]
pub struct Parsed {
    pub project: Option<RawProject>,
    pub data: Option<RawData>,
    pub images: BTreeMap<String, RawImage>,
    pub volumes: BTreeMap<String, RawVolume>,
    pub networks: BTreeMap<String, RawNetwork>,
    pub services: BTreeMap<String, RawService>,
    /// Services parsed only once their bad keys were removed: one of those may have been
    /// a misspelt `image` or `command`, so their absence is not reported as well.
    pub repaired_services: BTreeSet<String>,
    pub probes: Vec<Option<RawProbe>>,
    pub workers: BTreeMap<String, RawWorker>,
}

/// Validates and resolves. Returns the config (when there were no errors) and all
/// diagnostics, warnings included.
///
/// `workers_only` (for `devbox run`) leaves the engine as written: workers run on
/// devbox's runner whatever the engine, so the services' kinds need not agree with it.
pub fn resolve(
    parsed: &Parsed,
    names: &Names,
    file: &Path,
    dir: &Path,
    workers_only: bool,
) -> (Option<Config>, Vec<Pending>) {
    let mut cx = Ctx {
        dir,
        names,
        out: Vec::new(),
        port_index: BTreeMap::new(),
        canon_dir: dir.canonicalize().ok(),
        valid_regexes: BTreeSet::new(),
    };
    let root = KeyPath::root();

    let raw_project = parsed.project.clone().unwrap_or_default();
    let name = match &raw_project.name {
        Some(n) => {
            check_name(
                &mut cx,
                &root.key("project").key("name"),
                n,
                "project name",
                true,
            );
            n.clone()
        }
        None => default_project_name(dir),
    };
    let mut project = Project {
        name,
        engine: raw_project.engine.unwrap_or_default(),
        engine_reason: None,
    };

    let data = resolve_data(&mut cx, parsed.data.clone().unwrap_or_default());

    let mut images = BTreeMap::new();
    for (n, raw) in &parsed.images {
        let p = root.key("images").key(n);
        check_name(&mut cx, &p, n, "image name", false);
        if let Some(img) = resolve_image(&mut cx, &p, raw) {
            images.insert(n.clone(), img);
        }
    }
    let mut volumes = BTreeMap::new();
    for (n, raw) in &parsed.volumes {
        check_name(
            &mut cx,
            &root.key("volumes").key(n),
            n,
            "volume name",
            false,
        );
        volumes.insert(
            n.clone(),
            Volume {
                labels: raw.labels.clone(),
            },
        );
    }
    let mut networks = BTreeMap::new();
    for (n, raw) in &parsed.networks {
        check_name(
            &mut cx,
            &root.key("networks").key(n),
            n,
            "network name",
            false,
        );
        networks.insert(
            n.clone(),
            Network {
                internal: raw.internal,
                labels: raw.labels.clone(),
            },
        );
    }
    let mut services = BTreeMap::new();
    for (n, raw) in &parsed.services {
        let p = root.key("services").key(n);
        check_name(&mut cx, &p, n, "service name", false);
        let repaired = parsed.repaired_services.contains(n);
        services.insert(n.clone(), resolve_service(&mut cx, &p, raw, repaired));
    }
    check_port_clashes(&mut cx, &services);
    check_healthy_deps(&mut cx, &services);
    check_cycles(&mut cx, &services);
    if !workers_only {
        resolve_engine(&mut cx, &mut project, &services);
    }

    let mut probes = Vec::new();
    for (i, raw) in parsed.probes.iter().enumerate() {
        if let Some(raw) = raw {
            if let Some(p) = resolve_probe(&mut cx, &root.key("probes").index(i), raw) {
                probes.push(p);
            }
        }
    }
    let mut seen = BTreeMap::new();
    for (i, p) in probes.iter().enumerate() {
        if let Some(first) = seen.insert(p.name.clone(), i) {
            cx.err(
                Diagnostic::error(
                    root.key("probes").index(i).key("name"),
                    format!("duplicate probe name `{}`", p.name),
                )
                .hint(format!(
                    "probe {} already uses this name; reports need names to tell probes apart",
                    first + 1
                )),
            );
        }
    }

    let mut workers = BTreeMap::new();
    for (n, raw) in &parsed.workers {
        let p = root.key("workers").key(n);
        check_name(&mut cx, &p, n, "worker name", false);
        workers.insert(n.clone(), resolve_worker(&mut cx, &p, raw));
    }

    let has_errors = cx
        .out
        .iter()
        .any(|(d, _)| d.severity == super::diagnostic::Severity::Error);
    let config = (!has_errors).then(|| Config {
        file: file.to_path_buf(),
        dir: dir.to_path_buf(),
        project,
        data,
        images,
        volumes,
        networks,
        services,
        probes,
        workers,
    });
    (config, cx.out)
}

/// One line of `devbox up`'s output when `auto` picks the native engine.
pub const NATIVE_REASON: &str = "no service has an image: running natively (engine native)";

/// Checks that the services suit the engine, and picks one for `auto`: native when every
/// service is native, else a container engine (chosen when connecting). A project runs
/// on one engine, so native and image services do not mix.
fn resolve_engine(cx: &mut Ctx, project: &mut Project, services: &BTreeMap<String, Service>) {
    let (native, contained): (Vec<&String>, Vec<&String>) =
        services.keys().partition(|n| services[*n].is_native());
    let svc = |n: &str| KeyPath::root().key("services").key(n);
    match project.engine {
        EngineChoice::Native => {
            for n in contained {
                cx.err(
                    Diagnostic::error(
                        svc(n).key("image"),
                        format!("service `{n}` has an image, but the engine is `native`"),
                    )
                    .hint("the native engine runs host programs: choose a container engine (engine = \"auto\", \"podman\" or \"docker\" in [project], or --engine), or remove `image` and give the service a `command` to run it natively"),
                );
            }
        }
        EngineChoice::Podman | EngineChoice::Docker => {
            let e = project.engine.as_str();
            for n in native {
                cx.err_key(
                    Diagnostic::error(
                        svc(n),
                        format!("service `{n}` has no image, but the engine is `{e}`"),
                    )
                    .hint(format!("{e} runs containers: give the service an `image`, or choose engine = \"native\" (or \"auto\") to run host programs")),
                );
            }
        }
        EngineChoice::Auto if contained.is_empty() && !native.is_empty() => {
            project.engine = EngineChoice::Native;
            project.engine_reason = Some(NATIVE_REASON.to_owned());
        }
        EngineChoice::Auto if !native.is_empty() => {
            // The fewer are the odd ones out; on a tie, the native ones.
            if native.len() <= contained.len() {
                let (n, other) = (native[0], contained[0]);
                cx.err_key(
                    Diagnostic::error(
                        svc(n),
                        format!("service `{n}` has no image, but `{other}` runs in a container"),
                    )
                    .expected("every service with an `image`, or none")
                    .hint("a project runs on one engine: give this service an `image`, or remove the images and give each service a `command`"),
                );
            } else {
                let (n, other) = (contained[0], native[0]);
                cx.err(
                    Diagnostic::error(
                        svc(n).key("image"),
                        format!("service `{n}` has an image, but `{other}` runs natively"),
                    )
                    .expected("every service with an `image`, or none")
                    .hint("a project runs on one engine: remove `image` and give this service a `command`, or give every service an image"),
                );
            }
        }
        EngineChoice::Auto => {}
    }
}

/// The directory's name made into a valid project name.
pub fn default_project_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches(|c: char| c == '-' || c == '_').to_owned();
    if s.is_empty() {
        "devbox".to_owned()
    } else {
        s.truncate(63);
        s
    }
}

fn check_name(cx: &mut Ctx, path: &KeyPath, name: &str, what: &str, is_value: bool) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        let d = Diagnostic::error(path.clone(), format!("invalid {what} `{name}`"))
            .expected("1 to 63 lower-case letters, digits, `-` or `_`, starting and ending with a letter or digit")
            .hint("names become container, volume and network names, which engines restrict");
        if is_value {
            cx.err(d);
        } else {
            cx.err_key(d);
        }
    }
}

// ---------------------------------------------------------------------------------------
// values

pub fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if !(3..=4).contains(&digits.len()) || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

fn mode(cx: &mut Ctx, path: &KeyPath, s: &str) -> Option<u32> {
    let m = parse_mode(s);
    if m.is_none() {
        cx.err(
            Diagnostic::error(path.clone(), format!("invalid mode `{s}`"))
                .expected("an octal mode as a string, such as \"0755\" or \"0600\"")
                .hint("each digit is 0-7: owner, group, others"),
        );
    }
    m
}

pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.is_empty() || t.starts_with('-') {
        return None;
    }
    parse_size::Config::new().with_binary().parse_size(t).ok()
}

fn size(cx: &mut Ctx, path: &KeyPath, v: &SizeValue) -> Option<u64> {
    let r = match v {
        SizeValue::Bytes(b) => u64::try_from(*b).ok(),
        SizeValue::Text(s) => parse_size(s),
    };
    if r.is_none() {
        let shown = match v {
            SizeValue::Bytes(b) => b.to_string(),
            SizeValue::Text(s) => format!("\"{s}\""),
        };
        cx.err(
            Diagnostic::error(path.clone(), format!("invalid size {shown}"))
                .expected("a size such as \"512k\", \"256m\" or \"1g\" (powers of 1024), or a number of bytes"),
        );
    }
    r
}

pub fn parse_duration_ms(s: &str) -> Option<u64> {
    humantime::parse_duration(s.trim())
        .ok()
        .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
}

fn duration(cx: &mut Ctx, path: &KeyPath, s: &str) -> Option<u64> {
    let r = parse_duration_ms(s);
    if r.is_none() {
        cx.err(
            Diagnostic::error(path.clone(), format!("invalid duration \"{s}\""))
                .expected("a duration such as \"500ms\", \"5s\", \"1m30s\"")
                .hint("units: ms, s, m, h"),
        );
    }
    r
}

fn opt_duration(cx: &mut Ctx, path: &KeyPath, s: Option<&String>, default_ms: u64) -> u64 {
    s.and_then(|s| duration(cx, path, s)).unwrap_or(default_ms)
}

fn port_number(cx: &mut Ctx, path: &KeyPath, n: i64, what: &str) -> Option<u16> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            cx.err(
                Diagnostic::error(path.clone(), format!("{what} {n} is out of range"))
                    .expected("a port number from 1 to 65535"),
            );
            None
        }
    }
}

/// Lexically normalizes `rel` under `dir`; `None` when it climbs out.
fn inside(dir: &Path, rel: &Path) -> Option<PathBuf> {
    if rel.is_absolute() {
        return rel.starts_with(dir).then(|| rel.to_path_buf());
    }
    let mut out = dir.to_path_buf();
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
                out.pop();
            }
            Component::Normal(s) => {
                depth += 1;
                out.push(s);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The first existing symlink on the way from `dir` to `path` that points outside `dir`.
fn escaping_symlink(dir: &Path, canon_dir: Option<&Path>, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(dir).ok()?;
    let canon_dir = canon_dir?;
    let mut cur = dir.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = cur.canonicalize().ok();
                if target.is_none_or(|t| !t.starts_with(canon_dir)) {
                    return Some(cur);
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// A path that must stay inside the project: relative, no `..` out, no symlink out.
fn project_path(cx: &mut Ctx, path: &KeyPath, written: &str, what: &str) -> Option<PathBuf> {
    let p = Path::new(written);
    if written.is_empty() {
        cx.err(
            Diagnostic::error(path.clone(), format!("{what} is empty"))
                .expected("a path relative to sandbox.toml"),
        );
        return None;
    }
    if p.is_absolute() {
        cx.err(
            Diagnostic::error(
                path.clone(),
                format!("{what} `{written}` is an absolute path"),
            )
            .expected("a path relative to sandbox.toml, inside the project")
            .hint("devbox keeps everything it touches inside the project directory"),
        );
        return None;
    }
    let Some(abs) = inside(cx.dir, p) else {
        cx.err(
            Diagnostic::error(
                path.clone(),
                format!("{what} `{written}` leaves the project directory"),
            )
            .expected("a path inside the project, without `..` climbing out of it"),
        );
        return None;
    };
    if let Some(link) = escaping_symlink(cx.dir, cx.canon_dir.as_deref(), &abs) {
        cx.err(
            Diagnostic::error(
                path.clone(),
                format!(
                    "{what} `{written}` goes through a symlink that leads outside the project: {}",
                    link.display()
                ),
            )
            .expected("a path whose every component stays inside the project")
            .hint("replace the symlink with a real directory"),
        );
        return None;
    }
    Some(abs)
}

fn env_map(map: &BTreeMap<String, EnvValue>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

fn check_env_names(cx: &mut Ctx, path: &KeyPath, keys: impl IntoIterator<Item = String>) {
    for k in keys {
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            cx.err_key(
                Diagnostic::error(
                    path.key(&k),
                    format!("invalid environment variable name `{k}`"),
                )
                .expected("letters, digits and `_`, not starting with a digit"),
            );
        }
    }
}

fn reference(
    cx: &mut Ctx,
    path: &KeyPath,
    what: &str,
    name: &str,
    known: &BTreeSet<String>,
    section: &str,
) -> bool {
    if known.contains(name) {
        return true;
    }
    let mut d = Diagnostic::error(path.clone(), format!("unknown {what} `{name}`"));
    d = if known.is_empty() {
        d.expected(format!(
            "a {what} defined in [{section}], but there are none"
        ))
        .hint(format!("add [{section}.{name}]"))
    } else {
        d = d.expected(format!(
            "one of {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        d.suggest(name, known.iter().map(String::as_str))
            .or_hint(format!("add [{section}.{name}]"))
    };
    cx.err(d);
    false
}

// ---------------------------------------------------------------------------------------
// data

fn resolve_data(cx: &mut Ctx, raw: RawData) -> Data {
    let base = KeyPath::root().key("data");
    let root_rel = raw.root.clone().unwrap_or_else(|| ".data".to_owned());
    let root = project_path(cx, &base.key("root"), &root_rel, "data root")
        .unwrap_or_else(|| cx.dir.join(".data"));
    if root == cx.dir {
        cx.err(
            Diagnostic::error(
                base.key("root"),
                "data root is the project directory itself",
            )
            .expected("a subdirectory such as \".data\"")
            .hint("`devbox reset` wipes the data root; it must not be the project"),
        );
    }
    let mut dirs = Vec::new();
    for (rel, d) in &raw.dirs {
        let p = base.key("dirs").key(rel);
        if data_rel(cx, &p, rel, &root).is_some() {
            let m = d
                .mode
                .as_deref()
                .map_or(Some(0o755), |s| mode(cx, &p.key("mode"), s));
            dirs.push(DataDir {
                path: rel.trim_end_matches('/').to_owned(),
                mode: m.unwrap_or(0o755),
            });
        }
    }
    let mut files = Vec::new();
    for (rel, f) in &raw.files {
        let p = base.key("files").key(rel);
        if data_rel(cx, &p, rel, &root).is_none() {
            continue;
        }
        let content = match (&f.secret, &f.content) {
            (Some(_), Some(_)) => {
                cx.err(
                    Diagnostic::error(p.key("content"), "a file cannot have both `secret` and `content`")
                        .hint("a secret is generated; remove `content`, or remove `secret` for a literal file"),
                );
                FileContent::Empty
            }
            (Some(s), None) => match parse_secret(s) {
                Some((encoding, bytes)) => FileContent::Secret { encoding, bytes },
                None => {
                    cx.err(
                        Diagnostic::error(p.key("secret"), format!("invalid secret `{s}`"))
                            .expected("\"hex:N\" or \"base64:N\", N random bytes from 1 to 4096")
                            .hint("for example secret = \"hex:32\""),
                    );
                    FileContent::Empty
                }
            },
            (None, Some(t)) => FileContent::Literal { text: t.clone() },
            (None, None) => FileContent::Empty,
        };
        let is_secret = matches!(content, FileContent::Secret { .. });
        let default_mode = if is_secret { 0o600 } else { 0o644 };
        let m = f
            .mode
            .as_deref()
            .map_or(Some(default_mode), |s| mode(cx, &p.key("mode"), s))
            .unwrap_or(default_mode);
        if is_secret && m & 0o177 != 0 {
            cx.err(
                Diagnostic::error(
                    p.key("mode"),
                    format!("secret mode {m:04o} is wider than 0600"),
                )
                .expected("\"0600\" or narrower (\"0400\")")
                .hint("secrets are readable by their owner only"),
            );
        }
        files.push(DataFile {
            path: rel.clone(),
            mode: m,
            content,
        });
    }
    Data {
        root,
        root_rel,
        dirs,
        files,
    }
}

fn data_rel(cx: &mut Ctx, path: &KeyPath, rel: &str, root: &Path) -> Option<PathBuf> {
    let p = Path::new(rel);
    let bad = rel.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if bad {
        cx.err_key(
            Diagnostic::error(
                path.clone(),
                format!("data path `{rel}` leaves the data root"),
            )
            .expected(
                "a relative path inside the data root, without `..`, such as \"auth/credential\"",
            ),
        );
        return None;
    }
    let abs = root.join(p);
    if let Some(link) = escaping_symlink(cx.dir, cx.canon_dir.as_deref(), &abs) {
        cx.err_key(
            Diagnostic::error(
                path.clone(),
                format!(
                    "data path `{rel}` goes through a symlink that leads outside the project: {}",
                    link.display()
                ),
            )
            .hint("devbox never follows symlinks out of the project; remove the link"),
        );
        return None;
    }
    Some(abs)
}

pub fn parse_secret(s: &str) -> Option<(SecretEncoding, usize)> {
    let (enc, n) = s.split_once(':')?;
    let enc = match enc {
        "hex" => SecretEncoding::Hex,
        "base64" => SecretEncoding::Base64,
        _ => return None,
    };
    let n: usize = n.parse().ok()?;
    (1..=4096).contains(&n).then_some((enc, n))
}

// ---------------------------------------------------------------------------------------
// images

fn resolve_image(cx: &mut Ctx, p: &KeyPath, raw: &RawImage) -> Option<Image> {
    let context_rel = raw.context.clone().unwrap_or_else(|| ".".to_owned());
    let context = project_path(cx, &p.key("context"), &context_rel, "build context")?;
    if !context.is_dir() {
        cx.err(
            Diagnostic::error(
                p.key("context"),
                format!("build context `{context_rel}` is not a directory"),
            )
            .hint("the path is relative to sandbox.toml"),
        );
        return None;
    }
    let containerfile = match &raw.containerfile {
        Some(cf) => {
            let abs = project_path(cx, &p.key("containerfile"), cf, "containerfile")?;
            if !abs.is_file() {
                cx.err(
                    Diagnostic::error(
                        p.key("containerfile"),
                        format!("containerfile `{cf}` does not exist"),
                    )
                    .hint("the path is relative to sandbox.toml, not to the context"),
                );
                return None;
            }
            abs
        }
        None => match ["Containerfile", "Dockerfile"]
            .iter()
            .map(|f| context.join(f))
            .find(|f| f.is_file())
        {
            Some(f) => f,
            None => {
                cx.err_key(
                    Diagnostic::error(
                        p.clone(),
                        format!("no Containerfile or Dockerfile in `{context_rel}`"),
                    )
                    .hint("add one, or set containerfile = \"path/to/Containerfile\""),
                );
                return None;
            }
        },
    };
    Some(Image {
        containerfile,
        context,
        args: env_map(&raw.args),
        target: raw.target.clone(),
    })
}

// ---------------------------------------------------------------------------------------
// services

fn resolve_service(cx: &mut Ctx, p: &KeyPath, raw: &RawService, repaired: bool) -> Service {
    let names = cx.names;
    let mut defaults = Vec::new();

    let image = match raw.image.as_deref() {
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
    };
    let native = image == ImageRef::Host;
    if native {
        check_native(cx, p, raw, repaired);
    }
    let policy = match (&raw.policy, native) {
        (Some(pol), true) => {
            if pol.limits != RawLimits::default() {
                cx.err_key(
                    Diagnostic::error(
                        p.key("policy").key("limits"),
                        "`policy.limits` does not apply to a service",
                    )
                    .hint("a service's limits are its own `memory`, `cpus`, `pids_limit` and `ulimits` keys"),
                );
            }
            Some(resolve_policy(cx, &p.key("policy"), pol))
        }
        (None, true) => Some(resolve_policy(cx, &p.key("policy"), &RawPolicy::default())),
        (Some(_), false) => {
            cx.err_key(
                Diagnostic::error(
                    p.key("policy"),
                    "`policy` applies to native services only",
                )
                .hint("a service with an `image` is confined by its container: remove `policy`, or remove `image` and give a `command` to run a host program natively"),
            );
            None
        }
        (None, false) => None,
    };

    let user = match &raw.user {
        Some(u) => {
            check_user(cx, &p.key("user"), u);
            u.clone()
        }
        None => {
            defaults.push(format!("user = \"{DEFAULT_USER}\""));
            DEFAULT_USER.to_owned()
        }
    };
    let userns = raw
        .userns
        .as_ref()
        .and_then(|u| parse_userns(cx, &p.key("userns"), u, &user));

    let env = env_map(&raw.env);
    check_env_names(cx, &p.key("env"), raw.env.keys().cloned());
    let mut env_files = Vec::new();
    if let Some(ef) = &raw.env_file {
        let list = ef.to_vec();
        for (i, f) in list.iter().enumerate() {
            let kp = if matches!(ef, StringOrList::One(_)) {
                p.key("env_file")
            } else {
                p.key("env_file").index(i)
            };
            if let Some(abs) = project_path(cx, &kp, f, "env_file") {
                if !abs.is_file() {
                    cx.err(
                        Diagnostic::error(kp, format!("env_file `{f}` does not exist"))
                            .hint("the path is relative to sandbox.toml"),
                    );
                } else {
                    env_files.push(abs);
                }
            }
        }
    }

    let mut ports = Vec::new();
    let mut port_index = Vec::new();
    for (i, ps) in raw.ports.iter().enumerate() {
        if let Some(port) = parse_port(cx, &p.key("ports").index(i), ps) {
            ports.push(port);
            port_index.push(i);
        }
    }
    if let Some(Seg::Key(name)) = p.0.last() {
        cx.port_index.insert(name.clone(), port_index);
    }

    let mut mounts = Vec::new();
    for (i, v) in raw.volumes.iter().enumerate() {
        if let Some(m) = parse_mount(cx, &p.key("volumes").index(i), v) {
            if mounts.iter().any(|x: &Mount| x.target() == m.target()) {
                cx.err(
                    Diagnostic::error(
                        p.key("volumes").index(i),
                        format!("two volumes mount at `{}`", m.target()),
                    )
                    .hint("each container path may be mounted once"),
                );
            }
            mounts.push(m);
        }
    }

    let read_only = raw.read_only.unwrap_or_else(|| {
        defaults.push("read_only = true".into());
        true
    });

    let mut tmpfs = Vec::new();
    for (i, t) in raw.tmpfs.iter().enumerate() {
        let (path, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        if !path.starts_with('/') {
            cx.err(
                Diagnostic::error(p.key("tmpfs").index(i), format!("tmpfs path `{path}` is not absolute"))
                    .expected("an absolute container path, optionally with options: \"/tmp:size=64m,mode=1777\""),
            );
            continue;
        }
        let options: Vec<String> = opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        for o in &options {
            let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
            let ok = match k {
                "size" => parse_size(v).is_some(),
                "mode" => parse_mode(v).is_some(),
                "uid" | "gid" | "nr_inodes" => v.parse::<u64>().is_ok(),
                "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev" | "ro" | "rw" => {
                    v.is_empty()
                }
                _ => false,
            };
            if !ok {
                cx.err(
                    Diagnostic::error(p.key("tmpfs").index(i), format!("invalid tmpfs option `{o}`"))
                        .expected("size=N, mode=OCTAL, uid=N, gid=N, nr_inodes=N, exec, noexec, nosuid, nodev, ro, rw"),
                );
            }
        }
        tmpfs.push(Tmpfs {
            path: path.to_owned(),
            options,
        });
    }

    let cap_drop = match &raw.cap_drop {
        Some(c) => caps(cx, &p.key("cap_drop"), c),
        None => {
            defaults.push("cap_drop = [\"ALL\"]".into());
            vec!["ALL".to_owned()]
        }
    };
    let cap_add = caps(cx, &p.key("cap_add"), &raw.cap_add);

    let no_new_privileges = raw.no_new_privileges.unwrap_or_else(|| {
        defaults.push("no_new_privileges = true".into());
        true
    });

    for (i, o) in raw.security_opt.iter().enumerate() {
        let k = o.split(['=', ':']).next().unwrap_or("");
        if !matches!(
            k,
            "no-new-privileges"
                | "seccomp"
                | "apparmor"
                | "label"
                | "systempaths"
                | "mask"
                | "unmask"
                | "proc-opts"
        ) {
            cx.err(
                Diagnostic::error(p.key("security_opt").index(i), format!("unknown security option `{o}`"))
                    .expected("no-new-privileges, seccomp=PROFILE|unconfined, apparmor=PROFILE|unconfined, label=..., systempaths=unconfined, mask=PATHS, unmask=PATHS"),
            );
        }
    }

    let memory = raw
        .memory
        .as_ref()
        .and_then(|m| size(cx, &p.key("memory"), m));
    if let Some(m) = memory {
        if m < 6 * 1024 * 1024 {
            cx.err(
                Diagnostic::error(
                    p.key("memory"),
                    format!("memory limit of {m} bytes is below the engines' minimum"),
                )
                .expected("at least \"6m\"")
                .hint("sizes without a unit are bytes; write \"256m\" for megabytes"),
            );
        }
    }
    if let Some(c) = raw.cpus {
        if !(c > 0.0 && c.is_finite()) {
            cx.err(
                Diagnostic::error(
                    p.key("cpus"),
                    format!("cpus = {c} is not a positive number"),
                )
                .expected("a number of cores such as 0.5 or 2"),
            );
        }
    }
    let pids_limit = match raw.pids_limit {
        None => {
            defaults.push(format!("pids_limit = {DEFAULT_PIDS_LIMIT}"));
            Some(DEFAULT_PIDS_LIMIT)
        }
        Some(-1) => None,
        Some(n) if n > 0 => u32::try_from(n).ok(),
        Some(n) => {
            cx.err(
                Diagnostic::error(
                    p.key("pids_limit"),
                    format!("pids_limit = {n} is not a limit"),
                )
                .expected("a positive number of processes, or -1 for unlimited"),
            );
            None
        }
    };

    let mut ulimits = BTreeMap::new();
    for (name, u) in &raw.ulimits {
        let kp = p.key("ulimits").key(name);
        if !ULIMITS.contains(&name.as_str()) {
            let d = Diagnostic::error(kp.clone(), format!("unknown ulimit `{name}`"))
                .expected(ULIMITS.join(", "));
            cx.err_key(d.suggest(name, ULIMITS.iter().copied()));
            continue;
        }
        let (soft, hard) = match u {
            forms::Ulimit::Single(n) => (*n, *n),
            forms::Ulimit::Pair(pr) => (pr.soft, pr.hard),
        };
        if soft < -1 || hard < -1 || (hard >= 0 && soft > hard) {
            cx.err(
                Diagnostic::error(
                    kp,
                    format!("ulimit {name}: soft {soft} and hard {hard} are not a valid pair"),
                )
                .expected("0 <= soft <= hard (or -1 for unlimited)"),
            );
            continue;
        }
        ulimits.insert(name.clone(), UlimitPair { soft, hard });
    }

    let mut networks = Vec::new();
    for (i, n) in raw.networks.iter().enumerate() {
        if reference(
            cx,
            &p.key("networks").index(i),
            "network",
            n,
            &names.networks,
            "networks",
        ) {
            networks.push(n.clone());
        }
    }
    if let Some(nm) = &raw.network_mode {
        let ok = matches!(nm.as_str(), "bridge" | "host" | "none")
            || nm.strip_prefix("container:").is_some_and(|s| !s.is_empty())
            || nm.strip_prefix("service:").is_some_and(|s| !s.is_empty());
        if !ok {
            cx.err(
                Diagnostic::error(
                    p.key("network_mode"),
                    format!("unknown network_mode `{nm}`"),
                )
                .expected("bridge, host, none, container:NAME or service:NAME"),
            );
        } else if nm != "bridge" && !raw.networks.is_empty() {
            cx.err(
                Diagnostic::error(
                    p.key("network_mode"),
                    format!("network_mode = \"{nm}\" cannot be combined with networks"),
                )
                .hint("remove either `networks` or `network_mode`"),
            );
        } else if matches!(nm.as_str(), "host" | "none") && !raw.ports.is_empty() {
            cx.err(
                Diagnostic::error(
                    p.key("ports"),
                    format!("ports cannot be published with network_mode = \"{nm}\""),
                )
                .hint("remove `ports`, or the network_mode"),
            );
        }
        if let Some(s) = nm.strip_prefix("service:") {
            reference(
                cx,
                &p.key("network_mode"),
                "service",
                s,
                &names.services,
                "services",
            );
        }
    }

    let mut depends_on = BTreeMap::new();
    match &raw.depends_on {
        Some(DependsOn::List(l)) => {
            for (i, s) in l.iter().enumerate() {
                if reference(
                    cx,
                    &p.key("depends_on").index(i),
                    "service",
                    s,
                    &names.services,
                    "services",
                ) {
                    depends_on.insert(s.clone(), Condition::Started);
                }
            }
        }
        Some(DependsOn::Map(m)) => {
            for (s, c) in m {
                let kp = p.key("depends_on").key(s);
                let cond = match c.as_str() {
                    "started" => Some(Condition::Started),
                    "healthy" => Some(Condition::Healthy),
                    "completed" => Some(Condition::Completed),
                    _ => {
                        cx.err(
                            Diagnostic::error(kp.clone(), format!("unknown condition `{c}`"))
                                .expected("\"started\", \"healthy\" or \"completed\""),
                        );
                        None
                    }
                };
                let known = &names.services;
                if known.contains(s) {
                    if let Some(cond) = cond {
                        depends_on.insert(s.clone(), cond);
                    }
                } else {
                    reference(cx, &kp, "service", s, known, "services");
                }
            }
        }
        None => {}
    }

    let healthcheck = raw
        .healthcheck
        .as_ref()
        .and_then(|h| resolve_healthcheck(cx, &p.key("healthcheck"), h));

    let restart = match raw.restart.as_deref() {
        None | Some("no") => Restart::No,
        Some("always") => Restart::Always,
        Some("unless-stopped") => Restart::UnlessStopped,
        Some("on-failure") => Restart::OnFailure(None),
        Some(r) => match r.strip_prefix("on-failure:").map(str::parse::<u32>) {
            Some(Ok(n)) => Restart::OnFailure(Some(n)),
            _ => {
                cx.err(
                    Diagnostic::error(p.key("restart"), format!("unknown restart policy `{r}`"))
                        .expected("\"no\", \"always\", \"on-failure\", \"on-failure:N\" or \"unless-stopped\""),
                );
                Restart::No
            }
        },
    };

    for (label_key, label) in [("pid", &raw.pid), ("ipc", &raw.ipc)] {
        if let Some(v) = label {
            let ok = matches!(v.as_str(), "host" | "private")
                || (label_key == "ipc" && matches!(v.as_str(), "shareable" | "none"))
                || v.strip_prefix("container:").is_some_and(|s| !s.is_empty())
                || v.strip_prefix("service:").is_some_and(|s| !s.is_empty());
            if !ok {
                cx.err(
                    Diagnostic::error(p.key(label_key), format!("unknown {label_key} mode `{v}`"))
                        .expected("host, private, container:NAME or service:NAME"),
                );
            }
        }
    }
    for (i, d) in raw.devices.iter().enumerate() {
        let mut parts = d.split(':');
        let host = parts.next().unwrap_or("");
        let ok = host.starts_with("/dev/")
            && parts.next().is_none_or(|c| c.starts_with('/'))
            && parts
                .next()
                .is_none_or(|perm| !perm.is_empty() && perm.chars().all(|c| "rwm".contains(c)))
            && parts.next().is_none();
        if !ok {
            cx.err(
                Diagnostic::error(p.key("devices").index(i), format!("invalid device `{d}`"))
                    .expected(
                        "\"/dev/NAME\", \"/dev/NAME:/dev/INSIDE\" or \"/dev/NAME:/dev/INSIDE:rwm\"",
                    ),
            );
        }
    }
    for k in raw.sysctls.keys() {
        if !k.contains('.')
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        {
            cx.err_key(
                Diagnostic::error(
                    p.key("sysctls").key(k),
                    format!("invalid sysctl name `{k}`"),
                )
                .expected("a dotted kernel parameter such as net.ipv4.ip_unprivileged_port_start"),
            );
        }
    }
    for (i, h) in raw.extra_hosts.iter().enumerate() {
        let ok = h.split_once([':', '=']).is_some_and(|(name, ip)| {
            !name.is_empty()
                && (ip == "host-gateway" || ip.trim_matches(['[', ']']).parse::<IpAddr>().is_ok())
        });
        if !ok {
            cx.err(
                Diagnostic::error(
                    p.key("extra_hosts").index(i),
                    format!("invalid extra host `{h}`"),
                )
                .expected("\"NAME:IP\", such as \"db.local:10.0.0.2\""),
            );
        }
    }
    let stop_signal = raw
        .stop_signal
        .as_ref()
        .and_then(|v| stop_signal(cx, &p.key("stop_signal"), v));
    let stop_grace_s = raw.stop_grace_period.as_ref().and_then(|g| {
        duration(cx, &p.key("stop_grace_period"), g)
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX))
    });
    if let Some(w) = &raw.workdir {
        if !w.starts_with('/') {
            cx.err(
                Diagnostic::error(p.key("workdir"), format!("workdir `{w}` is not absolute"))
                    .expected("an absolute path inside the container"),
            );
        }
    }
    for (k, list) in [("command", &raw.command), ("entrypoint", &raw.entrypoint)] {
        if let Some(StringOrList::Many(v)) = list {
            if v.is_empty() && k == "command" {
                cx.err(
                    Diagnostic::error(p.key(k), "command is an empty list")
                        .hint("remove `command` to run the image's default"),
                );
            }
        }
    }

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
        mounts,
        read_only,
        tmpfs,
        cap_drop,
        cap_add,
        no_new_privileges,
        security_opt: raw.security_opt.clone(),
        memory,
        cpus: raw.cpus,
        pids_limit,
        ulimits,
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
        waivers: waivers(cx, &p.key("audit").key("allow"), raw.audit.as_ref()),
        policy,
        defaults_applied: defaults,
    }
}

/// What a native service cannot have: it needs a program to run, and the keys that only
/// a container runtime can honour are refused (each at its line, saying what to do
/// instead) rather than silently ignored.
fn check_native(cx: &mut Ctx, p: &KeyPath, raw: &RawService, repaired: bool) {
    if raw.command.is_none() && raw.entrypoint.is_none() && !repaired {
        cx.err_key(
            Diagnostic::error(p.clone(), "service has no `image` and no `command`")
                .expected("`image = ...` to run a container, or `command = [...]` to run a host program natively")
                .hint("a service without an image is a host program that devbox runs in its own sandbox; it needs a command"),
        );
    }
    let host_net = matches!(
        raw.policy.as_ref().and_then(|p| p.net.as_ref()),
        Some(NetPolicy_::Mode(m)) if m == "host"
    );
    let refused: [(&str, bool, &str); 13] = [
        (
            "privileged",
            raw.privileged == Some(true),
            "a native service never has privilege; give the service an `image` to run it in a privileged container",
        ),
        (
            "cap_add",
            !raw.cap_add.is_empty(),
            "a native service runs with no capabilities at all; give the service an `image` to add capabilities to a container",
        ),
        (
            "devices",
            !raw.devices.is_empty(),
            "a native service is given no host devices; give the service an `image` to pass devices to a container",
        ),
        (
            "userns",
            raw.userns.is_some(),
            "a native service always runs in a user namespace of its own, which devbox sets up",
        ),
        (
            "security_opt",
            !raw.security_opt.is_empty(),
            "a native service always runs with no_new_privileges, devbox's seccomp filter and Landlock; these options are a container runtime's",
        ),
        (
            "sysctls",
            !raw.sysctls.is_empty(),
            "a native service shares the host's kernel settings; set them on the host, or give the service an `image`",
        ),
        (
            "pid",
            raw.pid.is_some(),
            "a native service always has a PID namespace of its own",
        ),
        (
            "ipc",
            raw.ipc.is_some(),
            "a native service always has an IPC namespace of its own",
        ),
        (
            "network_mode",
            raw.network_mode.as_deref().is_some_and(|m| !(m == "host" && host_net)),
            "a native service's network is its `policy.net`: \"none\" (loopback only, the default), \"host\", or { default, allow, warn, deny } through devbox's proxy",
        ),
        (
            "extra_hosts",
            !raw.extra_hosts.is_empty(),
            "a native service reaches the other services by name without it; host entries are a container runtime's",
        ),
        (
            "read_only",
            raw.read_only == Some(false),
            "a native service sees the host read-only; make paths writable with `volumes` (a bind of a project path) or `tmpfs`",
        ),
        (
            "no_new_privileges",
            raw.no_new_privileges == Some(false),
            "a native service always runs with no_new_privileges",
        ),
        (
            "init",
            raw.init == Some(false),
            "a native service always has devbox's init as PID 1",
        ),
    ];
    for (key, set, hint) in refused {
        if set {
            cx.err_key(
                Diagnostic::error(
                    p.key(key),
                    format!("`{key}` does not apply to a native service"),
                )
                .hint(hint),
            );
        }
    }
    if let Some(u) = &raw.user {
        let numeric = {
            let (user, group) = u.split_once(':').unwrap_or((u, "0"));
            user.parse::<u32>().is_ok() && group.parse::<u32>().is_ok()
        };
        if !numeric {
            cx.err(
                Diagnostic::error(p.key("user"), format!("user `{u}` is not numeric"))
                    .expected("\"UID\" or \"UID:GID\", such as \"65532:65532\"")
                    .hint("a native service has no image whose /etc/passwd could name the user"),
            );
        }
    }
}

/// A stop signal by name (`SIGINT`, `INT`, `SIGRTMIN+3`, any case) or number.
fn stop_signal(cx: &mut Ctx, path: &KeyPath, v: &SignalValue) -> Option<i32> {
    let (rtmin, rtmax) = (nix::libc::SIGRTMIN(), nix::libc::SIGRTMAX());
    let n = match v {
        SignalValue::Number(n) => i32::try_from(*n).ok().filter(|n| (1..=rtmax).contains(n)),
        SignalValue::Name(s) => {
            let up = s.trim().to_ascii_uppercase();
            let name = if up.starts_with("SIG") {
                up
            } else {
                format!("SIG{up}")
            };
            if let Some(off) = name.strip_prefix("SIGRTMIN+") {
                off.parse::<i32>()
                    .ok()
                    .map(|o| rtmin + o)
                    .filter(|n| *n <= rtmax)
            } else if name == "SIGRTMIN" {
                Some(rtmin)
            } else {
                name.parse::<nix::sys::signal::Signal>()
                    .ok()
                    .map(|s| s as i32)
            }
        }
    };
    let n = n.filter(|n| *n != nix::libc::SIGKILL && *n != nix::libc::SIGSTOP);
    if n.is_none() {
        let shown = match v {
            SignalValue::Number(n) => n.to_string(),
            SignalValue::Name(s) => format!("\"{s}\""),
        };
        cx.err(
            Diagnostic::error(path.clone(), format!("invalid stop signal {shown}"))
                .expected(format!("a signal that can be caught, such as \"SIGINT\", \"TERM\" or 2 (1 to {rtmax}, not KILL or STOP)")),
        );
    }
    n
}

fn waivers(cx: &mut Ctx, p: &KeyPath, raw: Option<&RawAuditWaivers>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (i, w) in raw
        .map(|r| r.allow.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let known = crate::audit::rule(&w.rule).is_some();
        if !known {
            let ids: Vec<&str> = crate::audit::RULES.iter().map(|r| r.id).collect();
            let d = Diagnostic::error(
                p.index(i).key("rule"),
                format!("unknown audit rule `{}`", w.rule),
            )
            .expected("a rule id from `devbox audit --rules`, such as DBX001");
            cx.err(d.suggest(&w.rule, ids.iter().copied()));
        }
        match w.reason.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => {
                if known {
                    out.insert(w.rule.clone(), r.to_owned());
                }
            }
            _ => cx.err_key(
                Diagnostic::error(p.index(i), format!("waiver for {} has no reason", w.rule))
                    .expected("reason = \"why this finding is acceptable here\"")
                    .hint("a waiver records a decision; say who needs it and why"),
            ),
        }
    }
    out
}

/// A command given as one string runs through `sh -c`, as in a Containerfile's shell form.
fn shell_words(c: &StringOrList) -> Vec<String> {
    match c {
        StringOrList::One(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        StringOrList::Many(v) => v.clone(),
    }
}

fn check_user(cx: &mut Ctx, p: &KeyPath, u: &str) {
    let (user, group) = u.split_once(':').unwrap_or((u, ""));
    let valid = |s: &str| {
        !s.is_empty()
            && (s.parse::<u32>().is_ok()
                || s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
    };
    if !valid(user) || (u.contains(':') && !valid(group)) {
        cx.err(
            Diagnostic::error(p.clone(), format!("invalid user `{u}`"))
                .expected("\"UID\", \"UID:GID\" or a user name, such as \"1000:1000\""),
        );
    }
}

fn parse_userns(cx: &mut Ctx, p: &KeyPath, u: &str, user: &str) -> Option<Userns> {
    let numeric = |s: &str| s.parse::<u32>().ok();
    let (uid0, gid0) = user
        .split_once(':')
        .map_or((numeric(user), None), |(a, b)| (numeric(a), numeric(b)));
    match u {
        "host" => Some(Userns::Host),
        "auto" => Some(Userns::Auto),
        "keep-id" => Some(Userns::KeepId {
            uid: uid0,
            gid: gid0.or(uid0),
        }),
        _ => {
            if let Some(opts) = u.strip_prefix("keep-id:") {
                let mut uid = None;
                let mut gid = None;
                let mut ok = true;
                for o in opts.split(',') {
                    match o.split_once('=') {
                        Some(("uid", v)) => {
                            uid = numeric(v).or_else(|| {
                                ok = false;
                                None
                            })
                        }
                        Some(("gid", v)) => {
                            gid = numeric(v).or_else(|| {
                                ok = false;
                                None
                            })
                        }
                        _ => ok = false,
                    }
                }
                if ok {
                    return Some(Userns::KeepId { uid, gid });
                }
            }
            cx.err(
                Diagnostic::error(p.clone(), format!("unknown userns `{u}`"))
                    .expected("\"keep-id\", \"keep-id:uid=N,gid=N\", \"host\" or \"auto\"")
                    .hint("keep-id maps your host user to the service's user, so files in .data stay yours"),
            );
            None
        }
    }
}

fn caps(cx: &mut Ctx, p: &KeyPath, list: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let up = c.to_ascii_uppercase();
        let name = up.strip_prefix("CAP_").unwrap_or(&up);
        if name == "ALL" || CAPABILITIES.contains(&name) {
            out.push(name.to_owned());
        } else {
            let d = Diagnostic::error(p.index(i), format!("unknown capability `{c}`"))
                .expected("ALL or a capability name such as NET_BIND_SERVICE");
            cx.err(
                d.suggest(
                    name,
                    std::iter::once("ALL").chain(CAPABILITIES.iter().copied()),
                )
                .or_hint("see capabilities(7)"),
            );
        }
    }
    out
}

fn parse_port(cx: &mut Ctx, p: &KeyPath, spec: &PortSpec) -> Option<Port> {
    let loopback: IpAddr = IpAddr::from([127, 0, 0, 1]);
    match spec {
        PortSpec::Number(n) => {
            let n = port_number(cx, p, *n, "port")?;
            Some(Port {
                host_ip: loopback,
                host: n,
                container: n,
                protocol: Protocol::Tcp,
            })
        }
        PortSpec::Long(l) => {
            let container = port_number(cx, &p.key("container"), l.container, "container port")?;
            let host = match l.host {
                Some(h) => port_number(cx, &p.key("host"), h, "host port")?,
                None => container,
            };
            let host_ip = match &l.host_ip {
                Some(ip) => match ip.trim_matches(['[', ']']).parse() {
                    Ok(ip) => ip,
                    Err(_) => {
                        cx.err(
                            Diagnostic::error(p.key("host_ip"), format!("invalid address `{ip}`"))
                                .expected("an IPv4 or IPv6 address such as \"127.0.0.1\""),
                        );
                        return None;
                    }
                },
                None => loopback,
            };
            let protocol = match l.protocol.as_deref() {
                None | Some("tcp") => Protocol::Tcp,
                Some("udp") => Protocol::Udp,
                Some(o) => {
                    cx.err(
                        Diagnostic::error(p.key("protocol"), format!("unknown protocol `{o}`"))
                            .expected("\"tcp\" or \"udp\""),
                    );
                    return None;
                }
            };
            Some(Port {
                host_ip,
                host,
                container,
                protocol,
            })
        }
        PortSpec::Short(s) => {
            let bad = |cx: &mut Ctx, why: &str| {
                cx.err(
                    Diagnostic::error(p.clone(), format!("invalid port `{s}`: {why}"))
                        .expected("\"PORT\", \"HOST:CONTAINER\", \"IP:HOST:CONTAINER\", optionally with /tcp or /udp")
                        .hint("for example \"8080:80\" or \"127.0.0.1:8080:80\""),
                );
            };
            let (body, protocol) = match s.rsplit_once('/') {
                Some((b, "tcp")) => (b, Protocol::Tcp),
                Some((b, "udp")) => (b, Protocol::Udp),
                Some(_) => {
                    bad(cx, "the protocol must be tcp or udp");
                    return None;
                }
                None => (s.as_str(), Protocol::Tcp),
            };
            // An IPv6 address is written in brackets: "[::1]:8080:80".
            let (ip, rest) = if let Some(r) = body.strip_prefix('[') {
                match r.split_once("]:") {
                    Some((ip, rest)) => (Some(ip), rest),
                    None => {
                        bad(
                            cx,
                            "an IPv6 address needs brackets and a port: \"[::1]:8080:80\"",
                        );
                        return None;
                    }
                }
            } else {
                let parts: Vec<&str> = body.split(':').collect();
                match parts.len() {
                    1 | 2 => (None, body),
                    3 => (Some(parts[0]), &body[parts[0].len() + 1..]),
                    _ => {
                        bad(cx, "too many `:`");
                        return None;
                    }
                }
            };
            let num = |cx: &mut Ctx, t: &str, what: &str| -> Option<u16> {
                if t.contains('-') {
                    bad(cx, "port ranges are not supported; list each port");
                    return None;
                }
                match t.parse::<i64>() {
                    Ok(n) => port_number(cx, p, n, what),
                    Err(_) => {
                        bad(cx, &format!("`{t}` is not a number"));
                        None
                    }
                }
            };
            let (host, container) = match rest.split_once(':') {
                Some((h, c)) => (num(cx, h, "host port")?, num(cx, c, "container port")?),
                None => {
                    let n = num(cx, rest, "port")?;
                    (n, n)
                }
            };
            let host_ip = match ip {
                None => loopback,
                Some(ip) => match ip.parse() {
                    Ok(a) => a,
                    Err(_) => {
                        bad(cx, &format!("`{ip}` is not an IP address"));
                        return None;
                    }
                },
            };
            Some(Port {
                host_ip,
                host,
                container,
                protocol,
            })
        }
    }
}

fn parse_mount(cx: &mut Ctx, p: &KeyPath, spec: &VolumeSpec) -> Option<Mount> {
    let names = cx.names;
    let (source, target, read_only, allow_outside) = match spec {
        VolumeSpec::Long(l) => (
            l.source.clone(),
            l.target.clone(),
            l.read_only,
            l.allow_outside,
        ),
        VolumeSpec::Short(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (src, dst, ro) = match parts.as_slice() {
                [src, dst] => (*src, *dst, false),
                [src, dst, "ro"] => (*src, *dst, true),
                [src, dst, "rw"] => (*src, *dst, false),
                [_, _, opt] => {
                    cx.err(
                        Diagnostic::error(
                            p.clone(),
                            format!("unknown volume option `{opt}` in `{s}`"),
                        )
                        .expected("\"ro\" or \"rw\""),
                    );
                    return None;
                }
                _ => {
                    cx.err(
                        Diagnostic::error(p.clone(), format!("invalid volume `{s}`"))
                            .expected("\"SOURCE:TARGET\" or \"SOURCE:TARGET:ro\"")
                            .hint("a SOURCE starting with . or / is a host path; a bare name is a named volume from [volumes]"),
                    );
                    return None;
                }
            };
            (src.to_owned(), dst.to_owned(), ro, false)
        }
    };
    if !target.starts_with('/') {
        cx.err(
            Diagnostic::error(
                p.clone(),
                format!("volume target `{target}` is not absolute"),
            )
            .expected("an absolute path inside the container"),
        );
        return None;
    }
    let is_path = source.starts_with('.') || source.starts_with('/') || source.starts_with('~');
    if !is_path {
        let known = &names.volumes;
        if !reference(cx, p, "volume", &source, known, "volumes") {
            return None;
        }
        return Some(Mount::Volume {
            name: source,
            target,
            read_only,
        });
    }
    let abs = if allow_outside {
        let expanded = expand_home(&source);
        if expanded.is_absolute() {
            expanded
        } else {
            lexical_join(cx.dir, &expanded)
        }
    } else {
        if source.starts_with('~') {
            cx.err(
                Diagnostic::error(p.clone(), format!("bind source `{source}` is outside the project"))
                    .expected("a path inside the project, such as \"./src\"")
                    .hint("to mount a host path outside the project, use the long form with allow_outside = true (devbox audit reports it)"),
            );
            return None;
        }
        let rel = if Path::new(&source).is_absolute() {
            match Path::new(&source).strip_prefix(cx.dir) {
                Ok(r) => r.to_string_lossy().into_owned(),
                Err(_) => {
                    cx.err(
                        Diagnostic::error(p.clone(), format!("bind source `{source}` is outside the project"))
                            .expected("a path inside the project, such as \"./src\"")
                            .hint("to mount a host path outside the project, use the long form with allow_outside = true (devbox audit reports it)"),
                    );
                    return None;
                }
            }
        } else {
            source.clone()
        };
        let rel = if rel.is_empty() { ".".to_owned() } else { rel };
        project_path(cx, p, &rel, "bind source")?
    };
    Some(Mount::Bind {
        source: abs,
        source_rel: source,
        target,
        read_only,
    })
}

fn expand_home(s: &str) -> PathBuf {
    match s.strip_prefix('~') {
        Some(rest) => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(rest.trim_start_matches('/'))
        }
        None => PathBuf::from(s),
    }
}

fn lexical_join(dir: &Path, rel: &Path) -> PathBuf {
    let mut out = dir.to_path_buf();
    for c in rel.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            _ => {}
        }
    }
    out
}

fn resolve_healthcheck(cx: &mut Ctx, p: &KeyPath, h: &RawHealthcheck) -> Option<Healthcheck> {
    let kinds = [h.cmd.is_some(), h.tcp.is_some(), h.http.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if kinds != 1 {
        cx.err_key(
            Diagnostic::error(
                p.clone(),
                if kinds == 0 {
                    "healthcheck has no test".to_owned()
                } else {
                    "healthcheck has more than one test".to_owned()
                },
            )
            .expected("exactly one of `cmd`, `tcp`, `http`")
            .hint("for example healthcheck = { tcp = 8080 }"),
        );
        return None;
    }
    let test = if let Some(c) = &h.cmd {
        let v = shell_words(c);
        if matches!(c, StringOrList::Many(v) if v.is_empty()) {
            cx.err(
                Diagnostic::error(p.key("cmd"), "healthcheck command is empty").expected(
                    "a command such as [\"wget\", \"-q\", \"-O-\", \"http://127.0.0.1:8080/\"]",
                ),
            );
            return None;
        }
        HealthTest::Cmd(v)
    } else if let Some(t) = h.tcp {
        HealthTest::Tcp(port_number(cx, &p.key("tcp"), t, "healthcheck port")?)
    } else {
        let u = h.http.clone().unwrap_or_default();
        if !(u.starts_with("http://") || u.starts_with('/')) {
            cx.err(
                Diagnostic::error(p.key("http"), format!("invalid healthcheck URL `{u}`"))
                    .expected("\"http://127.0.0.1:PORT/PATH\" or a path such as \"/health\""),
            );
            return None;
        }
        HealthTest::Http(u)
    };
    let retries = match h.retries {
        None => 15,
        Some(n) if (1..=10_000).contains(&n) => n as u32,
        Some(n) => {
            cx.err(
                Diagnostic::error(p.key("retries"), format!("retries = {n} is out of range"))
                    .expected("a number from 1 to 10000"),
            );
            15
        }
    };
    Some(Healthcheck {
        test,
        interval_ms: opt_duration(cx, &p.key("interval"), h.interval.as_ref(), 2_000),
        timeout_ms: opt_duration(cx, &p.key("timeout"), h.timeout.as_ref(), 2_000),
        retries,
        start_period_ms: opt_duration(cx, &p.key("start_period"), h.start_period.as_ref(), 0),
    })
}

fn check_port_clashes(cx: &mut Ctx, services: &BTreeMap<String, Service>) {
    /// The ports seen so far on one host port and protocol, by their order: the first,
    /// the first on an unspecified address, and the first on each address. The earliest
    /// port that clashes with a new one is among these, so each port is checked in
    /// constant time (a list scan made thousands of ports quadratic).
    #[derive(Default)]
    struct Seen {
        first: Option<usize>,
        unspecified: Option<usize>,
        by_ip: std::collections::HashMap<IpAddr, usize>,
    }
    let mut order: Vec<(&str, usize, &Port)> = Vec::new();
    let mut seen: std::collections::HashMap<(u16, &str), Seen> = Default::default();
    for (name, s) in services {
        let raw_index = cx.port_index.get(name).cloned().unwrap_or_default();
        for (k, port) in s.ports.iter().enumerate() {
            let i = raw_index.get(k).copied().unwrap_or(k);
            let at = seen.entry((port.host, port.protocol.as_str())).or_default();
            let clash = if port.host_ip.is_unspecified() {
                at.first
            } else {
                [at.by_ip.get(&port.host_ip).copied(), at.unspecified]
                    .into_iter()
                    .flatten()
                    .min()
            };
            let n = order.len();
            at.first.get_or_insert(n);
            if port.host_ip.is_unspecified() {
                at.unspecified.get_or_insert(n);
            }
            at.by_ip.entry(port.host_ip).or_insert(n);
            order.push((name, i, port));
            if let Some((other, j, o)) = clash.map(|c| order[c]) {
                cx.err(
                    Diagnostic::error(
                        KeyPath::root()
                            .key("services")
                            .key(name)
                            .key("ports")
                            .index(i),
                        format!(
                            "host port {}:{}/{} is already published by {other}",
                            port.host_ip,
                            port.host,
                            port.protocol.as_str()
                        ),
                    )
                    .hint(format!(
                        "services.{other}.ports[{j}] binds {}:{}; pick another host port",
                        o.host_ip, o.host
                    )),
                );
            }
        }
    }
}

fn check_healthy_deps(cx: &mut Ctx, services: &BTreeMap<String, Service>) {
    for (name, s) in services {
        for (dep, cond) in &s.depends_on {
            if *cond == Condition::Healthy
                && services.get(dep).is_some_and(|d| d.healthcheck.is_none())
            {
                cx.err(
                    Diagnostic::error(
                        KeyPath::root()
                            .key("services")
                            .key(name)
                            .key("depends_on")
                            .key(dep),
                        format!("`{dep}` can never become healthy: it has no healthcheck"),
                    )
                    .hint(format!(
                        "add a healthcheck to [services.{dep}], or wait for \"started\""
                    )),
                );
            }
        }
    }
}

fn check_cycles(cx: &mut Ctx, services: &BTreeMap<String, Service>) {
    // Iterative DFS with colours; report each cycle once, at its first member.
    fn visit<'a>(
        n: &'a str,
        services: &'a BTreeMap<String, Service>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        state.insert(n, 1);
        stack.push(n);
        if let Some(s) = services.get(n) {
            for dep in s.depends_on.keys() {
                match state.get(dep.as_str()).copied().unwrap_or(0) {
                    0 => visit(dep, services, state, stack, cycles),
                    1 => {
                        let from = stack.iter().position(|x| *x == dep).unwrap_or(0);
                        let mut c: Vec<String> =
                            stack[from..].iter().map(|s| s.to_string()).collect();
                        c.push(dep.clone());
                        cycles.push(c);
                    }
                    _ => {}
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for n in services.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            visit(n, services, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    for c in cycles {
        let first = &c[0];
        let next = &c[1];
        cx.err(
            Diagnostic::error(
                KeyPath::root()
                    .key("services")
                    .key(first)
                    .key("depends_on")
                    .key(next),
                format!("dependency cycle: {}", c.join(" -> ")),
            )
            .hint("services must start in some order; remove one of these depends_on entries"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// probes

const PROBE_KINDS: &[&str] = &["tcp", "http", "uds", "file", "exec", "log", "loopback_only"];

fn resolve_probe(cx: &mut Ctx, p: &KeyPath, raw: &RawProbe) -> Option<Probe> {
    let present: Vec<&str> = [
        ("tcp", raw.tcp.is_some()),
        ("http", raw.http.is_some()),
        ("uds", raw.uds.is_some()),
        ("file", raw.file.is_some()),
        ("exec", raw.exec.is_some()),
        ("log", raw.log.is_some()),
        ("loopback_only", raw.loopback_only.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    let kind = match present.as_slice() {
        [k] => *k,
        [] => {
            cx.err_key(
                Diagnostic::error(p.clone(), "probe has no kind")
                    .expected(format!("exactly one of {}", PROBE_KINDS.join(", ")))
                    .hint("for example tcp = \"127.0.0.1:8080\""),
            );
            return None;
        }
        [_, second, ..] => {
            cx.err_key(
                Diagnostic::error(
                    p.key(*second),
                    format!("probe has more than one kind: {}", present.join(", ")),
                )
                .expected(format!("exactly one of {}", PROBE_KINDS.join(", ")))
                .hint("split it into one [[probes]] entry per check"),
            );
            return None;
        }
    };

    // Fields that belong to other kinds are mistakes, not silent no-ops.
    let applies: &[&str] = match kind {
        "tcp" => &["send", "expect"],
        "http" => &["method", "status", "headers", "body", "expect"],
        "uds" => &["send", "expect", "in"],
        "file" => &["mode", "owner", "type", "contains", "json"],
        "exec" => &["in", "user", "expect_exit", "expect", "expect_stderr"],
        "log" => &["expect"],
        _ => &[],
    };
    let set: Vec<(&str, bool)> = vec![
        ("send", raw.send.is_some()),
        ("expect", raw.expect.is_some()),
        ("expect_stderr", raw.expect_stderr.is_some()),
        ("expect_exit", raw.expect_exit.is_some()),
        ("method", raw.method.is_some()),
        ("status", raw.status.is_some()),
        ("headers", !raw.headers.is_empty()),
        ("body", raw.body.is_some()),
        ("mode", raw.mode.is_some()),
        ("owner", raw.owner.is_some()),
        ("type", raw.file_type.is_some()),
        ("contains", raw.contains.is_some()),
        ("json", raw.json.is_some()),
        ("in", raw.in_service.is_some()),
        ("user", raw.user.is_some()),
    ];
    for (k, on) in set {
        if on && !applies.contains(&k) {
            cx.err_key(
                Diagnostic::error(p.key(k), format!("`{k}` does not apply to a {kind} probe"))
                    .expected(if applies.is_empty() {
                        format!(
                            "no other keys than name, within, timeout, after for a {kind} probe"
                        )
                    } else {
                        format!("for a {kind} probe: {}", applies.join(", "))
                    }),
            );
        }
    }

    let names = cx.names;
    let services = &names.services;
    let in_service = raw.in_service.as_ref().and_then(|s| {
        reference(cx, &p.key("in"), "service", s, services, "services").then(|| s.clone())
    });
    for (i, a) in raw.after.iter().enumerate() {
        reference(
            cx,
            &p.key("after").index(i),
            "service",
            a,
            services,
            "services",
        );
    }
    let expect = raw.expect.as_deref().map(Matcher::parse);
    check_regex(cx, &p.key("expect"), expect.as_ref());
    let expect_stderr = raw.expect_stderr.as_deref().map(Matcher::parse);
    check_regex(cx, &p.key("expect_stderr"), expect_stderr.as_ref());

    let (kind, default_name) = match kind {
        "tcp" => {
            let a = raw.tcp.clone().unwrap_or_default();
            check_host_port(cx, &p.key("tcp"), &a);
            (
                ProbeKind::Tcp {
                    address: a.clone(),
                    send: raw.send.clone(),
                    expect,
                },
                format!("tcp {a}"),
            )
        }
        "http" => {
            let u = raw.http.clone().unwrap_or_default();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                cx.err(
                    Diagnostic::error(p.key("http"), format!("invalid URL `{u}`"))
                        .expected("\"http://HOST:PORT/PATH\""),
                );
            }
            let method = raw
                .method
                .clone()
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase();
            if !matches!(
                method.as_str(),
                "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
            ) {
                cx.err(
                    Diagnostic::error(p.key("method"), format!("unknown HTTP method `{method}`"))
                        .expected("GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"),
                );
            }
            let status = raw.status.and_then(|s| match u16::try_from(s) {
                Ok(s) if (100..=599).contains(&s) => Some(s),
                _ => {
                    cx.err(
                        Diagnostic::error(
                            p.key("status"),
                            format!("status {s} is not an HTTP status"),
                        )
                        .expected("a number from 100 to 599"),
                    );
                    None
                }
            });
            (
                ProbeKind::Http {
                    url: u.clone(),
                    method,
                    status,
                    headers: raw.headers.clone(),
                    body: raw.body.clone(),
                    expect,
                },
                format!("http {u}"),
            )
        }
        "uds" => {
            let path = raw.uds.clone().unwrap_or_default();
            (
                ProbeKind::Uds {
                    path: path.clone(),
                    in_service: in_service.clone(),
                    send: raw.send.clone(),
                    expect,
                },
                format!("uds {path}"),
            )
        }
        "file" => {
            let rel = raw.file.clone().unwrap_or_default();
            let abs = project_path(cx, &p.key("file"), &rel, "probed file").unwrap_or_default();
            let mode_v = raw
                .mode
                .as_deref()
                .and_then(|m| mode(cx, &p.key("mode"), m));
            let owner = raw.owner.as_ref().map(|o| match o.as_str() {
                "host" => Owner::Host,
                o => o
                    .parse()
                    .map(Owner::Uid)
                    .unwrap_or_else(|_| Owner::Name(o.to_owned())),
            });
            let file_type = raw.file_type.as_deref().and_then(|t| match t {
                "file" => Some(FileType::File),
                "dir" => Some(FileType::Dir),
                "socket" => Some(FileType::Socket),
                "symlink" => Some(FileType::Symlink),
                _ => {
                    cx.err(
                        Diagnostic::error(p.key("type"), format!("unknown file type `{t}`"))
                            .expected("file, dir, socket or symlink"),
                    );
                    None
                }
            });
            (
                ProbeKind::File {
                    path: abs,
                    path_rel: rel.clone(),
                    mode: mode_v,
                    owner,
                    file_type,
                    contains: raw.contains.clone(),
                    json: raw.json.unwrap_or(false),
                },
                format!("file {rel}"),
            )
        }
        "exec" => {
            let argv = raw.exec.as_ref().map(shell_words).unwrap_or_default();
            if matches!(&raw.exec, Some(StringOrList::Many(v)) if v.is_empty()) {
                cx.err(
                    Diagnostic::error(p.key("exec"), "exec probe command is empty")
                        .expected("a command such as [\"id\", \"-u\"]"),
                );
            }
            if raw.in_service.is_none() {
                cx.err_key(
                    Diagnostic::error(
                        p.key("exec"),
                        "exec probe does not say which service it runs in",
                    )
                    .expected("`in = \"SERVICE\"`")
                    .hint(format!(
                        "services: {}",
                        services
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
            }
            let svc = in_service.clone()?;
            let expect_exit = match &raw.expect_exit {
                None => ExitExpectation::Zero,
                Some(ExpectExit::Code(0)) => ExitExpectation::Zero,
                Some(ExpectExit::Code(n)) => match i32::try_from(*n) {
                    Ok(n) if (0..=255).contains(&n) => ExitExpectation::Code(n),
                    _ => {
                        cx.err(
                            Diagnostic::error(
                                p.key("expect_exit"),
                                format!("exit code {n} is out of range"),
                            )
                            .expected("a number from 0 to 255"),
                        );
                        ExitExpectation::Zero
                    }
                },
                Some(ExpectExit::Word(w)) => match w.as_str() {
                    "zero" => ExitExpectation::Zero,
                    "nonzero" => ExitExpectation::Nonzero,
                    "denied" => ExitExpectation::Denied,
                    _ => {
                        cx.err(
                            Diagnostic::error(
                                p.key("expect_exit"),
                                format!("unknown expect_exit `{w}`"),
                            )
                            .expected("a number, \"zero\", \"nonzero\" or \"denied\""),
                        );
                        ExitExpectation::Zero
                    }
                },
            };
            if let Some(u) = &raw.user {
                check_user(cx, &p.key("user"), u);
            }
            (
                ProbeKind::Exec {
                    argv: argv.clone(),
                    in_service: svc.clone(),
                    user: raw.user.clone(),
                    expect_exit,
                    expect,
                    expect_stderr,
                },
                format!("exec {} in {svc}", argv.join(" ")),
            )
        }
        "log" => {
            let svc = raw.log.clone().unwrap_or_default();
            reference(cx, &p.key("log"), "service", &svc, services, "services");
            let Some(expect) = expect else {
                cx.err_key(
                    Diagnostic::error(p.key("log"), "log probe has nothing to look for")
                        .expected("`expect = \"TEXT\"` or `expect = \"/REGEX/\"`"),
                );
                return None;
            };
            (
                ProbeKind::Log {
                    service: svc.clone(),
                    expect,
                },
                format!("log of {svc}"),
            )
        }
        _ => {
            let port = port_number(
                cx,
                &p.key("loopback_only"),
                raw.loopback_only.unwrap_or(0),
                "port",
            )?;
            (
                ProbeKind::LoopbackOnly { port },
                format!("port {port} is loopback-only"),
            )
        }
    };

    let within_ms = opt_duration(cx, &p.key("within"), raw.within.as_ref(), 5_000);
    let timeout_ms = opt_duration(cx, &p.key("timeout"), raw.timeout.as_ref(), 2_000);
    Some(Probe {
        name: raw.name.clone().unwrap_or(default_name),
        kind,
        within_ms,
        timeout_ms,
        after: raw.after.clone(),
    })
}

fn check_regex(cx: &mut Ctx, p: &KeyPath, m: Option<&Matcher>) {
    if let Some(Matcher::Regex(r)) = m {
        if cx.valid_regexes.contains(r) {
            return;
        }
        if let Err(e) = regex::Regex::new(r) {
            let msg = e.to_string();
            let last = msg.lines().last().unwrap_or("").trim().to_owned();
            cx.err(
                Diagnostic::error(p.clone(), format!("invalid regular expression /{r}/: {}", last.trim_start_matches("error: ")))
                    .hint("a value written /like this/ is a regex; drop the slashes to match the text literally"),
            );
        } else {
            cx.valid_regexes.insert(r.clone());
        }
    }
}

fn check_host_port(cx: &mut Ctx, p: &KeyPath, a: &str) {
    let ok = a
        .rsplit_once(':')
        .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
    if !ok {
        cx.err(
            Diagnostic::error(p.clone(), format!("invalid address `{a}`"))
                .expected("\"HOST:PORT\", such as \"127.0.0.1:8080\""),
        );
    }
}

// ---------------------------------------------------------------------------------------
// workers

/// A `HOST:PORT` destination pattern: HOST may start with `*.`, PORT may be `*`.
pub fn valid_destination(e: &str) -> bool {
    e.rsplit_once(':').is_some_and(|(h, port)| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.*[]:".contains(c))
            && (port == "*" || port.parse::<u16>().is_ok_and(|n| n > 0))
    })
}

fn resolve_worker(cx: &mut Ctx, p: &KeyPath, raw: &RawWorker) -> Worker {
    let command = shell_words(&raw.command);
    if matches!(&raw.command, StringOrList::Many(v) if v.is_empty()) {
        cx.err(
            Diagnostic::error(p.key("command"), "worker command is empty")
                .expected("a command such as [\"/bin/sh\", \"-c\", \"echo hi\"]"),
        );
    }
    let policy = resolve_policy(cx, &p.key("policy"), &raw.policy);
    // A relative workdir is relative to the project, which the sandbox shows at the same
    // path as the host (when the policy lists it).
    let workdir = match raw.workdir.as_deref() {
        None => "/tmp".to_string(),
        Some(w) if w.starts_with('/') => w.to_string(),
        Some(w) => lexical_join(cx.dir, Path::new(w)).display().to_string(),
    };
    Worker {
        command,
        workdir,
        control: raw.control,
        policy,
    }
}

/// A worker's or a native service's `policy` table.
fn resolve_policy(cx: &mut Ctx, pp: &KeyPath, pol: &RawPolicy) -> Policy {
    let net = match &pol.net {
        None => NetPolicy::None,
        Some(NetPolicy_::Mode(m)) => match m.as_str() {
            "none" | "deny" => NetPolicy::None,
            "host" => NetPolicy::Host,
            _ => {
                cx.err(
                    Diagnostic::error(pp.key("net"), format!("unknown network policy `{m}`"))
                        .expected("\"none\", \"host\", or a table { default, allow, warn, deny }"),
                );
                NetPolicy::None
            }
        },
        Some(NetPolicy_::Rules(r)) => {
            let default = match r.default.as_deref() {
                None | Some("deny") => Decision::Deny,
                Some("allow") => Decision::Allow,
                Some("warn") => Decision::Warn,
                Some(o) => {
                    cx.err(
                        Diagnostic::error(
                            pp.key("net").key("default"),
                            format!("unknown decision `{o}`"),
                        )
                        .expected("\"deny\", \"allow\" or \"warn\""),
                    );
                    Decision::Deny
                }
            };
            for (list, entries) in [("allow", &r.allow), ("warn", &r.warn), ("deny", &r.deny)] {
                for (i, e) in entries.iter().enumerate() {
                    if !valid_destination(e) {
                        cx.err(
                            Diagnostic::error(pp.key("net").key(list).index(i), format!("invalid destination pattern `{e}`"))
                                .expected("\"HOST:PORT\" where HOST may start with `*.` and PORT may be `*`, such as \"*.example.com:443\""),
                        );
                    }
                }
            }
            NetPolicy::Proxy {
                default,
                allow: r.allow.clone(),
                warn: r.warn.clone(),
                deny: r.deny.clone(),
            }
        }
    };
    let fs_list = |cx: &mut Ctx, k: &str, l: &[String]| -> Vec<PathBuf> {
        l.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                if s.is_empty() {
                    cx.err(
                        Diagnostic::error(pp.key("fs").key(k).index(i), "empty path").expected(
                            "an absolute path, a path relative to sandbox.toml, or ~/PATH",
                        ),
                    );
                    return None;
                }
                let e = expand_home(s);
                Some(if e.is_absolute() {
                    lexical_join(Path::new("/"), &e)
                } else {
                    lexical_join(cx.dir, &e)
                })
            })
            .collect()
    };
    let fs = FsPolicy {
        read: fs_list(cx, "read", &pol.fs.read),
        write: fs_list(cx, "write", &pol.fs.write),
        deny: fs_list(cx, "deny", &pol.fs.deny),
    };
    for (i, e) in pol.exec.allow.iter().enumerate() {
        if !e.starts_with('/') {
            cx.err(
                Diagnostic::error(
                    pp.key("exec").key("allow").index(i),
                    format!("exec allow entry `{e}` is not an absolute path"),
                )
                .expected("an absolute path of a binary, such as \"/bin/sh\""),
            );
        }
    }
    check_env_names(cx, &pp.key("env").key("set"), pol.env.set.keys().cloned());
    let lim = &pol.limits;
    let lp = pp.key("limits");
    let positive = |cx: &mut Ctx, k: &str, v: Option<i64>| -> Option<u64> {
        v.and_then(|n| {
            if n > 0 {
                Some(n as u64)
            } else {
                cx.err(
                    Diagnostic::error(lp.key(k), format!("{k} = {n} is not a limit"))
                        .expected("a positive number"),
                );
                None
            }
        })
    };
    let limits = Limits {
        memory: lim
            .memory
            .as_ref()
            .and_then(|m| size(cx, &lp.key("memory"), m)),
        pids: positive(cx, "pids", lim.pids).map(|n| n.min(u32::MAX as u64) as u32),
        cpus: lim.cpus.filter(|c| {
            let ok = *c > 0.0 && c.is_finite();
            if !ok {
                cx.err(
                    Diagnostic::error(
                        lp.key("cpus"),
                        format!("cpus = {c} is not a positive number"),
                    )
                    .expected("a number of cores such as 0.5"),
                );
            }
            ok
        }),
        nofile: positive(cx, "nofile", lim.nofile),
        fsize: lim
            .fsize
            .as_ref()
            .and_then(|m| size(cx, &lp.key("fsize"), m)),
        timeout_ms: lim
            .timeout
            .as_ref()
            .and_then(|t| duration(cx, &lp.key("timeout"), t)),
        stop_grace_ms: lim
            .stop_grace
            .as_ref()
            .and_then(|t| duration(cx, &lp.key("stop_grace"), t)),
    };
    Policy {
        net,
        fs,
        exec_allow: pol.exec.allow.clone(),
        env: EnvPolicy {
            pass: pol.env.pass.clone(),
            set: env_map(&pol.env.set),
            deny: pol.env.deny.clone(),
        },
        limits,
    }
}

use forms::NetPolicy as NetPolicy_;
