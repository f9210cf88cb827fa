//! The monitor of one run of a native service (`devbox __native-service`): a fresh,
//! single-threaded devbox started by the supervisor, which turns the container's record
//! into a [`RunSpec`] and runs it with devbox's runner. Once the sandbox is set up it
//! tells the supervisor the init's pid and waits for its word before the program
//! starts; it exits with the program's code. It dies with the supervisor
//! (PR_SET_PDEATHSIG), and the sandbox dies with it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::def::{Container, Def, NetDef, Request, Response};
use super::paths::ProjectDir;
use crate::config::model::{Decision, Limits};
use crate::runner::rlimit::Ulimit;
use crate::runner::spec::{Mount, MountKind, Net, NetRules, RunSpec, DEFAULT_READ};
use crate::runner::state::StateDir;

/// The exit code when the run could not be set up (as the runner's init uses).
pub const EXIT_SETUP: i32 = 125;

fn decision(w: &str) -> Decision {
    match w {
        "allow" => Decision::Allow,
        "warn" => Decision::Warn,
        _ => Decision::Deny,
    }
}

/// The run of `def`: the system's read-only defaults, the service's binds and hidden
/// paths (parents first), its limits and network.
pub fn run_spec(def: &Def) -> Result<RunSpec, String> {
    let mut mounts: Vec<Mount> = DEFAULT_READ
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .map(|path| Mount {
            path,
            kind: MountKind::ReadOnly,
            source: None,
        })
        .collect();
    for b in &def.binds {
        mounts.retain(|m| m.path != b.target);
        mounts.push(Mount {
            path: b.target.clone(),
            kind: if b.read_only {
                MountKind::ReadOnly
            } else {
                MountKind::ReadWrite
            },
            source: (b.source != b.target).then(|| b.source.clone()),
        });
    }
    for d in &def.deny {
        mounts.push(Mount {
            path: d.clone(),
            kind: MountKind::Deny,
            source: None,
        });
    }
    mounts.sort_by_key(|m| m.path.components().count());
    let net = match &def.net {
        NetDef::None => Net::None,
        NetDef::Host => Net::Host,
        NetDef::Proxy {
            default,
            allow,
            warn,
            deny,
        } => Net::Proxy(NetRules {
            default: decision(default),
            allow: allow.clone(),
            warn: warn.clone(),
            deny: deny.clone(),
        }),
    };
    Ok(RunSpec {
        name: def.service.clone(),
        argv: def.argv.clone(),
        workdir: def.workdir.clone(),
        env: def.env.clone(),
        mounts,
        tmpfs: def.tmpfs.clone(),
        hosts: def.hosts.clone(),
        user: def.user,
        net,
        exec_allow: def.exec_allow.clone(),
        limits: Limits {
            memory: def.memory,
            pids: def.pids,
            cpus: def.cpus,
            // The service's own, `ulimits` among them: see [`ulimits`].
            nofile: None,
            fsize: None,
            timeout_ms: None,
            stop_grace_ms: Some(u64::from(def.stop_grace_s) * 1000),
        },
        decisions: Vec::new(),
    })
}

/// The service's `ulimits`, each a limit of its worker, soft and hard as written.
pub fn ulimits(def: &Def) -> Result<Vec<Ulimit>, String> {
    def.ulimits
        .iter()
        .map(|(name, (soft, hard))| {
            Ulimit::new(name, *soft, *hard).ok_or_else(|| format!("unknown ulimit `{name}`"))
        })
        .collect()
}

/// Tells the supervisor the sandbox is set up, and waits for its answer.
fn report_started(socket: &Path, id: &str, pid: u32) -> Result<(), String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let req = Request::Started {
        id: id.to_owned(),
        monitor: std::process::id(),
        pid,
    };
    let mut line = serde_json::to_vec(&req).expect("requests serialize");
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut answer = String::new();
    std::io::BufReader::new(&s)
        .read_line(&mut answer)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let r: Response =
        serde_json::from_str(&answer).map_err(|e| format!("the supervisor's answer: {e}"))?;
    match r.error {
        Some((_, why)) => Err(why),
        None => Ok(()),
    }
}

/// Runs container `id` of the project in `dir`; returns the exit code.
pub fn main(dir: &Path, id: &str) -> i32 {
    // SAFETY: prctl with constant arguments.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL, 0, 0, 0) };
    if nix::unistd::getppid().as_raw() == 1 {
        return EXIT_SETUP;
    }
    let pd = ProjectDir {
        dir: dir.to_path_buf(),
    };
    let c: Container = match StateDir::new(&pd.containers()).load(id) {
        Ok(Some(c)) => c,
        Ok(None) => {
            eprintln!("devbox: no container {id} in {}", pd.dir.display());
            return EXIT_SETUP;
        }
        Err(e) => {
            eprintln!("devbox: {e}");
            return EXIT_SETUP;
        }
    };
    let spec = match run_spec(&c.def) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("devbox: service `{}`: {e}", c.def.service);
            return EXIT_SETUP;
        }
    };
    match ulimits(&c.def) {
        Ok(u) => {
            crate::runner::rlimit::set_service_limits(u);
            for n in crate::runner::rlimit::service_notes().unwrap_or_default() {
                eprintln!("devbox: warning: {n}");
            }
        }
        Err(e) => {
            eprintln!("devbox: service `{}`: {e}", c.def.service);
            return EXIT_SETUP;
        }
    }
    // The runner's decisions (env, fs, net, lifecycle), beside the service's output.
    let audit_path = pd.logs().join(format!("{}.audit.jsonl", c.record.name));
    let audit = match crate::runner::AuditLog::to_file(&spec.name, &audit_path) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("devbox: warning: no audit log ({e})");
            crate::runner::AuditLog::discard()
        }
    };
    let socket = pd.socket();
    let id = id.to_owned();
    let opts = crate::runner::supervisor::Options {
        audit: Arc::new(audit),
        no_landlock: false,
        warn: Box::new(|w: &str| eprintln!("devbox: warning: {w}")),
        on_ready: None,
        on_started: None,
        control: false,
        before_go: Some(Box::new(move |pid| {
            report_started(&socket, &id, pid.as_raw() as u32)
        })),
    };
    match crate::runner::supervisor::run(&spec, opts) {
        Ok(o) => {
            if let Some(e) = &o.exec_error {
                eprintln!("devbox: {e}");
            }
            if let Some(why) = &o.stop_killed {
                eprintln!("devbox: `{}` was killed: {why}", spec.name);
            }
            if o.oom_killed {
                eprintln!("devbox: `{}` was stopped at its memory limit", spec.name);
            }
            o.code
        }
        Err(e) => {
            eprintln!("devbox: service `{}`: {e}", spec.name);
            EXIT_SETUP
        }
    }
}
