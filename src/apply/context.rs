//! Build contexts: a deterministic tar of the context directory that honours
//! `.containerignore` / `.dockerignore`, and the image tag derived from its sha2.
//!
//! Entries are sorted, owned by 0:0 and stamped with mtime 0, so the same files give the
//! same bytes and the same tag: an unchanged image is never rebuilt.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha2::{Digest, Sha256};

use crate::fsutil::{PathError, WrapPath};
use crate::plan::ImagePlan;

/// The name the Containerfile gets in the tar when it lives outside the context.
pub const OUTSIDE_CONTAINERFILE: &str = ".devbox.Containerfile";

#[derive(Debug)]
pub struct Context {
    pub tar: Vec<u8>,
    /// Path of the Containerfile inside the tar.
    pub containerfile: String,
    /// `localhost/devbox-PROJECT-KEY:SHA12` over the settings and the tar.
    pub tag: String,
    pub files: usize,
}

/// Reads the ignore file of a context: `.containerignore`, else `.dockerignore`.
/// Patterns are anchored at the context root, as the engines read them.
fn ignore_rules(context: &Path) -> Result<Gitignore, PathError> {
    let mut b = GitignoreBuilder::new(context);
    for name in [".containerignore", ".dockerignore"] {
        let p = context.join(name);
        if !p.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&p).wrap("reading", &p)?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (neg, pat) = match line.strip_prefix('!') {
                Some(rest) => ("!", rest.trim()),
                None => ("", line),
            };
            let pat = pat.trim_start_matches("./").trim_start_matches('/');
            let anchored = format!("{neg}/{pat}");
            let _ = b.add_line(None, &anchored);
        }
        break;
    }
    Ok(b.build().unwrap_or_else(|_| Gitignore::empty()))
}

fn walk(
    root: &Path,
    dir: &Path,
    rules: &Gitignore,
    skip: &[PathBuf],
    out: &mut Vec<PathBuf>,
) -> Result<(), PathError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .wrap("reading", dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if skip.contains(&p) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&p).wrap("reading", &p)?;
        let is_dir = meta.is_dir();
        if rules
            .matched_path_or_any_parents(p.strip_prefix(root).unwrap_or(&p), is_dir)
            .is_ignore()
        {
            // An excluded directory may still hold re-included files (`!dir/keep`);
            // descend, and let each file decide.
            if !is_dir {
                continue;
            }
        } else {
            out.push(p.clone());
        }
        if is_dir {
            walk(root, &p, rules, skip, out)?;
        }
    }
    Ok(())
}

/// Tars the image's context and computes its tag. `skip` are paths never sent: the
/// project's data tree (the services write it, so it would change the tag on every run)
/// and devbox's own files.
pub fn prepare(project: &str, image: &ImagePlan, skip: &[PathBuf]) -> Result<Context, PathError> {
    let root = &image.spec.context;
    let rules = ignore_rules(root)?;
    let mut paths = Vec::new();
    walk(root, root, &rules, skip, &mut paths)?;
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut files = 0;
    for p in &paths {
        let rel = p.strip_prefix(root).unwrap_or(p);
        b.append_path_with_name(p, rel).wrap("archiving", p)?;
        files += 1;
    }
    // The Containerfile is always sent, even when an ignore rule matches it.
    let containerfile = match image.spec.containerfile.strip_prefix(root) {
        Ok(rel) if paths.iter().any(|p| p == &image.spec.containerfile) => {
            rel.to_string_lossy().into_owned()
        }
        _ => {
            let body = std::fs::read(&image.spec.containerfile)
                .wrap("reading", &image.spec.containerfile)?;
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, OUTSIDE_CONTAINERFILE, body.as_slice())
                .wrap("archiving", &image.spec.containerfile)?;
            files += 1;
            OUTSIDE_CONTAINERFILE.to_owned()
        }
    };
    let tar = b.into_inner().wrap("archiving", root)?;
    let mut h = Sha256::new();
    h.update(image.hash.as_bytes());
    h.update(containerfile.as_bytes());
    h.update(&tar);
    let digest = hex::encode(h.finalize());
    Ok(Context {
        tag: crate::plan::names::image_tag(project, &image.key, &digest),
        containerfile,
        tar,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn image(dir: &Path) -> ImagePlan {
        ImagePlan {
            key: "core".into(),
            tag: String::new(),
            hash: "h".into(),
            labels: BTreeMap::new(),
            spec: crate::config::model::Image {
                containerfile: dir.join("Containerfile"),
                context: dir.to_path_buf(),
                args: BTreeMap::new(),
                target: None,
            },
        }
    }

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn ignore_file_excludes_and_reincludes_and_tag_follows_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("Containerfile"), "FROM scratch\n").unwrap();
        std::fs::write(p.join("app.sh"), "echo hi\n").unwrap();
        std::fs::create_dir_all(p.join(".data/db")).unwrap();
        std::fs::write(p.join(".data/db/big"), "x").unwrap();
        std::fs::create_dir_all(p.join("logs")).unwrap();
        std::fs::write(p.join("logs/a.log"), "x").unwrap();
        std::fs::write(p.join("logs/keep"), "x").unwrap();
        std::fs::create_dir_all(p.join("src/logs")).unwrap();
        std::fs::write(p.join("src/logs/x"), "x").unwrap();
        std::fs::write(
            p.join(".containerignore"),
            "# data never goes in\n.data\nlogs\n!logs/keep\nContainerfile\n",
        )
        .unwrap();
        std::fs::write(p.join("sandbox.toml"), "[project]\n").unwrap();
        let c = prepare("demo", &image(p), &[p.join("sandbox.toml")]).unwrap();
        let n = names(&c.tar);
        assert!(n.contains(&"app.sh".to_owned()), "{n:?}");
        assert!(n.contains(&"logs/keep".to_owned()), "{n:?}");
        // Anchored at the root: a nested `logs` is not the ignored one.
        assert!(n.contains(&"src/logs/x".to_owned()), "{n:?}");
        assert!(!n.iter().any(|x| x.starts_with(".data")), "{n:?}");
        assert!(!n.contains(&"logs/a.log".to_owned()), "{n:?}");
        assert!(!n.contains(&"sandbox.toml".to_owned()), "{n:?}");
        // The Containerfile is sent even though a rule matches it.
        assert_eq!(c.containerfile, OUTSIDE_CONTAINERFILE);
        assert!(c.tag.starts_with("localhost/devbox-demo-core:"));

        let again = prepare("demo", &image(p), &[p.join("sandbox.toml")]).unwrap();
        assert_eq!(again.tag, c.tag, "same files, same tag");
        std::fs::write(p.join(".data/db/big"), "changed").unwrap();
        assert_eq!(
            prepare("demo", &image(p), &[p.join("sandbox.toml")])
                .unwrap()
                .tag,
            c.tag,
            "ignored files do not count"
        );
        std::fs::write(p.join("app.sh"), "echo bye\n").unwrap();
        assert_ne!(
            prepare("demo", &image(p), &[p.join("sandbox.toml")])
                .unwrap()
                .tag,
            c.tag
        );
    }
}
