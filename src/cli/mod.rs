//! The command line: clap types, one file per command, and the mapping of errors to
//! exit codes. Commands never talk to an engine directly: `engine.rs` connects, and
//! apply (`apply::observe` for status, logs, exec and reset), verify, probe and doctor
//! do the talking.

mod audit;
mod check;
mod config_cmd;
mod doctor;
mod down;
mod engine;
mod exec;
mod import;
mod init;
mod logs;
mod native;
mod probe_cmd;
mod probe_uds;
mod render_cmd;
mod reset;
mod run;
mod schema;
mod status;
mod up;
mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{self, raw::EngineChoice, ConfigError, LoadOptions, Loaded};

/// Exit codes: 0 success, 1 a check failed, 2 bad configuration or usage.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

/// A command line clap could not judge alone (an unknown template name, say): exit 2, as
/// clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Parser)]
#[command(
    name = "devbox",
    version,
    about = "One checked-in sandbox.toml turned into a working, hardened dev environment",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// The sandbox.toml to use; default: searched upward from the current directory.
    #[arg(short = 'f', long = "file", global = true, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Override the project name.
    #[arg(short = 'p', long = "project-name", global = true, value_name = "NAME")]
    pub project_name: Option<String>,
    /// Override the engine.
    #[arg(long, global = true, value_enum, value_name = "ENGINE")]
    pub engine: Option<EngineArg>,
    /// How long the engine may take to answer one call in full, and a build, exec or
    /// followed log may stay quiet before devbox checks the engine still answers.
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        env = "DEVBOX_ENGINE_TIMEOUT",
        default_value = "30s",
        value_parser = engine_timeout
    )]
    pub engine_timeout: std::time::Duration,
}

const DURATION_HINT: &str =
    "\nhint: a duration like 30s or 2m, from --engine-timeout or DEVBOX_ENGINE_TIMEOUT";

fn engine_timeout(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than 0".to_owned() + DURATION_HINT),
        Err(e) => Err(e.to_string() + DURATION_HINT),
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EngineArg {
    Auto,
    Podman,
    Docker,
    Native,
}

impl From<EngineArg> for EngineChoice {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Auto => Self::Auto,
            EngineArg::Podman => Self::Podman,
            EngineArg::Docker => Self::Docker,
            EngineArg::Native => Self::Native,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate sandbox.toml; exit 2 with every problem found.
    Check(check::Args),
    /// Security posture: rules with ids and severities; exit 1 at --fail-on.
    Audit(audit::Args),
    /// Convert a compose file to sandbox.toml, listing what could not be mapped.
    Import(import::Args),
    /// Print the merged configuration, or where a value came from.
    Config(config_cmd::Args),
    /// Print the JSON Schema of sandbox.toml.
    Schema,
    /// Create or update the environment so it matches sandbox.toml, and wait until ready.
    Up(up::Args),
    /// Remove the project's containers and networks; keeps .data and named volumes.
    Down(down::Args),
    /// Show each service's container, state, health and ports.
    #[command(visible_alias = "ps")]
    Status(status::Args),
    /// Show the services' output, merged in time order.
    Logs(logs::Args),
    /// Run a command in a service's container.
    Exec(exec::Args),
    /// Build, start, probe and tear down under a throwaway name; report (human, JSON, JUnit).
    Verify(verify::Args),
    /// Run the probes against the environment `up` started.
    Probe(probe_cmd::Args),
    /// Remove everything the project made, .data included; lists it and asks first.
    Reset(reset::Args),
    /// Check the machine, the engines and the project's ports; say what to fix.
    Doctor(doctor::Args),
    /// Run a worker (or a command) isolated by the native runner, under its policy.
    Run(Box<run::Args>),
    /// Render the plan for other tools: json, compose or kube.
    Render(render_cmd::Args),
    /// Create a sandbox.toml from a template.
    Init(init::Args),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// The in-service half of a `uds` probe (devbox starts itself for it).
    #[command(name = "__probe-uds", hide = true)]
    ProbeUds(probe_uds::Args),
    /// A project's native supervisor (devbox starts it, detached).
    #[command(name = "__native-supervisor", hide = true)]
    NativeSupervisor(native::SupervisorArgs),
    /// The monitor of one run of a native service (the supervisor starts it).
    #[command(name = "__native-service", hide = true)]
    NativeService(native::ServiceArgs),
    /// A command inside a native service's sandbox.
    #[command(name = "__native-exec", hide = true)]
    NativeExec(native::ExecArgs),
}

/// Runs devbox and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(logs_follow_short(std::env::args_os().collect()));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                let _ = writeln!(std::io::stderr(), "{ce}");
                return ExitCode::from(EXIT_CONFIG);
            }
            if let Some(ue) = e.downcast_ref::<UsageError>() {
                let _ = writeln!(std::io::stderr(), "error: {ue}");
                return ExitCode::from(EXIT_CONFIG);
            }
            // The chain, minus causes a message already quotes.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            let _ = writeln!(std::io::stderr(), "error: {msg}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `devbox logs -f` follows, as in `docker compose logs -f`; everywhere else `-f` is
