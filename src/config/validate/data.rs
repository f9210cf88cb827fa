//! `[data]`: the data root, its directories and files (secrets among them).

use std::path::{Component, Path, PathBuf};

use super::paths::{escaping_symlink, project_path};
use super::values::mode;
use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::model::{Data, DataDir, DataFile, FileContent, SecretEncoding};
use crate::config::raw::RawData;

pub(super) fn resolve_data(cx: &mut Ctx, raw: RawData) -> Data {
    let base = KeyPath::root().key("data");
    let root_rel = raw.root.clone().unwrap_or_else(|| ".data".to_owned());
    let root = project_path(cx, &base.key("root"), &root_rel, "data root")
        .unwrap_or_else(|| cx.dir.join(".data"));
    if root == cx.dir {
        cx.err(
            Diagnostic::error(
                base.key("root"),
                "data root is the project directory itself",
            )
            .expected("a subdirectory such as \".data\"")
            .hint("`devbox reset` wipes the data root; it must not be the project"),
        );
    }
    let mut dirs = Vec::new();
    for (rel, d) in &raw.dirs {
        let p = base.key("dirs").key(rel);
        if data_rel(cx, &p, rel, &root).is_some() {
            let m = d
                .mode
                .as_deref()
                .map_or(Some(0o755), |s| mode(cx, &p.key("mode"), s));
            dirs.push(DataDir {
                path: rel.trim_end_matches('/').to_owned(),
                mode: m.unwrap_or(0o755),
            });
        }
    }
    let mut files = Vec::new();
    for (rel, f) in &raw.files {
        let p = base.key("files").key(rel);
        if data_rel(cx, &p, rel, &root).is_none() {
            continue;
        }
        let content = match (&f.secret, &f.content) {
            (Some(_), Some(_)) => {
                cx.err(
                    Diagnostic::error(p.key("content"), "a file cannot have both `secret` and `content`")
                        .hint("a secret is generated; remove `content`, or remove `secret` for a literal file"),
                );
                FileContent::Empty
            }
            (Some(s), None) => match parse_secret(s) {
                Some((encoding, bytes)) => FileContent::Secret { encoding, bytes },
                None => {
                    cx.err(
                        Diagnostic::error(p.key("secret"), format!("invalid secret `{s}`"))
                            .expected("\"hex:N\" or \"base64:N\", N random bytes from 1 to 4096")
                            .hint("for example secret = \"hex:32\""),
                    );
                    FileContent::Empty
                }
            },
            (None, Some(t)) => FileContent::Literal { text: t.clone() },
            (None, None) => FileContent::Empty,
        };
        let is_secret = matches!(content, FileContent::Secret { .. });
        let default_mode = if is_secret { 0o600 } else { 0o644 };
        let m = f
            .mode
            .as_deref()
            .map_or(Some(default_mode), |s| mode(cx, &p.key("mode"), s))
            .unwrap_or(default_mode);
        if is_secret && m & 0o177 != 0 {
            cx.err(
                Diagnostic::error(
                    p.key("mode"),
                    format!("secret mode {m:04o} is wider than 0600"),
                )
                .expected("\"0600\" or narrower (\"0400\")")
                .hint("secrets are readable by their owner only"),
            );
        }
        files.push(DataFile {
            path: rel.clone(),
            mode: m,
            content,
        });
    }
    Data {
        root,
        root_rel,
        dirs,
        files,
    }
}

fn data_rel(cx: &mut Ctx, path: &KeyPath, rel: &str, root: &Path) -> Option<PathBuf> {
    let p = Path::new(rel);
    let bad = rel.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if bad {
        cx.err_key(
            Diagnostic::error(
                path.clone(),
                format!("data path `{rel}` leaves the data root"),
            )
            .expected(
                "a relative path inside the data root, without `..`, such as \"auth/credential\"",
            ),
        );
        return None;
    }
    let abs = root.join(p);
    if let Some(link) = escaping_symlink(cx.dir, cx.canon_dir.as_deref(), &abs) {
        cx.err_key(
            Diagnostic::error(
                path.clone(),
                format!(
                    "data path `{rel}` goes through a symlink that leads outside the project: {}",
                    link.display()
                ),
            )
            .hint("devbox never follows symlinks out of the project; remove the link"),
        );
        return None;
    }
    Some(abs)
}

pub fn parse_secret(s: &str) -> Option<(SecretEncoding, usize)> {
    let (enc, n) = s.split_once(':')?;
    let enc = match enc {
        "hex" => SecretEncoding::Hex,
        "base64" => SecretEncoding::Base64,
        _ => return None,
    };
    let n: usize = n.parse().ok()?;
    (1..=4096).contains(&n).then_some((enc, n))
}
