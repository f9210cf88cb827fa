use std::fs;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::delegate::DELEGATED_PREFIX;
use super::detect::{parse_own_unified, unescape, Host, Own};
use super::files::{fresh_leaf, owner_pid};
use super::handle::Version;
use super::*;

const MIB: u64 = 1 << 20;

/// This machine's mountinfo (hybrid: v1 controllers, an empty v2 at `unified`), with a
/// `cpu,cpuacct` co-mount as most systemd distributions have it.
const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A systemd host on cgroup v2 only.
const UNIFIED: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

/// A container with no cgroup file system mounted.
const NONE: &str = "\
600 500 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
601 600 0:52 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
";

fn hybrid() -> Layout {
    parse_mountinfo(HYBRID)
}

fn hierarchy(mount: &str, controllers: &[&str]) -> Hierarchy {
    Hierarchy {
        mount: mount.into(),
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn all_limits() -> Limits {
    Limits {
        memory: Some(32 * MIB),
        pids: Some(5),
        cpus: Some(0.5),
        ..Limits::default()
    }
}

#[test]
fn mountinfo_of_a_hybrid_host_is_v1_with_the_controller_hierarchies() {
    assert_eq!(
        hybrid(),
        Layout::Legacy {
            hierarchies: vec![
                hierarchy("/sys/fs/cgroup/cpu,cpuacct", &["cpu"]),
                hierarchy("/sys/fs/cgroup/memory", &["memory"]),
                hierarchy("/sys/fs/cgroup/pids", &["pids"]),
            ]
        }
    );
}

#[test]
fn mountinfo_of_a_unified_host_is_v2() {
    assert_eq!(
        parse_mountinfo(UNIFIED),
        Layout::Unified {
            mount: "/sys/fs/cgroup".into(),
            root: "/".into()
        }
    );
}

#[test]
fn mountinfo_without_cgroups_is_none() {
    assert_eq!(parse_mountinfo(NONE), Layout::None);
    assert_eq!(parse_mountinfo(""), Layout::None);
}

#[test]
fn mountinfo_escapes_are_undone() {
    let text = "41 31 0:38 /a\\040b /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
    assert_eq!(
        parse_mountinfo(text),
        Layout::Unified {
            mount: "/mnt/cg two".into(),
            root: "/a b".into()
        }
    );
    assert_eq!(unescape("\\134x\\04"), "\\x\\04");
}

#[test]
fn own_cgroup_is_the_v2_line_of_proc_self_cgroup() {
    let text = "4:memory:/process_api/x\n0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope\n";
    assert_eq!(
        parse_own_unified(text),
        Some("/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope")
    );
    assert_eq!(parse_own_unified("4:memory:/x\n"), None);
}

#[test]
fn limits_decide_the_controllers_and_cpus_the_quota() {
    assert_eq!(
        needed(&all_limits()),
        [Controller::Memory, Controller::Pids, Controller::Cpu]
    );
    let pids_only = Limits {
        pids: Some(1),
        nofile: Some(10),
        ..Limits::default()
    };
    assert_eq!(needed(&pids_only), [Controller::Pids]);
    assert_eq!(cpu_quota(0.5), 50_000);
    assert_eq!(cpu_quota(2.0), 200_000);
    // Below the kernel's 1 ms minimum the write would fail.
    assert_eq!(cpu_quota(0.001), 1_000);
}

#[test]
fn run_names_carry_the_supervisor_pid() {
    let leaf = fresh_leaf(&[], "", "web/api \n");
    let pid = std::process::id();
    assert!(leaf.starts_with(&format!("web_api__-{pid}-")), "{leaf}");
    assert_eq!(owner_pid(&leaf, ""), Some(pid));
    assert_eq!(owner_pid("a-b-12-3", ""), Some(12));
    assert_eq!(owner_pid("devbox-a-12-3", DELEGATED_PREFIX), Some(12));
    assert_eq!(owner_pid("a-12-3", DELEGATED_PREFIX), None);
    assert_eq!(owner_pid("12-3", ""), None);
    assert_eq!(owner_pid("a-12-x", ""), None);
    assert_eq!(owner_pid("cgroup.procs", ""), None);
    let other = fresh_leaf(&[], "", "web/api \n");
    assert_ne!(leaf, other);
    assert!(fresh_leaf(&[], "", "").starts_with("sandbox-"));
}

fn host(layout: Layout, root: bool) -> Host {
    Host {
        layout,
        root,
        uid: if root { 0 } else { 1000 },
        root_controllers: strings(&["cpuset", "cpu", "io", "memory", "pids"]),
        own: None,
    }
}

fn own(writable: bool, controllers: &[&str]) -> Option<Own> {
    Some(Own {
        dir: "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope"
            .into(),
        writable,
        controllers: strings(controllers),
    })
}

const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

#[test]
fn v1_needs_root() {
    assert_eq!(
        decide(&host(hybrid(), false), &ALL),
        Err("cgroup v1 cannot be delegated to an unprivileged user".into())
    );
}

#[test]
fn v1_as_root_uses_devbox_in_each_hierarchy() {
    assert_eq!(
        decide(&host(hybrid(), true), &ALL),
        Ok(Target::Legacy(vec![
            (
                "/sys/fs/cgroup/memory/devbox".into(),
                vec![Controller::Memory]
            ),
            ("/sys/fs/cgroup/pids/devbox".into(), vec![Controller::Pids]),
            (
                "/sys/fs/cgroup/cpu,cpuacct/devbox".into(),
                vec![Controller::Cpu]
            ),
        ]))
    );
    // Only the hierarchies of the limits that are set.
    assert_eq!(
        decide(&host(hybrid(), true), &[Controller::Pids]),
        Ok(Target::Legacy(vec![(
            "/sys/fs/cgroup/pids/devbox".into(),
            vec![Controller::Pids]
        )]))
    );
}

#[test]
fn v1_without_a_needed_hierarchy_names_it() {
    let layout = Layout::Legacy {
        hierarchies: vec![hierarchy("/sys/fs/cgroup/memory", &["memory"])],
    };
    assert_eq!(
        decide(&host(layout, true), &ALL),
        Err("the pids controller is not mounted (no cgroup v1 hierarchy has it)".into())
    );
}

#[test]
fn v2_as_root_uses_devbox_under_the_root() {
    assert_eq!(
        decide(&host(parse_mountinfo(UNIFIED), true), &ALL),
        Ok(Target::UnifiedRoot {
            mount: "/sys/fs/cgroup".into()
        })
    );
    let mut h = host(parse_mountinfo(UNIFIED), true);
    h.root_controllers = strings(&["pids"]);
    assert_eq!(
            decide(&h, &ALL),
            Err("the memory controller is not available in /sys/fs/cgroup (it may be bound to a cgroup v1 hierarchy)".into())
        );
}

#[test]
fn v2_unprivileged_needs_a_delegated_cgroup_with_the_controllers() {
    let mut h = host(parse_mountinfo(UNIFIED), false);
    h.own = own(true, &["cpu", "memory", "pids"]);
    assert_eq!(
        decide(&h, &ALL),
        Ok(Target::Delegated {
            own: h.own.as_ref().unwrap().dir.clone()
        })
    );

    h.own = own(false, &["cpu", "memory", "pids"]);
    assert_eq!(
            decide(&h, &ALL),
            Err("cgroup /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope is not delegated to uid 1000; run devbox in a delegated scope: `systemd-run --user --scope -p Delegate=yes devbox ...`".into())
        );

    // Older systemd delegates memory and pids to users, not cpu.
    h.own = own(true, &["memory", "pids"]);
    assert_eq!(
            decide(&h, &ALL),
            Err("the cpu controller is not delegated to /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope; have systemd delegate it to users: `systemctl edit user@.service` with `[Service]` `Delegate=cpu memory pids`, then log in again".into())
        );
    assert!(decide(&h, &[Controller::Memory, Controller::Pids]).is_ok());
}

#[test]
fn no_cgroup_file_system_is_unavailable() {
    assert_eq!(
        decide(&host(Layout::None, true), &ALL),
        Err("no cgroup file system is mounted".into())
    );
}

#[test]
fn no_limits_need_no_cgroup() {
    let limits = Limits {
        nofile: Some(10),
        ..Limits::default()
    };
    match create("x", &limits, Pid::this()).unwrap() {
        Placement::Unavailable { reason } => {
            assert_eq!(reason, "no memory, pids or cpus limit is set")
        }
        Placement::Cgroup(c) => panic!("made {c:?}"),
    }
}

/// Whether this test may touch real cgroups; says why not. Under
/// `DEVBOX_REQUIRE_ENGINES=1` not being root is a failure.
fn can_run() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("DEVBOX_REQUIRE_ENGINES").as_deref() != Ok("1"),
        "cgroup tests need root (DEVBOX_REQUIRE_ENGINES=1)"
    );
    eprintln!("skipped: creating cgroups on this host needs root");
    false
}

