//! `devbox run`: a worker from sandbox.toml, or an ad-hoc command, isolated by the native
//! runner. The worker's exit code, stdout and stderr are devbox's; devbox's own words go
//! to stderr, prefixed `devbox:`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{bail, Context};

use super::Global;
use crate::config::absolute;
use crate::config::model::{
    Decision, EnvPolicy, FsPolicy, Limits, NetPolicy, NetRules, Policy, Worker,
};
use crate::config::validate::{parse_duration_ms, parse_size, valid_destination};
use crate::runner::lifecycle::{self, ProcessId, Runs};
use crate::runner::spec;
use crate::runner::state::State;
use crate::runner::supervisor::{self, Options};
use crate::runner::AuditLog;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  devbox run transform\n  devbox run connector -- --verbose\n  devbox run --rw ./out --net allow=pypi.org:443 -- python3 fetch.py\n  devbox run --list\n  devbox run --stop 3f2a9c0d1e2b"
)]
pub struct Args {
    /// The worker to run, from [workers.NAME]; without it, the command after `--` runs
    /// ad hoc under the flags' policy.
    pub worker: Option<String>,
    /// Extra arguments for the worker, or the ad-hoc command.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
    /// Show PATH read-only (repeatable).
    #[arg(long = "ro", value_name = "PATH")]
    pub ro: Vec<PathBuf>,
    /// Show PATH writable (repeatable).
    #[arg(long = "rw", value_name = "PATH")]
    pub rw: Vec<PathBuf>,
    /// Hide PATH even where a shown path contains it (repeatable).
    #[arg(long = "deny", value_name = "PATH")]
    pub deny: Vec<PathBuf>,
    /// `none`, `host`, `allow=HOST:PORT`, `warn=HOST:PORT`, `deny=HOST:PORT` or
    /// `default=allow|warn|deny` (repeatable; HOST may start with `*.`, PORT may be `*`).
    #[arg(long = "net", value_name = "RULE")]
    pub net: Vec<String>,
    /// Allow HOST:PORT through the proxy and record it (repeatable).
    #[arg(long = "warn-net", value_name = "HOST:PORT")]
    pub warn_net: Vec<String>,
    /// Pass the caller's VAR (repeatable).
    #[arg(long = "env-pass", value_name = "VAR")]
    pub env_pass: Vec<String>,
    /// Set VAR=VALUE (repeatable).
    #[arg(long = "env", value_name = "VAR=VALUE")]
    pub env: Vec<String>,
    /// The only binaries the worker may execute (repeatable).
    #[arg(long = "exec-allow", value_name = "PATH")]
    pub exec_allow: Vec<PathBuf>,
    /// Memory limit, e.g. `256m` (a cgroup; without one, the address space).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Most processes and threads at once.
    #[arg(long, value_name = "N")]
    pub pids: Option<u32>,
    /// CPU time, in cores, e.g. `0.5` (needs a cgroup).
    #[arg(long, value_name = "CORES")]
    pub cpus: Option<f64>,
    /// Most open files per process.
    #[arg(long, value_name = "N")]
    pub nofile: Option<u64>,
    /// Largest file the worker may write, e.g. `8m`.
    #[arg(long, value_name = "SIZE")]
    pub fsize: Option<String>,
    /// Wall-clock limit, e.g. `30s`.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// How long the worker has to stop after devbox forwards SIGTERM, SIGINT or SIGHUP to
    /// it, before the whole sandbox is killed (exit 137), e.g. `5s`. Default: 10s. A
    /// second such signal kills it at once.
    #[arg(long, value_name = "DURATION")]
    pub stop_grace: Option<String>,
    /// Working directory inside the sandbox. Ad hoc without it, the current directory is
    /// shown (read-only unless a --rw covers it) and the command starts there.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Where decisions are logged: a file, or `-` for stderr. Default: the project's
    /// `.data/logs/devbox-audit.jsonl` (ad hoc: devbox's state directory).
    #[arg(long, value_name = "PATH|-")]
    pub audit: Option<String>,
    /// Serve the control socket (its path is in DEVBOX_CONTROL inside); also
    /// `control = true` in [workers.NAME].
    #[arg(long)]
    pub control: bool,
    /// Return once the worker says READY on the control socket, leaving it running (as a
    /// recorded run: see --list and --stop).
    #[arg(long)]
    pub wait_ready: bool,
    /// List this user's detached runs (--wait-ready): id, worker, supervisor pid, state,
    /// since when, command.
    #[arg(long, conflicts_with_all = ["worker", "args", "stop", "wait_ready", "control"])]
    pub list: bool,
    /// With --list: the records as JSON.
    #[arg(long, requires = "list")]
    pub json: bool,
    /// Stop run ID (or the one run whose id starts with ID): SIGTERM to its supervisor,
    /// which gives the worker its stop grace; SIGKILL if the supervisor is still there 5s
    /// after that. The run's record goes with it.
    #[arg(long, value_name = "ID", conflicts_with_all = ["worker", "args", "wait_ready", "control"])]
    pub stop: Option<String>,
}

