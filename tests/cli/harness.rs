//! The test binary's harness (libtest-mimic): every `#[test]` in these modules registers a
//! [`Case`], and a test that finds something it needs missing (an engine, a tool, a test
//! variable) calls [`skip`], which reports it as ignored, with the reason, instead of
//! letting it pass. With `DEVBOX_REQUIRE_ENGINES=1` the helpers fail instead of skipping.

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// One `#[test]` function, as the attribute registers it.
pub(crate) struct Case {
    pub module: &'static str,
    pub name: &'static str,
    pub run: fn(),
    /// `#[ignore = "why"]`.
    pub ignored: Option<&'static str>,
}

inventory::collect!(Case);

/// The panic payload [`skip`] unwinds with.
struct Skip(String);

/// Ends the running test as skipped: the harness reports it ignored, with `reason`.
pub(crate) fn skip(reason: impl Into<String>) -> ! {
    panic::panic_any(Skip(reason.into()))
}

fn outcome(run: fn()) -> Result<Completion, Failed> {
    match panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(()) => Ok(Completion::Completed),
        Err(payload) => match payload.downcast::<Skip>() {
            Ok(skip) => Ok(Completion::ignored_with(skip.0)),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("test panicked");
                Err(msg.into())
            }
        },
    }
}

pub(crate) fn main() -> ExitCode {
    let args = Arguments::from_args();
    // A skip is not a failure: no "panicked at" line for it.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Skip>().is_none() {
            default_hook(info);
        }
    }));
    let mut trials: Vec<Trial> = inventory::iter::<Case>
        .into_iter()
        .map(|c| {
            // `cli::engine` -> `engine::NAME`, the names the built-in harness gives.
            let module = c.module.split_once("::").map_or("", |(_, m)| m);
            let name = if module.is_empty() {
                c.name.to_owned()
            } else {
                format!("{module}::{}", c.name)
            };
            let run = c.run;
            let t = Trial::ignorable_test(name, move || outcome(run));
            match c.ignored {
                Some(_) => t.with_ignored_flag(true),
                None => t,
            }
        })
        .collect();
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    libtest_mimic::run(&args, trials).exit_code()
}

// A fresh clone's `cargo test` reported 22 engine tests as passed in ~8 ms while they
// skipped. Run one test that needs the unprivileged user without it: it must say ignored,
// with the reason, and fail outright when engines are required.
#[test]
fn a_test_missing_what_it_needs_is_reported_skipped_and_fails_when_required() {
    let exe = std::env::current_exe().unwrap();
    let case = "runner::write_outside_the_writable_paths::as_user";
    let run = |require: bool| {
        let mut c = std::process::Command::new(&exe);
        c.args([case, "--exact", "--test-threads", "1"])
            .env_remove("DEVBOX_TEST_ROOTLESS_USER")
            .env_remove("DEVBOX_REQUIRE_ENGINES");
        if require {
            c.env("DEVBOX_REQUIRE_ENGINES", "1");
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = run(false);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "test {case} ... ignored (DEVBOX_TEST_ROOTLESS_USER is not set; run scripts/setup-engines and export what it prints)\n"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed; 0 failed; 1 ignored"), "{stdout}");
    let (code, stdout) = run(true);
    assert_eq!(code, Some(101), "{stdout}");
    assert!(
        stdout.contains(&format!("test {case} ... FAILED\n")),
        "{stdout}"
    );
}
