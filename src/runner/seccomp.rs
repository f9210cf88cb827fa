//! The worker's seccomp filter: a deny-list over an allow-by-default policy. It owns which
//! system calls fail (and with which errno), and the BPF program that says so; it never
//! decides anything the kernel's own permission checks already decide better (capabilities,
//! Landlock, namespaces) except where those checks have had holes or reach host-global state.
//!
//! The program is built in the parent with [`program`] and installed in the forked worker
//! with [`apply`], last of the lock-down steps, right before `execve`: the filter forbids
//! calls (`unshare`, `mount`, ...) that the earlier steps still need.
//!
//! Layout of the program: a short hand-written prologue, then seccompiler's compiled
//! deny-list. The prologue holds what seccompiler can't express in a filter whose rules all
//! share one action: the architecture check that also rejects x32 system calls, and
//! `clone3` failing with `ENOSYS` instead of `EPERM`. Classic BPF has only forward,
//! relative jumps and seccompiler's program starts by loading what it needs, so prepending
//! instructions can't change what its own instructions do.

use std::collections::BTreeMap;

use nix::libc;
use seccompiler::{
    sock_filter, BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
    SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// System calls that fail with `EPERM` whatever their arguments. The OCI renderer puts the
/// same names in the engines' seccomp profiles; a name the architecture doesn't have
/// (`iopl` on aarch64) is skipped by the engines, as by [`program`]. The argument rules
/// are public below for the same reason: [`CLONE_NAMESPACE_FLAGS`],
/// [`TERMINAL_INJECTION`], [`SOCKET_FAMILIES`] and [`PERSONALITIES`], all compared on the
/// low 32 bits, and `clone3`, which fails with `ENOSYS`.
///
/// Borderline choices:
/// - `chroot` is *not* here: it needs `CAP_SYS_CHROOT`, which the worker never holds, and it
///   only changes the caller's own view inside a root that `pivot_root` already sealed.
///   A user who adds the capability to an engine container asked for it.
/// - `settimeofday` and `clock_settime` are here: the clock isn't namespaced, so setting it
///   changes the host. `adjtimex` and `clock_adjtime` are not: with `modes == 0` they only
///   read the clock's discipline (NTP status tools do this), and any change still needs
///   `CAP_SYS_TIME` in the initial user namespace, which no sandboxed process has. Docker's
///   default profile draws the same line.
/// - `ptrace`, `process_vm_readv`/`writev` and `pidfd_getfd` (which copies a file
///   descriptor out of another process, ptrace's cousin) are here although the pid
///   namespace already hides host processes: a worker has no business reading another
///   worker's memory, at the price of debuggers and `strace` not working inside.
/// - `name_to_handle_at` goes with `open_by_handle_at`: a file handle is only useful to the
///   latter, whose `CAP_DAC_READ_SEARCH` check was the "shocker" container escape.
/// - `lookup_dcookie` and `uselib` are obsolete (the first is gone since Linux 6.8); denying
///   them costs nothing and Docker does too.
/// - `personality` is filtered by argument rather than denied: glibc and `setarch` use it,
///   and only a few values are harmless (see [`PERSONALITIES`]).
pub const DENIED: &[&str] = &[
    // Mounts, namespaces and the new mount API: the worker's view of the system is fixed
    // before the filter goes on, and these are how one would undo it.
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    // Kernel keyrings aren't namespaced: keys would be shared with the host user.
    "keyctl",
    "add_key",
    "request_key",
    // Large kernel attack surfaces behind common exploit chains.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // Other processes' memory and descriptors.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    // The machine itself: kernels, modules, swap, power, accounting, quotas, ports, logs,
    // terminals and the clock.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "iopl",
    "ioperm",
    "syslog",
    "vhangup",
    "settimeofday",
    "clock_settime",
    // Obsolete.
    "lookup_dcookie",
    "uselib",
];

/// `clone` flags that create namespaces. `CLONE_NEWTIME` isn't among them: its bit is part
/// of `clone`'s exit-signal byte, so only `unshare` and `clone3` can ask for a time
/// namespace, and both are stopped whole.
pub const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// `ioctl` requests that push input into a terminal (`TIOCSTI`) or drive the virtual console
/// (`TIOCLINUX`, whose selection paste does the same): both let a sandboxed process type
/// commands into the shell that started it.
pub const TERMINAL_INJECTION: &[u64] = &[TIOCSTI, TIOCLINUX];

// The generic ioctl numbers, shared by every architecture `native` accepts. Our own
// constants because libc's type for them differs between glibc and musl.
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541c;

/// Socket families that reach past the network namespace or below it. `AF_PACKET` needs
/// `CAP_NET_RAW` (dropped) and has had a run of privilege-escalation bugs; `AF_VSOCK` isn't
/// namespaced at all and talks straight to the hypervisor or host. `NETLINK_AUDIT` stays
/// open: the kernel already refuses audit messages from any user namespace but the initial
/// one, while refusing the socket itself makes tools such as sudo fail (they expect only
/// "not supported" errors from a kernel without audit).
pub const SOCKET_FAMILIES: &[u64] = &[libc::AF_PACKET as u64, libc::AF_VSOCK as u64];

/// The only `personality` arguments allowed, as in Docker's profile: query (`0xffffffff`),
/// `PER_LINUX`, `PER_LINUX32`, and `UNAME26` with either. Everything else is refused, above
/// all `ADDR_NO_RANDOMIZE` (no ASLR for the next program) and `READ_IMPLIES_EXEC`.
pub const PERSONALITIES: &[u64] = &[
    0x0000_0000,
    0x0000_0008,
    0x0002_0000,
    0x0002_0008,
    0xffff_ffff,
];

/// The x32 ABI's marker bit in x86_64 system call numbers. x32 calls have numbers of their
/// own, so a deny-list written for the 64-bit numbers would miss them.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `open_tree_attr` (Linux 6.15) has the same number on every architecture with the unified
/// table, and the libc crate doesn't know it yet.
const SYS_OPEN_TREE_ATTR: i64 = 467;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no seccomp filter is built for the {0} architecture")]
    UnsupportedArch(&'static str),
    #[error("compiling the seccomp filter: {0}")]
    Compile(#[source] BackendError),
    #[error("installing the seccomp filter: {0}")]
    Install(#[source] seccompiler::Error),
}

/// The native architecture as seccompiler and the kernel's `seccomp_data.arch` name it.
fn native() -> Result<(TargetArch, u32), Error> {
    // AUDIT_ARCH_* from <linux/audit.h>: the ELF machine with the 64-bit and LE bits.
    match std::env::consts::ARCH {
        "x86_64" => Ok((TargetArch::x86_64, 0xc000_003e)),
        "aarch64" => Ok((TargetArch::aarch64, 0xc000_00b7)),
        "riscv64" => Ok((TargetArch::riscv64, 0xc000_00f3)),
        other => Err(Error::UnsupportedArch(other)),
    }
}

/// The number of a [`DENIED`] name on this architecture.
fn number(name: &str) -> Option<i64> {
    Some(match name {
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "pivot_root" => libc::SYS_pivot_root,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "fsopen" => libc::SYS_fsopen,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "move_mount" => libc::SYS_move_mount,
        "open_tree" => libc::SYS_open_tree,
        "open_tree_attr" => SYS_OPEN_TREE_ATTR,
        "mount_setattr" => libc::SYS_mount_setattr,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "bpf" => libc::SYS_bpf,
        "perf_event_open" => libc::SYS_perf_event_open,
        "userfaultfd" => libc::SYS_userfaultfd,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "ptrace" => libc::SYS_ptrace,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "pidfd_getfd" => libc::SYS_pidfd_getfd,
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "reboot" => libc::SYS_reboot,
        "acct" => libc::SYS_acct,
        "quotactl" => libc::SYS_quotactl,
        "quotactl_fd" => libc::SYS_quotactl_fd,
        #[cfg(target_arch = "x86_64")]
        "iopl" => libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        "ioperm" => libc::SYS_ioperm,
        "syslog" => libc::SYS_syslog,
        "vhangup" => libc::SYS_vhangup,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        #[cfg(target_arch = "x86_64")]
        "uselib" => libc::SYS_uselib,
        _ => return None,
    })
}

/// Names in [`DENIED`] that only some architectures have.
#[cfg(test)]
const ARCH_SPECIFIC: &[&str] = &["iopl", "ioperm", "uselib"];

/// The deny-list and argument rules, all answered with `EPERM` by seccompiler's program.
fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    use SeccompCmpArgLen::Dword;
    use SeccompCmpOp::{Eq, MaskedEq, Ne};
    // Every argument rule compares the low 32 bits (Dword) because the kernel truncates
    // these arguments to 32 bits itself: `ioctl`'s request is an unsigned int, `clone`'s
    // flags are read with lower_32_bits, `socket`'s family and `personality`'s argument are
    // ints. A 64-bit comparison could be dodged by setting the upper half.
    let one = |c: SeccompCondition| SeccompRule::new(vec![c]);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .filter_map(|name| number(name))
        .map(|nr| (nr, Vec::new()))
        .collect();
    // Rules of one system call are alternatives, conditions of one rule all have to hold:
    // one rule per flag is "any namespace flag set".
    rules.insert(
        libc::SYS_clone,
        CLONE_NAMESPACE_FLAGS
            .iter()
            .map(|&f| one(SeccompCondition::new(0, Dword, MaskedEq(f), f)?))
            .collect::<Result<_, _>>()?,
    );
    rules.insert(
        libc::SYS_ioctl,
        TERMINAL_INJECTION
            .iter()
            .map(|&r| one(SeccompCondition::new(1, Dword, Eq, r)?))
            .collect::<Result<_, _>>()?,
    );
    rules.insert(
        libc::SYS_socket,
        SOCKET_FAMILIES
            .iter()
            .map(|&f| one(SeccompCondition::new(0, Dword, Eq, f)?))
            .collect::<Result<_, _>>()?,
    );
    rules.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(
            PERSONALITIES
                .iter()
                .map(|&p| SeccompCondition::new(0, Dword, Ne, p))
                .collect::<Result<_, _>>()?,
        )?],
    );
    Ok(rules)
}

const fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// What runs before seccompiler's program: kill anything that isn't the native ABI (a
/// 32-bit `int 0x80` call on x86_64 arrives with another arch and other numbers), answer x32
/// numbers with `ENOSYS` as a kernel built without x32 would, and the same for `clone3`;
/// then allow at once every number seccompiler's program has no rule for.
fn prologue(audit_arch: u32, x32: bool, listed: &[u32]) -> BpfProgram {
    // Offsets into struct seccomp_data.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jset = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut p = vec![
        stmt(load, ARCH),
        jump(jeq, audit_arch, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(load, NR),
    ];
    if x32 {
        p.push(jump(jset, X32_SYSCALL_BIT, 0, 1));
        p.push(stmt(ret, errno(libc::ENOSYS)));
    }
    // clone3 passes its flags in memory, out of the filter's reach, so it can't be filtered
    // like clone. ENOSYS (not EPERM) makes glibc and others fall back to clone, where the
    // namespace flags are visible.
    p.push(jump(jeq, libc::SYS_clone3 as u32, 0, 1));
    p.push(stmt(ret, errno(libc::ENOSYS)));
    p.extend(fast_allow(listed));
    p
}

/// Where a jump of the fast path goes: an instruction of the tree, the `ALLOW` after it,
/// or the first instruction after that (seccompiler's program).
#[derive(Clone, Copy)]
enum To {
    At(usize),
    Allow,
    Rules,
}

