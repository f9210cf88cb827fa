//! Loading `sandbox.toml`: find it, layer it with figment (defaults < `sandbox.toml` <
//! `sandbox.local.toml` < `DEVBOX_*` environment < flags), deserialize entry by entry so
//! that one run reports every problem, validate, and resolve.
//!
//! Owns the serde model and its validation; never touches an engine and never writes.

pub mod diagnostic;
pub mod forms;
pub mod model;
pub mod raw;
pub mod source;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::Env;
use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;

pub use diagnostic::{Diagnostic, KeyPath, Origin, Seg, Severity};
pub use model::Config;
pub use source::Point;
use source::SourceFile;
use validate::{Names, Parsed};

pub const FILE_NAME: &str = "sandbox.toml";
pub const LOCAL_FILE_NAME: &str = "sandbox.local.toml";

const SECTIONS: &[&str] = &[
    "project", "data", "images", "volumes", "networks", "services", "probes", "workers",
];

/// What the command line contributes to loading.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f/--file`; without it, `sandbox.toml` is searched upward from `cwd`.
    pub file: Option<PathBuf>,
    pub cwd: PathBuf,
    /// `--engine`
    pub engine: Option<raw::EngineChoice>,
    /// `-p/--project-name`
    pub project_name: Option<String>,
    /// The file's text, when it is made in memory (an imported compose file) rather
    /// than read from `file`; `sandbox.local.toml` is then not layered on.
    pub text: Option<String>,
    /// Loading for `devbox run`: the engine is left as written and need not suit the
    /// services (workers run on devbox's runner whatever the engine).
    pub workers_only: bool,
}

/// A loaded, valid configuration and what it was made from.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
    pub figment: Figment,
    pub sources: Vec<SourceFile>,
    /// The figment's merged tree, made once: locating each of many findings must not
    /// merge the layers again.
    root: Value,
}

/// Every problem found; nothing was changed.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

/// At most this many diagnostics are printed for one run; the rest are counted. A file
/// with thousands of the same mistake is fixed the same way after the first few.
pub const MAX_SHOWN: usize = 50;

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.diagnostics.iter().take(MAX_SHOWN) {
            writeln!(f, "{d}")?;
        }
        let more = self.diagnostics.len().saturating_sub(MAX_SHOWN);
        if more > 0 {
            writeln!(
                f,
                "note: and {more} more like these, not shown (devbox prints the first {MAX_SHOWN})\n"
            )?;
        }
        let n = self
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        write!(
            f,
            "error: {} has {n} problem{}; nothing was changed",
            diagnostic::escape_controls(&self.file.display().to_string()),
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn single(file: PathBuf, d: Diagnostic) -> Self {
        Self {
            file,
            diagnostics: vec![d],
        }
    }
}

/// Finds `sandbox.toml` in `start` or the nearest parent directory, as compose does.
pub fn find_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(FILE_NAME))
        .find(|p| p.is_file())
}

/// The path shown to the user: relative to the working directory when below it.
pub fn display_path(path: &Path, cwd: &Path) -> PathBuf {
    path.strip_prefix(cwd)
        .ok()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| path.to_path_buf())
}

