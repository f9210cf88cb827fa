//! A run's lifecycle by id: `devbox run --wait-ready` records each run it detaches as
//! `RUNTIME/runs/ID.json` (RUNTIME is [`super::state::runtime_dir`]): the supervisor's pid
//! and start time, the sandbox's cgroups and control socket, and its state, so that
//! another devbox (`devbox run --list`, `devbox run --stop ID`) finds the run and ends it.
//! The states are OCI's: `creating` (the record exists, the worker has not started),
//! `running` (it has) and `stopped`; a record whose supervisor is gone, or whose pid now
//! names another process, reads `stopped` whatever it says. This module owns the records
//! and the signals to a recorded supervisor; it never starts a sandbox (the supervisor
//! does, and tells it through [`Runs::start`]).

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::state::{new_id, runtime_dir, valid_id, Record, State, StateDir};
use crate::fsutil::PathError;

/// How long a recorded supervisor has to end after its stop grace (it kills the sandbox
/// and removes its cgroup first), and again after SIGKILL.
pub const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Where the runs' records are: the runtime directory's `runs`.
pub fn runs_dir() -> PathBuf {
    runtime_dir().join("runs")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("no run `{0}`")]
    Unknown(String),
    #[error("`{prefix}` names more than one run: {}", ids.join(", "))]
    Ambiguous { prefix: String, ids: Vec<String> },
    #[error("signalling run {id}'s supervisor (pid {pid}): {errno}")]
    Signal { id: String, pid: u32, errno: Errno },
    #[error("run {id}'s supervisor (pid {pid}) is still there {}s after SIGKILL", STOP_MARGIN.as_secs())]
    Survived { id: String, pid: u32 },
    #[error("removing run {id}'s cgroup: {source}")]
    Cgroup {
        id: String,
        #[source]
        source: super::cgroup::Error,
    },
}

/// One run, as its record holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Id, worker name, the supervisor's pid, when it started, state, exit code.
    #[serde(flatten)]
    pub record: Record,
    /// The supervisor's start time (see [`ProcessId`]): with the pid, it names the process.
    pub pid_start: Option<u64>,
    /// What the worker runs.
    pub command: Vec<String>,
    /// The sandbox's init, as this host numbers it, once the worker started.
    pub init: Option<u32>,
    /// The run's own cgroup directories (one on v2, one per hierarchy on v1), if any.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// The control socket, as the host reaches it (it answers only the sandbox's own
    /// processes), if the run serves one.
    pub control: Option<PathBuf>,
    /// Where the worker's output goes, when not to the caller's terminal.
    pub log: Option<PathBuf>,
    /// The worker's stop grace: how long the supervisor waits after passing SIGTERM on.
    pub stop_grace_ms: u64,
}

impl Run {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The id as lists show it: its first 12 digits, as container engines do.
    pub fn short_id(&self) -> &str {
        &self.record.id[..self.record.id.len().min(12)]
    }

    /// The process the record names, while it is that process.
    fn holder(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.record.pid?,
            start: self.pid_start?,
        })
        .filter(ProcessId::alive)
    }
}

/// A process, told apart from a later one given the same pid: its pid and its start time
/// in clock ticks after boot (the 22nd field of `/proc/PID/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

impl ProcessId {
    /// Process `pid`, while it lives (a zombie has ended).
    pub fn of(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (state, start) = parse_stat(&text)?;
        (!matches!(state, 'Z' | 'X' | 'x')).then_some(Self { pid, start })
    }

    pub fn current() -> Self {
        let pid = std::process::id();
        Self::of(pid).unwrap_or(Self { pid, start: 0 })
    }

    /// Whether the process still runs, and is the same one.
    pub fn alive(&self) -> bool {
        Self::of(self.pid).is_some_and(|p| p == *self)
    }
}

/// The state letter and start time of a `/proc/PID/stat` line. The command name, in
/// parentheses, may hold spaces and parentheses itself, so fields count from the last `)`.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), starttime is field 22.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

