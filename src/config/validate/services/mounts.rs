//! A service's file system: `volumes` (named volumes and bind mounts), `read_only` and
//! `tmpfs`.

use std::path::Path;

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::VolumeSpec;
use crate::config::model::{Mount, Tmpfs};
use crate::config::raw::RawService;
use crate::config::validate::ctx::reference;
use crate::config::validate::paths::{expand_home, lexical_join, project_path};
use crate::config::validate::values::{parse_mode, parse_size};
use crate::config::validate::Ctx;

pub(super) struct Filesystem {
    pub(super) mounts: Vec<Mount>,
    pub(super) read_only: bool,
    pub(super) tmpfs: Vec<Tmpfs>,
}

/// The mounts (one per target), the root's writability (defaulted) and the tmpfs mounts.
pub(super) fn filesystem(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: &RawService,
    defaults: &mut Vec<String>,
) -> Filesystem {
    let mut mounts = Vec::new();
    for (i, v) in raw.volumes.iter().enumerate() {
        if let Some(m) = parse_mount(cx, &p.key("volumes").index(i), v) {
            if mounts.iter().any(|x: &Mount| x.target() == m.target()) {
                cx.err(
                    Diagnostic::error(
                        p.key("volumes").index(i),
                        format!("two volumes mount at `{}`", m.target()),
                    )
                    .hint("each container path may be mounted once"),
                );
            }
            mounts.push(m);
        }
    }

    let read_only = raw.read_only.unwrap_or_else(|| {
        defaults.push("read_only = true".into());
        true
    });

    let mut tmpfs = Vec::new();
    for (i, t) in raw.tmpfs.iter().enumerate() {
        let (path, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        if !path.starts_with('/') {
            cx.err(
                Diagnostic::error(p.key("tmpfs").index(i), format!("tmpfs path `{path}` is not absolute"))
                    .expected("an absolute container path, optionally with options: \"/tmp:size=64m,mode=1777\""),
            );
            continue;
        }
        let options: Vec<String> = opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        for o in &options {
            let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
            let ok = match k {
                "size" => parse_size(v).is_some(),
                "mode" => parse_mode(v).is_some(),
                "uid" | "gid" | "nr_inodes" => v.parse::<u64>().is_ok(),
                "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev" | "ro" | "rw" => {
                    v.is_empty()
                }
                _ => false,
            };
            if !ok {
                cx.err(
                    Diagnostic::error(p.key("tmpfs").index(i), format!("invalid tmpfs option `{o}`"))
                        .expected("size=N, mode=OCTAL, uid=N, gid=N, nr_inodes=N, exec, noexec, nosuid, nodev, ro, rw"),
                );
            }
        }
        tmpfs.push(Tmpfs {
            path: path.to_owned(),
            options,
        });
    }
    Filesystem {
        mounts,
        read_only,
        tmpfs,
    }
}

fn parse_mount(cx: &mut Ctx, p: &KeyPath, spec: &VolumeSpec) -> Option<Mount> {
    let names = cx.names;
    let (source, target, read_only, allow_outside) = match spec {
        VolumeSpec::Long(l) => (
            l.source.clone(),
            l.target.clone(),
            l.read_only,
            l.allow_outside,
        ),
        VolumeSpec::Short(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (src, dst, ro) = match parts.as_slice() {
                [src, dst] => (*src, *dst, false),
                [src, dst, "ro"] => (*src, *dst, true),
                [src, dst, "rw"] => (*src, *dst, false),
                [_, _, opt] => {
                    cx.err(
                        Diagnostic::error(
                            p.clone(),
                            format!("unknown volume option `{opt}` in `{s}`"),
                        )
                        .expected("\"ro\" or \"rw\""),
                    );
                    return None;
                }
                _ => {
                    cx.err(
                        Diagnostic::error(p.clone(), format!("invalid volume `{s}`"))
                            .expected("\"SOURCE:TARGET\" or \"SOURCE:TARGET:ro\"")
                            .hint("a SOURCE starting with . or / is a host path; a bare name is a named volume from [volumes]"),
                    );
                    return None;
                }
            };
            (src.to_owned(), dst.to_owned(), ro, false)
        }
    };
    if !target.starts_with('/') {
        cx.err(
            Diagnostic::error(
                p.clone(),
                format!("volume target `{target}` is not absolute"),
            )
            .expected("an absolute path inside the container"),
        );
        return None;
    }
    let is_path = source.starts_with('.') || source.starts_with('/') || source.starts_with('~');
    if !is_path {
        let known = &names.volumes;
        if !reference(cx, p, "volume", &source, known, "volumes") {
            return None;
        }
        return Some(Mount::Volume {
            name: source,
            target,
            read_only,
        });
    }
    let abs = if allow_outside {
        let expanded = expand_home(&source);
        if expanded.is_absolute() {
            expanded
        } else {
            lexical_join(cx.dir, &expanded)
        }
    } else {
        if source.starts_with('~') {
            cx.err(
                Diagnostic::error(p.clone(), format!("bind source `{source}` is outside the project"))
                    .expected("a path inside the project, such as \"./src\"")
                    .hint("to mount a host path outside the project, use the long form with allow_outside = true (devbox audit reports it)"),
            );
            return None;
        }
        let rel = if Path::new(&source).is_absolute() {
            match Path::new(&source).strip_prefix(cx.dir) {
                Ok(r) => r.to_string_lossy().into_owned(),
                Err(_) => {
                    cx.err(
                        Diagnostic::error(p.clone(), format!("bind source `{source}` is outside the project"))
                            .expected("a path inside the project, such as \"./src\"")
                            .hint("to mount a host path outside the project, use the long form with allow_outside = true (devbox audit reports it)"),
                    );
                    return None;
                }
            }
        } else {
            source.clone()
        };
        let rel = if rel.is_empty() { ".".to_owned() } else { rel };
        project_path(cx, p, &rel, "bind source")?
    };
    Some(Mount::Bind {
        source: abs,
        source_rel: source,
        target,
        read_only,
    })
}
