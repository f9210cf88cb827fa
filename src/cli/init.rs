//! `devbox init`: a new project from one of the templates built into devbox.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use include_dir::{include_dir, Dir};

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Template to start from.
    #[arg(short, long, default_value = "basic")]
    pub template: String,
    /// Directory to create the project in; default: the current directory.
    pub dir: Option<PathBuf>,
}

/// Names of the built-in templates.
pub(super) fn template_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = TEMPLATES
        .dirs()
        .filter_map(|d| d.path().file_name().and_then(|n| n.to_str()))
        .collect();
    v.sort_unstable();
    v
}

fn files<'a>(d: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    out.extend(d.files());
    for sub in d.dirs() {
        files(sub, out);
    }
}

pub(super) fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let Some(tpl) = TEMPLATES.get_dir(&a.template) else {
        return Err(super::UsageError(format!(
            "unknown template `{}`; available: {}",
            a.template,
            template_names().join(", ")
        ))
        .into());
    };
    let cwd = std::env::current_dir()?;
    let dir = match &a.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => cwd.join(d),
        None => cwd,
    };
    let name = crate::config::validate::default_project_name(&dir);
    let mut all = Vec::new();
    files(tpl, &mut all);
    let targets: Vec<(PathBuf, &include_dir::File)> = all
        .into_iter()
        .map(|f| {
            let rel = f.path().strip_prefix(tpl.path()).unwrap_or(f.path());
            (dir.join(rel), f)
        })
        .collect();
    // Refuse before writing anything: init never overwrites.
    let existing: Vec<String> = targets
        .iter()
        .filter(|(p, _)| p.symlink_metadata().is_ok())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "not overwriting existing files: {}; nothing was written (use another directory, or remove them)",
            existing.join(", ")
        );
    }
    for (path, f) in &targets {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let body = match f.contents_utf8() {
            Some(t) => t.replace("{{name}}", &name).into_bytes(),
            None => f.contents().to_vec(),
        };
        let mode = if is_script(path) { 0o755 } else { 0o644 };
        crate::fsutil::write_new(path, &body, mode)?;
        println!(
            "created {}",
            path.strip_prefix(&dir).unwrap_or(path).display()
        );
    }
    match a.dir.as_deref().filter(|d| *d != Path::new(".")) {
        Some(d) => println!("\nnext: cd {} && devbox check", d.display()),
        None => println!("\nnext: devbox check"),
    }
    Ok(ExitCode::SUCCESS)
}

fn is_script(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "sh")
}
