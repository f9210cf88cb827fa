//! Probes: the checks `verify` and `probe` run against a started environment — from the
//! host (tcp, http, uds, file, loopback_only) and inside services (exec, log). All run in
//! parallel; each retries until it passes or its `within` has gone, each try bounded by
//! its `timeout`. Never creates anything.

pub mod enter;
pub mod report;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use crate::config::model::{ExitExpectation, FileType, Matcher, Owner, Probe, ProbeKind};
use crate::engine::{Engine, ExecSpec, LogOptions};
use crate::words::count;

/// What one probe found.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub kind: &'static str,
    pub passed: bool,
    pub duration_ms: u64,
    pub attempts: u32,
    /// What the probe wanted, in words.
    pub expected: String,
    /// What it saw on the last try.
    pub saw: String,
    /// For failures: the last log lines of the services involved.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub logs: BTreeMap<String, Vec<String>>,
}

impl Matcher {
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Substring(s) => text.contains(s.as_str()),
            Matcher::Regex(r) => regex::Regex::new(r).is_ok_and(|re| re.is_match(text)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Matcher::Substring(s) => format!("{s:?}"),
            Matcher::Regex(r) => format!("/{r}/"),
        }
    }
}

fn kind_name(k: &ProbeKind) -> &'static str {
    match k {
        ProbeKind::Tcp { .. } => "tcp",
        ProbeKind::Http { .. } => "http",
        ProbeKind::Uds { .. } => "uds",
        ProbeKind::File { .. } => "file",
        ProbeKind::Exec { .. } => "exec",
        ProbeKind::Log { .. } => "log",
        ProbeKind::LoopbackOnly { .. } => "loopback_only",
    }
}

/// Services whose logs explain a failure of this probe.
fn involved(p: &Probe, services: &[String]) -> Vec<String> {
    match &p.kind {
        ProbeKind::Exec { in_service, .. } => vec![in_service.clone()],
        ProbeKind::Uds {
            in_service: Some(s),
            ..
        } => std::iter::once(s.clone())
            .chain(p.after.iter().filter(|a| *a != s).cloned())
            .collect(),
        ProbeKind::Log { service, .. } => vec![service.clone()],
        _ if !p.after.is_empty() => p.after.clone(),
        _ => services.to_vec(),
    }
}

/// One try: Ok(what was seen) when it passed, Err(what was seen) when not.
type Try = Result<String, String>;

fn short(s: &str) -> String {
    let s = s.trim_end();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_owned()
    }
}

fn expect_text(m: &Option<Matcher>) -> String {
    m.as_ref()
        .map_or_else(String::new, |m| format!(" and answers {}", m.describe()))
}

fn tcp_round_trip(addr: &str, send: &Option<String>, timeout: Duration) -> std::io::Result<String> {
    let sa: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    if let Some(b) = send {
        s.write_all(b.as_bytes())?;
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn http_once(
    url: &str,
    method: &str,
    headers: &BTreeMap<String, String>,
    body: &Option<String>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs can be probed, not {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    // HTTP/1.0: the answer ends when the connection closes, never chunked.
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: devbox\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {}", short(&text)))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}

/// The host's non-loopback addresses.
fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                // Link-local addresses need a scope; skip them.
                if v6.ip().segments()[0] & 0xffc0 != 0xfe80 {
                    out.push(IpAddr::V6(v6.ip()));
                }
            }
        }
    }
    out.retain(|ip| !ip.is_loopback());
    out.sort();
    out.dedup();
    out
}

fn file_try(kind: &ProbeKind) -> Try {
    let ProbeKind::File {
        path,
        path_rel,
        mode,
        owner,
        file_type,
        contains,
        json,
    } = kind
    else {
        unreachable!()
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{path_rel}: {e}"))?;
    let ft = meta.file_type();
    let actual = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_socket() {
        "socket"
    } else {
        "file"
    };
    let mut saw = vec![format!(
        "{actual} mode {:04o} owner {}",
        meta.mode() & 0o7777,
        meta.uid()
    )];
    if let Some(t) = file_type {
        let want = match t {
            FileType::File => "file",
            FileType::Dir => "dir",
            FileType::Socket => "socket",
            FileType::Symlink => "symlink",
        };
        if want != actual {
            return Err(saw.join(", "));
        }
    }
    if let Some(m) = mode {
        if meta.mode() & 0o7777 != *m {
            return Err(saw.join(", "));
        }
    }
    if let Some(o) = owner {
        let want = match o {
            Owner::Host => Some(nix::unistd::getuid().as_raw()),
            Owner::Uid(u) => Some(*u),
            Owner::Name(n) => nix::unistd::User::from_name(n)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw()),
        };
        if want != Some(meta.uid()) {
            return Err(saw.join(", "));
        }
    }
    if contains.is_some() || *json {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path_rel}: {e}"))?;
        saw.push(format!("content {}", short(&text)));
        if let Some(c) = contains {
            if !text.contains(c.as_str()) {
                return Err(saw.join(", "));
            }
        }
        if *json {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                saw.push(format!("not JSON: {e}"));
                return Err(saw.join(", "));
            }
        }
    }
    Ok(saw.join(", "))
}

