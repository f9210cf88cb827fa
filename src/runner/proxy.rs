//! The egress proxy: a worker's only way out of its loopback-only network namespace.
//!
//! It owns the listener devbox bound on `127.0.0.1` inside that namespace. On each
//! connection it reads one request, `CONNECT host:port` or an absolute-form
//! `GET http://host/path`, decides it against the worker's [`NetRules`], records the
//! decision in the audit log and, when allowed, connects from the host side and relays
//! bytes both ways. It never looks inside a tunnel (TLS is not intercepted, so the SNI a
//! client sends is not checked), never serves a second request on a client connection,
//! and never lets a client's failure reach another connection or the supervisor.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::audit::{AuditLog, Event};
use super::spec::NetRules;
use crate::config::model::Decision;

/// Largest request header block accepted, request line included.
const MAX_HEADER: usize = 16 * 1024;

/// Connections served at once (each holds one or two threads); more are turned away so a
/// runaway client cannot exhaust the supervisor's threads or descriptors.
const MAX_CONNECTIONS: usize = 512;

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
const BAD_REQUEST: &str = "400 Bad Request";
const FORBIDDEN: &str = "403 Forbidden";
const BAD_GATEWAY: &str = "502 Bad Gateway";
const UNAVAILABLE: &str = "503 Service Unavailable";

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// For the whole header block, so a client trickling bytes cannot hold a thread.
    header: Duration,
    /// For reaching upstream, shared among the addresses its name resolves to.
    connect: Duration,
    /// For a refused client to read its answer before the connection is closed.
    linger: Duration,
}

const TIMEOUTS: Timeouts = Timeouts {
    header: Duration::from_secs(10),
    connect: Duration::from_secs(10),
    linger: Duration::from_secs(2),
};

/// Why a client's request was answered `400 Bad Request`.
#[derive(Debug, Error)]
enum BadRequest {
    #[error("header block larger than {MAX_HEADER} bytes")]
    TooLarge,
    #[error("no complete header within {0:?}")]
    Slow(Duration),
    #[error("connection closed before the header ended")]
    Truncated,
    #[error("{0}")]
    Malformed(&'static str),
    /// The client is gone; there is nobody to answer.
    #[error("reading the request: {0}")]
    Read(#[source] io::Error),
}

/// Why an allowed destination could not be reached (`502 Bad Gateway`).
#[derive(Debug, Error)]
enum UpstreamError {
    #[error("cannot resolve {target}: {source}")]
    Resolve { target: String, source: io::Error },
    #[error("{target} resolves to no address")]
    NoAddress { target: String },
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: io::Error },
}

/// The decision for `host:port` and the rule that made it (`net.deny "…"`, `net.warn "…"`,
/// `net.allow "…"` or `net.default`), in that order of precedence.
pub fn decide(rules: &NetRules, host: &str, port: u16) -> (Decision, String) {
    let host = Host::new(host);
    for (decision, list, name) in [
        (Decision::Deny, &rules.deny, "deny"),
        (Decision::Warn, &rules.warn, "warn"),
        (Decision::Allow, &rules.allow, "allow"),
    ] {
        if let Some(p) = first_match(list, &host, port) {
            return (decision, format!("net.{name} \"{p}\""));
        }
    }
    (rules.default, "net.default".to_string())
}

/// A host as compared with patterns: brackets, one trailing dot and case do not count,
/// and two spellings of one address (`::1`, `0:0::1`, `::ffff:10.0.0.1`) are equal.
struct Host {
    name: String,
    ip: Option<IpAddr>,
}

impl Host {
    fn new(raw: &str) -> Self {
        let s = raw
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(raw);
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let ip = name.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        Self { name, ip }
    }
}

fn first_match<'a>(patterns: &'a [String], host: &Host, port: u16) -> Option<&'a str> {
    patterns
        .iter()
        .map(String::as_str)
        .find(|p| matches(p, host, port))
}

/// Patterns were validated at config load; one that still makes no sense matches nothing.
fn matches(pattern: &str, host: &Host, port: u16) -> bool {
    let Some((h, p)) = pattern.rsplit_once(':') else {
        return false;
    };
    (p == "*" || p.parse::<u16>() == Ok(port)) && host_matches(h, host)
}

