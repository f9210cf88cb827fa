//! devbox as a user types it: the built binary, a temporary project, exact output.
//! One test binary (modules below) keeps link time down.

#![allow(clippy::disallowed_methods)] // tests start real tools and the binary directly

// `#[test]` in every module below is devbox-test-macros' attribute, which registers the
// test with `harness` (a test can then report itself skipped at run time).
#[macro_use]
extern crate devbox_test_macros;

mod harness;
mod util;

mod audit;
mod cgroup_v2;
mod checkouts;
mod config;
mod data_races;
mod docs;
mod engine;
mod engine_deadline;
mod errors;
mod examples;
mod hashes;
mod import;
mod interrupts;
mod local_dev;
mod native;
mod native_security;
mod networks;
mod oci;
mod pipes;
mod ports;
mod render;
mod runner;
mod schema;
mod templates;

fn main() -> std::process::ExitCode {
    harness::main()
}