fn file_expected(kind: &ProbeKind) -> String {
    let ProbeKind::File {
        path_rel,
        mode,
        owner,
        file_type,
        contains,
        json,
        ..
    } = kind
    else {
        unreachable!()
    };
    let mut w = vec![format!("{path_rel} exists")];
    if let Some(t) = file_type {
        w.push(format!(
            "is a {}",
            serde_json::to_value(t).unwrap().as_str().unwrap_or("?")
        ));
    }
    if let Some(m) = mode {
        w.push(format!("has mode {m:04o}"));
    }
    if let Some(o) = owner {
        w.push(match o {
            Owner::Host => "belongs to the host user".to_owned(),
            Owner::Uid(u) => format!("belongs to uid {u}"),
            Owner::Name(n) => format!("belongs to {n}"),
        });
    }
    if let Some(c) = contains {
        w.push(format!("contains {c:?}"));
    }
    if *json {
        w.push("is valid JSON".into());
    }
    w.join(", ")
}

/// How a service's container is found, by name, for exec and log probes.
pub type Containers = BTreeMap<String, String>;

/// The project's containers by service.
pub async fn containers<E: Engine>(engine: &E, project: &str) -> crate::engine::Result<Containers> {
    Ok(running_containers(engine, project).await?.1)
}

/// The project's containers by service, and whether any of them is running: probes run
/// against nothing would only wait out their retries to report "connection refused".
pub async fn running_containers<E: Engine>(
    engine: &E,
    project: &str,
) -> crate::engine::Result<(bool, Containers)> {
    let list = engine.list_containers(project).await?;
    let running = list.iter().any(|c| c.running());
    Ok((
        running,
        list.into_iter()
            .filter_map(|c| c.service().map(|s| (s.to_owned(), c.id.clone())))
            .collect(),
    ))
}

