//! `devbox exec SERVICE -- CMD...`: run a command in a service's container; its exit code
//! becomes devbox's.

use std::io::{IsTerminal, Write};
use std::process::{ExitCode, Stdio};

use super::Global;
use crate::engine::{Endpoint, ExecSpec, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service whose container runs the command.
    pub service: String,
    /// Run as this user (`name`, `uid` or `uid:gid`) instead of the service's.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Extra environment, KEY=VALUE.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// No terminal even when stdin is one (output is collected, as in scripts).
    #[arg(short = 'T', long)]
    pub no_tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    let plan = crate::plan::plan(&loaded.config);
    if plan.service(&a.service).is_none() {
        let known: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no service `{}` in {}; services: {}",
            a.service,
            plan.file.display(),
            known.join(", ")
        );
    }
    let mut env = std::collections::BTreeMap::new();
    for e in &a.env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        env.insert(k.to_owned(), v.to_owned());
    }
    let conn = super::engine::connect_quietly(&loaded)?;
    let rt = super::engine::runtime()?;
    let out = rt.block_on(async {
        let running =
            crate::apply::observe::running(&conn.engine, &plan.project, &a.service).await?;
        let Some(c) = running.as_ref() else {
            anyhow::bail!(
                "service `{}` has no running container\nhint: `devbox up` starts it; `devbox status` shows what runs",
                a.service
            );
        };
        if !a.no_tty && std::io::stdin().is_terminal() {
            if conn.endpoint.kind == Kind::Native {
                return Ok(Err(native_interactive(c, a, &env)?));
            }
            if let Some(code) = interactive(&conn.endpoint, &c.id, a)? {
                return Ok(Err(code));
            }
        }
        let spec = ExecSpec {
            argv: a.command.clone(),
            user: a.user.clone(),
            env,
            workdir: a.workdir.clone(),
            tty: false,
            stdin: false,
        };
        Ok(Ok(crate::apply::observe::exec(&conn.engine, c, &spec).await?))
    })?;
    let out = match out {
        Ok(out) => out,
        Err(code) => return Ok(code),
    };
    std::io::stdout().write_all(&out.stdout)?;
    std::io::stderr().write_all(&out.stderr)?;
    Ok(ExitCode::from(out.exit_code.clamp(0, 255) as u8))
}

/// On a terminal, the engine's own CLI attaches it (raw mode, resizes, detach keys) to
/// the same socket devbox uses. `None` when that CLI is not installed.
fn interactive(ep: &Endpoint, id: &str, a: &Args) -> anyhow::Result<Option<ExitCode>> {
    let (program, url_flag) = match ep.kind {
        Kind::Podman => ("podman", "--url"),
        Kind::Docker => ("docker", "--host"),
        Kind::Native => return Ok(None),
    };
    if crate::process::which(program).is_none() {
        return Ok(None);
    }
    let mut cmd = crate::process::command(program);
    cmd.arg(url_flag)
        .arg(format!("unix://{}", ep.socket.display()))
        .args(["exec", "--interactive", "--tty"]);
    if let Some(u) = &a.user {
        cmd.args(["--user", u]);
    }
    if let Some(w) = &a.workdir {
        cmd.args(["--workdir", w]);
    }
    for e in &a.env {
        cmd.args(["--env", e]);
    }
    cmd.arg(id).args(&a.command);
    let status = cmd
        .stdin(Stdio::inherit())
        .status()
        .map_err(|e| anyhow::anyhow!("running {program} exec: {e}"))?;
    Ok(Some(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8,
    )))
}

/// On a terminal, a native service's command runs attached to it: devbox joins the
/// sandbox itself (`devbox __native-exec`), the terminal passed through as it is.
fn native_interactive(
    c: &crate::engine::ContainerInfo,
    a: &Args,
    env: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let engine = crate::engine::native::Native::new();
    let Some(pid) = c.pid else {
        anyhow::bail!("service `{}` has no sandbox pid", a.service);
    };
    let (dir, (user, mut vars, workdir)) = engine.exec_defaults(&c.id)?;
    vars.extend(env.clone());
    let user = match &a.user {
        Some(u) => crate::engine::native::resolve_user(u).map_err(anyhow::Error::msg)?,
        None => user,
    };
    let workdir = a.workdir.clone().unwrap_or(workdir);
    let mut cmd = crate::engine::native::exec::command(
        &dir,
        &c.id,
        pid,
        user,
        Some(&workdir),
        &vars,
        &a.command,
    )
    .map_err(anyhow::Error::msg)?;
    let status = cmd
        .stdin(Stdio::inherit())
        .status()
        .map_err(|e| anyhow::anyhow!("running devbox __native-exec: {e}"))?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
