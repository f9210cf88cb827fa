//! `devbox reset`: remove what the project made — containers, networks, named volumes,
//! (with `--images`) the images devbox built, and the declared `.data` tree. Shows the
//! list first, then asks; without a terminal only `--yes` proceeds. Touches only
//! resources with this project's labels and devbox's names, never follows a symlink.

use std::process::ExitCode;

use super::Global;
use crate::apply::{self, DownOptions, Progress};
use crate::words::count;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not ask (required when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Also remove the images devbox built for this project.
    #[arg(long)]
    pub images: bool,
    /// Act on the project even when its containers were made from another directory
    /// with the same [project] name (another checkout).
    #[arg(long)]
    pub take_over: bool,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    let plan = crate::plan::plan(&loaded.config);
    let _lock = super::lock_project(&plan.project, &plan.dir, true)?;
    // Refuses a symlinked data root, one holding symlinks out, or one devbox could not
    // remove all of, before anything goes.
    let data = crate::data::wipe_list(&plan.data, &plan.dir)
        .map_err(|e| anyhow::anyhow!("{e}; nothing was removed"))?;
    let conn = super::engine::connect(&loaded)?;
    let rt = super::engine::runtime()?;
    let apply::observe::Made {
        containers,
        networks,
        volumes,
        images,
    } = rt.block_on(async {
        let e = &conn.engine;
        apply::check_checkout(e, &plan.project, &plan.dir, a.take_over).await?;
        let found = crate::verify::remove_leftovers(e, &loaded.config).await?;
        super::verify::print_leftovers(&found);
        Ok::<_, apply::ApplyError>(apply::observe::made(e, &plan.project, a.images).await?)
    })?;
    let mut lines = Vec::new();
    lines.extend(containers.iter().map(|c| format!("container {}", c.name)));
    lines.extend(networks.iter().map(|n| format!("network   {}", n.name)));
    lines.extend(
        volumes
            .iter()
            .map(|v| format!("volume    {} (its data is lost)", v.name)),
    );
    lines.extend(images.iter().map(|i| {
        if i.contains('/') {
            format!("image     {i}")
        } else {
            let id = i.strip_prefix("sha256:").unwrap_or(i);
            format!(
                "image     {} (untagged: replaced by a rebuild)",
                &id[..id.len().min(12)]
            )
        }
    }));
    let files = data.len();
    if files > 0 {
        lines.push(format!(
            "data      {} ({}, secrets included; made again by the next up)",
            plan.data.root.display(),
            count(files, "entry")
        ));
    }
    if lines.is_empty() {
        println!("{}: nothing to remove", plan.project);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("devbox reset will remove, for project {}:", plan.project);
    for l in &lines {
        eprintln!("  {l}");
    }
    if !super::down::confirm(a.yes, "remove all of this?")? {
        eprintln!("nothing removed");
        return Ok(ExitCode::from(super::EXIT_FAILED));
    }
    // The engine first: no container writes into .data while it goes.
    rt.block_on(async {
        let opts = DownOptions {
            volumes: true,
            timeout_s: 1,
        };
        apply::down(&conn.engine, &plan.project, &opts, &Progress::quiet()).await?;
        apply::observe::remove_images(&conn.engine, &images).await?;
        Ok::<_, apply::ApplyError>(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{} was not touched", plan.data.root.display()))?;
    apply::ports::release(&plan);
    let wiped = match crate::data::wipe(&plan.data, &plan.dir) {
        Ok(w) => w,
        Err(e) => anyhow::bail!(
            "{e}\n{} reset stopped: {}, {}, {}, {} and {} of {} removed; still there: {}",
            plan.project,
            count(containers.len(), "container"),
            count(networks.len(), "network"),
            count(volumes.len(), "volume"),
            count(images.len(), "image"),
            e.removed.len(),
            count(e.removed.len() + e.left.len(), "data entry"),
            shown(&e.left)
        ),
    };
    println!(
        "{} reset: {}, {}, {}, {}, {} removed",
        plan.project,
        count(containers.len(), "container"),
        count(networks.len(), "network"),
        count(volumes.len(), "volume"),
        count(images.len(), "image"),
        count(wiped.len(), "data entry")
    );
    Ok(ExitCode::SUCCESS)
}

/// Up to eight paths, and how many more.
fn shown(paths: &[std::path::PathBuf]) -> String {
    let mut s: Vec<String> = paths
        .iter()
        .take(8)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > 8 {
        s.push(format!("and {} more", paths.len() - 8));
    }
    s.join(", ")
}
