//! The control plane between the supervisor and a worker that opts in: a tiny line protocol
//! over a Unix stream socket. This module owns the server side (peer check, bounded
//! parsing, answers, the pushed `STOP`, reporting rejections) and a one-shot client. It
//! never binds the socket (the runner binds it inside the sandbox's mount namespace and
//! hands over the listener), never stops the worker itself (it only tells the supervisor,
//! through [`ControlEvent`]s), and never writes the audit log.
//!
//! # Protocol
//!
//! Every message, in both directions, is one line of printable ASCII (`0x20..=0x7e`)
//! ended by `\n`, at most [`MAX_LINE`] bytes including the `\n`. There is no `\r`, no
//! padding and no case folding: `READY` is a message, `ready` and `READY ` are not.
//!
//! Client to supervisor, each answered by exactly one line, in order:
//!
//! | line     | answer                | effect                                                          |
//! |----------|-----------------------|-----------------------------------------------------------------|
//! | `READY`  | `OK`                  | the first one (on any connection) sends [`ControlEvent::Ready`] |
//! | `STATUS` | `OK {json}`           | none; `{json}` is the supervisor's snapshot, compact, one line  |
//! | `STOP`   | `OK`                  | the first one sends [`ControlEvent::StopRequested`]             |
//! | other    | `ERR unknown message` | none                                                            |
//!
//! A line with a byte outside printable ASCII (control characters, non-UTF-8, any
//! non-ASCII UTF-8) is answered `ERR malformed`. A line that reaches [`MAX_LINE`] bytes
//! without its `\n` is answered `ERR message too long` at once, and the connection is
//! closed. After [`MAX_ERRORS`]
//! `ERR` answers on one connection the supervisor writes `ERR too many errors` and closes
//! it. A line, once begun, must be finished within 30 seconds (`ERR line timed out`, then
//! close); between lines a connection may stay silent as long as it likes, which is how a
//! worker waits for `STOP`.
//!
//! Supervisor to client, unprompted: `STOP` ([`ControlServer::request_stop`]) asks the
//! worker to shut down gracefully. Answers always begin with `OK` or `ERR`, so a client
//! tells a pushed `STOP` from an answer by its first word.
//!
//! On connecting, the peer's `SO_PEERCRED` must satisfy the supervisor's predicate (see
//! [`same_pid_namespace`]); otherwise it reads `ERR peer not allowed` and is closed. At
//! most [`MAX_CONNECTIONS`] connections are served at once; another one reads `ERR busy`
//! and is closed.
//!
//! # Hostile workers
//!
//! The worker is untrusted, so nothing it sends can make the supervisor block, panic or
//! grow: each connection holds one fixed-size line buffer and one thread, answers are
//! written without blocking (a client that does not read its answers is disconnected
//! rather than waited for), and [`ControlEvent::Rejected`] is rate-limited to
//! [`EVENTS_PER_SECOND`] with the rest counted, so garbage cannot fill the audit log.
//! What stays open is self-harm: a worker can hold all the connections and so lock
//! itself out of its own control plane.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, MsgFlags, UnixCredentials};
use nix::unistd::{Pid, Uid};

/// The longest line either side may send, including its `\n`.
pub const MAX_LINE: usize = 256;
/// Connections served at once; more are refused with `ERR busy`.
pub const MAX_CONNECTIONS: usize = 16;
/// `ERR` answers after which a connection is closed.
pub const MAX_ERRORS: u32 = 8;
/// [`ControlEvent::Rejected`] events sent per second at most; the rest are counted.
pub const EVENTS_PER_SECOND: u32 = 32;

const LINE_TIMEOUT: Duration = Duration::from_secs(30);
// How much of an offending line goes into the audit log: enough to recognise it, little
// enough that a flood of long lines stays small in the log.
const EXCERPT_BYTES: usize = 32;
// A STATUS answer can carry a snapshot far longer than a request; the client still needs
// a bound because it may be talking to something that is not devbox.
const MAX_ANSWER: u64 = 64 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
// Keeps a full file table (EMFILE) from turning the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
// Connection threads parse a line and format an answer; this leaves room for serializing
// a deeply nested status snapshot without reserving the default 2 MiB each.
const THREAD_STACK: usize = 256 * 1024;

/// Errors of the control plane's setup and of its client.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control listener {listener}: {action}: {source}")]
    Listener {
        listener: String,
        action: &'static str,
        source: io::Error,
    },
    #[error("control listener {listener} is not listening (listen(2) was never called on it)")]
    NotListening { listener: String },
    #[error("{action} control socket {}: {source}", .path.display())]
    Socket {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("control socket {} closed without answering", .path.display())]
    NoAnswer { path: PathBuf },
    #[error("control socket {} answered more than {MAX_ANSWER} bytes", .path.display())]
    AnswerTooLong { path: PathBuf },
    #[error("control message {message:?} is not one line of at most {} printable ascii characters", MAX_LINE - 1)]
    BadMessage { message: String },
}

