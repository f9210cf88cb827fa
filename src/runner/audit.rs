//! The audit log: one JSON line per policy decision (allow, deny or warn), appended to a
//! file (default `.data/logs/devbox-audit.jsonl`) or written to stderr. Shared by the
//! supervisor's threads; a line is written whole or not at all.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::model::Decision;

/// One decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event<'a> {
    /// `net`, `fs`, `exec`, `env`, `limit` or `lifecycle`.
    pub kind: &'a str,
    pub decision: Decision,
    /// What was decided on: `api.github.com:443`, `/etc/shadow`, `GITHUB_TOKEN`, ….
    pub what: &'a str,
    /// The rule that decided it: `net.allow "*.github.com:443"`, `net.default`, ….
    pub rule: &'a str,
}

enum Sink {
    File(File),
    Stderr,
    Discard,
}

/// Where decisions go. Cheap to share behind an `Arc`.
pub struct AuditLog {
    worker: String,
    sink: Mutex<Sink>,
}

impl AuditLog {
    /// Appends to `path` (created 0600 with its parent directories).
    pub fn to_file(worker: &str, path: &Path) -> std::io::Result<Self> {
        Ok(Self::to_open_file(
            worker,
            crate::fsutil::open_append(path, 0o600)?,
        ))
    }

    /// Appends to a file the caller opened (for `.data`, through
    /// [`crate::data::open_append`], which never follows a symlink).
    pub fn to_open_file(worker: &str, f: File) -> Self {
        Self::with(worker, Sink::File(f))
    }

    /// Writes each line to stderr (`--audit -`).
    pub fn to_stderr(worker: &str) -> Self {
        Self::with(worker, Sink::Stderr)
    }

    /// Records nothing (for tests of the parts that take a log).
    pub fn discard() -> Self {
        Self::with("", Sink::Discard)
    }

    fn with(worker: &str, sink: Sink) -> Self {
        Self {
            worker: worker.to_string(),
            sink: Mutex::new(sink),
        }
    }

    /// Appends one line; a write error is reported once on stderr and does not stop the
    /// worker (the decision itself has already been enforced).
    pub fn record(&self, ev: &Event<'_>) {
        self.record_all(std::slice::from_ref(ev));
    }

    /// Appends one line per event with a single write (the decisions made before the
    /// worker starts go out together).
    pub fn record_all(&self, events: &[Event<'_>]) {
        #[derive(Serialize)]
        struct Line<'a> {
            ts_ms: u128,
            worker: &'a str,
            #[serde(flatten)]
            ev: &'a Event<'a>,
        }
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let mut lines = Vec::with_capacity(160 * events.len());
        for ev in events {
            let line = Line {
                ts_ms,
                worker: &self.worker,
                ev,
            };
            if serde_json::to_writer(&mut lines, &line).is_ok() {
                lines.push(b'\n');
            }
        }
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let res = match &mut *sink {
            // One write call: O_APPEND keeps concurrent writers' lines whole.
            Sink::File(f) => f.write_all(&lines),
            Sink::Stderr => std::io::stderr().write_all(&lines),
            Sink::Discard => Ok(()),
        };
        if let Err(e) = res {
            eprintln!("devbox: audit log: {e}");
            *sink = Sink::Discard;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_decision_is_one_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let log = AuditLog::to_file("w", &path).unwrap();
        log.record(&Event {
            kind: "net",
            decision: Decision::Deny,
            what: "evil.example:443",
            rule: "net.default",
        });
        log.record(&Event {
            kind: "env",
            decision: Decision::Allow,
            what: "LANG",
            rule: "env.pass",
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["worker"], "w");
        assert_eq!(lines[0]["decision"], "deny");
        assert_eq!(lines[0]["what"], "evil.example:443");
        assert_eq!(lines[1]["rule"], "env.pass");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