/// `p` made absolute against `cwd`, with `.` and `..` resolved lexically.
pub fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Loads, validates and resolves the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let file = match &opts.file {
        Some(f) => absolute(f, &opts.cwd),
        None => find_file(&opts.cwd).ok_or_else(|| {
            ConfigError::single(
                PathBuf::from(FILE_NAME),
                Diagnostic::error(
                    KeyPath::root(),
                    format!(
                        "no {FILE_NAME} in {} or any parent directory",
                        opts.cwd.display()
                    ),
                )
                .hint("create one with `devbox init`, or point at one with -f/--file"),
            )
        })?,
    };
    let display = display_path(&file, &opts.cwd);
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.cwd.clone());

    let main = match &opts.text {
        Some(t) => SourceFile::from_bytes(file.clone(), display.clone(), t.clone().into_bytes()),
        None => SourceFile::read(&file, display.clone()),
    }
    .map_err(|d| ConfigError::single(display.clone(), *d))?;
    let mut sources = vec![main];
    let local = dir.join(LOCAL_FILE_NAME);
    if opts.text.is_none() && local.is_file() {
        let shown = display_path(&local, &opts.cwd);
        sources.push(
            SourceFile::read(&local, shown.clone()).map_err(|d| ConfigError::single(shown, *d))?,
        );
    }

    let figment = layered(&sources, &dir, opts);
    // One merge of all layers; everything below reads this tree.
    let (root, mut pending) = match figment.data() {
        Ok(mut m) => (
            Value::from(m.remove(&Profile::Default).unwrap_or_default()),
            Vec::new(),
        ),
        Err(e) => {
            let empty = Value::from(Dict::new());
            let d = figment_diags(&KeyPath::root(), e, &empty);
            (empty, d)
        }
    };
    let (parsed, names, more) = parse_entries(&root);
    pending.extend(more);
    let (config, more) = validate::resolve(&parsed, &names, &file, &dir, opts.workers_only);
    pending.extend(more);

    let diagnostics: Vec<Diagnostic> = pending
        .into_iter()
        .map(|(d, point)| {
            let origin = locate(&figment, &root, &sources, &d.key, point);
            d.with_origin(origin)
        })
        .collect();
    let mut diagnostics = diagnostics;
    diagnostics.sort_by_key(|d| match &d.origin {
        Some(Origin::File {
            file, line, column, ..
        }) => (
            0,
            sources.iter().position(|s| &s.display == file),
            *line,
            *column,
        ),
        _ => (1, None, 0, 0),
    });
    let (errors, warnings): (Vec<_>, Vec<_>) = diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    match config {
        Some(config) if errors.is_empty() => Ok(Loaded {
            config,
            warnings,
            figment,
            sources,
            root,
        }),
        _ => Err(ConfigError {
            file: display,
            diagnostics: errors.into_iter().chain(warnings).collect(),
        }),
    }
}

fn layered(sources: &[SourceFile], dir: &Path, opts: &LoadOptions) -> Figment {
    let defaults: Dict = [
        ("project".to_owned(), {
            let mut p = Dict::new();
            p.insert("name".into(), validate::default_project_name(dir).into());
            p.insert("engine".into(), "auto".into());
            Value::from(p)
        }),
        ("data".to_owned(), {
            let mut d = Dict::new();
            d.insert("root".into(), ".data".into());
            Value::from(d)
        }),
    ]
    .into_iter()
    .collect();
    let mut fig = Figment::new().merge(Layer {
        name: "devbox default",
        data: defaults,
        keys: &[],
    });
    for s in sources {
        // The document parsed above, tagged with its file for `--explain` (figment's own
        // Toml provider would parse the text a second time: a third of load's time).
        fig = fig.merge(ParsedFile(s));
    }
    fig = fig
        .merge(
            Env::raw().filter_map(|k| match k.as_str().to_ascii_lowercase().as_str() {
                "devbox_engine" => Some("project.engine".into()),
                "devbox_project_name" => Some("project.name".into()),
                _ => None,
            }),
        )
        .merge(Env::prefixed("DEVBOX__").split("__"));
    let mut flags = Dict::new();
    let mut project = Dict::new();
    if let Some(e) = opts.engine {
        project.insert("engine".into(), e.as_str().into());
    }
    if let Some(n) = &opts.project_name {
        project.insert("name".into(), n.as_str().into());
    }
    if !project.is_empty() {
        flags.insert("project".into(), Value::from(project));
    }
    fig.merge(Layer {
        name: "command-line flag",
        data: flags,
        keys: &[
            ("project.engine", "--engine"),
            ("project.name", "--project-name"),
        ],
    })
}

/// A parsed sandbox.toml as a figment layer, named and sourced as figment's Toml file
/// provider names it.
struct ParsedFile<'a>(&'a SourceFile);

impl Provider for ParsedFile<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.0.path.as_path())
    }

    fn data(&self) -> Result<figment::value::Map<Profile, Dict>, figment::Error> {
        let dict = table_dict(self.0.doc.as_table());
        Ok(Profile::Default.collect(dict))
    }
}

