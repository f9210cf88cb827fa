//! One service's runs: starting a monitor (in a cgroup of its own when there is a nest),
//! recording how each run ended, restarting by the policy, and the healthcheck of each.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    not_found, now_rfc3339, say, Entry, Held, Sup, BACKOFF_MAX, BACKOFF_MIN, BACKOFF_RESET,
};
use crate::engine::native::def::{Failure, RestartDef};
use crate::engine::native::logs;
use crate::engine::native::state::State;

impl Sup {
    /// Starts a run and waits until its sandbox is set up (or the run ended).
    pub(super) fn start(self: &Arc<Self>, id: &str) -> Result<(), (Failure, String)> {
        let mut all = self.lock();
        let e = all.get_mut(id).ok_or_else(|| not_found(id))?;
        if e.c.record.state == State::Running {
            return Ok(());
        }
        e.stop_requested = false;
        let run = self.spawn_run(id, e)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let e = all.get(id).ok_or_else(|| not_found(id))?;
            if let Some(why) = e.start_error.clone().filter(|_| e.run == run) {
                return Err((Failure::Other, why));
            }
            if e.run != run || e.c.record.state != State::Running || e.c.record.pid.is_some() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err((
                    Failure::Other,
                    format!(
                        "the sandbox of {} was not set up within 30s",
                        e.c.record.name
                    ),
                ));
            }
            all = self
                .changed
                .wait_timeout(all, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Spawns the monitor of a new run of `e` (the lock held).
    pub(super) fn spawn_run(
        self: &Arc<Self>,
        id: &str,
        e: &mut Entry,
    ) -> Result<u64, (Failure, String)> {
        // The names of its peers, as the monitor writes them into /etc/hosts.
        e.c.def.hosts = self.fabric.hosts_for(&e.c.def.service);
        self.save(&e.c)?;
        let mut cmd = crate::process::command(&self.exe.display().to_string());
        cmd.arg("__native-service")
            .arg("--dir")
            .arg(&self.pd.dir)
            .arg("--id")
            .arg(id)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let cgroup = self.monitor_cgroup(&e.c.def.service, &mut cmd);
        let failed = |err: String| {
            (
                Failure::Other,
                format!("starting the monitor of {}: {err}", e.c.record.name),
            )
        };
        let (tx, rx) = std::sync::mpsc::channel();
        self.spawner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((cmd, tx))
            .map_err(|err| failed(err.to_string()))?;
        let spawned = rx
            .recv()
            .map_err(|err| failed(err.to_string()))
            .and_then(|r| r.map_err(|err| failed(err.to_string())));
        let mut child = match spawned {
            Ok(c) => c,
            Err(why) => {
                if let Some(dir) = &cgroup {
                    let _ = crate::runner::cgroup::remove_tree(dir);
                }
                return Err(why);
            }
        };
        e.run += 1;
        let run = e.run;
        e.start_error = None;
        e.started_at = Some(Instant::now());
        e.c.record.state = State::Running;
        e.c.record.started = Some(now_rfc3339());
        e.c.record.pid = None;
        e.c.record.exit_code = None;
        e.c.monitor = Some(child.id());
        e.c.health = None;
        self.save(&e.c)?;
        say(&format!(
            "{}: run {run} started (monitor {})",
            e.c.record.name,
            child.id()
        ));
        for (pipe, stderr) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
                false,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
                true,
            ),
        ] {
            if let Some(p) = pipe {
                let log = e.log.clone();
                std::thread::spawn(move || logs::pump(p, stderr, &log));
            }
        }
        let sup = self.clone();
        let id_owned = id.to_owned();
        std::thread::spawn(move || {
            let status = child.wait();
            // Whatever the monitor left in its cgroup goes with it.
            if let Some(dir) = &cgroup {
                if let Err(e) = crate::runner::cgroup::remove_tree(dir) {
                    say(&format!("warning: {e}"));
                }
            }
            sup.ended(&id_owned, run, status.ok());
        });
        if let Some(h) = e.c.def.health.clone() {
            let sup = self.clone();
            let id_owned = id.to_owned();
            std::thread::spawn(move || sup.watch_health(&id_owned, run, &h));
        }
        Ok(run)
    }

    /// A cgroup of its own for the monitor `cmd` starts, which it joins before it execs,
    /// when the supervisor has a nest; else (or when the nest cannot make one) none, and
    /// the runner falls back to rlimits, saying so in the service's log.
    pub(super) fn monitor_cgroup(
        &self,
        service: &str,
        cmd: &mut std::process::Command,
    ) -> Option<PathBuf> {
        let nest = self.nest.as_ref()?;
        let made = nest.child(service).and_then(|dir| {
            crate::runner::cgroup::join_before_exec(cmd, &dir)
                .map(|()| dir.clone())
                .map_err(|e| {
                    let _ = crate::runner::cgroup::remove_tree(&dir);
                    crate::runner::cgroup::Error::Io(crate::fsutil::PathError {
                        action: "joining cgroup",
                        path: dir,
                        source: e,
                    })
                })
        });
        match made {
            Ok(dir) => Some(dir),
            Err(e) => {
                say(&format!("warning: {service}: no cgroup of its own: {e}"));
                None
            }
        }
    }

    /// A run's monitor exited: record how, and restart when the policy says so.
    pub(super) fn ended(
        self: &Arc<Self>,
        id: &str,
        run: u64,
        status: Option<std::process::ExitStatus>,
    ) {
        use std::os::unix::process::ExitStatusExt;
        let code = status.map_or(137, |s| s.code().unwrap_or(128 + s.signal().unwrap_or(9)));
        let service = match self.lock().get(id) {
            Some(e) if e.run == run => e.c.def.service.clone(),
            _ => return,
        };
        // Its ports are free again before anyone hears it ended.
        self.rt.block_on(self.fabric.detach(&service));
        let mut all = self.lock();
        let Some(e) = all.get_mut(id) else { return };
        if e.run != run {
            return;
        }
        e.c.record.state = State::Stopped;
        e.c.record.exit_code = Some(code);
        e.c.record.pid = None;
        e.c.monitor = None;
        let _ = self.save(&e.c);
        self.changed.notify_all();
        say(&format!(
            "{}: run {run} ended with code {code}",
            e.c.record.name
        ));
        let again = !e.stop_requested
            && match e.c.def.restart {
                RestartDef::No => false,
                RestartDef::OnFailure { max } => code != 0 && max.is_none_or(|m| e.c.restarts < m),
                RestartDef::Always | RestartDef::UnlessStopped => true,
            };
        if !again {
            return;
        }
        e.c.restarting = true;
        let _ = self.save(&e.c);
        let lasted = e.started_at.map_or(Duration::ZERO, |t| t.elapsed());
        if lasted >= BACKOFF_RESET {
            e.quick_failures = 0;
        }
        let delay = BACKOFF_MIN
            .saturating_mul(1 << e.quick_failures.min(10))
            .min(BACKOFF_MAX);
        e.quick_failures += 1;
        let waited = self.wait_while(all, Instant::now() + delay, |all| match all.get_mut(id) {
            Some(e) if e.run == run && !e.stop_requested => true,
            Some(e) => {
                e.c.restarting = false;
                let _ = self.save(&e.c);
                false
            }
            None => false,
        });
        let Some(mut all) = waited else { return };
        let Some(e) = all.get_mut(id) else { return };
        e.c.restarting = false;
        e.c.restarts += 1;
        say(&format!(
            "{}: restart {} after {} ms",
            e.c.record.name,
            e.c.restarts,
            delay.as_millis()
        ));
        if let Err((_, why)) = self.spawn_run(id, e) {
            e.log
                .lock()
                .unwrap()
                .line(true, format!("devbox: {why}").as_bytes());
        }
    }

    /// Runs the healthcheck of run `run` every interval until the run ends: `starting`,
    /// then `healthy` at the first pass, `unhealthy` after `retries` failures in a row
    /// (failures in the start period do not count).
    pub(super) fn watch_health(&self, id: &str, run: u64, h: &crate::engine::native::def::Health) {
        let begun = Instant::now();
        let interval = Duration::from_millis(h.interval_ms.max(100));
        let timeout = Duration::from_millis(h.timeout_ms.max(100));
        let mut wait = interval.min(Duration::from_millis(500));
        let mut failures = 0;
        loop {
            let (pid, def) = {
                let running = |all: &mut Held<'_>| matches!(all.get(id), Some(e) if e.run == run && e.c.record.state == State::Running);
                let mut all = self.lock();
                if !running(&mut all) {
                    return;
                }
                let Some(all) = self.wait_while(all, Instant::now() + wait, running) else {
                    return;
                };
                let e = &all[id];
                (e.c.record.pid, e.c.def.clone())
            };
            wait = interval;
            let Some(pid) = pid else { continue };
            let passed = crate::engine::native::health::probe(
                &h.check,
                (&self.pd.dir, id, pid),
                &def,
                timeout,
            );
            let mut all = self.lock();
            let Some(e) = all.get_mut(id).filter(|e| e.run == run) else {
                return;
            };
            let before = e.c.health.clone();
            if passed.is_ok() {
                failures = 0;
                e.c.health = Some("healthy".into());
            } else if begun.elapsed() >= Duration::from_millis(h.start_period_ms) {
                failures += 1;
                if failures >= h.retries.max(1) {
                    e.c.health = Some("unhealthy".into());
                }
            }
            if e.c.health != before {
                if let Err(why) = &passed {
                    let text = format!("devbox: healthcheck failed: {why}");
                    e.log.lock().unwrap().line(true, text.as_bytes());
                }
                let _ = self.save(&e.c);
                self.changed.notify_all();
            }
        }
    }

    /// Waits until `wake`, woken at each change to look again: the held state when
    /// `wake` comes, `None` as soon as `go_on` says the wait is pointless.
    fn wait_while<'a>(
        &self,
        mut all: Held<'a>,
        wake: Instant,
        mut go_on: impl FnMut(&mut Held<'a>) -> bool,
    ) -> Option<Held<'a>> {
        loop {
            let left = wake.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Some(all);
            }
            all = self
                .changed
                .wait_timeout(all, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if !go_on(&mut all) {
                return None;
            }
        }
    }
}