/// What the supervisor learns from the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// The worker said `READY` for the first time.
    Ready,
    /// The worker said `STOP` for the first time.
    StopRequested,
    /// Something was refused; meant for the audit log.
    Rejected {
        reason: Rejection,
        /// For a refused line, its first bytes, escaped (`\xff`, `\n`) so they are
        /// printable; for a refused connection, the peer's `pid … uid … gid …`.
        excerpt: String,
        /// Rejections since the previous `Rejected` event that were not sent because of
        /// the rate limit.
        suppressed: u64,
    },
}

/// Why a line or a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A byte outside printable ASCII.
    Malformed,
    /// Printable, but not a message of the protocol.
    Unknown,
    /// No `\n` within [`MAX_LINE`] bytes; the connection was closed.
    TooLong,
    /// The peer closed the connection in the middle of a line.
    Unterminated,
    /// A line was begun and not finished in time; the connection was closed.
    Timeout,
    /// The peer predicate said no.
    PeerNotAllowed,
    /// [`MAX_CONNECTIONS`] were already being served.
    Busy,
}

impl Rejection {
    /// The text after `ERR ` on the wire (an unterminated line is never answered).
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Unknown => "unknown message",
            Rejection::TooLong => "message too long",
            Rejection::Unterminated => "unterminated line",
            Rejection::Timeout => "line timed out",
            Rejection::PeerNotAllowed => "peer not allowed",
            Rejection::Busy => "busy",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A peer predicate for [`ControlServer::start`]: the peer's uid must be `uid` and its
/// pid must live in the same pid namespace as `sandbox_init` (compared through
/// `/proc/<pid>/ns/pid`). Both are as the supervisor sees them: `SO_PEERCRED` translates
/// the peer's uid and pid into the reader's user and pid namespaces, and a peer whose pid
/// the supervisor cannot see reads as pid 0 and is refused. Anything unreadable refuses.
///
/// The pid is the one that connected; if that process has exited and the pid been reused,
/// the answer is about the new process, as with any `SO_PEERCRED` check.
pub fn same_pid_namespace(
    sandbox_init: Pid,
    uid: Uid,
) -> impl Fn(&UnixCredentials) -> bool + Send + Sync + 'static {
    move |peer: &UnixCredentials| {
        if peer.uid() != uid.as_raw() || peer.pid() <= 0 {
            return false;
        }
        let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        match (ns(peer.pid()), ns(sandbox_init.as_raw())) {
            (Some(peer_ns), Some(init_ns)) => peer_ns == init_ns,
            _ => false,
        }
    }
}

/// The serving side of the control plane. Dropping it stops accepting, closes every
/// connection and closes the listener.
pub struct ControlServer {
    shared: Arc<Shared>,
    // Dropping this end wakes the accept loop, which then returns.
    wake: Option<UnixStream>,
    accept: Option<JoinHandle<()>>,
}

type Writer = Arc<Mutex<UnixStream>>;

struct Shared {
    allow: Box<dyn Fn(&UnixCredentials) -> bool + Send + Sync>,
    status: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
    events: Sender<ControlEvent>,
    line_timeout: Duration,
    ready: AtomicBool,
    stop_requested: AtomicBool,
    rejected: AtomicU64,
    limiter: Mutex<Limiter>,
    connections: Mutex<Connections>,
}

#[derive(Default)]
struct Connections {
    next_id: u64,
    writers: HashMap<u64, Writer>,
}

struct Limiter {
    window_start: Instant,
    sent: u32,
    suppressed: u64,
}

impl ControlServer {
    /// Serves `listener` on its own threads (one accepting, one per connection) until
    /// dropped. `allow` decides on each peer, `status` is called for every `STATUS`, and
    /// events go to `events` (a closed receiver is not an error).
    pub fn start(
        listener: UnixListener,
        allow: impl Fn(&UnixCredentials) -> bool + Send + Sync + 'static,
        status: impl Fn() -> serde_json::Value + Send + Sync + 'static,
        events: Sender<ControlEvent>,
    ) -> Result<Self, ControlError> {
        Self::start_with(listener, allow, status, events, LINE_TIMEOUT)
    }