fn table_dict(t: &dyn toml_edit::TableLike) -> Dict {
    t.iter()
        .map(|(k, v)| (k.to_owned(), item_value(v)))
        .collect()
}

fn item_value(item: &toml_edit::Item) -> Value {
    match item {
        toml_edit::Item::Value(v) => value_of(v),
        toml_edit::Item::Table(t) => Value::from(table_dict(t)),
        toml_edit::Item::ArrayOfTables(a) => Value::from(
            a.iter()
                .map(|t| Value::from(table_dict(t)))
                .collect::<Vec<_>>(),
        ),
        toml_edit::Item::None => Value::from(Dict::new()),
    }
}

fn value_of(v: &toml_edit::Value) -> Value {
    match v {
        toml_edit::Value::String(s) => Value::from(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::from(*i.value()),
        toml_edit::Value::Float(f) => Value::from(*f.value()),
        toml_edit::Value::Boolean(b) => Value::from(*b.value()),
        toml_edit::Value::Datetime(d) => Value::from(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::from(a.iter().map(value_of).collect::<Vec<_>>()),
        toml_edit::Value::InlineTable(t) => Value::from(table_dict(t)),
    }
}

/// A fixed set of values with a name for `--explain`.
struct Layer {
    name: &'static str,
    data: Dict,
    keys: &'static [(&'static str, &'static str)],
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let keys = self.keys;
        Metadata::named(self.name).interpolater(move |_: &Profile, k: &[&str]| {
            let joined = k.join(".");
            keys.iter()
                .find(|(key, _)| *key == joined)
                .map_or(joined.clone(), |(_, flag)| (*flag).to_owned())
        })
    }

    fn data(&self) -> Result<figment::value::Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

/// Deserializes section by section and entry by entry, so that a bad service does not
/// hide a bad probe.
fn parse_entries(root_value: &Value) -> (Parsed, Names, Vec<validate::Pending>) {
    let mut out = Vec::new();
    let mut parsed = Parsed::default();
    let mut names = Names::default();
    let empty = Dict::new();
    let root = root_value.as_dict().unwrap_or(&empty);
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let d = Diagnostic::error(KeyPath::root().key(key), format!("unknown key `{key}`"))
                .expected(format!("one of {}", SECTIONS.join(", ")));
            let d = d
                .suggest(key, SECTIONS.iter().copied())
                .or_hint("see `devbox schema` for every key");
            out.push((d, Point::Key));
        }
    }

    fn one<T: DeserializeOwned>(
        v: &Value,
        path: &KeyPath,
        root: &Value,
        out: &mut Vec<validate::Pending>,
    ) -> Option<T> {
        match v.deserialize::<T>() {
            Ok(t) => Some(t),
            Err(e) => retry_without_bad_keys(v, e, path, root, out),
        }
    }
    /// The entries of a table section, borrowed; a section of the wrong type is reported.
    fn entries<'a>(
        root: &'a Dict,
        section: &str,
        root_value: &Value,
        out: &mut Vec<validate::Pending>,
    ) -> Vec<(&'a String, &'a Value)> {
        match root.get(section) {
            None => Vec::new(),
            Some(Value::Dict(_, d)) => d.iter().collect(),
            Some(v) => {
                let _ = one::<BTreeMap<String, Value>>(
                    v,
                    &KeyPath::root().key(section),
                    root_value,
                    out,
                );
                Vec::new()
            }
        }
    }
    let base = KeyPath::root();
    if let Some(v) = root.get("project") {
        parsed.project = one(v, &base.key("project"), root_value, &mut out);
    }
    if let Some(v) = root.get("data") {
        // Entry by entry, so a bad dir does not hide a bad secret.
        let dp = base.key("data");
        if let Some(shell) = one::<DataShell>(v, &dp, root_value, &mut out) {
            let mut data = raw::RawData {
                root: shell.root,
                ..Default::default()
            };
            // Entries that failed are reported and left out; the config is invalid anyway.
            for (k, v) in shell.dirs {
                if let Some(d) = one(&v, &dp.key("dirs").key(&k), root_value, &mut out) {
                    data.dirs.insert(k, d);
                }
            }
            for (k, v) in shell.files {
                if let Some(f) = one(&v, &dp.key("files").key(&k), root_value, &mut out) {
                    data.files.insert(k, f);
                }
            }
            parsed.data = Some(data);
        }
    }
    macro_rules! section {
        ($name:literal, $field:ident, $names:expr) => {
            for (k, v) in entries(root, $name, root_value, &mut out) {
                $names.insert(k.clone());
                if let Some(t) = one(v, &base.key($name).key(k), root_value, &mut out) {
                    parsed.$field.insert(k.clone(), t);
                }
            }
        };
    }
    section!("images", images, names.images);
    section!("volumes", volumes, names.volumes);
    section!("networks", networks, names.networks);
    for (k, v) in entries(root, "services", root_value, &mut out) {
        names.services.insert(k.clone());
        let before = out.len();
        if let Some(t) = one(v, &base.key("services").key(k), root_value, &mut out) {
            parsed.services.insert(k.clone(), t);
        }
        if out.len() > before {
            parsed.repaired_services.insert(k.clone());
        }
    }
    let mut workers = std::collections::BTreeSet::new();
    section!("workers", workers, workers);
    if let Some(v) = root.get("probes") {
        if let Some(list) = one::<Vec<Value>>(v, &base.key("probes"), root_value, &mut out) {
            for (i, p) in list.iter().enumerate() {
                parsed
                    .probes
                    .push(one(p, &base.key("probes").index(i), root_value, &mut out));
            }
        }
    }
    (parsed, names, out)
}

