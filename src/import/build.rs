//! A service's `image` and `build`: built images become devbox `[images.KEY]` tables,
//! bare image names are written out in full.

use std::path::{Path, PathBuf};

use toml_edit::{InlineTable, Item, Table};

use super::service::Service;
use super::values::{normalize, pairs};
use super::yaml::{Loc, Node, V};
use super::{Ctx, Mode, Note};
use crate::config::diagnostic::KeyPath;
use crate::plan::names;

/// Sets the service's `image`, from `build` when it has one.
pub(super) fn image(ctx: &mut Ctx, s: &mut Service) {
    let (node, at) = (s.node, s.at);
    let kat = |k: &str| node.key_at(k).unwrap_or(at);
    let image_text = node.get("image").and_then(Node::text);
    if let Some(b) = node.get("build") {
        build(ctx, s, b, image_text);
    } else if let Some(i) = image_text {
        // A bare name is a Docker Hub library image at `latest`, as compose reads it.
        let i = if i.contains(['/', ':', '@']) {
            i
        } else {
            let full = format!("docker.io/library/{i}:latest");
            ctx.note(
                &format!("{}.image", s.path),
                kat("image"),
                format!("`{i}` written out as {full}"),
            );
            full
        };
        s.t.insert("image", toml_edit::value(i));
        ctx.at(s.key.key("image"), kat("image"));
    }
}

/// The build as compose writes it: a context path, or a mapping.
struct Build {
    context: String,
    dockerfile: Option<String>,
    args: Vec<(String, Option<String>, Loc)>,
    target: Option<String>,
}

fn build(ctx: &mut Ctx, s: &mut Service, b: &Node, image_text: Option<String>) {
    let (node, at, name, path) = (s.node, s.at, s.name, s.path.as_str());
    let kat = |k: &str| node.key_at(k).unwrap_or(at);
    let spec = match &b.v {
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
            Build {
                context: b.get("context").and_then(Node::text).unwrap_or(".".into()),
                dockerfile: b.get("dockerfile").and_then(Node::text),
                args: b.get("args").map(pairs).unwrap_or_default(),
                target: b.get("target").and_then(Node::text),
            }
        }
        _ => Build {
            context: b.text().unwrap_or(".".into()),
            dockerfile: None,
            args: Vec::new(),
            target: None,
        },
    };
    // A reviewer audits compose files from other people's repositories, often without
    // the build contexts: the service is audited as compose runs it, minus the build.
    let missing = (ctx.mode == Mode::Audit)
        .then(|| missing_containerfile(ctx.dir, &spec.context, spec.dockerfile.as_deref()))
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
        s.t.insert(
            "image",
            toml_edit::value(names::image_tag(&ctx.project, name, "unbuilt")),
        );
        ctx.at(s.key.key("image"), at);
        return;
    }
    // devbox's own rendering tags `localhost/devbox-PROJECT-KEY:HASH`.
    let image_key = image_text
        .as_deref()
        .and_then(|i| names::image_key(&ctx.project, i))
        .map_or_else(|| name.to_owned(), str::to_owned);
    if let (Some(i), false) = (
        &image_text,
        image_text
            .as_deref()
            .is_some_and(|i| names::is_image_of(&ctx.project, i)),
    ) {
        ctx.note(
            &format!("{path}.image"),
            kat("image"),
            format!(
                "built images are tagged by devbox ({}:HASH), not `{i}`",
                names::image_repository(&ctx.project, &image_key)
            ),
        );
    }
    let ikey = KeyPath::root().key("images").key(image_key.as_str());
    ctx.at(ikey.clone(), kat("build"));
    if !ctx.images.contains_key(&image_key) {
        let it = image_table(ctx, path, spec);
        ctx.images.insert(&image_key, Item::Table(it));
    }
    s.t.insert("image", toml_edit::value(&image_key));
    ctx.at(s.key.key("image"), kat("build"));
}

/// The `[images.KEY]` table of a build.
fn image_table(ctx: &mut Ctx, path: &str, spec: Build) -> Table {
    let Build {
        context,
        dockerfile,
        args,
        target,
    } = spec;
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
    it
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
