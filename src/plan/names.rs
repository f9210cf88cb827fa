//! Names and labels: what devbox calls each engine resource it makes for a project
//! (containers, networks, volumes, image tags, `verify`'s throwaway projects), the labels
//! it marks them with, and the one test of whether a resource is devbox's for a project.
//!
//! Every other module asks here, so a name is formatted in one place and parsed by the
//! same rules that made it. Never talks to an engine.

use std::collections::BTreeMap;

pub const LABEL_PROJECT: &str = "devbox.project";
pub const LABEL_SERVICE: &str = "devbox.service";
pub const LABEL_HASH: &str = "devbox.config-hash";
pub const LABEL_KIND: &str = "devbox.kind";
/// The project directory a container was made from. Set by apply on the engine's
/// containers only (not in rendered files), and left out of the config hash.
pub const LABEL_DIR: &str = "devbox.project-dir";
/// On what `verify` makes under its throwaway project name: the real project's name, so
/// that the project's next `up`, `verify` or `reset` can remove what a killed run left
/// (`podman ps -a --filter label=devbox.parent=NAME` lists it).
pub const LABEL_PARENT: &str = "devbox.parent";
/// How long a container's grace period is, in seconds, for `down`, which sees only
/// containers.
pub const LABEL_STOP_GRACE: &str = "devbox.stop-grace";
/// On a container that is one instance of a service (`PROJECT-SERVICE-INSTANCE`): the
/// instance. A container is taken for an instance only when it carries this label, so a
/// tool that names containers `PROJECT-SERVICE-1` from a rendered file (which carries
/// devbox's other labels) is never taken for devbox's.
pub const LABEL_INSTANCE: &str = "devbox.instance";

/// The labels devbox sets on what it renders, which an import leaves out.
pub const RENDERED_LABELS: [&str; 4] = [LABEL_PROJECT, LABEL_SERVICE, LABEL_HASH, LABEL_KIND];

/// Built images are tagged under this repository prefix.
const IMAGE_PREFIX: &str = "localhost/devbox-";

/// A service's container: `PROJECT-SERVICE`.
pub fn container(project: &str, service: &str) -> String {
    format!("{project}-{service}")
}

/// One instance of a service: `PROJECT-SERVICE-INSTANCE`.
pub fn instance_container(project: &str, service: &str, instance: &str) -> String {
    format!("{}-{instance}", container(project, service))
}

/// A declared network or named volume: `PROJECT_KEY`.
pub fn resource(project: &str, key: &str) -> String {
    format!("{project}_{key}")
}

/// The network devbox makes when services name none: the project's own name.
pub fn default_network(project: &str) -> String {
    project.to_owned()
}

/// A built image's tag: `localhost/devbox-PROJECT-KEY:DIGEST12`, from a hex digest.
pub fn image_tag(project: &str, key: &str, digest: &str) -> String {
    format!(
        "{}:{}",
        image_repository(project, key),
        &digest[..12.min(digest.len())]
    )
}

/// The repository of a built image, without a tag: `localhost/devbox-PROJECT-KEY`.
pub fn image_repository(project: &str, key: &str) -> String {
    format!("{}{key}", image_prefix(project))
}

/// What every tag of the project's built images starts with.
fn image_prefix(project: &str) -> String {
    format!("{IMAGE_PREFIX}{project}-")
}

/// The image key of one of the project's built image tags (`localhost/devbox-P-KEY:T`).
pub fn image_key<'t>(project: &str, tag: &'t str) -> Option<&'t str> {
    let rest = tag.strip_prefix(image_prefix(project).as_str())?;
    let (key, _) = rest.split_once(':')?;
    (!key.is_empty()).then_some(key)
}

/// Whether a tag is one devbox gives the project's built images.
pub fn is_image_of(project: &str, tag: &str) -> bool {
    tag.starts_with(image_prefix(project).as_str())
}

/// The project name `verify` runs under: `PARENT-verify-PID`.
pub fn verify_project(parent: &str, pid: u32) -> String {
    format!("{parent}-verify-{pid}")
}

/// `devbox.project=PROJECT`, the label filter the engines list a project's resources by.
pub fn project_filter(project: &str) -> String {
    format!("{LABEL_PROJECT}={project}")
}

