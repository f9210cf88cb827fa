//! What the conversion tells the user: notes, findings devbox has no key for, and the
//! compose keys it cannot express or hardens by default.

use crate::config::diagnostic::KeyPath;

use super::yaml::Loc;

/// Something the user should know about the conversion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Note {
    /// The compose key, dotted (`services.web.container_name`).
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub text: String,
    /// The setting has no devbox equivalent and is not in the output.
    pub unmapped: bool,
}

/// A finding about a compose setting devbox cannot express at all (so no devbox key
/// carries it): `uts: host`, shared mount propagation.
#[derive(Debug, Clone)]
pub struct Extra {
    pub rule: &'static str,
    pub key: KeyPath,
    pub at: Loc,
    pub message: String,
}

/// Keys compose knows that devbox has no equivalent for, with why it matters.
pub(super) const UNMAPPED: &[(&str, &str)] = &[
    ("container_name", "devbox names containers PROJECT-SERVICE"),
    ("hostname", "the container's hostname is its name"),
    ("domainname", "not supported"),
    ("stop_grace_period", "devbox stops with a 10 s grace period"),
    ("stop_signal", "devbox stops with SIGTERM"),
    ("init", "no init process is injected; use an image with one"),
    ("shm_size", "/dev/shm keeps the engine's default size"),
    ("platform", "images are built for the host's platform"),
    ("profiles", "every service is part of the environment"),
    ("logging", "logs stay with the engine's default driver"),
    ("dns", "the engine's DNS is used"),
    ("dns_search", "the engine's DNS is used"),
    ("dns_opt", "the engine's DNS is used"),
    (
        "links",
        "services reach each other by name on shared networks",
    ),
    ("external_links", "not supported"),
    (
        "secrets",
        "use a `[data.files]` secret mounted into the service",
    ),
    (
        "configs",
        "use a `[data.files]` file mounted into the service",
    ),
    ("group_add", "not supported"),
    ("tty", "not supported; `devbox exec` gives a terminal"),
    ("stdin_open", "not supported"),
    ("cgroup_parent", "not supported"),
    ("cgroup", "not supported"),
    ("runtime", "the engine's default runtime is used"),
    ("mac_address", "not supported"),
    ("oom_kill_disable", "not supported"),
    ("oom_score_adj", "not supported"),
    ("volumes_from", "mount the same named volumes instead"),
    ("annotations", "not supported"),
    ("scale", "one container per service"),
    ("pull_policy", "images are pulled when missing"),
    (
        "expose",
        "services reach each other on shared networks without it",
    ),
    ("memswap_limit", "swap follows the engine's default"),
    ("mem_reservation", "only limits are supported"),
    ("cpu_shares", "use `cpus`"),
    ("cpuset", "use `cpus`"),
    ("cpu_quota", "use `cpus`"),
    ("cpu_period", "use `cpus`"),
    ("blkio_config", "not supported"),
    ("storage_opt", "not supported"),
    ("isolation", "not supported"),
    ("attach", "not supported"),
    ("develop", "use `devbox watch`"),
    ("extends", "inline the extended service"),
    ("uts", "devbox never shares the host's UTS namespace"),
    ("userns_mode", "only keep-id, host and auto are supported"),
];

/// Settings devbox hardens by default: (key, devbox's default).
pub(super) const HARDENED: &[(&str, &str)] = &[
    ("user", "user = \"65532:65532\""),
    ("read_only", "read_only = true"),
    ("cap_drop", "cap_drop = [\"ALL\"]"),
    ("no_new_privileges", "no_new_privileges = true"),
    ("pids_limit", "pids_limit = 256"),
];
