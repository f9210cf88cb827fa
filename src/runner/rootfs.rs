//! The sandbox's file system, planned as a list of [`Op`]s: a private mount tree, a new
//! root on tmpfs holding only the policy's paths (each at the same place as on the host,
//! or another host path at its target, read-only unless writable, denied ones covered),
//! the spec's size-capped tmpfs mounts, a fresh `/proc`, a minimal `/dev`, a private
//! `/tmp`, generated /etc files, and `pivot_root` with the old root detached.
//!
//! It never touches the machine: the host is asked questions through [`HostFs`], and the
//! ops are executed later, inside the sandbox, by a `Sys`.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use super::spec::{Mount, MountKind, RunSpec, TMPFS_SIZE};
use super::sys::{Attrs, Op};

/// Where the staging tmpfs is mounted before the first pivot; it never shows on the host
/// (the mount namespace is private by then).
const STAGE: &str = "/tmp";
/// The new root and the host's root, inside the staging tmpfs.
const NEW: &str = "/newroot";
const OLD: &str = "/oldroot";
/// An empty, unreadable file bound over denied files.
const EMPTY: &str = "/empty";
/// The generated /etc/hosts bound over the host's when `RunSpec::hosts` adds names to it.
const HOSTS: &str = "/hosts";

/// The devices a sandbox gets.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// What kind of thing a host path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink(PathBuf),
}

/// Questions about the host's file system.
pub trait HostFs {
    /// `lstat`: `None` when the path does not exist.
    fn kind(&self, path: &Path) -> Option<Kind>;
}

/// The real file system.
pub struct RealFs;

impl HostFs for RealFs {
    fn kind(&self, path: &Path) -> Option<Kind> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(if m.file_type().is_symlink() {
            Kind::Symlink(std::fs::read_link(path).ok()?)
        } else if m.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        })
    }
}

/// The two halves of the plan: `prepare` builds the new root (the control socket is bound
/// into it after), `enter` makes it read-only and pivots into it.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub prepare: Vec<Op>,
    pub enter: Vec<Op>,
    /// What the policy shows, once each at its real path (a path inside another shown the
    /// same way is left out), and whether it is writable; with the generated /etc files.
    pub shown: Vec<(PathBuf, bool)>,
    /// Things skipped, for the supervisor to print (missing read paths).
    pub notes: Vec<String>,
    /// The host paths shown through idmapped mounts, in the order of their
    /// `Op::MoveIdmapped`: the supervisor makes one detached tree for each.
    pub idmapped: Vec<PathBuf>,
}

/// Options the spec alone does not decide.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The worker's uid and gid inside, for the generated `/etc/passwd`.
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// Make `/run/devbox` for the control socket.
    pub control_dir: bool,
    /// Enforce `exec.allow` with mounts (when Landlock is unavailable): every bind is
    /// `noexec` but library directories and the allowed binaries themselves.
    pub exec_by_mounts: bool,
    /// Show writable paths through idmapped mounts (a worker started by root runs as
    /// another host uid; see `idmap`).
    pub idmap_writable: bool,
}

/// Where the control socket is, inside the sandbox.
pub const CONTROL_SOCKET: &str = "/run/devbox/control.sock";

/// The control socket's path while the new root is being built.
pub fn control_socket_staged() -> PathBuf {
    under(NEW, Path::new(CONTROL_SOCKET))
}

fn under(root: &str, p: &Path) -> PathBuf {
    let mut out = PathBuf::from(root);
    for c in p.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

fn nosuid_nodev() -> Attrs {
    Attrs {
        nosuid: true,
        nodev: true,
        ..Attrs::default()
    }
}

/// Resolves `path` on the host as the kernel would, with every symbolic link met on the way
/// as `(link, target)`; `None` when something on the way is missing or the links loop.
/// A relative link's target continues from the link's directory.
pub fn resolve(host: &dyn HostFs, path: &Path) -> Option<Resolved> {
    let mut links = Vec::new();
    let mut pending: Vec<PathBuf> = crate::config::absolute(path, Path::new("/"))
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::from("/");
    let mut dir = true;
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == Path::new("..") {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        match host.kind(&next)? {
            Kind::Symlink(to) => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                links.push((next, to.clone()));
                if to.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for c in to.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(PathBuf::from(n)),
                        Component::ParentDir => pending.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            kind => {
                dir = kind == Kind::Dir;
                cur = next;
            }
        }
    }
    Some(Resolved {
        real: cur,
        dir,
        links,
    })
}

/// Where a path really is on the host, what it is there, and the links on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub real: PathBuf,
    /// A directory (else a file, device or socket).
    pub dir: bool,
    /// Each symbolic link met, as `(link, target)`.
    pub links: Vec<(PathBuf, PathBuf)>,
}

