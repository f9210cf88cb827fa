//! `devbox schema`: the JSON Schema of sandbox.toml, generated from the raw model.

use std::process::ExitCode;

/// The schema as committed in `schema/sandbox.schema.json`.
pub(super) fn schema_json() -> String {
    let schema = schemars::schema_for!(crate::config::raw::RawConfig);
    let mut s = serde_json::to_string_pretty(&schema).expect("schema serializes");
    s.push('\n');
    s
}

pub(super) fn run() -> anyhow::Result<ExitCode> {
    print!("{}", schema_json());
    Ok(ExitCode::SUCCESS)
}
