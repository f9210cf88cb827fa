//! Loading `sandbox.toml`: find it, layer it with figment (defaults < `sandbox.toml` <
//! `sandbox.local.toml` < `DEVBOX_*` environment < flags), deserialize entry by entry so
//! that one run reports every problem, validate, and resolve.
//!
//! Owns the serde model and its validation; never touches an engine and never writes.
//!
//! [`load`] is the whole sequence; the layers are built in `layers`, the merged tree is
//! deserialized in `deserialize`, resolved in [`validate`], and each diagnostic located
//! by `origin` (which also answers `--explain`).

mod deserialize;
pub mod diagnostic;
pub mod forms;
mod layers;
pub mod model;
mod origin;
pub mod raw;
pub mod source;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Value};
use figment::{Figment, Profile, Provider};

pub use diagnostic::{Diagnostic, KeyPath, Origin, Seg, Severity};
pub use model::Config;
pub use origin::{explain, locate_key};
pub use source::Point;
use source::SourceFile;

pub const FILE_NAME: &str = "sandbox.toml";
pub const LOCAL_FILE_NAME: &str = "sandbox.local.toml";

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

    let figment = layers::layered(&sources, &dir, opts);
    // One merge of all layers; everything below reads this tree.
    let (root, mut pending) = match figment.data() {
        Ok(mut m) => (
            Value::from(m.remove(&Profile::Default).unwrap_or_default()),
            Vec::new(),
        ),
        Err(e) => {
            let empty = Value::from(Dict::new());
            let d = deserialize::figment_diags(&KeyPath::root(), e, &empty);
            (empty, d)
        }
    };
    let (parsed, names, more) = deserialize::parse_entries(&root);
    pending.extend(more);
    let (config, more) = validate::resolve(&parsed, &names, &file, &dir, opts.workers_only);
    pending.extend(more);

    let diagnostics: Vec<Diagnostic> = pending
        .into_iter()
        .map(|(d, point)| {
            let origin = origin::locate(&figment, &root, &sources, &d.key, point);
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every `.rs` file below `dir`, with its text.
    fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).expect("src/config is readable") {
            let path = entry.expect("src/config is readable").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("sources are UTF-8");
                out.push((path, text));
            }
        }
    }

    #[test]
    fn config_reaches_audit_only_through_its_rule_catalogue() {
        // audit reads the resolved config; config may use only the leaf holding the rules
        // (to check waiver ids), or the two modules would depend on each other.
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config"),
            &mut files,
        );
        let mut through_rules = 0;
        for (path, text) in &files {
            for (n, line) in text.lines().enumerate() {
                for (i, _) in line.match_indices("audit::") {
                    let (before, after) = (&line[..i], &line[i + "audit::".len()..]);
                    if !(before.ends_with("crate::") || before.ends_with("super::")) {
                        continue;
                    }
                    assert!(
                        after.starts_with("rules::"),
                        "{}:{}: config uses audit beyond its rule catalogue: {line}",
                        path.display(),
                        n + 1
                    );
                    through_rules += 1;
                }
            }
        }
        // The waiver check uses the catalogue; finding it proves the scan reads the code.
        assert!(
            through_rules > 0,
            "no use of the rule catalogue found in src/config"
        );
    }
}