/// The kinds that talk to the host's network and files; run on a blocking thread.
fn blocking_try(kind: &ProbeKind, timeout: Duration) -> (String, Try) {
    match kind {
        ProbeKind::Tcp {
            address,
            send,
            expect,
        } => {
            let expected = format!("{address} accepts a connection{}", expect_text(expect));
            let r = match tcp_round_trip(address, send, timeout) {
                Err(e) => Err(format!("{address}: {e}")),
                Ok(text) => match expect {
                    Some(m) if !m.matches(&text) => Err(format!("answer {:?}", short(&text))),
                    _ => Ok(format!("answer {:?}", short(&text))),
                },
            };
            (expected, r)
        }
        ProbeKind::Http {
            url,
            method,
            status,
            headers,
            body,
            expect,
        } => {
            let want = status.unwrap_or(200);
            let expected = format!("{method} {url} answers {want}{}", expect_text(expect));
            let r = match http_once(url, method, headers, body, timeout) {
                Err(e) => Err(e),
                Ok((code, body)) => {
                    let seen = format!("{code}, body {:?}", short(&body));
                    let status_ok = if status.is_some() {
                        code == want
                    } else {
                        (200..400).contains(&code)
                    };
                    if status_ok && expect.as_ref().is_none_or(|m| m.matches(&body)) {
                        Ok(seen)
                    } else {
                        Err(seen)
                    }
                }
            };
            (expected, r)
        }
        ProbeKind::Uds {
            path,
            in_service,
            send,
            expect,
        } => {
            debug_assert!(in_service.is_none(), "in-service uds probes run in one_try");
            let expected = format!("{path} accepts a connection{}", expect_text(expect));
            let r = (|| -> Result<String, String> {
                let mut s = std::os::unix::net::UnixStream::connect(path)
                    .map_err(|e| format!("{path}: {e}"))?;
                let _ = s.set_read_timeout(Some(timeout));
                if let Some(b) = send {
                    s.write_all(b.as_bytes()).map_err(|e| e.to_string())?;
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                let text = String::from_utf8_lossy(&buf).into_owned();
                match expect {
                    Some(m) if !m.matches(&text) => Err(format!("answer {:?}", short(&text))),
                    _ => Ok(format!("answer {:?}", short(&text))),
                }
            })();
            (expected, r)
        }
        ProbeKind::File { .. } => (file_expected(kind), file_try(kind)),
        ProbeKind::LoopbackOnly { port } => {
            let expected = format!(
                "port {port} answers on 127.0.0.1 and is refused on every other host address"
            );
            let lo = SocketAddr::from(([127, 0, 0, 1], *port));
            if let Err(e) = TcpStream::connect_timeout(&lo, timeout) {
                return (expected, Err(format!("127.0.0.1:{port}: {e}")));
            }
            let open: Vec<String> = host_addresses()
                .into_iter()
                .filter(|ip| {
                    TcpStream::connect_timeout(&SocketAddr::new(*ip, *port), timeout).is_ok()
                })
                .map(|ip| ip.to_string())
                .collect();
            let r = if open.is_empty() {
                Ok(format!("127.0.0.1:{port} answers; no other address does"))
            } else {
                Err(format!("also answers on {}", open.join(", ")))
            };
            (expected, r)
        }
        _ => unreachable!("engine kinds run in one_try"),
    }
}

async fn one_try<E: Engine>(engine: &E, containers: &Containers, p: &Probe) -> (String, Try) {
    let timeout = Duration::from_millis(p.timeout_ms.max(100));
    match &p.kind {
        ProbeKind::Exec {
            argv,
            in_service,
            user,
            expect_exit,
            expect,
            expect_stderr,
        } => {
            let want = match expect_exit {
                ExitExpectation::Code(c) => format!("exit {c}"),
                ExitExpectation::Zero => "exit 0".to_owned(),
                ExitExpectation::Nonzero => "a non-zero exit".to_owned(),
                ExitExpectation::Denied => "permission denied".to_owned(),
            };
            let expected = format!(
                "`{}` in {in_service}{} gives {want}{}{}",
                argv.join(" "),
                user.as_ref()
                    .map(|u| format!(" as {u}"))
                    .unwrap_or_default(),
                expect
                    .as_ref()
                    .map(|m| format!(", stdout {}", m.describe()))
                    .unwrap_or_default(),
                expect_stderr
                    .as_ref()
                    .map(|m| format!(", stderr {}", m.describe()))
                    .unwrap_or_default(),
            );
            let Some(id) = containers.get(in_service) else {
                return (
                    expected,
                    Err(format!("service `{in_service}` has no container")),
                );
            };
            let spec = ExecSpec {
                argv: argv.clone(),
                user: user.clone(),
                ..ExecSpec::default()
            };
            let r = match tokio::time::timeout(timeout, engine.exec(id, &spec)).await {
                Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(out)) => {
                    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                    let seen = format!(
                        "exit {}, stdout {:?}, stderr {:?}",
                        out.exit_code,
                        short(&stdout),
                        short(&stderr)
                    );
                    let code_ok = match expect_exit {
                        ExitExpectation::Code(c) => out.exit_code == i64::from(*c),
                        ExitExpectation::Zero => out.exit_code == 0,
                        ExitExpectation::Nonzero => out.exit_code != 0,
                        ExitExpectation::Denied => {
                            out.exit_code != 0
                                && (stderr.contains("Permission denied")
                                    || stderr.contains("Operation not permitted")
                                    || out.exit_code == 126)
                        }
                    };
                    let ok = code_ok
                        && expect.as_ref().is_none_or(|m| m.matches(&stdout))
                        && expect_stderr.as_ref().is_none_or(|m| m.matches(&stderr));
                    if ok {
                        Ok(seen)
                    } else {
                        Err(seen)
                    }
                }
            };
            (expected, r)
        }
        ProbeKind::Log { service, expect } => {
            let expected = format!("the log of {service} contains {}", expect.describe());
            let Some(id) = containers.get(service) else {
                return (
                    expected,
                    Err(format!("service `{service}` has no container")),
                );
            };
            let r = match engine.logs(id, &LogOptions::default()).await {
                Err(e) => Err(e.to_string()),
                Ok(mut s) => {
                    let mut lines = Vec::new();
                    while let Some(Ok(l)) = s.next().await {
                        lines.push(l.text);
                    }
                    let text = lines.join("\n");
                    if expect.matches(&text) {
                        Ok(format!("{}, a match", count(lines.len(), "log line")))
                    } else {
                        Err(format!(
                            "{}, last: {:?}",
                            count(lines.len(), "log line"),
                            short(lines.last().map_or("", String::as_str))
                        ))
                    }
                }
            };
            (expected, r)
        }
        ProbeKind::Uds {
            path,
            in_service: Some(service),
            send,
            expect,
        } => {
            let expected = format!(
                "{path} in {service} accepts a connection{}",
                expect_text(expect)
            );
            let Some(id) = containers.get(service) else {
                return (
                    expected,
                    Err(format!("service `{service}` has no container")),
                );
            };
            let r = match uds_in_container(engine, id, path, send.as_deref(), timeout).await {
                Err(e) => Err(e),
                Ok(text) => match expect {
                    Some(m) if !m.matches(&text) => Err(format!("answer {:?}", short(&text))),
                    _ => Ok(format!("answer {:?}", short(&text))),
                },
            };
            (expected, r)
        }
        kind => {
            let kind = kind.clone();
            tokio::task::spawn_blocking(move || blocking_try(&kind, timeout))
                .await
                .unwrap_or_else(|e| (String::new(), Err(format!("probe thread: {e}"))))
        }
    }
}

