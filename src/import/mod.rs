//! Compose files in devbox's terms: `devbox import` turns one into a `sandbox.toml`, and
//! `devbox audit --compose` audits one with devbox's rules, at the compose file's lines.
//!
//! One conversion serves both. In [`Mode::Import`] a knob the compose file leaves unset
//! gets devbox's hardened default (and a note says so); in [`Mode::Audit`] it gets what
//! compose would run with (root, a writable root filesystem, the engine's default
//! capabilities, no pids limit, ports on every address), so the audit sees the file as
//! compose runs it. Nothing is dropped silently: every setting devbox cannot express is a
//! note with its position.

mod build;
mod diagnostics;
mod healthcheck;
mod keys;
mod model;
mod networks;
mod ports;
mod service;
mod values;
mod volumes;
pub mod yaml;

use std::collections::BTreeSet;
use std::path::Path;

use toml_edit::{DocumentMut, Item, Table};

use crate::config::diagnostic::KeyPath;
use yaml::{Loc, Node};

pub use diagnostics::{Extra, Note};
pub use model::{ImportError, Imported, Mode};

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
    let project = values::sanitize_name(&project);
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

    let networks = networks::networks(&mut ctx, root.get("networks"));
    let volumes = volumes::volumes(&mut ctx, root.get("volumes"));

    let mut svc_tables = Table::new();
    svc_tables.set_implicit(true);
    for (name, at, node) in services.entries() {
        let key = KeyPath::root().key("services").key(name.as_str());
        ctx.at(key.clone(), *at);
        let t = service::service(&mut ctx, name, *at, node);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::healthcheck::{tcp_port as tcp_check_port, tcp_shell};

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

    // Regression: deploy's notes named `services.web.deploy.deploy.KEY`.
    #[test]
    fn deploy_notes_name_the_key_once() {
        let y = "services:\n  web:\n    image: nginx:1.27\n    deploy:\n      replicas: 2\n      resources:\n        reservations:\n          memory: 1g\n";
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
                "services.web.deploy.replicas",
                "services.web.deploy.resources.reservations"
            ],
            "{:#?}",
            i.notes
        );
    }

    #[test]
    fn devbox_tcp_healthchecks_come_back_as_tcp() {
        let s = tcp_shell(7777);
        assert_eq!(tcp_check_port(&s), Some(7777));
        assert_eq!(tcp_check_port("nc -z 127.0.0.1 7777"), None);
    }
}
