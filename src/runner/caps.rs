//! Giving up every capability before the worker runs its program: the ambient, bounding,
//! effective, permitted and inheritable sets, plus `no_new_privs` so that no later `execve`
//! (setuid, file capabilities, or root's own rules) can hand any back. It never grants or
//! keeps a capability, and never reads policy: the worker runs with none.
//!
//! It talks to the kernel with raw `prctl` and `capget`/`capset`: it runs between `fork`
//! and `execve` where nothing should allocate, it must work before `/proc` is mounted in
//! the new root, and it has to reach capabilities newer than any list compiled into a
//! crate (the `caps` crate allocates its sets and only knows the capabilities it names).

use std::io;

use nix::libc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("clearing the ambient capability set: {0}")]
    Ambient(#[source] io::Error),
    #[error("reading capability {cap} of the bounding set: {source}")]
    ReadBounding {
        cap: u32,
        #[source]
        source: io::Error,
    },
    #[error("dropping capability {cap} from the bounding set: {source}")]
    DropBounding {
        cap: u32,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot drop capability {cap} from the bounding set without CAP_SETPCAP while \
         the permitted set still holds {permitted:#x}"
    )]
    HalfPrivileged { cap: u32, permitted: u64 },
    #[error("making the permitted capabilities effective: {0}")]
    Raise(#[source] io::Error),
    #[error("clearing the effective, permitted and inheritable capability sets: {0}")]
    Clear(#[source] io::Error),
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(#[source] io::Error),
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set, so capabilities up to 63.
const VERSION_3: u32 = 0x2008_0522;

/// Capability numbers can't go past 63 with version 3; the kernel stops us sooner.
const MAX_CAP: u32 = 63;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`, one per 32 capabilities.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// `prctl(option, arg, 0, 0, 0)` with every argument a full `unsigned long`, as the kernel
/// reads them (a variadic `int` would leave the upper half undefined).
fn prctl(option: libc::c_int, arg: libc::c_ulong) -> libc::c_int {
    let zero: libc::c_ulong = 0;
    // SAFETY: integer arguments only.
    unsafe { libc::prctl(option, arg, zero, zero, zero) }
}

/// Makes every permitted capability effective and returns the permitted set, so that
/// `CAP_SETPCAP` counts whenever the thread may use it at all.
fn raise_permitted() -> io::Result<u64> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: version 3 makes the kernel read and write exactly two `Data`, which `data`
    // holds.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(last_error());
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(last_error());
    }
    Ok(u64::from(data[1].permitted) << 32 | u64::from(data[0].permitted))
}

/// Drops every capability of the calling thread and sets `no_new_privs`.
///
/// The bounding set can only shrink with `CAP_SETPCAP`. The worker, root in its own user
/// namespace, holds it there. An ordinary process doesn't, and doesn't need to: with an
/// empty permitted set and `no_new_privs`, `execve` can't add anything (the kernel
/// intersects what a program would gain with what the caller already had), so the bounding
/// set no longer matters. A process that holds some capabilities but not `CAP_SETPCAP` is
/// neither: something upstream went wrong, and it is refused rather than half-dropped.
pub fn drop_all() -> Result<(), Error> {
    if prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) != 0
    {
        let e = last_error();
        // EINVAL: a kernel before 4.3, which has no ambient set to clear.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(Error::Ambient(e));
        }
    }

    let held = raise_permitted().map_err(Error::Raise)?;
    // Ask the kernel rather than /proc/sys/kernel/cap_last_cap: /proc may not be mounted in
    // the new root yet, and PR_CAPBSET_READ answers EINVAL past the last capability.
    for cap in 0..=MAX_CAP {
        match prctl(libc::PR_CAPBSET_READ, cap.into()) {
            0 => continue,
            1 => {}
            _ => {
                let e = last_error();
                if e.raw_os_error() == Some(libc::EINVAL) {
                    break;
                }
                return Err(Error::ReadBounding { cap, source: e });
            }
        }
        if prctl(libc::PR_CAPBSET_DROP, cap.into()) != 0 {
            let e = last_error();
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(Error::DropBounding { cap, source: e });
            }
            if held != 0 {
                return Err(Error::HalfPrivileged {
                    cap,
                    permitted: held,
                });
            }
            break;
        }
    }

    // Clearing permitted clears effective and ambient with it; all three are zeroed anyway
    // so that the call means the same on every kernel.
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data::default(); 2];
    // SAFETY: version 3 makes the kernel read exactly two `Data`, which `data` holds.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(Error::Clear(last_error()));
    }

    if prctl(libc::PR_SET_NO_NEW_PRIVS, 1) != 0 {
        return Err(Error::NoNewPrivs(last_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, pipe, ForkResult};
    use std::io::Read;
    use std::os::fd::AsRawFd;

    /// What the child did before reading its own status.
    #[derive(Clone, Copy)]
    enum Setup {
        /// Root of a fresh user namespace: every capability, CAP_SETPCAP included.
        UserNamespace,
        /// A fresh user namespace, then CAP_SETPCAP given up from effective and permitted.
        WithoutSetpcap,
        /// A fresh user namespace, then an empty effective set: all still permitted.
        NothingEffective,
        /// An unprivileged uid (nobody when the tests run as root): no capabilities at all.
        Ordinary,
    }

    /// drop_all's result as an exit code the parent can read.
    const DROPPED: i32 = 0;
    const HALF_PRIVILEGED: i32 = 10;
    const OTHER_ERROR: i32 = 11;
    const SETUP_FAILED: i32 = 12;

    /// Runs `setup` and, if `then_drop`, `drop_all` in a forked child, then returns the child's
    /// exit code and its `/proc/self/status` as the child saw it. A fork, not a thread:
    /// unshare(CLONE_NEWUSER) needs a single-threaded process, and capabilities are
    /// per-thread anyway. The child only makes raw system calls.
    fn in_child(setup: Setup, then_drop: bool) -> (i32, String) {
        let (read, write) = pipe().expect("pipe");
        // SAFETY: the child doesn't allocate or take locks; it writes to the pipe and _exits.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => unsafe {
                let ok = match setup {
                    Setup::UserNamespace => libc::unshare(libc::CLONE_NEWUSER) == 0,
                    Setup::WithoutSetpcap => {
                        libc::unshare(libc::CLONE_NEWUSER) == 0
                            && edit_caps(|d| {
                                let bit = !(1u32 << CAP_SETPCAP);
                                d[0].effective &= bit;
                                d[0].permitted &= bit;
                            })
                    }
                    Setup::NothingEffective => {
                        libc::unshare(libc::CLONE_NEWUSER) == 0
                            && edit_caps(|d| d.iter_mut().for_each(|d| d.effective = 0))
                    }
                    Setup::Ordinary => {
                        libc::geteuid() != 0
                            || (libc::setgroups(0, std::ptr::null()) == 0
                                && libc::setresgid(65534, 65534, 65534) == 0
                                && libc::setresuid(65534, 65534, 65534) == 0)
                    }
                };
                let code = match (ok, then_drop) {
                    (false, _) => SETUP_FAILED,
                    (true, false) => DROPPED,
                    (true, true) => match drop_all() {
                        Ok(()) => DROPPED,
                        Err(Error::HalfPrivileged { .. }) => HALF_PRIVILEGED,
                        Err(_) => OTHER_ERROR,
                    },
                };
                let mut buf = [0u8; 8192];
                let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n > 0 {
                    libc::write(write.as_raw_fd(), buf.as_ptr().cast(), n as usize);
                }
                libc::_exit(code)
            },
            ForkResult::Parent { child } => {
                drop(write);
                let mut status = String::new();
                std::fs::File::from(read)
                    .read_to_string(&mut status)
                    .expect("reading the child's status");
                match waitpid(child, None).expect("waitpid") {
                    WaitStatus::Exited(_, code) => (code, status),
                    other => panic!("unexpected child status {other:?}"),
                }
            }
        }
    }

    /// Changes the calling thread's capability sets with raw capget/capset.
    fn edit_caps(change: impl Fn(&mut [Data; 2])) -> bool {
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        unsafe {
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0 && {
                change(&mut data);
                libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) == 0
            }
        }
    }

    /// A `Name:\tvalue` line of /proc/self/status.
    fn field<'a>(status: &'a str, name: &str) -> &'a str {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {name} in\n{status}"))
            .trim()
    }

    fn is_zero(hex: &str) -> bool {
        hex.bytes().all(|b| b == b'0')
    }

    /// capability(7) number of CAP_SETPCAP.
    const CAP_SETPCAP: u32 = 8;

    const SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

    #[test]
    fn root_in_a_user_namespace_ends_with_nothing() {
        let (code, before) = in_child(Setup::UserNamespace, false);
        assert_eq!(code, DROPPED, "unshare(CLONE_NEWUSER) failed");
        assert!(
            !is_zero(field(&before, "CapEff")),
            "nothing to drop:\n{before}"
        );
        assert!(
            !is_zero(field(&before, "CapBnd")),
            "nothing to drop:\n{before}"
        );

        let (code, after) = in_child(Setup::UserNamespace, true);
        assert_eq!(code, DROPPED, "drop_all failed");
        for set in SETS {
            assert!(is_zero(field(&after, set)), "{set} not empty:\n{after}");
        }
        assert_eq!(field(&after, "NoNewPrivs"), "1");
    }

    #[test]
    fn an_ordinary_process_keeps_a_bounding_set_it_cannot_use() {
        let (code, after) = in_child(Setup::Ordinary, true);
        assert_eq!(code, DROPPED, "drop_all failed for an ordinary process");
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert!(is_zero(field(&after, set)), "{set} not empty:\n{after}");
        }
        // Without CAP_SETPCAP the bounding set stays; no_new_privs makes it moot.
        assert!(!is_zero(field(&after, "CapBnd")), "{after}");
        assert_eq!(field(&after, "NoNewPrivs"), "1");
    }

    #[test]
    fn permitted_but_not_effective_capabilities_are_dropped_too() {
        let (code, after) = in_child(Setup::NothingEffective, true);
        assert_eq!(code, DROPPED, "drop_all failed");
        for set in SETS {
            assert!(is_zero(field(&after, set)), "{set} not empty:\n{after}");
        }
    }

    #[test]
    fn holding_capabilities_without_setpcap_is_refused() {
        let (code, _) = in_child(Setup::WithoutSetpcap, true);
        assert_eq!(code, HALF_PRIVILEGED);
    }

    #[test]
    fn the_refusal_names_the_capability_and_what_is_held() {
        let e = Error::HalfPrivileged {
            cap: 0,
            permitted: 0x1fffffffeff,
        };
        assert_eq!(
            e.to_string(),
            "cannot drop capability 0 from the bounding set without CAP_SETPCAP while the \
             permitted set still holds 0x1fffffffeff"
        );
    }
}
