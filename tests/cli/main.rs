//! devbox as a user types it: the built binary, a temporary project, exact output.
//! One test binary (modules below) keeps link time down.

#![allow(clippy::disallowed_methods)] // tests start real tools and the binary directly

mod util;

mod audit;
mod cgroup_v2;
mod config;
mod docs;
mod engine;
mod engine_deadline;
mod errors;
mod examples;
mod import;
mod oci;
mod render;
mod runner;
mod schema;
