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