/// devbox's labels on a resource of `kind` (`image`, `volume`, `network`, `service`) of
/// the project, over the user's `extra`.
pub fn labels(
    project: &str,
    kind: &str,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = extra.clone();
    l.insert(LABEL_PROJECT.into(), project.into());
    l.insert(LABEL_KIND.into(), kind.into());
    l
}

/// Whether the labels mark a resource as the project's.
pub fn labelled_for(labels: &BTreeMap<String, String>, project: &str) -> bool {
    labels.get(LABEL_PROJECT).map(String::as_str) == Some(project)
}

/// Whether a container is devbox's for the project: labelled so, and named as devbox
/// names a service's container (`PROJECT-SERVICE`) or, with the instance label, one
/// instance of it (`PROJECT-SERVICE-INSTANCE`). What other tools make from rendered files
/// carries devbox's labels under other names, and must never be taken for devbox's.
pub fn is_projects_container(project: &str, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let Some(service) = labels.get(LABEL_SERVICE) else {
        return false;
    };
    labelled_for(labels, project)
        && (name == container(project, service)
            || labels
                .get(LABEL_INSTANCE)
                .is_some_and(|i| !i.is_empty() && name == instance_container(project, service, i)))
}

/// Whether a network or volume is devbox's for the project: labelled so, and named the
/// project's own name or `PROJECT_KEY`.
pub fn is_projects_resource(project: &str, name: &str, labels: &BTreeMap<String, String>) -> bool {
    labelled_for(labels, project) && is_resource_name(project, name)
}

/// Whether a network or volume name is one devbox gives: the project's own name, or
/// `PROJECT_KEY`.
fn is_resource_name(project: &str, name: &str) -> bool {
    name == default_network(project)
        || name
            .strip_prefix(project)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_devbox_names_count_as_devbox_resources() {
        let l = labels(&[(LABEL_PROJECT, "refbox")]);
        assert!(is_projects_resource("refbox", "refbox", &l));
        assert!(is_projects_resource("refbox", "refbox_sock", &l));
        // What podman-compose (project "peer") and kube play make from rendered files.
        assert!(!is_projects_resource("refbox", "peer_sock", &l));
        assert!(!is_projects_resource("refbox", "refbox-sock", &l));
        assert!(!is_projects_resource("refbox", "refbox_", &l));
        assert!(!is_projects_resource("refbox", "refboxes_sock", &l));
        // Named right, labelled for another project.
        let other = labels(&[(LABEL_PROJECT, "other")]);
        assert!(!is_projects_resource("refbox", "refbox_sock", &other));
    }

    #[test]
    fn a_services_container_and_its_instances_are_the_projects() {
        let web = labels(&[(LABEL_PROJECT, "p"), (LABEL_SERVICE, "web")]);
        assert!(is_projects_container("p", &container("p", "web"), &web));
        // An instance container, named as devbox names one and labelled with its instance.
        let mut inst = web.clone();
        inst.insert(LABEL_INSTANCE.into(), "acme".into());
        let name = instance_container("p", "web", "acme");
        assert_eq!(name, "p-web-acme");
        assert!(is_projects_container("p", &name, &inst));
        // The same name without the instance label: what `docker compose` names a
        // container of a rendered file (`PROJECT-SERVICE-1`).
        assert!(!is_projects_container("p", "p-web-1", &web));
        // The label names another instance than the name does.
        assert!(!is_projects_container("p", "p-web-other", &inst));
        // podman-compose's and kube play's names; no service label; another project.
        assert!(!is_projects_container("p", "p_web_1", &web));
        assert!(!is_projects_container("p", "pod-web", &web));
        let no_service = labels(&[(LABEL_PROJECT, "p")]);
        assert!(!is_projects_container("p", "p-web", &no_service));
        let other = labels(&[(LABEL_PROJECT, "q"), (LABEL_SERVICE, "web")]);
        assert!(!is_projects_container("p", "p-web", &other));
    }

    #[test]
    fn image_tags_parse_back_to_their_key() {
        let tag = image_tag("demo", "core", "0123456789abcdef");
        assert_eq!(tag, "localhost/devbox-demo-core:0123456789ab");
        assert_eq!(image_key("demo", &tag), Some("core"));
        assert!(is_image_of("demo", &tag));
        assert!(!is_image_of("other", &tag));
        assert_eq!(image_key("demo", "localhost/other:1"), None);
    }
}
