//! `[volumes]`: named volumes, which services mount by name.

use std::collections::BTreeMap;

use super::ctx::check_name;
use super::Ctx;
use crate::config::diagnostic::KeyPath;
use crate::config::model::Volume;
use crate::config::raw::RawVolume;

pub(super) fn resolve_volumes(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawVolume>,
) -> BTreeMap<String, Volume> {
    let mut volumes = BTreeMap::new();
    for (n, raw) in raw {
        check_name(
            cx,
            &KeyPath::root().key("volumes").key(n),
            n,
            "volume name",
            false,
        );
        volumes.insert(
            n.clone(),
            Volume {
                labels: raw.labels.clone(),
            },
        );
    }
    volumes
}