/// The Unix-socket client run inside a service: the first of socat, ncat, an `nc` with
/// `-U`, python3 and perl that the image has. Arguments: socket path, bytes to send, read
/// timeout in seconds. Exit 127 with [`NO_UDS_CLIENT`] on stderr when there is none.
const UDS_CLIENT: &str = r#"p=$1 d=$2 t=$3
if command -v socat >/dev/null 2>&1; then
  printf '%s' "$d" | exec socat -t "$t" -T "$t" - "UNIX-CONNECT:$p"
elif command -v ncat >/dev/null 2>&1; then
  printf '%s' "$d" | exec ncat -w "$t" -U "$p"
elif command -v nc >/dev/null 2>&1 && nc -h 2>&1 | grep -q -- '-U'; then
  printf '%s' "$d" | exec nc -N -w "$t" -U "$p"
elif command -v python3 >/dev/null 2>&1; then
  exec python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[3]))
try:
    s.connect(sys.argv[1])
except OSError as e:
    sys.exit("%s: %s" % (sys.argv[1], e.strerror))
s.sendall(sys.argv[2].encode())
s.shutdown(socket.SHUT_WR)
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        sys.stdout.buffer.write(b)
except socket.timeout:
    pass
' "$p" "$d" "$t"
elif command -v perl >/dev/null 2>&1; then
  exec perl -MSocket -e '
socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!
";
connect($s, pack_sockaddr_un($ARGV[0])) or die "$ARGV[0]: $!
";
syswrite($s, $ARGV[1]); shutdown($s, 1);
$SIG{ALRM} = sub { exit 0 }; alarm $ARGV[2];
while (sysread($s, my $b, 65536)) { syswrite(STDOUT, $b) }
' "$p" "$d" "$t"
else
  echo "no Unix-socket client" >&2; exit 127
fi
"#;

/// What the in-service client says when the image has none.
const NO_UDS_CLIENT: &str = "no Unix-socket client";

/// A Unix-socket round trip inside a container: made by devbox itself from inside the
/// container's namespaces when the engine runs on this host ([`enter`]), so the image
/// needs no client; else through the engine's exec and a client in the image (an engine in
/// a VM the host cannot see into).
async fn uds_in_container<E: Engine>(
    engine: &E,
    id: &str,
    path: &str,
    send: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    // `exec` forces the image's client: what an engine in a VM gets.
    let forced = std::env::var("DEVBOX_UDS_PROBE").as_deref() == Ok("exec");
    if !forced {
        if let Some(r) = uds_entered(engine, id, path, send, timeout).await {
            return r;
        }
    }
    uds_by_exec(engine, id, path, send, timeout, !forced).await
}