fn host_matches(pattern: &str, host: &Host) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix("*.") {
        // A domain wildcard names DNS names: `*.0.0.1` is not a way to match addresses.
        let suffix = Host::new(suffix).name;
        return host.ip.is_none()
            && host
                .name
                .strip_suffix(suffix.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty());
    }
    let pattern = Host::new(pattern);
    match (pattern.ip, host.ip) {
        (Some(a), Some(b)) => a == b,
        _ => pattern.name == host.name,
    }
}

/// `host:port`, with brackets around an IPv6 address: the `what` of the audit log.
fn target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Serves `listener` on its own thread until the listener fails; returns at once.
pub fn serve(
    listener: TcpListener,
    rules: NetRules,
    audit: Arc<AuditLog>,
) -> io::Result<JoinHandle<()>> {
    serve_with(listener, rules, audit, TIMEOUTS)
}

fn serve_with(
    listener: TcpListener,
    rules: NetRules,
    audit: Arc<AuditLog>,
    timeouts: Timeouts,
) -> io::Result<JoinHandle<()>> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "its listener".to_string(), |a| a.to_string());
    let context = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("egress proxy on {addr}: {what}: {e}"))
    };
    // The descriptor was made in the worker's namespace by other code: accept must block,
    // not spin, whatever flags it came with.
    listener
        .set_nonblocking(false)
        .map_err(|e| context("making the listener blocking", e))?;
    let proxy = Arc::new(Proxy {
        rules,
        audit,
        timeouts,
        live: AtomicUsize::new(0),
    });
    thread::Builder::new()
        .name("devbox-proxy".into())
        .spawn(move || accept_loop(&listener, &proxy))
        .map_err(|e| context("starting the accept thread", e))
}

struct Proxy {
    rules: NetRules,
    audit: Arc<AuditLog>,
    timeouts: Timeouts,
    /// Connections being served, bounded by `MAX_CONNECTIONS`.
    live: AtomicUsize,
}