fn make(limits: &Limits) -> Cgroup {
    match create("test", limits, Pid::this()).unwrap() {
        Placement::Cgroup(c) => c,
        Placement::Unavailable { reason } => panic!("no cgroup as root: {reason}"),
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn limits_are_written_exactly() {
    if !can_run() {
        return;
    }
    let cg = make(&all_limits());
    let (m, p, c) = (
        cg.memory.clone().unwrap(),
        cg.pids.clone().unwrap(),
        cg.cpu.clone().unwrap(),
    );
    match cg.version {
        Version::Legacy => {
            assert_eq!(cg.paths().len(), 3, "{:?}", cg.paths());
            assert_eq!(read(&m.join("memory.limit_in_bytes")), "33554432");
            let memsw = m.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                assert_eq!(read(&memsw), "33554432");
            }
            assert_eq!(read(&p.join("pids.max")), "5");
            assert_eq!(read(&c.join("cpu.cfs_period_us")), "100000");
            assert_eq!(read(&c.join("cpu.cfs_quota_us")), "50000");
        }
        Version::Unified => {
            assert_eq!(cg.paths().len(), 1);
            assert_eq!(read(&m.join("memory.max")), "33554432");
            let swap = m.join("memory.swap.max");
            if swap.exists() {
                assert_eq!(read(&swap), "0");
            }
            assert_eq!(read(&p.join("pids.max")), "5");
            assert_eq!(read(&c.join("cpu.max")), "50000 100000");
        }
    }
    for dir in cg.paths() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("test-"), "{name}");
    }
    let paths = cg.paths().to_vec();
    cg.try_remove().unwrap();
    for dir in paths {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn an_added_process_is_in_every_hierarchy_and_removal_kills_it() {
    if !can_run() {
        return;
    }
    let cg = make(&all_limits());
    let mut sleep = crate::process::command("sleep").arg("30").spawn().unwrap();
    let pid = Pid::from_raw(sleep.id() as i32);
    cg.add(pid).unwrap();
    for dir in cg.paths() {
        let procs = read(&dir.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{pid} not in {}: {procs:?}",
            dir.display()
        );
    }
    let paths = cg.paths().to_vec();
    // Not reaped yet: the kill leaves a zombie, which must not keep the cgroup busy.
    cg.try_remove().unwrap();
    for dir in &paths {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert_eq!(sleep.wait().unwrap().signal(), Some(libc_sigkill()));
}

fn libc_sigkill() -> i32 {
    Signal::SIGKILL as i32
}

#[test]
fn dropping_removes_the_cgroup() {
    if !can_run() {
        return;
    }
    let cg = make(&Limits {
        pids: Some(3),
        ..Limits::default()
    });
    let paths = cg.paths().to_vec();
    assert_eq!(paths.len(), 1);
    assert!(paths[0].exists());
    drop(cg);
    assert!(!paths[0].exists(), "{} left behind", paths[0].display());
}

/// A shell that waits for a line on stdin (so it is in the cgroup before it runs
/// `script`), then runs it.
fn held_shell(script: &str) -> std::process::Child {
    crate::process::command("sh")
        .args(["-c", &format!("read go; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn release(child: &mut std::process::Child) {
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
}

/// Polls `cond` for up to 10 s.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

#[test]
fn forking_past_pids_max_is_reported() {
    if !can_run() {
        return;
    }
    let cg = make(&Limits {
        pids: Some(5),
        ..Limits::default()
    });
    assert!(!cg.pids_limit_hit());
    let mut sh = held_shell("i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done; sleep 30");
    cg.add(Pid::from_raw(sh.id() as i32)).unwrap();
    release(&mut sh);
    assert!(
        eventually(|| cg.pids_limit_hit()),
        "pids.events max stayed 0"
    );
    let dir = cg.pids.clone().unwrap();
    let current: u32 = read(&dir.join("pids.current")).parse().unwrap();
    assert!(current <= 5, "pids.current {current} over pids.max 5");
    assert!(!cg.oom_killed());
    cg.try_remove().unwrap();
    assert!(!dir.exists());
    sh.wait().unwrap();
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    if !can_run() {
        return;
    }
    if crate::process::which("python3").is_none() {
        assert!(
            std::env::var("DEVBOX_REQUIRE_ENGINES").as_deref() != Ok("1"),
            "python3 is required (DEVBOX_REQUIRE_ENGINES=1)"
        );
        eprintln!("skipped: no python3 to allocate memory with");
        return;
    }
    let cg = make(&Limits {
        memory: Some(32 * MIB),
        ..Limits::default()
    });
    // Bytes filled with b'x', so every page is touched (a zeroed bytearray might not be).
    let mut hog = crate::process::command("python3")
        .args([
            "-c",
            "import sys; sys.stdin.readline(); b = b'x' * (200 << 20); print(len(b))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cg.add(Pid::from_raw(hog.id() as i32)).unwrap();
    assert!(!cg.oom_killed());
    release(&mut hog);
    let out = hog.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc_sigkill()),
        "{:?}, printed {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(cg.oom_killed());
    assert!(!cg.pids_limit_hit());
    cg.try_remove().unwrap();
}

/// The directories devbox's runs go in on this host, and the prefix of their names.
fn bases() -> (Vec<PathBuf>, &'static str) {
    let host = Host::probe(detect().unwrap()).unwrap();
    match decide(&host, &[Controller::Memory]).unwrap() {
        Target::Legacy(b) => (b.into_iter().map(|(b, _)| b).collect(), ""),
        Target::UnifiedRoot { mount } => (vec![mount.join("devbox")], ""),
        Target::Delegated { own } => (vec![own], DELEGATED_PREFIX),
    }
}

#[test]
fn leftovers_of_dead_supervisors_are_removed_when_empty() {
    if !can_run() {
        return;
    }
    // A run that crashed between create and remove left its directory behind.
    let mut t = crate::process::command("true").spawn().unwrap();
    let dead = t.id();
    t.wait().unwrap();
    let (bases, prefix) = bases();
    let base = &bases[0];
    fs::create_dir_all(base).unwrap();
    let stale = base.join(format!("{prefix}stale-{dead}-0"));
    let live = base.join(format!("{prefix}live-{}-999999", std::process::id()));
    let busy = base.join(format!("{prefix}busy-{dead}-1"));
    for d in [&stale, &live, &busy, &busy.join("inner")] {
        fs::create_dir(d).unwrap();
    }
    let cg = make(&Limits {
        memory: Some(64 * MIB),
        ..Limits::default()
    });
    let (stale_left, live_left, busy_left) = (stale.exists(), live.exists(), busy.exists());
    let _ = fs::remove_dir(busy.join("inner"));
    let _ = fs::remove_dir(&busy);
    let _ = fs::remove_dir(&live);
    let _ = fs::remove_dir(&stale);
    drop(cg);
    assert!(!stale_left, "empty leftover of pid {dead} kept");
    assert!(live_left, "a live supervisor's cgroup was removed");
    assert!(busy_left, "a non-empty leftover was removed");
}

#[test]
fn a_v2_hierarchy_without_controllers_is_refused_untouched() {
    // Hybrid hosts mount an empty v2 hierarchy beside v1: as root, devbox must say the
    // controller is missing before it writes anything there.
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let only_v2: String = text
        .lines()
        .filter(|l| !l.contains(" - cgroup "))
        .map(|l| format!("{l}\n"))
        .collect();
    let layout = parse_mountinfo(&only_v2);
    let Layout::Unified { mount, .. } = &layout else {
        eprintln!("skipped: no cgroup2 mount here");
        return;
    };
    let mut host = Host::probe(layout.clone()).unwrap();
    if host.root_controllers.iter().any(|c| c == "memory") {
        eprintln!("skipped: {} has controllers", mount.display());
        return;
    }
    host.root = true;
    let had_devbox = mount.join("devbox").exists();
    match create_on(&host, "x", &all_limits(), Pid::this()).unwrap() {
            Placement::Unavailable { reason } => assert_eq!(
                reason,
                format!(
                    "the memory controller is not available in {} (it may be bound to a cgroup v1 hierarchy)",
                    mount.display()
                )
            ),
            Placement::Cgroup(c) => panic!("made {c:?}"),
        }
    assert_eq!(mount.join("devbox").exists(), had_devbox);
}

#[test]
fn unprivileged_on_this_host() {
    // Runs as an ordinary user only: `runuser -u <user> -- <test binary> unprivileged`.
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipped: shows what an ordinary user gets, so not as root");
        return;
    }
    let layout = detect().unwrap();
    match create("x", &all_limits(), Pid::this()).unwrap() {
        Placement::Unavailable { reason } => {
            if matches!(layout, Layout::Legacy { .. }) {
                assert_eq!(
                    reason,
                    "cgroup v1 cannot be delegated to an unprivileged user"
                );
            }
            eprintln!("unavailable: {reason}");
        }
        Placement::Cgroup(c) => eprintln!("delegated: {:?}", c.paths()),
    }
}
