//! `devbox logs`: the services' output, prefixed per service, merged in time order.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;

use super::Global;
use crate::engine::{LogLine, LogOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing new output (`-f` after `logs`, as in docker compose).
    #[arg(long)]
    pub follow: bool,
    /// Only output newer than this: a duration (`10m`) or Unix seconds.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only the last N lines of each service.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<usize>,
    /// No colours.
    #[arg(long)]
    pub no_color: bool,
    /// Services to show; all by default.
    pub services: Vec<String>,
}

const COLORS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

fn since(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let d: Duration = humantime::parse_duration(s).map_err(|e| {
        anyhow::anyhow!("--since {s:?}: {e}\nhint: a duration like 10m or Unix seconds")
    })?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    Ok(now.saturating_sub(d).as_secs() as i64)
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    let plan = crate::plan::plan(&loaded.config);
    for s in &a.services {
        if plan.service(s).is_none() {
            let known: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
            anyhow::bail!(
                "no service `{s}` in {}; services: {}",
                plan.file.display(),
                known.join(", ")
            );
        }
    }
    let conn = super::engine::connect(&loaded)?;
    let rt = super::engine::runtime()?;
    let opts = LogOptions {
        follow: a.follow,
        since: a.since.as_deref().map(since).transpose()?,
        tail: a.tail,
    };
    let color =
        !a.no_color && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    rt.block_on(async {
        let found =
            crate::apply::observe::logs(&conn.engine, &plan.project, &a.services, &opts).await?;
        let found = match found {
            Some(f) => f,
            None if plan.services.is_empty() => Vec::new(),
            None => anyhow::bail!(
                "project {} has no containers, so there are no logs (`devbox down` removes containers and their logs)\nhint: `devbox up` starts it",
                plan.project
            ),
        };
        let width = found.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
        let mut streams = Vec::new();
        for (i, (name, s)) in found.into_iter().enumerate() {
            let prefix = if color {
                format!("\x1b[{}m{name:<width$} |\x1b[0m", COLORS[i % COLORS.len()])
            } else {
                format!("{name:<width$} |")
            };
            streams.push(s.map(move |l| (prefix.clone(), l)).boxed());
        }
        let mut out = std::io::stdout().lock();
        let print = |out: &mut std::io::StdoutLock, prefix: &str, l: &LogLine| {
            writeln!(out, "{prefix} {}", l.text)
        };
        if a.follow {
            let mut all = futures_util::stream::select_all(streams);
            while let Some((prefix, l)) = all.next().await {
                print(&mut out, &prefix, &l?)?;
                out.flush()?;
            }
        } else {
            let mut lines = Vec::new();
            for s in streams {
                let got: Vec<_> = s.collect().await;
                for (prefix, l) in got {
                    lines.push((prefix, l?));
                }
            }
            lines.sort_by(|a, b| a.1.timestamp.cmp(&b.1.timestamp));
            for (prefix, l) in &lines {
                print(&mut out, prefix, l)?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
