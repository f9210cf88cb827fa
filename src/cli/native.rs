//! The native engine's hidden commands, which devbox starts itself: the per-project
//! supervisor, the monitor of one service run, and a command inside a service's sandbox.
//! Each runs from a fresh, single-threaded process (the runner and `setns` need that).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::engine::native;

#[derive(Debug, clap::Args)]
pub struct SupervisorArgs {
    /// The project's runtime directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Exit (and stop every service) when this process ends.
    #[arg(long)]
    pub owner: Option<u32>,
    /// The cgroup nest it runs in, in which each service's monitor gets a cgroup.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The project's runtime directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The container whose record the service was started from.
    #[arg(long)]
    pub id: String,
    /// The sandbox's init, on this host.
    #[arg(long)]
    pub pid: u32,
    /// `uid:gid` inside.
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub workdir: Option<String>,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

pub(super) fn supervisor(a: &SupervisorArgs) -> anyhow::Result<ExitCode> {
    native::supervisor::main(&a.dir, a.owner, a.cgroup.as_deref())
        .map_err(|e| anyhow::anyhow!("native supervisor: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn service(a: &ServiceArgs) -> anyhow::Result<ExitCode> {
    Ok(code(native::service::main(&a.dir, &a.id)))
}

pub(super) fn exec(a: &ExecArgs) -> anyhow::Result<ExitCode> {
    let user = match &a.user {
        None => None,
        Some(u) => match u.split_once(':').map(|(u, g)| (u.parse(), g.parse())) {
            Some((Ok(u), Ok(g))) => Some((u, g)),
            _ => anyhow::bail!("--user {u}: expected UID:GID"),
        },
    };
    Ok(code(native::exec::main(
        &a.dir,
        &a.id,
        a.pid,
        user,
        a.workdir.as_deref(),
        &a.command,
    )))
}
