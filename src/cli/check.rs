//! `devbox check`: load and validate, say what was found.

use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a machine-readable summary.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    let c = &loaded.config;
    let plural = crate::words::count;
    if a.json {
        let v = serde_json::json!({
            "file": c.file,
            "project": c.project.name,
            "valid": true,
            "services": c.services.keys().collect::<Vec<_>>(),
            "images": c.images.keys().collect::<Vec<_>>(),
            "probes": c.probes.len(),
            "workers": c.workers.keys().collect::<Vec<_>>(),
            "warnings": loaded.warnings,
            "audit": super::audit::summary_line(&super::audit::located(&loaded)),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "✓ {} is valid: project {}, {}, {}, {}, {}",
            loaded.sources[0].display.display(),
            c.project.name,
            plural(c.services.len(), "service"),
            plural(c.images.len(), "image"),
            plural(c.probes.len(), "probe"),
            plural(c.workers.len(), "worker"),
        );
        println!(
            "{} (details: devbox audit)",
            super::audit::summary_line(&super::audit::located(&loaded))
        );
    }
    Ok(ExitCode::SUCCESS)
}
