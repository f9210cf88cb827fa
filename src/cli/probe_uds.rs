//! `devbox __probe-uds` (hidden): the in-service half of a `uds` probe. The probe starts
//! devbox again for it, so that this process is single-threaded when it joins the
//! container's namespaces ([`crate::probe::enter`]). Prints the answer; exit 0 answered, 1
//! the socket failed, [`CANNOT_ENTER`] it could not enter (the probe falls back).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::probe::enter::{self, Target, CANNOT_ENTER};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pid: u32,
    #[arg(long)]
    pub monitor_pid: Option<u32>,
    #[arg(long)]
    pub timeout_ms: u64,
    pub path: String,
    #[arg(default_value = "")]
    pub send: String,
}

pub(super) fn run(a: &Args) -> anyhow::Result<ExitCode> {
    if let Err(e) = enter::enter(Target {
        pid: a.pid,
        monitor_pid: a.monitor_pid,
    }) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(CANNOT_ENTER as u8));
    }
    match enter::round_trip(
        &a.path,
        a.send.as_bytes(),
        Duration::from_millis(a.timeout_ms),
    ) {
        Ok(answer) => {
            std::io::stdout().write_all(&answer)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(super::EXIT_FAILED))
        }
    }
}