/// A binary search over the numbers seccompiler's program has rules for, with the number
/// in the accumulator: a listed number goes on to those rules, any other is allowed at
/// once. seccompiler tests the numbers one by one, so without this an ordinary call walks
/// all of them, and so does the kernel when it installs the filter: it runs the program
/// for every system call number to cache the ones that are always allowed. Installing
/// took 145-176 µs here before this tree, 89-129 µs with it.
fn fast_allow(listed: &[u32]) -> BpfProgram {
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let mut keys = listed.to_vec();
    keys.sort_unstable();
    keys.dedup();
    // (code, k, jump if true, jump if false)
    let mut tree: Vec<(u32, u32, To, To)> = Vec::new();
    fn grow(keys: &[u32], tree: &mut Vec<(u32, u32, To, To)>, jeq: u32, jge: u32) {
        if keys.len() <= 3 {
            for (i, &k) in keys.iter().enumerate() {
                let miss = if i + 1 == keys.len() {
                    To::Allow
                } else {
                    To::At(tree.len() + 1)
                };
                tree.push((jeq, k, To::Rules, miss));
            }
            if keys.is_empty() {
                tree.push((jeq, u32::MAX, To::Rules, To::Allow));
            }
            return;
        }
        let (low, high) = keys.split_at(keys.len() / 2);
        let node = tree.len();
        tree.push((jge, high[0], To::Allow, To::At(node + 1)));
        grow(low, tree, jeq, jge);
        tree[node].2 = To::At(tree.len());
        grow(high, tree, jeq, jge);
    }
    grow(&keys, &mut tree, jeq, jge);
    let allow = tree.len();
    let offset = |from: usize, to: To| -> u8 {
        let target = match to {
            To::At(i) => i,
            To::Allow => allow,
            To::Rules => allow + 1,
        };
        u8::try_from(target - from - 1).expect("the tree is shorter than 256 instructions")
    };
    let mut p: BpfProgram = tree
        .iter()
        .enumerate()
        .map(|(i, &(code, k, t, f))| jump(code, k, offset(i, t), offset(i, f)))
        .collect();
    p.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    p
}

