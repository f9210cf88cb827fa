//! devbox: one checked-in `sandbox.toml` turned into a working, hardened dev environment.
//!
//! Data flows one way: [`config`] loads and validates, [`plan`] resolves engine-neutral
//! desired state, [`render`] writes it out for other tools; `cli` is the doorway.

pub mod apply;
pub mod audit;
pub mod cli;
pub mod config;
pub mod data;
pub mod doctor;
pub mod engine;
pub mod fsutil;
pub mod healthcheck;
pub mod import;
pub mod ipc;
pub mod plan;
pub mod probe;
pub mod process;
pub mod render;
pub mod runner;
pub mod verify;
pub mod words;

pub use cli::main;
