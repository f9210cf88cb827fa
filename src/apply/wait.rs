//! Waiting for a container to meet a condition (running, healthy, completed), and its
//! last log lines for the error when it does not.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::config::model::Condition;
use crate::engine::{ContainerInfo, Engine, LogOptions};
use crate::plan::ServicePlan;

use super::ApplyError;

/// The last `n` log lines of a container, for error messages.
pub async fn last_logs<E: Engine>(engine: &E, id: &str, n: usize) -> Vec<String> {
    let opts = LogOptions {
        follow: false,
        since: None,
        tail: Some(n),
    };
    let Ok(mut s) = engine.logs(id, &opts).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some(Ok(l)) = s.next().await {
        out.push(l.text);
    }
    out
}

/// Waits until the container satisfies `cond` (`Healthy` also means running without a
/// healthcheck). Runs the healthcheck itself on engines that need it.
pub async fn wait_for<E: Engine>(
    engine: &E,
    service: &ServicePlan,
    id: &str,
    cond: Condition,
    deadline: Instant,
) -> Result<ContainerInfo, ApplyError> {
    let interval = service
        .spec
        .healthcheck
        .as_ref()
        .map_or(Duration::from_secs(1), |h| {
            Duration::from_millis(h.interval_ms.max(100))
        });
    let has_check = service.spec.healthcheck.is_some();
    let mut last_poke: Option<Instant> = None;
    // Most services are up within milliseconds on a local engine: look again soon at
    // first, then every 100 ms.
    let mut pause = Duration::from_millis(5);
    let fail = |problem: String| async move {
        ApplyError::Service {
            service: service.name.clone(),
            problem,
            logs: last_logs(engine, id, 20).await,
        }
    };
    loop {
        let c = engine.inspect_container(id).await?;
        let exited = matches!(c.state.as_str(), "exited" | "stopped" | "dead");
        let code = c.exit_code.unwrap_or(0);
        match cond {
            Condition::Completed if exited => {
                if code == 0 {
                    return Ok(c);
                }
                return Err(fail(format!("exited with code {code}")).await);
            }
            Condition::Completed => {}
            _ if exited => {
                return Err(fail(format!("exited with code {code} while starting")).await);
            }
            Condition::Started if c.running() => return Ok(c),
            Condition::Healthy if c.running() && !has_check => return Ok(c),
            Condition::Healthy if c.health.as_deref() == Some("healthy") => return Ok(c),
            Condition::Healthy if c.health.as_deref() == Some("unhealthy") => {
                return Err(fail("is unhealthy".into()).await);
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            let what = match cond {
                Condition::Healthy if has_check => "healthy",
                Condition::Completed => "completed",
                _ => "running",
            };
            return Err(fail(format!(
                "was not {what} in time (state {}, health {})",
                c.state,
                c.health.as_deref().unwrap_or("none")
            ))
            .await);
        }
        if has_check && c.running() && last_poke.is_none_or(|t| t.elapsed() >= interval) {
            last_poke = Some(Instant::now());
            engine.run_healthcheck(id).await?;
            continue;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
