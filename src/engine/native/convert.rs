//! What a container spec becomes natively: the record ([`Def`]) the supervisor runs —
//! the command, the sandbox's view and policy, its networks and ports, its healthcheck
//! and restart policy — and the host's users for `exec --user`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::def::{Bind, Check, Def, Health, NetDef, PortDef, RestartDef};
use super::{plain_name, Native};
use crate::config::model::{Decision, HealthTest, NetPolicy, Restart};
use crate::engine::{ContainerSpec, ErrorKind, MountSpec, NativeSpec, Result};

impl Native {
    /// The record the supervisor runs for `spec`.
    pub(super) fn def(&self, spec: &ContainerSpec) -> Result<Def> {
        let bad = |m: String| self.err(ErrorKind::Other, m);
        let native = spec.native.clone().unwrap_or(NativeSpec {
            policy: None,
            check: None,
        });
        let mut argv = spec.entrypoint.clone().unwrap_or_default();
        argv.extend(spec.command.clone().unwrap_or_default());
        if argv.is_empty() {
            return Err(bad(format!(
                "service `{}` has no command to run natively",
                spec.service
            )));
        }
        let user = resolve_user(&spec.user)
            .map_err(|e| bad(format!("service `{}`: {e}", spec.service)))?;
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("PATH".into(), crate::runner::spec::DEFAULT_PATH.into());
        env.insert("HOME".into(), "/".into());
        let mut binds = Vec::new();
        let mut deny = Vec::new();
        let mut exec_allow = Vec::new();
        let mut net = NetDef::None;
        if let Some(p) = &native.policy {
            let host = crate::runner::supervisor::host_env();
            let mut decided = Vec::new();
            env.extend(crate::runner::spec::environment(
                &p.env,
                &host,
                &mut decided,
            ));
            for r in &p.fs.read {
                binds.push(Bind {
                    source: r.clone(),
                    target: r.clone(),
                    read_only: true,
                });
            }
            for w in &p.fs.write {
                binds.push(Bind {
                    source: w.clone(),
                    target: w.clone(),
                    read_only: false,
                });
            }
            deny.clone_from(&p.fs.deny);
            exec_allow = p.exec_allow.iter().map(PathBuf::from).collect();
            net = match &p.net {
                NetPolicy::None => NetDef::None,
                NetPolicy::Host => NetDef::Host,
                NetPolicy::Proxy(r) => NetDef::Proxy {
                    default: decision_word(r.default).into(),
                    allow: r.allow.clone(),
                    warn: r.warn.clone(),
                    deny: r.deny.clone(),
                },
            };
        }
        env.extend(spec.env.clone());
        for m in &spec.mounts {
            match m {
                MountSpec::Bind {
                    source,
                    target,
                    read_only,
                } => binds.push(Bind {
                    source: source.clone(),
                    target: PathBuf::from(target),
                    read_only: *read_only,
                }),
                MountSpec::Volume {
                    name,
                    target,
                    read_only,
                } => {
                    let dir = self.volume_dir(name);
                    if !plain_name(name) || !dir.is_dir() {
                        return Err(self.err(
                            ErrorKind::NotFound,
                            format!("service `{}`: no volume {name}", spec.service),
                        ));
                    }
                    binds.push(Bind {
                        source: dir,
                        target: PathBuf::from(target),
                        read_only: *read_only,
                    });
                }
            }
        }
        let health = native
            .check
            .as_ref()
            .zip(spec.healthcheck.as_ref())
            .map(|(t, h)| Health {
                check: match t {
                    HealthTest::Cmd(argv) => Check::Cmd { argv: argv.clone() },
                    HealthTest::Tcp(port) => Check::Tcp { port: *port },
                    HealthTest::Http(url) => http_check(url),
                },
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                retries: h.retries,
                start_period_ms: h.start_period_ms,
            });
        let networks = spec
            .networks
            .iter()
            .chain(&spec.late_networks)
            .map(|n| (n.clone(), spec.service.clone()))
            .collect();
        Ok(Def {
            service: spec.service.clone(),
            labels: spec.labels.clone(),
            argv,
            env: env.into_iter().collect(),
            workdir: PathBuf::from(spec.workdir.as_deref().unwrap_or("/")),
            user,
            binds,
            deny,
            tmpfs: spec.tmpfs.iter().map(|t| PathBuf::from(&t.path)).collect(),
            exec_allow,
            memory: spec.memory,
            cpus: spec.cpus,
            pids: spec.pids_limit,
            ulimits: spec
                .ulimits
                .iter()
                .map(|(k, u)| (k.clone(), (u.soft, u.hard)))
                .collect(),
            net,
            ports: spec
                .ports
                .iter()
                .map(|p| PortDef {
                    host_ip: p.host_ip.to_string(),
                    host_port: p.host,
                    container_port: p.container,
                    protocol: format!("{:?}", p.protocol).to_lowercase(),
                })
                .collect(),
            networks,
            hosts: Vec::new(),
            health,
            restart: match spec.restart {
                Restart::No => RestartDef::No,
                Restart::Always => RestartDef::Always,
                Restart::OnFailure(max) => RestartDef::OnFailure { max },
                Restart::UnlessStopped => RestartDef::UnlessStopped,
            },
            stop_signal: spec.stop_signal.unwrap_or(nix::libc::SIGTERM),
            stop_grace_s: spec.stop_timeout_s,
        })
    }
}

fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Warn => "warn",
        Decision::Deny => "deny",
    }
}

/// `http://HOST:PORT/PATH` as a check on the service's own port.
fn http_check(url: &str) -> Check {
    let t = crate::healthcheck::HttpTarget::parse(url);
    Check::Http {
        port: t.port,
        host: t.host,
        path: t.path,
    }
}