/// `lib`, `lib64`, … but not `libexec`: where the dynamic loader maps code from.
pub fn is_library_dir(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("lib") && !n.starts_with("libexec"))
}

/// Plans the sandbox's root for `spec`.
pub fn plan(spec: &RunSpec, host: &dyn HostFs, opts: &Options) -> Plan {
    let mut p = Plan::default();
    let ops = &mut p.prepare;
    ops.push(Op::MakePrivate);
    ops.push(Op::Tmpfs {
        path: STAGE.into(),
        mode: 0o755,
        size: None,
        attrs: nosuid_nodev(),
    });
    ops.push(Op::Mkdir(under(STAGE, Path::new(NEW))));
    ops.push(Op::Mkdir(under(STAGE, Path::new(OLD))));
    ops.push(Op::PivotRoot {
        new_root: STAGE.into(),
        put_old: under(STAGE, Path::new(OLD)),
    });
    ops.push(Op::Chdir("/".into()));
    ops.push(Op::WriteFile {
        path: EMPTY.into(),
        contents: Vec::new(),
        mode: 0,
    });
    ops.push(Op::Tmpfs {
        path: NEW.into(),
        mode: 0o755,
        size: None,
        attrs: nosuid_nodev(),
    });

    let covered = |path: &Path| {
        spec.mounts
            .iter()
            .any(|m| m.kind != MountKind::Deny && path.starts_with(&m.path))
    };
    let own_tmp = !spec.mounts.iter().any(|m| m.path == Path::new("/tmp"))
        && !spec.tmpfs.iter().any(|t| t == Path::new("/tmp"));
    if own_tmp {
        ops.push(Op::Mkdir(under(NEW, Path::new("/tmp"))));
        ops.push(Op::Tmpfs {
            path: under(NEW, Path::new("/tmp")),
            mode: 0o1777,
            size: None,
            // Without Landlock, a binary copied to /tmp must not run either.
            attrs: Attrs {
                noexec: opts.exec_by_mounts,
                ..nosuid_nodev()
            },
        });
    }

    // Shown paths, then (without Landlock) the executable re-binds, then the denied
    // paths over all of them: deny wins.
    let mut linked: BTreeSet<PathBuf> = BTreeSet::new();
    let mut bound: Vec<(PathBuf, Attrs)> = Vec::new();
    let (deny, show): (Vec<&Mount>, Vec<&Mount>) =
        spec.mounts.iter().partition(|m| m.kind == MountKind::Deny);
    for m in show {
        bind_one(m, host, opts, &mut linked, &mut bound, ops, &mut p.notes);
    }
    if opts.exec_by_mounts {
        exec_mounts(spec, host, &mut linked, ops);
    }
    let size = spec.limits.memory.unwrap_or(TMPFS_SIZE);
    for t in &spec.tmpfs {
        let path = under(NEW, t);
        ops.push(Op::Mkdir(path.clone()));
        ops.push(Op::Tmpfs {
            path,
            mode: 0o1777,
            size: Some(size),
            attrs: Attrs {
                noexec: opts.exec_by_mounts,
                ..nosuid_nodev()
            },
        });
    }
    for m in deny {
        bind_one(m, host, opts, &mut linked, &mut bound, ops, &mut p.notes);
    }

    p.idmapped = ops
        .iter()
        .filter_map(|o| match o {
            Op::MoveIdmapped { src, .. } => Some(src.clone()),
            _ => None,
        })
        .collect();
    p.shown = bound
        .iter()
        .map(|(b, a)| (b.clone(), !a.readonly))
        .chain(spec.tmpfs.iter().map(|t| (t.clone(), true)))
        .collect();

    // /proc, with the kernel knobs read-only.
    let proc_ = under(NEW, Path::new("/proc"));
    ops.push(Op::Mkdir(proc_.clone()));
    ops.push(Op::Proc(proc_.clone()));
    for knob in ["sys", "sysrq-trigger"] {
        // Same kernel inside and out: what the host's /proc lacks, the sandbox's lacks too.
        if host.kind(&Path::new("/proc").join(knob)).is_none() {
            continue;
        }
        let k = proc_.join(knob);
        let attrs = Attrs {
            readonly: true,
            ..nosuid_nodev()
        };
        bind_to(ops, k.clone(), k, attrs, true);
    }

    // A minimal /dev.
    let dev = under(NEW, Path::new("/dev"));
    ops.push(Op::Mkdir(dev.clone()));
    ops.push(Op::Tmpfs {
        path: dev.clone(),
        mode: 0o755,
        size: None,
        attrs: Attrs {
            nosuid: true,
            noexec: true,
            ..Attrs::default()
        },
    });
    for d in DEVICES {
        let dst = dev.join(d);
        ops.push(Op::Touch(dst.clone()));
        ops.push(Op::Bind {
            src: under(OLD, &Path::new("/dev").join(d)),
            dst,
        });
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink {
            to: to.into(),
            path: dev.join(name),
        });
    }
    ops.push(Op::Mkdir(dev.join("shm")));
    ops.push(Op::Tmpfs {
        path: dev.join("shm"),
        mode: 0o1777,
        size: None,
        attrs: Attrs {
            noexec: true,
            ..nosuid_nodev()
        },
    });

    // Who is who, when the policy does not show the host's files.
    for (name, mut text) in etc_files(opts.uid, opts.gid, &opts.hostname) {
        let path = Path::new("/etc").join(name);
        if name == "hosts" {
            for (host_name, ip) in &spec.hosts {
                text.push_str(&format!("{ip} {host_name}\n"));
            }
        }
        if covered(&path) {
            // The host's /etc/hosts is shown: the extra names go over it in a file of
            // their own.
            if name == "hosts" && !spec.hosts.is_empty() {
                let real = resolve(host, &path)
                    .filter(|r| !r.dir && bound.iter().any(|(b, _)| r.real.starts_with(b)));
                if let Some(Resolved { real, .. }) = real {
                    ops.push(Op::WriteFile {
                        path: HOSTS.into(),
                        contents: text.into_bytes(),
                        mode: 0o644,
                    });
                    let attrs = Attrs {
                        readonly: true,
                        noexec: true,
                        ..nosuid_nodev()
                    };
                    bind_to(ops, HOSTS.into(), under(NEW, &real), attrs, false);
                }
            }
            continue;
        }
        p.shown.push((path.clone(), false));
        ops.push(Op::WriteFile {
            path: under(NEW, &path),
            contents: text.into_bytes(),
            mode: 0o644,
        });
    }
    if !covered(&spec.workdir) {
        ops.push(Op::Mkdir(under(NEW, &spec.workdir)));
    }
    if opts.control_dir {
        ops.push(Op::Mkdir(under(NEW, Path::new("/run/devbox"))));
    }

    // Enter: the root itself read-only, pivot onto it, drop the staging tree and the host.
    p.enter = vec![
        Op::SetAttrs {
            path: NEW.into(),
            attrs: Attrs {
                readonly: true,
                ..nosuid_nodev()
            },
            recursive: false,
        },
        Op::Chdir(NEW.into()),
        Op::PivotRoot {
            new_root: ".".into(),
            put_old: ".".into(),
        },
        Op::Detach(".".into()),
        Op::Chdir("/".into()),
    ];
    p
}

