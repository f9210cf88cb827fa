//! Rendering the plan for other tools: JSON, compose YAML, Kubernetes YAML, and a worker as
//! an OCI runtime bundle. Output is deterministic; whatever a target cannot express comes
//! back as a warning, never silently dropped. Never touches the machine beyond writing the
//! bundle's directory.

pub mod compose;
pub mod json;
pub mod kube;
pub mod oci;
pub mod yaml;

/// A rendered document and what it could not carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Native services run host programs, so there is no image to put in a compose file or a
/// Pod: they are left out (a placeholder image would only fail later, at run time), and
/// the warning names them.
fn native_left_out(format: &str, plan: &crate::plan::Plan) -> Option<String> {
    let native: Vec<&str> = plan
        .services
        .iter()
        .filter(|s| s.spec.is_native())
        .map(|s| s.name.as_str())
        .collect();
    (!native.is_empty()).then(|| {
        format!(
            "{format}: native services ({}) have no image: they run on devbox's native runner and are left out",
            native.join(", ")
        )
    })
}
