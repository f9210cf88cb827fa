//! Paths in the project: relative to `sandbox.toml`, never climbing out of it, through
//! `..` or through a symlink.

use std::path::{Component, Path, PathBuf};

use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};

/// Lexically normalizes `rel` under `dir`; `None` when it climbs out.
fn inside(dir: &Path, rel: &Path) -> Option<PathBuf> {
    if rel.is_absolute() {
        return rel.starts_with(dir).then(|| rel.to_path_buf());
    }
    let mut out = dir.to_path_buf();
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
                out.pop();
            }
            Component::Normal(s) => {
                depth += 1;
                out.push(s);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The first existing symlink on the way from `dir` to `path` that points outside `dir`.
pub(super) fn escaping_symlink(
    dir: &Path,
    canon_dir: Option<&Path>,
    path: &Path,
) -> Option<PathBuf> {
    let rel = path.strip_prefix(dir).ok()?;
    let canon_dir = canon_dir?;
    let mut cur = dir.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = cur.canonicalize().ok();
                if target.is_none_or(|t| !t.starts_with(canon_dir)) {
                    return Some(cur);
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// A path that must stay inside the project: relative, no `..` out, no symlink out.
pub(super) fn project_path(
    cx: &mut Ctx,
    path: &KeyPath,
    written: &str,
    what: &str,
) -> Option<PathBuf> {
    let p = Path::new(written);
    if written.is_empty() {
        cx.err(
            Diagnostic::error(path.clone(), format!("{what} is empty"))
                .expected("a path relative to sandbox.toml"),
        );
        return None;
    }
    if p.is_absolute() {
        cx.err(
            Diagnostic::error(
                path.clone(),
                format!("{what} `{written}` is an absolute path"),
            )
            .expected("a path relative to sandbox.toml, inside the project")
            .hint("devbox keeps everything it touches inside the project directory"),
        );
        return None;
    }
    let Some(abs) = inside(cx.dir, p) else {
        cx.err(
            Diagnostic::error(
                path.clone(),
                format!("{what} `{written}` leaves the project directory"),
            )
            .expected("a path inside the project, without `..` climbing out of it"),
        );
        return None;
    };
    if let Some(link) = escaping_symlink(cx.dir, cx.canon_dir.as_deref(), &abs) {
        cx.err(
            Diagnostic::error(
                path.clone(),
                format!(
                    "{what} `{written}` goes through a symlink that leads outside the project: {}",
                    link.display()
                ),
            )
            .expected("a path whose every component stays inside the project")
            .hint("replace the symlink with a real directory"),
        );
        return None;
    }
    Some(abs)
}

pub(super) fn expand_home(s: &str) -> PathBuf {
    match s.strip_prefix('~') {
        Some(rest) => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(rest.trim_start_matches('/'))
        }
        None => PathBuf::from(s),
    }
}

pub(super) fn lexical_join(dir: &Path, rel: &Path) -> PathBuf {
    let mut out = dir.to_path_buf();
    for c in rel.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            _ => {}
        }
    }
    out
}
