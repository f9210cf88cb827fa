//! The figment that loading reads: devbox's defaults < `sandbox.toml` <
//! `sandbox.local.toml` < `DEVBOX_*` environment < flags, each layer named for
//! `--explain`.

use std::path::Path;

use figment::providers::Env;
use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::source::SourceFile;
use super::{validate, LoadOptions};

pub(super) fn layered(sources: &[SourceFile], dir: &Path, opts: &LoadOptions) -> Figment {
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