pub(super) fn run(g: &Global, a: &Args) -> anyhow::Result<ExitCode> {
    if a.list {
        return list(a.json);
    }
    if let Some(id) = &a.stop {
        return stop(id);
    }
    let cwd = std::env::current_dir()?;
    let (name, mut worker, extra, project) = match &a.worker {
        Some(name) => {
            let loaded = super::load_for_workers(g)?;
            let c = loaded.config;
            let w = super::worker(&c, name)?;
            crate::data::ensure(&c.data).context("creating the .data layout")?;
            (name.clone(), w.clone(), a.args.clone(), Some(c))
        }
        None => {
            if a.args.is_empty() {
                eprintln!(
                    "error: nothing to run\nhint: devbox run WORKER, or devbox run [FLAGS] -- CMD ARGS..."
                );
                return Ok(ExitCode::from(super::EXIT_CONFIG));
            }
            (
                "adhoc".to_string(),
                Worker {
                    command: a.args.clone(),
                    workdir: cwd.display().to_string(),
                    control: false,
                    policy: Policy {
                        net: NetPolicy::None,
                        fs: FsPolicy::default(),
                        exec_allow: vec![],
                        env: EnvPolicy::default(),
                        limits: Limits::default(),
                    },
                },
                vec![],
                None,
            )
        }
    };
    // A flag devbox cannot read is a usage error, like clap's own: exit 2, nothing run.
    if let Err(e) = overlay(&mut worker.policy, a, &cwd) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(super::EXIT_CONFIG));
    }
    if a.worker.is_none() && a.workdir.is_none() {
        show_cwd(&mut worker, &cwd);
    }
    if let Some(w) = &a.workdir {
        worker.workdir = absolute(w, &cwd).display().to_string();
    }
    if a.worker.is_none() && !worker.policy.fs.read.is_empty() {
        // Ad hoc, --ro adds to the defaults instead of replacing them.
        let mut read: Vec<PathBuf> = spec::DEFAULT_READ.iter().map(PathBuf::from).collect();
        read.append(&mut worker.policy.fs.read);
        worker.policy.fs.read = read;
    }
    let spec = spec::resolve(&name, &worker, &extra, &supervisor::host_env());

    // Logs go to the project's .data/logs, or devbox's state directory when ad hoc.
    let open_log = |file: &str| -> anyhow::Result<(std::fs::File, PathBuf)> {
        match &project {
            // Through held directories: a .data changed meanwhile cannot redirect it.
            Some(c) => Ok((
                crate::data::open_append(&c.data, Path::new("logs"), file, 0o600)
                    .with_context(|| format!("opening .data/logs/{file}"))?,
                c.data.root.join("logs").join(file),
            )),
            None => {
                let dirs = directories::ProjectDirs::from("", "", "devbox")
                    .context("no home directory for devbox's state")?;
                let path = dirs.state_dir().unwrap_or(dirs.data_local_dir()).join(file);
                Ok((crate::fsutil::open_append(&path, 0o600)?, path))
            }
        }
    };
    let audit = Arc::new(match a.audit.as_deref() {
        Some("-") => AuditLog::to_stderr(&name),
        Some(p) => AuditLog::to_file(&name, &absolute(Path::new(p), &cwd))?,
        None => AuditLog::to_open_file(&name, open_log("devbox-audit.jsonl")?.0),
    });
    reexec_if_threaded()?;
    let control = a.control || a.wait_ready || worker.control;
    let warn = Box::new(|w: &str| eprintln!("devbox: warning: {w}"));
    if a.wait_ready {
        let (out, log) = open_log(&format!("{name}.log"))?;
        let runs = Runs::here();
        let grace = spec
            .limits
            .stop_grace_ms
            .unwrap_or(supervisor::DEFAULT_STOP_GRACE_MS);
        let record = runs
            .create(&name, &spec.argv, grace, Some(&log))
            .context("recording the run")?;
        return detach(&spec, audit, warn, out, &log, (runs, record));
    }
    // Not recorded: its record's writes (made, started, removed) would cost each run
    // 0.2 ms on a tmpfs and 16 ms on ext4, synced; the caller holds it already (Ctrl-C,
    // or a signal to this process).
    let outcome = supervisor::run(
        &spec,
        Options {
            audit,
            no_landlock: std::env::var_os("DEVBOX_NO_LANDLOCK").is_some_and(|v| v == "1"),
            warn,
            on_ready: None,
            before_go: None,
            control,
            on_started: None,
        },
    )?;
    Ok(finish(&spec, &outcome))
}

