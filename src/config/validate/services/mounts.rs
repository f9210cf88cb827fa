//! A service's file system: `volumes` (named volumes and bind mounts), `read_only` and
//! `tmpfs`.

use std::path::Path;

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::VolumeSpec;
use crate::config::model::{Mount, Tmpfs, TmpfsKind, TmpfsOption};
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
        let mut options = Vec::new();
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match tmpfs_option(o) {
                Some(kind) => options.push(TmpfsOption::new(kind, o)),
                None => cx.err(
                    Diagnostic::error(p.key("tmpfs").index(i), format!("invalid tmpfs option `{o}`"))
                        .expected("size=N, mode=OCTAL, uid=N, gid=N, nr_inodes=N, exec, noexec, nosuid, nodev, ro, rw"),
                ),
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

/// One `tmpfs` option: `key=value` or a flag.
fn tmpfs_option(o: &str) -> Option<TmpfsKind> {
    let (k, v) = o.split_once('=').unwrap_or((o, ""));
    let flag = |kind| v.is_empty().then_some(kind);
    match k {
        "size" => parse_size(v).map(TmpfsKind::Size),
        "mode" => parse_mode(v).map(TmpfsKind::Mode),
        "uid" => v.parse().ok().map(TmpfsKind::Uid),
        "gid" => v.parse().ok().map(TmpfsKind::Gid),
        "nr_inodes" => v.parse().ok().map(TmpfsKind::NrInodes),
        "exec" => flag(TmpfsKind::Exec),
        "noexec" => flag(TmpfsKind::NoExec),
        "suid" => flag(TmpfsKind::Suid),
        "nosuid" => flag(TmpfsKind::NoSuid),
        "dev" => flag(TmpfsKind::Dev),
        "nodev" => flag(TmpfsKind::NoDev),
        "ro" => flag(TmpfsKind::Ro),
        "rw" => flag(TmpfsKind::Rw),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_option_is_typed_and_a_bad_one_refused() {
        assert_eq!(tmpfs_option("size=64m"), Some(TmpfsKind::Size(64 << 20)));
        assert_eq!(tmpfs_option("mode=1777"), Some(TmpfsKind::Mode(0o1777)));
        assert_eq!(tmpfs_option("mode=0755"), Some(TmpfsKind::Mode(0o755)));
        assert_eq!(tmpfs_option("uid=1000"), Some(TmpfsKind::Uid(1000)));
        assert_eq!(tmpfs_option("gid=100"), Some(TmpfsKind::Gid(100)));
        assert_eq!(
            tmpfs_option("nr_inodes=10000"),
            Some(TmpfsKind::NrInodes(10000))
        );
        assert_eq!(tmpfs_option("noexec"), Some(TmpfsKind::NoExec));
        assert_eq!(tmpfs_option("nosuid"), Some(TmpfsKind::NoSuid));
        assert_eq!(tmpfs_option("nodev"), Some(TmpfsKind::NoDev));
        assert_eq!(tmpfs_option("ro"), Some(TmpfsKind::Ro));
        for bad in [
            "size=lots",
            "mode=999",
            "uid=-1",
            "noexec=1",
            "huge",
            "size",
        ] {
            assert_eq!(tmpfs_option(bad), None, "{bad}");
        }
        let t = Tmpfs {
            path: "/tmp".into(),
            options: vec![
                TmpfsOption::new(TmpfsKind::Mode(0o755), "mode=0755"),
                TmpfsOption::new(TmpfsKind::Size(1 << 30), "size=1g"),
            ],
        };
        assert_eq!(t.size(), Some(1 << 30));
        assert_eq!(
            t.option_texts().collect::<Vec<_>>(),
            ["mode=0755", "size=1g"]
        );
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"path":"/tmp","options":["mode=0755","size=1g"]}"#
        );
    }
}
