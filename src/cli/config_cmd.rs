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

pub fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    if let Some(key) = &a.explain {
        return match config::explain(&loaded, key) {
            Some(s) => {
                println!("{s}");
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("error: `{key}` is not set in any layer (file, sandbox.local.toml, DEVBOX_* environment, flags)");
                Ok(ExitCode::from(super::EXIT_CONFIG))
            }
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
