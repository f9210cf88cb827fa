//! One run of a native service's healthcheck, from the supervisor: `tcp` and `http` from
//! outside, through a socket made in the service's network namespace; `cmd` inside the
//! sandbox, as `devbox exec` runs a command.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::def::{Check, Def};

/// `Ok` when the check passes; `Err` says why not. `run` is the container's project
/// directory, its id and its sandbox's init.
pub(super) fn probe(
    check: &Check,
    run: (&Path, &str, u32),
    def: &Def,
    timeout: Duration,
) -> Result<(), String> {
    let (dir, id, pid) = run;
    let pid_t = Pid::from_raw(pid as i32);
    let addr = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match check {
        Check::Tcp { port } => crate::runner::netns::connect_tcp_in(pid_t, addr(*port))
            .map(drop)
            .map_err(|e| format!("127.0.0.1:{port}: {e}")),
        Check::Http { port, host, path } => {
            let mut s = crate::runner::netns::connect_tcp_in(pid_t, addr(*port))
                .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
            s.set_read_timeout(Some(timeout))
                .and_then(|()| s.set_write_timeout(Some(timeout)))
                .and_then(|()| {
                    s.write_all(
                        format!(
                            "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: devbox-healthcheck\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                })
                .map_err(|e| format!("sending GET {path}: {e}"))?;
            let mut head = [0u8; 64];
            let mut got = 0;
            while got < 12 {
                match s.read(&mut head[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(format!("reading the answer to GET {path}: {e}")),
                }
            }
            let line = String::from_utf8_lossy(&head[..got]);
            let status = line
                .strip_prefix("HTTP/1.")
                .and_then(|r| r.get(2..5))
                .and_then(|c| c.parse::<u16>().ok());
            match status {
                Some(200..=399) => Ok(()),
                Some(c) => Err(format!("GET {path}: status {c}")),
                None => Err(format!("GET {path}: no HTTP answer")),
            }
        }
        Check::Cmd { argv } => {
            // As the service: its user, environment and working directory.
            let env = def.env.iter().cloned().collect();
            let workdir = def.workdir.display().to_string();
            let mut cmd = super::exec::command(dir, id, pid, def.user, Some(&workdir), &env, argv)?;
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let mut child = cmd.spawn().map_err(|e| format!("running the check: {e}"))?;
            let end = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(s)) if s.success() => return Ok(()),
                    Ok(Some(s)) => {
                        return Err(format!(
                            "`{}` exited with code {}",
                            argv.join(" "),
                            s.code().unwrap_or(-1)
                        ))
                    }
                    Ok(None) if Instant::now() >= end => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!(
                            "`{}` did not finish within {}",
                            argv.join(" "),
                            humantime::format_duration(timeout)
                        ));
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => return Err(format!("waiting for the check: {e}")),
                }
            }
        }
    }
}
