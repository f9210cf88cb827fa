//! `devbox config`: the merged configuration, or where one value came from.

use std::process::ExitCode;

use super::Global;
use crate::config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Say where KEY (dotted, e.g. services.server.memory) got its value.
    #[arg(long, value_name = "KEY")]
    pub explain: Option<String>,
    /// Print the resolved model (defaults applied, paths absolute) as JSON instead of the merged TOML.
    #[arg(long)]
    pub resolved: bool,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    if let Some(key) = &a.explain {
        return match config::explain(&loaded, key) {
            Some(s) => {
                println!("{s}");
                Ok(ExitCode::SUCCESS)
            }
            None => match resolved_at(&loaded.config, key) {
                // No layer sets it, yet it has a value: a default devbox applied while
                // resolving the file (the hardened ones among them).
                Some(v) if !v.is_null() => {
                    println!("{key} = {v}\n  from devbox default (no layer sets it; `devbox config --resolved` shows every resolved value)");
                    Ok(ExitCode::SUCCESS)
                }
                _ => {
                    eprintln!("error: `{key}` is not set in any layer (file, sandbox.local.toml, DEVBOX_* environment, flags) and has no default");
                    Ok(ExitCode::from(super::EXIT_CONFIG))
                }
            },
        };
    }
    if a.resolved {
        println!("{}", serde_json::to_string_pretty(&loaded.config)?);
        return Ok(ExitCode::SUCCESS);
    }
    let merged: toml::Value = loaded.figment.extract()?;
    print!("{}", toml::to_string_pretty(&merged)?);
    Ok(ExitCode::SUCCESS)
}

/// The value at dotted `key` in the resolved model, as `config --resolved` prints it.
fn resolved_at(c: &config::Config, key: &str) -> Option<serde_json::Value> {
    let mut v = serde_json::to_value(c).ok()?;
    for seg in key.split('.') {
        v = match v {
            serde_json::Value::Object(mut m) => m.remove(seg)?,
            serde_json::Value::Array(mut a) => {
                let i: usize = seg.parse().ok()?;
                (i < a.len()).then(|| a.swap_remove(i))?
            }
            _ => return None,
        };
    }
    Some(v)
}