fn accept_loop(listener: &TcpListener, proxy: &Arc<Proxy>) {
    use nix::libc::{EBADF, EFAULT, EINVAL, ENOTSOCK, EOPNOTSUPP};
    loop {
        match listener.accept() {
            Ok((client, _)) => admit(proxy, client),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(EBADF | EFAULT | EINVAL | ENOTSOCK | EOPNOTSUPP)
                ) =>
            {
                eprintln!("devbox: egress proxy stopped: accepting a connection: {e}");
                return;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) => {}
            // Out of descriptors or memory: the listener is fine, so wait instead of spinning.
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One of the `MAX_CONNECTIONS` places, given back when its connection's thread ends.
struct Slot(Arc<Proxy>);

impl Slot {
    fn take(proxy: &Arc<Proxy>) -> Option<Self> {
        proxy
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            })
            .ok()?;
        Some(Self(Arc::clone(proxy)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

fn admit(proxy: &Arc<Proxy>, client: TcpStream) {
    let Some(slot) = Slot::take(proxy) else {
        // Not a policy decision, so not audited; the accept thread must not wait on it.
        let _ = client.set_nonblocking(true);
        let _ = (&client).write_all(response(UNAVAILABLE, "too many proxy connections").as_bytes());
        return;
    };
    // A failed spawn drops the closure, and with it the client and its slot.
    let _ = thread::Builder::new()
        .name("devbox-proxy-conn".into())
        .spawn(move || slot.0.handle(client));
}

impl Proxy {
    fn handle(&self, client: TcpStream) {
        let _ = client.set_nodelay(true);
        let mut seen = Vec::new();
        let end = match read_head(&client, &mut seen, self.timeouts.header) {
            Ok(Some(end)) => end,
            // Nothing was asked (a port probe), or the client vanished: nobody to answer.
            Ok(None) | Err(BadRequest::Read(_)) => return,
            Err(e) => return self.bad_request(client, &seen, &e),
        };
        let (head, early) = seen.split_at(end);
        let req = match parse(head) {
            Ok(req) => req,
            Err(e) => return self.bad_request(client, &seen, &e),
        };
        let what = target(&req.host, req.port);
        let (decision, rule) = decide(&self.rules, &req.host, req.port);
        if decision == Decision::Deny {
            return self.deny(client, &what, &rule);
        }
        let addrs = match resolve(&req.host, req.port, &what) {
            Ok(all) => match screen(&self.rules, all) {
                Ok(addrs) => Ok(addrs),
                Err(rule) => return self.deny(client, &what, &rule),
            },
            Err(e) => Err(e),
        };
        self.record(decision, &what, &rule);
        let upstream = addrs.and_then(|addrs| connect(&what, &addrs, self.timeouts.connect));
        match upstream {
            Ok(upstream) => relay(client, upstream, req.forward.as_deref(), early),
            Err(e) => refuse(client, BAD_GATEWAY, &e.to_string(), self.timeouts.linger),
        }
    }

    fn record(&self, decision: Decision, what: &str, rule: &str) {
        self.audit.record(&Event {
            kind: "net",
            decision,
            what,
            rule,
        });
    }

    fn deny(&self, client: TcpStream, what: &str, rule: &str) {
        self.record(Decision::Deny, what, rule);
        let body = format!("{what} denied by {rule}");
        refuse(client, FORBIDDEN, &body, self.timeouts.linger);
    }

    fn bad_request(&self, client: TcpStream, seen: &[u8], e: &BadRequest) {
        self.record(Decision::Deny, &excerpt(seen), "net.malformed");
        let body = format!("bad request: {e}");
        refuse(client, BAD_REQUEST, &body, self.timeouts.linger);
    }
}

/// Reads until the blank line that ends the header block and returns where it ends (what
/// follows belongs to the tunnel), or `None` when the client closed without a byte.
fn read_head(
    client: &TcpStream,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<Option<usize>, BadRequest> {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BadRequest::Slow(limit));
        }
        client
            .set_read_timeout(Some(left))
            .map_err(BadRequest::Read)?;
        let n = match (&*client).read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(BadRequest::Truncated),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(BadRequest::Slow(limit))
            }
            Err(e) => return Err(BadRequest::Read(e)),
        };
        // Only the new bytes (and the three before them) can complete the blank line, so a
        // client sending one byte at a time costs linear, not quadratic, work.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        match header_end(buf, from) {
            Some(end) if end <= MAX_HEADER => {
                client.set_read_timeout(None).map_err(BadRequest::Read)?;
                return Ok(Some(end));
            }
            Some(_) => return Err(BadRequest::TooLarge),
            None if buf.len() > MAX_HEADER => return Err(BadRequest::TooLarge),
            None => {}
        }
    }
}