/// serde stops at the first error in an entry. To report every problem in one run, the
/// offending key is removed and the entry deserialized again, until it parses or what
/// is left cannot (a required key was the bad one). The entry that finally parses is
/// still validated, so its other mistakes are found too; the config stays invalid.
fn retry_without_bad_keys<T: DeserializeOwned>(
    v: &Value,
    first: figment::Error,
    path: &KeyPath,
    root: &Value,
    out: &mut Vec<validate::Pending>,
) -> Option<T> {
    let mut cur = v.clone();
    let mut err = first;
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut suggested: Vec<Vec<String>> = Vec::new();
    for _ in 0..64 {
        let mut progressed = false;
        let mut blocked = false;
        for e in err {
            // A key we removed ourselves, or one a removed typo already suggests, is not
            // also reported as missing; but without it the entry cannot be built.
            if let Kind::MissingField(f) = &e.kind {
                let mut p = e.path.clone();
                p.push(f.to_string());
                if removed.contains(&p) || suggested.contains(&p) {
                    blocked = true;
                    continue;
                }
            }
            if let Kind::UnknownField(field, expected) = &e.kind {
                if let Some(s) = diagnostic::did_you_mean(field, expected.iter().copied()) {
                    let mut p = e.path.clone();
                    p.pop();
                    p.push(s.to_owned());
                    suggested.push(p);
                }
            }
            if let Some(k) = remove_nearest_key(&mut cur, &e.path) {
                removed.push(k);
                progressed = true;
            }
            out.extend(figment_diags(path, e, root));
        }
        if blocked || !progressed {
            return None;
        }
        match cur.deserialize::<T>() {
            Ok(t) => return Some(t),
            Err(e) => err = e,
        }
    }
    None
}

/// Removes the key at `segs`, or its nearest ancestor that is a key of a table (never
/// an array element, so that later indices keep pointing at the same items).
fn remove_nearest_key(v: &mut Value, segs: &[String]) -> Option<Vec<String>> {
    (1..=segs.len()).rev().find_map(|end| {
        let key = &segs[end - 1];
        match node_at(v, &segs[..end - 1])? {
            Value::Dict(_, d) => d.remove(key).map(|_| segs[..end].to_vec()),
            _ => None,
        }
    })
}

fn node_at<'a>(v: &'a mut Value, segs: &[String]) -> Option<&'a mut Value> {
    match segs.split_first() {
        None => Some(v),
        Some((s, rest)) => {
            let next = match v {
                Value::Dict(_, d) => d.get_mut(s)?,
                Value::Array(_, a) => a.get_mut(s.parse::<usize>().ok()?)?,
                _ => return None,
            };
            node_at(next, rest)
        }
    }
}

