//! The one place devbox starts other programs. `clippy.toml` forbids
//! `std::process::Command::new` everywhere else, so every child is spawned the same way:
//! looked up on `PATH`, stdin closed, and errors naming the program.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The program's path on `PATH`, if it is there and executable.
pub fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A command with stdin closed, ready for more arguments.
#[allow(clippy::disallowed_methods)]
pub fn command(program: &str) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null());
    c
}

/// Starts a long-running helper whose output nobody reads.
pub fn spawn_quiet(program: &str, args: &[&str]) -> std::io::Result<Child> {
    command(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{program}: {e}")))
}
