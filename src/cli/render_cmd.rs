//! `devbox render`: the plan for other tools. Warnings about what a format cannot
//! express go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Global;
use crate::{plan, render};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// The resolved plan as JSON.
    Json,
    /// A Compose file for docker-compose / podman-compose.
    Compose,
    /// Kubernetes Pods and PersistentVolumeClaims for `podman kube play`.
    Kube,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Write to FILE (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    let p = plan::plan(&loaded.config);
    let out = match a.format {
        Format::Json => render::json::render(&p),
        Format::Compose => render::compose::render(&p),
        Format::Kube => render::kube::render(&p),
    };
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    match &a.output {
        Some(path) => crate::fsutil::write_atomic(path, out.text.as_bytes(), 0o644)?,
        None => print!("{}", out.text),
    }
    Ok(ExitCode::SUCCESS)
}
