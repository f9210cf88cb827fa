//! A service's environment: `env` and `env_file`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::StringOrList;
use crate::config::raw::RawService;
use crate::config::validate::paths::project_path;
use crate::config::validate::values::{check_env_names, env_map};
use crate::config::validate::Ctx;

/// The variables set, and the env files (in the project, existing) read at start.
pub(super) fn environment(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: &RawService,
) -> (BTreeMap<String, String>, Vec<PathBuf>) {
    let env = env_map(&raw.env);
    check_env_names(cx, &p.key("env"), raw.env.keys().cloned());
    let mut env_files = Vec::new();
    if let Some(ef) = &raw.env_file {
        let list = ef.to_vec();
        for (i, f) in list.iter().enumerate() {
            let kp = if matches!(ef, StringOrList::One(_)) {
                p.key("env_file")
            } else {
                p.key("env_file").index(i)
            };
            if let Some(abs) = project_path(cx, &kp, f, "env_file") {
                if !abs.is_file() {
                    cx.err(
                        Diagnostic::error(kp, format!("env_file `{f}` does not exist"))
                            .hint("the path is relative to sandbox.toml"),
                    );
                } else {
                    env_files.push(abs);
                }
            }
        }
    }
    (env, env_files)
}
