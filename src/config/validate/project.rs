//! `[project]`: its name, and the engine the services suit.

use std::collections::BTreeMap;
use std::path::Path;

use super::ctx::check_name;
use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::model::{EngineChoice, Project, Service};
use crate::config::raw::RawProject;

/// The name (the directory's when none is written) and the engine as written; the
/// engine is resolved once the services are known.
pub(super) fn resolve_project(cx: &mut Ctx, raw: Option<&RawProject>) -> Project {
    let raw_project = raw.cloned().unwrap_or_default();
    let name = match &raw_project.name {
        Some(n) => {
            check_name(
                cx,
                &KeyPath::root().key("project").key("name"),
                n,
                "project name",
                true,
            );
            n.clone()
        }
        None => default_project_name(cx.dir),
    };
    Project {
        name,
        engine: raw_project.engine.unwrap_or_default(),
        engine_reason: None,
    }
}

/// One line of `devbox up`'s output when `auto` picks the native engine.
pub const NATIVE_REASON: &str = "no service has an image: running natively (engine native)";

/// Checks that the services suit the engine, and picks one for `auto`: native when every
/// service is native, else a container engine (chosen when connecting). A project runs
/// on one engine, so native and image services do not mix.
pub(super) fn resolve_engine(
    cx: &mut Ctx,
    project: &mut Project,
    services: &BTreeMap<String, Service>,
) {
    let (native, contained): (Vec<&String>, Vec<&String>) =
        services.keys().partition(|n| services[*n].is_native());
    let svc = |n: &str| KeyPath::root().key("services").key(n);
    match project.engine {
        EngineChoice::Native => {
            for n in contained {
                cx.err(
                    Diagnostic::error(
                        svc(n).key("image"),
                        format!("service `{n}` has an image, but the engine is `native`"),
                    )
                    .hint("the native engine runs host programs: choose a container engine (engine = \"auto\", \"podman\" or \"docker\" in [project], or --engine), or remove `image` and give the service a `command` to run it natively"),
                );
            }
        }
        EngineChoice::Podman | EngineChoice::Docker => {
            let e = project.engine.as_str();
            for n in native {
                cx.err_key(
                    Diagnostic::error(
                        svc(n),
                        format!("service `{n}` has no image, but the engine is `{e}`"),
                    )
                    .hint(format!("{e} runs containers: give the service an `image`, or choose engine = \"native\" (or \"auto\") to run host programs")),
                );
            }
        }
        EngineChoice::Auto if contained.is_empty() && !native.is_empty() => {
            project.engine = EngineChoice::Native;
            project.engine_reason = Some(NATIVE_REASON.to_owned());
        }
        EngineChoice::Auto if !native.is_empty() => {
            // The fewer are the odd ones out; on a tie, the native ones.
            if native.len() <= contained.len() {
                let (n, other) = (native[0], contained[0]);
                cx.err_key(
                    Diagnostic::error(
                        svc(n),
                        format!("service `{n}` has no image, but `{other}` runs in a container"),
                    )
                    .expected("every service with an `image`, or none")
                    .hint("a project runs on one engine: give this service an `image`, or remove the images and give each service a `command`"),
                );
            } else {
                let (n, other) = (contained[0], native[0]);
                cx.err(
                    Diagnostic::error(
                        svc(n).key("image"),
                        format!("service `{n}` has an image, but `{other}` runs natively"),
                    )
                    .expected("every service with an `image`, or none")
                    .hint("a project runs on one engine: remove `image` and give this service a `command`, or give every service an image"),
                );
            }
        }
        EngineChoice::Auto => {}
    }
}

/// The directory's name made into a valid project name.
pub fn default_project_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches(|c: char| c == '-' || c == '_').to_owned();
    if s.is_empty() {
        "devbox".to_owned()
    } else {
        s.truncate(63);
        s
    }
}