/// `--file` (after `logs`, give the file as `--file`, or `-f` before the subcommand).
pub fn logs_follow_short(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut i = 1;
    // Skip global options (and the values of those that take one) to the subcommand.
    while i < args.len() {
        match args[i].to_str() {
            Some("-f" | "--file" | "-p" | "--project-name" | "--engine" | "--engine-timeout") => {
                i += 2
            }
            Some(a) if a.starts_with('-') => i += 1,
            _ => break,
        }
    }
    if args.get(i).and_then(|a| a.to_str()) == Some("logs") {
        for a in args.iter_mut().skip(i + 1) {
            if a.to_str() == Some("--") {
                break;
            }
            if a.to_str() == Some("-f") {
                *a = "--follow".into();
            }
        }
    }
    args
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    if cli.command.only_prints() {
        die_on_broken_pipe();
    }
    engine::set_limits(crate::engine::Limits {
        call: g.engine_timeout,
    });
    match &cli.command {
        Command::Check(a) => check::run(g, a),
        Command::Audit(a) => audit::run(g, a),
        Command::Import(a) => import::run(g, a),
        Command::Config(a) => config_cmd::run(g, a),
        Command::Schema => schema::run(),
        Command::Render(a) => render_cmd::run(g, a),
        Command::Up(a) => up::run(g, a),
        Command::Doctor(a) => doctor::run(g, a),
        Command::Verify(a) => verify::run(g, a),
        Command::Probe(a) => probe_cmd::run(g, a),
        Command::Reset(a) => reset::run(g, a),
        Command::Down(a) => down::run(g, a),
        Command::Status(a) => status::run(g, a),
        Command::Logs(a) => logs::run(g, a),
        Command::Exec(a) => exec::run(g, a),
        Command::Init(a) => init::run(a),
        Command::Run(a) => run::run(g, a),
        Command::ProbeUds(a) => probe_uds::run(a),
        Command::NativeSupervisor(a) => native::supervisor(a),
        Command::NativeService(a) => native::service(a),
        Command::NativeExec(a) => native::exec(a),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "devbox",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

impl Command {
    /// Commands whose whole job is printing: `devbox audit | head -1` must end them quietly.
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Self::Check(_)
                | Self::Audit(_)
                | Self::Config(_)
                | Self::Schema
                | Self::Render(_)
                | Self::Completions { .. }
                | Self::Man
        )
    }
}

/// Rust ignores SIGPIPE, so a print to a closed pipe fails and `println!` panics (exit
/// 101). A command that only prints takes the default action instead, as `cat` and `grep`
/// do: the reader has gone, so devbox ends without a word (status 141 in a shell). Not for
/// commands that hold sockets to engines or workers, where a peer's close must stay an
/// error to handle.
fn die_on_broken_pipe() {
    // SAFETY: single-threaded at this point; SIG_DFL installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
}

/// Takes the project lock, saying once who holds it while waiting (or failing at once
/// when `wait` is false).
pub fn lock_project(
    project: &str,
    dir: &std::path::Path,
    wait: bool,
) -> anyhow::Result<crate::apply::lock::ProjectLock> {
    Ok(crate::apply::lock::acquire(project, dir, wait, |holder| {
        eprintln!("devbox: waiting for the project lock, held by {holder}");
    })?)
}

/// The worker `name` of `c`, or an error naming the workers there are.
pub fn worker<'a>(
    c: &'a config::model::Config,
    name: &str,
) -> anyhow::Result<&'a config::model::Worker> {
    c.workers.get(name).ok_or_else(|| {
        let known: Vec<&str> = c.workers.keys().map(String::as_str).collect();
        anyhow::anyhow!(
            "no worker `{name}` in {}\nhint: {}",
            c.file.display(),
            if known.is_empty() {
                "declare one under [workers.NAME]".to_string()
            } else {
                format!("the workers are {}", known.join(", "))
            }
        )
    })
}

/// Loads the configuration the global flags point at, printing warnings.
pub fn load(g: &Global) -> anyhow::Result<Loaded> {
    load_as(g, false)
}

/// [`load`] for `devbox run`, which runs workers whatever the engine.
pub fn load_for_workers(g: &Global) -> anyhow::Result<Loaded> {
    load_as(g, true)
}

fn load_as(g: &Global, workers_only: bool) -> anyhow::Result<Loaded> {
    let opts = LoadOptions {
        file: g.file.clone(),
        cwd: std::env::current_dir()?,
        engine: g.engine.map(Into::into),
        project_name: g.project_name.clone(),
        text: None,
        workers_only,
    };
    let loaded = config::load(&opts)?;
    let mut err = std::io::stderr();
    for w in &loaded.warnings {
        let _ = writeln!(err, "{w}");
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::logs_follow_short;

    fn rewrite(args: &[&str]) -> Vec<String> {
        logs_follow_short(args.iter().map(Into::into).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn dash_f_after_logs_follows_and_elsewhere_names_the_file() {
        assert_eq!(
            rewrite(&["devbox", "-f", "x.toml", "logs", "-f", "web"]),
            ["devbox", "-f", "x.toml", "logs", "--follow", "web"]
        );
        assert_eq!(
            rewrite(&["devbox", "up", "-f", "x.toml"]),
            ["devbox", "up", "-f", "x.toml"]
        );
        assert_eq!(
            rewrite(&["devbox", "--engine", "podman", "logs", "--file", "x.toml", "-f"]),
            ["devbox", "--engine", "podman", "logs", "--file", "x.toml", "--follow"]
        );
        assert_eq!(
            rewrite(&["devbox", "--engine-timeout", "5s", "logs", "-f"]),
            ["devbox", "--engine-timeout", "5s", "logs", "--follow"]
        );
    }
}
