//! Output into a pipe whose reader has gone (`devbox audit | head -1`).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::util::{repo, BIN};

// `devbox audit | head -1` and `completions bash | head -1` panicked with exit 101 in some
// runs: the reader had gone before devbox's first write. Closing the read end first makes
// every write fail, so the fault shows on every run, not one in a few.
#[test]
fn commands_that_print_end_quietly_when_the_reader_has_gone() {
    let quickstart = repo().join("examples/quickstart/sandbox.toml");
    let q = quickstart.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["-f", q, "audit"],
        &["-f", q, "audit", "--format", "sarif"],
        &["-f", q, "check"],
        &["-f", q, "render", "--format", "compose"],
        &["-f", q, "config"],
        &["schema"],
        &["completions", "bash"],
        &["completions", "fish"],
        &["man"],
    ];
    for args in cases {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(*args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(nix::libc::SIGPIPE),
            "devbox {args:?}: {:?}, stderr: {stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "devbox {args:?}: {stderr}");
    }
}
