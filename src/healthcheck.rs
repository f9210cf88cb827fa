//! A service's healthcheck as a container engine's test command, and back: the one place
//! that knows the `CMD` / `CMD-SHELL` forms devbox writes (the engines' specs, compose)
//! and reads again (`devbox import`), the shell line of a `tcp` check, the `wget` line of
//! an `http` check and how an `http` path becomes a URL. It imports nothing from `render`
//! or `engine`, which both use it; it never runs a check.

use crate::config::model::{HealthTest, Service};

/// The first word of a test run as an argv.
pub const CMD: &str = "CMD";
/// The first word of a test run with the image's shell.
pub const CMD_SHELL: &str = "CMD-SHELL";
/// The first word of a test that disables the image's healthcheck.
pub const NONE: &str = "NONE";

/// How an `http` check is run in a container: the URL follows.
const WGET: &str = "wget -q -O /dev/null ";

/// A shell test that passes when something listens on the TCP port inside the
/// container. It reads the kernel's socket table (any image with `sh` and `grep`), since
/// `nc -z` is missing from many images, busybox's included; `nc -z` is the fallback.
pub fn tcp_shell(port: u16) -> String {
    format!(
        "grep -qE ':{port:04X} [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null || nc -z 127.0.0.1 {port}"
    )
}

/// The shell test of an `http` check on a full URL.
pub fn http_shell(url: &str) -> String {
    format!("{WGET}{url}")
}

/// A healthcheck URL: a bare path is on the first container port (or 80).
pub fn http_url(url: &str, spec: &Service) -> String {
    if url.starts_with('/') {
        let port = spec.ports.first().map_or(80, |p| p.container);
        format!("http://127.0.0.1:{port}{url}")
    } else {
        url.to_owned()
    }
}

/// The path an `http` URL is on when it is `http_url`'s URL for that path on `port`: the
/// short form a file would write.
pub fn http_path(url: &str, port: u16) -> Option<String> {
    let rest = url.strip_prefix(&format!("http://127.0.0.1:{port}/"))?;
    Some(format!("/{rest}"))
}

/// Where a full `http` URL points: host, port (80 when it names none) and path (`/` when
/// it names none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpTarget {
    pub fn parse(url: &str) -> Self {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(url);
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().unwrap_or(80)),
            None => (authority, 80),
        };
        Self {
            host: host.to_owned(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_owned()
            },
        }
    }
}

/// The test with an `http` path made a URL on the service's first port.
pub fn resolve(test: &HealthTest, spec: &Service) -> HealthTest {
    match test {
        HealthTest::Http(url) => HealthTest::Http(http_url(url, spec)),
        t => t.clone(),
    }
}

/// The engine's test command: `CMD` and the argv, or `CMD-SHELL` and the shell line of a
/// `tcp` or `http` check (an `http` path on the service's first port).
pub fn command(test: &HealthTest, spec: &Service) -> Vec<String> {
    match test {
        HealthTest::Cmd(argv) => {
            let mut t = vec![CMD.to_owned()];
            t.extend(argv.iter().cloned());
            t
        }
        HealthTest::Tcp(port) => vec![CMD_SHELL.into(), tcp_shell(*port)],
        HealthTest::Http(url) => vec![CMD_SHELL.into(), http_shell(&http_url(url, spec))],
    }
}

/// What an engine's test command stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// `NONE`: the image's healthcheck is off.
    Disabled,
    /// `CMD` and an argv, or a `CMD-SHELL` line devbox writes for a `tcp` or `http`
    /// check (an `http` URL stays full: see [`http_path`]).
    Test(HealthTest),
    /// Any other `CMD-SHELL` line.
    Shell(String),
    /// No test, or one that starts with neither word: the image's own is used.
    Missing,
}

/// The reverse of [`command`].
pub fn parse(test: &[String]) -> Parsed {
    match test.split_first() {
        Some((first, _)) if first == NONE => Parsed::Disabled,
        Some((first, argv)) if first == CMD => Parsed::Test(HealthTest::Cmd(argv.to_vec())),
        Some((first, words)) if first == CMD_SHELL => {
            let s = words.join(" ");
            if let Some(port) = tcp_port(&s) {
                Parsed::Test(HealthTest::Tcp(port))
            } else if let Some(url) = s.strip_prefix(WGET).filter(|u| !u.contains(' ')) {
                Parsed::Test(HealthTest::Http(url.to_owned()))
            } else {
                Parsed::Shell(s)
            }
        }
        _ => Parsed::Missing,
    }
}

