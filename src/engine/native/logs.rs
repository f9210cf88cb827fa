//! The services' output as the supervisor keeps it: `logs/NAME.log`, one line per line
//! printed, `TIMESTAMP STREAM TEXT` (RFC 3339 with nanoseconds; `stdout` or `stderr`),
//! rotated at [`MAX_BYTES`] keeping one old file (`NAME.log.1`). Reading turns them back
//! into [`LogLine`]s for the merged-by-time `devbox logs`.

use std::fs::File;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::engine::LogLine;

/// A log file is rotated when a line would take it past this size.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// A line longer than this is cut into pieces.
const MAX_LINE: usize = 64 * 1024;

/// The writing end, shared by a service's stdout and stderr readers.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl Writer {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::with_max(path, MAX_BYTES)
    }

    pub fn with_max(path: &Path, max: u64) -> std::io::Result<Self> {
        let file = crate::fsutil::open_append(path, 0o600)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max,
        })
    }

    /// Appends one line (without its newline), stamped now.
    pub fn line(&mut self, stderr: bool, text: &[u8]) {
        for piece in text.chunks(MAX_LINE).take(16) {
            let ts = humantime::format_rfc3339_nanos(std::time::SystemTime::now());
            let stream = if stderr { "stderr" } else { "stdout" };
            let mut l = format!("{ts} {stream} ").into_bytes();
            l.extend_from_slice(piece.strip_suffix(b"\r").unwrap_or(piece));
            l.push(b'\n');
            if self.size > 0 && self.size + l.len() as u64 > self.max {
                self.rotate();
            }
            if self.file.write_all(&l).is_ok() {
                self.size += l.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        let old = old_file(&self.path);
        let _ = std::fs::rename(&self.path, &old);
        if let Ok(f) = crate::fsutil::open_append(&self.path, 0o600) {
            self.file = f;
            self.size = 0;
        }
    }
}

pub fn old_file(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// Copies `from` into `log` line by line until it closes.
pub fn pump(mut from: impl Read, stderr: bool, log: &std::sync::Mutex<Writer>) {
    let mut r = std::io::BufReader::new(&mut from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
                log.lock().unwrap().line(stderr, text);
            }
        }
    }
}

/// One stored line back as a [`LogLine`].
pub fn parse(line: &str) -> Option<LogLine> {
    let (ts, rest) = line.split_once(' ')?;
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(LogLine {
        timestamp: ts.to_owned(),
        stderr: stream == "stderr",
        text: text.to_owned(),
    })
}

/// Unix seconds of an RFC 3339 stamp (0 when it cannot be read).
fn seconds(ts: &str) -> i64 {
    humantime::parse_rfc3339(ts)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Every line kept for `path` (the rotated file first), from `since` (Unix seconds), the
/// last `tail` of them; with the position reached in the current file.
pub fn read(path: &Path, since: Option<i64>, tail: Option<usize>) -> (Vec<LogLine>, u64) {
    let mut out = Vec::new();
    let mut pos = 0;
    for (p, current) in [(old_file(path), false), (path.to_path_buf(), true)] {
        let Ok(mut f) = File::open(&p) else { continue };
        let mut text = Vec::new();
        let _ = f.read_to_end(&mut text);
        if current {
            pos = text.len() as u64;
        }
        out.extend(
            String::from_utf8_lossy(&text)
                .lines()
                .filter_map(parse)
                .filter(|l| since.is_none_or(|s| seconds(&l.timestamp) >= s)),
        );
    }
    if let Some(n) = tail {
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
    }
    (out, pos)
}

/// The complete lines written to `path` after `pos`, and the new position; a file that
/// shrank was rotated, and is read from its start.
pub fn read_from(path: &Path, pos: u64) -> (Vec<LogLine>, u64) {
    let Ok(mut f) = File::open(path) else {
        return (Vec::new(), pos);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < pos { 0 } else { pos };
    if f.seek(std::io::SeekFrom::Start(start)).is_err() {
        return (Vec::new(), pos);
    }
    let mut text = Vec::new();
    let _ = f.read_to_end(&mut text);
    let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let lines = String::from_utf8_lossy(&text[..complete])
        .lines()
        .filter_map(parse)
        .collect();
    (lines, start + complete as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_rotated_and_read_back_in_order() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("web.log");
        let mut w = Writer::with_max(&path, 200).unwrap();
        for i in 0..6 {
            w.line(i % 2 == 1, format!("line {i}\r").as_bytes());
        }
        assert!(old_file(&path).exists(), "rotated past 200 bytes");
        let (all, pos) = read(&path, None, None);
        let texts: Vec<&str> = all.iter().map(|l| l.text.as_str()).collect();
        // One old file is kept: the earliest lines are gone, the rest in order.
        assert!(texts.ends_with(&["line 4", "line 5"]), "{texts:?}");
        assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(all
            .iter()
            .all(|l| l.stderr == l.text.ends_with(['1', '3', '5'])));
        assert!(all[0].timestamp.len() >= 30 && all[0].timestamp.ends_with('Z'));
        let (tail, _) = read(&path, None, Some(1));
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].text, "line 5");
        let (none, _) = read(&path, Some(i64::MAX / 2), None);
        assert!(none.is_empty());
        w.line(false, b"later");
        let (more, _) = read_from(&path, pos);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].text, "later");
    }
}