/// `--list`: the runs as a table, oldest first, or as JSON.
fn list(json: bool) -> anyhow::Result<ExitCode> {
    let runs = Runs::here().list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![["ID", "WORKER", "PID", "STATE", "SINCE", "COMMAND"].map(String::from)];
    for r in &runs {
        let stopped = r.record.state == State::Stopped;
        rows.push([
            r.short_id().to_owned(),
            r.record.name.clone(),
            match r.record.pid {
                Some(p) if !stopped => p.to_string(),
                _ => "-".to_owned(),
            },
            match (r.record.state, r.record.exit_code) {
                (State::Stopped, Some(c)) => format!("stopped ({c})"),
                (s, _) => s.word().to_owned(),
            },
            since(r.record.started.as_deref()),
            command_line(&r.command),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// When a run started, to the second.
fn since(started: Option<&str>) -> String {
    started
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// A command as one short line: its words, cut at 40 characters.
fn command_line(argv: &[String]) -> String {
    let line = argv.join(" ").replace(['\n', '\t'], " ");
    if line.chars().count() <= 40 {
        return line;
    }
    format!("{}…", line.chars().take(39).collect::<String>())
}

/// `--stop ID`.
fn stop(id: &str) -> anyhow::Result<ExitCode> {
    let runs = Runs::here();
    let run = runs.find(id).map_err(|e| match e {
        lifecycle::Error::Unknown(_) => {
            anyhow::anyhow!("{e}\nhint: `devbox run --list` shows the runs")
        }
        e => e.into(),
    })?;
    let s = runs.stop(&run)?;
    let (name, id) = (&run.record.name, run.short_id());
    let exit = s
        .exit_code
        .map(|c| format!(", exit {c}"))
        .unwrap_or_default();
    if !s.was_running {
        eprintln!("devbox: `{name}` (run {id}{exit}) had already stopped; its record is removed");
    } else if s.killed {
        eprintln!(
            "devbox: `{name}` (run {id}) did not stop within its {} stop grace and {}s more; its supervisor was killed",
            humantime::format_duration(std::time::Duration::from_millis(run.stop_grace_ms)),
            lifecycle::STOP_MARGIN.as_secs()
        );
    } else {
        eprintln!("devbox: stopped `{name}` (run {id}{exit})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The sandbox is cloned from this process, which must have one thread for that (a clone
/// copies only the calling thread, and the others' locks with it). If anything has
/// started threads by now, devbox starts itself again, from the top, as a fresh
/// single-threaded helper with the same arguments: exec ends every thread.
fn reexec_if_threaded() -> anyhow::Result<()> {
    const AGAIN: &str = "DEVBOX_RUN_REEXECUTED";
    if supervisor::threads() <= 1 || std::env::var_os(AGAIN).is_some() {
        return Ok(());
    }
    use std::os::unix::ffi::OsStrExt;
    let args: Vec<std::ffi::CString> = std::env::args_os()
        .map(|a| std::ffi::CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    std::env::set_var(AGAIN, "1");
    let exe = std::ffi::CString::new("/proc/self/exe").unwrap_or_default();
    let e = nix::unistd::execv(&exe, &args).unwrap_err();
    bail!("starting devbox again single-threaded: {e}")
}

/// Says how the worker ended when that is not obvious from its own output, and passes its
/// exit code on.
fn finish(spec: &spec::RunSpec, o: &supervisor::Outcome) -> ExitCode {
    if let Some(e) = &o.exec_error {
        eprintln!("devbox: {e}");
    }
    if o.timed_out {
        eprintln!(
            "devbox: `{}` stopped after its {} timeout",
            spec.name,
            humantime::format_duration(std::time::Duration::from_millis(
                spec.limits.timeout_ms.unwrap_or(0)
            ))
        );
    }
    if let Some(why) = &o.stop_killed {
        eprintln!("devbox: `{}` was killed: {why}", spec.name);
    }
    if o.oom_killed {
        eprintln!(
            "devbox: `{}` was stopped at its memory limit ({} bytes)",
            spec.name,
            spec.limits.memory.unwrap_or(0)
        );
    }
    if o.pids_limit_hit {
        eprintln!(
            "devbox: `{}` reached its pids limit ({})",
            spec.name,
            spec.limits.pids.unwrap_or(0)
        );
    }
    ExitCode::from(o.code.clamp(0, 255) as u8)
}

/// `--wait-ready`: the supervisor goes on in a child in its own session, the worker's
/// output appended to `log`, holding the run's record from then on; this process returns
/// once the worker says READY (exit 0), or with the worker's code if it ends first (and
/// then the record goes: the caller has heard how it ended).
fn detach(
    spec: &spec::RunSpec,
    audit: Arc<AuditLog>,
    warn: Box<dyn Fn(&str)>,
    out: std::fs::File,
    log: &Path,
    (runs, run): (Runs, lifecycle::Run),
) -> anyhow::Result<ExitCode> {
    use std::io::Read;
    let null = std::fs::File::open("/dev/null")?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: devbox is single-threaded here (the supervisor checks again).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            // Let go of the caller's terminal and pipes: it may wait for them to close.
            use std::os::fd::AsRawFd;
            unsafe {
                nix::libc::dup2(null.as_raw_fd(), 0);
                nix::libc::dup2(out.as_raw_fd(), 1);
                nix::libc::dup2(out.as_raw_fd(), 2);
            }
            let mut ready = std::fs::File::from(w);
            let run = Rc::new(RefCell::new(run));
            // A run its record does not name could not be stopped by id: none is started.
            if let Err(e) = runs.hand_over(&mut run.borrow_mut(), ProcessId::current()) {
                eprintln!("devbox: recording the run: {e}");
                std::process::exit(125)
            }
            let started = {
                let (runs, run) = (runs.clone(), run.clone());
                move |s: &supervisor::Started| {
                    if let Err(e) = runs.start(&mut run.borrow_mut(), s) {
                        eprintln!("devbox: warning: recording the run as running: {e}");
                    }
                }
            };
            let outcome = supervisor::run(
                spec,
                Options {
                    audit,
                    no_landlock: false,
                    warn,
                    on_ready: Some(Box::new(move || {
                        let _ = std::io::Write::write_all(&mut ready, b"R");
                    })),
                    control: true,
                    before_go: None,
                    on_started: Some(Box::new(started)),
                },
            );
            let code = match outcome {
                Ok(o) => o.code,
                Err(e) => {
                    eprintln!("devbox: {e}");
                    125
                }
            };
            if let Err(e) = runs.finish(&mut run.borrow_mut(), code) {
                eprintln!("devbox: warning: recording the run's end: {e}");
            }
            std::process::exit(code)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut b = [0u8; 1];
            let n = std::fs::File::from(r).read(&mut b).unwrap_or(0);
            if n == 1 {
                let id = run.short_id();
                eprintln!(
                    "devbox: `{}` is ready (run {id}, supervisor pid {child}; output in {}; stop it with `devbox run --stop {id}`)",
                    spec.name,
                    log.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let status = nix::sys::wait::waitpid(child, None)?;
            let _ = runs.delete(run.id());
            let code = match status {
                nix::sys::wait::WaitStatus::Exited(_, c) => c,
                _ => 1,
            };
            eprintln!("devbox: `{}` ended before it said READY", spec.name);
            Ok(ExitCode::from(code.clamp(1, 255) as u8))
        }
    }
}

/// Ad hoc without `--workdir`, the command starts where the caller is, as docker's
/// `-w $PWD -v $PWD:$PWD` would have it: the current directory is shown read-only unless a
/// shown or denied path already covers it (a `--rw` parent keeps it writable, a `--deny`
/// keeps it hidden). `/` is never shown whole.
fn show_cwd(w: &mut Worker, cwd: &Path) {
    let fs = &w.policy.fs;
    let covered = fs
        .read
        .iter()
        .chain(&fs.write)
        .chain(&fs.deny)
        .any(|p| cwd.starts_with(p));
    if cwd != Path::new("/") && !covered {
        w.policy.fs.read.push(cwd.to_path_buf());
    }
    w.workdir = cwd.display().to_string();
}

/// Lays the flags over the worker's policy: paths and lists add, limits replace.
fn overlay(p: &mut Policy, a: &Args, cwd: &Path) -> anyhow::Result<()> {
    let abs = |v: &[PathBuf]| v.iter().map(|x| absolute(x, cwd)).collect::<Vec<_>>();
    p.fs.read.extend(abs(&a.ro));
    p.fs.write.extend(abs(&a.rw));
    p.fs.deny.extend(abs(&a.deny));
    p.exec_allow
        .extend(abs(&a.exec_allow).iter().map(|x| x.display().to_string()));
    p.env.pass.extend(a.env_pass.iter().cloned());
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv}: expected VAR=VALUE");
        };
        p.env.set.insert(k.to_string(), v.to_string());
    }
    for rule in &a.net {
        match rule.split_once('=') {
            None if rule == "none" => p.net = NetPolicy::None,
            None if rule == "host" => p.net = NetPolicy::Host,
            Some(("allow", d)) => proxy(p).1.push(destination(d)?),
            Some(("warn", d)) => proxy(p).2.push(destination(d)?),
            Some(("deny", d)) => proxy(p).3.push(destination(d)?),
            Some(("default", d)) => {
                *proxy(p).0 = match d {
                    "allow" => Decision::Allow,
                    "warn" => Decision::Warn,
                    "deny" => Decision::Deny,
                    _ => bail!("--net default={d}: expected allow, warn or deny"),
                }
            }
            _ => bail!(
                "--net {rule}: expected none, host, allow=HOST:PORT, warn=HOST:PORT, deny=HOST:PORT or default=allow|warn|deny"
            ),
        }
    }
    for d in &a.warn_net {
        proxy(p).2.push(destination(d)?);
    }
    let l = &mut p.limits;
    if let Some(m) = &a.memory {
        l.memory = Some(
            parse_size(m).with_context(|| format!("--memory {m}: expected a size such as 256m"))?,
        );
    }
    if let Some(f) = &a.fsize {
        l.fsize = Some(
            parse_size(f).with_context(|| format!("--fsize {f}: expected a size such as 8m"))?,
        );
    }
    if let Some(t) = &a.timeout {
        l.timeout_ms = Some(
            parse_duration_ms(t)
                .with_context(|| format!("--timeout {t}: expected a duration such as 30s"))?,
        );
    }
    if let Some(t) = &a.stop_grace {
        l.stop_grace_ms = Some(
            parse_duration_ms(t)
                .with_context(|| format!("--stop-grace {t}: expected a duration such as 5s"))?,
        );
    }
    l.pids = a.pids.or(l.pids);
    l.cpus = a.cpus.or(l.cpus);
    l.nofile = a.nofile.or(l.nofile);
    Ok(())
}

/// The proxy rules of `p`, switching it to proxy mode (default deny) first if needed.
fn proxy(
    p: &mut Policy,
) -> (
    &mut Decision,
    &mut Vec<String>,
    &mut Vec<String>,
    &mut Vec<String>,
) {
    if !matches!(p.net, NetPolicy::Proxy(_)) {
        p.net = NetPolicy::Proxy(NetRules {
            default: Decision::Deny,
            allow: vec![],
            warn: vec![],
            deny: vec![],
        });
    }
    match &mut p.net {
        NetPolicy::Proxy(r) => (&mut r.default, &mut r.allow, &mut r.warn, &mut r.deny),
        _ => unreachable!("set just above"),
    }
}

fn destination(d: &str) -> anyhow::Result<String> {
    if !valid_destination(d) {
        bail!("`{d}` is not a destination: expected HOST:PORT, HOST may start with `*.` and PORT may be `*`");
    }
    Ok(d.to_string())
}