    fn start_with(
        listener: UnixListener,
        allow: impl Fn(&UnixCredentials) -> bool + Send + Sync + 'static,
        status: impl Fn() -> serde_json::Value + Send + Sync + 'static,
        events: Sender<ControlEvent>,
        line_timeout: Duration,
    ) -> Result<Self, ControlError> {
        let name = match listener.local_addr() {
            Ok(addr) => match addr.as_pathname() {
                Some(path) => path.display().to_string(),
                None => format!("{addr:?}"),
            },
            Err(_) => format!("fd {}", listener.as_raw_fd()),
        };
        let fail = |action| {
            let name = name.clone();
            move |source| ControlError::Listener {
                listener: name,
                action,
                source,
            }
        };
        // A socket that was bound but never listened on would make the accept loop spin
        // on errors for as long as the worker runs.
        let listening = socket::getsockopt(&listener, sockopt::AcceptConn)
            .map_err(|errno| fail("reading its socket options")(io::Error::from(errno)))?;
        if !listening {
            return Err(ControlError::NotListening { listener: name });
        }
        // Non-blocking so that a connection withdrawn between poll and accept cannot
        // park the accept loop where the wake-up does not reach it.
        listener
            .set_nonblocking(true)
            .map_err(fail("making it non-blocking"))?;
        let (wake, woken) = UnixStream::pair().map_err(fail("creating the wake-up pair"))?;
        let shared = Arc::new(Shared {
            allow: Box::new(allow),
            status: Box::new(status),
            events,
            line_timeout,
            ready: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            rejected: AtomicU64::new(0),
            limiter: Mutex::new(Limiter {
                window_start: Instant::now(),
                sent: 0,
                suppressed: 0,
            }),
            connections: Mutex::default(),
        });
        let accept = thread::Builder::new()
            .name("devbox-control".into())
            .stack_size(THREAD_STACK)
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&shared, &listener, &woken)
            })
            .map_err(fail("starting its thread"))?;
        Ok(Self {
            shared,
            wake: Some(wake),
            accept: Some(accept),
        })
    }

    /// Pushes `STOP` to every connected client and returns how many it reached, so the
    /// supervisor knows whether anyone heard it. A client whose socket buffer is full is
    /// disconnected instead: it is not listening.
    pub fn request_stop(&self) -> usize {
        let writers: Vec<Writer> = lock(&self.shared.connections)
            .writers
            .values()
            .cloned()
            .collect();
        writers
            .iter()
            .filter(|writer| write_line(writer, b"STOP\n"))
            .count()
    }

    /// How many lines and connections have been refused so far, including those whose
    /// events the rate limit held back.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        drop(self.wake.take());
        // Joined first, so that no connection is admitted after the others are closed.
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for writer in lock(&self.shared.connections).writers.values() {
            let _ = lock(writer).shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Sends `message` (without its `\n`) to the control socket at `path` and returns the
/// answer line without its `\n`. One connection per call; a `STOP` pushed meanwhile is
/// skipped, since a one-shot caller is not the listener it is meant for. Gives up after
/// five seconds of silence.
pub fn send(path: &Path, message: &str) -> Result<String, ControlError> {
    if message.len() >= MAX_LINE || !message.bytes().all(printable) {
        return Err(ControlError::BadMessage {
            message: message.to_string(),
        });
    }
    let fail = |action| {
        move |source| ControlError::Socket {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut stream = UnixStream::connect(path).map_err(fail("connecting to"))?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CLIENT_TIMEOUT)))
        .map_err(fail("setting timeouts on"))?;
    stream
        .write_all(format!("{message}\n").as_bytes())
        .map_err(fail("writing to"))?;
    let mut reader = BufReader::new(stream.take(MAX_ANSWER));
    loop {
        let mut line = Vec::new();
        reader
            .read_until(b'\n', &mut line)
            .map_err(fail("reading from"))?;
        if line.last() != Some(&b'\n') {
            return Err(if line.len() as u64 >= MAX_ANSWER {
                ControlError::AnswerTooLong {
                    path: path.to_path_buf(),
                }
            } else {
                ControlError::NoAnswer {
                    path: path.to_path_buf(),
                }
            });
        }
        line.pop();
        if line != b"STOP" {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener, woken: &UnixStream) {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(woken.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => {
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        }
        // The other end never writes; any readiness here is its close.
        if fds[1].any().unwrap_or(true) {
            return;
        }
        match listener.accept() {
            Ok((stream, _)) => admit(shared, stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(_) => thread::sleep(ACCEPT_BACKOFF),
        }
    }
}

fn admit(shared: &Arc<Shared>, stream: UnixStream) {
    let peer = socket::getsockopt(&stream, sockopt::PeerCredentials);
    let who = match &peer {
        Ok(c) => format!("pid {} uid {} gid {}", c.pid(), c.uid(), c.gid()),
        Err(e) => format!("no peer credentials ({e})"),
    };
    if !peer.as_ref().is_ok_and(|creds| (shared.allow)(creds)) {
        return refuse(shared, &stream, Rejection::PeerNotAllowed, who);
    }
    // The accepted socket does not inherit the listener's O_NONBLOCK on Linux; this only
    // makes sure of it, since the line timeout relies on blocking reads.
    let writer: Writer = match stream
        .set_nonblocking(false)
        .and_then(|()| stream.try_clone())
    {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(_) => return refuse(shared, &stream, Rejection::Busy, who),
    };
    let id = {
        let mut connections = lock(&shared.connections);
        if connections.writers.len() >= MAX_CONNECTIONS {
            drop(connections);
            return refuse(shared, &stream, Rejection::Busy, who);
        }
        let id = connections.next_id;
        connections.next_id += 1;
        connections.writers.insert(id, Arc::clone(&writer));
        id
    };
    let spawned = thread::Builder::new()
        .name("devbox-control".into())
        .stack_size(THREAD_STACK)
        .spawn({
            let shared = Arc::clone(shared);
            let writer = Arc::clone(&writer);
            move || serve(&shared, id, stream, &writer)
        });
    if spawned.is_err() {
        lock(&shared.connections).writers.remove(&id);
        shared.reject(Rejection::Busy, who);
        write_line(&writer, b"ERR busy\n");
    }
}

fn refuse(shared: &Shared, stream: &UnixStream, reason: Rejection, excerpt: String) {
    shared.reject(reason, excerpt);
    // A fresh socket's buffer is empty, so this write cannot block or be cut short.
    send_now(stream, format!("ERR {reason}\n").as_bytes());
}

// Frees the connection's slot before its socket closes, so a client that has seen EOF can
// count on the slot being free again.
struct Slot<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(&self.shared.connections).writers.remove(&self.id);
    }
}

enum Verdict {
    Answered,
    Refused,
    Close,
}

fn serve(shared: &Shared, id: u64, mut stream: UnixStream, writer: &Writer) {
    let _slot = Slot { shared, id };
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut chunk = [0u8; 512];
    let mut errors = 0;
    // When the line in `line` began; `None` between lines, where silence is allowed.
    let mut line_started: Option<Instant> = None;
    loop {
        let timeout = match line_started {
            Some(start) => match shared.line_timeout.checked_sub(start.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return time_out(shared, writer, &line),
            },
            None => None,
        };
        if stream.set_read_timeout(timeout).is_err() {
            return;
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => {
                if !line.is_empty() {
                    shared.reject(Rejection::Unterminated, excerpt(&line));
                }
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return time_out(shared, writer, &line)
            }
            Err(_) => return,
        };
        for &byte in &chunk[..n] {
            if byte != b'\n' {
                if line.len() + 1 >= MAX_LINE {
                    shared.reject(Rejection::TooLong, excerpt(&line));
                    write_line(writer, b"ERR message too long\n");
                    return;
                }
                line.push(byte);
                continue;
            }
            let verdict = shared.answer(&line, writer);
            line.clear();
            line_started = None;
            match verdict {
                Verdict::Answered => {}
                Verdict::Refused => {
                    errors += 1;
                    if errors >= MAX_ERRORS {
                        write_line(writer, b"ERR too many errors\n");
                        return;
                    }
                }
                Verdict::Close => return,
            }
        }
        if !line.is_empty() && line_started.is_none() {
            line_started = Some(Instant::now());
        }
    }
}

fn time_out(shared: &Shared, writer: &Writer, line: &[u8]) {
    shared.reject(Rejection::Timeout, excerpt(line));
    write_line(writer, b"ERR line timed out\n");
}

impl Shared {
    // Events go out before the answer, so a client holding its answer knows the
    // supervisor has been told.
    fn answer(&self, line: &[u8], writer: &Writer) -> Verdict {
        let reply = if !line.iter().copied().all(printable) {
            Err(Rejection::Malformed)
        } else {
            match line {
                b"READY" => {
                    if !self.ready.swap(true, Ordering::SeqCst) {
                        let _ = self.events.send(ControlEvent::Ready);
                    }
                    Ok(b"OK\n".to_vec())
                }
                b"STATUS" => Ok(format!("OK {}\n", (self.status)()).into_bytes()),
                b"STOP" => {
                    if !self.stop_requested.swap(true, Ordering::SeqCst) {
                        let _ = self.events.send(ControlEvent::StopRequested);
                    }
                    Ok(b"OK\n".to_vec())
                }
                _ => Err(Rejection::Unknown),
            }
        };
        let (bytes, verdict) = match reply {
            Ok(bytes) => (bytes, Verdict::Answered),
            Err(reason) => {
                self.reject(reason, excerpt(line));
                (format!("ERR {reason}\n").into_bytes(), Verdict::Refused)
            }
        };
        if write_line(writer, &bytes) {
            verdict
        } else {
            Verdict::Close
        }
    }

    fn reject(&self, reason: Rejection, excerpt: String) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let mut limiter = lock(&self.limiter);
        if limiter.window_start.elapsed() >= Duration::from_secs(1) {
            limiter.window_start = Instant::now();
            limiter.sent = 0;
        }
        if limiter.sent >= EVENTS_PER_SECOND {
            limiter.suppressed += 1;
            return;
        }
        limiter.sent += 1;
        let suppressed = std::mem::take(&mut limiter.suppressed);
        // Sent under the lock so that `suppressed` counts arrive in order.
        let _ = self.events.send(ControlEvent::Rejected {
            reason,
            excerpt,
            suppressed,
        });
    }
}