/// The worker's filter, compiled in the parent so that the forked child only installs it.
pub fn program() -> Result<BpfProgram, Error> {
    let (arch, audit_arch) = native()?;
    let listed: Vec<u32> = rules()
        .map_err(Error::Compile)?
        .keys()
        .map(|&n| n as u32)
        .collect();
    let mut program = prologue(audit_arch, arch == TargetArch::x86_64, &listed);
    program.extend(deny_list(arch)?);
    Ok(program)
}

/// seccompiler's part of the program: [`rules`] answered with `EPERM`, all else allowed.
fn deny_list(arch: TargetArch) -> Result<BpfProgram, Error> {
    SeccompFilter::new(
        rules().map_err(Error::Compile)?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(Error::Compile)
}

/// Installs `program` on the calling thread. Safe between `fork` and `execve`: it makes two
/// system calls and allocates nothing. seccompiler sets `PR_SET_NO_NEW_PRIVS` first (setting
/// it twice is harmless), which lets a process without `CAP_SYS_ADMIN` install a filter and
/// is what keeps a setuid program from running under a filter it didn't expect.
pub fn apply(program: &BpfProgram) -> Result<(), Error> {
    seccompiler::apply_filter(program).map_err(Error::Install)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::c_long;
    use nix::errno::Errno;
    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    const TCGETS: u64 = 0x5401;
    const FIONREAD: u64 = 0x541b;

    /// How a probe ended in the child.
    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    enum Outcome {
        Succeeded,
        Failed(Errno),
        Killed(Signal),
    }
    use Outcome::*;

    /// The child's exit code when installing the filter failed (no errno is this large).
    const INSTALL_FAILED: i32 = 255;

    /// A probe returns 0 for success or the errno it failed with. It runs in a forked child
    /// of the multi-threaded test harness, so it may only make raw system calls.
    type Probe = fn() -> i32;

    /// A raw system call; 0 or the errno. Every argument is a full `long` because the kernel
    /// reads whole registers and a variadic `int` leaves the upper half undefined.
    fn sys(nr: c_long, args: &[c_long]) -> i32 {
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if ret == -1 {
            Errno::last_raw()
        } else {
            0
        }
    }

    /// Runs `probe` in a forked child, under `filter` if given. The child first leaves the
    /// test's session so that a probe that got through (`vhangup`) can't touch a terminal.
    fn run(filter: Option<&BpfProgram>, probe: impl Fn() -> i32) -> Outcome {
        // SAFETY: the child only makes raw system calls and leaves with _exit: no
        // allocation, no locks, nothing another thread of the harness might hold.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => unsafe {
                libc::setsid();
                if let Some(f) = filter {
                    if apply(f).is_err() {
                        libc::_exit(INSTALL_FAILED);
                    }
                }
                libc::_exit(probe())
            },
            ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, INSTALL_FAILED) => panic!("installing the filter failed"),
                WaitStatus::Exited(_, 0) => Succeeded,
                WaitStatus::Exited(_, code) => Failed(Errno::from_raw(code)),
                WaitStatus::Signaled(_, sig, _) => Killed(sig),
                other => panic!("unexpected child status {other:?}"),
            },
        }
    }

    fn filtered(probe: impl Fn() -> i32) -> Outcome {
        run(Some(&program().unwrap()), probe)
    }

    fn unfiltered(probe: impl Fn() -> i32) -> Outcome {
        run(None, probe)
    }

    /// Raw clone with `flags`, like fork; a child that does get created leaves at once.
    fn clone_with(flags: c_long) -> i32 {
        let flags = flags | c_long::from(libc::SIGCHLD);
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags,
                0 as c_long,
                0 as c_long,
                0 as c_long,
                0 as c_long,
            )
        };
        match ret {
            0 => unsafe { libc::_exit(0) },
            -1 => Errno::last_raw(),
            _ => 0,
        }
    }

    #[test]
    fn the_prologue_comes_first_and_seccompilers_program_follows_unchanged() {
        let (arch, audit) = native().unwrap();
        let p = program().unwrap();
        let listed: Vec<u32> = rules().unwrap().keys().map(|&n| n as u32).collect();
        let head = prologue(audit, arch == TargetArch::x86_64, &listed);
        let tail = deny_list(arch).unwrap();
        assert_eq!(p[..head.len()], head[..]);
        assert_eq!(p[head.len()..], tail[..]);
        // Its first instruction loads seccomp_data.arch: it relies on nothing the prologue
        // left in the accumulator.
        assert_eq!(tail[0], stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4));
        assert!(p.len() < 4096, "the kernel takes at most 4096 instructions");
    }

    #[test]
    fn every_denied_name_is_a_system_call_here() {
        let mut seen = std::collections::HashSet::new();
        for name in DENIED {
            assert!(seen.insert(name), "{name} is listed twice");
            let known = number(name).is_some();
            assert!(
                known || (cfg!(not(target_arch = "x86_64")) && ARCH_SPECIFIC.contains(name)),
                "{name} has no number on {}",
                std::env::consts::ARCH
            );
        }
    }

    #[test]
    fn every_denied_call_fails_with_eperm() {
        let program = program().unwrap();
        for name in DENIED {
            let Some(nr) = number(name) else { continue };
            // Arguments the kernel would reject anyway (bad pointers, flags and fds), so a
            // hole in the filter fails this test without changing the machine.
            let outcome = run(Some(&program), || sys(nr, &[-1; 6]));
            assert_eq!(outcome, Failed(Errno::EPERM), "{name}");
        }
    }

    #[test]
    fn eperm_comes_from_the_filter_not_the_kernel() {
        // Without the filter the same calls succeed, or fail some other way.
        let probes: [(&str, Probe); 4] = [
            ("unshare(CLONE_NEWUSER)", || {
                sys(libc::SYS_unshare, &[libc::CLONE_NEWUSER.into()])
            }),
            ("mount on a missing target", || {
                let target = c"/nonexistent/devbox-seccomp-test".as_ptr() as c_long;
                sys(libc::SYS_mount, &[0, target, 0, 0, 0])
            }),
            ("keyctl with an unknown operation", || {
                sys(libc::SYS_keyctl, &[0x7fff])
            }),
            ("add_key with a bad pointer", || {
                sys(libc::SYS_add_key, &[1, 1])
            }),
        ];
        for (what, probe) in probes {
            assert_ne!(
                unfiltered(probe),
                Failed(Errno::EPERM),
                "{what} without the filter"
            );
            assert_eq!(
                filtered(probe),
                Failed(Errno::EPERM),
                "{what} with the filter"
            );
        }
    }

    #[test]
    fn ptrace_traceme_is_refused() {
        let probe = || sys(libc::SYS_ptrace, &[libc::PTRACE_TRACEME.into()]);
        assert_eq!(filtered(probe), Failed(Errno::EPERM));
    }

    #[test]
    fn clone_into_a_new_namespace_is_refused_but_fork_works() {
        let user = || clone_with(libc::CLONE_NEWUSER.into());
        assert_eq!(
            unfiltered(user),
            Succeeded,
            "clone(CLONE_NEWUSER) without the filter"
        );
        assert_eq!(filtered(user), Failed(Errno::EPERM));
        for &flag in CLONE_NAMESPACE_FLAGS {
            let probe = || clone_with(flag as c_long);
            assert_eq!(
                filtered(probe),
                Failed(Errno::EPERM),
                "clone flag {flag:#x}"
            );
        }
        assert_eq!(filtered(|| clone_with(0)), Succeeded, "plain fork");
    }

    #[test]
    fn clone3_is_not_implemented() {
        let probe = || sys(libc::SYS_clone3, &[0, 0]);
        assert_ne!(
            unfiltered(probe),
            Failed(Errno::ENOSYS),
            "this kernel has clone3"
        );
        assert_eq!(filtered(probe), Failed(Errno::ENOSYS));
    }

    #[test]
    fn terminal_injection_ioctls_are_refused_even_with_high_bits_set() {
        let c = b'x';
        let byte = &c as *const u8 as c_long;
        let ioctl = |req: u64| move || sys(libc::SYS_ioctl, &[-1, req as c_long, byte]);
        let sti = TIOCSTI;
        assert_eq!(unfiltered(ioctl(sti)), Failed(Errno::EBADF));
        assert_eq!(filtered(ioctl(sti)), Failed(Errno::EPERM));
        // The kernel reads the request as a 32-bit unsigned int, and so must the filter.
        assert_eq!(filtered(ioctl(sti | 1 << 32)), Failed(Errno::EPERM));
        assert_eq!(filtered(ioctl(TIOCLINUX)), Failed(Errno::EPERM));
        assert_eq!(
            filtered(ioctl(TCGETS)),
            Failed(Errno::EBADF),
            "other ioctls reach the kernel"
        );
    }

    #[test]
    fn packet_and_vsock_sockets_are_refused_others_are_not() {
        let socket = |family: i32, kind: i32| {
            move || sys(libc::SYS_socket, &[family.into(), kind.into(), 0])
        };
        assert_eq!(
            filtered(socket(libc::AF_PACKET, libc::SOCK_RAW)),
            Failed(Errno::EPERM)
        );
        assert_eq!(
            filtered(socket(libc::AF_VSOCK, libc::SOCK_STREAM)),
            Failed(Errno::EPERM)
        );
        assert_eq!(
            filtered(socket(libc::AF_UNIX, libc::SOCK_STREAM)),
            Succeeded
        );
        assert_eq!(
            filtered(socket(libc::AF_INET, libc::SOCK_STREAM)),
            Succeeded
        );
    }

    #[test]
    fn only_the_plain_personalities_are_allowed() {
        let personality = |p: c_long| move || sys(libc::SYS_personality, &[p]);
        const ADDR_NO_RANDOMIZE: c_long = 0x0040000;
        assert_eq!(filtered(personality(0xffff_ffff)), Succeeded);
        assert_eq!(filtered(personality(0)), Succeeded);
        assert_eq!(unfiltered(personality(ADDR_NO_RANDOMIZE)), Succeeded);
        assert_eq!(
            filtered(personality(ADDR_NO_RANDOMIZE)),
            Failed(Errno::EPERM)
        );
    }

    /// Runs `program` the way the kernel would on one system call: a classic BPF
    /// interpreter for the handful of instructions filters use. It lets the tests feed
    /// calls this kernel can't make (x32 is usually compiled out).
    fn verdict(program: &[sock_filter], nr: i32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            pc += 1;
            let code = u32::from(i.code);
            let skip = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let at = i.k as usize;
                    acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x54 => acc &= i.k, // BPF_ALU | BPF_AND | BPF_K
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += skip(acc == i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += skip(acc > i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += skip(acc >= i.k),
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => {
                    pc += skip(acc & i.k != 0)
                }
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                other => panic!("instruction {other:#x} at {} not understood", pc - 1),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_fast_path_changes_no_verdict() {
        // The program with and without the binary search in front agree on every number
        // (with the arguments that matter to the argument rules).
        let (arch, audit) = native().unwrap();
        let fast = program().unwrap();
        let mut slow = prologue(audit, arch == TargetArch::x86_64, &[]);
        slow.truncate(slow.len() - 2); // the empty tree and its ALLOW
        slow.extend(deny_list(arch).unwrap());
        let argsets: [[u64; 6]; 4] = [
            [0; 6],
            [libc::CLONE_NEWUSER as u64, TIOCSTI, 0, 0, 0, 0],
            [libc::AF_PACKET as u64, 0, 0, 0, 0, 0],
            [0x0040000, 0, 0, 0, 0, 0],
        ];
        for nr in 0..600 {
            for args in argsets {
                assert_eq!(
                    verdict(&fast, nr, audit, args),
                    verdict(&slow, nr, audit, args),
                    "syscall {nr} with {args:?}"
                );
            }
        }
        assert!(
            fast.len() < slow.len() + 120,
            "{} vs {}",
            fast.len(),
            slow.len()
        );
    }

    #[test]
    fn the_program_says_what_the_policy_says() {
        const X86_64: u32 = 0xc000_003e;
        const I386: u32 = 0x4000_0003;
        let p = program().unwrap();
        let eperm = errno(libc::EPERM);
        let enosys = errno(libc::ENOSYS);
        let allow = libc::SECCOMP_RET_ALLOW;
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        let x32 = X32_SYSCALL_BIT as i32;
        let nr = |n: c_long| n as i32;
        let cases: &[(&str, i32, u32, [u64; 6], u32)] = &[
            ("getpid", nr(libc::SYS_getpid), X86_64, [0; 6], allow),
            ("unshare", nr(libc::SYS_unshare), X86_64, [0; 6], eperm),
            ("x32 getpid", 39 | x32, X86_64, [0; 6], enosys),
            ("x32 unshare", 272 | x32, X86_64, [0; 6], enosys),
            ("i386 getpid", 20, I386, [0; 6], kill),
            ("clone3", nr(libc::SYS_clone3), X86_64, [0; 6], enosys),
            (
                "clone, fork-like",
                nr(libc::SYS_clone),
                X86_64,
                [17, 0, 0, 0, 0, 0],
                allow,
            ),
            (
                "clone, new net",
                nr(libc::SYS_clone),
                X86_64,
                [libc::CLONE_NEWNET as u64 | 17, 0, 0, 0, 0, 0],
                eperm,
            ),
            (
                "ioctl TIOCSTI, upper bits set",
                nr(libc::SYS_ioctl),
                X86_64,
                [0, TIOCSTI | 0xffff_ffff_0000_0000, 0, 0, 0, 0],
                eperm,
            ),
            (
                "ioctl FIONREAD",
                nr(libc::SYS_ioctl),
                X86_64,
                [0, FIONREAD, 0, 0, 0, 0],
                allow,
            ),
            (
                "personality, upper bits set",
                nr(libc::SYS_personality),
                X86_64,
                [0xffff_ffff_0000_0000, 0, 0, 0, 0, 0],
                allow,
            ),
            ("chroot", nr(libc::SYS_chroot), X86_64, [0; 6], allow),
            ("adjtimex", nr(libc::SYS_adjtimex), X86_64, [0; 6], allow),
        ];
        for &(what, nr, arch, args, want) in cases {
            assert_eq!(verdict(&p, nr, arch, args), want, "{what}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_system_calls_are_not_implemented() {
        let x32 = c_long::from(X32_SYSCALL_BIT);
        assert_eq!(
            filtered(|| sys(libc::SYS_getpid | x32, &[])),
            Failed(Errno::ENOSYS)
        );
        // x32's own number for unshare: a deny-list keyed on 64-bit numbers would miss it.
        let unshare = || sys(272 | x32, &[libc::CLONE_NEWUSER.into()]);
        assert_eq!(filtered(unshare), Failed(Errno::ENOSYS));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_system_calls_kill_the_process() {
        let getpid = || {
            // int 0x80 enters the kernel's 32-bit ABI (getpid is 20 there) from 64-bit code.
            let mut ret: i64 = 20;
            unsafe {
                std::arch::asm!(
                    "int 0x80",
                    inout("rax") ret,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                    options(nostack),
                );
            }
            if ret < 0 {
                -ret as i32
            } else {
                0
            }
        };
        match unfiltered(getpid) {
            Succeeded => assert_eq!(filtered(getpid), Killed(Signal::SIGSYS)),
            other => eprintln!("skipped: this kernel has no 32-bit ABI ({other:?})"),
        }
    }

    #[test]
    fn ordinary_calls_still_work() {
        let probe = || unsafe {
            if libc::syscall(libc::SYS_getpid) <= 0 {
                return Errno::last_raw();
            }
            let path = c"/dev/null".as_ptr();
            let flags = c_long::from(libc::O_WRONLY | libc::O_CLOEXEC);
            let fd = libc::syscall(libc::SYS_openat, c_long::from(libc::AT_FDCWD), path, flags);
            if fd < 0 {
                return Errno::last_raw();
            }
            if libc::syscall(libc::SYS_write, fd, b"x".as_ptr(), 1 as c_long) != 1 {
                return Errno::last_raw();
            }
            0
        };
        assert_eq!(filtered(probe), Succeeded);
    }
}
