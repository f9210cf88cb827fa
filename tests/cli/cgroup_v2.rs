//! cgroup v2 for real. This machine mounts cgroup v1 (and its mounts are not ours to
//! change), so the test boots a throwaway VM whose only cgroup file system is v2
//! (`tests/vm/boot`, qemu on Debian's kernel) and runs the devbox under test there: as
//! root, in the v2 root, and as uid 1000, in cgroups delegated the way systemd delegates
//! them. It covers `devbox run` and native services (a project whose services have no
//! image, brought up and down with `up` and `down`). `tests/vm/cgroup2` is the VM's pid 1;
//! each case prints `case NAME ok` or `case NAME FAIL: why`.
//!
//! Needs `DEVBOX_TEST_KERNEL` (a bzImage: `scripts/vm-kernel` fetches one), qemu and a
//! static busybox; without them it skips, unless `DEVBOX_REQUIRE_ENGINES=1`.

use std::process::Command;

use crate::util::{repo, require, test_var};

/// Every case the VM must report, and report ok.
const CASES: &[&str] = &[
    "root_runs",
    "root_limits_are_set",
    "root_memory_hog_stops_at_the_limit",
    "root_fork_bomb_stops_at_the_pids_limit",
    "root_cgroups_are_removed",
    "user_runs",
    "user_limits_are_set",
    "user_supervisor_moves_into_a_leaf",
    "user_memory_hog_stops_at_the_limit",
    "user_fork_bomb_stops_at_the_pids_limit",
    "user_cgroups_are_removed",
    "user_shared_cgroup_falls_back",
    "user_undelegated_cgroup_falls_back",
    "root_native_services_come_up",
    "root_native_service_limits_are_set",
    "root_native_memory_hog_stops_at_the_limit",
    "root_native_fork_bomb_stops_at_the_pids_limit",
    "root_native_down_removes_the_cgroups_and_every_process",
    "root_native_leaves_no_cgroup",
    "user_native_services_come_up",
    "user_native_service_limits_are_set",
    "user_native_memory_hog_stops_at_the_limit",
    "user_native_fork_bomb_stops_at_the_pids_limit",
    "user_native_down_removes_the_cgroups_and_every_process",
    "user_native_leaves_no_cgroup_and_no_process",
    "user_native_killed_supervisor_leaves_nothing_after_down",
    "user_native_shared_cgroup_falls_back_to_rlimits",
    "user_native_shared_cgroup_down_leaves_no_process",
];

fn kernel() -> Option<String> {
    let k = test_var(
        "DEVBOX_TEST_KERNEL",
        "export DEVBOX_TEST_KERNEL=$(scripts/vm-kernel)",
    )?;
    assert!(
        std::path::Path::new(&k).is_file(),
        "DEVBOX_TEST_KERNEL={k} is not a file"
    );
    Some(k)
}

/// Which cases failed or were missing in `console`, and which it reported that the test
/// does not know.
fn verdicts(console: &str) -> Vec<String> {
    let lines: Vec<&str> = console
        .lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with("case "))
        .collect();
    let mut wrong = Vec::new();
    for case in CASES {
        let prefix = format!("case {case} ");
        match lines.iter().find(|l| l.starts_with(&prefix)) {
            Some(l) if l[prefix.len()..] == *"ok" => {}
            Some(l) => wrong.push(l.to_string()),
            None => wrong.push(format!("case {case}: not reported")),
        }
    }
    for l in &lines {
        let name = l.split_whitespace().nth(1).unwrap_or_default();
        if !CASES.contains(&name) {
            wrong.push(format!("unknown: {l}"));
        }
    }
    wrong
}

#[test]
fn verdicts_need_every_case_ok() {
    let all_ok: String = CASES.iter().map(|c| format!("case {c} ok\r\n")).collect();
    assert!(verdicts(&all_ok).is_empty());
    let one_failed = all_ok.replace("case user_runs ok", "case user_runs FAIL: code=1");
    assert_eq!(verdicts(&one_failed), ["case user_runs FAIL: code=1"]);
    let one_missing = all_ok.replace("case root_runs ok\r\n", "");
    assert_eq!(verdicts(&one_missing), ["case root_runs: not reported"]);
    let extra = format!("{all_ok}case new_case ok\n");
    assert_eq!(verdicts(&extra), ["unknown: case new_case ok"]);
}

#[test]
fn limits_on_cgroup_v2_as_root_and_as_a_delegated_user() {
    let Some(kernel) = kernel() else { return };
    if !require("qemu-system-x86_64") || !require("busybox") {
        return;
    }
    let out = Command::new(repo().join("tests/vm/boot"))
        .arg(env!("CARGO_BIN_EXE_devbox"))
        .arg(&kernel)
        .output()
        .expect("tests/vm/boot runs");
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        console.contains("vm: done"),
        "the VM did not finish its cases:\n{console}"
    );
    let wrong = verdicts(&console);
    assert!(
        wrong.is_empty(),
        "{}\n\nconsole:\n{console}",
        wrong.join("\n")
    );
}