/// `uid[:gid]` or a user name of this host (for `exec --user`; a service's own `user` is
/// numeric); empty: the caller's default. Names are read
/// from /etc/passwd and /etc/group themselves: devbox links glibc statically, and its
/// NSS modules cannot be loaded into it.
pub fn resolve_user(user: &str) -> std::result::Result<Option<(u32, u32)>, String> {
    if user.is_empty() {
        return Ok(None);
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    // name:x:uid:gid:...
    let entry = |f: &dyn Fn(&[&str]) -> bool| {
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|e| e.len() > 3 && f(e))
    };
    let (uid, primary) = match u.parse::<u32>() {
        // As the service's own `user`: a number alone is the gid too.
        Ok(n) => (n, n),
        Err(_) => match entry(&|e| e[0] == u) {
            Some(e) => (
                e[2].parse()
                    .map_err(|_| format!("user `{u}` has no uid in /etc/passwd"))?,
                e[3].parse()
                    .map_err(|_| format!("user `{u}` has no gid in /etc/passwd"))?,
            ),
            None => return Err(format!("user `{u}` does not exist on this host")),
        },
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => std::fs::read_to_string("/etc/group")
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|e| e.len() > 2 && e[0] == g)
                .and_then(|e| e[2].parse().ok())
                .ok_or_else(|| format!("group `{g}` does not exist on this host"))?,
        },
    };
    Ok(Some((uid, gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record a native service's spec becomes, from a file as a user writes it.
    #[test]
    fn a_native_spec_becomes_the_record_the_supervisor_runs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("site")).unwrap();
        std::fs::write(dir.path().join("web.env"), "FROM_FILE=1\n").unwrap();
        std::fs::write(
            dir.path().join("sandbox.toml"),
            r#"
[project]
name = "recs"

[volumes.cache]

[services.web]
entrypoint = ["/usr/bin/perl"]
command = ["server.pl", "8080"]
workdir = "/srv"
user = "1234"
env = { MODE = "dev" }
env_file = "web.env"
volumes = ["./site:/srv:ro", "cache:/cache"]
tmpfs = ["/scratch"]
ports = ["8080"]
memory = "64m"
ulimits = { nofile = { soft = 64, hard = 128 }, nproc = 50 }
restart = "on-failure:3"
stop_signal = "SIGINT"
stop_grace_period = "2s"
healthcheck = { http = "/health", interval = "1s" }
policy = { net = "host" }
"#,
        )
        .unwrap();
        let spec = crate::engine::first_spec_in(dir.path());
        let data = tempfile::tempdir().unwrap();
        let native = Native {
            runtime: data.path().join("run"),
            data: data.path().to_path_buf(),
            owner: None,
        };
        // A named volume is the engine's directory: without it the service cannot start.
        let missing = native.def(&spec).unwrap_err();
        assert_eq!(missing.message, "service `web`: no volume recs_cache");
        std::fs::create_dir_all(native.volume_dir("recs_cache")).unwrap();
        let d = native.def(&spec).unwrap();
        assert_eq!(d.argv, ["/usr/bin/perl", "server.pl", "8080"]);
        assert_eq!(d.workdir, PathBuf::from("/srv"));
        assert_eq!(d.user, Some((1234, 1234)));
        let env: BTreeMap<_, _> = d.env.iter().cloned().collect();
        assert_eq!(env["MODE"], "dev");
        assert_eq!(env["FROM_FILE"], "1");
        assert_eq!(env["PATH"], crate::runner::spec::DEFAULT_PATH);
        assert_eq!(env["HOME"], "/");
        assert_eq!(
            d.binds,
            [
                Bind {
                    source: dir.path().join("site"),
                    target: "/srv".into(),
                    read_only: true
                },
                Bind {
                    source: native.volume_dir("recs_cache"),
                    target: "/cache".into(),
                    read_only: false
                },
            ]
        );
        assert_eq!(d.tmpfs, [PathBuf::from("/scratch")]);
        assert_eq!(d.memory, Some(64 << 20));
        assert_eq!(
            d.ulimits,
            [("nofile".into(), (64, 128)), ("nproc".into(), (50, 50))].into()
        );
        assert_eq!(d.net, NetDef::Host);
        assert_eq!(d.restart, RestartDef::OnFailure { max: Some(3) });
        assert_eq!(d.stop_signal, nix::libc::SIGINT);
        assert_eq!(d.stop_grace_s, 2);
        let h = d.health.unwrap();
        assert_eq!(
            h.check,
            Check::Http {
                port: 8080,
                host: "127.0.0.1".into(),
                path: "/health".into()
            }
        );
        assert_eq!(h.interval_ms, 1000);
        assert_eq!(
            d.ports,
            [PortDef {
                host_ip: "127.0.0.1".into(),
                host_port: 8080,
                container_port: 8080,
                protocol: "tcp".into()
            }]
        );
    }

    #[test]
    fn http_checks_and_users_resolve() {
        assert_eq!(
            http_check("http://127.0.0.1:8080/health?x=1"),
            Check::Http {
                port: 8080,
                host: "127.0.0.1".into(),
                path: "/health?x=1".into()
            }
        );
        assert_eq!(
            http_check("http://localhost"),
            Check::Http {
                port: 80,
                host: "localhost".into(),
                path: "/".into()
            }
        );
        assert_eq!(resolve_user(""), Ok(None));
        assert_eq!(resolve_user("1234:99"), Ok(Some((1234, 99))));
        assert_eq!(resolve_user("root"), Ok(Some((0, 0))));
        assert_eq!(
            resolve_user("no-such-user-here"),
            Err("user `no-such-user-here` does not exist on this host".into())
        );
        assert!(plain_name("refbox_cache") && !plain_name("../x") && !plain_name(".x"));
    }
}