/// The end of the first blank line at or after `from`; bare `\n` line ends are accepted.
fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        let rest = buf.get(i + 1..)?;
        if buf[i] != b'\n' {
            None
        } else if rest.starts_with(b"\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// A request the proxy understood.
#[derive(Debug, PartialEq)]
struct Request {
    /// Lower-case; an IPv6 address without brackets.
    host: String,
    port: u16,
    /// For plain HTTP, the header block to send upstream, rewritten to origin form.
    forward: Option<Vec<u8>>,
}

/// Headers meant for the proxy, or that would let the client steer the connection past
/// its one request; `Host` and `Connection` are written anew.
const DROPPED: &[&str] = &[
    "proxy-connection",
    "proxy-authorization",
    "host",
    "connection",
    "keep-alive",
];

fn parse(head: &[u8]) -> Result<Request, BadRequest> {
    use BadRequest::Malformed;
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| Malformed("request line is not text"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed("request line is not `METHOD TARGET HTTP/1.x`"));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(Malformed("invalid method"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(Malformed("not HTTP/1.0 or HTTP/1.1"));
    }
    if method == "CONNECT" {
        let (host, port) = authority(uri, None)?;
        return Ok(Request {
            host,
            port,
            forward: None,
        });
    }
    let rest = uri
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .and_then(|_| uri.get(7..))
        .ok_or(Malformed(
            "not a proxy request: expected CONNECT host:port or an absolute http:// URL",
        ))?;
    let (auth, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (host, port) = authority(auth, Some(80))?;
    let path = path.split('#').next().unwrap_or_default();
    let slash = if path.starts_with('/') { "" } else { "/" };

    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(format!("{method} {slash}{path} {version}\r\n").as_bytes());
    for h in lines.filter(|l| !l.is_empty()) {
        // Bare CR and other controls end a line for some servers: a header hidden behind
        // one would pass this filter unseen.
        if h.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Malformed("control character in a header"));
        }
        let name = h.split(|&b| b == b':').next().unwrap_or_default();
        if name.is_empty() || name.len() == h.len() || !name.iter().copied().all(is_token) {
            return Err(Malformed("header line is not `Name: value`"));
        }
        if !DROPPED
            .iter()
            .any(|d| name.eq_ignore_ascii_case(d.as_bytes()))
        {
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
        }
    }
    // An absolute-form target overrides `Host` (RFC 9112 §3.2.2): the upstream must
    // serve the name that was decided on, not one the client slipped in beside it.
    let host_header = if port == 80 {
        target_host(&host)
    } else {
        target(&host, port)
    };
    out.extend_from_slice(format!("Host: {host_header}\r\nConnection: close\r\n\r\n").as_bytes());
    Ok(Request {
        host,
        port,
        forward: Some(out),
    })
}

fn target_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `host:port` (or `host` when there is a default port) as a lower-case host without
/// brackets and a port.
fn authority(s: &str, default_port: Option<u16>) -> Result<(String, u16), BadRequest> {
    use BadRequest::Malformed;
    if s.contains('@') {
        return Err(Malformed("user info in the target"));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or(Malformed("unclosed `[` in the target"))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| Malformed("invalid IPv6 address in the target"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or(Malformed("junk after `]` in the target"))?,
            ),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let valid = !host.is_empty()
            && host.len() <= 254
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return Err(Malformed(
                "invalid host in the target (an IPv6 address needs brackets)",
            ));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(Malformed("invalid port in the target"))?,
        None => default_port.ok_or(Malformed("missing port in the target"))?,
    };
    Ok((host, port))
}

fn resolve(host: &str, port: u16, what: &str) -> Result<Vec<SocketAddr>, UpstreamError> {
    (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|source| UpstreamError::Resolve {
            target: what.to_string(),
            source,
        })
}

/// The addresses no `deny` pattern names, or the rule that denies them all. A name is
/// only as good as the addresses behind it: a denied address stays denied whatever name
/// (`localhost`, a wildcard DNS service, `2130706433`) the worker reaches it by.
fn screen(rules: &NetRules, all: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
    let mut denied = None;
    let mut reachable = Vec::new();
    for a in all {
        match first_match(&rules.deny, &Host::new(&a.ip().to_string()), a.port()) {
            Some(p) => {
                denied.get_or_insert_with(|| format!("net.deny \"{p}\" via {}", a.ip()));
            }
            None => reachable.push(a),
        }
    }
    match denied {
        Some(rule) if reachable.is_empty() => Err(rule),
        _ => Ok(reachable),
    }
}

fn connect(what: &str, addrs: &[SocketAddr], limit: Duration) -> Result<TcpStream, UpstreamError> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    for (i, a) in addrs.iter().enumerate() {
        // Each address gets an equal share of the time left, so one that swallows packets
        // cannot use up the time of those after it.
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        if share.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(a, share) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let target = what.to_string();
    Err(match last {
        Some(source) => UpstreamError::Connect { target, source },
        None => UpstreamError::NoAddress { target },
    })
}

/// Opens the exchange (`200` to a CONNECT client, the rewritten request to an HTTP
/// upstream), hands over what the client sent after its header, then tunnels.
fn relay(client: TcpStream, upstream: TcpStream, forward: Option<&[u8]>, early: &[u8]) {
    let _ = upstream.set_nodelay(true);
    let opened = match forward {
        None => (&client).write_all(ESTABLISHED),
        Some(head) => (&upstream).write_all(head),
    };
    if opened.and_then(|()| (&upstream).write_all(early)).is_ok() {
        tunnel(client, upstream);
    }
}

fn tunnel(client: TcpStream, upstream: TcpStream) {
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = thread::Builder::new()
        .name("devbox-proxy-pipe".into())
        .spawn(move || pipe(upstream2, client2));
    // Without the second thread there is no tunnel; returning closes both ends.
    if let Ok(back) = back {
        pipe(client, upstream);
        let _ = back.join();
    }
}

/// Copies one direction to its end. An orderly end is passed on as a half-close, so a
/// request/response protocol can still answer; a failure tears down both directions.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    match io::copy(&mut from, &mut to) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

fn response(status: &str, message: &str) -> String {
    let body = format!("devbox: {message}\n");
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers with an error and closes. Closing a socket with unread request bytes resets
/// the connection, which can destroy the answer before the client reads it; so: answer,
/// half-close, and drain what the client still sends for a moment.
fn refuse(client: TcpStream, status: &str, message: &str, linger: Duration) {
    let _ = client.set_write_timeout(Some(linger));
    if (&client)
        .write_all(response(status, message).as_bytes())
        .is_err()
    {
        return;
    }
    let _ = client.shutdown(Shutdown::Write);
    let deadline = Instant::now() + linger;
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || client.set_read_timeout(Some(left)).is_err() {
            return;
        }
        if let Ok(0) | Err(_) = (&client).read(&mut sink) {
            return;
        }
    }
}

/// The first line of what a client sent, as printable ASCII of at most 100 characters:
/// the `what` of a malformed request in the audit log.
fn excerpt(seen: &[u8]) -> String {
    let line = seen
        .split(|&b| b == b'\r' || b == b'\n')
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if line.is_empty() {
        return "(nothing)".to_string();
    }
    line.iter()
        .take(100)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;

    fn rules(default: Decision, allow: &[&str], warn: &[&str], deny: &[&str]) -> NetRules {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        NetRules {
            default,
            allow: own(allow),
            warn: own(warn),
            deny: own(deny),
        }
    }

    #[test]
    fn decide_follows_deny_warn_allow_default() {
        use Decision::*;
        let r = rules(
            Deny,
            &[
                "*.slack.com:443",
                "api.github.com:443",
                "10.0.0.1:*",
                "[::1]:8080",
                "*.Corp.Internal.:*",
                "*.0.0.1:80",
            ],
            &["*.example.com:*", "*:25"],
            &["169.254.169.254:*", "evil.example.com:*", "[fe80::1]:*"],
        );
        let slack = r#"net.allow "*.slack.com:443""#;
        let v6 = r#"net.allow "[::1]:8080""#;
        let meta = r#"net.deny "169.254.169.254:*""#;
        #[rustfmt::skip]
        let cases: &[(&str, u16, Decision, &str)] = &[
            ("a.slack.com", 443, Allow, slack),
            ("a.b.slack.com", 443, Allow, slack),
            ("A.Slack.COM.", 443, Allow, slack),
            ("slack.com", 443, Deny, "net.default"),
            ("a.slack.com", 80, Deny, "net.default"),
            ("evilslack.com", 443, Deny, "net.default"),
            ("API.GITHUB.COM", 443, Allow, r#"net.allow "api.github.com:443""#),
            ("db.corp.internal", 5432, Allow, r#"net.allow "*.Corp.Internal.:*""#),
            ("10.0.0.1", 5432, Allow, r#"net.allow "10.0.0.1:*""#),
            ("[::1]", 8080, Allow, v6),
            ("::1", 8080, Allow, v6),
            ("[0:0::1]", 8080, Allow, v6),
            ("::1", 8081, Deny, "net.default"),
            // Deny beats the warn wildcard that also matches.
            ("evil.example.com", 443, Deny, r#"net.deny "evil.example.com:*""#),
            ("www.example.com", 8443, Warn, r#"net.warn "*.example.com:*""#),
            ("example.com", 8443, Deny, "net.default"),
            ("mail.test", 25, Warn, r#"net.warn "*:25""#),
            ("127.0.0.1", 25, Warn, r#"net.warn "*:25""#),
            ("169.254.169.254", 80, Deny, meta),
            ("::ffff:169.254.169.254", 80, Deny, meta),
            ("[FE80::1]", 1, Deny, r#"net.deny "[fe80::1]:*""#),
            // A domain wildcard does not match an address that happens to end like it.
            ("127.0.0.1", 80, Deny, "net.default"),
        ];
        for &(host, port, decision, rule) in cases {
            assert_eq!(
                decide(&r, host, port),
                (decision, rule.to_string()),
                "{host}:{port}"
            );
        }
        let open = rules(Allow, &[], &[], &[]);
        assert_eq!(
            decide(&open, "anything", 1),
            (Allow, "net.default".to_string())
        );
    }

    #[test]
    fn parse_rewrites_absolute_form_and_rejects_the_rest() {
        let req = parse(b"GET http://Example.COM/a?b=1#frag HTTP/1.1\r\nHost: evil.test\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!((req.host.as_str(), req.port), ("example.com", 80));
        assert_eq!(
            String::from_utf8(req.forward.unwrap()).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nAccept: */*\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        );
        let req = parse(b"POST http://[::1]:8080?x HTTP/1.0\n\n").unwrap();
        assert_eq!((req.host.as_str(), req.port), ("::1", 8080));
        assert!(String::from_utf8(req.forward.unwrap())
            .unwrap()
            .starts_with("POST /?x HTTP/1.0\r\nHost: [::1]:8080\r\n"));
        let req = parse(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            req,
            Request {
                host: "::1".into(),
                port: 443,
                forward: None
            }
        );

        for bad in [
            "GET /path HTTP/1.1",
            "GET https://example.com/ HTTP/1.1",
            "GET http://user@example.com/ HTTP/1.1",
            "GET http:// HTTP/1.1",
            "CONNECT example.com HTTP/1.1",
            "CONNECT example.com:0 HTTP/1.1",
            "CONNECT example.com:+443 HTTP/1.1",
            "CONNECT example.com:99999 HTTP/1.1",
            "CONNECT ::1:443 HTTP/1.1",
            "CONNECT [::1]x:443 HTTP/1.1",
            "CONNECT exa*mple.com:443 HTTP/1.1",
            "CONNECT example.com:443 HTTP/2",
            "CONNECT  example.com:443 HTTP/1.1",
            "GET http://example.com/ HTTP/1.1\r\nno colon",
            "GET http://example.com/ HTTP/1.1\r\n folded: x",
            "GET http://example.com/ HTTP/1.1\r\nX: a\rHost: evil.test",
        ] {
            let head = format!("{bad}\r\n\r\n");
            assert!(
                matches!(parse(head.as_bytes()), Err(BadRequest::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        // Splices of request-shaped fragments reach deeper than uniform noise would.
        #[rustfmt::skip]
        const PARTS: &[&[u8]] = &[
            b"CONNECT ", b"GET ", b"http://", b"HTTP://", b"[", b"]", b"::1", b":", b"443",
            b"65536", b"a.b", b"@", b"/", b"?", b"#", b" ", b"HTTP/1.1", b"\r", b"\n", b"\r\n",
            b"Host", b": ", b"\xff", b"\x00", b"\xc3", b"\t", b"*",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..next() % 16 {
                input.extend_from_slice(PARTS[(next() % PARTS.len() as u64) as usize]);
            }
            let end = header_end(&input, 0).unwrap_or(input.len());
            let _ = parse(&input[..end]);
            let _ = excerpt(&input);
            let text = String::from_utf8_lossy(&input);
            let _ = decide(&rules(Decision::Deny, &[&text], &[], &[]), &text, 443);
        }
    }

    #[test]
    fn excerpt_is_printable_and_short() {
        assert_eq!(excerpt(b"\x00GET \xff\r\nHost: x"), ".GET .");
        assert_eq!(excerpt(&[b'a'; 300]).len(), 100);
        assert_eq!(excerpt(b"\r\n"), "(nothing)");
    }

    struct Fixture {
        addr: SocketAddr,
        audit: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    fn start(rules: NetRules) -> Fixture {
        start_with(rules, TIMEOUTS)
    }

    fn start_with(rules: NetRules, timeouts: Timeouts) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::to_file("w", &audit).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve_with(listener, rules, log, timeouts).unwrap();
        Fixture {
            addr,
            audit,
            _dir: dir,
        }
    }

    impl Fixture {
        fn client(&self) -> TcpStream {
            let c = TcpStream::connect(self.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c
        }

        /// Sends `request` and returns the whole answer (for refusals, which close).
        fn ask(&self, request: &[u8]) -> String {
            let mut c = self.client();
            c.write_all(request).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut out = Vec::new();
            c.read_to_end(&mut out).unwrap();
            String::from_utf8_lossy(&out).into_owned()
        }

        /// (decision, what, rule) of each audit line.
        fn audit(&self) -> Vec<(String, String, String)> {
            let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert_eq!(v["kind"], "net");
                    let s = |k: &str| v[k].as_str().unwrap().to_string();
                    (s("decision"), s("what"), s("rule"))
                })
                .collect()
        }
    }

    fn audited(decision: &str, what: &str, rule: &str) -> Vec<(String, String, String)> {
        vec![(decision.into(), what.into(), rule.into())]
    }

    /// An upstream that echoes and half-closes after its client does.
    struct Echo {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
    }

    fn echo() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        thread::spawn(move || {
            for s in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let _ = io::copy(&mut r, &mut &s);
                    let _ = s.shutdown(Shutdown::Write);
                });
            }
        });
        Echo { addr, accepted }
    }

    /// An HTTP upstream that reports each request's header block and answers `ok`.
    fn http_upstream() -> (SocketAddr, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut head = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                while !head.ends_with("\r\n\r\n") && r.read_line(&mut head).unwrap_or(0) > 0 {}
                let _ = tx.send(head);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        (addr, rx)
    }

    /// Reads the proxy's answer up to its blank line, leaving tunnelled bytes unread.
    fn answer_head(c: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap() == 1 {
            head.push(b[0]);
        }
        String::from_utf8(head).unwrap()
    }

    fn connect_request(addr: impl std::fmt::Display) -> String {
        format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
    }

    /// CONNECTs to an echo server and checks a round trip and the half-close.
    fn tunnel_round_trip(fx: &Fixture, up: &Echo) {
        let mut c = fx.client();
        // The first bytes ride in the same write as the request and must not be lost.
        let first = connect_request(up.addr) + "hello";
        c.write_all(first.as_bytes()).unwrap();
        assert_eq!(
            answer_head(&mut c),
            "HTTP/1.1 200 Connection established\r\n\r\n"
        );
        let mut got = [0u8; 5];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        c.write_all(b"again").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"again");
    }

    #[test]
    fn connect_allowed_tunnels_both_ways() {
        let up = echo();
        let fx = start(rules(Decision::Deny, &["127.0.0.1:*"], &[], &[]));
        tunnel_round_trip(&fx, &up);
        let what = up.addr.to_string();
        assert_eq!(
            fx.audit(),
            audited("allow", &what, r#"net.allow "127.0.0.1:*""#)
        );
    }

    #[test]
    fn connect_warned_works_and_is_recorded_as_warn() {
        let up = echo();
        let fx = start(rules(Decision::Deny, &[], &["127.0.0.1:*"], &[]));
        tunnel_round_trip(&fx, &up);
        let what = up.addr.to_string();
        assert_eq!(
            fx.audit(),
            audited("warn", &what, r#"net.warn "127.0.0.1:*""#)
        );
    }

    #[test]
    fn default_decides_when_nothing_matches() {
        let up = echo();
        let fx = start(rules(Decision::Warn, &["other.test:*"], &[], &[]));
        tunnel_round_trip(&fx, &up);
        let what = up.addr.to_string();
        assert_eq!(fx.audit(), audited("warn", &what, "net.default"));

        let fx = start(rules(Decision::Deny, &["other.test:*"], &[], &[]));
        let answer = fx.ask(connect_request(up.addr).as_bytes());
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
        assert!(answer.ends_with(&format!("devbox: {what} denied by net.default\n")));
        assert_eq!(fx.audit(), audited("deny", &what, "net.default"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn connect_denied_gets_403_and_never_reaches_upstream() {
        let up = echo();
        let fx = start(rules(
            Decision::Allow,
            &["127.0.0.1:*"],
            &[],
            &["127.0.0.1:*"],
        ));
        let answer = fx.ask((connect_request(up.addr) + "early bytes").as_bytes());
        let what = up.addr.to_string();
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
        assert!(answer.contains("\r\nConnection: close\r\n"));
        assert!(answer.ends_with(&format!(
            "\r\n\r\ndevbox: {what} denied by net.deny \"127.0.0.1:*\"\n"
        )));
        assert_eq!(
            fx.audit(),
            audited("deny", &what, r#"net.deny "127.0.0.1:*""#)
        );
        thread::sleep(Duration::from_millis(100));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn denied_address_holds_under_another_name() {
        let up = echo();
        let fx = start(rules(
            Decision::Allow,
            &[],
            &[],
            &["127.0.0.1:*", "[::1]:*"],
        ));
        let what = format!("localhost:{}", up.addr.port());
        let answer = fx.ask(connect_request(&what).as_bytes());
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
        let log = fx.audit();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].0.as_str(), log[0].1.as_str()),
            ("deny", what.as_str())
        );
        assert!(log[0].2.starts_with("net.deny \""), "{}", log[0].2);
        assert_eq!(up.accepted.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn plain_http_is_forwarded_in_origin_form() {
        let (addr, heads) = http_upstream();
        let fx = start(rules(Decision::Deny, &["127.0.0.1:*"], &[], &[]));
        let request = format!(
            "GET http://{addr}/path?q=1 HTTP/1.1\r\nHost: elsewhere.test\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nAccept: */*\r\n\r\n"
        );
        let answer = fx.ask(request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok"));
        let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(head.lines().next(), Some("GET /path?q=1 HTTP/1.1"));
        assert_eq!(
            head,
            format!("GET /path?q=1 HTTP/1.1\r\nAccept: */*\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        );
        let what = addr.to_string();
        assert_eq!(
            fx.audit(),
            audited("allow", &what, r#"net.allow "127.0.0.1:*""#)
        );
    }

    #[test]
    fn oversized_header_gets_400() {
        let up = echo();
        let fx = start(rules(Decision::Allow, &[], &[], &[]));
        let mut request = connect_request(up.addr).replace("\r\n\r\n", "\r\n");
        request.push_str(&format!("X-Pad: {}\r\n\r\n", "a".repeat(MAX_HEADER)));
        let answer = fx.ask(request.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.ends_with("devbox: bad request: header block larger than 16384 bytes\n"));
        let excerpt = format!("CONNECT {} HTTP/1.1", up.addr);
        assert_eq!(fx.audit(), audited("deny", &excerpt, "net.malformed"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn garbage_gets_400_and_the_next_client_is_served() {
        let up = echo();
        let fx = start(rules(Decision::Allow, &[], &[], &[]));
        let answer = fx.ask(b"\x16\x03\x01garbage \xff\r\n\r\n");
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.contains("devbox: bad request: request line is not text"));
        assert_eq!(fx.audit(), audited("deny", "...garbage .", "net.malformed"));
        // A client that closes mid-header, and one that says nothing, do not stop it either.
        let answer = fx.ask(b"CONNECT 127.0.0.1:");
        assert!(answer.contains("devbox: bad request: connection closed before the header ended"));
        drop(fx.client());
        tunnel_round_trip(&fx, &up);
    }

    #[test]
    fn slow_header_gets_400() {
        let timeouts = Timeouts {
            header: Duration::from_millis(200),
            ..TIMEOUTS
        };
        let fx = start_with(rules(Decision::Allow, &[], &[], &[]), timeouts);
        let mut c = fx.client();
        c.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n").unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.ends_with("devbox: bad request: no complete header within 200ms\n"));
        let log = fx.audit();
        assert_eq!(
            log,
            audited("deny", "CONNECT 127.0.0.1:1 HTTP/1.1", "net.malformed")
        );
    }

    #[test]
    fn refused_upstream_gets_502() {
        // A port bound but not listening refuses connections, and no other test can take
        // it meanwhile (a listener dropped at once left a window for one to).
        use nix::sys::socket::{
            bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        let held = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&held),
            &SockaddrIn::new(127, 0, 0, 1, 0),
        )
        .unwrap();
        let port = getsockname::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&held))
            .unwrap()
            .port();
        let closed = SocketAddr::from(([127, 0, 0, 1], port));
        let fx = start(rules(Decision::Allow, &[], &[], &[]));
        let answer = fx.ask(connect_request(closed).as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("devbox: cannot connect to {closed}: ")),
            "{answer}"
        );
        assert_eq!(
            fx.audit(),
            audited("allow", &closed.to_string(), "net.default")
        );
    }
}
