//! Semantic validation: turns the raw model into the resolved one, collecting every
//! problem (not just the first) as a diagnostic with its key path.
//!
//! Reads the file system only to check that referenced paths exist and do not escape
//! the project through symlinks; never writes.
//!
//! One file per section of `sandbox.toml`, visited in the order of [`resolve`]
//! (`project`, `data`, `images`, `volumes`, `networks`, `services`, `probes`, `workers`;
//! `policy` is shared by workers and native services), and `services/` one file per
//! group of keys. `ctx` holds what a run carries, `values` and `paths` the checks every
//! section makes.

mod ctx;
mod data;
mod images;
mod networks;
mod paths;
mod policy;
mod probes;
mod project;
mod services;
mod values;
mod volumes;
mod workers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::diagnostic::{Diagnostic, Severity};
use super::model::Config;
use super::raw::{
    RawData, RawImage, RawNetwork, RawProbe, RawProject, RawService, RawVolume, RawWorker,
};
use super::source::Point;
use ctx::Ctx;

pub use data::parse_secret;
pub use policy::valid_destination;
pub use project::{default_project_name, NATIVE_REASON};
pub use services::{CAPABILITIES, DEFAULT_PIDS_LIMIT, DEFAULT_USER};
pub use values::{parse_duration_ms, parse_mode, parse_size};

/// A diagnostic waiting to be located in a file.
pub type Pending = (Diagnostic, Point);

/// Names of every entry that exists in the file, even ones whose body failed to parse,
/// so that references to them are not reported as unknown.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pub images: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub networks: BTreeSet<String>,
    pub services: BTreeSet<String>,
}

/// A raw file whose entries were deserialized one by one: entries that failed are
/// absent here but present in `names`.
#[derive(Debug, Default)]
pub struct Parsed {
    pub project: Option<RawProject>,
    pub data: Option<RawData>,
    pub images: BTreeMap<String, RawImage>,
    pub volumes: BTreeMap<String, RawVolume>,
    pub networks: BTreeMap<String, RawNetwork>,
    pub services: BTreeMap<String, RawService>,
    /// Services parsed only once their bad keys were removed: one of those may have been
    /// a misspelt `image` or `command`, so their absence is not reported as well.
    pub repaired_services: BTreeSet<String>,
    pub probes: Vec<Option<RawProbe>>,
    pub workers: BTreeMap<String, RawWorker>,
}

/// Validates and resolves. Returns the config (when there were no errors) and all
/// diagnostics, warnings included.
///
/// `workers_only` (for `devbox run`) leaves the engine as written: workers run on
/// devbox's runner whatever the engine, so the services' kinds need not agree with it.
pub fn resolve(
    parsed: &Parsed,
    names: &Names,
    file: &Path,
    dir: &Path,
    workers_only: bool,
) -> (Option<Config>, Vec<Pending>) {
    let mut cx = Ctx::new(dir, names);
    let mut project = project::resolve_project(&mut cx, parsed.project.as_ref());
    let data = data::resolve_data(&mut cx, parsed.data.clone().unwrap_or_default());
    let images = images::resolve_images(&mut cx, &parsed.images);
    let volumes = volumes::resolve_volumes(&mut cx, &parsed.volumes);
    let networks = networks::resolve_networks(&mut cx, &parsed.networks);
    let services = services::resolve_services(&mut cx, &parsed.services, &parsed.repaired_services);
    if !workers_only {
        project::resolve_engine(&mut cx, &mut project, &services);
    }
    let probes = probes::resolve_probes(&mut cx, &parsed.probes);
    let workers = workers::resolve_workers(&mut cx, &parsed.workers);

    let has_errors = cx.out.iter().any(|(d, _)| d.severity == Severity::Error);
    let config = (!has_errors).then(|| Config {
        file: file.to_path_buf(),
        dir: dir.to_path_buf(),
        project,
        data,
        images,
        volumes,
        networks,
        services,
        probes,
        workers,
    });
    (config, cx.out)
}
