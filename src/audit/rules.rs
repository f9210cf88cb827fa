//! The catalogue of audit rules: each rule's stable id, title, default severity, one-line
//! fix and the outside checks it mirrors. Static data only.
//!
//! A leaf: it imports nothing from the rest of devbox, so that configuration validation
//! can check waiver ids against it without depending on the audit that reads the
//! configuration (a test keeps it so).

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    pub fix: &'static str,
    /// CIS Docker Benchmark v1.6.0: (number, title).
    pub cis: Option<(&'static str, &'static str)>,
    /// Kubernetes Pod Security Standards: (profile, control).
    pub pss: Option<(&'static str, &'static str)>,
}

macro_rules! rules {
    ($($id:literal, $sev:ident, $title:literal, $fix:literal, $cis:expr, $pss:expr;)*) => {
        pub static RULES: &[Rule] = &[$(Rule {
            id: $id,
            title: $title,
            severity: Severity::$sev,
            fix: $fix,
            cis: $cis,
            pss: $pss,
        },)*];
    };
}

const BASELINE: &str = "baseline";
const RESTRICTED: &str = "restricted";

rules! {
    "DBX001", Critical, "privileged container", "remove `privileged = true`; add only the capabilities or devices the service needs",
        Some(("5.4", "Ensure that privileged containers are not used")), Some((BASELINE, "Privileged Containers"));
    "DBX002", High, "no-new-privileges is off", "remove `no_new_privileges = false` (devbox turns it on by default)",
        Some(("5.25", "Ensure that the container is restricted from acquiring additional privileges")), Some((RESTRICTED, "Privilege Escalation"));
    "DBX003", Medium, "root filesystem is writable", "remove `read_only = false`; give writable paths a tmpfs or a volume",
        Some(("5.12", "Ensure that the container's root filesystem is mounted as read only")), None;
    "DBX004", High, "capabilities are not all dropped", "set `cap_drop = [\"ALL\"]` and add back only what is needed",
        Some(("5.3", "Ensure that Linux kernel capabilities are restricted within containers")), Some((RESTRICTED, "Capabilities"));
    "DBX005", High, "capability added beyond NET_BIND_SERVICE", "remove it from `cap_add`, or waive it with a reason",
        Some(("5.3", "Ensure that Linux kernel capabilities are restricted within containers")), Some((RESTRICTED, "Capabilities"));
    "DBX006", Critical, "dangerous capability added (SYS_ADMIN, SYS_MODULE, NET_RAW, ALL)", "remove it from `cap_add`",
        Some(("5.3", "Ensure that Linux kernel capabilities are restricted within containers")), Some((BASELINE, "Capabilities"));
    "DBX007", High, "runs as root", "set `user` to a non-zero uid, such as \"65532:65532\"",
        Some(("4.1", "Ensure that a user for the container has been created")), Some((RESTRICTED, "Running as Non-root"));
    "DBX008", Medium, "runs with the root group", "set a non-zero gid in `user`, such as \"1000:1000\"",
        Some(("4.1", "Ensure that a user for the container has been created")), Some((RESTRICTED, "Running as Non-root user"));
    "DBX009", High, "seccomp is unconfined", "remove `seccomp=unconfined` from `security_opt`",
        Some(("5.21", "Ensure the default seccomp profile is not Disabled")), Some((RESTRICTED, "Seccomp"));
    "DBX010", High, "AppArmor is unconfined", "remove `apparmor=unconfined` from `security_opt`",
        Some(("5.1", "Ensure that, if applicable, an AppArmor Profile is enabled")), Some((BASELINE, "AppArmor"));
    "DBX011", High, "SELinux separation is disabled", "remove `label=disable` from `security_opt`",
        Some(("5.2", "Ensure that, if applicable, SELinux security options are set")), Some((BASELINE, "SELinux"));
    "DBX012", High, "shares the host's network namespace", "remove `network_mode = \"host\"`; publish the ports you need",
        Some(("5.9", "Ensure that the host's network namespace is not shared")), Some((BASELINE, "Host Namespaces"));
    "DBX013", High, "shares the host's PID namespace", "remove `pid = \"host\"`",
        Some(("5.15", "Ensure that the host's process namespace is not shared")), Some((BASELINE, "Host Namespaces"));
    "DBX014", High, "shares the host's IPC namespace", "remove `ipc = \"host\"`",
        Some(("5.16", "Ensure that the host's IPC namespace is not shared")), Some((BASELINE, "Host Namespaces"));
    "DBX015", Medium, "shares the host's user namespace", "remove `userns = \"host\"`",
        Some(("5.30", "Ensure that the host's user namespaces are not shared")), None;
    "DBX016", High, "port published on every interface", "bind it to loopback: \"127.0.0.1:HOST:CONTAINER\", or leave the address out",
        Some(("5.13", "Ensure that incoming container traffic is bound to a specific host interface")), Some((BASELINE, "Host Ports"));
    "DBX017", Medium, "privileged host port (below 1024)", "publish on a host port of 1024 or above",
        Some(("5.7", "Ensure privileged ports are not mapped within containers")), Some((BASELINE, "Host Ports"));
    "DBX018", Critical, "container engine socket mounted", "do not mount the Docker, Podman or containerd socket; it is root on the host",
        Some(("5.31", "Ensure that the Docker socket is not mounted inside any containers")), Some((BASELINE, "HostPath Volumes"));
    "DBX019", Critical, "sensitive host path mounted", "do not mount /, /etc, /proc, /sys, /dev, /boot, /usr, /lib or home directories",
        Some(("5.5", "Ensure sensitive host system directories are not mounted on containers")), Some((BASELINE, "HostPath Volumes"));
    "DBX020", Medium, "bind mount outside the project", "keep bind sources inside the project, or copy what is needed into the image",
        None, Some((BASELINE, "HostPath Volumes"));
    "DBX021", Medium, "project source bind-mounted writable", "copy the code into the image, or mount it with `:ro`",
        None, None;
    "DBX022", High, "host device passed through", "remove `devices` unless the service cannot work without them",
        Some(("5.17", "Ensure that host devices are not directly exposed to containers")), None;
    "DBX023", Medium, "no memory limit", "set `memory`, such as \"256m\"",
        Some(("5.10", "Ensure that the memory usage for containers is limited")), None;
    "DBX024", Medium, "no process limit", "remove `pids_limit = -1` (the default is 256) or set a number",
        Some(("5.28", "Ensure that the PIDs cgroup limit is used")), None;
    "DBX025", Low, "no CPU limit", "set `cpus`, such as 0.5",
        Some(("5.11", "Ensure that CPU priority is set appropriately on containers")), None;
    "DBX026", Low, "restart retries above 5", "use `restart = \"on-failure:5\"` or fewer",
        Some(("5.14", "Ensure that the 'on-failure' container restart policy is set to '5'")), None;
    "DBX027", Low, "no healthcheck", "add `healthcheck = { tcp = PORT }` (or cmd, http)",
        Some(("5.26", "Ensure that container health is checked at runtime")), None;
    "DBX028", Medium, "image not pinned (`:latest` or no tag)", "pin a tag or digest, or build the image from `[images]`",
        None, None;
    "DBX029", High, "secret file readable by others on disk", "chmod 0600 the file (devbox creates secrets 0600)",
        None, None;
    "DBX030", Medium, "directory holding a secret is wider than 0700", "set the directory's `mode = \"0700\"` in `[data.dirs]`",
        None, None;
    "DBX031", High, "secret passed in `env`", "put it in a `[data.files]` secret and mount it, or use env_file outside version control",
        Some(("4.10", "Ensure secrets are not stored in Dockerfiles")), None;
    "DBX032", High, "unsafe sysctl", "remove it, or use one of the namespaced safe sysctls",
        None, Some((BASELINE, "Sysctls"));
    "DBX033", High, "worker or native service allows all network access", "use `net = { default = \"deny\", allow = [...] }`",
        None, None;
    "DBX034", High, "worker or native service may write anywhere", "list only the directories the worker must write in `fs.write`",
        None, None;
    "DBX035", Low, "no resource limits for the worker", "set `limits = { memory, pids }`",
        None, None;
    "DBX036", High, "shares the host's UTS namespace", "remove `uts: host` (devbox never shares it)",
        Some(("5.20", "Ensure that the host's UTS namespace is not shared")), Some((BASELINE, "Host Namespaces"));
    "DBX037", Medium, "mount propagation is shared", "remove `shared`/`rshared` propagation from the mount (devbox mounts are private)",
        Some(("5.19", "Ensure that mount propagation mode is not set to shared")), None;
}

pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    /// The code above the tests: what the module really imports.
    fn code() -> &'static str {
        let text = include_str!("rules.rs");
        &text[..text.find("#[cfg(test)]").expect("the tests are marked")]
    }

    #[test]
    fn the_catalogue_imports_nothing_from_the_rest_of_devbox() {
        // config validates waiver ids against this module; if it reached back into
        // config (or into audit, which reads config), the two would depend on each other.
        for (n, line) in code().lines().enumerate() {
            for path in ["crate::", "crate as", "super::", "devbox::"] {
                assert!(
                    !line.contains(path),
                    "src/audit/rules.rs:{}: the rule catalogue must stay a leaf, but uses `{path}`: {line}",
                    n + 1
                );
            }
        }
    }

    #[test]
    fn rule_ids_are_unique_and_found_by_id() {
        let mut ids: Vec<&str> = super::RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), super::RULES.len(), "a rule id is used twice");
        for r in super::RULES {
            assert_eq!(super::rule(r.id).map(|f| f.title), Some(r.title));
        }
        assert!(super::rule("DBX999").is_none());
    }
}