/// The port of a shell line that is exactly [`tcp_shell`]'s.
pub fn tcp_port(s: &str) -> Option<u16> {
    let port: u16 = s.rsplit_once("nc -z 127.0.0.1 ")?.1.trim().parse().ok()?;
    (tcp_shell(port) == s).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{Port, Protocol};

    fn service(first_port: Option<u16>) -> Service {
        let toml = "[project]\nname = \"t\"\n[services.web]\nimage = \"localhost/x:1\"\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sandbox.toml"), toml).unwrap();
        let loaded = crate::config::load(&crate::config::LoadOptions {
            file: Some(dir.path().join("sandbox.toml")),
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let mut s = loaded.config.services["web"].clone();
        s.ports = first_port
            .map(|c| Port {
                host_ip: "127.0.0.1".parse().unwrap(),
                host: 18080,
                container: c,
                protocol: Protocol::Tcp,
            })
            .into_iter()
            .collect();
        s
    }

    #[test]
    fn every_test_comes_back_from_its_command() {
        let s = service(Some(8080));
        for t in [
            HealthTest::Cmd(vec!["wget".into(), "-q".into(), "-O-".into(), "x".into()]),
            HealthTest::Cmd(vec!["/bin/sh".into(), "-c".into(), "pg_isready".into()]),
            HealthTest::Tcp(5432),
            HealthTest::Tcp(1),
            HealthTest::Tcp(65535),
            HealthTest::Http("http://127.0.0.1:9000/ready".into()),
            HealthTest::Http("http://db:5432/".into()),
        ] {
            assert_eq!(parse(&command(&t, &s)), Parsed::Test(t.clone()), "{t:?}");
        }
    }

    #[test]
    fn an_http_path_comes_back_as_the_url_on_the_first_port_and_shortens_to_the_path() {
        for (port, expect) in [(Some(8080), 8080), (None, 80)] {
            let s = service(port);
            let t = HealthTest::Http("/health?x=1".into());
            let url = format!("http://127.0.0.1:{expect}/health?x=1");
            assert_eq!(
                command(&t, &s),
                [
                    "CMD-SHELL".to_owned(),
                    format!("wget -q -O /dev/null {url}")
                ]
            );
            assert_eq!(
                parse(&command(&t, &s)),
                Parsed::Test(HealthTest::Http(url.clone()))
            );
            assert_eq!(resolve(&t, &s), HealthTest::Http(url.clone()));
            assert_eq!(http_path(&url, expect).as_deref(), Some("/health?x=1"));
            assert_eq!(http_path(&url, expect + 1), None);
        }
    }

    #[test]
    fn the_tcp_test_reads_the_socket_table_then_tries_nc() {
        assert_eq!(
            command(&HealthTest::Tcp(8080), &service(None)),
            [
                "CMD-SHELL",
                "grep -qE ':1F90 [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null || nc -z 127.0.0.1 8080"
            ]
        );
        assert_eq!(tcp_port(&tcp_shell(7777)), Some(7777));
        assert_eq!(tcp_port("nc -z 127.0.0.1 7777"), None);
    }

    #[test]
    fn other_commands_are_shell_lines_none_or_missing() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parse(&words(&["CMD-SHELL", "pg_isready", "-U", "app"])),
            Parsed::Shell("pg_isready -U app".into())
        );
        assert_eq!(
            parse(&words(&[
                "CMD-SHELL",
                "wget -q -O /dev/null http://x/ && true"
            ])),
            Parsed::Shell("wget -q -O /dev/null http://x/ && true".into())
        );
        assert_eq!(parse(&words(&["NONE"])), Parsed::Disabled);
        assert_eq!(parse(&words(&[])), Parsed::Missing);
        assert_eq!(parse(&words(&["curl", "x"])), Parsed::Missing);
    }

    #[test]
    fn an_http_target_is_host_port_and_path() {
        let t = |host: &str, port, path: &str| HttpTarget {
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(
            HttpTarget::parse("http://127.0.0.1:8080/health"),
            t("127.0.0.1", 8080, "/health")
        );
        assert_eq!(HttpTarget::parse("http://web"), t("web", 80, "/"));
        assert_eq!(HttpTarget::parse("http://web:81"), t("web", 81, "/"));
    }
}