/// `[data]` with its entries still unparsed.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DataShell {
    root: Option<String>,
    #[serde(default)]
    dirs: BTreeMap<String, Value>,
    #[serde(default)]
    files: BTreeMap<String, Value>,
}

/// The value at `path`, walking dicts and arrays.
fn value_at<'a>(root: &'a Value, path: &KeyPath) -> Option<&'a Value> {
    let mut v = root;
    for seg in &path.0 {
        v = match (seg, v) {
            (Seg::Key(k), Value::Dict(_, d)) => d.get(k)?,
            (Seg::Index(i), Value::Array(_, a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// serde's words for TOML's: a sequence is a list, a map a table.
fn toml_words(s: &str) -> String {
    let mut out = s
        .replace("a sequence", "a list")
        .replace("a map", "a table")
        .replace("a boolean", "true or false");
    for (from, to) in [
        ("signed int `", "integer "),
        ("unsigned int `", "integer "),
        ("floating point `", "number "),
        ("bool `", ""),
    ] {
        if let Some(i) = out.find(from) {
            let rest = &out[i + from.len()..];
            if let Some(j) = rest.find('`') {
                out = format!("{}{to}{}{}", &out[..i], &rest[..j], &rest[j + 1..]);
            }
        }
    }
    match out.as_str() {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        _ => out,
    }
}

/// Turns figment's errors (paths relative to the deserialized value) into diagnostics.
fn figment_diags(prefix: &KeyPath, err: figment::Error, root: &Value) -> Vec<validate::Pending> {
    err.into_iter()
        .map(|e| {
            let is_array = |p: &KeyPath| matches!(value_at(root, p), Some(Value::Array(..)));
            let path = KeyPath::from_figment(prefix, &e.path, &is_array);
            let key_name = match path.0.last() {
                Some(Seg::Key(k)) => k.clone(),
                Some(Seg::Index(i)) => format!("[{i}]"),
                None => String::new(),
            };
            match &e.kind {
                Kind::UnknownField(field, expected) => {
                    let d = Diagnostic::error(path.clone(), format!("unknown key `{field}`"))
                        .expected(format!("one of {}", expected.join(", ")));
                    let d = d
                        .suggest(field, expected.iter().copied())
                        .or_hint("see `devbox schema` for every key");
                    (d, Point::Key)
                }
                Kind::MissingField(field) => (
                    Diagnostic::error(path.clone(), format!("missing key `{field}`"))
                        .hint(format!("add `{field} = ...` to this table")),
                    Point::Key,
                ),
                Kind::InvalidType(actual, expected) => {
                    let mut d = Diagnostic::error(
                        path.clone(),
                        format!(
                            "wrong type for `{key_name}`: found {}",
                            toml_words(&actual.to_string())
                        ),
                    )
                    .expected(toml_words(expected));
                    if key_name == "mode" {
                        d = d.hint("write the mode as a quoted octal string, e.g. mode = \"0700\"");
                    } else if expected.contains("string") && !expected.contains("table") {
                        d = d.hint("quote the value");
                    }
                    (d, Point::Value)
                }
                Kind::InvalidValue(actual, expected) => (
                    Diagnostic::error(
                        path.clone(),
                        format!("invalid value for `{key_name}`: {actual}"),
                    )
                    .expected(expected.clone()),
                    Point::Value,
                ),
                Kind::UnknownVariant(v, expected) => {
                    let d = Diagnostic::error(
                        path.clone(),
                        format!("unknown value `{v}` for `{key_name}`"),
                    )
                    .expected(format!("one of {}", expected.join(", ")));
                    let d = d.suggest(v, expected.iter().copied());
                    (d, Point::Value)
                }
                Kind::Message(m) => (
                    Diagnostic::error(path.clone(), format!("invalid value for `{key_name}`"))
                        .expected(m.clone()),
                    Point::Value,
                ),
                Kind::InvalidLength(n, expected) => (
                    Diagnostic::error(
                        path.clone(),
                        format!("wrong number of items for `{key_name}`: {n}"),
                    )
                    .expected(expected.clone()),
                    Point::Value,
                ),
                other => (
                    Diagnostic::error(path.clone(), other.to_string()),
                    Point::Value,
                ),
            }
        })
        .collect()
}

/// Where the value at `path` came from: a file position, an environment variable or a flag.
fn locate(
    figment: &Figment,
    root: &Value,
    sources: &[SourceFile],
    path: &KeyPath,
    point: Point,
) -> Option<Origin> {
    // The deepest existing value tells which provider supplied it.
    let mut p = path.clone();
    let meta = loop {
        if let Some(v) = value_at(root, &p) {
            if let Some(m) = figment.get_metadata(v.tag()) {
                break Some((m, p.clone()));
            }
        }
        if p.0.pop().is_none() {
            break None;
        }
    };
    if let Some((m, found)) = &meta {
        if m.name.contains("environment") || m.name == "command-line flag" {
            let keys: Vec<String> = found
                .0
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => k.clone(),
                    Seg::Index(i) => i.to_string(),
                })
                .collect();
            return Some(if m.name == "command-line flag" {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                Origin::Flag {
                    flag: m.interpolate(&Profile::Default, &keys),
                }
            } else {
                let generic = format!("DEVBOX__{}", keys.join("__").to_uppercase());
                let name = match keys.join(".").as_str() {
                    _ if std::env::var_os(&generic).is_some() => generic,
                    "project.engine" => "DEVBOX_ENGINE".to_owned(),
                    "project.name" => "DEVBOX_PROJECT_NAME".to_owned(),
                    _ => generic,
                };
                Origin::Env { var: name }
            });
        }
    }
    if let Some((m, _)) = &meta {
        if m.name == "devbox default" {
            return None;
        }
        if let Some(figment::Source::File(f)) = &m.source {
            if let Some(s) = sources.iter().find(|s| &s.path == f) {
                return s.locate(path, point);
            }
        }
    }
    // Files, highest priority first: the first that holds the key is where it was written.
    sources
        .iter()
        .rev()
        .find(|s| s.contains(path))
        .or_else(|| sources.first())
        .and_then(|s| s.locate(path, point))
}

/// Where `key` is in the loaded files (or the nearest enclosing entry that is).
pub fn locate_key(loaded: &Loaded, key: &KeyPath, point: Point) -> Option<Origin> {
    locate(&loaded.figment, &loaded.root, &loaded.sources, key, point)
}

/// Where the value of `key` (dotted) came from, for `devbox config --explain`.
pub fn explain(loaded: &Loaded, key: &str) -> Option<String> {
    let path = KeyPath(
        key.split('.')
            .map(|s| match s.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(s.to_owned()),
            })
            .collect(),
    );
    let root = loaded
        .figment
        .data()
        .ok()
        .and_then(|mut m| m.remove(&Profile::Default))
        .map(Value::from)?;
    let value = value_at(&root, &path)?;
    let meta = loaded.figment.get_metadata(value.tag());
    let origin = locate(&loaded.figment, &root, &loaded.sources, &path, Point::Value);
    let shown = serde_json::to_string(&value_to_json(value)).unwrap_or_default();
    let from = match (origin, meta) {
        (
            Some(Origin::File {
                file, line, column, ..
            }),
            _,
        ) => format!("{}:{line}:{column}", file.display()),
        (Some(Origin::Env { var }), _) => format!("environment variable {var}"),
        (Some(Origin::Flag { flag }), _) => format!("command-line flag {flag}"),
        (None, Some(m)) => m.name.to_string(),
        (None, None) => "unknown".to_owned(),
    };
    let mut out = format!("{key} = {shown}\n  from {from}");
    // `auto` as written, `native` as resolved: say which and why.
    if key == "project.engine" {
        if let Some(reason) = &loaded.config.project.engine_reason {
            out.push_str(&format!("\n  resolved: {reason}"));
        }
    }
    Some(out)
}

fn value_to_json(v: &Value) -> serde_json::Value {
    v.deserialize::<serde_json::Value>()
        .unwrap_or(serde_json::Value::Null)
}