// Writes a whole line without blocking, or shuts the connection down: a client that lets
// its buffer fill up is not reading, and a cut line would corrupt the stream.
fn write_line(writer: &Writer, line: &[u8]) -> bool {
    let stream = lock(writer);
    let written = send_now(&stream, line);
    if !written {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    written
}

fn send_now(stream: &UnixStream, line: &[u8]) -> bool {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    loop {
        match socket::send(stream.as_raw_fd(), line, flags) {
            Ok(n) => return n == line.len(),
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

fn printable(byte: u8) -> bool {
    byte.is_ascii_graphic() || byte == b' '
}

fn excerpt(line: &[u8]) -> String {
    let shown = line.get(..EXCERPT_BYTES).unwrap_or(line);
    let mut text = shown.escape_ascii().to_string();
    if shown.len() < line.len() {
        text.push_str("...");
    }
    text
}

// A panic elsewhere must not take the control plane down with it; the guarded data stays
// consistent because no critical section here can panic halfway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{self, Receiver, TryRecvError};

    const WAIT: Duration = Duration::from_secs(5);

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        server: ControlServer,
        events: Receiver<ControlEvent>,
    }

    fn fixture_with(
        allow: impl Fn(&UnixCredentials) -> bool + Send + Sync + 'static,
        line_timeout: Duration,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, events) = mpsc::channel();
        let status = || serde_json::json!({"worker": "api", "pid": 42, "ready": true});
        let server = ControlServer::start_with(listener, allow, status, tx, line_timeout).unwrap();
        Fixture {
            _dir: dir,
            path,
            server,
            events,
        }
    }

    fn fixture() -> Fixture {
        fixture_with(|_| true, LINE_TIMEOUT)
    }

    struct Client {
        stream: UnixStream,
        reader: BufReader<UnixStream>,
    }

    impl Client {
        fn connect(path: &Path) -> Self {
            let stream = UnixStream::connect(path).unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.set_write_timeout(Some(WAIT)).unwrap();
            let reader = BufReader::new(stream.try_clone().unwrap());
            Self { stream, reader }
        }

        fn write(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).unwrap();
        }

        /// The next line without its `\n`, or `None` at EOF.
        fn line(&mut self) -> Option<String> {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).unwrap();
            if line.is_empty() {
                return None;
            }
            assert_eq!(line.pop(), Some(b'\n'), "unterminated {line:?}");
            Some(String::from_utf8(line).unwrap())
        }

        fn ask(&mut self, bytes: &[u8]) -> String {
            self.write(bytes);
            self.line().expect("an answer, not EOF")
        }
    }

    fn event(events: &Receiver<ControlEvent>) -> ControlEvent {
        events.recv_timeout(WAIT).expect("an event")
    }

    fn no_event(events: &Receiver<ControlEvent>) {
        assert_eq!(events.try_recv(), Err(TryRecvError::Empty));
    }

    fn rejected(reason: Rejection, excerpt: &str) -> ControlEvent {
        ControlEvent::Rejected {
            reason,
            excerpt: excerpt.to_string(),
            suppressed: 0,
        }
    }

    #[test]
    fn ready_is_answered_every_time_and_notifies_once() {
        let f = fixture();
        assert_eq!(send(&f.path, "READY").unwrap(), "OK");
        assert_eq!(event(&f.events), ControlEvent::Ready);
        assert_eq!(send(&f.path, "READY").unwrap(), "OK");
        let mut client = Client::connect(&f.path);
        assert_eq!(client.ask(b"READY\n"), "OK");
        // Events are sent before answers, so an empty channel here is final.
        no_event(&f.events);
    }

    #[test]
    fn status_answers_the_supervisors_snapshot_on_one_line() {
        let f = fixture();
        let answer = send(&f.path, "STATUS").unwrap();
        let json = answer.strip_prefix("OK ").expect(&answer);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(json).unwrap(),
            serde_json::json!({"worker": "api", "pid": 42, "ready": true})
        );
        no_event(&f.events);
    }

    #[test]
    fn status_calls_the_snapshot_for_each_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let (tx, _events) = mpsc::channel();
        let calls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&calls);
        let status = move || serde_json::json!({"n": counted.fetch_add(1, Ordering::SeqCst)});
        let _server =
            ControlServer::start(UnixListener::bind(&path).unwrap(), |_| true, status, tx).unwrap();
        assert_eq!(send(&path, "STATUS").unwrap(), r#"OK {"n":0}"#);
        assert_eq!(send(&path, "STATUS").unwrap(), r#"OK {"n":1}"#);
    }

    #[test]
    fn stop_from_the_worker_notifies_once() {
        let f = fixture();
        assert_eq!(send(&f.path, "STOP").unwrap(), "OK");
        assert_eq!(event(&f.events), ControlEvent::StopRequested);
        assert_eq!(send(&f.path, "STOP").unwrap(), "OK");
        no_event(&f.events);
    }

    #[test]
    fn pipelined_lines_are_answered_in_order() {
        let f = fixture();
        let mut client = Client::connect(&f.path);
        client.write(b"READY\nSTATUS\nSTOP\n");
        assert_eq!(client.line().unwrap(), "OK");
        assert!(client.line().unwrap().starts_with("OK {"));
        assert_eq!(client.line().unwrap(), "OK");
        assert_eq!(event(&f.events), ControlEvent::Ready);
        assert_eq!(event(&f.events), ControlEvent::StopRequested);
    }

    #[test]
    fn request_stop_pushes_stop_to_every_connected_client() {
        let f = fixture();
        let mut first = Client::connect(&f.path);
        let mut second = Client::connect(&f.path);
        // An answer proves the connection is registered.
        assert_eq!(first.ask(b"READY\n"), "OK");
        assert_eq!(second.ask(b"STATUS\n").get(..3), Some("OK "));
        assert_eq!(f.server.request_stop(), 2);
        assert_eq!(first.line().as_deref(), Some("STOP"));
        assert_eq!(second.line().as_deref(), Some("STOP"));
        // The connection stays usable after the push.
        assert_eq!(first.ask(b"READY\n"), "OK");
    }

    #[test]
    fn request_stop_with_nobody_listening_reaches_nobody() {
        let f = fixture();
        assert_eq!(f.server.request_stop(), 0);
    }

    #[test]
    fn unknown_messages_are_refused_and_reported() {
        let f = fixture();
        let mut client = Client::connect(&f.path);
        for line in ["HELLO", "ready", "READY ", " READY", "", "STATUS please"] {
            assert_eq!(
                client.ask(format!("{line}\n").as_bytes()),
                "ERR unknown message"
            );
            assert_eq!(event(&f.events), rejected(Rejection::Unknown, line));
        }
        assert_eq!(client.ask(b"READY\n"), "OK");
        assert_eq!(f.server.rejected(), 6);
    }

    #[test]
    fn bytes_outside_printable_ascii_are_malformed() {
        let f = fixture();
        let mut client = Client::connect(&f.path);
        let cases: [(&[u8], &str); 5] = [
            (b"\xff\xfeREADY\n", r"\xff\xfeREADY"),
            (b"RE\x01ADY\n", r"RE\x01ADY"),
            (b"READY\r\n", r"READY\r"),
            ("R\u{c9}ADY\n".as_bytes(), r"R\xc3\x89ADY"),
            (b"\x1b[2J\0\n", r"\x1b[2J\x00"),
        ];
        for (line, shown) in cases {
            assert_eq!(client.ask(line), "ERR malformed");
            assert_eq!(event(&f.events), rejected(Rejection::Malformed, shown));
        }
        assert_eq!(client.ask(b"READY\n"), "OK");
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_read_whole() {
        let f = fixture();
        let mut client = Client::connect(&f.path);
        let line = format!("{}\n", "A".repeat(MAX_LINE - 1));
        assert_eq!(client.ask(line.as_bytes()), "ERR unknown message");
        assert_eq!(client.ask(b"READY\n"), "OK");
    }

    #[test]
    fn a_longer_line_is_refused_and_the_connection_closed() {
        let f = fixture();
        let mut client = Client::connect(&f.path);
        let line = format!("{}\n", "A".repeat(299));
        assert_eq!(client.ask(line.as_bytes()), "ERR message too long");
        assert_eq!(client.line(), None);
        let shown = format!("{}...", "A".repeat(EXCERPT_BYTES));
        assert_eq!(event(&f.events), rejected(Rejection::TooLong, &shown));
        assert_eq!(send(&f.path, "READY").unwrap(), "OK");
    }

    #[test]
    fn too_many_errors_close_the_connection() {
        let f = fixture();
        let mut client = Client::connect(&f.path);
        client.write("NOPE\n".repeat(MAX_ERRORS as usize + 5).as_bytes());
        for _ in 0..MAX_ERRORS {
            assert_eq!(client.line().as_deref(), Some("ERR unknown message"));
        }
        assert_eq!(client.line().as_deref(), Some("ERR too many errors"));
        assert_eq!(client.line(), None);
        assert_eq!(f.server.rejected(), u64::from(MAX_ERRORS));
    }

    #[test]
    fn a_partial_line_then_close_is_reported_not_fatal() {
        let f = fixture();
        let mut client = Client::connect(&f.path);
        client.write(b"REA");
        client.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(client.line(), None);
        assert_eq!(event(&f.events), rejected(Rejection::Unterminated, "REA"));

        let mut client = Client::connect(&f.path);
        client.write(b"\xffST");
        drop(client);
        assert_eq!(
            event(&f.events),
            rejected(Rejection::Unterminated, r"\xffST")
        );
        assert_eq!(send(&f.path, "READY").unwrap(), "OK");
    }

    #[test]
    fn a_stalled_line_times_out_but_a_silent_client_keeps_listening() {
        let f = fixture_with(|_| true, Duration::from_millis(200));
        let mut listening = Client::connect(&f.path);
        assert_eq!(listening.ask(b"READY\n"), "OK");
        let mut stalled = Client::connect(&f.path);
        stalled.write(b"STAT");
        assert_eq!(stalled.line().as_deref(), Some("ERR line timed out"));
        assert_eq!(stalled.line(), None);
        assert_eq!(event(&f.events), ControlEvent::Ready);
        assert_eq!(event(&f.events), rejected(Rejection::Timeout, "STAT"));
        thread::sleep(Duration::from_millis(300));
        assert_eq!(f.server.request_stop(), 1);
        assert_eq!(listening.line().as_deref(), Some("STOP"));
    }

    #[test]
    fn a_flood_of_malformed_lines_leaves_the_server_answering() {
        const THREADS: usize = 8;
        const LINES: usize = 10_000;
        let f = fixture();
        let garbage: [&[u8]; 4] = [b"\xff\xfe\n", b"NOPE\n", b"\x1b[2J\n", b"STATUS?\n"];
        let started = Instant::now();
        let connections: usize = thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let path = &f.path;
                    scope.spawn(move || {
                        let mut connections = 0;
                        while connections * (MAX_ERRORS as usize) < LINES / THREADS {
                            // Half the connections pipeline far past the error limit, so
                            // the server closes on unread input.
                            let batch = if connections % 2 == 0 { 8 } else { 40 };
                            let lines: Vec<u8> = (0..batch)
                                .flat_map(|i| garbage[(i + t) % garbage.len()].iter().copied())
                                .collect();
                            let mut client = Client::connect(path);
                            let _ = client.stream.write_all(&lines);
                            let mut answers = Vec::new();
                            while client.reader.read_until(b'\n', &mut answers).unwrap_or(0) > 0 {}
                            let answers: Vec<&[u8]> = answers
                                .split(|&b| b == b'\n')
                                .filter(|a| !a.is_empty())
                                .collect();
                            assert!(
                                answers.iter().all(|a| a.starts_with(b"ERR ")),
                                "{answers:?}"
                            );
                            // With nothing left unread the close is orderly, so every
                            // answer arrives.
                            if batch == MAX_ERRORS as usize {
                                assert_eq!(answers.len(), batch + 1);
                                assert_eq!(answers[batch], b"ERR too many errors");
                            }
                            connections += 1;
                        }
                        connections
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        // Every connection is closed after exactly MAX_ERRORS refusals, however much
        // more it sent.
        assert!(f.server.rejected() >= LINES as u64);
        assert_eq!(
            f.server.rejected(),
            connections as u64 * u64::from(MAX_ERRORS)
        );

        let (mut reported, mut suppressed) = (0u64, 0u64);
        while let Ok(event) = f.events.try_recv() {
            match event {
                ControlEvent::Rejected { suppressed: s, .. } => {
                    reported += 1;
                    suppressed += s;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let seconds = started.elapsed().as_secs() + 1;
        assert!(
            reported <= u64::from(EVENTS_PER_SECOND) * seconds,
            "{reported} events"
        );
        assert!(reported + suppressed <= f.server.rejected());

        let mut client = Client::connect(&f.path);
        assert_eq!(client.ask(b"READY\n"), "OK");
        assert_eq!(event(&f.events), ControlEvent::Ready);
    }

    #[test]
    fn connections_past_the_limit_are_busy_and_the_server_recovers() {
        let f = fixture();
        let mut clients: Vec<Client> = (0..40).map(|_| Client::connect(&f.path)).collect();
        let mut answers = Vec::new();
        for client in &mut clients {
            // A refused connection may be closed before this write lands.
            let _ = client.stream.write_all(b"STATUS\n");
            answers.push(client.line().expect("an answer"));
        }
        let served = answers.iter().filter(|a| a.starts_with("OK {")).count();
        let busy = answers.iter().filter(|a| *a == "ERR busy").count();
        assert_eq!((served, busy), (MAX_CONNECTIONS, 40 - MAX_CONNECTIONS));
        assert_eq!(f.server.rejected(), (40 - MAX_CONNECTIONS) as u64);

        drop(clients);
        // Slots free up as the server notices the closes, which takes a moment.
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = send(&f.path, "READY").unwrap();
            if answer == "OK" {
                break;
            }
            assert_eq!(answer, "ERR busy");
            assert!(Instant::now() < deadline, "still busy");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_peer_the_predicate_refuses_is_told_and_reported() {
        let f = fixture_with(|_| false, LINE_TIMEOUT);
        assert_eq!(send(&f.path, "READY").unwrap(), "ERR peer not allowed");
        let me = format!(
            "pid {} uid {} gid {}",
            std::process::id(),
            nix::unistd::getuid(),
            nix::unistd::getgid()
        );
        assert_eq!(event(&f.events), rejected(Rejection::PeerNotAllowed, &me));
        no_event(&f.events);
    }

    #[test]
    fn same_pid_namespace_accepts_a_peer_beside_the_init() {
        let f = fixture_with(
            same_pid_namespace(nix::unistd::getpid(), nix::unistd::getuid()),
            LINE_TIMEOUT,
        );
        assert_eq!(send(&f.path, "READY").unwrap(), "OK");
    }

    #[test]
    fn same_pid_namespace_refuses_another_uid_a_gone_init_and_an_invisible_pid() {
        let (a, _b) = UnixStream::pair().unwrap();
        let me = socket::getsockopt(&a, sockopt::PeerCredentials).unwrap();
        let (pid, uid) = (nix::unistd::getpid(), nix::unistd::getuid());
        assert!(same_pid_namespace(pid, uid)(&me));
        assert!(!same_pid_namespace(pid, Uid::from_raw(uid.as_raw() + 1))(
            &me
        ));
        // Above any pid_max the kernel allows (2^22).
        assert!(!same_pid_namespace(Pid::from_raw(i32::MAX), uid)(&me));
        let mut raw = nix::libc::ucred::from(me);
        raw.pid = 0;
        assert!(!same_pid_namespace(pid, uid)(&UnixCredentials::from(raw)));
    }

    #[test]
    fn a_socket_that_does_not_listen_is_refused_at_start() {
        let (a, _b) = UnixStream::pair().unwrap();
        let not_listening = UnixListener::from(std::os::fd::OwnedFd::from(a));
        let (tx, _events) = mpsc::channel();
        let err = ControlServer::start(not_listening, |_| true, serde_json::Value::default, tx)
            .err()
            .expect("an error");
        assert!(matches!(err, ControlError::NotListening { .. }), "{err}");
    }

    #[test]
    fn dropping_the_server_closes_connections_and_the_listener() {
        let f = fixture();
        let mut client = Client::connect(&f.path);
        assert_eq!(client.ask(b"READY\n"), "OK");
        drop(f.server);
        assert_eq!(client.line(), None);
        let err = send(&f.path, "READY").unwrap_err().to_string();
        let expected = format!("connecting to control socket {}: ", f.path.display());
        assert!(err.starts_with(&expected), "{err}");
    }

    // Stands in for something on the socket that is not devbox: it reads the request and
    // answers `reply` verbatim.
    fn fake_server(reply: Vec<u8>) -> (tempfile::TempDir, PathBuf, JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(&stream).read_line(&mut request).unwrap();
            let _ = (&stream).write_all(&reply);
        });
        (dir, path, server)
    }

    #[test]
    fn send_skips_a_pushed_stop_and_bounds_the_answer() {
        let (_dir, path, server) = fake_server(b"STOP\nOK\n".to_vec());
        assert_eq!(send(&path, "READY").unwrap(), "OK");
        server.join().unwrap();

        let (_dir, path, server) = fake_server(b"OK".to_vec());
        let err = send(&path, "READY").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("control socket {} closed without answering", path.display())
        );
        server.join().unwrap();

        let (_dir, path, server) = fake_server(vec![b'A'; 2 * MAX_ANSWER as usize]);
        let err = send(&path, "STATUS").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "control socket {} answered more than 65536 bytes",
                path.display()
            )
        );
        server.join().unwrap();
    }

    #[test]
    fn send_refuses_what_is_not_one_printable_line() {
        let f = fixture();
        for message in ["READY\nSTOP", "R\u{c9}ADY", &"A".repeat(MAX_LINE)] {
            let err = send(&f.path, message).unwrap_err();
            assert!(matches!(err, ControlError::BadMessage { .. }), "{err}");
        }
        assert_eq!(
            send(&f.path, "READY\n").unwrap_err().to_string(),
            r#"control message "READY\n" is not one line of at most 255 printable ascii characters"#
        );
        no_event(&f.events);
    }
}
