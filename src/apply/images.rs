//! The plan's images: built from their contexts unless their content tag exists, and the
//! tag each image key resolves to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::engine::{BuildSpec, Engine};
use crate::plan::Plan;

use super::{context, ApplyError, Progress};

/// Builds the images the plan declares (unless their content tag exists) and returns
/// the tag each image key resolves to.
pub async fn build_images<E: Engine>(
    engine: &E,
    plan: &Plan,
    force: bool,
    ui: &Progress,
    built: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, ApplyError> {
    let mut tags = BTreeMap::new();
    let skip = context_skips(plan);
    for image in &plan.images {
        let key = format!("image {}", image.key);
        let ctx = context::prepare(&plan.image_project, image, &skip)?;
        if !force && engine.image_exists(&ctx.tag).await? {
            tags.insert(image.key.clone(), ctx.tag);
            continue;
        }
        let files = crate::words::count(ctx.files, "file");
        ui.step(&key, &format!("building {} ({files})", ctx.tag));
        let spec = BuildSpec::new(image, ctx.containerfile.clone());
        let spec = BuildSpec {
            tag: ctx.tag.clone(),
            ..spec
        };
        let mut lines: Vec<String> = Vec::new();
        let result = {
            let mut on_line = |l: &str| {
                ui.detail(&key, l);
                lines.push(l.to_owned());
            };
            engine.build(&spec, ctx.tar, &mut on_line).await
        };
        if let Err(mut e) = result {
            if !ui.verbose {
                let tail: Vec<&String> = lines.iter().rev().take(30).rev().collect();
                for l in tail {
                    e.message.push_str("\n  | ");
                    e.message.push_str(l);
                }
            }
            ui.done(&key, "build failed");
            return Err(e.into());
        }
        ui.done(&key, &format!("built {}", ctx.tag));
        built.push(image.key.clone());
        tags.insert(image.key.clone(), ctx.tag);
    }
    Ok(tags)
}

/// The image tag each image key resolves to, without building (for `status`).
pub fn image_tags(plan: &Plan) -> Result<BTreeMap<String, String>, ApplyError> {
    let skip = context_skips(plan);
    let mut tags = BTreeMap::new();
    for image in &plan.images {
        tags.insert(
            image.key.clone(),
            context::prepare(&plan.image_project, image, &skip)?.tag,
        );
    }
    Ok(tags)
}

/// What a build context never sends: the data tree (as planned and as the file names
/// it) and devbox's own files.
pub(crate) fn context_skips(plan: &Plan) -> [PathBuf; 4] {
    [
        plan.data.root.clone(),
        // The data root as the file names it (`verify` runs on a copy elsewhere).
        plan.dir.join(&plan.data.root_rel),
        plan.file.clone(),
        plan.file.with_file_name("sandbox.local.toml"),
    ]
}
