//! `[networks]`: named networks, which services join by name.

use std::collections::BTreeMap;

use super::ctx::check_name;
use super::Ctx;
use crate::config::diagnostic::KeyPath;
use crate::config::model::Network;
use crate::config::raw::RawNetwork;

pub(super) fn resolve_networks(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawNetwork>,
) -> BTreeMap<String, Network> {
    let mut networks = BTreeMap::new();
    for (n, raw) in raw {
        check_name(
            cx,
            &KeyPath::root().key("networks").key(n),
            n,
            "network name",
            false,
        );
        networks.insert(
            n.clone(),
            Network {
                internal: raw.internal,
                labels: raw.labels.clone(),
            },
        );
    }
    networks
}
