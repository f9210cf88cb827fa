//! `[workers]`: programs run under devbox's runner with `devbox run`.

use std::collections::BTreeMap;
use std::path::Path;

use super::ctx::check_name;
use super::paths::lexical_join;
use super::policy::resolve_policy;
use super::values::shell_words;
use super::Ctx;
use crate::config::diagnostic::{Diagnostic, KeyPath};
use crate::config::forms::StringOrList;
use crate::config::model::Worker;
use crate::config::raw::RawWorker;

pub(super) fn resolve_workers(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawWorker>,
) -> BTreeMap<String, Worker> {
    let mut workers = BTreeMap::new();
    for (n, raw) in raw {
        let p = KeyPath::root().key("workers").key(n);
        check_name(cx, &p, n, "worker name", false);
        workers.insert(n.clone(), resolve_worker(cx, &p, raw));
    }
    workers
}

fn resolve_worker(cx: &mut Ctx, p: &KeyPath, raw: &RawWorker) -> Worker {
    let command = shell_words(&raw.command);
    if matches!(&raw.command, StringOrList::Many(v) if v.is_empty()) {
        cx.err(
            Diagnostic::error(p.key("command"), "worker command is empty")
                .expected("a command such as [\"/bin/sh\", \"-c\", \"echo hi\"]"),
        );
    }
    let policy = resolve_policy(cx, &p.key("policy"), &raw.policy);
    // A relative workdir is relative to the project, which the sandbox shows at the same
    // path as the host (when the policy lists it).
    let workdir = match raw.workdir.as_deref() {
        None => "/tmp".to_string(),
        Some(w) if w.starts_with('/') => w.to_string(),
        Some(w) => lexical_join(cx.dir, Path::new(w)).display().to_string(),
    };
    Worker {
        command,
        workdir,
        control: raw.control,
        policy,
    }
}
