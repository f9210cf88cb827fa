//! `[images]`: images built from a Containerfile in the project.

use std::collections::BTreeMap;

use super::ctx::check_name;
use super::paths::project_path;
use super::values::env_map;
use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::model::Image;
use crate::config::raw::RawImage;

pub(super) fn resolve_images(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawImage>,
) -> BTreeMap<String, Image> {
    let mut images = BTreeMap::new();
    for (n, raw) in raw {
        let p = KeyPath::root().key("images").key(n);
        check_name(cx, &p, n, "image name", false);
        if let Some(img) = resolve_image(cx, &p, raw) {
            images.insert(n.clone(), img);
        }
    }
    images
}

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