/// The round trip from inside the container's namespaces (`devbox __probe-uds`), or
/// `None` when devbox cannot enter them from here.
async fn uds_entered<E: Engine>(
    engine: &E,
    id: &str,
    path: &str,
    send: Option<&str>,
    timeout: Duration,
) -> Option<Result<String, String>> {
    let info = engine.inspect_container(id).await.ok()?;
    let pid = info.pid?;
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut cmd = crate::process::command(exe.to_str()?);
    cmd.arg("__probe-uds")
        .arg("--pid")
        .arg(pid.to_string())
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string());
    if let Some(m) = info.monitor_pid {
        cmd.arg("--monitor-pid").arg(m.to_string());
    }
    cmd.arg("--").arg(path).arg(send.unwrap_or(""));
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let out = match tokio::time::timeout(timeout + Duration::from_millis(500), cmd.output()).await {
        Err(_) => return Some(Err(format!("no answer within {}ms", timeout.as_millis()))),
        Ok(Err(_)) => return None,
        Ok(Ok(out)) => out,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Some(Ok(String::from_utf8_lossy(&out.stdout).into_owned())),
        Some(enter::CANNOT_ENTER) => None,
        _ => Some(Err(short(stderr.trim().trim_start_matches("error: ")))),
    }
}

/// The round trip through the engine's exec and a Unix-socket client in the image;
/// `tried_entering` when devbox could not make it from inside itself first.
async fn uds_by_exec<E: Engine>(
    engine: &E,
    id: &str,
    path: &str,
    send: Option<&str>,
    timeout: Duration,
    tried_entering: bool,
) -> Result<String, String> {
    // The client gives up reading a little before devbox gives up on the exec.
    let read_s = (timeout.as_secs_f64() * 0.8).max(0.1);
    let spec = ExecSpec {
        argv: [
            "sh",
            "-c",
            UDS_CLIENT,
            "devbox-uds",
            path,
            send.unwrap_or(""),
            &format!("{read_s:.1}"),
        ]
        .map(str::to_owned)
        .to_vec(),
        ..ExecSpec::default()
    };
    let out =
        match tokio::time::timeout(timeout + Duration::from_millis(500), engine.exec(id, &spec))
            .await
        {
            Err(_) => return Err(format!("no answer within {}ms", timeout.as_millis())),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(out)) => out,
        };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.exit_code == 127 && stderr.contains(NO_UDS_CLIENT) {
        let why = if tried_entering {
            "devbox cannot enter the service's namespaces from here (an engine in a VM?) and "
        } else {
            ""
        };
        return Err(format!(
            "{why}the service has no Unix-socket client (socat, ncat, nc -U, python3 or perl) \
             to run the probe with; add one to its image, or probe the socket's host path \
             through a bind mount (drop `in`)"
        ));
    }
    if out.exit_code == 127 || out.exit_code == 126 {
        return Err(format!(
            "the service cannot run `sh` for the probe (exit {}): {}",
            out.exit_code,
            short(stderr.trim())
        ));
    }
    if out.exit_code != 0 {
        return Err(format!("exit {}: {}", out.exit_code, short(stderr.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn run_one<E: Engine>(
    engine: &E,
    containers: &Containers,
    p: &Probe,
    services: &[String],
) -> Outcome {
    let start = Instant::now();
    let within = Duration::from_millis(p.within_ms);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (expected, r) = one_try(engine, containers, p).await;
        let done = r.is_ok() || start.elapsed() >= within;
        if done {
            let passed = r.is_ok();
            let mut logs = BTreeMap::new();
            if !passed {
                for s in involved(p, services) {
                    if let Some(id) = containers.get(&s) {
                        logs.insert(s.clone(), crate::apply::last_logs(engine, id, 10).await);
                    }
                }
            }
            return Outcome {
                name: p.name.clone(),
                kind: kind_name(&p.kind),
                passed,
                duration_ms: start.elapsed().as_millis() as u64,
                attempts,
                expected,
                saw: match r {
                    Ok(s) | Err(s) => s,
                },
                logs,
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs every probe, all at once, and returns their outcomes in file order.
pub async fn run_all<E: Engine>(
    engine: &E,
    probes: &[Probe],
    containers: &Containers,
) -> Vec<Outcome> {
    let services: Vec<String> = containers.keys().cloned().collect();
    let services = &services;
    futures_util::future::join_all(
        probes
            .iter()
            .map(|p| async move { run_one(engine, containers, p, services).await }),
    )
    .await
}
