//! `devbox status` (`ps`): each service's container, state, health and ports.

use std::process::ExitCode;

use serde::Serialize;

use super::Global;
use crate::engine::ContainerInfo;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Row {
    pub service: String,
    pub container: Option<String>,
    pub id: Option<String>,
    pub state: String,
    pub health: Option<String>,
    pub ports: Vec<String>,
    pub image: Option<String>,
    /// The container's first process on this host, while it runs.
    pub pid: Option<u32>,
    /// How often its restart policy has started it again (engines that count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// The container was made from other settings than the file's (`up` recreates it).
    pub outdated: bool,
    /// Not in the file any more.
    pub orphan: bool,
    pub notes: Vec<String>,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::load(g)?;
    let plan = crate::plan::plan(&loaded.config);
    let conn = super::engine::connect(&loaded)?;
    let rt = super::engine::runtime()?;
    let state = rt.block_on(crate::apply::observe::status(&conn.engine, &plan))?;
    let mut rows = Vec::new();
    let row =
        |service: &str, c: Option<&ContainerInfo>, notes: Vec<String>, outdated, orphan| Row {
            service: service.to_owned(),
            container: c.map(|c| c.name.clone()),
            id: c.map(|c| c.id.chars().take(12).collect()),
            state: c.map_or_else(|| "not created".to_owned(), |c| c.state.clone()),
            health: c.and_then(|c| c.health.clone()),
            ports: c.map_or_else(Vec::new, |c| {
                c.ports.iter().map(ToString::to_string).collect()
            }),
            image: c.map(|c| c.image.clone()),
            pid: c.and_then(|c| c.pid),
            restarts: c.and_then(|c| c.restarts),
            outdated,
            orphan,
            notes,
        };
    for s in &state.services {
        rows.push(row(
            &s.service.name,
            s.container.as_ref(),
            s.service.notes.clone(),
            s.outdated,
            false,
        ));
    }
    for c in &state.orphans {
        rows.push(row(
            c.service().unwrap_or("?"),
            Some(c),
            Vec::new(),
            false,
            true,
        ));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let mut state = r.state.clone();
            if r.outdated {
                state.push_str(" (outdated)");
            }
            if r.orphan {
                state.push_str(" (orphan)");
            }
            match r.restarts {
                Some(1) => state.push_str(" (1 restart)"),
                Some(n) if n > 1 => state.push_str(&format!(" ({n} restarts)")),
                _ => {}
            }
            [
                r.service.clone(),
                state,
                r.health.clone().unwrap_or_else(|| "-".into()),
                if r.ports.is_empty() {
                    "-".into()
                } else {
                    r.ports.join(", ")
                },
                r.id.clone().unwrap_or_else(|| "-".into()),
                r.image.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = ["SERVICE", "STATE", "HEALTH", "PORTS", "ID", "IMAGE"].map(String::from);
    let mut width = head.clone().map(|h| h.len());
    for r in &table {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(table.iter()) {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    for r in &rows {
        for n in &r.notes {
            println!("note: service `{}` {n}", r.service);
        }
    }
    Ok(ExitCode::SUCCESS)
}