/// The `/etc/passwd`, `/etc/group` and `/etc/hosts` a sandbox gets when its policy does
/// not show the host's: root, the worker's own ids when they are not root's, and nobody.
pub fn etc_files(uid: u32, gid: u32, hostname: &str) -> [(&'static str, String); 3] {
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    if uid != 0 {
        passwd.push_str(&format!("user:x:{uid}:{gid}:sandbox:/tmp:/bin/sh\n"));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    let mut group = String::from("root:x:0:\n");
    if gid != 0 {
        group.push_str(&format!("user:x:{gid}:\n"));
    }
    group.push_str("nogroup:x:65534:\n");
    [
        ("passwd", passwd),
        ("group", group),
        (
            "hosts",
            format!("127.0.0.1 localhost {hostname}\n::1 localhost\n"),
        ),
    ]
}

/// Mirrors the symbolic links on the way to a path into the new root, once each.
fn mirror_links(links: &[(PathBuf, PathBuf)], linked: &mut BTreeSet<PathBuf>, ops: &mut Vec<Op>) {
    for (link, to) in links {
        if linked.insert(link.clone()) {
            ops.push(Op::Symlink {
                to: to.clone(),
                path: under(NEW, link),
            });
        }
    }
}

fn bind_one(
    m: &Mount,
    host: &dyn HostFs,
    opts: &Options,
    linked: &mut BTreeSet<PathBuf>,
    bound: &mut Vec<(PathBuf, Attrs)>,
    ops: &mut Vec<Op>,
    notes: &mut Vec<String>,
) {
    if let (Some(source), MountKind::ReadOnly | MountKind::ReadWrite) = (&m.source, m.kind) {
        bind_source(m, source, host, opts, bound, ops, notes);
        return;
    }
    let Some(Resolved { real, dir, links }) = resolve(host, &m.path) else {
        if m.kind != MountKind::Deny {
            notes.push(format!(
                "{} does not exist on this machine; not shown in the sandbox",
                m.path.display()
            ));
        }
        return;
    };
    let visible = bound.iter().any(|(b, _)| real.starts_with(b));
    match m.kind {
        MountKind::Deny => {
            // Only what is shown needs covering; a link is covered at its target.
            if !visible {
                return;
            }
            mirror_links(&links, linked, ops);
            let dst = under(NEW, &real);
            if dir {
                ops.push(Op::Tmpfs {
                    path: dst,
                    mode: 0,
                    size: Some(4096),
                    attrs: Attrs {
                        readonly: true,
                        noexec: true,
                        ..nosuid_nodev()
                    },
                });
            } else {
                let attrs = Attrs {
                    readonly: true,
                    noexec: true,
                    ..nosuid_nodev()
                };
                bind_to(ops, EMPTY.into(), dst, attrs, false);
            }
        }
        MountKind::ReadOnly | MountKind::ReadWrite => {
            mirror_links(&links, linked, ops);
            let attrs = Attrs {
                readonly: m.kind == MountKind::ReadOnly,
                // Without Landlock: no code from anything writable, nor from what is not
                // a library directory (the allowed binaries come back below).
                noexec: opts.exec_by_mounts
                    && (m.kind == MountKind::ReadWrite || !is_library_dir(&real)),
                ..nosuid_nodev()
            };
            // Already shown, the same way, by the nearest bound parent (Debian's /bin
            // inside /usr): binding it again would only lengthen the mount table.
            let parent = bound
                .iter()
                .filter(|(b, _)| real.starts_with(b))
                .max_by_key(|(b, _)| b.components().count());
            if parent.is_some_and(|(_, a)| *a == attrs) {
                return;
            }
            if m.kind == MountKind::ReadWrite && opts.idmap_writable {
                let dst = under(NEW, &real);
                ops.push(if dir {
                    Op::Mkdir(dst.clone())
                } else {
                    Op::Touch(dst.clone())
                });
                ops.push(Op::MoveIdmapped {
                    src: real.clone(),
                    dst: dst.clone(),
                    fd: -1,
                });
                ops.push(Op::SetAttrs {
                    path: dst,
                    attrs,
                    recursive: true,
                });
            } else {
                bind(ops, &real, dir, attrs, true);
            }
            bound.push((real, attrs));
        }
    }
}

/// Shows the host's `source` at `m.path`, a mount point made for it in the new root. The
/// supervisor has checked that `source` exists; should it be gone by now, the note says so.
fn bind_source(
    m: &Mount,
    source: &Path,
    host: &dyn HostFs,
    opts: &Options,
    bound: &mut Vec<(PathBuf, Attrs)>,
    ops: &mut Vec<Op>,
    notes: &mut Vec<String>,
) {
    let Some(Resolved { real, dir, .. }) = resolve(host, source) else {
        notes.push(format!(
            "{} does not exist on this machine; not shown at {} in the sandbox",
            source.display(),
            m.path.display()
        ));
        return;
    };
    let writable = m.kind == MountKind::ReadWrite;
    let attrs = Attrs {
        readonly: !writable,
        noexec: opts.exec_by_mounts && (writable || !is_library_dir(&real)),
        ..nosuid_nodev()
    };
    let dst = under(NEW, &m.path);
    ops.push(if dir {
        Op::Mkdir(dst.clone())
    } else {
        Op::Touch(dst.clone())
    });
    if writable && opts.idmap_writable {
        ops.push(Op::MoveIdmapped {
            src: real,
            dst: dst.clone(),
            fd: -1,
        });
        ops.push(Op::SetAttrs {
            path: dst,
            attrs,
            recursive: true,
        });
    } else {
        bind_to(ops, under(OLD, &real), dst, attrs, true);
    }
    bound.push((m.path.clone(), attrs));
}

/// Without Landlock, `exec.allow` is kept by mounts: everything was bound `noexec`, so
/// bind the library directories (the loader maps code from them) and each allowed binary
/// (and its interpreter) again, executable.
fn exec_mounts(
    spec: &RunSpec,
    host: &dyn HostFs,
    linked: &mut BTreeSet<PathBuf>,
    ops: &mut Vec<Op>,
) {
    // Each real path once, with whether it is a directory.
    let mut again: Vec<(PathBuf, bool)> = Vec::new();
    for m in &spec.mounts {
        if m.kind != MountKind::ReadOnly {
            continue;
        }
        for lib in ["lib", "lib32", "lib64", "libx32"] {
            if let Some(r) = resolve(host, &m.path.join(lib)) {
                if r.dir && !again.iter().any(|(p, _)| *p == r.real) {
                    again.push((r.real, true));
                }
            }
        }
    }
    for b in &spec.exec_allow {
        if let Some(r) = resolve(host, b) {
            mirror_links(&r.links, linked, ops);
            if !again.iter().any(|(p, _)| *p == r.real) {
                again.push((r.real, r.dir));
            }
        }
    }
    let exec = Attrs {
        readonly: true,
        ..nosuid_nodev()
    };
    for (real, dir) in again {
        bind(ops, &real, dir, exec, dir);
    }
}

/// Shows the host's `real` at the same place in the new root: a mount point, the bind,
/// then its attributes.
fn bind(ops: &mut Vec<Op>, real: &Path, dir: bool, attrs: Attrs, recursive: bool) {
    let dst = under(NEW, real);
    ops.push(if dir {
        Op::Mkdir(dst.clone())
    } else {
        Op::Touch(dst.clone())
    });
    bind_to(ops, under(OLD, real), dst, attrs, recursive);
}

/// Binds `src` onto the existing `dst`, then sets its attributes.
fn bind_to(ops: &mut Vec<Op>, src: PathBuf, dst: PathBuf, attrs: Attrs, recursive: bool) {
    ops.push(Op::Bind {
        src,
        dst: dst.clone(),
    });
    ops.push(Op::SetAttrs {
        path: dst,
        attrs,
        recursive,
    });
}

/// A Debian-like host for tests of what is planned from it.
#[cfg(test)]
pub(crate) mod fake {
    use super::{HostFs, Kind};
    use crate::config::model::Limits;
    use crate::runner::spec::{Mount, MountKind, Net, RunSpec};
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// Merged /usr: /bin, /lib and /lib64 are links into it; sh is dash; python3 a link
    /// beside its target; a project at /p.
    pub(crate) struct Fake(pub BTreeMap<PathBuf, Kind>);

    impl Fake {
        pub(crate) fn debian() -> Self {
            let mut m = BTreeMap::new();
            for d in [
                "/usr",
                "/usr/bin",
                "/usr/lib",
                "/usr/lib64",
                "/etc",
                "/etc/ssl",
                "/home",
                "/home/u",
                "/home/u/.ssh",
                "/p",
                "/p/.data",
                "/p/.data/out",
                "/p/.data/out/lib",
            ] {
                m.insert(PathBuf::from(d), Kind::Dir);
            }
            for f in [
                "/usr/bin/dash",
                "/usr/bin/tr",
                "/usr/bin/python3.11",
                "/etc/shadow",
                "/etc/hostname",
            ] {
                m.insert(PathBuf::from(f), Kind::File);
            }
            m.insert("/bin".into(), Kind::Symlink("usr/bin".into()));
            m.insert("/lib".into(), Kind::Symlink("usr/lib".into()));
            // One absolute link, for the other way of writing a target.
            m.insert("/lib64".into(), Kind::Symlink("/usr/lib64".into()));
            m.insert("/usr/bin/sh".into(), Kind::Symlink("dash".into()));
            m.insert(
                "/usr/bin/python3".into(),
                Kind::Symlink("python3.11".into()),
            );
            Self(m)
        }
    }

    impl HostFs for Fake {
        fn kind(&self, path: &Path) -> Option<Kind> {
            self.0.get(path).cloned()
        }
    }

    /// The `transform` worker of examples/supervisor-worker, showing `mounts`.
    pub(crate) fn spec(mounts: &[(&str, MountKind)]) -> RunSpec {
        RunSpec {
            name: "transform".into(),
            argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            workdir: "/tmp".into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            mounts: mounts
                .iter()
                .map(|(p, k)| Mount {
                    path: p.into(),
                    kind: *k,
                    source: None,
                })
                .collect(),
            tmpfs: vec![],
            hosts: vec![],
            user: None,
            net: Net::None,
            exec_allow: vec![],
            limits: Limits::default(),
            decisions: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::fake::{spec, Fake};

    #[test]
    fn links_are_resolved_and_remembered() {
        // A relative link below the root resolves from its own directory: /bin/sh once
        // resolved to /usr/bin/usr/bin/dash, so an allowed /bin/sh lost its executable bind.
        let h = Fake::debian();
        let Resolved { real, dir, links } = resolve(&h, Path::new("/bin/sh")).unwrap();
        assert!(!dir);
        assert_eq!(real, Path::new("/usr/bin/dash"));
        assert_eq!(
            links,
            [
                (PathBuf::from("/bin"), PathBuf::from("usr/bin")),
                (PathBuf::from("/usr/bin/sh"), PathBuf::from("dash"))
            ]
        );
        // A relative link below the top, met after another link.
        let Resolved { real, links, .. } = resolve(&h, Path::new("/bin/python3")).unwrap();
        assert_eq!(real, Path::new("/usr/bin/python3.11"));
        assert_eq!(links.len(), 2);
        let etc = resolve(&h, Path::new("/lib/../etc")).unwrap();
        assert_eq!((etc.real.as_path(), etc.dir), (Path::new("/etc"), true));
        assert!(resolve(&h, Path::new("/nope/x")).is_none());
    }

    #[test]
    fn the_root_is_built_privately_then_entered_and_the_host_detached() {
        let h = Fake::debian();
        let p = plan(
            &spec(&[("/usr", MountKind::ReadOnly), ("/bin", MountKind::ReadOnly)]),
            &h,
            &Options::default(),
        );
        assert_eq!(p.prepare[0], Op::MakePrivate);
        assert!(
            matches!(&p.prepare[4], Op::PivotRoot { new_root, .. } if new_root == Path::new("/tmp"))
        );
        // /bin shows as the same link, and its target is bound once, read-only.
        assert!(p.prepare.contains(&Op::Symlink {
            to: "usr/bin".into(),
            path: "/newroot/bin".into()
        }));
        let binds: Vec<_> = p
            .prepare
            .iter()
            .filter_map(|o| match o {
                Op::Bind { src, dst } if src.starts_with("/oldroot/usr") => Some(dst.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            // /bin's target lies in /usr, shown the same way: no second mount.
            [PathBuf::from("/newroot/usr")]
        );
        assert_eq!(
            p.enter,
            [
                Op::SetAttrs {
                    path: "/newroot".into(),
                    attrs: Attrs {
                        readonly: true,
                        nosuid: true,
                        nodev: true,
                        noexec: false
                    },
                    recursive: false
                },
                Op::Chdir("/newroot".into()),
                Op::PivotRoot {
                    new_root: ".".into(),
                    put_old: ".".into()
                },
                Op::Detach(".".into()),
                Op::Chdir("/".into()),
            ]
        );
    }

    #[test]
    fn denied_paths_are_covered_only_where_visible() {
        let h = Fake::debian();
        let p = plan(
            &spec(&[
                ("/etc", MountKind::ReadOnly),
                ("/etc/shadow", MountKind::Deny),
                ("/home/u/.ssh", MountKind::Deny),
            ]),
            &h,
            &Options::default(),
        );
        assert!(p.prepare.contains(&Op::Bind {
            src: "/empty".into(),
            dst: "/newroot/etc/shadow".into()
        }));
        // ~/.ssh is not shown at all, so nothing is mounted for it.
        assert!(!p.prepare.iter().any(|o| format!("{o:?}").contains(".ssh")));
        // The host's /etc is shown, so no passwd is generated over it.
        assert!(!p
            .prepare
            .iter()
            .any(|o| matches!(o, Op::WriteFile { path, .. } if path.ends_with("passwd"))));
    }

    #[test]
    fn a_source_is_bound_at_its_target_and_writable_ones_idmapped_under_root() {
        let h = Fake::debian();
        let mut s = spec(&[("/usr", MountKind::ReadOnly)]);
        for (path, source, kind) in [
            ("/srv", "/p/.data/out", MountKind::ReadOnly),
            ("/var/out", "/p/.data/out", MountKind::ReadWrite),
        ] {
            s.mounts.push(Mount {
                path: path.into(),
                kind,
                source: Some(source.into()),
            });
        }
        s.tmpfs = vec!["/scratch".into()];
        let p = plan(
            &s,
            &h,
            &Options {
                idmap_writable: true,
                ..Options::default()
            },
        );
        let at = |op: &Op| p.prepare.iter().position(|o| o == op).unwrap();
        assert!(
            at(&Op::Mkdir("/newroot/srv".into()))
                < at(&Op::Bind {
                    src: "/oldroot/p/.data/out".into(),
                    dst: "/newroot/srv".into()
                })
        );
        assert!(p.prepare.contains(&Op::MoveIdmapped {
            src: "/p/.data/out".into(),
            dst: "/newroot/var/out".into(),
            fd: -1
        }));
        assert_eq!(p.idmapped, [PathBuf::from("/p/.data/out")]);
        assert!(p.prepare.contains(&Op::Tmpfs {
            path: "/newroot/scratch".into(),
            mode: 0o1777,
            size: Some(TMPFS_SIZE),
            attrs: nosuid_nodev(),
        }));
        // Landlock's view: the targets, not the sources.
        for shown in [("/srv", false), ("/var/out", true), ("/scratch", true)] {
            assert!(p.shown.contains(&(shown.0.into(), shown.1)), "{shown:?}");
        }
    }

    #[test]
    fn missing_read_paths_are_noted_not_fatal() {
        let h = Fake::debian();
        let p = plan(
            &spec(&[("/lib32", MountKind::ReadOnly)]),
            &h,
            &Options::default(),
        );
        assert_eq!(
            p.notes,
            ["/lib32 does not exist on this machine; not shown in the sandbox"]
        );
    }

    #[test]
    fn exec_by_mounts_binds_everything_noexec_but_libraries_and_allowed_binaries() {
        let h = Fake::debian();
        let mut s = spec(&[("/usr", MountKind::ReadOnly)]);
        s.exec_allow = vec!["/bin/sh".into()];
        let p = plan(
            &s,
            &h,
            &Options {
                exec_by_mounts: true,
                ..Options::default()
            },
        );
        let attrs_of = |dst: &str| {
            p.prepare
                .iter()
                .rev()
                .find_map(|o| match o {
                    Op::SetAttrs { path, attrs, .. } if path == Path::new(dst) => Some(*attrs),
                    _ => None,
                })
                .unwrap()
        };
        assert!(attrs_of("/newroot/usr").noexec);
        assert!(!attrs_of("/newroot/usr/lib").noexec);
        // sh is a link to dash: the binary itself is bound executable.
        assert!(!attrs_of("/newroot/usr/bin/dash").noexec);
    }
}
