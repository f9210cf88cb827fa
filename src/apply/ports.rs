//! The registry of host ports devbox projects claim: one small JSON file per project in
//! devbox's state directory, written by `up` and removed by `down`, so `doctor` can say
//! that two projects on this machine want the same port before either fails to bind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::plan::Plan;

fn dir() -> PathBuf {
    super::lock::lock_dir()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("ports")
}

/// `PROJECT@DIR`, how a project is named in the registry.
pub fn key(plan: &Plan) -> String {
    format!("{}@{}", plan.project, plan.dir.display())
}

fn file(plan: &Plan) -> PathBuf {
    let h = hex::encode(Sha256::digest(key(plan).as_bytes()));
    dir().join(format!("{}-{}.json", plan.project, &h[..12]))
}

/// Records the host ports the plan publishes (best effort: the registry is advice).
pub fn claim(plan: &Plan) {
    let ports: Vec<u16> = plan
        .services
        .iter()
        .flat_map(|s| s.spec.ports.iter().map(|p| p.host))
        .collect();
    let path = file(plan);
    if ports.is_empty() {
        let _ = std::fs::remove_file(path);
        return;
    }
    let body = serde_json::json!({ "project": key(plan), "ports": ports }).to_string();
    if std::fs::create_dir_all(dir()).is_ok() {
        let _ = crate::fsutil::write_atomic(&path, body.as_bytes(), 0o644);
    }
}

/// Forgets the plan's claim.
pub fn release(plan: &Plan) {
    let _ = std::fs::remove_file(file(plan));
}

/// Every project's claimed ports.
pub fn claims() -> BTreeMap<String, Vec<u16>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir()) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let (Some(p), Some(ports)) = (v["project"].as_str(), v["ports"].as_array()) {
            out.insert(
                p.to_owned(),
                ports
                    .iter()
                    .filter_map(|x| x.as_u64().and_then(|n| u16::try_from(n).ok()))
                    .collect(),
            );
        }
    }
    out
}