/// What the supervisor says once the worker has started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub init: u32,
    pub cgroups: Vec<PathBuf>,
    pub control: Option<PathBuf>,
}

/// How [`Runs::stop`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The run was still going when asked to stop.
    pub was_running: bool,
    /// Its supervisor outlived its grace and was killed.
    pub killed: bool,
    /// The worker's exit code, when the supervisor could record it.
    pub exit_code: Option<i32>,
}

/// The runs' state directory.
#[derive(Debug, Clone)]
pub struct Runs {
    dir: StateDir,
}

impl Runs {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: StateDir::new(dir),
        }
    }

    /// The records under [`runs_dir`].
    pub fn here() -> Self {
        Self::new(&runs_dir())
    }

    /// A new run, `creating`, held by the calling process until [`Runs::hand_over`].
    pub fn create(
        &self,
        name: &str,
        command: &[String],
        stop_grace_ms: u64,
        log: Option<&Path>,
    ) -> Result<Run, Error> {
        let me = ProcessId::current();
        let mut record = Record::new(&new_id(), name);
        record.pid = Some(me.pid);
        record.started = Some(now());
        let run = Run {
            record,
            pid_start: Some(me.start),
            command: command.to_vec(),
            init: None,
            cgroups: Vec::new(),
            control: None,
            log: log.map(Path::to_path_buf),
            stop_grace_ms,
        };
        self.save(&run)?;
        Ok(run)
    }

    /// The run is held by `p` from now on (the supervisor, forked from its creator).
    pub fn hand_over(&self, run: &mut Run, p: ProcessId) -> Result<(), Error> {
        run.record.pid = Some(p.pid);
        run.pid_start = Some(p.start);
        self.save(run)
    }

    /// The worker has started: `running`, with what the supervisor made for it.
    pub fn start(&self, run: &mut Run, s: &Started) -> Result<(), Error> {
        run.record.state = State::Running;
        run.init = Some(s.init);
        run.cgroups = s.cgroups.clone();
        run.control = s.control.clone();
        self.save(run)
    }

    /// The worker has ended with `code`: `stopped`, its sandbox gone.
    pub fn finish(&self, run: &mut Run, code: i32) -> Result<(), Error> {
        run.record.state = State::Stopped;
        run.record.exit_code = Some(code);
        run.init = None;
        run.control = None;
        self.save(run)
    }

    fn save(&self, run: &Run) -> Result<(), Error> {
        Ok(self.dir.save(run.id(), run)?)
    }

    /// Run `id` as it is now: `stopped` if its supervisor has gone.
    pub fn state(&self, id: &str) -> Result<Option<Run>, Error> {
        Ok(self.dir.load::<Run>(id)?.map(settled))
    }

    /// Every run as it is now, oldest first.
    pub fn list(&self) -> Result<Vec<Run>, Error> {
        let mut runs: Vec<Run> = self.dir.list::<Run>()?.into_iter().map(settled).collect();
        runs.sort_by(|a, b| {
            (&a.record.started, &a.record.id).cmp(&(&b.record.started, &b.record.id))
        });
        Ok(runs)
    }

    /// The run whose id is `id` or, failing that, the only one whose id starts with it.
    pub fn find(&self, id: &str) -> Result<Run, Error> {
        let unknown = || Error::Unknown(id.to_owned());
        if !valid_id(id) {
            return Err(unknown());
        }
        if let Some(r) = self.state(id)? {
            return Ok(r);
        }
        let id = id.to_ascii_lowercase();
        let mut hits: Vec<Run> = self
            .list()?
            .into_iter()
            .filter(|r| r.id().starts_with(&id))
            .collect();
        match hits.len() {
            0 => Err(unknown()),
            1 => Ok(hits.remove(0)),
            _ => Err(Error::Ambiguous {
                prefix: id,
                ids: hits.iter().map(|r| r.short_id().to_owned()).collect(),
            }),
        }
    }

    /// Sends `sig` to the run's supervisor; `false` when it has already gone. The signal
    /// goes through a pidfd opened while the pid was checked to be the recorded process,
    /// so it never reaches a later process given the same pid.
    pub fn kill(&self, run: &Run, sig: Signal) -> Result<bool, Error> {
        let Some(fd) = open_holder(run) else {
            return Ok(false);
        };
        send(run, &fd, sig)
    }

    /// Stops the run: SIGTERM to its supervisor, which passes it on to the worker and
    /// kills the sandbox after the stop grace; SIGKILL if the supervisor is still there
    /// [`STOP_MARGIN`] after that. Then what a killed supervisor left behind (its
    /// cgroups) is removed, and the record with it.
    pub fn stop(&self, run: &Run) -> Result<Stopped, Error> {
        let mut out = Stopped {
            was_running: false,
            killed: false,
            exit_code: run.record.exit_code,
        };
        if let Some(fd) = open_holder(run) {
            out.was_running = true;
            let pid = run.record.pid.unwrap_or(0);
            let grace = Duration::from_millis(run.stop_grace_ms) + STOP_MARGIN;
            if send(run, &fd, Signal::SIGTERM)? && !ends_within(&fd, grace) {
                out.killed = true;
                if send(run, &fd, Signal::SIGKILL)? && !ends_within(&fd, STOP_MARGIN) {
                    return Err(Error::Survived {
                        id: run.short_id().to_owned(),
                        pid,
                    });
                }
            }
            // What the supervisor wrote last.
            if let Some(r) = self.dir.load::<Run>(run.id())? {
                out.exit_code = r.record.exit_code;
                return self.remove(&r).map(|()| out);
            }
            return Ok(out);
        }
        self.remove(run).map(|()| out)
    }

    /// Removes a run whose supervisor has gone: its cgroups, then its record.
    fn remove(&self, run: &Run) -> Result<(), Error> {
        let ours: Vec<PathBuf> = run
            .cgroups
            .iter()
            .filter(|p| p.starts_with("/sys/fs/cgroup/") && p.exists())
            .cloned()
            .collect();
        if !ours.is_empty() {
            super::cgroup::Cgroup::adopt(ours)
                .try_remove()
                .map_err(|source| Error::Cgroup {
                    id: run.short_id().to_owned(),
                    source,
                })?;
        }
        self.delete(run.id())
    }

    /// Removes run `id`'s record.
    pub fn delete(&self, id: &str) -> Result<(), Error> {
        Ok(self.dir.remove(id)?)
    }
}

