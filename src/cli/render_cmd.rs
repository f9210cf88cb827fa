//! `devbox render`: the plan for other tools, or one worker as an OCI bundle for runc.
//! Warnings about what a format cannot express go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use super::Global;
use crate::render::oci;
use crate::runner::rootfs::RealFs;
use crate::runner::spec;
use crate::{plan, render};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// The resolved plan as JSON.
    Json,
    /// A Compose file for docker-compose / podman-compose.
    Compose,
    /// Kubernetes Pods and PersistentVolumeClaims for `podman kube play`.
    Kube,
    /// A worker as an OCI runtime bundle for runc: DIR/config.json and DIR/rootfs.
    Oci,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  devbox render --format compose -o compose.yaml\n  devbox render --format oci transform ./bundle && runc run --bundle ./bundle devbox-transform"
)]
pub struct Args {
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Write to FILE (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE", conflicts_with = "dir")]
    pub output: Option<PathBuf>,
    /// With `--format oci`: the worker, from [workers.NAME].
    #[arg(value_name = "WORKER", required_if_eq("format", "oci"))]
    pub worker: Option<String>,
    /// With `--format oci`: the bundle directory, new, empty, or a bundle rendered before.
    #[arg(value_name = "DIR", required_if_eq("format", "oci"))]
    pub dir: Option<PathBuf>,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    if let (Format::Oci, Some(name), Some(dir)) = (a.format, &a.worker, &a.dir) {
        return bundle(g, name, dir);
    }
    if a.worker.is_some() {
        bail!("WORKER and DIR are for --format oci\nhint: devbox render --format oci WORKER DIR");
    }
    let loaded = super::load(g)?;
    let p = plan::plan(&loaded.config);
    let out = match a.format {
        Format::Json => render::json::render(&p),
        Format::Compose => render::compose::render(&p),
        Format::Kube => render::kube::render(&p),
        Format::Oci => unreachable!("clap requires WORKER and DIR with --format oci"),
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

/// `--format oci WORKER DIR`: the worker resolved as `devbox run` resolves it, written as
/// a bundle.
fn bundle(g: &Global, name: &str, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let c = super::load_for_workers(g)?.config;
    let w = super::worker(&c, name)?;
    let run_spec = spec::resolve(name, w, &[], &crate::runner::supervisor::host_env());
    let b = oci::render(&run_spec, &RealFs, &oci::Caller::current())?;
    oci::write(&b, dir)?;
    for w in &b.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "wrote {}\nrun it with: runc run --bundle {} devbox-{name}",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