/// `run` as it is now: a record whose process has gone is `stopped`.
fn settled(mut run: Run) -> Run {
    if run.record.state != State::Stopped && run.holder().is_none() {
        run.record.state = State::Stopped;
    }
    run
}

fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// A pidfd of the run's supervisor, if the recorded process still runs.
fn open_holder(run: &Run) -> Option<OwnedFd> {
    let p = run.holder()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, p.pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Checked again with the descriptor held: it names the process that had the pid then.
    p.alive().then_some(fd)
}

/// `sig` through `fd`; `false` when the process has already ended.
fn send(run: &Run, fd: &OwnedFd, sig: Signal) -> Result<bool, Error> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal takes a pidfd, a signal, no siginfo and no flags.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as nix::libc::c_int,
            std::ptr::null::<nix::libc::siginfo_t>(),
            0,
        )
    };
    match Errno::result(r) {
        Ok(_) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(errno) => Err(Error::Signal {
            id: run.short_id().to_owned(),
            pid: run.record.pid.unwrap_or(0),
            errno,
        }),
    }
}

/// Whether the process of `fd` ends within `limit` (a pidfd reads as ready once it has).
fn ends_within(fd: &OwnedFd, limit: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Err(Errno::EINTR) => {}
            Err(_) => return true,
            Ok(_) if left.is_zero() => return false,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn runs() -> (tempfile::TempDir, Runs) {
        let d = tempfile::tempdir().unwrap();
        let runs = Runs::new(&d.path().join("runs"));
        (d, runs)
    }

    #[test]
    fn the_start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 0 0 0 0\n";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("4242 (x) Z 1"), None);
        let me = ProcessId::current();
        assert!(me.start > 0 && me.alive());
    }

    #[test]
    fn a_pid_given_to_another_process_is_not_the_recorded_one() {
        let me = ProcessId::current();
        let reused = ProcessId {
            pid: me.pid,
            start: me.start + 1,
        };
        assert!(!reused.alive());
        let (_d, runs) = runs();
        let mut run = runs.create("w", &["sleep".into()], 1000, None).unwrap();
        runs.hand_over(&mut run, reused).unwrap();
        runs.start(
            &mut run,
            &Started {
                init: 1,
                cgroups: vec![],
                control: None,
            },
        )
        .unwrap();
        assert_eq!(
            runs.state(run.id()).unwrap().unwrap().record.state,
            State::Stopped
        );
        // Nothing is signalled: this process, which has the pid now, goes on.
        assert!(!runs.kill(&run, Signal::SIGTERM).unwrap());
    }

    #[test]
    fn a_running_record_whose_process_has_gone_reads_stopped() {
        let (_d, runs) = runs();
        let mut run = runs.create("w", &["true".into()], 1000, None).unwrap();
        assert_eq!(
            runs.state(run.id()).unwrap().unwrap().record.state,
            State::Creating
        );
        let mut child = crate::process::command("sleep").arg("30").spawn().unwrap();
        let p = ProcessId::of(child.id()).unwrap();
        runs.hand_over(&mut run, p).unwrap();
        runs.start(
            &mut run,
            &Started {
                init: 1,
                cgroups: vec![],
                control: None,
            },
        )
        .unwrap();
        assert_eq!(
            runs.state(run.id()).unwrap().unwrap().record.state,
            State::Running
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let seen = runs.state(run.id()).unwrap().unwrap();
        assert_eq!(seen.record.state, State::Stopped);
        assert_eq!(runs.list().unwrap(), vec![seen.clone()]);
        // Stopping it only removes the record.
        let s = runs.stop(&seen).unwrap();
        assert!(!s.was_running && !s.killed, "{s:?}");
        assert!(runs.list().unwrap().is_empty());
    }

    #[test]
    fn a_live_run_is_running_and_stop_ends_it_and_its_record() {
        let (_d, runs) = runs();
        let mut child = crate::process::command("sleep").arg("30").spawn().unwrap();
        let mut run = runs.create("w", &["sleep".into()], 100, None).unwrap();
        runs.hand_over(&mut run, ProcessId::of(child.id()).unwrap())
            .unwrap();
        runs.start(
            &mut run,
            &Started {
                init: child.id(),
                cgroups: vec![],
                control: None,
            },
        )
        .unwrap();
        let seen = runs.find(&run.id()[..6]).unwrap();
        assert_eq!(seen.record.state, State::Running);
        // Not reaped until below: a zombie has ended all the same.
        let s = runs.stop(&seen).unwrap();
        assert!(s.was_running && !s.killed, "{s:?}");
        assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGTERM as i32));
        assert!(runs.state(run.id()).unwrap().is_none());
    }

    #[test]
    fn ids_are_found_by_prefix_and_unknown_or_ambiguous_ones_named() {
        let (_d, runs) = runs();
        let a = runs.create("a", &[], 0, None).unwrap();
        assert_eq!(runs.find(a.id()).unwrap().id(), a.id());
        assert_eq!(runs.find(a.short_id()).unwrap().id(), a.id());
        for bad in ["", "../x", "zz"] {
            assert_eq!(
                runs.find(bad).unwrap_err().to_string(),
                format!("no run `{bad}`")
            );
        }
        // Every id starts with one of 16 digits: 17 runs share a first digit.
        for _ in 0..16 {
            runs.create("b", &[], 0, None).unwrap();
        }
        let shared = (0..16).map(|d| format!("{d:x}")).find(|d| {
            runs.find(d)
                .is_err_and(|e| matches!(e, Error::Ambiguous { .. }))
        });
        assert!(shared.is_some());
    }
}
